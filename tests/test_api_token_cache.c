/*
 * tests/test_api_token_cache.c — which remembered token verdict is served when: fresh
 * ones while PostgreSQL answers, valid ones only while it does not, and a bound that
 * random tokens cannot use to push valid ones out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api/token_cache.h"
#include "core/alloc.h"

#define S INT64_C(1000000) /* one second in microseconds */
#define T0 (1000 * S)      /* an arbitrary monotonic start */

/* A distinct 64-hex-digit "hash" for <n>; hashes of one <group> share the first 8
 * digits (the quick compare), so the full compare must tell them apart. */
static void hash_of(int group, int n, char out[API_AUTH_TOKEN_HASH_SIZE])
{
    snprintf(out, API_AUTH_TOKEN_HASH_SIZE, "%08x%056x", (unsigned)group, (unsigned)n);
}

static struct api_principal principal(int user, long long expires_s)
{
    struct api_principal who = {.user_id = user, .token_id = user * 10,
                                .token_expires_s = expires_s};

    snprintf(who.email, sizeof(who.email), "u%d@example.com", user);
    snprintf(who.role, sizeof(who.role), "editor");
    return who;
}

static struct api_token_cache *cache_new(size_t cap)
{
    struct api_token_cache *c = api_token_cache_new(cap, NULL);

    assert_non_null(c);
    assert_true(api_token_cache_check(c));
    return c;
}

static void put(struct api_token_cache *c, const char *hash, const char *scope, int status,
                int user, int64_t now_us)
{
    struct api_principal who = principal(user, 0);

    api_token_cache_put(c, hash, scope, status, &who, now_us);
    assert_true(api_token_cache_check(c));
}

static void test_token_cache_serves_fresh_verdicts_only(void **state)
{
    struct api_token_cache *c = cache_new(8);
    struct api_principal who = {0};
    char good[API_AUTH_TOKEN_HASH_SIZE], bad[API_AUTH_TOKEN_HASH_SIZE];

    (void)state;
    hash_of(1, 1, good);
    hash_of(1, 2, bad);
    assert_int_equal(api_token_cache_get(c, good, "ingest", T0, &who), AGG_EAGAIN);
    put(c, good, "ingest", AGG_OK, 7, T0);
    put(c, bad, "ingest", AGG_ENOTFOUND, 0, T0);
    assert_int_equal(api_token_cache_get(c, good, "ingest", T0 + 30 * S - 1, &who), AGG_OK);
    assert_int_equal(who.user_id, 7);
    assert_string_equal(who.email, "u7@example.com");
    assert_int_equal(api_token_cache_get(c, good, "ingest", T0 + 30 * S, &who), AGG_EAGAIN);
    assert_int_equal(api_token_cache_get(c, bad, "ingest", T0 + 5 * S - 1, &who),
                     AGG_ENOTFOUND);
    assert_int_equal(api_token_cache_get(c, bad, "ingest", T0 + 5 * S, &who), AGG_EAGAIN);
    /* a verdict is per scope */
    assert_int_equal(api_token_cache_get(c, good, "api", T0, &who), AGG_EAGAIN);
    assert_true(api_token_cache_check(c));
    api_token_cache_free(c);
}

static void test_token_cache_serves_a_valid_verdict_stale_while_the_database_is_away(
    void **state)
{
    struct api_token_cache *c = cache_new(8);
    struct api_principal who = {0};
    char h[API_AUTH_TOKEN_HASH_SIZE];

    (void)state;
    hash_of(1, 1, h);
    assert_int_equal(api_token_cache_get_stale(c, h, "ingest", 0, &who), AGG_EDB);
    put(c, h, "ingest", AGG_OK, 3, T0);
    /* hours later, PostgreSQL not having answered since */
    assert_int_equal(api_token_cache_get(c, h, "ingest", T0 + 3600 * S, &who), AGG_EAGAIN);
    assert_int_equal(api_token_cache_get_stale(c, h, "ingest", 1700000000, &who), AGG_OK);
    assert_int_equal(who.user_id, 3);
    assert_int_equal(api_token_cache_get_stale(c, h, "api", 1700000000, &who), AGG_EDB);
    api_token_cache_free(c);
}

static void test_token_cache_never_serves_a_negative_or_unknown_verdict_stale(void **state)
{
    struct api_token_cache *c = cache_new(8);
    struct api_principal who = {0};
    char revoked[API_AUTH_TOKEN_HASH_SIZE], unknown[API_AUTH_TOKEN_HASH_SIZE];

    (void)state;
    hash_of(1, 1, revoked);
    hash_of(1, 2, unknown);
    put(c, revoked, "ingest", AGG_OK, 1, T0);
    put(c, revoked, "ingest", AGG_ENOTFOUND, 0, T0 + 31 * S); /* revoked since */
    assert_int_equal(api_token_cache_count(c), 1);                 /* replaced, not added */
    assert_int_equal(api_token_cache_get(c, revoked, "ingest", T0 + 32 * S, &who), AGG_ENOTFOUND);
    assert_int_equal(api_token_cache_get_stale(c, revoked, "ingest", 0, &who), AGG_EDB);
    assert_int_equal(api_token_cache_get_stale(c, unknown, "ingest", 0, &who), AGG_EDB);
    /* errors are not verdicts */
    put(c, unknown, "ingest", AGG_EDB, 1, T0 + 40 * S);
    assert_int_equal(api_token_cache_count(c), 1);
    api_token_cache_free(c);
}

static void test_token_cache_stale_verdict_ends_when_the_token_expires(void **state)
{
    struct api_token_cache *c = cache_new(8);
    struct api_principal who = principal(5, 1700000000), got = {0};
    char h[API_AUTH_TOKEN_HASH_SIZE];

    (void)state;
    hash_of(1, 1, h);
    api_token_cache_put(c, h, "ingest", AGG_OK, &who, T0);
    assert_int_equal(api_token_cache_get_stale(c, h, "ingest", 1700000000 - 1, &got), AGG_OK);
    assert_int_equal(got.token_expires_s, 1700000000);
    assert_int_equal(api_token_cache_get_stale(c, h, "ingest", 1700000000, &got), AGG_EDB);
    api_token_cache_free(c);
}

static void test_token_cache_stale_verdict_must_be_recent_at_the_last_answer(void **state)
{
    struct api_token_cache *c = cache_new(8);
    struct api_principal who = {0};
    char old[API_AUTH_TOKEN_HASH_SIZE], recent[API_AUTH_TOKEN_HASH_SIZE];
    int64_t window = API_TOKEN_CACHE_STALE_WINDOW_S * S;

    (void)state;
    hash_of(1, 1, old);
    hash_of(2, 1, recent);
    put(c, old, "ingest", AGG_OK, 1, T0);
    put(c, recent, "ingest", AGG_OK, 2, T0 + window);
    assert_int_equal(api_token_cache_get_stale(c, old, "ingest", 0, &who), AGG_OK);
    /* PostgreSQL answered later: the old verdict may be out of date (revoked unseen) */
    put(c, recent, "ingest", AGG_OK, 2, T0 + window + 1);
    assert_int_equal(api_token_cache_get_stale(c, old, "ingest", 0, &who), AGG_EDB);
    assert_int_equal(api_token_cache_get_stale(c, recent, "ingest", 0, &who), AGG_OK);
    api_token_cache_free(c);
}

static void test_token_cache_forget_drops_every_scope_of_a_token(void **state)
{
    struct api_token_cache *c = cache_new(8);
    struct api_principal who = {0};
    char h[API_AUTH_TOKEN_HASH_SIZE], other[API_AUTH_TOKEN_HASH_SIZE];

    (void)state;
    hash_of(1, 1, h);
    hash_of(1, 2, other);
    put(c, h, "ingest", AGG_OK, 1, T0);
    put(c, other, "api", AGG_OK, 2, T0);
    put(c, h, "api", AGG_OK, 1, T0);
    api_token_cache_forget(c, h);
    assert_true(api_token_cache_check(c));
    assert_int_equal(api_token_cache_count(c), 1);
    assert_int_equal(api_token_cache_get(c, h, "ingest", T0, &who), AGG_EAGAIN);
    assert_int_equal(api_token_cache_get_stale(c, h, "api", 0, &who), AGG_EDB);
    assert_int_equal(api_token_cache_get(c, other, "api", T0, &who), AGG_OK);
    api_token_cache_free(c);
}

static void test_token_cache_random_tokens_never_push_out_valid_ones(void **state)
{
    struct api_token_cache *c = cache_new(API_TOKEN_CACHE_SIZE);
    struct api_principal who = {0};
    char h[API_AUTH_TOKEN_HASH_SIZE];

    (void)state;
    for (int i = 0; i < 10; i++) {
        hash_of(7, i, h);
        put(c, h, "ingest", AGG_OK, i, T0);
    }
    for (int i = 0; i < 5000; i++) { /* a hostile client: a new token each time */
        hash_of(9, i, h);
        api_token_cache_put(c, h, "ingest", AGG_ENOTFOUND, NULL, T0 + i);
    }
    assert_true(api_token_cache_check(c));
    assert_int_equal(api_token_cache_count(c), API_TOKEN_CACHE_SIZE);
    for (int i = 0; i < 10; i++) {
        hash_of(7, i, h);
        assert_int_equal(api_token_cache_get_stale(c, h, "ingest", 0, &who), AGG_OK);
    }
    /* the newest negative verdicts are the ones kept */
    hash_of(9, 4999, h);
    assert_int_equal(api_token_cache_get(c, h, "ingest", T0 + 5000, &who), AGG_ENOTFOUND);
    hash_of(9, 0, h);
    assert_int_equal(api_token_cache_get(c, h, "ingest", T0 + 5000, &who), AGG_EAGAIN);
    api_token_cache_free(c);
}

static void test_token_cache_full_of_valid_tokens_drops_the_least_recently_used(void **state)
{
    static const int kept[] = {0, 2, 3, 9};
    struct api_token_cache *c = cache_new(4);
    struct api_principal who = {0};
    char h[API_AUTH_TOKEN_HASH_SIZE];

    (void)state;
    for (int i = 0; i < 4; i++) {
        hash_of(1, i, h);
        put(c, h, "ingest", AGG_OK, i, T0);
    }
    hash_of(1, 0, h);
    assert_int_equal(api_token_cache_get(c, h, "ingest", T0 + 1, &who), AGG_OK); /* 1 is LRU */
    hash_of(1, 9, h);
    put(c, h, "ingest", AGG_ENOTFOUND, 0, T0 + 2); /* no room for a negative verdict */
    assert_int_equal(api_token_cache_get(c, h, "ingest", T0 + 2, &who), AGG_EAGAIN);
    put(c, h, "ingest", AGG_OK, 9, T0 + 2); /* a valid one takes the LRU's place */
    assert_int_equal(api_token_cache_count(c), 4);
    hash_of(1, 1, h);
    assert_int_equal(api_token_cache_get(c, h, "ingest", T0 + 3, &who), AGG_EAGAIN);
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        hash_of(1, kept[i], h);
        assert_int_equal(api_token_cache_get(c, h, "ingest", T0 + 3, &who), AGG_OK);
    }
    api_token_cache_free(c);
}

static void test_token_cache_new_survives_allocation_failure(void **state)
{
    struct agg_err err = {0};

    (void)state;
    assert_null(api_token_cache_new(0, &err));
    for (long n = 0;; n++) {
        struct api_token_cache *c;

        agg_alloc_fail_after(n);
        c = api_token_cache_new(16, &err);
        agg_alloc_fail_after(-1);
        if (c != NULL) {
            api_token_cache_free(c);
            break;
        }
        assert_int_equal(err.code, AGG_ENOMEM);
    }
    api_token_cache_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_cache_serves_fresh_verdicts_only),
        cmocka_unit_test(test_token_cache_serves_a_valid_verdict_stale_while_the_database_is_away),
        cmocka_unit_test(test_token_cache_never_serves_a_negative_or_unknown_verdict_stale),
        cmocka_unit_test(test_token_cache_stale_verdict_ends_when_the_token_expires),
        cmocka_unit_test(test_token_cache_stale_verdict_must_be_recent_at_the_last_answer),
        cmocka_unit_test(test_token_cache_forget_drops_every_scope_of_a_token),
        cmocka_unit_test(test_token_cache_random_tokens_never_push_out_valid_ones),
        cmocka_unit_test(test_token_cache_full_of_valid_tokens_drops_the_least_recently_used),
        cmocka_unit_test(test_token_cache_new_survives_allocation_failure),
    };

    return cmocka_run_group_tests_name("api_token_cache", tests, NULL, NULL);
}
