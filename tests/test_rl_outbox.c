/*
 * tests/test_rl_outbox.c — the retry policy (which results retry, which are final),
 * the backoff bounds, the claim lease, and target redaction for notifications_sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rules/outbox.h"

static void test_outbox_http_statuses(void **state)
{
    const struct {
        int status, attempts;
        enum rl_delivery want;
        bool disable;
    } cases[] = {
        {200, 1, RL_DELIVERY_DELIVERED, false}, {204, 8, RL_DELIVERY_DELIVERED, false},
        {500, 1, RL_DELIVERY_RETRY, false},     {503, 7, RL_DELIVERY_RETRY, false},
        {503, 8, RL_DELIVERY_FAILED, false},    {429, 2, RL_DELIVERY_RETRY, false},
        {0, 3, RL_DELIVERY_RETRY, false},       {0, 8, RL_DELIVERY_FAILED, false},
        {400, 1, RL_DELIVERY_FAILED, false},    {404, 1, RL_DELIVERY_FAILED, false},
        {410, 1, RL_DELIVERY_FAILED, true},     {301, 1, RL_DELIVERY_FAILED, false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool disable = !cases[i].disable;

        assert_int_equal(rl_outbox_classify_http(cases[i].status, cases[i].attempts, 8, &disable),
                         cases[i].want);
        assert_int_equal(disable, cases[i].disable);
    }
}

static void test_outbox_smtp_replies(void **state)
{
    (void)state;
    assert_int_equal(rl_outbox_classify_smtp(true, 250, 1, 3), RL_DELIVERY_DELIVERED);
    assert_int_equal(rl_outbox_classify_smtp(false, 550, 1, 3), RL_DELIVERY_FAILED);
    assert_int_equal(rl_outbox_classify_smtp(false, 451, 1, 3), RL_DELIVERY_RETRY);
    assert_int_equal(rl_outbox_classify_smtp(false, 0, 2, 3), RL_DELIVERY_RETRY);
    assert_int_equal(rl_outbox_classify_smtp(false, 0, 3, 3), RL_DELIVERY_FAILED);
}

static void test_outbox_backoff_doubles_with_bounded_jitter(void **state)
{
    (void)state;
    for (int attempts = 1; attempts <= 40; attempts++) {
        int64_t full = INT64_C(1000000);

        for (int i = 1; i < attempts && full < INT64_C(3600000000); i++)
            full *= 2;
        if (full > INT64_C(3600000000))
            full = INT64_C(3600000000);
        assert_int_equal(rl_outbox_backoff_us(attempts, 0), full / 2);
        assert_true(rl_outbox_backoff_us(attempts, UINT32_MAX) <= full);
        assert_true(rl_outbox_backoff_us(attempts, UINT32_MAX) > full / 2);
    }
}

/* A lease outlasts a few sends at the timeout with room for the recording, grows with
 * the timeout, and stays positive whatever the configuration says. */
static void test_outbox_lease_outlasts_a_few_send_timeouts(void **state)
{
    const int64_t timeouts_ms[] = {100, 1000, 5000, 60000, 600000};
    int64_t prev = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(timeouts_ms) / sizeof(timeouts_ms[0]); i++) {
        int64_t lease = rl_outbox_lease_us(timeouts_ms[i]);
        int64_t send_us = timeouts_ms[i] * 1000;

        assert_true(lease >= 3 * send_us);
        assert_true(lease - send_us >= INT64_C(5000000)); /* the recording's margin */
        assert_true(lease > prev);
        prev = lease;
    }
    assert_true(rl_outbox_lease_us(0) > 0);
    assert_true(rl_outbox_lease_us(-5) == rl_outbox_lease_us(0));
    assert_true(rl_outbox_lease_us(INT64_MAX) >= rl_outbox_lease_us(600000));
    assert_true(rl_outbox_lease_us(INT64_MAX) < INT64_MAX / 2); /* now + lease never wraps */
}

static void test_outbox_redact_keeps_scheme_and_host_only(void **state)
{
    char out[128];

    (void)state;
    rl_outbox_redact("slack", "https://hooks.slack.com/services/T0/B0/secret", out, sizeof(out));
    assert_string_equal(out, "https://hooks.slack.com");
    rl_outbox_redact("webhook", "http://user:pw@10.0.0.1:8080/x?token=1", out, sizeof(out));
    assert_string_equal(out, "http://10.0.0.1:8080");
    rl_outbox_redact("webhook", "http://h?q=1", out, sizeof(out));
    assert_string_equal(out, "http://h");
    rl_outbox_redact("webhook", "not a url", out, sizeof(out));
    assert_string_equal(out, "(not a URL)");
    rl_outbox_redact("email", "ops@example.test", out, sizeof(out));
    assert_string_equal(out, "ops@example.test");
    rl_outbox_redact("webhook", "https://a-long-host.example/p", out, 10);
    assert_string_equal(out, "https://a");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outbox_http_statuses),
        cmocka_unit_test(test_outbox_smtp_replies),
        cmocka_unit_test(test_outbox_backoff_doubles_with_bounded_jitter),
        cmocka_unit_test(test_outbox_lease_outlasts_a_few_send_timeouts),
        cmocka_unit_test(test_outbox_redact_keeps_scheme_and_host_only),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
