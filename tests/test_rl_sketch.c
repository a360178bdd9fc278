/*
 * tests/test_rl_sketch.c — the quantile sketch against exact percentiles of skewed
 * data (log-normal, Pareto, fixed-seed PRNG; sorting happens here only), merging,
 * the bin cap, and allocation behaviour.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "rules/sketch.h"
#include "core/alloc.h"
#include "core/err.h"

#define N 100000

static uint64_t rng = 0x9e3779b97f4a7c15u;

/* splitmix64 */
static uint64_t next_u64(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* uniform in (0, 1) */
static double uniform(void)
{
    return ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0;
}

static double lognormal(double mu, double sigma)
{
    double z = sqrt(-2.0 * log(uniform())) * cos(2.0 * M_PI * uniform());

    return exp(mu + sigma * z);
}

static double pareto(double xm, double a)
{
    return xm / pow(uniform(), 1.0 / a);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;

    return a < b ? -1 : a > b;
}

/* Every q of <qs> is within 1 % of the exact value of rank floor(q (n - 1)). */
static void assert_accurate(const struct rl_sketch *s, double *v, size_t n, const double *qs,
                            size_t nq)
{
    qsort(v, n, sizeof(v[0]), cmp_double);
    for (size_t k = 0; k < nq; k++) {
        double exact = v[(size_t)floor(qs[k] * (double)(n - 1))], got = -1;

        assert_true(rl_sketch_quantile(s, qs[k], &got));
        if (fabs(got - exact) > RL_SKETCH_ALPHA * fabs(exact) * (1 + 1e-9))
            fail_msg("q %.2f: sketch %.9g, exact %.9g (%.4f %%)", qs[k], got, exact,
                     100 * fabs(got - exact) / exact);
    }
}

static const double QS[] = {0.5, 0.9, 0.95, 0.99};
static const double ALL_QS[] = {0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1};

/* N values of <gen> from seed <seed>, each q of QS and ALL_QS within 1 %. */
static void check_distribution(double (*gen)(void), uint64_t seed)
{
    double *v = malloc(N * sizeof(*v));
    struct rl_sketch s;

    assert_non_null(v);
    rng = seed;
    rl_sketch_init(&s);
    for (size_t k = 0; k < N; k++) {
        v[k] = gen();
        assert_int_equal(rl_sketch_add(&s, v[k]), AGG_OK);
    }
    assert_int_equal(rl_sketch_count(&s), N);
    assert_accurate(&s, v, N, QS, 4);
    assert_accurate(&s, v, N, ALL_QS, sizeof(ALL_QS) / sizeof(ALL_QS[0]));
    rl_sketch_clear(&s);
    free(v);
}

/* durations around 20 ms with a long tail */
static double durations(void)
{
    return lognormal(3.0, 1.5);
}

static double heavy_tail(void)
{
    return pareto(1.0, 1.2);
}

static void test_sketch_is_accurate_on_lognormal_data(void **state)
{
    (void)state;
    check_distribution(durations, 1);
}

static void test_sketch_is_accurate_on_pareto_data(void **state)
{
    (void)state;
    check_distribution(heavy_tail, 2);
}

static void test_sketch_counts_zero_and_negative_values_as_zero(void **state)
{
    struct rl_sketch s;
    double q = -1;

    (void)state;
    rl_sketch_init(&s);
    assert_false(rl_sketch_quantile(&s, 0.5, &q));
    assert_int_equal(rl_sketch_add(&s, 0), AGG_OK);
    assert_int_equal(rl_sketch_add(&s, -3), AGG_OK);
    assert_int_equal(rl_sketch_add(&s, 100), AGG_OK);
    assert_int_equal(rl_sketch_add(&s, NAN), AGG_EINVAL);
    assert_int_equal(rl_sketch_add(&s, INFINITY), AGG_EINVAL);
    assert_int_equal(rl_sketch_count(&s), 3);
    assert_true(rl_sketch_quantile(&s, 0.5, &q));
    assert_true(q == 0);
    assert_true(rl_sketch_quantile(&s, 1, &q));
    assert_true(fabs(q - 100) <= 1);
    assert_false(rl_sketch_quantile(&s, 1.5, &q));
    assert_false(rl_sketch_quantile(&s, NAN, &q));
    rl_sketch_clear(&s);
}

static void test_sketch_merge_equals_one_sketch_of_all_values(void **state)
{
    struct rl_sketch a, b, all;

    (void)state;
    rng = 3;
    rl_sketch_init(&a);
    rl_sketch_init(&b);
    rl_sketch_init(&all);
    for (int k = 0; k < 20000; k++) {
        double x = k % 7 == 0 ? 0 : lognormal(k % 2 ? 1 : 6, 1);

        assert_int_equal(rl_sketch_add(k % 3 ? &a : &b, x), AGG_OK);
        assert_int_equal(rl_sketch_add(&all, x), AGG_OK);
    }
    assert_int_equal(rl_sketch_merge(&a, &b), AGG_OK);
    assert_int_equal(rl_sketch_count(&a), rl_sketch_count(&all));
    assert_int_equal(a.zero, all.zero);
    for (int k = 0; k <= 100; k++) {
        double x, y;

        assert_true(rl_sketch_quantile(&a, k / 100.0, &x));
        assert_true(rl_sketch_quantile(&all, k / 100.0, &y));
        assert_true(x == y);
    }
    /* merging into an empty sketch copies */
    rl_sketch_reset(&b);
    assert_int_equal(rl_sketch_merge(&b, &all), AGG_OK);
    assert_int_equal(rl_sketch_count(&b), rl_sketch_count(&all));
    rl_sketch_clear(&a);
    rl_sketch_clear(&b);
    rl_sketch_clear(&all);
}

static void test_sketch_bin_cap_holds_over_extreme_ranges(void **state)
{
    struct rl_sketch s, low, high;
    double *v = malloc(N * sizeof(*v));
    size_t n = 0;

    (void)state;
    assert_non_null(v);
    rl_sketch_init(&s);
    /* 1e-8 .. 1e300, rising, then falling: both fold directions */
    for (double x = 1e-8; x < 1e300 && n < N / 2; x *= 1.05)
        v[n++] = x;
    for (size_t k = n; k-- > 0 && n < N;)
        v[n++] = v[k] / 3;
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(rl_sketch_add(&s, v[k]), AGG_OK);
        assert_true(s.nbins <= RL_SKETCH_MAX_BINS);
    }
    assert_true(s.collapsed);
    assert_int_equal(rl_sketch_count(&s), n);
    assert_true(rl_sketch_memory(&s) <= RL_SKETCH_MAX_BINS * sizeof(uint64_t));
    /* the top 2048 bins (a factor of 6e17, here 1e282..1e300) stay accurate */
    assert_accurate(&s, v, n, (const double[]){0.95, 0.99, 0.999, 1}, 4);

    /* merging sketches whose ranges are too far apart keeps the cap too */
    rl_sketch_init(&low);
    rl_sketch_init(&high);
    assert_int_equal(rl_sketch_add(&low, 1e-8), AGG_OK);
    assert_int_equal(rl_sketch_add(&high, 1e200), AGG_OK);
    assert_int_equal(rl_sketch_merge(&high, &low), AGG_OK);
    assert_int_equal(rl_sketch_merge(&low, &high), AGG_OK);
    assert_true(low.nbins <= RL_SKETCH_MAX_BINS && high.nbins <= RL_SKETCH_MAX_BINS);
    assert_int_equal(rl_sketch_count(&low), 3);
    rl_sketch_clear(&low);
    rl_sketch_clear(&high);
    rl_sketch_clear(&s);
    free(v);
}

static void test_sketch_reuses_its_bins_after_reset(void **state)
{
    struct rl_sketch s;
    double q;

    (void)state;
    rl_sketch_init(&s);
    for (int k = 1; k <= 10000; k++)
        assert_int_equal(rl_sketch_add(&s, k), AGG_OK);
    rl_sketch_reset(&s);
    assert_int_equal(rl_sketch_count(&s), 0);
    assert_false(rl_sketch_quantile(&s, 0.5, &q));
    agg_alloc_fail_after(0);
    for (int k = 10000; k >= 1; k--)
        assert_int_equal(rl_sketch_add(&s, k), AGG_OK);
    agg_alloc_fail_after(-1);
    assert_true(rl_sketch_quantile(&s, 0.5, &q));
    assert_true(fabs(q - 5000) <= 50);
    rl_sketch_clear(&s);
}

static void test_sketch_out_of_memory_leaves_counts_unchanged(void **state)
{
    struct rl_sketch s, src;

    (void)state;
    rl_sketch_init(&s);
    rl_sketch_init(&src);
    assert_int_equal(rl_sketch_add(&s, 1), AGG_OK);
    assert_int_equal(rl_sketch_add(&src, 1e6), AGG_OK);
    assert_int_equal(rl_sketch_add(&src, 1e-3), AGG_OK);
    agg_alloc_fail_after(0);
    assert_int_equal(rl_sketch_add(&s, 1e9), AGG_ENOMEM);
    assert_int_equal(rl_sketch_merge(&s, &src), AGG_ENOMEM);
    agg_alloc_fail_after(-1);
    assert_int_equal(rl_sketch_count(&s), 1);
    for (uint32_t j = 0; j < s.nbins; j++)
        assert_true(s.bins[j] == (s.min_key + (int32_t)j == 0 ? 1u : 0u));
    for (long n = 0;; n++) {
        int rc;

        agg_alloc_fail_after(n);
        rc = rl_sketch_merge(&s, &src);
        agg_alloc_fail_after(-1);
        if (rc == AGG_OK)
            break;
        assert_int_equal(rc, AGG_ENOMEM);
        assert_int_equal(rl_sketch_count(&s), 1);
    }
    assert_int_equal(rl_sketch_count(&s), 3);
    rl_sketch_clear(&s);
    rl_sketch_clear(&src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sketch_is_accurate_on_lognormal_data),
        cmocka_unit_test(test_sketch_is_accurate_on_pareto_data),
        cmocka_unit_test(test_sketch_counts_zero_and_negative_values_as_zero),
        cmocka_unit_test(test_sketch_merge_equals_one_sketch_of_all_values),
        cmocka_unit_test(test_sketch_bin_cap_holds_over_extreme_ranges),
        cmocka_unit_test(test_sketch_reuses_its_bins_after_reset),
        cmocka_unit_test(test_sketch_out_of_memory_leaves_counts_unchanged),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
