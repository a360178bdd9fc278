/*
 * tests/test_ing_otlp.c — the mapping of a decoded OTLP LogRecord onto a record:
 * attributes that name a column, then the record's own fields. OTLP/HTTP JSON
 * documents end to end are in tests/test_ing_json.c (ing_json_decode_document).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ingest/otlp.h"

#define S(lit) ((struct agg_str){(lit), sizeof(lit) - 1})

static void assert_col(const struct agg_record *rec, int f, const char *want)
{
    if (want == NULL) {
        assert_null(rec->str[f].p);
        return;
    }
    assert_non_null(rec->str[f].p);
    assert_int_equal(rec->str[f].len, strlen(want));
    assert_memory_equal(rec->str[f].p, want, strlen(want));
}

static void attr(struct agg_record *rec, const char *key, const char *val, bool is_number)
{
    ing_otlp_attr_column(rec, key, strlen(key), val, strlen(val), is_number);
}

static void test_otlp_attr_column_fills_semantic_convention_and_column_names(void **state)
{
    struct agg_record rec;

    (void)state;
    agg_record_init(&rec);
    attr(&rec, "exception.type", "CardDeclined", false);
    attr(&rec, "http.method", "POST", false);
    attr(&rec, "url.path", "/pay", false);
    attr(&rec, "code.namespace", "shop.pay", false);
    attr(&rec, "request_id", "r-1", false);
    attr(&rec, "code.lineno", "117", true);
    attr(&rec, "duration_ms", "12", false); /* a number as text: still a number */
    attr(&rec, "enduser.id", "42", true);
    assert_col(&rec, AGG_F_EXCEPTION_TYPE, "CardDeclined");
    assert_col(&rec, AGG_F_REQUEST_METHOD, "POST");
    assert_col(&rec, AGG_F_REQUEST_PATH, "/pay");
    assert_col(&rec, AGG_F_MODULE, "shop.pay");
    assert_col(&rec, AGG_F_REQUEST_ID, "r-1");
    assert_true(rec.has_line_number);
    assert_int_equal(rec.line_number, 117);
    assert_true(rec.has_duration_ms);
    assert_int_equal(rec.duration_ms, 12);
    assert_true(rec.has_user_id);
    assert_int_equal(rec.user_id, 42);
}

static void test_otlp_attr_column_ignores_other_keys_and_never_rejects(void **state)
{
    struct agg_record rec;

    (void)state;
    agg_record_init(&rec);
    /* message, level and created_at come from the record's own fields only */
    attr(&rec, "message", "from an attribute", false);
    attr(&rec, "level", "ERROR", false);
    attr(&rec, "created_at", "2024-01-02T03:04:05Z", false);
    attr(&rec, "service.name", "checkout", false);
    attr(&rec, "code.lineno", "not a number", false);
    assert_col(&rec, AGG_F_MESSAGE, NULL);
    assert_false(rec.has_level);
    assert_int_equal(rec.created_us, AGG_TIME_NONE);
    assert_false(rec.has_line_number);
    for (int f = 0; f < AGG_F_STR_COUNT; f++)
        assert_col(&rec, f, NULL);
}

static void test_otlp_attr_column_keeps_a_user_id_that_is_not_an_integer(void **state)
{
    struct agg_record rec;

    (void)state;
    agg_record_init(&rec);
    attr(&rec, "user.id", "alice", false);
    assert_false(rec.has_user_id);
    assert_non_null(rec.user_id_orig.p);
    assert_memory_equal(rec.user_id_orig.p, "alice", 5);
    assert_true(rec.user_id_orig_is_string);
}

static void test_otlp_log_columns_maps_the_record_fields(void **state)
{
    struct agg_record rec;
    struct ing_otlp_log log = {
        .time_ns = UINT64_C(1704164645123456789),
        .observed_ns = UINT64_C(1704164646000000000),
        .severity_number = 17,
        .severity_text = S("ERROR"),
        .body = S("payment failed"),
        .trace_id = S("5b8efff798038103d269b633813fc60c"),
        .scope_name = S("com.shop.Checkout"),
    };

    (void)state;
    agg_record_init(&rec);
    assert_true(ing_otlp_log_columns(&rec, &log)); /* "ERROR" is a level name */
    assert_int_equal(rec.created_us, INT64_C(1704164645123456));
    assert_true(rec.has_level);
    assert_int_equal(rec.level, AGG_LEVEL_ERROR);
    assert_col(&rec, AGG_F_MESSAGE, "payment failed");
    assert_col(&rec, AGG_F_CORRELATION_ID, "5b8efff798038103d269b633813fc60c");
    assert_col(&rec, AGG_F_LOGGER_NAME, "com.shop.Checkout");
}

static void test_otlp_log_columns_number_beats_text_and_text_may_be_the_level(void **state)
{
    struct agg_record rec;
    struct ing_otlp_log log = {.severity_number = 9, .severity_text = S("WARN2")};

    (void)state;
    agg_record_init(&rec);
    assert_true(ing_otlp_log_columns(&rec, &log));
    assert_int_equal(rec.level, AGG_LEVEL_INFO); /* 9 is INFO, whatever the text says */

    agg_record_init(&rec);
    log.severity_number = 0;
    assert_true(ing_otlp_log_columns(&rec, &log));
    assert_true(rec.has_level);
    assert_int_equal(rec.level, AGG_LEVEL_WARNING);

    agg_record_init(&rec);
    log.severity_text = S("chatty");
    assert_false(ing_otlp_log_columns(&rec, &log)); /* not a level: extra_data keeps it */
    assert_false(rec.has_level);

    agg_record_init(&rec);
    log.severity_number = 5;
    assert_false(ing_otlp_log_columns(&rec, &log));
    assert_true(rec.has_level);
    assert_int_equal(rec.level, AGG_LEVEL_DEBUG);
}

static void test_otlp_log_columns_fall_back_when_fields_are_missing(void **state)
{
    struct agg_record rec;
    struct ing_otlp_log log = {.observed_ns = UINT64_C(1704164646000000000)};

    (void)state;
    agg_record_init(&rec);
    assert_false(ing_otlp_log_columns(&rec, &log));
    assert_int_equal(rec.created_us, INT64_C(1704164646000000)); /* observed time */
    assert_false(rec.has_level);
    assert_col(&rec, AGG_F_MESSAGE, ""); /* NOT NULL column */
    assert_col(&rec, AGG_F_CORRELATION_ID, NULL);
    assert_col(&rec, AGG_F_LOGGER_NAME, NULL);

    agg_record_init(&rec);
    log.observed_ns = 0;
    log.trace_id = S("");
    log.scope_name = S("");
    ing_otlp_log_columns(&rec, &log);
    assert_int_equal(rec.created_us, AGG_TIME_NONE);
    assert_col(&rec, AGG_F_CORRELATION_ID, NULL);
    assert_col(&rec, AGG_F_LOGGER_NAME, NULL);
}

static void test_otlp_log_columns_leave_what_attributes_set(void **state)
{
    static const char trace[] =
        "Traceback (most recent call last):\n  File \"pay.py\", line 3\nValueError: bad card";
    struct agg_record rec;
    struct ing_otlp_log log = {.scope_name = S("scope.logger")};

    (void)state;
    agg_record_init(&rec);
    attr(&rec, "logger_name", "attr.logger", false);
    attr(&rec, "exception.stacktrace", trace, false);
    ing_otlp_log_columns(&rec, &log);
    assert_col(&rec, AGG_F_LOGGER_NAME, "attr.logger");
    /* the exception columns a stack trace implies */
    assert_col(&rec, AGG_F_EXCEPTION_TYPE, "ValueError");
    assert_col(&rec, AGG_F_EXCEPTION_MESSAGE, "bad card");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_otlp_attr_column_fills_semantic_convention_and_column_names),
        cmocka_unit_test(test_otlp_attr_column_ignores_other_keys_and_never_rejects),
        cmocka_unit_test(test_otlp_attr_column_keeps_a_user_id_that_is_not_an_integer),
        cmocka_unit_test(test_otlp_log_columns_maps_the_record_fields),
        cmocka_unit_test(test_otlp_log_columns_number_beats_text_and_text_may_be_the_level),
        cmocka_unit_test(test_otlp_log_columns_fall_back_when_fields_are_missing),
        cmocka_unit_test(test_otlp_log_columns_leave_what_attributes_set),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
