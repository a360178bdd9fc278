/*
 * tests/test_st_copy.c — COPY encoding: escaping, repair, truncation, NULLs; the binary
 * tuple of every record is the text row's, converted (what spool replay of older
 * builds relies on). (The round trip of both through a real PostgreSQL is in
 * tests/test_st_copy_pg.c.)
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "store/copy.h"

#define T0 INT64_C(1763164800000000) /* 2025-11-15 00:00:00 UTC */

/* Encodes <rec> in binary: one tuple, equal to its text row converted. */
static void check_binary_is_text_converted(const struct agg_record *rec, int64_t original,
                                           const struct agg_buf *text)
{
    struct agg_buf bin, conv;
    struct st_copy_scratch scratch;

    agg_buf_init(&bin);
    agg_buf_init(&conv);
    st_copy_scratch_init(&scratch);
    assert_int_equal(st_copy_encode(&bin, ST_COPY_BINARY, rec, T0, original, &scratch), AGG_OK);
    assert_true(st_copy_is_tuple(bin.data, bin.len));
    assert_int_equal(st_copy_text_to_binary(&conv, text->data, text->len), AGG_OK);
    assert_int_equal(conv.len, bin.len);
    assert_memory_equal(conv.data, bin.data, bin.len);
    agg_buf_clear(&bin);
    agg_buf_clear(&conv);
    st_copy_scratch_clear(&scratch);
}

/* Encodes <rec> as text and splits the row into its 19 fields (pointers into a static
 * copy); checks the binary tuple against it. */
static int encode_fields(const struct agg_record *rec, int64_t original, char *fields[19])
{
    static char row[1 << 18];
    struct agg_buf out;
    struct st_copy_scratch scratch;
    int n = 0;

    agg_buf_init(&out);
    st_copy_scratch_init(&scratch);
    assert_int_equal(st_copy_encode(&out, ST_COPY_TEXT, rec, T0, original, &scratch), AGG_OK);
    check_binary_is_text_converted(rec, original, &out);
    assert_true(out.len < sizeof(row));
    assert_int_equal(out.data[out.len - 1], '\n');
    assert_null(memchr(out.data, '\n', out.len - 1)); /* one line per row */
    memcpy(row, out.data, out.len - 1);
    row[out.len - 1] = '\0';
    agg_buf_clear(&out);
    st_copy_scratch_clear(&scratch);
    for (char *p = row;; p++) {
        fields[n++] = p;
        p = strchr(p, '\t');
        if (p == NULL || n == 19)
            break;
        *p = '\0';
    }
    return n;
}

static struct agg_str str(const char *s)
{
    return (struct agg_str){s, strlen(s)};
}

static void test_copy_row_has_every_column_and_nulls(void **state)
{
    struct agg_record rec;
    char *f[19];

    (void)state;
    agg_record_init(&rec);
    assert_int_equal(encode_fields(&rec, AGG_TIME_NONE, f), 19);
    assert_string_equal(f[0], "INFO");       /* level defaults to INFO */
    assert_string_equal(f[1], "");           /* message is NOT NULL */
    for (int i = 2; i <= 17; i++)
        assert_string_equal(f[i], "\\N");
    assert_string_equal(f[18], "2025-11-15 00:00:00.000000");
}

static void test_copy_escapes_tabs_newlines_backslashes(void **state)
{
    struct agg_record rec;
    char *f[19];

    (void)state;
    agg_record_init(&rec);
    rec.str[AGG_F_MESSAGE] = str("a\tb\nc\\d\re");
    rec.level = AGG_LEVEL_ERROR;
    rec.has_level = true;
    encode_fields(&rec, AGG_TIME_NONE, f);
    assert_string_equal(f[0], "ERROR");
    assert_string_equal(f[1], "a\\tb\\nc\\\\d\\re");
}

static void test_copy_repairs_nul_and_invalid_utf8(void **state)
{
    static const char msg[] = {'o', 'k', '\0', 'x', (char)0xC3, (char)0x28, 'y', (char)0xFF};
    struct agg_record rec;
    char *f[19];

    (void)state;
    agg_record_init(&rec);
    rec.str[AGG_F_MESSAGE] = (struct agg_str){msg, sizeof(msg)};
    encode_fields(&rec, AGG_TIME_NONE, f);
    assert_string_equal(f[1], "ok\xEF\xBF\xBDx\xEF\xBF\xBD(y\xEF\xBF\xBD");
}

static void test_copy_truncates_varchar_at_character_boundary(void **state)
{
    char name[600];
    struct agg_record rec;
    char *f[19];

    (void)state;
    for (int i = 0; i < 300; i++)
        memcpy(name + 2 * i, "\xC3\xA9", 2); /* 300 x U+00E9 */
    agg_record_init(&rec);
    rec.str[AGG_F_LOGGER_NAME] = (struct agg_str){name, 600};
    rec.str[AGG_F_REQUEST_METHOD] = str("PROPPATCHXYZ");
    rec.extra = str("{\"k\":1}");
    encode_fields(&rec, AGG_TIME_NONE, f);
    assert_int_equal(strlen(f[2]), 255 * 2); /* 255 characters, 2 bytes each */
    assert_string_equal(f[9], "PROPPATCHX");
    assert_string_equal(f[17], "{\"truncated\":[\"logger_name\",\"request_method\"],\"k\":1}");
}

static void test_copy_numbers_and_original_timestamp(void **state)
{
    struct agg_record rec;
    char *f[19];

    (void)state;
    agg_record_init(&rec);
    rec.has_line_number = rec.has_user_id = rec.has_duration_ms = true;
    rec.has_memory_usage_mb = true;
    rec.line_number = -7;
    rec.user_id = 2147483647;
    rec.duration_ms = 0;
    rec.memory_usage_mb = 12.5;
    encode_fields(&rec, INT64_C(946684800000000), f); /* 2000-01-01 */
    assert_string_equal(f[5], "-7");
    assert_string_equal(f[7], "2147483647");
    assert_string_equal(f[12], "0");
    assert_string_equal(f[13], "12.5");
    assert_string_equal(f[17], "{\"original_timestamp\":\"2000-01-01T00:00:00.000000Z\"}");
}

static void test_copy_extra_splice_keeps_members_and_escapes(void **state)
{
    struct agg_record rec;
    char *f[19];

    (void)state;
    agg_record_init(&rec);
    rec.extra = str("{}");
    encode_fields(&rec, INT64_C(0), f);
    assert_string_equal(f[17], "{\"original_timestamp\":\"1970-01-01T00:00:00.000000Z\"}");
    rec.extra = str("{\"custom\":{\"a\":{\"b\":[1]}}}");
    encode_fields(&rec, INT64_C(0), f);
    assert_string_equal(f[17], "{\"original_timestamp\":\"1970-01-01T00:00:00.000000Z\","
                               "\"custom\":{\"a\":{\"b\":[1]}}}");
    rec.extra = str("{\"path\":\"C:\\\\dir\",\"nl\":\"a\\nb\"}");
    encode_fields(&rec, AGG_TIME_NONE, f);
    /* JSON backslashes are doubled for COPY */
    assert_string_equal(f[17], "{\"path\":\"C:\\\\\\\\dir\",\"nl\":\"a\\\\nb\"}");
}

static void test_copy_user_id_that_is_not_an_integer_goes_to_extra_data(void **state)
{
    static const char odd[] = "a\"b\\c\x01\0d\xFF";
    struct agg_record rec;
    char *f[19];

    (void)state;
    agg_record_init(&rec);
    agg_record_keep_user_id(&rec, "u-123", 5, true);
    encode_fields(&rec, AGG_TIME_NONE, f);
    assert_string_equal(f[7], "\\N");
    assert_string_equal(f[17], "{\"user_id\":\"u-123\"}");
    /* a number stays a number; the other additions and the record's own members stay */
    rec.has_user_id = true; /* cleared by keeping an original */
    agg_record_keep_user_id(&rec, "2147483648", 10, false);
    rec.extra = str("{\"k\":1}");
    encode_fields(&rec, INT64_C(0), f);
    assert_string_equal(f[7], "\\N");
    assert_string_equal(f[17], "{\"original_timestamp\":\"1970-01-01T00:00:00.000000Z\",\"k\":1,"
                               "\"user_id\":2147483648}");
    /* JSON-escaped, NUL and invalid UTF-8 made U+FFFD, then COPY-escaped */
    agg_record_keep_user_id(&rec, odd, sizeof(odd) - 1, true);
    rec.extra = str("{}");
    encode_fields(&rec, AGG_TIME_NONE, f);
    assert_string_equal(f[17], "{\"user_id\":\"a\\\\\"b\\\\\\\\c\\\\u0001\\\\ufffdd\xEF\xBF\xBD\"}");
    /* a literal jsonb would refuse is written as a string */
    agg_record_keep_user_id(&rec, "1e5000", 6, false);
    assert_true(rec.user_id_orig_is_string);
    agg_record_keep_user_id(&rec, "01", 2, false);
    assert_true(rec.user_id_orig_is_string);
    agg_record_keep_user_id(&rec, "false", 5, false);
    assert_false(rec.user_id_orig_is_string);
}

static void test_copy_64k_message_is_one_field(void **state)
{
    size_t n = 65536;
    char *big = malloc(n);
    struct agg_record rec;
    char *f[19];

    (void)state;
    memset(big, 'z', n);
    agg_record_init(&rec);
    rec.str[AGG_F_MESSAGE] = (struct agg_str){big, n};
    encode_fields(&rec, AGG_TIME_NONE, f);
    assert_int_equal(strlen(f[1]), n);
    free(big);
}

static void alloc_sweep(enum st_copy_format format)
{
    struct agg_record rec;
    struct agg_buf out;
    struct st_copy_scratch scratch;
    long n;

    agg_record_init(&rec);
    rec.str[AGG_F_MESSAGE] = str("bad \xFF byte");
    rec.str[AGG_F_LOGGER_NAME] = str("svc");
    rec.extra = str("{\"a\":1}");
    agg_record_keep_user_id(&rec, "u-\"1\"", 5, true);
    for (n = 0;; n++) {
        int rc;

        agg_buf_init(&out);
        st_copy_scratch_init(&scratch);
        agg_buf_append(&out, "prev\n", 5);
        agg_alloc_fail_after(n);
        rc = st_copy_encode(&out, format, &rec, T0, T0, &scratch);
        agg_alloc_fail_after(-1);
        if (rc == AGG_OK) {
            agg_buf_clear(&out);
            st_copy_scratch_clear(&scratch);
            break;
        }
        assert_int_equal(rc, AGG_ENOMEM);
        assert_int_equal(out.len, 5);
        assert_string_equal(out.data, "prev\n");
        agg_buf_clear(&out);
        st_copy_scratch_clear(&scratch);
    }
    assert_true(n > 0);
}

static void test_copy_allocation_failure_leaves_buffer_unchanged(void **state)
{
    (void)state;
    alloc_sweep(ST_COPY_BINARY);
    alloc_sweep(ST_COPY_TEXT);
}

/* The binary tuple of <rec>, and field <col>'s length and value. */
static int32_t binary_field(const struct agg_record *rec, int64_t created, int col,
                            struct agg_buf *out, const char **value)
{
    struct st_copy_scratch scratch;
    size_t off;
    int32_t n;

    agg_buf_reset(out);
    st_copy_scratch_init(&scratch);
    assert_int_equal(st_copy_encode(out, ST_COPY_BINARY, rec, created, AGG_TIME_NONE, &scratch),
                     AGG_OK);
    st_copy_scratch_clear(&scratch);
    assert_true(st_copy_is_tuple(out->data, out->len));
    n = st_copy_field(out->data, col, &off);
    *value = out->data + off;
    return n;
}

static void test_copy_binary_values_are_the_types_send_formats(void **state)
{
    static const char nan_be[] = "\x7F\xF8\0\0\0\0\0\0", inf_be[] = "\x7F\xF0\0\0\0\0\0\0";
    struct agg_record rec;
    struct agg_buf out;
    const char *v;

    (void)state;
    agg_buf_init(&out);
    agg_record_init(&rec);
    /* 16-bit field count first; NULL is length -1 with no bytes */
    binary_field(&rec, T0, 2, &out, &v);
    assert_memory_equal(out.data, "\0\23", 2);
    assert_int_equal(binary_field(&rec, T0, 2, &out, &v), -1);
    /* timestamp: microseconds since 2000-01-01, big-endian */
    assert_int_equal(binary_field(&rec, INT64_C(946684800000001), 18, &out, &v), 8);
    assert_memory_equal(v, "\0\0\0\0\0\0\0\1", 8);
    assert_int_equal(binary_field(&rec, INT64_C(946684799999999), 18, &out, &v), 8);
    assert_memory_equal(v, "\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 8);
    /* int32 big-endian, negative in two's complement */
    rec.has_line_number = true;
    rec.line_number = -2;
    assert_int_equal(binary_field(&rec, T0, 5, &out, &v), 4);
    assert_memory_equal(v, "\xFF\xFF\xFF\xFE", 4);
    {
        int32_t n = 0;

        assert_true(st_copy_field_int4(out.data, 5, &n));
        assert_int_equal(n, -2);
        assert_false(st_copy_field_int4(out.data, 7, &n)); /* user_id NULL */
    }
    /* float8: the IEEE bits, big-endian */
    rec.has_memory_usage_mb = true;
    rec.memory_usage_mb = NAN;
    assert_int_equal(binary_field(&rec, T0, 13, &out, &v), 8);
    assert_memory_equal(v, nan_be, 8);
    rec.memory_usage_mb = INFINITY;
    binary_field(&rec, T0, 13, &out, &v);
    assert_memory_equal(v, inf_be, 8);
    rec.memory_usage_mb = -1.5;
    binary_field(&rec, T0, 13, &out, &v);
    assert_memory_equal(v, "\xBF\xF8\0\0\0\0\0\0", 8);
    /* jsonb: version byte 1, then the text; text columns as is, NUL made U+FFFD */
    rec.extra = str("{\"k\":\"\\u00e9\"}");
    assert_int_equal(binary_field(&rec, T0, 17, &out, &v), 15);
    assert_memory_equal(v, "\1{\"k\":\"\\u00e9\"}", 15);
    rec.str[AGG_F_MESSAGE] = (struct agg_str){"a\0\tb", 4};
    assert_int_equal(binary_field(&rec, T0, 1, &out, &v), 6);
    assert_memory_equal(v, "a\xEF\xBF\xBD\tb", 6);
    agg_buf_clear(&out);
}

static void test_copy_is_tuple_refuses_broken_framing(void **state)
{
    struct agg_record rec;
    struct agg_buf out;
    const char *v;

    (void)state;
    agg_buf_init(&out);
    agg_record_init(&rec);
    rec.has_user_id = true;
    rec.user_id = 5;
    binary_field(&rec, T0, 0, &out, &v);
    assert_false(st_copy_is_tuple(out.data, out.len - 1)); /* short */
    assert_false(st_copy_is_tuple(out.data, 1));
    out.data[1] = 18; /* field count */
    assert_false(st_copy_is_tuple(out.data, out.len));
    out.data[1] = 19;
    binary_field(&rec, T0, 7, &out, &v);
    ((char *)v)[-1] = 5; /* an integer of 5 bytes */
    assert_false(st_copy_is_tuple(out.data, out.len));
    rec.extra = str("{}");
    binary_field(&rec, T0, 17, &out, &v);
    ((char *)v)[0] = 2; /* jsonb version */
    assert_false(st_copy_is_tuple(out.data, out.len));
    agg_buf_clear(&out);
}

static void test_copy_text_to_binary_refuses_what_no_build_wrote(void **state)
{
    static const char *const bad[] = {
        "INFO\tm\n",                                                     /* too few fields */
        "INFO\tm\t\\N\t\\N\t\\N\tx\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t"
        "\\N\t2025-11-15 00:00:00.000000\n",                             /* integer "x" */
        "INFO\tm\\b\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t"
        "\\N\t\\N\t2025-11-15 00:00:00.000000\n",                        /* escape \b */
        "INFO\tm\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t"
        "\\N\t\\N\tyesterday\n",                                         /* timestamp */
        "INFO\tm\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t"
        "\\N\t\\N\t2025-11-15 00:00:00.000000\t\\N\n",                   /* 20 fields */
        "INFO\tm\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t"
        "\\N\t\\N\t2025-11-15 00:00:00.000000",                          /* no newline */
    };
    struct agg_buf out;

    (void)state;
    agg_buf_init(&out);
    agg_buf_append(&out, "prev", 4);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(st_copy_text_to_binary(&out, bad[i], strlen(bad[i])), AGG_EINVAL);
        assert_int_equal(out.len, 4);
    }
    agg_buf_clear(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_row_has_every_column_and_nulls),
        cmocka_unit_test(test_copy_escapes_tabs_newlines_backslashes),
        cmocka_unit_test(test_copy_repairs_nul_and_invalid_utf8),
        cmocka_unit_test(test_copy_truncates_varchar_at_character_boundary),
        cmocka_unit_test(test_copy_numbers_and_original_timestamp),
        cmocka_unit_test(test_copy_extra_splice_keeps_members_and_escapes),
        cmocka_unit_test(test_copy_user_id_that_is_not_an_integer_goes_to_extra_data),
        cmocka_unit_test(test_copy_64k_message_is_one_field),
        cmocka_unit_test(test_copy_allocation_failure_leaves_buffer_unchanged),
        cmocka_unit_test(test_copy_binary_values_are_the_types_send_formats),
        cmocka_unit_test(test_copy_is_tuple_refuses_broken_framing),
        cmocka_unit_test(test_copy_text_to_binary_refuses_what_no_build_wrote),
    };

    return cmocka_run_group_tests_name("st_copy", tests, NULL, NULL);
}
