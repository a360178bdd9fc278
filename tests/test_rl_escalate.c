/*
 * tests/test_rl_escalate.c — when an alert's next escalation step is due: levels in
 * order from the previous notice, repeat_count loops, then cooldown-spaced repeats.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rules/escalate.h"

#define MIN INT64_C(60000000)

static void expect_step(const struct rl_escalation_in *in, int64_t now, enum rl_escalation want,
                        int want_index)
{
    int index;

    assert_int_equal(rl_escalate_next(in, now, &index), want);
    assert_int_equal(index, want_index);
}

static void test_escalate_level_waits_for_after_minutes(void **state)
{
    struct rl_escalation_in in = {.level = 0, .nlevels = 2, .after_minutes = 5,
                                  .cooldown_minutes = 60, .base_us = 1000 * MIN};

    (void)state;
    expect_step(&in, 1000 * MIN, RL_ESCALATION_NONE, -1);
    expect_step(&in, 1005 * MIN - 1, RL_ESCALATION_NONE, -1);
    expect_step(&in, 1005 * MIN, RL_ESCALATION_LEVEL, 0);
    in.level = 1;
    expect_step(&in, 1005 * MIN, RL_ESCALATION_LEVEL, 1);
}

static void test_escalate_repeat_count_loops_the_policy(void **state)
{
    struct rl_escalation_in in = {.nlevels = 2, .repeat_count = 1, .after_minutes = 1,
                                  .cooldown_minutes = 0, .base_us = 0};

    (void)state;
    for (int level = 0; level < 4; level++) {
        in.level = level;
        expect_step(&in, MIN, RL_ESCALATION_LEVEL, level % 2);
    }
    in.level = 4; /* 2 levels x (1 + 1 repeat): spent, and no cooldown repeats */
    expect_step(&in, 1000 * MIN, RL_ESCALATION_NONE, -1);
}

static void test_escalate_spent_levels_repeat_after_cooldown(void **state)
{
    struct rl_escalation_in in = {.level = 1, .nlevels = 1, .after_minutes = 1,
                                  .cooldown_minutes = 30, .base_us = 100 * MIN};

    (void)state;
    expect_step(&in, 129 * MIN, RL_ESCALATION_NONE, -1);
    expect_step(&in, 130 * MIN, RL_ESCALATION_REPEAT, -1);
}

static void test_escalate_without_policy_only_repeats(void **state)
{
    struct rl_escalation_in in = {.level = 0, .nlevels = 0, .cooldown_minutes = 10,
                                  .base_us = 0};

    (void)state;
    expect_step(&in, 9 * MIN, RL_ESCALATION_NONE, -1);
    expect_step(&in, 10 * MIN, RL_ESCALATION_REPEAT, -1);
    in.cooldown_minutes = 0;
    expect_step(&in, 1000 * MIN, RL_ESCALATION_NONE, -1);
}

static void test_escalate_zero_or_bad_after_minutes_is_due_at_once(void **state)
{
    struct rl_escalation_in in = {.nlevels = 1, .after_minutes = 0, .base_us = 50 * MIN};

    (void)state;
    expect_step(&in, 50 * MIN, RL_ESCALATION_LEVEL, 0);
    in.after_minutes = -3;
    expect_step(&in, 50 * MIN, RL_ESCALATION_LEVEL, 0);
    in.level = -1;
    expect_step(&in, 50 * MIN, RL_ESCALATION_NONE, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escalate_level_waits_for_after_minutes),
        cmocka_unit_test(test_escalate_repeat_count_loops_the_policy),
        cmocka_unit_test(test_escalate_spent_levels_repeat_after_cooldown),
        cmocka_unit_test(test_escalate_without_policy_only_repeats),
        cmocka_unit_test(test_escalate_zero_or_bad_after_minutes_is_due_at_once),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
