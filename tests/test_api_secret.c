/*
 * tests/test_api_secret.c — secrets at rest: sealing round trips, and opening refuses
 * another key, an altered box and a truncated one; the key file is made 0600 and
 * refused when it has the wrong size or mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/secret.h"
#include "core/alloc.h"

static const unsigned char key_a[API_SECRET_KEY_BYTES] = "0123456789abcdef0123456789abcdef";
static const unsigned char key_b[API_SECRET_KEY_BYTES] = "fedcba9876543210fedcba9876543210";

static struct api_secrets *key(const unsigned char *k)
{
    struct agg_err err = {0};
    struct api_secrets *s = api_secrets_new(k, API_SECRET_KEY_BYTES, &err);

    assert_non_null(s);
    return s;
}

/* Seals <plain> with <s>: the stored text (caller frees). */
static char *seal(const struct api_secrets *s, const char *plain)
{
    struct agg_buf out;

    agg_buf_init(&out);
    assert_int_equal(api_secret_seal(s, plain, strlen(plain), &out), AGG_OK);
    return out.data;
}

static void test_secret_seal_round_trips(void **state)
{
    struct api_secrets *s = key(key_a);
    char *a = seal(s, "hunter2"), *b = seal(s, "hunter2"), *plain = NULL;
    struct agg_err err = {0};
    size_t len = 0;

    (void)state;
    assert_int_equal(strncmp(a, API_SECRET_PREFIX, strlen(API_SECRET_PREFIX)), 0);
    assert_null(strstr(a, "hunter2"));
    assert_string_not_equal(a, b); /* a fresh nonce each time */
    assert_int_equal(api_secret_open(s, a, &plain, &len, &err), AGG_OK);
    assert_int_equal(len, 7);
    assert_string_equal(plain, "hunter2");
    api_secret_plain_free(plain, len);
    assert_int_equal(api_secret_open(s, b, &plain, &len, &err), AGG_OK);
    assert_string_equal(plain, "hunter2");
    api_secret_plain_free(plain, len);
    free(a);
    free(b);
    api_secrets_free(s);
}

static void test_secret_seal_round_trips_the_empty_string(void **state)
{
    struct api_secrets *s = key(key_a);
    char *a = seal(s, ""), *plain = NULL;
    struct agg_err err = {0};
    size_t len = 1;

    (void)state;
    assert_int_equal(api_secret_open(s, a, &plain, &len, &err), AGG_OK);
    assert_int_equal(len, 0);
    assert_string_equal(plain, "");
    api_secret_plain_free(plain, len);
    free(a);
    api_secrets_free(s);
}

static void test_secret_open_refuses_another_key(void **state)
{
    struct api_secrets *a = key(key_a), *b = key(key_b);
    char *sealed = seal(a, "hunter2"), *plain = NULL;
    struct agg_err err = {0};
    size_t len = 0;

    (void)state;
    assert_int_equal(api_secret_open(b, sealed, &plain, &len, &err), AGG_EINVAL);
    assert_null(plain);
    assert_non_null(strstr(err.msg, "key"));
    free(sealed);
    api_secrets_free(a);
    api_secrets_free(b);
}

static void test_secret_open_refuses_an_altered_box(void **state)
{
    struct api_secrets *s = key(key_a);
    char *sealed = seal(s, "hunter2"), *plain = NULL;
    struct agg_err err = {0};
    size_t len = 0, end = strlen(sealed) - 4; /* the last digits may carry padding bits */

    (void)state;
    /* each base64 digit of nonce, tag and ciphertext in turn */
    for (size_t at = strlen(API_SECRET_PREFIX); at < end; at++) {
        char was = sealed[at];

        sealed[at] = was == 'A' ? 'B' : 'A';
        assert_int_equal(api_secret_open(s, sealed, &plain, &len, &err), AGG_EINVAL);
        assert_null(plain);
        sealed[at] = was;
    }
    assert_int_equal(api_secret_open(s, sealed, &plain, &len, &err), AGG_OK);
    api_secret_plain_free(plain, len);
    free(sealed);
    api_secrets_free(s);
}

static void test_secret_open_refuses_a_truncated_box(void **state)
{
    struct api_secrets *s = key(key_a);
    char *sealed = seal(s, "hunter2"), *plain = NULL;
    struct agg_err err = {0};
    size_t len = 0, full = strlen(sealed);

    (void)state;
    for (size_t cut = strlen(API_SECRET_PREFIX); cut < full; cut += 4) {
        sealed[cut] = '\0';
        assert_int_equal(api_secret_open(s, sealed, &plain, &len, &err), AGG_EINVAL);
        assert_null(plain);
        free(sealed);
        sealed = seal(s, "hunter2");
    }
    assert_int_equal(api_secret_open(s, "hunter2", &plain, &len, &err), AGG_EINVAL);
    assert_int_equal(api_secret_open(s, "v1:", &plain, &len, &err), AGG_EINVAL);
    free(sealed);
    api_secrets_free(s);
}

static void test_secret_seal_survives_allocation_failures(void **state)
{
    struct api_secrets *s = key(key_a);
    struct agg_buf out;
    int rc = AGG_ENOMEM;

    (void)state;
    for (long n = 0; rc != AGG_OK; n++) {
        agg_buf_init(&out);
        agg_alloc_fail_after(n);
        rc = api_secret_seal(s, "hunter2", 7, &out);
        agg_alloc_fail_after(-1);
        assert_true(rc == AGG_OK || rc == AGG_ENOMEM);
        agg_buf_clear(&out);
        assert_true(n < 100);
    }
    api_secrets_free(s);
}

static void temp_path(char *out, size_t cap, const char *name)
{
    char dir[] = "/tmp/aggd-secret-XXXXXX";

    assert_non_null(mkdtemp(dir));
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Removes <path> and the directories temp_path() made above it. */
static void remove_temp(char *path)
{
    char *slash;

    assert_int_equal(unlink(path), 0);
    while ((slash = strrchr(path, '/')) != NULL && strncmp(path, "/tmp/aggd-secret-", 17) == 0 &&
           slash > path + 4) {
        *slash = '\0';
        assert_int_equal(rmdir(path), 0);
    }
}

static void test_secret_key_file_is_made_0600_and_read_back(void **state)
{
    char path[256], *sealed, *plain = NULL;
    struct agg_err err = {0};
    struct api_secrets *a, *b;
    struct stat st;
    size_t len = 0;

    (void)state;
    temp_path(path, sizeof(path), "sub/secrets.key");
    a = api_secrets_load(path, &err);
    assert_non_null(a);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, API_SECRET_KEY_BYTES);
    b = api_secrets_load(path, &err); /* the same key again */
    assert_non_null(b);
    sealed = seal(a, "hunter2");
    assert_int_equal(api_secret_open(b, sealed, &plain, &len, &err), AGG_OK);
    assert_string_equal(plain, "hunter2");
    api_secret_plain_free(plain, len);
    free(sealed);
    api_secrets_free(a);
    api_secrets_free(b);
    remove_temp(path);
}

static void write_file(const char *path, const char *bytes, size_t len, mode_t mode)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_secret_key_file_of_another_size_is_refused(void **state)
{
    char path[256];
    struct agg_err err = {0};

    (void)state;
    temp_path(path, sizeof(path), "k");
    write_file(path, "short", 5, 0600);
    assert_null(api_secrets_load(path, &err));
    assert_non_null(strstr(err.msg, "exactly 32 bytes"));
    write_file(path, (const char *)key_a, 32, 0600);
    assert_int_equal(truncate(path, 33), 0);
    assert_null(api_secrets_load(path, &err));
    assert_non_null(strstr(err.msg, "exactly 32 bytes"));
    remove_temp(path);
}

static void test_secret_key_file_readable_by_others_is_refused(void **state)
{
    char path[256];
    struct agg_err err = {0};
    struct api_secrets *s;

    (void)state;
    temp_path(path, sizeof(path), "k");
    write_file(path, (const char *)key_a, 32, 0644);
    assert_null(api_secrets_load(path, &err));
    assert_non_null(strstr(err.msg, "group or others"));
    assert_int_equal(chmod(path, 0640), 0);
    assert_null(api_secrets_load(path, &err));
    assert_int_equal(chmod(path, 0600), 0);
    s = api_secrets_load(path, &err);
    assert_non_null(s);
    api_secrets_free(s);
    remove_temp(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_seal_round_trips),
        cmocka_unit_test(test_secret_seal_round_trips_the_empty_string),
        cmocka_unit_test(test_secret_open_refuses_another_key),
        cmocka_unit_test(test_secret_open_refuses_an_altered_box),
        cmocka_unit_test(test_secret_open_refuses_a_truncated_box),
        cmocka_unit_test(test_secret_seal_survives_allocation_failures),
        cmocka_unit_test(test_secret_key_file_is_made_0600_and_read_back),
        cmocka_unit_test(test_secret_key_file_of_another_size_is_refused),
        cmocka_unit_test(test_secret_key_file_readable_by_others_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
