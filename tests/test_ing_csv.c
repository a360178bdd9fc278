/*
 * tests/test_ing_csv.c — the RFC 4180 record reader: quoting, line ends, multi-line
 * fields, malformed records and where reading resumes after them, allocation failure.
 *
 * Every input is an exact-size heap copy, so ASan reports any read past its end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/err.h"
#include "ingest/csv.h"

/* Reads the first record of <text>: rc, bytes used, fields in <c>. */
static int read_one(struct ing_csv *c, const char *text, size_t *used, struct agg_err *err)
{
    size_t n = strlen(text);
    char *copy = malloc(n);
    int rc;

    assert_non_null(copy);
    memcpy(copy, text, n);
    rc = ing_csv_read(c, copy, n, used, err);
    free(copy);
    return rc;
}

static void assert_field(const struct ing_csv *c, size_t i, const char *want)
{
    size_t len;
    const char *p = ing_csv_field(c, i, &len);

    assert_int_equal(len, strlen(want));
    assert_memory_equal(p, want, len);
    assert_int_equal(p[len], '\0');
}

static void test_csv_reads_plain_fields_up_to_the_line_end(void **state)
{
    struct ing_csv c;
    struct agg_err err = {0};
    size_t used = 0;

    (void)state;
    ing_csv_init(&c);
    assert_int_equal(read_one(&c, "a,b,,c\nnext", &used, &err), AGG_OK);
    assert_int_equal(used, 7);
    assert_int_equal(c.nfields, 4);
    assert_field(&c, 0, "a");
    assert_field(&c, 1, "b");
    assert_field(&c, 2, "");
    assert_field(&c, 3, "c");
    ing_csv_clear(&c);
}

static void test_csv_ends_a_record_at_crlf_and_keeps_a_lone_cr(void **state)
{
    struct ing_csv c;
    struct agg_err err = {0};
    size_t used = 0;

    (void)state;
    ing_csv_init(&c);
    assert_int_equal(read_one(&c, "x\ry,z\r\nrest", &used, &err), AGG_OK);
    assert_int_equal(used, 7);
    assert_int_equal(c.nfields, 2);
    assert_field(&c, 0, "x\ry");
    assert_field(&c, 1, "z");
    ing_csv_clear(&c);
}

static void test_csv_unquotes_doubled_quotes_commas_and_line_ends(void **state)
{
    struct ing_csv c;
    struct agg_err err = {0};
    size_t used = 0;

    (void)state;
    ing_csv_init(&c);
    assert_int_equal(read_one(&c, "\"say \"\"hi\"\"\",\"a,b\",\"two\nlines\"\nz", &used, &err),
                     AGG_OK);
    assert_int_equal(c.nfields, 3);
    assert_field(&c, 0, "say \"hi\"");
    assert_field(&c, 1, "a,b");
    assert_field(&c, 2, "two\nlines");
    assert_int_equal(c.lines, 2);
    assert_int_equal(used, strlen("\"say \"\"hi\"\"\",\"a,b\",\"two\nlines\"\n"));
    ing_csv_clear(&c);
}

static void test_csv_takes_a_last_record_without_line_end(void **state)
{
    struct ing_csv c;
    struct agg_err err = {0};
    size_t used = 0;

    (void)state;
    ing_csv_init(&c);
    assert_int_equal(read_one(&c, "1,\"2\"", &used, &err), AGG_OK);
    assert_int_equal(used, 5);
    assert_int_equal(c.nfields, 2);
    assert_field(&c, 1, "2");
    assert_int_equal(read_one(&c, "a,", &used, &err), AGG_OK);
    assert_int_equal(c.nfields, 2);
    assert_field(&c, 1, "");
    ing_csv_clear(&c);
}

static void test_csv_rejects_an_unclosed_quote_taking_the_rest(void **state)
{
    struct ing_csv c;
    struct agg_err err = {0};
    size_t used = 0;

    (void)state;
    ing_csv_init(&c);
    assert_int_equal(read_one(&c, "a,\"open\nb,c\n", &used, &err), AGG_EINVAL);
    assert_int_equal(used, strlen("a,\"open\nb,c\n"));
    assert_non_null(strstr(err.msg, "never closed"));
    ing_csv_clear(&c);
}

static void test_csv_rejects_stray_quotes_resuming_on_the_next_line(void **state)
{
    struct ing_csv c;
    struct agg_err err = {0};
    size_t used = 0;

    (void)state;
    ing_csv_init(&c);
    assert_int_equal(read_one(&c, "ab\"c,d\nok\n", &used, &err), AGG_EINVAL);
    assert_int_equal(used, 7);
    assert_non_null(strstr(err.msg, "quote inside unquoted field 1"));
    assert_int_equal(read_one(&c, "\"a\"x,d\nok\n", &used, &err), AGG_EINVAL);
    assert_int_equal(used, 7);
    assert_non_null(strstr(err.msg, "after the closing quote of field 1"));
    ing_csv_clear(&c);
}

static void test_csv_refuses_too_many_fields(void **state)
{
    struct ing_csv c;
    struct agg_err err = {0};
    size_t used = 0, n = ING_CSV_MAX_FIELDS + 1;
    char *line = malloc(n * 2);

    (void)state;
    assert_non_null(line);
    for (size_t i = 0; i < n; i++) {
        line[2 * i] = 'x';
        line[2 * i + 1] = i + 1 < n ? ',' : '\n';
    }
    ing_csv_init(&c);
    assert_int_equal(ing_csv_read(&c, line, n * 2, &used, &err), AGG_EINVAL);
    assert_int_equal(used, n * 2);
    ing_csv_clear(&c);
    free(line);
}

static void test_csv_fails_cleanly_when_memory_runs_out(void **state)
{
    const char text[] = "\"quoted, long enough field\",b,c,d,e,f,g,h,i,j,k,l,m\n";
    struct ing_csv c;
    struct agg_err err = {0};
    size_t used;
    int rc = AGG_ENOMEM;

    (void)state;
    for (int n = 0; rc == AGG_ENOMEM && n < 1000; n++) {
        ing_csv_init(&c);
        agg_alloc_fail_after(n);
        rc = ing_csv_read(&c, text, sizeof(text) - 1, &used, &err);
        agg_alloc_fail_after(-1);
        assert_true(rc == AGG_OK || rc == AGG_ENOMEM);
        ing_csv_clear(&c);
    }
    assert_int_equal(rc, AGG_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_reads_plain_fields_up_to_the_line_end),
        cmocka_unit_test(test_csv_ends_a_record_at_crlf_and_keeps_a_lone_cr),
        cmocka_unit_test(test_csv_unquotes_doubled_quotes_commas_and_line_ends),
        cmocka_unit_test(test_csv_takes_a_last_record_without_line_end),
        cmocka_unit_test(test_csv_rejects_an_unclosed_quote_taking_the_rest),
        cmocka_unit_test(test_csv_rejects_stray_quotes_resuming_on_the_next_line),
        cmocka_unit_test(test_csv_refuses_too_many_fields),
        cmocka_unit_test(test_csv_fails_cleanly_when_memory_runs_out),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
