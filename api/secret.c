/*
 * api/secret.c — the secrets key file and secretbox sealing of single values.
 *
 * Place: see api/secret.h.
 * Threads: api_secrets_load() blocks (start only); the rest is pure.
 * Traps: agg_file_open_tmp() makes files 0640: the key's temp file is chmod 0600
 *        before a byte is written. Two aggd starting at once on a missing file may
 *        each write one; both then read back the file, so they agree unless the second
 *        one's rename lands after the first one read (then restart the first).
 */
#include "api/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/alloc.h"
#include "core/file.h"

#define PATH_CAP 4096
#define BOX_MIN  (crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)

struct api_secrets {
    unsigned char key[crypto_secretbox_KEYBYTES];
};

_Static_assert(API_SECRET_KEY_BYTES == crypto_secretbox_KEYBYTES, "secretbox key size");

struct api_secrets *api_secrets_new(const unsigned char *key, size_t len, struct agg_err *err)
{
    struct api_secrets *s;

    if (sodium_init() < 0) {
        agg_err_set(err, AGG_ERR, "cannot initialise libsodium");
        return NULL;
    }
    if (len != API_SECRET_KEY_BYTES) {
        agg_err_set(err, AGG_EINVAL, "a secrets key must be %d bytes, not %zu",
                    API_SECRET_KEY_BYTES, len);
        return NULL;
    }
    s = sodium_malloc(sizeof(*s)); /* guarded, kept out of swap, wiped by sodium_free */
    if (s == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(s->key, key, len);
    return s;
}

void api_secrets_free(struct api_secrets *s)
{
    if (s != NULL)
        sodium_free(s);
}

/* Writes a new random key to <path> (mode 0600). */
static int make_key(const char *path, struct agg_err *err)
{
    unsigned char key[API_SECRET_KEY_BYTES];
    char tmp[PATH_CAP];
    int fd = agg_file_open_tmp(path, tmp, sizeof(tmp), err);
    int rc;

    if (fd < 0)
        return AGG_ERR;
    if (fchmod(fd, 0600) != 0) {
        agg_err_set(err, AGG_ERR, "could not chmod \"%s\": %s", tmp, strerror(errno));
        close(fd);
        return AGG_ERR;
    }
    randombytes_buf(key, sizeof(key));
    rc = agg_file_write_all(fd, key, sizeof(key), tmp, err);
    sodium_memzero(key, sizeof(key));
    if (rc != AGG_OK) {
        close(fd);
        return rc;
    }
    return agg_file_publish(fd, tmp, path, err);
}

/* Reads the key of the open file <fd> (<path> for messages). */
static struct api_secrets *read_key(int fd, const char *path, struct agg_err *err)
{
    unsigned char key[API_SECRET_KEY_BYTES + 1];
    struct api_secrets *s = NULL;
    struct stat st;
    size_t got = 0;

    if (fstat(fd, &st) != 0) {
        agg_err_set(err, AGG_ERR, "could not stat secrets key file \"%s\": %s", path,
                    strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        agg_err_set(err, AGG_EINVAL, "cannot use secrets key file \"%s\": not a regular file",
                    path);
        return NULL;
    }
    if ((st.st_mode & 077) != 0) {
        agg_err_set(err, AGG_EINVAL,
                    "cannot use secrets key file \"%s\": group or others may access it "
                    "(mode %04o; chmod 600 it)",
                    path, (unsigned)(st.st_mode & 07777));
        return NULL;
    }
    while (got < sizeof(key)) {
        ssize_t n = read(fd, key + got, sizeof(key) - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            agg_err_set(err, AGG_ERR, "could not read secrets key file \"%s\": %s", path,
                        strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got != API_SECRET_KEY_BYTES)
        agg_err_set(err, AGG_EINVAL,
                    "cannot use secrets key file \"%s\": it must hold exactly %d bytes%s", path,
                    API_SECRET_KEY_BYTES, got > API_SECRET_KEY_BYTES ? " (it holds more)" : "");
    else
        s = api_secrets_new(key, got, err);
out:
    sodium_memzero(key, sizeof(key));
    return s;
}

struct api_secrets *api_secrets_load(const char *path, struct agg_err *err)
{
    struct api_secrets *s;
    int fd;

    if (path[0] == '\0') {
        agg_err_set(err, AGG_EINVAL, "secrets.key_file is empty: it must name the key's file");
        return NULL;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        struct agg_err mk = {0};

        /* a concurrent start may have made it meanwhile: the file decides */
        if (make_key(path, &mk) != AGG_OK && access(path, F_OK) != 0) {
            agg_err_set(err, AGG_ERR, "cannot create secrets key file: %s", mk.msg);
            return NULL;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        agg_err_set(err, AGG_ERR, "could not open secrets key file \"%s\": %s", path,
                    strerror(errno));
        return NULL;
    }
    s = read_key(fd, path, err);
    close(fd);
    return s;
}

int api_secret_seal(const struct api_secrets *s, const char *plain, size_t len, struct agg_buf *out)
{
    size_t box_len = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + len;
    size_t b64_len = sodium_base64_ENCODED_LEN(box_len, sodium_base64_VARIANT_ORIGINAL);
    unsigned char *box = agg_malloc(box_len);
    int rc;

    if (box == NULL)
        return AGG_ENOMEM;
    randombytes_buf(box, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(box + crypto_secretbox_NONCEBYTES, (const unsigned char *)plain, len, box,
                          s->key);
    rc = agg_buf_printf(out, "%s", API_SECRET_PREFIX);
    if (rc == AGG_OK)
        rc = agg_buf_reserve(out, b64_len);
    if (rc == AGG_OK) {
        sodium_bin2base64(out->data + out->len, b64_len, box, box_len,
                          sodium_base64_VARIANT_ORIGINAL);
        out->len += b64_len - 1; /* without the NUL it wrote */
    }
    free(box);
    return rc;
}

int api_secret_open(const struct api_secrets *s, const char *stored, char **plain, size_t *len,
                    struct agg_err *err)
{
    size_t plen = strlen(API_SECRET_PREFIX), slen = strlen(stored), box_len = 0;
    unsigned char *box;
    char *p;

    *plain = NULL;
    *len = 0;
    if (strncmp(stored, API_SECRET_PREFIX, plen) != 0)
        return agg_err_set(err, AGG_EINVAL, "not a stored secret (no \"%s\")", API_SECRET_PREFIX);
    box = agg_malloc(slen); /* base64 is longer than what it encodes */
    if (box == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    if (sodium_base642bin(box, slen, stored + plen, slen - plen, NULL, &box_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        box_len < BOX_MIN) {
        free(box);
        return agg_err_set(err, AGG_EINVAL, "stored secret is truncated or not base64");
    }
    p = agg_malloc(box_len - BOX_MIN + 1);
    if (p == NULL) {
        free(box);
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    }
    if (crypto_secretbox_open_easy((unsigned char *)p, box + crypto_secretbox_NONCEBYTES,
                                   box_len - crypto_secretbox_NONCEBYTES, box, s->key) != 0) {
        free(box);
        api_secret_plain_free(p, box_len - BOX_MIN);
        return agg_err_set(err, AGG_EINVAL,
                           "stored secret does not open with this key (other key or altered)");
    }
    free(box);
    p[box_len - BOX_MIN] = '\0';
    *plain = p;
    *len = box_len - BOX_MIN;
    return AGG_OK;
}

void api_secret_plain_free(char *plain, size_t len)
{
    if (plain == NULL)
        return;
    sodium_memzero(plain, len + 1);
    free(plain);
}
