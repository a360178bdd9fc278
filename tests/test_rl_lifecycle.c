/*
 * tests/test_rl_lifecycle.c — every transition of the alert state machine, the
 * for_seconds and keep_firing_seconds damping, and flaps (DESIGN.md, Rules).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rules/lifecycle.h"

#define S INT64_C(1000000)

static const struct rl_lifecycle_rule instant = {0, 0};
static const struct rl_lifecycle_rule damped = {10 * S, 20 * S}; /* for 10 s, keep 20 s */

/* Runs one step and checks the answer and the resulting state. */
static struct rl_lifecycle step(struct rl_lifecycle cur, const struct rl_lifecycle_rule *r,
                                bool breach, int64_t now, enum rl_action want_action,
                                enum rl_state want_state)
{
    struct rl_lifecycle next;

    assert_int_equal(rl_lifecycle_step(&cur, r, breach, now, &next), want_action);
    assert_int_equal(next.state, want_state);
    if (want_state != cur.state)
        assert_int_equal(next.since_us, now);
    else
        assert_int_equal(next.since_us, cur.since_us);
    return next;
}

static void test_lifecycle_ok_stays_ok_while_clear(void **state)
{
    struct rl_lifecycle s = {RL_STATE_OK, 5 * S};

    (void)state;
    step(s, &damped, false, 100 * S, RL_ACTION_NONE, RL_STATE_OK);
    step(s, &instant, false, 100 * S, RL_ACTION_NONE, RL_STATE_OK);
}

static void test_lifecycle_breach_without_for_fires_at_once(void **state)
{
    struct rl_lifecycle s = {RL_STATE_OK, 0};

    (void)state;
    step(s, &instant, true, 7 * S, RL_ACTION_FIRE, RL_STATE_FIRING);
}

static void test_lifecycle_breach_with_for_waits_in_pending(void **state)
{
    struct rl_lifecycle s = {RL_STATE_OK, 0};

    (void)state;
    s = step(s, &damped, true, 100 * S, RL_ACTION_PERSIST, RL_STATE_PENDING);
    s = step(s, &damped, true, 105 * S, RL_ACTION_NONE, RL_STATE_PENDING);
    s = step(s, &damped, true, 110 * S - 1, RL_ACTION_NONE, RL_STATE_PENDING);
    step(s, &damped, true, 110 * S, RL_ACTION_FIRE, RL_STATE_FIRING);
}

static void test_lifecycle_short_spike_stays_silent(void **state)
{
    struct rl_lifecycle s = {RL_STATE_OK, 0};

    (void)state;
    s = step(s, &damped, true, 100 * S, RL_ACTION_PERSIST, RL_STATE_PENDING);
    s = step(s, &damped, false, 109 * S, RL_ACTION_PERSIST, RL_STATE_OK);
    /* a new breach starts the for_seconds count again */
    s = step(s, &damped, true, 111 * S, RL_ACTION_PERSIST, RL_STATE_PENDING);
    step(s, &damped, true, 120 * S, RL_ACTION_NONE, RL_STATE_PENDING);
}

static void test_lifecycle_firing_stays_while_breached(void **state)
{
    struct rl_lifecycle s = {RL_STATE_FIRING, 3 * S};

    (void)state;
    step(s, &damped, true, 1000 * S, RL_ACTION_NONE, RL_STATE_FIRING);
}

static void test_lifecycle_clear_without_keep_resolves_at_once(void **state)
{
    struct rl_lifecycle s = {RL_STATE_FIRING, 3 * S};

    (void)state;
    step(s, &instant, false, 4 * S, RL_ACTION_RESOLVE, RL_STATE_OK);
}

static void test_lifecycle_clear_held_for_keep_resolves(void **state)
{
    struct rl_lifecycle s = {RL_STATE_FIRING, 3 * S};

    (void)state;
    s = step(s, &damped, false, 50 * S, RL_ACTION_PERSIST, RL_STATE_RECOVERING);
    s = step(s, &damped, false, 70 * S - 1, RL_ACTION_NONE, RL_STATE_RECOVERING);
    step(s, &damped, false, 70 * S, RL_ACTION_RESOLVE, RL_STATE_OK);
}

static void test_lifecycle_flap_inside_keep_returns_to_firing_silently(void **state)
{
    struct rl_lifecycle s = {RL_STATE_FIRING, 0};

    (void)state;
    for (int i = 0; i < 5; i++) {
        int64_t t = (int64_t)(100 + 10 * i) * S;

        s = step(s, &damped, false, t, RL_ACTION_PERSIST, RL_STATE_RECOVERING);
        s = step(s, &damped, true, t + 5 * S, RL_ACTION_PERSIST, RL_STATE_FIRING);
    }
    /* the keep_firing count restarts at each clear */
    s = step(s, &damped, false, 200 * S, RL_ACTION_PERSIST, RL_STATE_RECOVERING);
    s = step(s, &damped, false, 219 * S, RL_ACTION_NONE, RL_STATE_RECOVERING);
    step(s, &damped, false, 220 * S, RL_ACTION_RESOLVE, RL_STATE_OK);
}

static void test_lifecycle_clock_going_back_counts_as_no_time(void **state)
{
    struct rl_lifecycle s = {RL_STATE_PENDING, 100 * S};
    struct rl_lifecycle r = {RL_STATE_RECOVERING, 100 * S};

    (void)state;
    step(s, &damped, true, 50 * S, RL_ACTION_NONE, RL_STATE_PENDING);
    step(r, &damped, false, 50 * S, RL_ACTION_NONE, RL_STATE_RECOVERING);
}

static void test_lifecycle_state_names_round_trip(void **state)
{
    enum rl_state out;

    (void)state;
    for (int i = 0; i < RL_STATE_COUNT; i++) {
        assert_true(rl_state_parse(rl_state_name((enum rl_state)i), &out));
        assert_int_equal(out, i);
    }
    assert_false(rl_state_parse("FIRING", &out));
    assert_false(rl_state_parse("", &out));
    assert_string_equal(rl_state_name((enum rl_state)99), "unknown");
    assert_true(rl_state_has_alert(RL_STATE_FIRING));
    assert_true(rl_state_has_alert(RL_STATE_RECOVERING));
    assert_false(rl_state_has_alert(RL_STATE_PENDING));
    assert_false(rl_state_has_alert(RL_STATE_OK));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle_ok_stays_ok_while_clear),
        cmocka_unit_test(test_lifecycle_breach_without_for_fires_at_once),
        cmocka_unit_test(test_lifecycle_breach_with_for_waits_in_pending),
        cmocka_unit_test(test_lifecycle_short_spike_stays_silent),
        cmocka_unit_test(test_lifecycle_firing_stays_while_breached),
        cmocka_unit_test(test_lifecycle_clear_without_keep_resolves_at_once),
        cmocka_unit_test(test_lifecycle_clear_held_for_keep_resolves),
        cmocka_unit_test(test_lifecycle_flap_inside_keep_returns_to_firing_silently),
        cmocka_unit_test(test_lifecycle_clock_going_back_counts_as_no_time),
        cmocka_unit_test(test_lifecycle_state_names_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
