/*
 * tests/test_rl_window.c — sliding windows: when values leave, gaps, coarse buckets,
 * bounded memory, every aggregate against a naive recomputation from the raw events,
 * and allocation failures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "rules/expr.h"
#include "rules/window.h"
#include "core/alloc.h"
#include "core/err.h"

#define SEC INT64_C(1000000)
#define T0 (INT64_C(1718452800) * SEC)

static struct rl_window *window_for(const char *text, int64_t now_us)
{
    struct rl_expr e;
    struct agg_err err = {0};
    struct rl_window *w;

    if (rl_expr_compile(text, &e, NULL, &err) != AGG_OK)
        fail_msg("%s: %s", text, err.msg);
    w = rl_window_new(&e, now_us);
    assert_non_null(w);
    assert_true(rl_window_check(w));
    return w;
}

static double value_at(struct rl_window *w, int64_t now_us)
{
    double v = -1;

    assert_true(rl_window_value(w, now_us, &v, NULL));
    assert_true(rl_window_check(w));
    return v;
}

static void add(struct rl_window *w, int64_t now_us, bool matched, bool has, double v)
{
    assert_int_equal(rl_window_add(w, now_us, matched, has, v), AGG_OK);
    assert_true(rl_window_check(w));
}

static void test_window_values_leave_exactly_after_the_window(void **state)
{
    struct rl_window *w = window_for("count[30s]", T0);

    (void)state;
    assert_int_equal(rl_window_bucket_s(w), 1);
    assert_int_equal(rl_window_buckets(w), 30);
    add(w, T0 + 100 * SEC + 500000, true, false, 0);
    add(w, T0 + 101 * SEC, true, false, 0);
    assert_true(value_at(w, T0 + 101 * SEC) == 2);
    /* the event of second 100 counts through second 129 and leaves at 130 */
    assert_true(value_at(w, T0 + 129 * SEC + 999999) == 2);
    assert_true(value_at(w, T0 + 130 * SEC) == 1);
    assert_true(value_at(w, T0 + 130 * SEC + 999999) == 1);
    assert_true(value_at(w, T0 + 131 * SEC) == 0);
    rl_window_free(w);
}

static void test_window_gap_longer_than_the_window_empties_it(void **state)
{
    struct rl_window *w = window_for("sum:duration_ms[1m]", T0);
    double v;

    (void)state;
    for (int k = 0; k < 60; k++)
        add(w, T0 + k * SEC, true, true, 10);
    assert_true(value_at(w, T0 + 59 * SEC) == 600);
    add(w, T0 + 1000 * SEC, true, true, 7);
    assert_true(value_at(w, T0 + 1000 * SEC) == 7);
    assert_false(rl_window_value(w, T0 + 5000 * SEC, &v, NULL));
    rl_window_free(w);
}

static void test_window_counts_a_late_clock_in_the_newest_bucket(void **state)
{
    struct rl_window *w = window_for("count[30s]", T0);

    (void)state;
    add(w, T0 + 50 * SEC, true, false, 0);
    add(w, T0 + 10 * SEC, true, false, 0); /* the clock stepped back */
    assert_true(value_at(w, T0 + 50 * SEC) == 2);
    assert_true(value_at(w, T0 + 80 * SEC) == 0);
    rl_window_free(w);
}

static void test_window_uses_coarse_buckets_beyond_ten_minutes(void **state)
{
    struct rl_window *h = window_for("count[1h]", 0);
    struct rl_window *d = window_for("count[24h]", 0);
    struct rl_window *odd = window_for("count[601s]", 0);
    struct rl_window *ten = window_for("count[10m]", 0);

    (void)state;
    assert_int_equal(rl_window_bucket_s(h), 6);
    assert_int_equal(rl_window_buckets(h), 600);
    assert_int_equal(rl_window_bucket_s(d), 144);
    assert_int_equal(rl_window_buckets(d), 600);
    assert_int_equal(rl_window_bucket_s(odd), 2);
    assert_int_equal(rl_window_buckets(odd), 301);
    assert_int_equal(rl_window_bucket_s(ten), 1);
    assert_int_equal(rl_window_buckets(ten), 600);

    /* [1h]: an event in bucket [0 s, 6 s) counts until the bucket of 3600 s begins */
    add(h, 5 * SEC, true, false, 0);
    add(h, 1800 * SEC, true, false, 0);
    assert_true(value_at(h, 3599 * SEC) == 2);
    assert_true(value_at(h, 3600 * SEC) == 1);
    assert_true(value_at(h, 5399 * SEC) == 1);
    assert_true(value_at(h, 5400 * SEC) == 0);

    /* [24h]: the bucket of 144 s holds a day's event until 86400 s later */
    add(d, 143 * SEC, true, false, 0);
    assert_true(value_at(d, 86399 * SEC) == 1);
    assert_true(value_at(d, 86400 * SEC) == 0);
    rl_window_free(h);
    rl_window_free(d);
    rl_window_free(odd);
    rl_window_free(ten);
}

static void test_window_without_events_has_no_data_but_zero_counts(void **state)
{
    static const char *const zero[] = {"count", "rate", "ratio{module=x}"};
    static const char *const none[] = {"avg:duration_ms", "min:duration_ms",
                                       "max:duration_ms", "sum:duration_ms",
                                       "p50:duration_ms", "p99:memory_usage_mb"};
    struct rl_window_figures fig;
    double v;

    (void)state;
    for (size_t k = 0; k < 3; k++) {
        struct rl_window *w = window_for(zero[k], T0);

        assert_true(value_at(w, T0) == 0);
        rl_window_free(w);
    }
    for (size_t k = 0; k < 6; k++) {
        struct rl_window *w = window_for(none[k], T0);

        v = 42;
        assert_false(rl_window_value(w, T0, &v, &fig));
        assert_true(v == 42);
        assert_false(fig.has_value);
        assert_int_equal(fig.window_s, 300);
        /* matching events without the field are still no data */
        add(w, T0, true, false, 0);
        assert_false(rl_window_value(w, T0, &v, &fig));
        assert_int_equal(fig.matched, 1);
        rl_window_free(w);
    }
}

/* ---- against a naive recomputation ---------------------------------------------- */

struct ev {
    int64_t t_us;
    bool matched, has;
    double v;
};

static uint64_t rng = 7;

static uint64_t next_u64(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;

    return a < b ? -1 : a > b;
}

/* The aggregate of <agg> over the events of seconds (now_s - W, now_s], straight from
 * the list: false for no data. */
static bool naive(enum rl_agg agg, int window_s, const struct ev *evs, size_t n, int64_t now_us,
                  double *out)
{
    int64_t now_s = now_us / SEC;
    double *vals = malloc((n + 1) * sizeof(double)), sum = 0, mn = INFINITY, mx = -INFINITY;
    size_t total = 0, matched = 0, nv = 0;
    bool has = true;

    assert_non_null(vals);
    for (size_t k = 0; k < n; k++) {
        int64_t s = evs[k].t_us / SEC;

        if (s <= now_s - window_s || s > now_s)
            continue;
        total++;
        if (!evs[k].matched)
            continue;
        matched++;
        if (!evs[k].has)
            continue;
        vals[nv++] = evs[k].v;
        sum += evs[k].v;
        mn = fmin(mn, evs[k].v);
        mx = fmax(mx, evs[k].v);
    }
    qsort(vals, nv, sizeof(vals[0]), cmp_double);
    switch (agg) {
    case RL_AGG_COUNT: *out = (double)matched; break;
    case RL_AGG_RATE: *out = (double)matched / window_s; break;
    case RL_AGG_RATIO: *out = total ? (double)matched / (double)total : 0; break;
    case RL_AGG_AVG: has = nv > 0; *out = has ? sum / (double)nv : 0; break;
    case RL_AGG_MIN: has = nv > 0; *out = mn; break;
    case RL_AGG_MAX: has = nv > 0; *out = mx; break;
    case RL_AGG_SUM: has = nv > 0; *out = sum; break;
    default:
        has = nv > 0;
        *out = has ? vals[(size_t)floor(rl_agg_quantile(agg) * (double)(nv - 1))] : 0;
        break;
    }
    free(vals);
    return has;
}

static void test_window_every_aggregate_matches_a_naive_recomputation(void **state)
{
    static const char *const exprs[] = {
        "count{module=x}[1m]",     "rate{module=x}[1m]",      "ratio{module=x}[1m]",
        "avg:duration_ms[1m]",     "min:duration_ms[1m]",     "max:duration_ms[1m]",
        "sum:duration_ms[1m]",     "p50:duration_ms[1m]",     "p90:duration_ms[1m]",
        "p95:duration_ms[1m]",     "p99:duration_ms[1m]",
    };
    enum { NEXPR = sizeof(exprs) / sizeof(exprs[0]), NEV = 20000 };
    struct ev *evs = malloc(NEV * sizeof(*evs));
    struct rl_window *w[NEXPR];
    struct rl_expr e[NEXPR];
    int64_t t = T0;
    int checks = 0;

    (void)state;
    assert_non_null(evs);
    for (size_t k = 0; k < NEXPR; k++) {
        assert_int_equal(rl_expr_compile(exprs[k], &e[k], NULL, NULL), AGG_OK);
        w[k] = rl_window_new(&e[k], t);
        assert_non_null(w[k]);
    }
    for (size_t i = 0; i < NEV; i++) {
        uint64_t r = next_u64();

        /* bursts and pauses: mostly a few ms apart, sometimes tens of seconds */
        t += r % 50 == 0 ? (int64_t)(r >> 8) % (90 * SEC) : (int64_t)(r >> 8) % (30000);
        evs[i] = (struct ev){t, (r >> 40) % 4 != 0, (r >> 42) % 8 != 0,
                             exp((double)((r >> 45) % 1000) / 100.0)};
        for (size_t k = 0; k < NEXPR; k++)
            assert_int_equal(rl_window_add(w[k], t, evs[i].matched, evs[i].has, evs[i].v),
                             AGG_OK);
        if (i % 997 != 0)
            continue;
        for (size_t k = 0; k < NEXPR; k++) {
            /* read now and a little later, as the evaluator would */
            for (int64_t later = 0; later <= 40 * SEC; later += 20 * SEC) {
                double want = 0, got = 0;
                bool has_want = naive(e[k].agg, 60, evs, i + 1, t + later, &want);
                bool has_got = rl_window_value(w[k], t + later, &got, NULL);

                assert_true(rl_window_check(w[k]));
                assert_int_equal(has_got, has_want);
                if (!has_want)
                    continue;
                if (rl_agg_quantile(e[k].agg) > 0 ? fabs(got - want) > 0.01 * want * (1 + 1e-9)
                                                   : fabs(got - want) > 1e-9 * fmax(1, want))
                    fail_msg("%s at event %zu +%llds: window %.9g, naive %.9g", exprs[k], i,
                             (long long)(later / SEC), got, want);
                checks++;
            }
        }
        /* later reads moved the windows forward: keep adding at the latest time */
        t += 40 * SEC;
    }
    assert_true(checks > 100);
    for (size_t k = 0; k < NEXPR; k++)
        rl_window_free(w[k]);
    free(evs);
}

static void test_window_figures_describe_the_value(void **state)
{
    struct rl_window *w = window_for("ratio{level>=ERROR}[2m]", T0);
    struct rl_window_figures fig;
    double v = 0;

    (void)state;
    add(w, T0, true, false, 0);
    add(w, T0, false, false, 0);
    add(w, T0, false, false, 0);
    add(w, T0, false, false, 0);
    assert_true(rl_window_value(w, T0 + SEC, &v, &fig));
    assert_true(v == 0.25);
    assert_int_equal(fig.total, 4);
    assert_int_equal(fig.matched, 1);
    assert_true(fig.has_value);
    assert_true(fig.value == 0.25);
    assert_int_equal(fig.window_s, 120);
    rl_window_free(w);
}

static void test_window_memory_does_not_grow_with_events(void **state)
{
    struct rl_window *w = window_for("p99:duration_ms[5m]", T0);
    struct rl_window *c = window_for("count{module=x}[24h]", T0);
    size_t warm, count_mem = rl_window_memory(c);
    int64_t t = T0;

    (void)state;
    /* one full window of values 1..1000 ms in every second, then ten more */
    for (int s = 0; s < 11 * 300; s++) {
        if (s == 300) {
            double v;

            assert_true(rl_window_value(w, t, &v, NULL));
            warm = rl_window_memory(w);
        }
        for (int k = 1; k <= 1000; k += 7) {
            assert_int_equal(rl_window_add(w, t, true, true, (double)k), AGG_OK);
            assert_int_equal(rl_window_add(c, t, true, false, 0), AGG_OK);
        }
        t += SEC;
    }
    assert_true(rl_window_memory(w) == warm);
    assert_true(rl_window_memory(c) == count_mem);
    /* 300 buckets of about 350 bins (8 bytes, capacity doubled), plus the scratch */
    assert_true(warm < 2 * 1024 * 1024);
    assert_true(count_mem < 64 * 1024);
    rl_window_free(w);
    rl_window_free(c);
}

static void test_window_new_survives_allocation_failure(void **state)
{
    static const char *const exprs[] = {"count[1m]", "p95:duration_ms[24h]"};

    (void)state;
    for (size_t k = 0; k < 2; k++) {
        struct rl_expr e;
        long n;

        assert_int_equal(rl_expr_compile(exprs[k], &e, NULL, NULL), AGG_OK);
        for (n = 0;; n++) {
            struct rl_window *w;

            agg_alloc_fail_after(n);
            w = rl_window_new(&e, T0);
            agg_alloc_fail_after(-1);
            if (w != NULL) {
                assert_true(rl_window_check(w));
                rl_window_free(w);
                break;
            }
        }
        assert_true(n > 0);
    }
}

static void test_window_add_out_of_memory_still_counts_the_event(void **state)
{
    struct rl_window *w = window_for("p50:duration_ms[1m]", T0);
    struct rl_window_figures fig;
    double v;

    (void)state;
    agg_alloc_fail_after(0);
    assert_int_equal(rl_window_add(w, T0, true, true, 5), AGG_ENOMEM);
    agg_alloc_fail_after(-1);
    assert_true(rl_window_check(w));
    assert_false(rl_window_value(w, T0, &v, &fig));
    assert_int_equal(fig.matched, 1);
    assert_int_equal(fig.valued, 0);
    add(w, T0, true, true, 5);
    assert_true(fabs(value_at(w, T0) - 5) <= 0.05);
    rl_window_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_values_leave_exactly_after_the_window),
        cmocka_unit_test(test_window_gap_longer_than_the_window_empties_it),
        cmocka_unit_test(test_window_counts_a_late_clock_in_the_newest_bucket),
        cmocka_unit_test(test_window_uses_coarse_buckets_beyond_ten_minutes),
        cmocka_unit_test(test_window_without_events_has_no_data_but_zero_counts),
        cmocka_unit_test(test_window_every_aggregate_matches_a_naive_recomputation),
        cmocka_unit_test(test_window_figures_describe_the_value),
        cmocka_unit_test(test_window_memory_does_not_grow_with_events),
        cmocka_unit_test(test_window_new_survives_allocation_failure),
        cmocka_unit_test(test_window_add_out_of_memory_still_counts_the_event),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
