/*
 * tests/test_rl_expr.c — metric expressions: every valid form of DESIGN.md "Rules",
 * a table of invalid ones with their positions and reasons, canonical printing,
 * matching against records, and the alert_rules operators.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/record.h"
#include "rules/expr.h"

static struct rl_expr compile_ok(const char *text)
{
    struct rl_expr e;
    struct agg_err err = {0};
    int rc = rl_expr_compile(text, &e, NULL, &err);

    if (rc != AGG_OK)
        fail_msg("\"%s\" did not compile: %s", text, err.msg);
    return e;
}

static void test_expr_compiles_the_design_examples(void **state)
{
    struct rl_expr e;

    (void)state;
    e = compile_ok("count{level>=ERROR}[5m]");
    assert_int_equal(e.agg, RL_AGG_COUNT);
    assert_int_equal(e.field, -1);
    assert_int_equal(e.window_s, 300);
    assert_int_equal(e.nfilters, 1);
    assert_int_equal(e.filters[0].field, AGG_F_LEVEL);
    assert_int_equal(e.filters[0].cmp, RL_CMP_GE);
    assert_int_equal(e.filters[0].num, AGG_LEVEL_ERROR);

    e = compile_ok("p95:duration_ms{module=api}[1m]");
    assert_int_equal(e.agg, RL_AGG_P95);
    assert_int_equal(e.field, AGG_F_DURATION_MS);
    assert_int_equal(e.window_s, 60);
    assert_int_equal(e.filters[0].field, AGG_F_MODULE);
    assert_int_equal(e.filters[0].cmp, RL_CMP_EQ);
    assert_string_equal(e.filters[0].value, "api");

    e = compile_ok("ratio{level>=ERROR}[10m]");
    assert_int_equal(e.agg, RL_AGG_RATIO);
    assert_int_equal(e.window_s, 600);

    e = compile_ok("ratio{level>=ERROR,logger_name=billing}[10m]");
    assert_int_equal(e.nfilters, 2);
    assert_int_equal(e.filters[1].field, AGG_F_LOGGER_NAME);
    assert_string_equal(e.filters[1].value, "billing");
}

static void test_expr_compiles_every_aggregate_and_field(void **state)
{
    static const struct {
        const char *text;
        enum rl_agg agg;
        int field;
    } cases[] = {
        {"count", RL_AGG_COUNT, -1},
        {"rate", RL_AGG_RATE, -1},
        {"ratio{module=x}", RL_AGG_RATIO, -1},
        {"avg:duration_ms", RL_AGG_AVG, AGG_F_DURATION_MS},
        {"min:memory_usage_mb", RL_AGG_MIN, AGG_F_MEMORY_USAGE_MB},
        {"max:duration_ms", RL_AGG_MAX, AGG_F_DURATION_MS},
        {"sum:memory_usage_mb", RL_AGG_SUM, AGG_F_MEMORY_USAGE_MB},
        {"p50:duration_ms", RL_AGG_P50, AGG_F_DURATION_MS},
        {"p90:duration_ms", RL_AGG_P90, AGG_F_DURATION_MS},
        {"p95:memory_usage_mb", RL_AGG_P95, AGG_F_MEMORY_USAGE_MB},
        {"p99:duration_ms", RL_AGG_P99, AGG_F_DURATION_MS},
    };

    (void)state;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct rl_expr e = compile_ok(cases[k].text);

        assert_int_equal(e.agg, cases[k].agg);
        assert_int_equal(e.field, cases[k].field);
        assert_int_equal(e.window_s, RL_EXPR_DEFAULT_WINDOW_S);
    }
    assert_true(rl_agg_quantile(RL_AGG_P99) == 0.99);
    assert_true(rl_agg_quantile(RL_AGG_AVG) == 0);
}

static void test_expr_compiles_windows_operators_and_values(void **state)
{
    struct rl_expr e;

    (void)state;
    assert_int_equal(compile_ok("count[30s]").window_s, 30);
    assert_int_equal(compile_ok("count[90s]").window_s, 90);
    assert_int_equal(compile_ok("count[1h]").window_s, 3600);
    assert_int_equal(compile_ok("count[24h]").window_s, 86400);
    assert_int_equal(compile_ok("count[1440m]").window_s, 86400);

    e = compile_ok("count{level<warn,level>debug,level<=Critical,level!=info,level=ERROR}");
    assert_int_equal(e.nfilters, 5);
    assert_int_equal(e.filters[0].cmp, RL_CMP_LT);
    assert_int_equal(e.filters[0].num, AGG_LEVEL_WARNING);
    assert_string_equal(e.filters[0].value, "WARNING");
    assert_int_equal(e.filters[1].cmp, RL_CMP_GT);
    assert_int_equal(e.filters[2].cmp, RL_CMP_LE);
    assert_int_equal(e.filters[2].num, AGG_LEVEL_CRITICAL);
    assert_int_equal(e.filters[3].cmp, RL_CMP_NE);
    assert_int_equal(e.filters[4].cmp, RL_CMP_EQ);

    e = compile_ok("count{ request_path = \"/a b,\\\"c\\\\\" , request_ip!=10.0.0.1 }");
    assert_string_equal(e.filters[0].value, "/a b,\"c\\");
    assert_int_equal(e.filters[0].len, 8);
    assert_int_equal(e.filters[1].cmp, RL_CMP_NE);
    assert_string_equal(e.filters[1].value, "10.0.0.1");

    e = compile_ok("count{user_id=-42,line_number=007,request_path=/v1/logs:x@y}");
    assert_int_equal(e.filters[0].num, -42);
    assert_int_equal(e.filters[1].num, 7);
    assert_string_equal(e.filters[1].value, "7");
    assert_string_equal(e.filters[2].value, "/v1/logs:x@y");

    e = compile_ok("count{correlation_id=\"\"}");
    assert_int_equal(e.filters[0].len, 0);

    e = compile_ok("count{module=a,module=b,module=c,module=d,module=e,module=f,module=g,"
                   "module=h}");
    assert_int_equal(e.nfilters, 8);
}

struct bad {
    const char *text;
    size_t pos;
    const char *word;
};

static const struct bad bad_cases[] = {
    {"", 0, "empty"},
    {"cnt{level>=ERROR}", 0, "unknown aggregate \"cnt\""},
    {"COUNT", 0, "unknown aggregate"},
    {"{level=ERROR}", 0, "expected an aggregate"},
    {"p95{module=api}", 3, "p95 needs a numeric field"},
    {"avg", 3, "avg needs a numeric field"},
    {"count:duration_ms", 5, "count takes no field"},
    {"rate:duration_ms", 4, "rate takes no field"},
    {"p95:latency", 4, "unknown field \"latency\""},
    {"sum:module", 4, "non-numeric field \"module\""},
    {"p95:", 4, "expected a field"},
    {"count{lvl=ERROR}", 6, "unknown field \"lvl\""},
    {"count{message=x}", 6, "cannot be used in a filter"},
    {"count{duration_ms=5}", 6, "cannot be used in a filter"},
    {"count{module==api}", 12, "unknown operator \"==\""},
    {"count{module=>api}", 12, "unknown operator"},
    {"count{module~api}", 12, "expected an operator"},
    {"count{module>=api}", 12, "applies only to level"},
    {"count{user_id<5}", 13, "applies only to level"},
    {"count{level>=LOUD}", 13, "unknown level \"LOUD\""},
    {"count{line_number=12x}", 18, "takes an integer"},
    {"count{user_id=99999999999}", 14, "takes an integer"},
    {"count{user_id=\" 1\"}", 14, "takes an integer"},
    {"count{module=}", 13, "expected a value"},
    {"count{level>=ERROR", 5, "unterminated filter list"},
    {"count{module=\"api}", 13, "unterminated quoted value"},
    {"count{module=\"a\\nb\"}", 15, "unknown escape"},
    {"count{module=a b}", 15, "unexpected \"b\" after a filter"},
    {"count{module=a=b}", 14, "unexpected \"=\""},
    {"count{}", 6, "empty filter list"},
    {"count{ }", 7, "empty filter list"},
    {"count{module=a,}", 15, "empty filter"},
    {"count{module=a,,level=ERROR}", 15, "empty filter"},
    {"count{,module=a}", 6, "empty filter"},
    {"count{=a}", 6, "expected a field name"},
    {"count{module=1,module=2,module=3,module=4,module=5,module=6,module=7,module=8,module=9}",
     78, "more than 8 filters"},
    {"count[10s]", 6, "shorter than 30s"},
    {"count[29s]", 6, "shorter than 30s"},
    {"count[25h]", 6, "longer than 24h"},
    {"count[1441m]", 6, "longer than 24h"},
    {"count[9999999h]", 6, "too long"},
    {"count[5d]", 7, "unknown window unit \"d\""},
    {"count[5M]", 7, "unknown window unit"},
    {"count[m]", 6, "expected a number"},
    {"count[5m", 5, "unterminated window"},
    {"count[5", 5, "unterminated window"},
    {"count[5mm]", 8, "expected ']'"},
    {"count[5m]x", 9, "after the window"},
    {"count[5m][5m]", 9, "after the window"},
    {"count{module=a}{module=b}", 15, "after the filters"},
    {"count{module=a}x", 15, "after the filters"},
    {"count x", 5, "whitespace"},
    {" count", 0, "expected an aggregate"},
    {"count{module=\"a\x01\"}", 15, "control character"},
    {"count;", 5, "unexpected \";\""},
    {"ratio", 5, "ratio needs a filter"},
    {"ratio[5m]", 5, "ratio needs a filter"},
};

static void test_expr_refuses_invalid_text_with_position_and_reason(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof(bad_cases) / sizeof(bad_cases[0]); k++) {
        const struct bad *c = &bad_cases[k];
        struct rl_expr e;
        struct agg_err err = {0};
        size_t pos = 999;
        char prefix[32];
        int rc = rl_expr_compile(c->text, &e, &pos, &err);

        if (rc != AGG_EINVAL)
            fail_msg("\"%s\" compiled (rc %d)", c->text, rc);
        if (pos != c->pos || strstr(err.msg, c->word) == NULL)
            fail_msg("\"%s\": got position %zu \"%s\", want %zu and \"%s\"", c->text, pos,
                     err.msg, c->pos, c->word);
        snprintf(prefix, sizeof(prefix), "at %zu: ", c->pos);
        assert_int_equal(strncmp(err.msg, prefix, strlen(prefix)), 0);
        assert_int_equal(err.code, AGG_EINVAL);
    }
}

static void test_expr_refuses_text_over_100_characters(void **state)
{
    char text[128];
    struct rl_expr e;
    struct agg_err err = {0};
    size_t pos = 0;

    (void)state;
    /* "count{module=" + 87 x + "}" = 101 characters */
    memcpy(text, "count{module=", 13);
    memset(text + 13, 'x', 87);
    memcpy(text + 100, "}", 2);
    assert_int_equal(strlen(text), 101);
    assert_int_equal(rl_expr_compile(text, &e, &pos, &err), AGG_EINVAL);
    assert_int_equal(pos, 100);
    assert_non_null(strstr(err.msg, "longer than 100"));
    text[99] = '}';
    text[100] = '\0';
    assert_int_equal(rl_expr_compile(text, &e, &pos, &err), AGG_OK);
    assert_int_equal(e.filters[0].len, 86);
}

static void test_expr_format_is_canonical_and_compiles_back(void **state)
{
    static const struct {
        const char *text, *canonical;
    } cases[] = {
        {"count", "count[5m]"},
        {"count{level>=err}[300s]", "count{level>=ERROR}[5m]"},
        {"p95:duration_ms{ module = api }[60s]", "p95:duration_ms{module=api}[1m]"},
        {"rate{request_path=\"/a b\"}[90s]", "rate{request_path=\"/a b\"}[90s]"},
        {"avg:memory_usage_mb{module=\"x\\\"y\\\\\"}[24h]",
         "avg:memory_usage_mb{module=\"x\\\"y\\\\\"}[24h]"},
        {"ratio{level>=WARNING,user_id=007,correlation_id=\"\"}[120m]",
         "ratio{level>=WARNING,user_id=7,correlation_id=\"\"}[2h]"},
        {"count{module=\"plain\"}", "count{module=plain}[5m]"},
    };

    (void)state;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct rl_expr e = compile_ok(cases[k].text), back;
        char buf[RL_EXPR_FORMAT_MAX];

        rl_expr_format(&e, buf, sizeof(buf));
        assert_string_equal(buf, cases[k].canonical);
        back = compile_ok(buf);
        assert_true(rl_expr_equal(&e, &back));
    }
}

static void test_expr_format_truncates_safely(void **state)
{
    struct rl_expr e = compile_ok("count{module=abcdef}[5m]");
    char small[8];

    (void)state;
    rl_expr_format(&e, small, sizeof(small));
    assert_string_equal(small, "count{m");
    rl_expr_format(&e, small, 1);
    assert_string_equal(small, "");
}

static void test_expr_equal_tells_expressions_apart(void **state)
{
    struct rl_expr a = compile_ok("count{module=api}[5m]");
    struct rl_expr b = compile_ok("count{module=apj}[5m]");
    struct rl_expr c = compile_ok("count{module=api}[6m]");
    struct rl_expr d = compile_ok("count{module!=api}[5m]");
    struct rl_expr same = compile_ok("count{ module=\"api\" }");

    (void)state;
    assert_true(rl_expr_equal(&a, &same));
    assert_false(rl_expr_equal(&a, &b));
    assert_false(rl_expr_equal(&a, &c));
    assert_false(rl_expr_equal(&a, &d));
}

static struct agg_record record(void)
{
    struct agg_record r;

    agg_record_init(&r);
    return r;
}

static void set_str(struct agg_record *r, int field, const char *s)
{
    r->str[field].p = s;
    r->str[field].len = strlen(s);
}

static void test_expr_match_compares_levels_by_order(void **state)
{
    struct rl_expr ge = compile_ok("count{level>=WARNING}");
    struct rl_expr lt = compile_ok("count{level<warning}");
    struct rl_expr ne = compile_ok("count{level!=INFO}");
    struct agg_record r = record();

    (void)state;
    for (int lv = AGG_LEVEL_DEBUG; lv <= AGG_LEVEL_CRITICAL; lv++) {
        r.level = (enum agg_level)lv;
        r.has_level = true;
        assert_int_equal(rl_expr_match(&ge, &r), lv >= AGG_LEVEL_WARNING);
        assert_int_equal(rl_expr_match(&lt, &r), lv < AGG_LEVEL_WARNING);
        assert_int_equal(rl_expr_match(&ne, &r), lv != AGG_LEVEL_INFO);
        assert_int_equal(rl_expr_level_mask(&ge) >> lv & 1, lv >= AGG_LEVEL_WARNING);
    }
    /* a record without a level is stored as INFO and matched as INFO */
    r = record();
    r.level = AGG_LEVEL_CRITICAL; /* ignored without has_level */
    assert_false(rl_expr_match(&ge, &r));
    assert_true(rl_expr_match(&lt, &r));
    assert_false(rl_expr_match(&ne, &r));
    ge = compile_ok("count{module=x}");
    assert_int_equal(rl_expr_level_mask(&ge), 0x1f);
    ge = compile_ok("count{level>=INFO,level<ERROR}");
    assert_int_equal(rl_expr_level_mask(&ge),
                     (1u << AGG_LEVEL_INFO) | (1u << AGG_LEVEL_WARNING));
}

static void test_expr_match_strings_exactly_and_missing_fields(void **state)
{
    struct rl_expr eq = compile_ok("count{module=api}");
    struct rl_expr ne = compile_ok("count{module!=api}");
    struct rl_expr both = compile_ok("count{module=api,request_method=GET}");
    struct rl_expr empty = compile_ok("count{module=\"\"}");
    struct agg_record r = record();

    (void)state;
    /* missing: never =, always != */
    assert_false(rl_expr_match(&eq, &r));
    assert_true(rl_expr_match(&ne, &r));
    set_str(&r, AGG_F_MODULE, "api");
    assert_true(rl_expr_match(&eq, &r));
    assert_false(rl_expr_match(&ne, &r));
    assert_false(rl_expr_match(&both, &r));
    set_str(&r, AGG_F_REQUEST_METHOD, "GET");
    assert_true(rl_expr_match(&both, &r));
    set_str(&r, AGG_F_MODULE, "apis");
    assert_false(rl_expr_match(&eq, &r));
    set_str(&r, AGG_F_MODULE, "API");
    assert_false(rl_expr_match(&eq, &r));
    /* a borrowed string is not NUL-terminated: only its length counts */
    r.str[AGG_F_MODULE].p = "apiXYZ";
    r.str[AGG_F_MODULE].len = 3;
    assert_true(rl_expr_match(&eq, &r));
    /* an empty value matches a present empty string only */
    r.str[AGG_F_MODULE].len = 0;
    assert_true(rl_expr_match(&empty, &r));
    r.str[AGG_F_MODULE].p = NULL;
    assert_false(rl_expr_match(&empty, &r));
}

static void test_expr_match_integer_fields(void **state)
{
    struct rl_expr eq = compile_ok("count{user_id=42}");
    struct rl_expr ne = compile_ok("count{line_number!=7}");
    struct agg_record r = record();

    (void)state;
    assert_false(rl_expr_match(&eq, &r));
    assert_true(rl_expr_match(&ne, &r));
    r.has_user_id = true;
    r.user_id = 42;
    assert_true(rl_expr_match(&eq, &r));
    r.user_id = 43;
    assert_false(rl_expr_match(&eq, &r));
    r.has_line_number = true;
    r.line_number = 7;
    assert_false(rl_expr_match(&ne, &r));
}

static void test_expr_value_of_reads_the_field(void **state)
{
    struct rl_expr d = compile_ok("avg:duration_ms");
    struct rl_expr m = compile_ok("max:memory_usage_mb");
    struct rl_expr c = compile_ok("count");
    struct agg_record r = record();
    double v = -1;

    (void)state;
    assert_false(rl_expr_value_of(&d, &r, &v));
    r.has_duration_ms = true;
    r.duration_ms = 250;
    r.has_memory_usage_mb = true;
    r.memory_usage_mb = 12.5;
    assert_true(rl_expr_value_of(&d, &r, &v));
    assert_true(v == 250);
    assert_true(rl_expr_value_of(&m, &r, &v));
    assert_true(v == 12.5);
    assert_false(rl_expr_value_of(&c, &r, &v));
}

static void test_expr_operators_parse_and_hold(void **state)
{
    enum rl_op op;

    (void)state;
    assert_true(rl_expr_operator_parse("gt", &op) && op == RL_OP_GT);
    assert_true(rl_expr_operator_parse("gte", &op) && op == RL_OP_GTE);
    assert_true(rl_expr_operator_parse("lt", &op) && op == RL_OP_LT);
    assert_true(rl_expr_operator_parse("lte", &op) && op == RL_OP_LTE);
    assert_true(rl_expr_operator_parse("eq", &op) && op == RL_OP_EQ);
    assert_false(rl_expr_operator_parse("GT", &op));
    assert_false(rl_expr_operator_parse(">", &op));
    assert_false(rl_expr_operator_parse("", &op));
    assert_string_equal(rl_op_name(RL_OP_LTE), "lte");

    assert_true(rl_op_holds(RL_OP_GT, 2, 1));
    assert_false(rl_op_holds(RL_OP_GT, 1, 1));
    assert_true(rl_op_holds(RL_OP_GTE, 1, 1));
    assert_true(rl_op_holds(RL_OP_LT, 0.5, 1));
    assert_false(rl_op_holds(RL_OP_LT, 1, 1));
    assert_true(rl_op_holds(RL_OP_LTE, 1, 1));
    assert_true(rl_op_holds(RL_OP_EQ, 0.1 + 0.2, 0.3));
    assert_false(rl_op_holds(RL_OP_EQ, 0.3001, 0.3));
    assert_false(rl_op_holds(RL_OP_GT, 0.0 / 0.0, 1));
    assert_false(rl_op_holds(RL_OP_EQ, 0.0 / 0.0, 0.0 / 0.0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expr_compiles_the_design_examples),
        cmocka_unit_test(test_expr_compiles_every_aggregate_and_field),
        cmocka_unit_test(test_expr_compiles_windows_operators_and_values),
        cmocka_unit_test(test_expr_refuses_invalid_text_with_position_and_reason),
        cmocka_unit_test(test_expr_refuses_text_over_100_characters),
        cmocka_unit_test(test_expr_format_is_canonical_and_compiles_back),
        cmocka_unit_test(test_expr_format_truncates_safely),
        cmocka_unit_test(test_expr_equal_tells_expressions_apart),
        cmocka_unit_test(test_expr_match_compares_levels_by_order),
        cmocka_unit_test(test_expr_match_strings_exactly_and_missing_fields),
        cmocka_unit_test(test_expr_match_integer_fields),
        cmocka_unit_test(test_expr_value_of_reads_the_field),
        cmocka_unit_test(test_expr_operators_parse_and_hold),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
