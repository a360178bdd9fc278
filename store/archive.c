/*
 * store/archive.c — archive files: zstd + SHA-256 streaming writer and reader, the JSON
 * manifest, month arithmetic.
 *
 * Place: below store/partitions.c (DESIGN.md, Partitions and archive).
 * Threads: a writer belongs to one thread; everything else is reentrant.
 * Ownership: see store/archive.h.
 * Traps: a file appears under its final name only after fsync + rename + directory
 *        fsync, so a crash leaves either the old file, the new one, or a stray .tmp
 *        (overwritten by the next export). The zstd frame carries its own checksum
 *        (ZSTD_c_checksumFlag) so `zstd -t` checks it too.
 * Not here: SQL and the archive state machine (store/partitions.c).
 */
#include "store/archive.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>
#include <zstd.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/time.h"

#define PATH_CAP 4096

int st_archive_month_parse(const char *s, int *month)
{
    int y = 0, m = 0;

    if (s == NULL || strlen(s) != 7 || s[4] != '-')
        return AGG_EINVAL;
    for (int i = 0; i < 7; i++) {
        if (i == 4)
            continue;
        if (s[i] < '0' || s[i] > '9')
            return AGG_EINVAL;
        if (i < 4)
            y = y * 10 + (s[i] - '0');
        else
            m = m * 10 + (s[i] - '0');
    }
    if (m < 1 || m > 12)
        return AGG_EINVAL;
    *month = AGG_TIME_MONTH(y, m);
    return AGG_OK;
}

int st_archive_path(const char *dir, const char *table, int month, bool manifest, char *out,
                    size_t cap, struct agg_err *err)
{
    char ym[8];
    int n;

    agg_time_month_format(month, '-', ym);
    n = snprintf(out, cap, "%s/%s/%s.%s", dir, table, ym, manifest ? "manifest.json" : "csv.zst");
    if (n < 0 || (size_t)n >= cap)
        return agg_err_set(err, AGG_EINVAL, "archive path for \"%s\" is too long", table);
    return AGG_OK;
}

/* ---- shared hashing and row counting ---- */

struct meter {
    crypto_hash_sha256_state sha;
    uint64_t newlines;
    uint64_t bytes;
    bool in_quote;
};

static void meter_init(struct meter *mt)
{
    memset(mt, 0, sizeof(*mt));
    crypto_hash_sha256_init(&mt->sha);
}

static void meter_update(struct meter *mt, const unsigned char *p, size_t len)
{
    crypto_hash_sha256_update(&mt->sha, p, len);
    mt->bytes += len;
    /* "" inside a quoted field toggles twice: the state is right at every newline. */
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '"')
            mt->in_quote = !mt->in_quote;
        else if (p[i] == '\n' && !mt->in_quote)
            mt->newlines++;
    }
}

static void meter_final(struct meter *mt, struct st_archive_stats *out)
{
    unsigned char digest[crypto_hash_sha256_BYTES];

    crypto_hash_sha256_final(&mt->sha, digest);
    sodium_bin2hex(out->sha256, sizeof(out->sha256), digest, sizeof(digest));
    out->csv_bytes = mt->bytes;
    out->rows = mt->newlines > 0 ? mt->newlines - 1 : 0;
}

/* ---- writer ---- */

struct st_archive_writer {
    int fd;
    ZSTD_CStream *zc;
    struct meter meter;
    uint64_t compressed;
    size_t outcap;
    unsigned char *out;
    char path[PATH_CAP];
    char tmp[PATH_CAP + 8];
};

void st_archive_writer_free(struct st_archive_writer *w)
{
    if (w == NULL)
        return;
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp);
    }
    ZSTD_freeCStream(w->zc);
    free(w->out);
    free(w);
}

struct st_archive_writer *st_archive_writer_open(const char *path, struct agg_err *err)
{
    struct st_archive_writer *w = agg_calloc(1, sizeof(*w));

    if (w == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    w->fd = -1;
    if (strlen(path) >= sizeof(w->path)) {
        agg_err_set(err, AGG_EINVAL, "path \"%s\" is too long", path);
        goto fail;
    }
    memcpy(w->path, path, strlen(path) + 1);
    meter_init(&w->meter);
    w->outcap = ZSTD_CStreamOutSize();
    w->out = agg_malloc(w->outcap);
    w->zc = ZSTD_createCStream();
    if (w->out == NULL || w->zc == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    if (ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, 3)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 1))) {
        agg_err_set(err, AGG_ERR, "could not configure zstd");
        goto fail;
    }
    w->fd = agg_file_open_tmp(path, w->tmp, sizeof(w->tmp), err);
    if (w->fd < 0)
        goto fail;
    return w;

fail:
    st_archive_writer_free(w);
    return NULL;
}

static int compress_step(struct st_archive_writer *w, ZSTD_inBuffer *in, ZSTD_EndDirective end,
                         size_t *remaining, struct agg_err *err)
{
    ZSTD_outBuffer o = {w->out, w->outcap, 0};
    size_t r = ZSTD_compressStream2(w->zc, &o, in, end);

    if (ZSTD_isError(r))
        return agg_err_set(err, AGG_ERR, "could not compress: %s", ZSTD_getErrorName(r));
    w->compressed += o.pos;
    *remaining = r;
    return agg_file_write_all(w->fd, w->out, o.pos, w->tmp, err);
}

int st_archive_writer_write(struct st_archive_writer *w, const void *buf, size_t len,
                            struct agg_err *err)
{
    ZSTD_inBuffer in = {buf, len, 0};
    size_t rem;

    meter_update(&w->meter, buf, len);
    while (in.pos < in.size) {
        if (compress_step(w, &in, ZSTD_e_continue, &rem, err) != AGG_OK)
            return AGG_ERR;
    }
    return AGG_OK;
}

int st_archive_writer_commit(struct st_archive_writer *w, struct st_archive_stats *out,
                             struct agg_err *err)
{
    ZSTD_inBuffer in = {NULL, 0, 0};
    size_t rem = 1;
    int fd;

    while (rem != 0) {
        if (compress_step(w, &in, ZSTD_e_end, &rem, err) != AGG_OK)
            goto fail;
    }
    memset(out, 0, sizeof(*out));
    meter_final(&w->meter, out);
    out->compressed_bytes = w->compressed;
    fd = w->fd;
    w->fd = -1;
    if (agg_file_publish(fd, w->tmp, w->path, err) != AGG_OK) {
        unlink(w->tmp);
        goto fail;
    }
    st_archive_writer_free(w);
    return AGG_OK;

fail:
    st_archive_writer_free(w);
    return AGG_ERR;
}

/* ---- reader ---- */

int st_archive_read(const char *path, st_archive_sink_fn sink, void *arg,
                    struct st_archive_stats *out, struct agg_err *err)
{
    size_t incap = ZSTD_DStreamInSize(), outcap = ZSTD_DStreamOutSize();
    unsigned char *ibuf = agg_malloc(incap), *obuf = agg_malloc(outcap);
    ZSTD_DStream *zd = ZSTD_createDStream();
    struct meter mt;
    uint64_t compressed = 0;
    size_t last = 0;
    bool any = false;
    int rc = AGG_OK;
    int fd = -1;

    meter_init(&mt);
    if (ibuf == NULL || obuf == NULL || zd == NULL) {
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = agg_err_set(err, errno == ENOENT ? AGG_ENOTFOUND : AGG_ERR,
                         "could not open \"%s\": %s", path, strerror(errno));
        goto out;
    }
    ZSTD_initDStream(zd);
    for (;;) {
        ssize_t n = read(fd, ibuf, incap);
        ZSTD_inBuffer in = {ibuf, 0, 0};

        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = agg_err_set(err, AGG_ERR, "could not read \"%s\": %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        any = true;
        in.size = (size_t)n;
        compressed += (uint64_t)n;
        while (in.pos < in.size) {
            ZSTD_outBuffer o = {obuf, outcap, 0};

            last = ZSTD_decompressStream(zd, &o, &in);
            if (ZSTD_isError(last)) {
                rc = agg_err_set(err, AGG_EINVAL, "archive \"%s\" is corrupt: %s", path,
                                 ZSTD_getErrorName(last));
                goto out;
            }
            meter_update(&mt, obuf, o.pos);
            if (sink != NULL && o.pos > 0) {
                rc = sink(arg, obuf, o.pos, err);
                if (rc != AGG_OK)
                    goto out;
            }
        }
    }
    /* Non-zero after the last input: the frame is truncated. */
    if (!any || last != 0) {
        rc = agg_err_set(err, AGG_EINVAL, "archive \"%s\" is truncated", path);
        goto out;
    }
    memset(out, 0, sizeof(*out));
    meter_final(&mt, out);
    out->compressed_bytes = compressed;

out:
    if (fd >= 0)
        close(fd);
    ZSTD_freeDStream(zd);
    free(ibuf);
    free(obuf);
    return rc;
}

/* ---- manifest ---- */

static void gen_str(yajl_gen g, const char *s)
{
    yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

static void gen_int(yajl_gen g, const char *key, long long v)
{
    gen_str(g, key);
    yajl_gen_integer(g, v);
}

static void gen_kv(yajl_gen g, const char *key, const char *v)
{
    gen_str(g, key);
    if (v == NULL || v[0] == '\0')
        yajl_gen_null(g);
    else
        gen_str(g, v);
}

int st_archive_manifest_write(const char *path, const struct st_archive_manifest *m,
                              struct agg_err *err)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    char month[8], tmp[PATH_CAP + 8];
    const unsigned char *buf;
    size_t len;
    int fd, rc;

    if (g == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    yajl_gen_config(g, yajl_gen_beautify, 1);
    agg_time_month_format(m->month, '-', month);
    yajl_gen_map_open(g);
    gen_kv(g, "table", m->table);
    gen_kv(g, "month", month);
    gen_str(g, "columns");
    yajl_gen_array_open(g);
    for (int i = 0; i < m->ncolumns; i++)
        gen_str(g, m->columns[i]);
    yajl_gen_array_close(g);
    gen_int(g, "schema_version", m->schema_version);
    gen_int(g, "rows", (long long)m->rows);
    gen_kv(g, "min_created_at", m->min_created_at);
    gen_kv(g, "max_created_at", m->max_created_at);
    if (m->rows > 0) {
        gen_int(g, "min_id", m->min_id);
        gen_int(g, "max_id", m->max_id);
    } else {
        gen_kv(g, "min_id", NULL);
        gen_kv(g, "max_id", NULL);
    }
    gen_kv(g, "sha256", m->sha256);
    gen_int(g, "compressed_bytes", (long long)m->compressed_bytes);
    gen_kv(g, "aggd_version", m->aggd_version);
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &buf, &len);

    fd = agg_file_open_tmp(path, tmp, sizeof(tmp), err);
    if (fd < 0) {
        yajl_gen_free(g);
        return AGG_ERR;
    }
    rc = agg_file_write_all(fd, buf, len, tmp, err);
    yajl_gen_free(g);
    if (rc != AGG_OK) {
        close(fd);
        unlink(tmp);
        return rc;
    }
    rc = agg_file_publish(fd, tmp, path, err);
    if (rc != AGG_OK)
        unlink(tmp);
    return rc;
}

static int copy_str(const yajl_val root, const char *key, char *out, size_t cap, bool nullable)
{
    const char *p[] = {key, NULL};
    yajl_val v = yajl_tree_get(root, p, yajl_t_any);

    if (nullable && (v == NULL || YAJL_IS_NULL(v))) {
        out[0] = '\0';
        return AGG_OK;
    }
    const char *s = YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;

    if (s == NULL || strlen(s) >= cap)
        return AGG_EINVAL;
    memcpy(out, s, strlen(s) + 1);
    return AGG_OK;
}

static int get_int(const yajl_val root, const char *key, long long *out, bool nullable)
{
    const char *p[] = {key, NULL};
    yajl_val v = yajl_tree_get(root, p, yajl_t_any);

    if (nullable && (v == NULL || YAJL_IS_NULL(v))) {
        *out = 0;
        return AGG_OK;
    }
    if (v == NULL || !YAJL_IS_INTEGER(v))
        return AGG_EINVAL;
    *out = YAJL_GET_INTEGER(v);
    return AGG_OK;
}

int st_archive_manifest_read(const char *path, struct st_archive_manifest *m, struct agg_err *err)
{
    char ebuf[256], month[8];
    const char *cols[] = {"columns", NULL};
    FILE *f = fopen(path, "re");
    char *text = NULL;
    size_t len = 0, cap = 0;
    yajl_val root = NULL, arr;
    long long v;
    int rc = AGG_EINVAL;

    memset(m, 0, sizeof(*m));
    if (f == NULL)
        return agg_err_set(err, errno == ENOENT ? AGG_ENOTFOUND : AGG_ERR,
                           "could not open \"%s\": %s", path, strerror(errno));
    for (;;) {
        size_t n;

        if (cap - len < 4096) {
            char *t = agg_realloc(text, cap + 65536);

            if (t == NULL) {
                rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
                goto out;
            }
            text = t;
            cap += 65536;
        }
        n = fread(text + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (len > 1024 * 1024) {
            rc = agg_err_set(err, AGG_EINVAL, "manifest \"%s\" is too large", path);
            goto out;
        }
    }
    text[len] = '\0';
    root = yajl_tree_parse(text, ebuf, sizeof(ebuf));
    if (root == NULL || !YAJL_IS_OBJECT(root)) {
        rc = agg_err_set(err, AGG_EINVAL, "manifest \"%s\" is not a JSON object", path);
        goto out;
    }
    if (copy_str(root, "table", m->table, sizeof(m->table), false) != AGG_OK ||
        copy_str(root, "month", month, sizeof(month), false) != AGG_OK ||
        st_archive_month_parse(month, &m->month) != AGG_OK ||
        copy_str(root, "min_created_at", m->min_created_at, sizeof(m->min_created_at), true) !=
            AGG_OK ||
        copy_str(root, "max_created_at", m->max_created_at, sizeof(m->max_created_at), true) !=
            AGG_OK ||
        copy_str(root, "sha256", m->sha256, sizeof(m->sha256), false) != AGG_OK ||
        strlen(m->sha256) != 64 ||
        copy_str(root, "aggd_version", m->aggd_version, sizeof(m->aggd_version), true) != AGG_OK) {
        rc =
            agg_err_set(err, AGG_EINVAL, "manifest \"%s\" has a missing or bad string field", path);
        goto out;
    }
    if (get_int(root, "schema_version", &v, false) != AGG_OK || v < 0 || v > 1000000)
        goto bad_int;
    m->schema_version = (int)v;
    if (get_int(root, "rows", &v, false) != AGG_OK || v < 0)
        goto bad_int;
    m->rows = (uint64_t)v;
    if (get_int(root, "compressed_bytes", &v, false) != AGG_OK || v < 0)
        goto bad_int;
    m->compressed_bytes = (uint64_t)v;
    if (get_int(root, "min_id", &v, true) != AGG_OK)
        goto bad_int;
    m->min_id = v;
    if (get_int(root, "max_id", &v, true) != AGG_OK)
        goto bad_int;
    m->max_id = v;
    arr = yajl_tree_get(root, cols, yajl_t_array);
    if (arr == NULL || YAJL_GET_ARRAY(arr)->len == 0 ||
        YAJL_GET_ARRAY(arr)->len > ST_ARCHIVE_MAX_COLUMNS) {
        rc = agg_err_set(err, AGG_EINVAL, "manifest \"%s\" has a bad column list", path);
        goto out;
    }
    for (size_t i = 0; i < YAJL_GET_ARRAY(arr)->len; i++) {
        yajl_val c = YAJL_GET_ARRAY(arr)->values[i];
        const char *s = YAJL_IS_STRING(c) ? YAJL_GET_STRING(c) : NULL;

        if (s == NULL || strlen(s) == 0 || strlen(s) >= ST_ARCHIVE_NAME_MAX) {
            rc = agg_err_set(err, AGG_EINVAL, "manifest \"%s\" has a bad column name", path);
            goto out;
        }
        memcpy(m->columns[i], s, strlen(s) + 1);
        m->ncolumns++;
    }
    rc = AGG_OK;
    goto out;

bad_int:
    rc = agg_err_set(err, AGG_EINVAL, "manifest \"%s\" has a missing or bad number", path);
out:
    yajl_tree_free(root);
    free(text);
    fclose(f);
    return rc;
}
