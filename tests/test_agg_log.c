/*
 * tests/test_agg_log.c — the rate-limited log lines: the limiter's arithmetic at chosen
 * instants, and the line AGG_LOG_LIMITED() writes (stderr captured in a file).
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

#include "core/log.h"
#include "core/time.h"

#define SEC INT64_C(1000000)

static void test_log_limit_passes_the_first_line_and_one_per_interval(void **state)
{
    struct agg_log_limit l = {0};
    uint64_t n = 99;

    (void)state;
    assert_true(agg_log_limit_pass(&l, 100 * SEC, 10 * SEC, &n));
    assert_int_equal(n, 0);
    n = 99;
    assert_false(agg_log_limit_pass(&l, 100 * SEC + 1, 10 * SEC, &n));
    assert_false(agg_log_limit_pass(&l, 110 * SEC - 1, 10 * SEC, &n));
    assert_int_equal(n, 99); /* untouched when the line is dropped */
    assert_int_equal(l.suppressed, 2);
    assert_true(agg_log_limit_pass(&l, 110 * SEC, 10 * SEC, &n));
    assert_int_equal(n, 2);
    assert_int_equal(l.suppressed, 0);
    /* the interval counts from the last line written, not from the dropped ones */
    assert_false(agg_log_limit_pass(&l, 119 * SEC, 10 * SEC, &n));
    assert_true(agg_log_limit_pass(&l, 120 * SEC, 10 * SEC, &n));
    assert_int_equal(n, 1);
}

static void test_log_limit_at_time_zero_still_limits(void **state)
{
    struct agg_log_limit l = {0};
    uint64_t n;

    (void)state;
    assert_true(agg_log_limit_pass(&l, 0, 10 * SEC, &n));
    assert_false(agg_log_limit_pass(&l, 1, 10 * SEC, &n));
}

/* Runs <n> AGG_LOG_LIMITED() lines through one limiter and returns what reached
 * stderr (caller frees). */
static char *capture_limited(struct agg_log_limit *l, int n)
{
    FILE *f = tmpfile();
    int saved = dup(STDERR_FILENO);
    char *out;
    long size;

    assert_non_null(f);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fileno(f), STDERR_FILENO), STDERR_FILENO);
    for (int i = 0; i < n; i++)
        AGG_LOG_LIMITED(l, AGG_LOG_LEVEL_WARN, "test", "trouble number %d", i);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    size = lseek(fileno(f), 0, SEEK_END);
    assert_true(size >= 0);
    out = calloc(1, (size_t)size + 1);
    assert_non_null(out);
    assert_int_equal(pread(fileno(f), out, (size_t)size, 0), size);
    fclose(f);
    return out;
}

static void test_log_limited_writes_one_line_then_the_suppressed_count(void **state)
{
    struct agg_log_limit l = {0};
    char *out;

    (void)state;
    agg_log_init(AGG_LOG_LEVEL_INFO, true);
    out = capture_limited(&l, 5);
    assert_string_equal(out, "<4>test: trouble number 0\n");
    free(out);
    assert_int_equal(l.suppressed, 4);

    l.last_us = agg_time_mono_us() - AGG_LOG_LIMIT_US; /* the interval is over */
    out = capture_limited(&l, 2);
    assert_string_equal(out, "<4>test: trouble number 0 (and 4 similar messages suppressed)\n");
    free(out);
    assert_int_equal(l.suppressed, 1);
}

static void test_log_limited_below_the_threshold_writes_and_counts_nothing(void **state)
{
    struct agg_log_limit l = {0};
    char *out;

    (void)state;
    agg_log_init(AGG_LOG_LEVEL_ERR, true);
    out = capture_limited(&l, 3);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(l.last_us, 0);
    assert_int_equal(l.suppressed, 0);
    agg_log_init(AGG_LOG_LEVEL_INFO, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_limit_passes_the_first_line_and_one_per_interval),
        cmocka_unit_test(test_log_limit_at_time_zero_still_limits),
        cmocka_unit_test(test_log_limited_writes_one_line_then_the_suppressed_count),
        cmocka_unit_test(test_log_limited_below_the_threshold_writes_and_counts_nothing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
