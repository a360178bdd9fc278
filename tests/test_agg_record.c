/*
 * tests/test_agg_record.c — typed setters (numbers, user ids) and the exception
 * type and message read from a stack trace.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/record.h"

static bool str_is(struct agg_str s, const char *want)
{
    return want == NULL ? s.p == NULL
                        : s.p != NULL && s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

/* The type and message derived from <trace>, with <type> preset (or NULL). */
static void derive(const char *trace, const char *type, const char *want_type,
                   const char *want_msg)
{
    struct agg_record rec;

    agg_record_init(&rec);
    rec.str[AGG_F_STACK_TRACE] = (struct agg_str){trace, strlen(trace)};
    if (type != NULL)
        rec.str[AGG_F_EXCEPTION_TYPE] = (struct agg_str){type, strlen(type)};
    agg_record_derive_exception(&rec);
    if (!str_is(rec.str[AGG_F_EXCEPTION_TYPE], want_type) ||
        !str_is(rec.str[AGG_F_EXCEPTION_MESSAGE], want_msg))
        fail_msg("%s\n gave type \"%.*s\" message \"%.*s\"", trace,
                 (int)rec.str[AGG_F_EXCEPTION_TYPE].len,
                 rec.str[AGG_F_EXCEPTION_TYPE].p ? rec.str[AGG_F_EXCEPTION_TYPE].p : "(null)",
                 (int)rec.str[AGG_F_EXCEPTION_MESSAGE].len,
                 rec.str[AGG_F_EXCEPTION_MESSAGE].p ? rec.str[AGG_F_EXCEPTION_MESSAGE].p
                                                     : "(null)");
}

static void test_record_derives_python_exceptions(void **state)
{
    (void)state;
    derive("Traceback (most recent call last):\n"
           "  File \"/app/pay.py\", line 10, in charge\n"
           "    amount = int(raw)\n"
           "ValueError: invalid literal for int() with base 10: 'abc'\n",
           NULL, "ValueError", "invalid literal for int() with base 10: 'abc'");
    /* chained: the last exception; a multi-line message; dotted names */
    derive("Traceback (most recent call last):\n"
           "  File \"a.py\", line 2, in <module>\n"
           "    d['k']\n"
           "KeyError: 'k'\n\n"
           "During handling of the above exception, another exception occurred:\n\n"
           "Traceback (most recent call last):\n"
           "  File \"a.py\", line 4, in <module>\n"
           "    raise app.errors.Bad('one\\ntwo')\n"
           "    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
           "app.errors.Bad: one\ntwo",
           NULL, "app.errors.Bad", "one\ntwo");
    derive("Traceback (most recent call last):\n  File \"g.py\", line 1, in <module>\n"
           "    next(it)\nStopIteration\n",
           NULL, "StopIteration", NULL);
    derive("  File \"x.py\", line 1\n    foo(\n       ^\nSyntaxError: never closed", NULL, NULL,
           NULL); /* no Traceback header */
    derive("Traceback (most recent call last):\n  File \"x.py\", line 1\n    foo(\n       ^\n"
           "SyntaxError: '(' was never closed",
           NULL, "SyntaxError", "'(' was never closed");
    /* the type given: the message only if it is the same exception */
    derive("Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n    x\n"
           "NameError: name 'x' is not defined",
           "NameError", "NameError", "name 'x' is not defined");
    derive("Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n    x\n"
           "NameError: name 'x' is not defined",
           "Other", "Other", NULL);
}

static void test_record_derives_node_and_java_exceptions(void **state)
{
    (void)state;
    derive("TypeError: Cannot read properties of undefined (reading 'id')\n"
           "    at charge (/app/pay.js:12:19)",
           NULL, "TypeError", "Cannot read properties of undefined (reading 'id')");
    derive("Error [ERR_INVALID_ARG_TYPE]: The \"path\" argument must be of type string\n"
           "    at new NodeError (node:internal/errors:405:5)",
           NULL, "Error", "The \"path\" argument must be of type string");
    derive("Error: first line\nsecond line\n    at f (a.js:1:1)", NULL, "Error",
           "first line\nsecond line");
    derive("Error\n    at f (a.js:1:1)", NULL, "Error", NULL);
    derive("java.lang.IllegalStateException: boom\n\tat com.shop.Pay.run(Pay.java:10)", NULL,
           "java.lang.IllegalStateException", "boom");
    /* not a stack this knows */
    derive("something went wrong\n    at f (a.js:1:1)", NULL, NULL, NULL);
    derive("TypeError: no frames", NULL, NULL, NULL);
    derive("    at f (a.js:1:1)", NULL, NULL, NULL);
    derive("", NULL, NULL, NULL);
}

static void test_record_keeps_user_ids_that_are_not_integers(void **state)
{
    static const char *const texts[] = {"u-123", "550e8400-e29b-41d4-a716-446655440000",
                                        "2147483648", "-2147483649", "1.5", "", " 7", "nan"};
    struct agg_record rec;
    struct agg_err err = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        agg_record_init(&rec);
        assert_int_equal(
            agg_record_set_text(&rec, AGG_F_USER_ID, texts[i], strlen(texts[i]), &err), AGG_OK);
        assert_false(rec.has_user_id);
        assert_true(str_is(rec.user_id_orig, texts[i]));
        assert_true(rec.user_id_orig_is_string);
    }
    agg_record_init(&rec);
    assert_int_equal(agg_record_set_number(&rec, AGG_F_USER_ID, "2147483648", 10, &err), AGG_OK);
    assert_false(rec.user_id_orig_is_string);
    assert_int_equal(agg_record_set_number(&rec, AGG_F_USER_ID, "-12.0", 5, &err), AGG_OK);
    assert_true(rec.has_user_id);
    assert_int_equal(rec.user_id, -12);
    assert_null(rec.user_id_orig.p);
    /* the other integer columns still refuse */
    assert_int_equal(agg_record_set_text(&rec, AGG_F_LINE_NUMBER, "u-1", 3, &err), AGG_EINVAL);
    assert_non_null(strstr(err.msg, "line_number"));
}

static void test_record_numbers_may_be_subnormal(void **state)
{
    struct agg_record rec;
    struct agg_err err = {0};

    (void)state;
    agg_record_init(&rec);
    assert_int_equal(agg_record_set_number(&rec, AGG_F_MEMORY_USAGE_MB, "5e-324", 6, &err), AGG_OK);
    assert_true(rec.memory_usage_mb > 0);
    assert_int_equal(agg_record_set_text(&rec, AGG_F_MEMORY_USAGE_MB, "-1e-400", 7, &err), AGG_OK);
    assert_true(rec.memory_usage_mb == 0.0);
    assert_int_equal(agg_record_set_number(&rec, AGG_F_DURATION_MS, "4.9e-324", 8, &err), AGG_OK);
    assert_int_equal(rec.duration_ms, 0);
    assert_int_equal(agg_record_set_number(&rec, AGG_F_CREATED_AT, "5e-324", 6, &err), AGG_OK);
    assert_int_equal(rec.created_us, 0);
    assert_int_equal(agg_record_set_number(&rec, AGG_F_MEMORY_USAGE_MB, "1e400", 5, &err),
                     AGG_EINVAL);
    assert_string_equal(err.msg, "memory_usage_mb: 1e400 is out of range");
    assert_int_equal(agg_record_set_text(&rec, AGG_F_MEMORY_USAGE_MB, "infinity", 8, &err),
                     AGG_EINVAL);
    assert_non_null(strstr(err.msg, "is not a number"));
    /* jsonb's limits */
    assert_true(agg_jsonb_number_ok("5e-324", 6));
    assert_true(agg_jsonb_number_ok("1e400", 5));
    assert_false(agg_jsonb_number_ok("1e1001", 6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_derives_python_exceptions),
        cmocka_unit_test(test_record_derives_node_and_java_exceptions),
        cmocka_unit_test(test_record_keeps_user_ids_that_are_not_integers),
        cmocka_unit_test(test_record_numbers_may_be_subnormal),
    };

    return cmocka_run_group_tests_name("agg_record", tests, NULL, NULL);
}
