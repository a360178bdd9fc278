/*
 * core/tls.c — server TLS contexts (OpenSSL) and their bufferevents.
 *
 * Place: see core/tls.h.
 * Threads: event-loop thread only.
 * Ownership: <t->ctx> is ours; SSL_new() takes a reference, so a context swapped out
 *            by a reload lives until its last connection is freed.
 * Traps: a reload compares SHA-256 digests of the files, not their times: a cert
 *        replaced by a copy with an old mtime is still seen.
 */
#include "core/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "core/alloc.h"

/* What a client may negotiate: OpenSSL's defaults without the weak families. */
#define CIPHERS "DEFAULT:!3DES:!RC4:!aNULL:!eNULL:!EXPORT:!MD5"
#define FILES   3

struct agg_tls {
    SSL_CTX *ctx;
    char *path[FILES]; /* cert, key, client CA ("" none) */
    unsigned char digest[FILES][EVP_MAX_MD_SIZE];
};

/* OpenSSL's reason for the last failure, or <fallback>. */
static const char *ssl_reason(char *buf, size_t size, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();

    if (e == 0)
        return fallback;
    ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return buf;
}

/* SHA-256 of the file at <path> into <out> ("": all zero). */
static int digest_file(const char *path, unsigned char out[EVP_MAX_MD_SIZE], struct agg_err *err)
{
    unsigned char chunk[4096];
    EVP_MD_CTX *md;
    FILE *f;
    size_t n;
    int rc = AGG_OK;

    memset(out, 0, EVP_MAX_MD_SIZE);
    if (path[0] == '\0')
        return AGG_OK;
    f = fopen(path, "rb");
    if (f == NULL)
        return agg_err_set(err, AGG_EINVAL, "could not open \"%s\": %s", path, strerror(errno));
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto out;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        EVP_DigestUpdate(md, chunk, n);
    if (ferror(f))
        rc = agg_err_set(err, AGG_EINVAL, "could not read \"%s\": %s", path, strerror(errno));
    else
        EVP_DigestFinal_ex(md, out, NULL);
out:
    EVP_MD_CTX_free(md);
    fclose(f);
    return rc;
}

static const char *opt_path(const struct agg_tls_opts *o, int i)
{
    const char *p[FILES] = {o->cert_file, o->key_file, o->client_ca_file};

    return p[i] != NULL ? p[i] : "";
}

/* A context from the files of <o>; NULL + <err> naming the file at fault. */
static SSL_CTX *build(const struct agg_tls_opts *o, struct agg_err *err)
{
    const char *ca = opt_path(o, 2);
    SSL_CTX *ctx;
    char why[256];

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        agg_err_set(err, AGG_ENOMEM, "could not create a TLS context: %s",
                    ssl_reason(why, sizeof(why), "out of memory"));
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, CIPHERS) != 1 ||
        SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"aggd", 4) != 1) {
        agg_err_set(err, AGG_ERR, "could not set up a TLS context: %s",
                    ssl_reason(why, sizeof(why), "unknown error"));
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, opt_path(o, 0)) != 1) {
        agg_err_set(err, AGG_EINVAL, "could not load the certificate of tls.cert_file \"%s\": %s",
                    opt_path(o, 0), ssl_reason(why, sizeof(why), "no certificate"));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, opt_path(o, 1), SSL_FILETYPE_PEM) != 1) {
        agg_err_set(err, AGG_EINVAL, "could not load the key of tls.key_file \"%s\": %s",
                    opt_path(o, 1), ssl_reason(why, sizeof(why), "no key"));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        agg_err_set(err, AGG_EINVAL, "tls.key_file \"%s\" does not match tls.cert_file \"%s\": %s",
                    opt_path(o, 1), opt_path(o, 0), ssl_reason(why, sizeof(why), "mismatch"));
        goto fail;
    }
    if (ca[0] != '\0') {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);

        if (names == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            if (names != NULL)
                sk_X509_NAME_pop_free(names, X509_NAME_free);
            agg_err_set(err, AGG_EINVAL,
                        "could not load the certificates of tls.client_ca_file \"%s\": %s", ca,
                        ssl_reason(why, sizeof(why), "no certificate"));
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* takes <names> */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Builds from <o> into <t>, replacing its context, paths and digests; <t> is left as
 * it was on error. */
static int load(struct agg_tls *t, const struct agg_tls_opts *o, struct agg_err *err)
{
    unsigned char digest[FILES][EVP_MAX_MD_SIZE];
    char *path[FILES] = {NULL};
    SSL_CTX *ctx;

    for (int i = 0; i < FILES; i++) {
        if (digest_file(opt_path(o, i), digest[i], err) != AGG_OK)
            return AGG_EINVAL;
    }
    ctx = build(o, err);
    if (ctx == NULL)
        return AGG_EINVAL;
    for (int i = 0; i < FILES; i++) {
        path[i] = agg_strdup(opt_path(o, i));
        if (path[i] == NULL) {
            for (int j = 0; j < i; j++)
                free(path[j]);
            SSL_CTX_free(ctx);
            return agg_err_set(err, AGG_ENOMEM, "out of memory");
        }
    }
    SSL_CTX_free(t->ctx); /* open connections hold their own reference */
    t->ctx = ctx;
    for (int i = 0; i < FILES; i++) {
        free(t->path[i]);
        t->path[i] = path[i];
    }
    memcpy(t->digest, digest, sizeof(digest));
    return AGG_OK;
}

struct agg_tls *agg_tls_new(const struct agg_tls_opts *opts, struct agg_err *err)
{
    struct agg_tls *t = agg_calloc(1, sizeof(*t));

    if (t == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    if (load(t, opts, err) != AGG_OK) {
        agg_tls_free(t);
        return NULL;
    }
    return t;
}

void agg_tls_free(struct agg_tls *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    for (int i = 0; i < FILES; i++)
        free(t->path[i]);
    free(t);
}

int agg_tls_reload(struct agg_tls *t, const struct agg_tls_opts *opts, bool *changed,
                   struct agg_err *err)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    bool same = true;

    *changed = false;
    for (int i = 0; i < FILES && same; i++) {
        if (strcmp(t->path[i], opt_path(opts, i)) != 0 ||
            digest_file(opt_path(opts, i), digest, NULL) != AGG_OK ||
            memcmp(digest, t->digest[i], sizeof(digest)) != 0)
            same = false;
    }
    if (same)
        return AGG_OK;
    if (load(t, opts, err) != AGG_OK)
        return err != NULL ? err->code : AGG_EINVAL;
    *changed = true;
    return AGG_OK;
}

struct bufferevent *agg_tls_bufferevent_new(struct agg_tls *t, struct event_base *base,
                                            evutil_socket_t fd, int options)
{
    SSL *ssl = SSL_new(t->ctx);
    struct bufferevent *bev;

    if (ssl == NULL)
        return NULL;
    bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, options);
    if (bev == NULL)
        return NULL; /* libevent 2.1 frees <ssl> on this path */
    /* senders that just close (no close_notify) end the stream, not fail it */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

int agg_tls_write_now(struct bufferevent *bev, const void *data, int len)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    int n, e;

    if (ssl == NULL)
        return -1;
    ERR_clear_error();
    n = SSL_write(ssl, data, len);
    if (n > 0)
        return 1;
    e = SSL_get_error(ssl, n);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? 0 : -1;
}

void agg_tls_close_notify(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);

    if (ssl != NULL && SSL_is_init_finished(ssl))
        SSL_shutdown(ssl); /* one alert, written now or never: the socket closes next */
    ERR_clear_error();
}
