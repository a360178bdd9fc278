/*
 * tests/test_ing_json.c — NDJSON, JSON document and OTLP/HTTP JSON decoding into
 * records: column mapping, extra_data, per-event rejection, limits, sink back
 * pressure and allocation failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <yajl/yajl_tree.h>

#include "ingest/json.h"
#include "core/alloc.h"

/* ---- a sink that copies what it is given --------------------------------------- */

struct got {
    struct agg_record rec; /* scalars; its pointers are not used */
    char *str[AGG_F_STR_COUNT];
    size_t len[AGG_F_STR_COUNT];
    char *extra, *raw;
    size_t raw_len;
    char *user_id_orig; /* rec.user_id_orig, or NULL */
};

struct rej {
    size_t index;
    char *why, *raw;
    size_t raw_len;
};

struct sink {
    struct got *ev;
    size_t n_ev;
    struct rej *rej;
    size_t n_rej;
    long full_after; /* emit returns AGG_EFULL once this many were taken; < 0 never */
};

static char *copy(const char *p, size_t n)
{
    char *s = malloc(n + 1);

    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static int sink_emit(void *arg, const struct agg_record *rec)
{
    struct sink *s = arg;
    struct got *g;

    if (s->full_after >= 0 && (long)s->n_ev >= s->full_after)
        return AGG_EFULL;
    s->ev = realloc(s->ev, (s->n_ev + 1) * sizeof(*s->ev));
    g = &s->ev[s->n_ev++];
    memset(g, 0, sizeof(*g));
    g->rec = *rec;
    for (int f = 0; f < AGG_F_STR_COUNT; f++) {
        if (rec->str[f].p != NULL) {
            g->str[f] = copy(rec->str[f].p, rec->str[f].len);
            g->len[f] = rec->str[f].len;
        }
        g->rec.str[f] = (struct agg_str){NULL, 0};
    }
    if (rec->extra.p != NULL)
        g->extra = copy(rec->extra.p, rec->extra.len);
    if (rec->user_id_orig.p != NULL)
        g->user_id_orig = copy(rec->user_id_orig.p, rec->user_id_orig.len);
    g->rec.user_id_orig = (struct agg_str){NULL, 0};
    assert_non_null(rec->raw.p);
    g->raw = copy(rec->raw.p, rec->raw.len);
    g->raw_len = rec->raw.len;
    g->rec.extra = g->rec.raw = (struct agg_str){NULL, 0};
    return AGG_OK;
}

static void sink_reject(void *arg, size_t index, const char *why, const char *raw, size_t rawlen)
{
    struct sink *s = arg;
    struct rej *r;

    s->rej = realloc(s->rej, (s->n_rej + 1) * sizeof(*s->rej));
    r = &s->rej[s->n_rej++];
    r->index = index;
    r->why = copy(why, strlen(why));
    r->raw = copy(raw, rawlen);
    r->raw_len = rawlen;
}

static void sink_reset(struct sink *s)
{
    for (size_t i = 0; i < s->n_ev; i++) {
        for (int f = 0; f < AGG_F_STR_COUNT; f++)
            free(s->ev[i].str[f]);
        free(s->ev[i].extra);
        free(s->ev[i].raw);
        free(s->ev[i].user_id_orig);
    }
    for (size_t i = 0; i < s->n_rej; i++) {
        free(s->rej[i].why);
        free(s->rej[i].raw);
    }
    free(s->ev);
    free(s->rej);
    memset(s, 0, sizeof(*s));
    s->full_after = -1;
}

struct fixture {
    struct ing_json *j;
    struct sink s;
    struct agg_sink sink;
    struct ing_json_stats stats;
    struct agg_err err;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    f->j = ing_json_new(4096, NULL);
    assert_non_null(f->j);
    f->s.full_after = -1;
    f->sink = (struct agg_sink){sink_emit, sink_reject, &f->s};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    assert_true(ing_json_check(f->j));
    sink_reset(&f->s);
    ing_json_free(f->j);
    free(f);
    return 0;
}

/* Rejects whose reason is the size limit: what stats.oversized must say. */
static size_t n_too_large(const struct sink *s)
{
    size_t n = 0;

    for (size_t i = 0; i < s->n_rej; i++)
        n += strncmp(s->rej[i].why, "event larger than ", 18) == 0;
    return n;
}

static int nd(struct fixture *f, const char *text)
{
    int rc;

    sink_reset(&f->s);
    rc = ing_json_decode_ndjson(f->j, text, strlen(text), &f->sink, &f->stats, &f->err);
    assert_true(ing_json_check(f->j));
    assert_int_equal(f->stats.accepted, f->s.n_ev);
    assert_int_equal(f->stats.rejected, f->s.n_rej);
    assert_int_equal(f->stats.oversized, n_too_large(&f->s));
    return rc;
}

static int doc(struct fixture *f, const char *text)
{
    int rc;

    sink_reset(&f->s);
    rc = ing_json_decode_document(f->j, text, strlen(text), &f->sink, &f->stats, &f->err);
    assert_true(ing_json_check(f->j));
    assert_int_equal(f->stats.accepted, f->s.n_ev);
    assert_int_equal(f->stats.rejected, f->s.n_rej);
    assert_int_equal(f->stats.oversized, n_too_large(&f->s));
    return rc;
}

/* One NDJSON line that must be emitted: its record. */
static const struct got *one(struct fixture *f, const char *line)
{
    assert_int_equal(nd(f, line), AGG_OK);
    if (f->s.n_rej > 0)
        fail_msg("rejected: %s", f->s.rej[0].why);
    assert_int_equal(f->s.n_ev, 1);
    return &f->s.ev[0];
}

/* One NDJSON line that must be rejected: the reason. */
static const char *why(struct fixture *f, const char *line)
{
    assert_int_equal(nd(f, line), AGG_OK);
    assert_int_equal(f->s.n_ev, 0);
    assert_int_equal(f->s.n_rej, 1);
    return f->s.rej[0].why;
}

static yajl_val parse_json(const char *text)
{
    char errbuf[128];
    yajl_val v;

    assert_non_null(text);
    v = yajl_tree_parse(text, errbuf, sizeof(errbuf));
    if (v == NULL)
        fail_msg("not JSON (%s): %s", errbuf, text);
    return v;
}

/* The node at <path...> (NULL-terminated) of <v>, of any type. */
static yajl_val at(yajl_val v, ...)
{
    const char *path[16];
    size_t n = 0;
    va_list ap;

    va_start(ap, v);
    while ((path[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    return yajl_tree_get(v, path, yajl_t_any);
}

static const char *str_of(yajl_val v)
{
    assert_non_null(v);
    assert_true(YAJL_IS_STRING(v));
    return YAJL_GET_STRING(v);
}

/* ---- NDJSON ---------------------------------------------------------------------- */

static void test_json_ndjson_fills_every_column(void **state)
{
    struct fixture *f = *state;
    const struct got *g =
        one(f, "{\"level\":\"warning\",\"message\":\"disk full\",\"logger_name\":\"app.disk\","
               "\"module\":\"storage\",\"function_name\":\"flush\",\"line_number\":42,"
               "\"correlation_id\":\"c-1\",\"user_id\":7,\"request_id\":\"r-9\","
               "\"request_method\":\"POST\",\"request_path\":\"/v1/x\",\"request_ip\":\"10.0.0.1\","
               "\"duration_ms\":12.6,\"memory_usage_mb\":512.25,\"exception_type\":\"IOError\","
               "\"exception_message\":\"no space\",\"stack_trace\":\"at flush()\","
               "\"created_at\":\"2024-03-01T12:00:00.5Z\"}");

    assert_int_equal(g->rec.level, AGG_LEVEL_WARNING);
    assert_true(g->rec.has_level);
    assert_string_equal(g->str[AGG_F_MESSAGE], "disk full");
    assert_string_equal(g->str[AGG_F_LOGGER_NAME], "app.disk");
    assert_string_equal(g->str[AGG_F_MODULE], "storage");
    assert_string_equal(g->str[AGG_F_FUNCTION_NAME], "flush");
    assert_string_equal(g->str[AGG_F_CORRELATION_ID], "c-1");
    assert_string_equal(g->str[AGG_F_REQUEST_ID], "r-9");
    assert_string_equal(g->str[AGG_F_REQUEST_METHOD], "POST");
    assert_string_equal(g->str[AGG_F_REQUEST_PATH], "/v1/x");
    assert_string_equal(g->str[AGG_F_REQUEST_IP], "10.0.0.1");
    assert_string_equal(g->str[AGG_F_EXCEPTION_TYPE], "IOError");
    assert_string_equal(g->str[AGG_F_EXCEPTION_MESSAGE], "no space");
    assert_string_equal(g->str[AGG_F_STACK_TRACE], "at flush()");
    assert_true(g->rec.has_line_number);
    assert_int_equal(g->rec.line_number, 42);
    assert_true(g->rec.has_user_id);
    assert_int_equal(g->rec.user_id, 7);
    assert_true(g->rec.has_duration_ms);
    assert_int_equal(g->rec.duration_ms, 13);
    assert_true(g->rec.has_memory_usage_mb);
    assert_true(g->rec.memory_usage_mb == 512.25);
    assert_true(g->rec.created_us == INT64_C(1709294400500000));
    assert_null(g->extra); /* nothing unknown */
    assert_int_equal(g->raw_len, strlen(g->raw));
    assert_int_equal(g->raw[0], '{');
}

static void test_json_ndjson_handles_crlf_and_blank_lines(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(nd(f, "\xEF\xBB\xBF{\"msg\":\"a\"}\r\n\r\n   \n{\"msg\":\"b\"}\r\n\t\r\n"
                           "{\"msg\":\"c\"}"),
                     AGG_OK);
    assert_int_equal(f->s.n_ev, 3);
    assert_string_equal(f->s.ev[0].str[AGG_F_MESSAGE], "a");
    assert_string_equal(f->s.ev[0].raw, "{\"msg\":\"a\"}"); /* no CR, no LF */
    assert_string_equal(f->s.ev[1].str[AGG_F_MESSAGE], "b");
    assert_string_equal(f->s.ev[2].str[AGG_F_MESSAGE], "c");
    /* indexes skip blank lines: the bad line is event 1 */
    assert_int_equal(nd(f, "{\"msg\":\"a\"}\r\n\r\n{oops}\r\n\n{\"msg\":\"c\"}\n"), AGG_OK);
    assert_int_equal(f->s.n_rej, 1);
    assert_int_equal(f->s.rej[0].index, 1);
    assert_string_equal(f->s.rej[0].raw, "{oops}");
    /* nothing at all */
    assert_int_equal(nd(f, "\n\r\n  \n"), AGG_OK);
    assert_int_equal(f->stats.accepted + f->stats.rejected, 0);
    assert_int_equal(nd(f, ""), AGG_OK);
}

static void test_json_ndjson_bad_line_keeps_its_neighbours(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(nd(f, "{\"msg\":\"one\"}\n"
                           "{\"msg\":\"two\",\n"
                           "{\"msg\":\"three\"}\n"
                           "{\"line_number\":\"abc\",\"msg\":\"four\"}\n"
                           "[1,2]\n"
                           "\"just a string\"\n"
                           "{\"msg\":\"five\"} {\"msg\":\"six\"}\n"
                           "{\"msg\":\"seven\"}\n"),
                     AGG_OK);
    assert_int_equal(f->s.n_ev, 3);
    assert_string_equal(f->s.ev[0].str[AGG_F_MESSAGE], "one");
    assert_string_equal(f->s.ev[1].str[AGG_F_MESSAGE], "three");
    assert_string_equal(f->s.ev[2].str[AGG_F_MESSAGE], "seven");
    assert_int_equal(f->s.n_rej, 5);
    assert_int_equal(f->s.rej[0].index, 1);
    assert_non_null(strstr(f->s.rej[0].why, "invalid JSON at byte"));
    assert_string_equal(f->s.rej[0].raw, "{\"msg\":\"two\",");
    assert_int_equal(f->s.rej[1].index, 3);
    assert_non_null(strstr(f->s.rej[1].why, "line_number"));
    assert_int_equal(f->s.rej[2].index, 4);
    assert_string_equal(f->s.rej[2].why, "event is not a JSON object");
    assert_int_equal(f->s.rej[3].index, 5);
    assert_string_equal(f->s.rej[3].why, "event is not a JSON object");
    assert_int_equal(f->s.rej[4].index, 6); /* two objects on one line */
    assert_non_null(strstr(f->s.rej[4].why, "invalid JSON"));
}

static void test_json_ndjson_garbage_never_spills_into_the_next_line(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(nd(f, "{\"msg\":\"a\"} \"unterminated\n"
                           "{\"msg\":\"b\"}\n"
                           "{\"msg\":\"c\"}{\"msg\":\"d\"}\n"
                           "{\"msg\":\"e\"} 12\n"
                           "{\"msg\":\"f\"}\n"
                           "{\"msg\":\n"
                           "\"g\"}\n"
                           "{\"msg\":\"h\"}"),
                     AGG_OK);
    assert_int_equal(f->s.n_ev, 3);
    assert_string_equal(f->s.ev[0].str[AGG_F_MESSAGE], "b");
    assert_string_equal(f->s.ev[1].str[AGG_F_MESSAGE], "f");
    assert_string_equal(f->s.ev[2].str[AGG_F_MESSAGE], "h");
    assert_int_equal(f->s.n_rej, 5);
    assert_int_equal(f->s.rej[0].index, 0);
    assert_non_null(strstr(f->s.rej[0].why, "invalid JSON at byte"));
    assert_int_equal(f->s.rej[1].index, 2);
    assert_non_null(strstr(f->s.rej[1].why, "trailing garbage"));
    assert_int_equal(f->s.rej[2].index, 3);
    assert_int_equal(f->s.rej[3].index, 5);
    assert_string_equal(f->s.rej[3].why, "invalid JSON at byte 7: premature end of line");
    assert_int_equal(f->s.rej[4].index, 6);
    /* the same through the line API, one call per line */
    sink_reset(&f->s);
    assert_int_equal(ing_json_decode_line(f->j, "{\"a\":\"x", 8, 0, &f->sink, &f->err), AGG_EINVAL);
    assert_int_equal(ing_json_decode_line(f->j, "\"}", 2, 1, &f->sink, &f->err), AGG_EINVAL);
    assert_int_equal(ing_json_decode_line(f->j, "{\"msg\":\"ok\"}\n", 13, 2, &f->sink, &f->err),
                     AGG_OK);
    assert_int_equal(ing_json_decode_line(f->j, "{\"msg\":\"ok2\"}", 13, 3, &f->sink, &f->err),
                     AGG_OK);
    assert_int_equal(f->s.n_ev, 2);
    assert_string_equal(f->s.ev[1].str[AGG_F_MESSAGE], "ok2");
}

static void test_json_aliases_fill_their_columns(void **state)
{
    struct fixture *f = *state;
    const struct got *g;

    g = one(f, "{\"msg\":\"m\",\"severity\":\"error\",\"timestamp\":\"2024-01-02T03:04:05Z\"}");
    assert_string_equal(g->str[AGG_F_MESSAGE], "m");
    assert_int_equal(g->rec.level, AGG_LEVEL_ERROR);
    assert_true(g->rec.created_us == INT64_C(1704164645000000));
    g = one(f, "{\"time\":1704164645}");
    assert_true(g->rec.created_us == INT64_C(1704164645000000));
    g = one(f, "{\"@timestamp\":\"2024-01-02 03:04:05.123456+01:00\"}");
    assert_true(g->rec.created_us == INT64_C(1704164645123456) - INT64_C(3600000000));
    assert_null(g->extra);
    /* the column's own name wins over its aliases, in any order; the alias's value
     * stays in extra_data */
    g = one(f,
            "{\"message\":\"first\",\"msg\":\"second\",\"level\":\"debug\",\"severity\":\"info\"}");
    assert_string_equal(g->str[AGG_F_MESSAGE], "first");
    assert_int_equal(g->rec.level, AGG_LEVEL_DEBUG);
    assert_string_equal(g->extra, "{\"msg\":\"second\",\"severity\":\"info\"}");
    g = one(f, "{\"msg\":\"second\",\"message\":\"first\",\"time\":\"not a time\","
               "\"created_at\":1704164645}");
    assert_string_equal(g->str[AGG_F_MESSAGE], "first");
    assert_true(g->rec.created_us == INT64_C(1704164645000000));
    assert_string_equal(g->extra, "{\"msg\":\"second\",\"time\":\"not a time\"}");
    /* between aliases, the first of the documented list: timestamp before time */
    g = one(f, "{\"time\":1,\"timestamp\":1704164645}");
    assert_true(g->rec.created_us == INT64_C(1704164645000000));
    assert_string_equal(g->extra, "{\"time\":1}");
    /* an alias given twice: the last; null takes it back */
    g = one(f, "{\"msg\":\"a\",\"msg\":\"b\",\"severity\":\"error\",\"severity\":null}");
    assert_string_equal(g->str[AGG_F_MESSAGE], "b");
    assert_false(g->rec.has_level);
    assert_null(g->extra);
    /* a column's own null leaves it to an alias */
    g = one(f, "{\"msg\":\"a\",\"message\":null}");
    assert_string_equal(g->str[AGG_F_MESSAGE], "a");
    /* a strict alias of the wrong type rejects only when the column would take it */
    assert_non_null(strstr(why(f, "{\"time\":true}"), "created_at"));
    g = one(f, "{\"time\":{\"s\":1},\"created_at\":1704164645}");
    assert_string_equal(g->extra, "{\"time\":{\"s\":1}}");
}

static void test_json_unknown_keys_go_to_extra_data(void **state)
{
    struct fixture *f = *state;
    const struct got *g =
        one(f, "{\"service\":\"api\",\"msg\":\"hi\",\"tags\":[\"a\",1,true,null,{\"k\":[]}],"
               "\"ctx\":{\"host\":{\"name\":\"h1\",\"cpu\":0.5},\"empty\":{}},\"n\":-1.5e3,"
               "\"ok\":false,\"nothing\":null,\"esc\":\"tab\\there \\u00e9\"}");
    yajl_val x = parse_json(g->extra);

    assert_string_equal(g->str[AGG_F_MESSAGE], "hi");
    assert_true(YAJL_IS_OBJECT(x));
    assert_int_equal(YAJL_GET_OBJECT(x)->len, 7);
    assert_string_equal(str_of(at(x, "service", NULL)), "api");
    assert_int_equal(YAJL_GET_ARRAY(at(x, "tags", NULL))->len, 5);
    assert_string_equal(str_of(YAJL_GET_ARRAY(at(x, "tags", NULL))->values[0]), "a");
    assert_true(YAJL_IS_TRUE(YAJL_GET_ARRAY(at(x, "tags", NULL))->values[2]));
    assert_true(YAJL_IS_NULL(YAJL_GET_ARRAY(at(x, "tags", NULL))->values[3]));
    assert_true(YAJL_IS_ARRAY(at(YAJL_GET_ARRAY(at(x, "tags", NULL))->values[4], "k", NULL)));
    assert_string_equal(str_of(at(x, "ctx", "host", "name", NULL)), "h1");
    assert_true(YAJL_GET_DOUBLE(at(x, "ctx", "host", "cpu", NULL)) == 0.5);
    assert_true(YAJL_IS_OBJECT(at(x, "ctx", "empty", NULL)));
    assert_true(YAJL_GET_DOUBLE(at(x, "n", NULL)) == -1500.0);
    assert_true(YAJL_IS_FALSE(at(x, "ok", NULL)));
    assert_true(YAJL_IS_NULL(at(x, "nothing", NULL)));
    assert_string_equal(str_of(at(x, "esc", NULL)), "tab\there \xC3\xA9");
    yajl_tree_free(x);
    /* numbers keep their literal; ones jsonb cannot hold become strings */
    g = one(f, "{\"big\":123456789012345678901234567890,\"huge\":1e5000,\"tiny\":2E-1001,"
               "\"fine\":1.5e300}");
    assert_non_null(strstr(g->extra, "\"big\":123456789012345678901234567890"));
    assert_non_null(strstr(g->extra, "\"huge\":\"1e5000\""));
    assert_non_null(strstr(g->extra, "\"tiny\":\"2E-1001\""));
    assert_non_null(strstr(g->extra, "\"fine\":1.5e300"));
}

static void test_json_wrong_types_reject_the_event_naming_the_field(void **state)
{
    static const struct {
        const char *line, *field;
    } cases[] = {
        {"{\"message\":{\"a\":1}}", "message"},
        {"{\"msg\":[\"x\"]}", "message"},
        {"{\"message\":true}", "message"},
        {"{\"line_number\":true}", "line_number"},
        {"{\"line_number\":\"seven\"}", "line_number"},
        {"{\"line_number\":1.5}", "line_number"},
        {"{\"duration_ms\":\"fast\"}", "duration_ms"},
        {"{\"duration_ms\":{}}", "duration_ms"},
        {"{\"line_number\":[]}", "line_number"},
        {"{\"memory_usage_mb\":\"lots\"}", "memory_usage_mb"},
        {"{\"level\":\"loud\"}", "level"},
        {"{\"level\":9}", "level"},
        {"{\"level\":false}", "level"},
        {"{\"created_at\":\"yesterday\"}", "created_at"},
        {"{\"timestamp\":{\"s\":1}}", "created_at"},
        {"{\"request_ip\":[\"10.0.0.1\"]}", "request_ip"},
    };
    struct fixture *f = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *w = why(f, cases[i].line);

        if (strstr(w, cases[i].field) == NULL)
            fail_msg("%s: reason \"%s\" does not name %s", cases[i].line, w, cases[i].field);
        assert_string_equal(f->s.rej[0].raw, cases[i].line);
    }
    assert_non_null(strstr(why(f, "{\"message\":{\"a\":1}}"), "not an object"));
    assert_non_null(strstr(why(f, "{\"line_number\":true}"), "not a boolean"));
}

static void test_json_numbers_fill_text_columns_with_their_literal(void **state)
{
    struct fixture *f = *state;
    const struct got *g = one(f, "{\"request_id\":12345,\"message\":-4.20e1,\"correlation_id\":0}");

    assert_string_equal(g->str[AGG_F_REQUEST_ID], "12345");
    assert_string_equal(g->str[AGG_F_MESSAGE], "-4.20e1");
    assert_string_equal(g->str[AGG_F_CORRELATION_ID], "0");
}

static void test_json_integers_out_of_range_reject_the_event(void **state)
{
    struct fixture *f = *state;
    const struct got *g;

    assert_non_null(strstr(why(f, "{\"line_number\":99999999999999999999999}"), "line_number"));
    assert_non_null(strstr(why(f, "{\"duration_ms\":2147483648}"), "out of range"));
    assert_non_null(strstr(why(f, "{\"line_number\":-2147483649}"), "line_number"));
    g = one(f, "{\"user_id\":2147483647,\"line_number\":-2147483648,\"duration_ms\":\"15\"}");
    assert_int_equal(g->rec.user_id, INT32_MAX);
    assert_int_equal(g->rec.line_number, INT32_MIN);
    assert_int_equal(g->rec.duration_ms, 15);
}

static void test_json_timestamps_take_epoch_and_iso_forms(void **state)
{
    static const char *const lines[] = {
        "{\"timestamp\":1704164645}",
        "{\"timestamp\":1704164645.0}",
        "{\"timestamp\":1704164645000}",
        "{\"timestamp\":1704164645000000}",
        "{\"timestamp\":1704164645000000000}",
        "{\"timestamp\":\"1704164645\"}",
        "{\"timestamp\":\"1704164645000\"}",
        "{\"timestamp\":\"2024-01-02T03:04:05Z\"}",
        "{\"timestamp\":\"2024-01-02T04:04:05+01:00\"}",
        "{\"timestamp\":\"2024-01-01T22:04:05-0500\"}",
        "{\"created_at\":\"2024-01-02 03:04:05\"}",
    };
    struct fixture *f = *state;

    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        const struct got *g = one(f, lines[i]);

        if (g->rec.created_us != INT64_C(1704164645000000))
            fail_msg("%s gave %lld", lines[i], (long long)g->rec.created_us);
    }
    assert_true(one(f, "{\"msg\":\"no time\"}")->rec.created_us == AGG_TIME_NONE);
}

/* The same instant as test_syslog_parse_3164_reads_a_leap_second_as_json_does: second
 * 60 is the last microsecond of its minute (core/time.h). */
static void test_json_timestamps_read_a_leap_second_as_the_end_of_its_minute(void **state)
{
    struct fixture *f = *state;
    const int64_t end_of_2016 = INT64_C(1483228800000000) - 1; /* 2016-12-31T23:59:59.999999Z */

    assert_true(one(f, "{\"timestamp\":\"2016-12-31T23:59:60Z\"}")->rec.created_us ==
                end_of_2016);
    assert_true(one(f, "{\"timestamp\":\"2016-12-31T23:59:60.25Z\"}")->rec.created_us ==
                end_of_2016);
    assert_true(one(f, "{\"timestamp\":\"2017-01-01T00:59:60+01:00\"}")->rec.created_us ==
                end_of_2016);
    /* 61 is no second at all */
    assert_non_null(strstr(why(f, "{\"timestamp\":\"2016-12-31T23:59:61Z\"}"), "not a timestamp"));
}

static void test_json_null_means_absent(void **state)
{
    struct fixture *f = *state;
    const struct got *g =
        one(f, "{\"message\":null,\"user_id\":null,\"level\":\"error\",\"level\":null,"
               "\"request_id\":\"x\",\"request_id\":null,\"time\":null}");

    assert_string_equal(g->str[AGG_F_MESSAGE], "");
    assert_false(g->rec.has_user_id);
    assert_false(g->rec.has_level);
    assert_int_equal(g->rec.level, AGG_LEVEL_INFO);
    assert_null(g->str[AGG_F_REQUEST_ID]);
    assert_true(g->rec.created_us == AGG_TIME_NONE);
    assert_null(g->extra);
}

static void test_json_levels_take_names_severities_and_bunyan_numbers(void **state)
{
    static const struct {
        const char *line;
        enum agg_level level;
    } cases[] = {
        {"{\"level\":\"WARN\"}", AGG_LEVEL_WARNING},
        {"{\"level\":\"fatal\"}", AGG_LEVEL_CRITICAL},
        {"{\"level\":\"trace\"}", AGG_LEVEL_DEBUG},
        {"{\"level\":3}", AGG_LEVEL_ERROR},
        {"{\"level\":\"4\"}", AGG_LEVEL_WARNING},
        {"{\"level\":10}", AGG_LEVEL_DEBUG},
        {"{\"level\":30}", AGG_LEVEL_INFO},
        {"{\"level\":40}", AGG_LEVEL_WARNING},
        {"{\"level\":50}", AGG_LEVEL_ERROR},
        {"{\"level\":60}", AGG_LEVEL_CRITICAL},
        {"{\"severity\":\"Notice\"}", AGG_LEVEL_INFO},
    };
    struct fixture *f = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct got *g = one(f, cases[i].line);

        assert_true(g->rec.has_level);
        if (g->rec.level != cases[i].level)
            fail_msg("%s gave level %d", cases[i].line, (int)g->rec.level);
    }
    assert_non_null(strstr(why(f, "{\"level\":35}"), "level"));
}

static void test_json_missing_message_and_level_get_defaults(void **state)
{
    struct fixture *f = *state;
    const struct got *g = one(f, "{}");

    assert_non_null(g->str[AGG_F_MESSAGE]);
    assert_string_equal(g->str[AGG_F_MESSAGE], "");
    assert_false(g->rec.has_level);
    assert_int_equal(g->rec.level, AGG_LEVEL_INFO);
    assert_null(g->extra);
    assert_string_equal(g->raw, "{}");
}

static void test_json_nul_escapes_are_repaired_in_extra_data(void **state)
{
    struct fixture *f = *state;
    const struct got *g =
        one(f, "{\"message\":\"a\\u0000b\",\"k\\u0000ey\":\"v\\u0000al\",\"arr\":[\"\\u0000\"]}");
    yajl_val x = parse_json(g->extra);

    /* the column keeps the byte (the COPY encoder repairs columns) */
    assert_int_equal(g->len[AGG_F_MESSAGE], 3);
    assert_memory_equal(g->str[AGG_F_MESSAGE], "a\0b", 3);
    /* extra_data must be jsonb-safe: no \u0000 anywhere */
    assert_null(strstr(g->extra, "\\u0000"));
    assert_string_equal(str_of(at(x,
                                  "k\xEF\xBF\xBD"
                                  "ey",
                                  NULL)),
                        "v\xEF\xBF\xBD"
                        "al");
    assert_string_equal(str_of(YAJL_GET_ARRAY(at(x, "arr", NULL))->values[0]), "\xEF\xBF\xBD");
    yajl_tree_free(x);
}

static void test_json_invalid_utf8_rejects_the_event(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(nd(f, "{\"msg\":\"ok\"}\n{\"msg\":\"bad \xC3\x28 byte\"}\n"
                           "{\"bad\xFF\":1}\n{\"msg\":\"ok too \xE2\x82\xAC\"}\n"),
                     AGG_OK);
    assert_int_equal(f->s.n_ev, 2);
    assert_string_equal(f->s.ev[1].str[AGG_F_MESSAGE], "ok too \xE2\x82\xAC");
    assert_int_equal(f->s.n_rej, 2);
    assert_int_equal(f->s.rej[0].index, 1);
    assert_int_equal(f->s.rej[1].index, 2);
    assert_non_null(strstr(f->s.rej[0].why, "invalid JSON"));
    /* in a document the body is not JSON: all or nothing */
    assert_int_equal(doc(f, "[{\"msg\":\"ok\"},{\"msg\":\"\xC3\x28\"}]"), AGG_EINVAL);
    assert_int_equal(f->s.n_ev + f->s.n_rej, 0);
}

static void test_json_oversized_events_are_rejected(void **state)
{
    struct fixture *f = *state;
    size_t n = 5000;
    char *text = malloc(3 * n);
    int len;

    /* a line over the 4096-byte limit between two good ones */
    len =
        snprintf(text, 3 * n, "{\"msg\":\"a\"}\n{\"msg\":\"%0*d\"}\n{\"msg\":\"c\"}\n", (int)n, 0);
    assert_true(len > 0);
    assert_int_equal(nd(f, text), AGG_OK);
    assert_int_equal(f->s.n_ev, 2);
    assert_int_equal(f->s.n_rej, 1);
    assert_int_equal(f->s.rej[0].index, 1);
    assert_string_equal(f->s.rej[0].why, "event larger than 4096 bytes");
    assert_int_equal(f->s.rej[0].raw_len, 4096); /* raw truncated to the limit */
    assert_int_equal(f->stats.oversized, 1); /* counted apart for /metrics */
    /* the same as a document element */
    len = snprintf(text, 3 * n, "[{\"msg\":\"a\"},{\"msg\":\"%0*d\"},{\"msg\":\"c\"}]", (int)n, 0);
    assert_int_equal(doc(f, text), AGG_OK);
    assert_int_equal(f->s.n_ev, 2);
    assert_int_equal(f->s.n_rej, 1);
    assert_int_equal(f->s.rej[0].index, 1);
    assert_string_equal(f->s.rej[0].why, "event larger than 4096 bytes");
    assert_true(f->s.rej[0].raw_len <= 4096);
    free(text);
}

/* {"a":[[...1...]]} with <arrays> arrays: nested 1 + <arrays> levels. */
static char *nest(int arrays)
{
    char *text = malloc((size_t)arrays * 2 + 16);
    size_t n = 0;

    memcpy(text, "{\"a\":", 5);
    n = 5;
    for (int i = 0; i < arrays; i++)
        text[n++] = '[';
    text[n++] = '1';
    for (int i = 0; i < arrays; i++)
        text[n++] = ']';
    text[n++] = '}';
    text[n] = '\0';
    return text;
}

static void test_json_deep_nesting_is_bounded(void **state)
{
    struct fixture *f = *state;
    char *text, *body;
    size_t k = 0;

    text = nest(ING_JSON_MAX_EVENT_DEPTH);
    assert_non_null(strstr(why(f, text), "nested deeper than 64"));
    free(text);
    text = nest(ING_JSON_MAX_EVENT_DEPTH - 1);
    assert_non_null(one(f, text)->extra);
    free(text);

    /* a document deeper than ING_JSON_MAX_DEPTH is not accepted */
    text = malloc(2 * ING_JSON_MAX_DEPTH + 8);
    memset(text, '[', ING_JSON_MAX_DEPTH + 1);
    memset(text + ING_JSON_MAX_DEPTH + 1, ']', ING_JSON_MAX_DEPTH + 1);
    text[2 * ING_JSON_MAX_DEPTH + 2] = '\0';
    assert_int_equal(doc(f, text), AGG_EINVAL);
    assert_non_null(strstr(f->err.msg, "nested deeper"));
    free(text);

    /* an element nested past the event limit is one rejected event */
    text = nest(100);
    body = malloc(strlen(text) + 32);
    body[k++] = '[';
    memcpy(body + k, text, strlen(text));
    k += strlen(text);
    memcpy(body + k, ",{\"msg\":\"fine\"}]", 17);
    assert_int_equal(doc(f, body), AGG_OK);
    assert_int_equal(f->s.n_rej, 1);
    assert_int_equal(f->s.rej[0].index, 0);
    assert_non_null(strstr(f->s.rej[0].why, "nested deeper than 64"));
    assert_int_equal(f->s.n_ev, 1);
    assert_string_equal(f->s.ev[0].str[AGG_F_MESSAGE], "fine");
    free(body);
    free(text);
}

/* ---- senders' error objects, logger names, user ids, escapes, numbers ----------- */

#define PINO_STACK                                                                                \
    "TypeError: Cannot read properties of undefined (reading 'id')\\n    at charge "             \
    "(/app/pay.js:12:19)\\n    at process.processTicksAndRejections "                            \
    "(node:internal/process/task_queues:95:5)"

static void test_json_pino_err_and_name_fill_exception_and_logger_columns(void **state)
{
    struct fixture *f = *state;
    const struct got *g = one(
        f, "{\"level\":50,\"time\":1704164645123,\"pid\":4242,\"hostname\":\"web-1\","
           "\"name\":\"checkout\",\"err\":{\"type\":\"TypeError\",\"message\":\"Cannot read "
           "properties of undefined (reading 'id')\",\"stack\":\"" PINO_STACK "\","
           "\"code\":\"E_PAY\"},\"msg\":\"Cannot read properties of undefined (reading 'id')\"}");

    assert_int_equal(g->rec.level, AGG_LEVEL_ERROR);
    assert_true(g->rec.created_us == INT64_C(1704164645123000));
    assert_string_equal(g->str[AGG_F_LOGGER_NAME], "checkout");
    assert_string_equal(g->str[AGG_F_MESSAGE], "Cannot read properties of undefined (reading 'id')");
    assert_string_equal(g->str[AGG_F_EXCEPTION_TYPE], "TypeError");
    assert_string_equal(g->str[AGG_F_EXCEPTION_MESSAGE],
                        "Cannot read properties of undefined (reading 'id')");
    assert_non_null(strstr(g->str[AGG_F_STACK_TRACE], "\n    at charge (/app/pay.js:12:19)"));
    /* what of err filled no column stays, under err */
    assert_string_equal(g->extra, "{\"pid\":4242,\"hostname\":\"web-1\",\"err\":{\"code\":\"E_PAY\"}}");
}

static void test_json_bunyan_err_name_is_the_exception_type(void **state)
{
    struct fixture *f = *state;
    const struct got *g =
        one(f, "{\"name\":\"billing\",\"hostname\":\"web-2\",\"pid\":77,\"level\":50,"
               "\"err\":{\"message\":\"connect ECONNREFUSED 127.0.0.1:5432\",\"name\":\"Error\","
               "\"stack\":\"Error: connect ECONNREFUSED 127.0.0.1:5432\\n    at "
               "TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)\","
               "\"code\":\"ECONNREFUSED\"},\"msg\":\"db down\","
               "\"time\":\"2024-01-02T03:04:05.123Z\",\"v\":0}");

    assert_string_equal(g->str[AGG_F_LOGGER_NAME], "billing");
    assert_string_equal(g->str[AGG_F_MESSAGE], "db down");
    assert_string_equal(g->str[AGG_F_EXCEPTION_TYPE], "Error");
    assert_string_equal(g->str[AGG_F_EXCEPTION_MESSAGE], "connect ECONNREFUSED 127.0.0.1:5432");
    assert_non_null(strstr(g->str[AGG_F_STACK_TRACE], "afterConnect"));
    assert_true(g->rec.created_us == INT64_C(1704164645123000));
    assert_string_equal(g->extra, "{\"hostname\":\"web-2\",\"pid\":77,"
                                  "\"err\":{\"code\":\"ECONNREFUSED\"},\"v\":0}");
}

static void test_json_winston_stack_gives_type_and_message(void **state)
{
    struct fixture *f = *state;
    const struct got *g = one(
        f, "{\"level\":\"error\",\"message\":\"boom\",\"stack\":\"Error: boom\\n    at "
           "Object.<anonymous> (/app/index.js:5:14)\\n    at Module._compile "
           "(node:internal/modules/cjs/loader:1256:14)\",\"timestamp\":\"2024-01-02T03:04:05.123Z\"}");

    assert_int_equal(g->rec.level, AGG_LEVEL_ERROR);
    assert_string_equal(g->str[AGG_F_MESSAGE], "boom");
    assert_string_equal(g->str[AGG_F_EXCEPTION_TYPE], "Error");
    assert_string_equal(g->str[AGG_F_EXCEPTION_MESSAGE], "boom");
    assert_non_null(strstr(g->str[AGG_F_STACK_TRACE], "Error: boom\n    at Object"));
    assert_null(g->extra);
}

#define PY_TRACEBACK                                                                              \
    "Traceback (most recent call last):\\n  File \\\"/app/pay.py\\\", line 10, in charge\\n    " \
    "amount = int(raw)\\nValueError: invalid literal for int() with base 10: 'abc'"

static void test_json_python_tracebacks_fill_the_exception_columns(void **state)
{
    struct fixture *f = *state;
    const struct got *g;

    /* python-json-logger, "%(asctime)s %(levelname)s %(name)s %(message)s" */
    g = one(f, "{\"asctime\": \"2024-01-02 03:04:05,123\", \"levelname\": \"ERROR\", "
               "\"name\": \"shop.payments\", \"message\": \"payment failed\", "
               "\"exc_info\": \"" PY_TRACEBACK "\"}");
    assert_int_equal(g->rec.level, AGG_LEVEL_ERROR);
    assert_string_equal(g->str[AGG_F_LOGGER_NAME], "shop.payments");
    assert_string_equal(g->str[AGG_F_MESSAGE], "payment failed");
    assert_non_null(strstr(g->str[AGG_F_STACK_TRACE], "line 10, in charge"));
    assert_string_equal(g->str[AGG_F_EXCEPTION_TYPE], "ValueError");
    assert_string_equal(g->str[AGG_F_EXCEPTION_MESSAGE],
                        "invalid literal for int() with base 10: 'abc'");
    assert_string_equal(g->extra, "{\"asctime\":\"2024-01-02 03:04:05,123\"}");
    /* structlog: format_exc_info's exception string, add_logger_name's logger */
    g = one(f, "{\"event\": \"payment failed\", \"logger\": \"shop\", \"level\": \"error\", "
               "\"exception\": \"Traceback (most recent call last):\\n  File \\\"/app/pay.py\\\", "
               "line 3, in <module>\\n    1/0\\n    ~^~\\nZeroDivisionError: division by zero\\n\"}");
    assert_string_equal(g->str[AGG_F_LOGGER_NAME], "shop");
    assert_string_equal(g->str[AGG_F_EXCEPTION_TYPE], "ZeroDivisionError");
    assert_string_equal(g->str[AGG_F_EXCEPTION_MESSAGE], "division by zero");
    assert_non_null(strstr(g->str[AGG_F_STACK_TRACE], "1/0"));
    assert_string_equal(g->extra, "{\"event\":\"payment failed\"}");
    /* a levelname that is no level stays in extra_data, never rejects */
    g = one(f, "{\"levelname\":\"VERBOSE\",\"name\":{\"first\":\"x\"}}");
    assert_false(g->rec.has_level);
    assert_null(g->str[AGG_F_LOGGER_NAME]);
    assert_string_equal(g->extra, "{\"name\":{\"first\":\"x\"},\"levelname\":\"VERBOSE\"}");
}

static void test_json_columns_by_name_win_over_error_objects_and_aliases(void **state)
{
    struct fixture *f = *state;
    const struct got *g;

    g = one(f, "{\"err\":{\"type\":\"TypeError\",\"message\":\"m\",\"stack\":\"s\"},"
               "\"exception_type\":\"Mine\",\"logger_name\":\"own\",\"name\":\"pino-name\"}");
    assert_string_equal(g->str[AGG_F_EXCEPTION_TYPE], "Mine");
    assert_string_equal(g->str[AGG_F_EXCEPTION_MESSAGE], "m");
    assert_string_equal(g->str[AGG_F_STACK_TRACE], "s");
    assert_string_equal(g->str[AGG_F_LOGGER_NAME], "own");
    assert_string_equal(g->extra, "{\"err\":{\"type\":\"TypeError\"},\"name\":\"pino-name\"}");
    /* a top-level stack (winston) before an err.stack; the first error object before
     * the next */
    g = one(f, "{\"a\":1,\"err\":{\"message\":\"m1\",\"stack\":\"s1\"},\"b\":2,"
               "\"error\":{\"message\":\"m2\",\"x\":1},\"stack\":\"top\"}");
    assert_string_equal(g->str[AGG_F_STACK_TRACE], "top");
    assert_string_equal(g->str[AGG_F_EXCEPTION_MESSAGE], "m1");
    assert_string_equal(g->extra, "{\"a\":1,\"err\":{\"stack\":\"s1\"},\"b\":2,"
                                  "\"error\":{\"message\":\"m2\",\"x\":1}}");
}

static void test_json_error_objects_keep_what_fills_no_column(void **state)
{
    static const struct {
        const char *line, *extra, *type;
    } cases[] = {
        {"{\"err\":{\"type\":\"E\"}}", NULL, "E"},
        {"{\"err\":{\"type\":\"E\",\"code\":1}}", "{\"err\":{\"code\":1}}", "E"},
        {"{\"err\":{\"code\":1,\"type\":\"E\"}}", "{\"err\":{\"code\":1}}", "E"},
        {"{\"err\":{\"code\":1,\"type\":\"E\",\"errno\":2}}", "{\"err\":{\"code\":1,\"errno\":2}}",
         "E"},
        {"{\"x\":0,\"err\":{\"name\":\"E\",\"message\":\"m\"},\"y\":[]}", "{\"x\":0,\"y\":[]}", "E"},
        /* not strings: kept, no column */
        {"{\"err\":{\"type\":5,\"message\":{\"a\":1}}}",
         "{\"err\":{\"type\":5,\"message\":{\"a\":1}}}", NULL},
        {"{\"err\":\"boom\",\"error\":[1]}", "{\"err\":\"boom\",\"error\":[1]}", NULL},
        /* ECS error and nested causes */
        {"{\"error\":{\"type\":\"E\",\"cause\":{\"type\":\"C\",\"message\":\"inner\"}}}",
         "{\"error\":{\"cause\":{\"type\":\"C\",\"message\":\"inner\"}}}", "E"},
        /* type wins over name; the unused one stays */
        {"{\"err\":{\"name\":\"N\",\"type\":\"T\"}}", "{\"err\":{\"name\":\"N\"}}", "T"},
        /* the key given twice: the last object counts, the first is kept */
        {"{\"err\":{\"type\":\"A\"},\"err\":{\"type\":\"B\"}}", "{\"err\":{\"type\":\"A\"}}", "B"},
        {"{\"exception\":{\"type\":\"E\",\"traceback\":\"tb\"}}", NULL, "E"},
        /* the key's last value is a string: the object before it counts no more */
        {"{\"exception\":{\"type\":\"E\",\"x\":1},\"exception\":\"tb\"}",
         "{\"exception\":{\"type\":\"E\",\"x\":1}}", NULL},
    };
    struct fixture *f = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct got *g = one(f, cases[i].line);

        if (cases[i].extra == NULL ? g->extra != NULL
                                   : g->extra == NULL || strcmp(g->extra, cases[i].extra) != 0)
            fail_msg("%s: extra_data %s, not %s", cases[i].line, g->extra ? g->extra : "NULL",
                     cases[i].extra ? cases[i].extra : "NULL");
        if (cases[i].type == NULL)
            assert_null(g->str[AGG_F_EXCEPTION_TYPE]);
        else
            assert_string_equal(g->str[AGG_F_EXCEPTION_TYPE], cases[i].type);
    }
    /* the same through a document, whose strings stay in the input */
    assert_int_equal(doc(f, "[{\"err\":{\"type\":\"E\",\"message\":\"m\\u00e9\",\"n\":1}}]"), AGG_OK);
    assert_int_equal(f->s.n_ev, 1);
    assert_string_equal(f->s.ev[0].str[AGG_F_EXCEPTION_TYPE], "E");
    assert_string_equal(f->s.ev[0].str[AGG_F_EXCEPTION_MESSAGE], "m\xC3\xA9");
    assert_string_equal(f->s.ev[0].extra, "{\"err\":{\"n\":1}}");
}

static void test_json_user_id_that_is_not_an_integer_is_kept_as_sent(void **state)
{
    static const struct {
        const char *line, *orig;
        bool is_string;
    } cases[] = {
        {"{\"user_id\":\"u-123\"}", "u-123", true},
        {"{\"user_id\":\"550e8400-e29b-41d4-a716-446655440000\"}",
         "550e8400-e29b-41d4-a716-446655440000", true},
        {"{\"user_id\":\"\"}", "", true},
        {"{\"user_id\":\"u-\\u00e9\\n\"}", "u-\xC3\xA9\n", true},
        {"{\"user_id\":2147483648}", "2147483648", false},
        {"{\"user_id\":-99999999999999999999}", "-99999999999999999999", false},
        {"{\"user_id\":12.5}", "12.5", false},
        {"{\"user_id\":1e5000}", "1e5000", true}, /* jsonb cannot hold it as a number */
        {"{\"user_id\":true}", "true", false},
        {"{\"user_id\":7,\"user_id\":\"x\"}", "x", true},
    };
    struct fixture *f = *state;
    const struct got *g;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        g = one(f, cases[i].line);
        assert_false(g->rec.has_user_id);
        assert_non_null(g->user_id_orig);
        assert_string_equal(g->user_id_orig, cases[i].orig);
        assert_int_equal(g->rec.user_id_orig_is_string, cases[i].is_string);
        assert_null(g->extra);
    }
    g = one(f, "{\"user_id\":\"x\",\"user_id\":7}");
    assert_true(g->rec.has_user_id);
    assert_int_equal(g->rec.user_id, 7);
    assert_null(g->user_id_orig);
    g = one(f, "{\"user_id\":\"x\",\"user_id\":null}");
    assert_false(g->rec.has_user_id);
    assert_null(g->user_id_orig);
    g = one(f, "{\"user_id\":\"42\"}");
    assert_int_equal(g->rec.user_id, 42);
    /* any other shape: extra_data.user_id as it came */
    g = one(f, "{\"user_id\":{\"id\":7,\"org\":[1]}}");
    assert_false(g->rec.has_user_id);
    assert_null(g->user_id_orig);
    assert_string_equal(g->extra, "{\"user_id\":{\"id\":7,\"org\":[1]}}");
}

static void test_json_unpaired_surrogates_become_replacement_characters(void **state)
{
    static const struct {
        const char *line, *msg;
    } cases[] = {
        {"{\"msg\":\"\\ud800\\u0041\"}", "\xEF\xBF\xBD" "A"},
        {"{\"msg\":\"x\\udc00y\"}", "x\xEF\xBF\xBDy"},
        {"{\"msg\":\"a\\ud800\"}", "a\xEF\xBF\xBD"},
        {"{\"msg\":\"\\uD800\\n\"}", "\xEF\xBF\xBD\n"},
        {"{\"msg\":\"\\ud800x\"}", "\xEF\xBF\xBDx"},
        {"{\"msg\":\"\\ud83d\\ude00\"}", "\xF0\x9F\x98\x80"},
        {"{\"msg\":\"\\\\ud800\"}", "\\ud800"},
        {"{\"msg\":\"\\\\\\ud800\"}", "\\\xEF\xBF\xBD"},
        {"{\"msg\":\"\\ud800\\ud800\\udc00\"}", "\xEF\xBF\xBD\xF0\x90\x80\x80"},
        {"{\"msg\":\"\\udbff\\udfff\\udfff\"}", "\xF4\x8F\xBF\xBF\xEF\xBF\xBD"},
    };
    struct fixture *f = *state;
    const struct got *g;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        g = one(f, cases[i].line);
        if (strcmp(g->str[AGG_F_MESSAGE], cases[i].msg) != 0)
            fail_msg("%s gave \"%s\"", cases[i].line, g->str[AGG_F_MESSAGE]);
        assert_string_equal(g->raw, cases[i].line); /* the line as received */
    }
    g = one(f, "{\"k\\udfff\":\"v\\ud800\\u0041\"}");
    assert_string_equal(g->extra, "{\"k\xEF\xBF\xBD\":\"v\xEF\xBF\xBD" "A\"}");
    /* the next line is read as sent */
    assert_int_equal(nd(f, "{\"msg\":\"\\ud800\\u0041\"}\n{\"msg\":\"\\u0041\"}\n"), AGG_OK);
    assert_int_equal(f->s.n_ev, 2);
    assert_string_equal(f->s.ev[0].str[AGG_F_MESSAGE], "\xEF\xBF\xBD" "A");
    assert_string_equal(f->s.ev[1].str[AGG_F_MESSAGE], "A");
    /* documents and OTLP */
    assert_int_equal(doc(f, "[{\"msg\":\"\\ud800\\u0041\"},{\"msg\":\"ok\\udc00\"}]"), AGG_OK);
    assert_int_equal(f->s.n_ev, 2);
    assert_string_equal(f->s.ev[0].str[AGG_F_MESSAGE], "\xEF\xBF\xBD" "A");
    assert_string_equal(f->s.ev[1].str[AGG_F_MESSAGE], "ok\xEF\xBF\xBD");
    assert_int_equal(doc(f, "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":"
                            "{\"stringValue\":\"\\ud800\\u0041\"}}]}]}]}"),
                     AGG_OK);
    assert_int_equal(f->s.n_ev, 1);
    assert_string_equal(f->s.ev[0].str[AGG_F_MESSAGE], "\xEF\xBF\xBD" "A");
    /* a body error still names the offset of the bytes as sent */
    assert_int_equal(doc(f, "{\"msg\":\"\\ud800\" x}"), AGG_EINVAL);
    assert_non_null(strstr(f->err.msg, "at byte"));
}

static void test_json_subnormal_numbers_are_numbers(void **state)
{
    struct fixture *f = *state;
    const struct got *g;

    g = one(f, "{\"memory_usage_mb\":5e-324,\"duration_ms\":5e-324,\"x\":5e-324}");
    assert_true(g->rec.has_memory_usage_mb);
    assert_true(g->rec.memory_usage_mb > 0 && g->rec.memory_usage_mb < 1e-323);
    assert_true(g->rec.has_duration_ms);
    assert_int_equal(g->rec.duration_ms, 0);
    assert_string_equal(g->extra, "{\"x\":5e-324}");
    g = one(f, "{\"memory_usage_mb\":\"2.2250738585072011e-308\"}");
    assert_true(g->rec.memory_usage_mb > 0);
    g = one(f, "{\"memory_usage_mb\":1e-400}"); /* underflows to 0: a number all the same */
    assert_true(g->rec.has_memory_usage_mb);
    assert_true(g->rec.memory_usage_mb == 0.0);
    /* beyond a double: out of range, as integers beyond INTEGER */
    assert_non_null(strstr(why(f, "{\"memory_usage_mb\":1e400}"), "memory_usage_mb: 1e400 is out of range"));
    assert_non_null(strstr(why(f, "{\"memory_usage_mb\":\"inf\"}"), "not a number"));
}

static void test_json_otlp_exception_attributes_and_foreign_user_ids(void **state)
{
    struct fixture *f = *state;
    const struct got *g;

    assert_int_equal(
        doc(f, "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"attributes\":["
               "{\"key\":\"exception.stacktrace\",\"value\":{\"stringValue\":\"Traceback (most "
               "recent call last):\\n  File \\\"a.py\\\", line 1, in <module>\\n    f()\\n"
               "KeyError: 'k'\\n\"}},"
               "{\"key\":\"enduser.id\",\"value\":{\"stringValue\":\"alice\"}}]},"
               "{\"attributes\":["
               "{\"key\":\"exception.type\",\"value\":{\"stringValue\":\"Own\"}},"
               "{\"key\":\"exception.stacktrace\",\"value\":{\"stringValue\":\"RangeError: x\\n"
               "    at f (a.js:1:1)\"}},"
               "{\"key\":\"user.id\",\"value\":{\"intValue\":\"9007199254740993\"}}]}]}]}]}"),
        AGG_OK);
    assert_int_equal(f->s.n_ev, 2);
    g = &f->s.ev[0];
    assert_string_equal(g->str[AGG_F_EXCEPTION_TYPE], "KeyError");
    assert_string_equal(g->str[AGG_F_EXCEPTION_MESSAGE], "'k'");
    assert_false(g->rec.has_user_id);
    assert_string_equal(g->user_id_orig, "alice");
    assert_true(g->rec.user_id_orig_is_string);
    g = &f->s.ev[1];
    assert_string_equal(g->str[AGG_F_EXCEPTION_TYPE], "Own");
    assert_null(g->str[AGG_F_EXCEPTION_MESSAGE]); /* another exception's message: not taken */
    assert_string_equal(g->user_id_orig, "9007199254740993");
    assert_false(g->rec.user_id_orig_is_string); /* an int64: a number */
}

/* ---- documents ------------------------------------------------------------------- */

static void test_json_document_single_object_is_event_zero(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(doc(f, "  {\"msg\":\"solo\",\"x\":{\"y\":[1,2]}}\n"), AGG_OK);
    assert_int_equal(f->s.n_ev, 1);
    assert_string_equal(f->s.ev[0].str[AGG_F_MESSAGE], "solo");
    assert_string_equal(f->s.ev[0].extra, "{\"x\":{\"y\":[1,2]}}");
    assert_string_equal(f->s.ev[0].raw, "{\"msg\":\"solo\",\"x\":{\"y\":[1,2]}}");
    assert_int_equal(doc(f, "{\"line_number\":\"x\"}"), AGG_OK);
    assert_int_equal(f->s.n_rej, 1);
    assert_int_equal(f->s.rej[0].index, 0);
    /* a top-level scalar is JSON, but not an event */
    assert_int_equal(doc(f, "42"), AGG_OK);
    assert_int_equal(f->s.n_rej, 1);
    assert_string_equal(f->s.rej[0].why, "event is not a JSON object");
    assert_string_equal(f->s.rej[0].raw, "42");
}

static void test_json_document_array_rejects_non_object_elements(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(doc(f, "[{\"msg\":\"a\"}, 5, [ {\"msg\":\"inner\"} ], \"s\", null,"
                            " {\"msg\" : \"b\", \"level\" : \"error\", \"k\": \"v\\n\"},"
                            " {\"duration_ms\":true}, {}]"),
                     AGG_OK);
    assert_int_equal(f->s.n_ev, 3);
    assert_string_equal(f->s.ev[0].str[AGG_F_MESSAGE], "a");
    assert_string_equal(f->s.ev[1].str[AGG_F_MESSAGE], "b");
    assert_int_equal(f->s.ev[1].rec.level, AGG_LEVEL_ERROR);
    /* raw is a compact re-serialization of the element */
    assert_string_equal(f->s.ev[1].raw, "{\"msg\":\"b\",\"level\":\"error\",\"k\":\"v\\n\"}");
    assert_string_equal(f->s.ev[2].str[AGG_F_MESSAGE], "");
    assert_int_equal(f->s.n_rej, 5);
    assert_int_equal(f->s.rej[0].index, 1);
    assert_string_equal(f->s.rej[0].raw, "5");
    assert_int_equal(f->s.rej[1].index, 2);
    assert_string_equal(f->s.rej[1].raw, "[{\"msg\":\"inner\"}]");
    assert_int_equal(f->s.rej[2].index, 3);
    assert_int_equal(f->s.rej[3].index, 4);
    assert_string_equal(f->s.rej[3].raw, "null");
    assert_int_equal(f->s.rej[4].index, 6);
    assert_non_null(strstr(f->s.rej[4].why, "duration_ms"));
    assert_string_equal(f->s.rej[4].raw, "{\"duration_ms\":true}");
    assert_int_equal(doc(f, "[]"), AGG_OK);
    assert_int_equal(f->stats.accepted + f->stats.rejected, 0);
}

static void test_json_document_that_is_not_json_emits_nothing(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(doc(f, "[{\"msg\":\"a\"},{\"msg\":\"b\"},{\"msg\":"), AGG_EINVAL);
    assert_int_equal(f->s.n_ev + f->s.n_rej, 0);
    assert_non_null(strstr(f->err.msg, "not JSON"));
    assert_int_equal(doc(f, "[{\"msg\":\"a\"}, {\"msg\" \"b\"}]"), AGG_EINVAL);
    assert_non_null(strstr(f->err.msg, "at byte 24"));
    assert_int_equal(doc(f, "not json"), AGG_EINVAL);
    assert_non_null(strstr(f->err.msg, "at byte 1"));
    assert_int_equal(doc(f, "{\"a\":1} {\"b\":2}"), AGG_EINVAL);
    assert_int_equal(doc(f, "{\"a\":1}\n{\"b\":2}\n"), AGG_EINVAL); /* NDJSON sent as JSON */
    assert_int_equal(doc(f, ""), AGG_EINVAL);
    assert_non_null(strstr(f->err.msg, "empty"));
    assert_int_equal(doc(f, " \n "), AGG_EINVAL);
    assert_int_equal(f->s.n_ev + f->s.n_rej, 0);
}

/* ---- OTLP ------------------------------------------------------------------------ */

static const char otlp_body[] =
    "{\"resourceLogs\":["
    " {\"resource\":{\"attributes\":["
    "   {\"key\":\"service.name\",\"value\":{\"stringValue\":\"checkout\"}},"
    "   {\"key\":\"host.cpus\",\"value\":{\"intValue\":\"8\"}}]},"
    "  \"scopeLogs\":["
    "   {\"scope\":{\"name\":\"com.shop.Checkout\",\"version\":\"1.2.0\"},"
    "    \"logRecords\":["
    "     "
    "{\"timeUnixNano\":\"1704164645123456789\",\"observedTimeUnixNano\":\"1704164646000000000\","
    "      \"severityNumber\":17,\"severityText\":\"ERROR\","
    "      \"body\":{\"stringValue\":\"payment failed\"},"
    "      \"attributes\":["
    "        {\"key\":\"user_id\",\"value\":{\"intValue\":\"42\"}},"
    "        {\"key\":\"http.request.method\",\"value\":{\"stringValue\":\"POST\"}},"
    "        {\"key\":\"url.path\",\"value\":{\"stringValue\":\"/pay\"}},"
    "        {\"key\":\"code.lineno\",\"value\":{\"intValue\":117}},"
    "        {\"key\":\"exception.type\",\"value\":{\"stringValue\":\"CardDeclined\"}},"
    "        {\"key\":\"retry\",\"value\":{\"boolValue\":true}},"
    "        {\"key\":\"ratio\",\"value\":{\"doubleValue\":0.25}},"
    "        {\"key\":\"items\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},"
    "                                   {\"intValue\":\"2\"}]}}},"
    "        {\"key\":\"card\",\"value\":{\"kvlistValue\":{\"values\":["
    "             {\"key\":\"brand\",\"value\":{\"stringValue\":\"visa\"}}]}}},"
    "        {\"key\":\"blob\",\"value\":{\"bytesValue\":\"AQID\"}},"
    "        {\"key\":\"empty\",\"value\":{}}],"
    "      \"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b174\","
    "      \"flags\":1},"
    "     {\"observedTimeUnixNano\":1704164646000000000,\"severityText\":\"Information\","
    "      \"body\":{\"kvlistValue\":{\"values\":[{\"key\":\"event\",\"value\":{\"stringValue\":"
    "      \"login\"}}]}}}]},"
    "   {\"scope\":{\"name\":\"\"},\"logRecords\":[{\"severityNumber\":\"SEVERITY_NUMBER_WARN2\","
    "      \"timeUnixNano\":\"0\",\"body\":{\"intValue\":\"7\"},\"custom\":{\"x\":1}}]}]},"
    " {\"resource\":{},\"scopeLogs\":[{\"logRecords\":["
    "   {\"severityNumber\":5,\"severityText\":\"chatty\",\"body\":{\"stringValue\":\"second "
    "resource\"}},"
    "   \"not a record\","
    "   {\"timeUnixNano\":\"soon\"}]}]}"
    "]}";

static void test_json_otlp_maps_a_multi_resource_body(void **state)
{
    struct fixture *f = *state;
    const struct got *g;
    yajl_val x, r;

    assert_int_equal(doc(f, otlp_body), AGG_OK);
    assert_int_equal(f->s.n_ev, 4);
    assert_int_equal(f->s.n_rej, 2);

    /* 0: the full record */
    g = &f->s.ev[0];
    assert_string_equal(g->str[AGG_F_MESSAGE], "payment failed");
    assert_int_equal(g->rec.level, AGG_LEVEL_ERROR);
    assert_true(g->rec.created_us == INT64_C(1704164645123456));
    assert_string_equal(g->str[AGG_F_CORRELATION_ID], "5b8efff798038103d269b633813fc60c");
    assert_string_equal(g->str[AGG_F_LOGGER_NAME], "com.shop.Checkout");
    assert_true(g->rec.has_user_id);
    assert_int_equal(g->rec.user_id, 42);
    assert_string_equal(g->str[AGG_F_REQUEST_METHOD], "POST");
    assert_string_equal(g->str[AGG_F_REQUEST_PATH], "/pay");
    assert_int_equal(g->rec.line_number, 117);
    assert_string_equal(g->str[AGG_F_EXCEPTION_TYPE], "CardDeclined");
    x = parse_json(g->extra);
    assert_string_equal(str_of(at(x, "resource", "service.name", NULL)), "checkout");
    assert_int_equal(YAJL_GET_INTEGER(at(x, "resource", "host.cpus", NULL)), 8);
    assert_string_equal(str_of(at(x, "scope", "name", NULL)), "com.shop.Checkout");
    assert_string_equal(str_of(at(x, "scope", "version", NULL)), "1.2.0");
    assert_int_equal(YAJL_GET_INTEGER(at(x, "attributes", "user_id", NULL)), 42);
    assert_int_equal(YAJL_GET_INTEGER(at(x, "attributes", "code.lineno", NULL)), 117);
    assert_true(YAJL_IS_TRUE(at(x, "attributes", "retry", NULL)));
    assert_true(YAJL_GET_DOUBLE(at(x, "attributes", "ratio", NULL)) == 0.25);
    r = at(x, "attributes", "items", NULL);
    assert_true(YAJL_IS_ARRAY(r));
    assert_string_equal(str_of(YAJL_GET_ARRAY(r)->values[0]), "a");
    assert_int_equal(YAJL_GET_INTEGER(YAJL_GET_ARRAY(r)->values[1]), 2);
    assert_string_equal(str_of(at(x, "attributes", "card", "brand", NULL)), "visa");
    assert_string_equal(str_of(at(x, "attributes", "blob", NULL)), "AQID");
    assert_true(YAJL_IS_NULL(at(x, "attributes", "empty", NULL)));
    assert_string_equal(str_of(at(x, "span_id", NULL)), "eee19b7ec3c1b174");
    assert_int_equal(YAJL_GET_INTEGER(at(x, "flags", NULL)), 1);
    assert_null(at(x, "severity_text", NULL)); /* recognized: not kept */
    yajl_tree_free(x);
    r = parse_json(g->raw); /* raw: the logRecord as sent */
    assert_string_equal(str_of(at(r, "spanId", NULL)), "eee19b7ec3c1b174");
    assert_string_equal(str_of(at(r, "body", "stringValue", NULL)), "payment failed");
    yajl_tree_free(r);

    /* 1: observed time as a number; severityText; a kvlist body becomes JSON text */
    g = &f->s.ev[1];
    assert_true(g->rec.created_us == INT64_C(1704164646000000));
    assert_int_equal(g->rec.level, AGG_LEVEL_INFO);
    assert_true(g->rec.has_level);
    assert_string_equal(g->str[AGG_F_MESSAGE], "{\"event\":\"login\"}");
    assert_null(g->str[AGG_F_CORRELATION_ID]);
    x = parse_json(g->extra);
    assert_null(at(x, "attributes", NULL));
    assert_string_equal(str_of(at(x, "scope", "name", NULL)), "com.shop.Checkout");
    yajl_tree_free(x);

    /* 2: second scope (empty name: no scope, no logger); enum severity; int body;
     * "0" time is unset; an unknown member goes to extra_data as is */
    g = &f->s.ev[2];
    assert_int_equal(g->rec.level, AGG_LEVEL_WARNING);
    assert_string_equal(g->str[AGG_F_MESSAGE], "7");
    assert_true(g->rec.created_us == AGG_TIME_NONE);
    assert_null(g->str[AGG_F_LOGGER_NAME]);
    x = parse_json(g->extra);
    assert_null(at(x, "scope", NULL));
    assert_string_equal(str_of(at(x, "resource", "service.name", NULL)), "checkout");
    assert_int_equal(YAJL_GET_INTEGER(at(x, "custom", "x", NULL)), 1);
    yajl_tree_free(x);

    /* 3: second resource; severityNumber wins; unrecognized text is kept */
    g = &f->s.ev[3];
    assert_string_equal(g->str[AGG_F_MESSAGE], "second resource");
    assert_int_equal(g->rec.level, AGG_LEVEL_DEBUG);
    x = parse_json(g->extra);
    assert_null(at(x, "resource", NULL));
    assert_string_equal(str_of(at(x, "severity_text", NULL)), "chatty");
    yajl_tree_free(x);

    /* rejects carry their logRecord index across resources */
    assert_int_equal(f->s.rej[0].index, 4);
    assert_string_equal(f->s.rej[0].why, "logRecord is not a JSON object");
    assert_string_equal(f->s.rej[0].raw, "\"not a record\"");
    assert_int_equal(f->s.rej[1].index, 5);
    assert_non_null(strstr(f->s.rej[1].why, "timeUnixNano"));
    assert_string_equal(f->s.rej[1].raw, "{\"timeUnixNano\":\"soon\"}");
}

static void test_json_otlp_member_order_does_not_matter(void **state)
{
    struct fixture *f = *state;
    const struct got *g;
    yajl_val x;

    /* resource after scopeLogs, scope after logRecords, value before key, and the
     * OTLP key not first in the document */
    assert_int_equal(
        doc(f,
            "{\"extra\":1,\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":"
            "{\"stringValue\":\"late\"},\"attributes\":[{\"value\":{\"stringValue\":\"r-1\"},"
            "\"key\":\"request_id\"}]}],\"scope\":{\"name\":\"lib\"}}],\"resource\":"
            "{\"attributes\":[{\"value\":{\"stringValue\":\"svc\"},\"key\":\"service.name\"}]}}]}"),
        AGG_OK);
    assert_int_equal(f->s.n_ev, 1);
    g = &f->s.ev[0];
    assert_string_equal(g->str[AGG_F_MESSAGE], "late");
    assert_string_equal(g->str[AGG_F_REQUEST_ID], "r-1");
    assert_string_equal(g->str[AGG_F_LOGGER_NAME], "lib");
    x = parse_json(g->extra);
    assert_string_equal(str_of(at(x, "resource", "service.name", NULL)), "svc");
    assert_string_equal(str_of(at(x, "scope", "name", NULL)), "lib");
    assert_string_equal(str_of(at(x, "attributes", "request_id", NULL)), "r-1");
    yajl_tree_free(x);
    /* snake_case (proto field names) is accepted too */
    assert_int_equal(doc(f, "{\"resource_logs\":[{\"scope_logs\":[{\"log_records\":[{"
                            "\"severity_number\":21,\"time_unix_nano\":1000000000000000000,"
                            "\"trace_id\":\"t\"}]}]}]}"),
                     AGG_OK);
    assert_int_equal(f->s.n_ev, 1);
    assert_int_equal(f->s.ev[0].rec.level, AGG_LEVEL_CRITICAL);
    assert_true(f->s.ev[0].rec.created_us == INT64_C(1000000000000000));
    assert_string_equal(f->s.ev[0].str[AGG_F_CORRELATION_ID], "t");
}

static void test_json_otlp_attributes_fill_columns_without_rejecting(void **state)
{
    struct fixture *f = *state;
    const struct got *g;

    assert_int_equal(
        doc(f, "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"traceId\":\"trace\","
               "\"attributes\":["
               "{\"key\":\"user.id\",\"value\":{\"stringValue\":\"alice\"}},"
               "{\"key\":\"duration_ms\",\"value\":{\"doubleValue\":12.4}},"
               "{\"key\":\"correlation_id\",\"value\":{\"stringValue\":\"from-attr\"}},"
               "{\"key\":\"code.function\",\"value\":{\"stringValue\":\"pay\"}},"
               "{\"key\":\"code.namespace\",\"value\":{\"stringValue\":\"shop.pay\"}},"
               "{\"key\":\"client.address\",\"value\":{\"stringValue\":\"::1\"}},"
               "{\"key\":\"exception.message\",\"value\":{\"stringValue\":\"boom\"}},"
               "{\"key\":\"exception.stacktrace\",\"value\":{\"stringValue\":\"at x\"}},"
               "{\"key\":\"http.method\",\"value\":{\"stringValue\":\"GET\"}},"
               "{\"key\":\"http.target\",\"value\":{\"stringValue\":\"/q?a=1\"}},"
               "{\"key\":\"logger_name\",\"value\":{\"stringValue\":\"mylogger\"}},"
               "{\"key\":\"message\",\"value\":{\"stringValue\":\"not the body\"}},"
               "{\"key\":\"line_number\",\"value\":{\"boolValue\":true}},"
               "{\"key\":\"memory_usage_mb\",\"value\":{\"intValue\":\"300\"}}]}],"
               "\"scope\":{\"name\":\"scopename\"}}]}]}"),
        AGG_OK);
    assert_int_equal(f->s.n_rej, 0);
    g = &f->s.ev[0];
    assert_false(g->rec.has_user_id); /* "alice" does not fit: left out, kept in extra */
    assert_non_null(strstr(g->extra, "\"user.id\":\"alice\""));
    assert_int_equal(g->rec.duration_ms, 12);
    assert_string_equal(g->str[AGG_F_CORRELATION_ID], "trace"); /* traceId wins */
    assert_string_equal(g->str[AGG_F_FUNCTION_NAME], "pay");
    assert_string_equal(g->str[AGG_F_MODULE], "shop.pay");
    assert_string_equal(g->str[AGG_F_REQUEST_IP], "::1");
    assert_string_equal(g->str[AGG_F_EXCEPTION_MESSAGE], "boom");
    assert_string_equal(g->str[AGG_F_STACK_TRACE], "at x");
    assert_string_equal(g->str[AGG_F_REQUEST_METHOD], "GET");
    assert_string_equal(g->str[AGG_F_REQUEST_PATH], "/q?a=1");
    assert_string_equal(g->str[AGG_F_LOGGER_NAME], "mylogger"); /* the attribute beats the scope */
    assert_string_equal(g->str[AGG_F_MESSAGE], "");             /* no body */
    assert_false(g->rec.has_line_number);
    assert_true(g->rec.memory_usage_mb == 300.0);
}

static void test_json_otlp_wrong_types_reject_the_record(void **state)
{
    static const char *const records[] = {
        "{\"timeUnixNano\":{}}", "{\"severityNumber\":2.5}",  "{\"severityNumber\":\"LOUD\"}",
        "{\"severityText\":5}",  "{\"traceId\":7}",           "{\"attributes\":{\"a\":1}}",
        "{\"flags\":[1]}",       "{\"timeUnixNano\":\"-5\"}",
    };
    struct fixture *f = *state;
    char body[512];

    for (size_t i = 0; i < sizeof(records) / sizeof(records[0]); i++) {
        snprintf(body, sizeof(body),
                 "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[%s,{\"body\":"
                 "{\"stringValue\":\"ok\"}}]}]}]}",
                 records[i]);
        assert_int_equal(doc(f, body), AGG_OK);
        if (f->s.n_rej != 1)
            fail_msg("%s was not rejected", records[i]);
        assert_int_equal(f->s.rej[0].index, 0);
        assert_int_equal(f->s.n_ev, 1);
        assert_string_equal(f->s.ev[0].str[AGG_F_MESSAGE], "ok");
    }
    /* severityNumber out of 1-24 is unspecified, not wrong */
    assert_int_equal(doc(f, "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":["
                            "{\"severityNumber\":99,\"severityText\":\"warn\"}]}]}]}"),
                     AGG_OK);
    assert_int_equal(f->s.n_ev, 1);
    assert_int_equal(f->s.ev[0].rec.level, AGG_LEVEL_WARNING);
}

static void test_json_otlp_bad_shape_is_not_accepted(void **state)
{
    static const char *const bodies[] = {
        "{\"resourceLogs\":{}}",
        "{\"resourceLogs\":[5]}",
        "{\"resourceLogs\":[{\"resource\":[]}]}",
        "{\"resourceLogs\":[{\"scopeLogs\":{}}]}",
        "{\"resourceLogs\":[{\"scopeLogs\":[1]}]}",
        "{\"resourceLogs\":[{\"scopeLogs\":[{\"scope\":\"s\"}]}]}",
        "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":{}}]}]}",
    };
    struct fixture *f = *state;

    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        assert_int_equal(doc(f, bodies[i]), AGG_EINVAL);
        assert_non_null(strstr(f->err.msg, "not an OTLP logs document"));
        assert_int_equal(f->s.n_ev + f->s.n_rej, 0);
    }
    /* empty and null containers are fine */
    assert_int_equal(doc(f, "{\"resourceLogs\":[]}"), AGG_OK);
    assert_int_equal(doc(f, "{\"resourceLogs\":null}"), AGG_OK);
    assert_int_equal(doc(f, "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":null}]}]}"),
                     AGG_OK);
    assert_int_equal(f->s.n_ev + f->s.n_rej, 0);
}

/* ---- back pressure, lines, memory ------------------------------------------------ */

static void test_json_sink_full_stops_at_once(void **state)
{
    struct fixture *f = *state;

    sink_reset(&f->s);
    f->s.full_after = 2;
    assert_int_equal(
        ing_json_decode_ndjson(f->j, "{}\n{}\n{}\n{}\n", 12, &f->sink, &f->stats, &f->err),
        AGG_EFULL);
    assert_int_equal(f->stats.accepted, 2);
    assert_int_equal(f->s.n_ev, 2);
    assert_true(ing_json_check(f->j));

    sink_reset(&f->s);
    f->s.full_after = 1;
    assert_int_equal(
        ing_json_decode_document(f->j, "[{},5,{},{}]", 12, &f->sink, &f->stats, &f->err),
        AGG_EFULL);
    assert_int_equal(f->stats.accepted, 1);
    assert_int_equal(f->stats.rejected, 1);
    assert_true(ing_json_check(f->j));

    sink_reset(&f->s);
    f->s.full_after = 1;
    assert_int_equal(ing_json_decode_document(f->j, otlp_body, sizeof(otlp_body) - 1, &f->sink,
                                              &f->stats, &f->err),
                     AGG_EFULL);
    assert_int_equal(f->stats.accepted, 1);
    assert_true(ing_json_check(f->j));
}

static void test_json_decode_line_reports_the_outcome(void **state)
{
    struct fixture *f = *state;
    static const char good[] = "{\"msg\":\"tcp\"}\r\n";

    sink_reset(&f->s);
    assert_int_equal(ing_json_decode_line(f->j, good, sizeof(good) - 1, 17, &f->sink, &f->err),
                     AGG_OK);
    assert_int_equal(f->s.n_ev, 1);
    assert_string_equal(f->s.ev[0].str[AGG_F_MESSAGE], "tcp");
    assert_string_equal(f->s.ev[0].raw, "{\"msg\":\"tcp\"}");
    assert_int_equal(ing_json_decode_line(f->j, "  \r\n", 4, 18, &f->sink, &f->err), AGG_OK);
    assert_int_equal(ing_json_decode_line(f->j, "{\"level\":[]}", 12, 19, &f->sink, &f->err),
                     AGG_EINVAL);
    assert_non_null(strstr(f->err.msg, "level"));
    assert_int_equal(f->s.n_rej, 1);
    assert_int_equal(f->s.rej[0].index, 19);
    f->s.full_after = 1;
    assert_int_equal(ing_json_decode_line(f->j, good, sizeof(good) - 1, 20, &f->sink, &f->err),
                     AGG_EFULL);
    assert_true(ing_json_check(f->j));
}

static void test_json_decoder_is_reused_without_pool_misses(void **state)
{
    struct fixture *f = *state;
    size_t cap = 500000;
    char *big = malloc(cap);
    size_t n = 0;

    /* a document far bigger than the event limit, with long escaped strings */
    n += (size_t)snprintf(big, cap, "[");
    for (int i = 0; i < 40; i++) {
        n += (size_t)snprintf(big + n, cap - n, "%s{\"msg\":\"", i ? "," : "");
        for (int k = 0; k < 1200; k++) {
            memcpy(big + n, "\\n\\u00e9", 8);
            n += 8;
        }
        n += (size_t)snprintf(big + n, cap - n, "\"}");
    }
    big[n++] = ']';
    big[n] = '\0';
    assert_int_equal(doc(f, big), AGG_OK);
    assert_int_equal(f->s.n_rej, 40); /* each re-serializes above 4096 bytes */
    for (int round = 0; round < 3; round++) {
        assert_int_equal(nd(f, "{\"msg\":\"\\u0041\\n\"}\n{\"x\":[1,{\"y\":\"\\t\"}]}\n7\n"),
                         AGG_OK);
        assert_int_equal(f->s.n_ev, 2);
        assert_string_equal(f->s.ev[0].str[AGG_F_MESSAGE], "A\n");
        assert_int_equal(doc(f, otlp_body), AGG_OK);
        assert_int_equal(f->s.n_ev, 4);
    }
    free(big);
}

static void test_json_new_refuses_a_zero_limit(void **state)
{
    struct agg_err err = {0};

    (void)state;
    assert_null(ing_json_new(0, &err));
    assert_int_equal(err.code, AGG_EINVAL);
    ing_json_free(NULL);
}

/* Runs <fn> with the n-th allocation failing, n = 0, 1, ... until it succeeds: each
 * run ends in a clean error, and the decoder stays usable. */
static void sweep(int (*fn)(struct ing_json *, struct sink *), size_t want_ev)
{
    int rc = AGG_ENOMEM;

    for (long n = 0; rc != AGG_OK; n++) {
        struct sink s = {.full_after = -1};
        struct ing_json *j;

        assert_true(n < 10000);
        agg_alloc_fail_after(n);
        j = ing_json_new(4096, NULL);
        if (j == NULL) {
            agg_alloc_fail_after(-1);
            continue;
        }
        rc = fn(j, &s);
        agg_alloc_fail_after(-1);
        assert_true(rc == AGG_OK || rc == AGG_ENOMEM);
        assert_true(ing_json_check(j));
        if (rc == AGG_OK)
            assert_int_equal(s.n_ev, want_ev);
        /* usable afterwards */
        sink_reset(&s);
        assert_int_equal(fn(j, &s), AGG_OK);
        assert_int_equal(s.n_ev, want_ev);
        sink_reset(&s);
        ing_json_free(j);
    }
}

static int sweep_ndjson(struct ing_json *j, struct sink *s)
{
    static const char body[] =
        "{\"msg\":\"a\\u0000\",\"k\":{\"n\":[1,2,\"\\u00e9\"]},\"user_id\":3}\n"
        "bad\n{\"msg\":\"b\\ud800\",\"level\":\"error\",\"e\\n\":\"x\\ty\","
        "\"err\":{\"type\":\"E\",\"code\":1},\"user_id\":\"u-1\"}\n";
    struct agg_sink sink = {sink_emit, sink_reject, s};
    struct ing_json_stats st;

    return ing_json_decode_ndjson(j, body, sizeof(body) - 1, &sink, &st, NULL);
}

static int sweep_document(struct ing_json *j, struct sink *s)
{
    static const char body[] = "[{\"msg\":\"a\",\"k\":{\"n\":[1,2,\"\\u00e9\"]}},5,"
                               "{\"msg\":\"b\\n\",\"t\":true}]";
    struct agg_sink sink = {sink_emit, sink_reject, s};
    struct ing_json_stats st;

    return ing_json_decode_document(j, body, sizeof(body) - 1, &sink, &st, NULL);
}

static int sweep_otlp(struct ing_json *j, struct sink *s)
{
    struct agg_sink sink = {sink_emit, sink_reject, s};
    struct ing_json_stats st;

    return ing_json_decode_document(j, otlp_body, sizeof(otlp_body) - 1, &sink, &st, NULL);
}

static void test_json_survives_allocation_failure(void **state)
{
    (void)state;
    sweep(sweep_ndjson, 2);
    sweep(sweep_document, 2);
    sweep(sweep_otlp, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_ndjson_fills_every_column, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_ndjson_handles_crlf_and_blank_lines, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_ndjson_bad_line_keeps_its_neighbours, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_ndjson_garbage_never_spills_into_the_next_line,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_aliases_fill_their_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_unknown_keys_go_to_extra_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_wrong_types_reject_the_event_naming_the_field,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_numbers_fill_text_columns_with_their_literal,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_integers_out_of_range_reject_the_event, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_timestamps_take_epoch_and_iso_forms, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_json_timestamps_read_a_leap_second_as_the_end_of_its_minute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_null_means_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_levels_take_names_severities_and_bunyan_numbers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_missing_message_and_level_get_defaults, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_nul_escapes_are_repaired_in_extra_data, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_invalid_utf8_rejects_the_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_oversized_events_are_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_deep_nesting_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_json_pino_err_and_name_fill_exception_and_logger_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_bunyan_err_name_is_the_exception_type, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_winston_stack_gives_type_and_message, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_python_tracebacks_fill_the_exception_columns,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_json_columns_by_name_win_over_error_objects_and_aliases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_error_objects_keep_what_fills_no_column, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_user_id_that_is_not_an_integer_is_kept_as_sent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_json_unpaired_surrogates_become_replacement_characters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_subnormal_numbers_are_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_otlp_exception_attributes_and_foreign_user_ids,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_document_single_object_is_event_zero, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_document_array_rejects_non_object_elements, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_document_that_is_not_json_emits_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_otlp_maps_a_multi_resource_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_otlp_member_order_does_not_matter, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_otlp_attributes_fill_columns_without_rejecting,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_otlp_wrong_types_reject_the_record, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_json_otlp_bad_shape_is_not_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_sink_full_stops_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_decode_line_reports_the_outcome, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_decoder_is_reused_without_pool_misses, setup,
                                        teardown),
        cmocka_unit_test(test_json_new_refuses_a_zero_limit),
        cmocka_unit_test(test_json_survives_allocation_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
