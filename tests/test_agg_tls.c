/*
 * tests/test_agg_tls.c — the server TLS context: built from a matching certificate and
 * key, errors naming the file at fault, the protocol floor, reload only on a change
 * of path or contents (a bad new file keeps the old context), the config rule that a
 * TLS listener needs tls.cert_file and tls.key_file, and an allocation-failure sweep.
 *
 * Certificates are made here with OpenSSL (self-signed P-256) in a temporary
 * directory; no network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/tls.h"

struct files {
    char dir[64];
    char cert[128], key[128], other_key[128];
    struct agg_tls_opts opts;
};

/* A self-signed certificate with <serial> into <cert>, its key into <key>. */
static void make_cert(const char *cert, const char *key, long serial)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name;
    FILE *f;

    assert_non_null(pk);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"aggd", -1, -1, 0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    f = fopen(cert, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static int setup(void **state)
{
    struct files *fs = calloc(1, sizeof(*fs));

    snprintf(fs->dir, sizeof(fs->dir), "/tmp/aggd-tls-unit.XXXXXX");
    assert_non_null(mkdtemp(fs->dir));
    snprintf(fs->cert, sizeof(fs->cert), "%s/cert.pem", fs->dir);
    snprintf(fs->key, sizeof(fs->key), "%s/key.pem", fs->dir);
    snprintf(fs->other_key, sizeof(fs->other_key), "%s/other.key", fs->dir);
    make_cert(fs->cert, fs->other_key, 7); /* a key of another certificate */
    make_cert(fs->cert, fs->key, 1);
    fs->opts = (struct agg_tls_opts){fs->cert, fs->key, ""};
    *state = fs;
    return 0;
}

static int teardown(void **state)
{
    struct files *fs = *state;

    unlink(fs->cert);
    unlink(fs->key);
    unlink(fs->other_key);
    rmdir(fs->dir);
    free(fs);
    return 0;
}

/* The serial of the certificate a new connection of <t> would present. */
static long served_serial(struct agg_tls *t)
{
    struct event_base *base = event_base_new();
    struct bufferevent *bev = agg_tls_bufferevent_new(t, base, -1, BEV_OPT_CLOSE_ON_FREE);
    long serial;

    assert_non_null(bev);
    serial = ASN1_INTEGER_get(
        X509_get0_serialNumber(SSL_get_certificate(bufferevent_openssl_get_ssl(bev))));
    bufferevent_free(bev);
    event_base_free(base);
    return serial;
}

static void test_tls_new_builds_from_a_matching_certificate_and_key(void **state)
{
    struct files *fs = *state;
    struct agg_err err = {0};
    struct agg_tls *t = agg_tls_new(&fs->opts, &err);
    struct event_base *base = event_base_new();
    struct bufferevent *bev;
    SSL *ssl;

    assert_non_null(t);
    assert_int_equal(served_serial(t), 1);
    bev = agg_tls_bufferevent_new(t, base, -1, BEV_OPT_CLOSE_ON_FREE);
    ssl = bufferevent_openssl_get_ssl(bev);
    assert_int_equal(SSL_get_min_proto_version(ssl), TLS1_2_VERSION);
    assert_true(SSL_get_options(ssl) & SSL_OP_NO_COMPRESSION);
    assert_true(SSL_get_options(ssl) & SSL_OP_NO_RENEGOTIATION);
    assert_int_equal(SSL_get_verify_mode(ssl), SSL_VERIFY_NONE);
    bufferevent_free(bev);
    event_base_free(base);
    agg_tls_free(t);
    agg_tls_free(NULL);
}

static void test_tls_new_names_the_file_at_fault(void **state)
{
    struct files *fs = *state;
    struct agg_err err = {0};
    struct agg_tls_opts o = fs->opts;

    o.cert_file = "/nonexistent/cert.pem";
    assert_null(agg_tls_new(&o, &err));
    assert_non_null(strstr(err.msg, "/nonexistent/cert.pem"));
    o = fs->opts;
    o.key_file = fs->other_key;
    assert_null(agg_tls_new(&o, &err));
    assert_non_null(strstr(err.msg, "tls.key_file"));
    assert_non_null(strstr(err.msg, fs->other_key));
    o = fs->opts;
    o.client_ca_file = fs->key; /* no certificate in it */
    assert_null(agg_tls_new(&o, &err));
    assert_non_null(strstr(err.msg, "tls.client_ca_file"));
}

static void test_tls_client_ca_requires_a_client_certificate(void **state)
{
    struct files *fs = *state;
    struct agg_err err = {0};
    struct agg_tls_opts o = fs->opts;
    struct agg_tls *t;
    struct event_base *base = event_base_new();
    struct bufferevent *bev;

    o.client_ca_file = fs->cert;
    t = agg_tls_new(&o, &err);
    assert_non_null(t);
    bev = agg_tls_bufferevent_new(t, base, -1, BEV_OPT_CLOSE_ON_FREE);
    assert_int_equal(SSL_get_verify_mode(bufferevent_openssl_get_ssl(bev)),
                     SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    bufferevent_free(bev);
    event_base_free(base);
    agg_tls_free(t);
}

static void test_tls_reload_swaps_only_on_a_change_and_keeps_the_old_on_error(void **state)
{
    struct files *fs = *state;
    struct agg_err err = {0};
    struct agg_tls *t = agg_tls_new(&fs->opts, &err);
    bool changed = true;
    FILE *f;

    assert_non_null(t);
    assert_int_equal(agg_tls_reload(t, &fs->opts, &changed, &err), AGG_OK);
    assert_false(changed);
    make_cert(fs->cert, fs->key, 2); /* same paths, new contents */
    assert_int_equal(agg_tls_reload(t, &fs->opts, &changed, &err), AGG_OK);
    assert_true(changed);
    assert_int_equal(served_serial(t), 2);
    f = fopen(fs->cert, "w");
    fputs("not a certificate\n", f);
    fclose(f);
    assert_int_not_equal(agg_tls_reload(t, &fs->opts, &changed, &err), AGG_OK);
    assert_false(changed);
    assert_non_null(strstr(err.msg, "tls.cert_file"));
    assert_int_equal(served_serial(t), 2);
    make_cert(fs->cert, fs->key, 1);
    agg_tls_free(t);
}

static void test_tls_listener_needs_cert_and_key_in_config(void **state)
{
    char *sets[] = {"listen.syslog_tls=127.0.0.1:6514", "tls.cert_file=/x.pem"};
    struct agg_err err = {0};
    struct agg_config *cfg;

    (void)state;
    assert_null(agg_config_build(NULL, NULL, sets, 1, &err));
    assert_non_null(strstr(err.msg, "tls.cert_file"));
    assert_null(agg_config_build(NULL, NULL, sets, 2, &err));
    assert_non_null(strstr(err.msg, "tls.key_file"));
    cfg = agg_config_build(NULL, NULL, NULL, 0, &err);
    assert_non_null(cfg);
    assert_string_equal(cfg->listen.syslog_tls, "");
    assert_string_equal(cfg->listen.https, "");
    agg_config_free(cfg);
}

static void test_tls_new_and_reload_survive_allocation_failures(void **state)
{
    struct files *fs = *state;
    struct agg_tls *t = NULL;

    for (long n = 0; t == NULL; n++) {
        struct agg_err err = {0};

        agg_alloc_fail_after(n);
        t = agg_tls_new(&fs->opts, &err);
        agg_alloc_fail_after(-1);
        if (t == NULL)
            assert_int_equal(err.code, AGG_ENOMEM);
    }
    make_cert(fs->cert, fs->key, 3);
    for (long n = 0;; n++) {
        struct agg_err err = {0};
        bool changed = false;
        int rc;

        agg_alloc_fail_after(n);
        rc = agg_tls_reload(t, &fs->opts, &changed, &err);
        agg_alloc_fail_after(-1);
        if (rc == AGG_OK) {
            assert_true(changed);
            break;
        }
        assert_int_equal(rc, AGG_ENOMEM);
        assert_int_equal(served_serial(t), 1); /* the old one stays */
    }
    assert_int_equal(served_serial(t), 3);
    agg_tls_free(t);
    make_cert(fs->cert, fs->key, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tls_new_builds_from_a_matching_certificate_and_key,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_new_names_the_file_at_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_client_ca_requires_a_client_certificate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_tls_reload_swaps_only_on_a_change_and_keeps_the_old_on_error, setup, teardown),
        cmocka_unit_test(test_tls_listener_needs_cert_and_key_in_config),
        cmocka_unit_test_setup_teardown(test_tls_new_and_reload_survive_allocation_failures, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
