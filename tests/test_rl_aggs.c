/*
 * tests/test_rl_aggs.c — the rule set: which events reach which rule, reloads that
 * keep unchanged rules' windows, and allocation failures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/record.h"
#include "rules/aggs.h"
#include "rules/expr.h"
#include "core/alloc.h"
#include "core/err.h"

#define SEC INT64_C(1000000)
#define T0 (INT64_C(1718452800) * SEC)

struct set {
    struct rl_expr e[8];
    struct rl_rule_def d[8];
    size_t n;
};

static void rule(struct set *s, int64_t id, const char *text)
{
    assert_int_equal(rl_expr_compile(text, &s->e[s->n], NULL, NULL), AGG_OK);
    s->d[s->n] = (struct rl_rule_def){id, &s->e[s->n]};
    s->n++;
}

static struct agg_record event(enum agg_level lv, const char *module, int duration_ms)
{
    struct agg_record r;

    agg_record_init(&r);
    r.level = lv;
    r.has_level = true;
    if (module != NULL) {
        r.str[AGG_F_MODULE].p = module;
        r.str[AGG_F_MODULE].len = strlen(module);
    }
    if (duration_ms >= 0) {
        r.has_duration_ms = true;
        r.duration_ms = duration_ms;
    }
    return r;
}

static double value(struct rl_aggs *a, int64_t id, int64_t now)
{
    double v = -1;

    assert_true(rl_aggs_value(a, id, now, &v, NULL));
    return v;
}

static void test_aggs_feed_each_rule_the_events_it_matches(void **state)
{
    struct rl_aggs *a = rl_aggs_new();
    struct set s = {0};
    struct agg_record evs[] = {
        event(AGG_LEVEL_ERROR, "api", 100),   event(AGG_LEVEL_INFO, "api", 300),
        event(AGG_LEVEL_CRITICAL, "db", 50),  event(AGG_LEVEL_ERROR, NULL, -1),
        event(AGG_LEVEL_WARNING, "api", -1),
    };
    struct rl_window_figures fig;
    double v;

    (void)state;
    assert_non_null(a);
    rule(&s, 3, "count{level>=ERROR}[5m]");
    rule(&s, 1, "ratio{level>=ERROR,module=api}[5m]");
    rule(&s, 2, "max:duration_ms{module=api}[1m]");
    rule(&s, 4, "avg:duration_ms{module!=api}");
    rule(&s, 5, "count");
    assert_int_equal(rl_aggs_set(a, s.d, s.n, T0, NULL), AGG_OK);
    assert_int_equal(rl_aggs_count(a), 5);
    for (size_t k = 0; k < sizeof(evs) / sizeof(evs[0]); k++)
        assert_int_equal(rl_aggs_add(a, &evs[k], T0 + SEC), AGG_OK);

    assert_true(value(a, 3, T0 + SEC) == 3);
    assert_true(value(a, 1, T0 + SEC) == 1.0 / 5);
    assert_true(value(a, 2, T0 + SEC) == 300);
    assert_true(value(a, 4, T0 + SEC) == 50); /* the db event; the NULL module has none */
    assert_true(value(a, 5, T0 + SEC) == 5);
    assert_true(rl_aggs_value(a, 1, T0 + SEC, &v, &fig));
    assert_int_equal(fig.total, 5);
    assert_int_equal(fig.matched, 1);
    assert_false(rl_aggs_value(a, 99, T0 + SEC, &v, &fig));
    assert_int_equal(fig.window_s, 0);
    assert_false(rl_aggs_has(a, 99));
    assert_true(rl_aggs_has(a, 4));
    rl_aggs_free(a);
}

static void test_aggs_reload_keeps_windows_of_unchanged_rules(void **state)
{
    struct rl_aggs *a = rl_aggs_new();
    struct set one = {0}, two = {0};
    struct agg_record ev = event(AGG_LEVEL_ERROR, "api", 10);

    (void)state;
    rule(&one, 1, "count{level>=ERROR}[5m]");
    rule(&one, 2, "count{module=api}[5m]");
    rule(&one, 3, "count[5m]");
    assert_int_equal(rl_aggs_set(a, one.d, one.n, T0, NULL), AGG_OK);
    assert_int_equal(rl_aggs_add(a, &ev, T0), AGG_OK);
    assert_int_equal(rl_aggs_add(a, &ev, T0), AGG_OK);

    /* 1 unchanged (spelled differently), 2 changed, 3 removed, 4 new over 3's
     * expression (its window carries on), 5 new */
    rule(&two, 4, "count[5m]");
    rule(&two, 2, "count{module=api}[10m]");
    rule(&two, 1, "count{ level >= error }");
    rule(&two, 5, "count{module=db}[5m]");
    assert_int_equal(rl_aggs_set(a, two.d, two.n, T0 + SEC, NULL), AGG_OK);
    assert_int_equal(rl_aggs_count(a), 4);
    assert_true(value(a, 1, T0 + SEC) == 2);
    assert_true(value(a, 2, T0 + SEC) == 0);
    assert_true(value(a, 4, T0 + SEC) == 2);
    assert_true(value(a, 5, T0 + SEC) == 0);
    assert_false(rl_aggs_has(a, 3));

    /* an empty set drops everything */
    assert_int_equal(rl_aggs_set(a, NULL, 0, T0, NULL), AGG_OK);
    assert_int_equal(rl_aggs_count(a), 0);
    assert_int_equal(rl_aggs_add(a, &ev, T0), AGG_OK);
    rl_aggs_free(a);
}

static void test_aggs_rules_with_one_expression_share_a_window(void **state)
{
    struct rl_aggs *a = rl_aggs_new();
    struct set one = {0}, two = {0};
    struct agg_record ev = event(AGG_LEVEL_ERROR, "api", 10);
    size_t single, pair;

    (void)state;
    rule(&one, 1, "p95:duration_ms{module=api}[1m]");
    assert_int_equal(rl_aggs_set(a, one.d, one.n, T0, NULL), AGG_OK);
    assert_int_equal(rl_aggs_add(a, &ev, T0), AGG_OK);
    single = rl_aggs_memory(a);
    rule(&two, 1, "p95:duration_ms{module=api}[1m]");
    rule(&two, 2, "p95:duration_ms{ module = api }[60s]");
    rule(&two, 3, "p95:duration_ms{module=api}[1m]");
    assert_int_equal(rl_aggs_set(a, two.d, two.n, T0, NULL), AGG_OK);
    pair = rl_aggs_memory(a);
    assert_int_equal(rl_aggs_add(a, &ev, T0), AGG_OK);
    for (int64_t id = 1; id <= 3; id++) /* the sketch's 1 % */
        assert_true(value(a, id, T0 + SEC) >= 9.9 && value(a, id, T0 + SEC) <= 10.1);
    /* two more rules cost their ids, not another window */
    assert_true(pair - single <= 2 * 64);
    rl_aggs_free(a);
}

static void test_aggs_refuse_a_duplicate_id_and_keep_the_old_set(void **state)
{
    struct rl_aggs *a = rl_aggs_new();
    struct set one = {0}, dup = {0};
    struct agg_record ev = event(AGG_LEVEL_INFO, NULL, -1);
    struct agg_err err = {0};

    (void)state;
    rule(&one, 7, "count");
    assert_int_equal(rl_aggs_set(a, one.d, one.n, T0, NULL), AGG_OK);
    assert_int_equal(rl_aggs_add(a, &ev, T0), AGG_OK);
    rule(&dup, 8, "count");
    rule(&dup, 8, "rate");
    assert_int_equal(rl_aggs_set(a, dup.d, dup.n, T0, &err), AGG_EINVAL);
    assert_non_null(strstr(err.msg, "rule 8 listed twice"));
    assert_true(value(a, 7, T0) == 1);
    assert_false(rl_aggs_has(a, 8));
    rl_aggs_free(a);
}

static void test_aggs_set_survives_allocation_failure(void **state)
{
    struct set one = {0}, two = {0};
    struct agg_record ev = event(AGG_LEVEL_ERROR, "api", 10);
    long n;

    (void)state;
    rule(&one, 1, "count{level>=ERROR}");
    rule(&one, 2, "p99:duration_ms[1h]");
    rule(&two, 1, "count{level>=ERROR}");
    rule(&two, 3, "p50:duration_ms[24h]");
    rule(&two, 4, "sum:duration_ms");
    for (n = 0;; n++) {
        struct rl_aggs *a;
        int rc = AGG_ENOMEM;

        agg_alloc_fail_after(n);
        a = rl_aggs_new();
        if (a != NULL)
            rc = rl_aggs_set(a, one.d, one.n, T0, NULL);
        agg_alloc_fail_after(-1);
        if (a == NULL) {
            continue;
        }
        if (rc != AGG_OK) {
            assert_int_equal(rc, AGG_ENOMEM);
            assert_int_equal(rl_aggs_count(a), 0);
            rl_aggs_free(a);
            continue;
        }
        /* a failed reload leaves the old set, data included */
        assert_int_equal(rl_aggs_add(a, &ev, T0), AGG_OK);
        for (long m = 0;; m++) {
            agg_alloc_fail_after(m);
            rc = rl_aggs_set(a, two.d, two.n, T0, NULL);
            agg_alloc_fail_after(-1);
            if (rc == AGG_OK)
                break;
            assert_int_equal(rc, AGG_ENOMEM);
            assert_true(rl_aggs_has(a, 2) && !rl_aggs_has(a, 3));
        }
        assert_true(value(a, 1, T0) == 1);
        assert_true(rl_aggs_has(a, 3) && rl_aggs_has(a, 4) && !rl_aggs_has(a, 2));
        rl_aggs_free(a);
        break;
    }
    assert_true(n > 2);
}

static void test_aggs_memory_counts_every_window(void **state)
{
    struct rl_aggs *a = rl_aggs_new();
    struct set s = {0};
    size_t empty = rl_aggs_memory(a), one;

    (void)state;
    rule(&s, 1, "count[5m]");
    assert_int_equal(rl_aggs_set(a, s.d, s.n, T0, NULL), AGG_OK);
    one = rl_aggs_memory(a);
    assert_true(one > empty + 300 * 24);
    rule(&s, 2, "count[10m]");
    assert_int_equal(rl_aggs_set(a, s.d, s.n, T0, NULL), AGG_OK);
    assert_true(rl_aggs_memory(a) > one + 600 * 24);
    rl_aggs_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aggs_feed_each_rule_the_events_it_matches),
        cmocka_unit_test(test_aggs_reload_keeps_windows_of_unchanged_rules),
        cmocka_unit_test(test_aggs_rules_with_one_expression_share_a_window),
        cmocka_unit_test(test_aggs_refuse_a_duplicate_id_and_keep_the_old_set),
        cmocka_unit_test(test_aggs_set_survives_allocation_failure),
        cmocka_unit_test(test_aggs_memory_counts_every_window),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
