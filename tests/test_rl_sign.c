/*
 * tests/test_rl_sign.c — Standard Webhooks signatures: the spec's test vector, vectors
 * computed with Python's hmac module (an independent implementation), bad secrets,
 * and fresh secrets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "rules/sign.h"

static void test_sign_matches_standard_webhooks_vector(void **state)
{
    const char body[] = "{\"test\": 2432232314}";
    char sig[RL_SIGN_SIZE];
    struct agg_err err = {0};

    (void)state;
    assert_int_equal(rl_sign_webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                     "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                                     sizeof(body) - 1, sig, sizeof(sig), &err),
                     AGG_OK);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

static void test_sign_accepts_bare_key_and_empty_body(void **state)
{
    char sig[RL_SIGN_SIZE];

    (void)state;
    /* python3: hmac.new(b64decode(key), b"msg_2.0.", sha256) */
    assert_int_equal(rl_sign_webhook("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_2", 0, NULL, 0, sig,
                                     sizeof(sig), NULL),
                     AGG_OK);
    assert_string_equal(sig, "v1,lZuAF50VFkFoxyuE5wrLldoSs1YJ7rrEYxZ9JpMXPBs=");
}

static void test_sign_handles_long_key_and_negative_timestamp(void **state)
{
    const char body[] = "{\"a\":1}";
    char sig[RL_SIGN_SIZE];

    (void)state;
    /* key bytes 0..63, longer than the SHA-256 block: HMAC hashes it first */
    assert_int_equal(
        rl_sign_webhook("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKiss"
                        "LS4vMDEyMzQ1Njc4OTo7PD0+Pw==",
                        "id-7", -5, body, sizeof(body) - 1, sig, sizeof(sig), NULL),
        AGG_OK);
    assert_string_equal(sig, "v1,4Z5fqRgYx3b9ibShOt3E3dCK8NbPCpWfudCvhB97K78=");
}

static void test_sign_rejects_bad_secrets_without_quoting_them(void **state)
{
    static const char *const bad[] = {
        "",
        "whsec_",
        "whsec_not base64!",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw!", /* trailing garbage */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",   /* not a whole base64 quantum */
        "whsec_MfKQ9r8GKYqrTwjU-D8ILPZIo2LaLaSw",  /* URL-safe alphabet */
    };
    char sig[RL_SIGN_SIZE];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct agg_err err = {0};

        assert_int_equal(
            rl_sign_webhook(bad[i], "msg", 1, "x", 1, sig, sizeof(sig), &err), AGG_EINVAL);
        assert_non_null(strstr(err.msg, "secret"));
        if (strlen(bad[i]) > 6) /* the key part is never echoed */
            assert_null(strstr(err.msg, bad[i] + 6));
    }
}

static void test_sign_rejects_missing_id_and_small_buffer(void **state)
{
    const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    char sig[RL_SIGN_SIZE];
    struct agg_err err = {0};

    (void)state;
    assert_int_equal(rl_sign_webhook(secret, "", 1, "x", 1, sig, sizeof(sig), &err), AGG_EINVAL);
    assert_int_equal(rl_sign_webhook(secret, NULL, 1, "x", 1, sig, sizeof(sig), &err),
                     AGG_EINVAL);
    assert_int_equal(rl_sign_webhook(NULL, "m", 1, "x", 1, sig, sizeof(sig), &err), AGG_EINVAL);
    assert_int_equal(rl_sign_webhook(secret, "m", 1, "x", 1, sig, RL_SIGN_SIZE - 1, &err),
                     AGG_EFULL);
}

static void test_sign_secret_new_is_random_whsec_of_24_bytes(void **state)
{
    char a[RL_SIGN_SECRET_SIZE], b[RL_SIGN_SECRET_SIZE], sig[RL_SIGN_SIZE];
    unsigned char raw[64];
    size_t n = 0;

    (void)state;
    assert_int_equal(rl_sign_secret_new(a, sizeof(a)), AGG_OK);
    assert_int_equal(rl_sign_secret_new(b, sizeof(b)), AGG_OK);
    assert_string_not_equal(a, b);
    assert_memory_equal(a, "whsec_", 6);
    assert_int_equal(strlen(a), RL_SIGN_SECRET_SIZE - 1);
    assert_int_equal(sodium_base642bin(raw, sizeof(raw), a + 6, strlen(a + 6), NULL, &n, NULL,
                                       sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(n, 24);
    assert_int_equal(rl_sign_webhook(a, "m", 1, "x", 1, sig, sizeof(sig), NULL), AGG_OK);
    assert_int_equal(rl_sign_secret_new(a, RL_SIGN_SECRET_SIZE - 1), AGG_EFULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_matches_standard_webhooks_vector),
        cmocka_unit_test(test_sign_accepts_bare_key_and_empty_body),
        cmocka_unit_test(test_sign_handles_long_key_and_negative_timestamp),
        cmocka_unit_test(test_sign_rejects_bad_secrets_without_quoting_them),
        cmocka_unit_test(test_sign_rejects_missing_id_and_small_buffer),
        cmocka_unit_test(test_sign_secret_new_is_random_whsec_of_24_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
