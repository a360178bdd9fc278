/*
 * tests/test_ing_syslog.c — RFC 5424/3164 parsing against every vector of
 * tests/data/conformance/rfc5424.jsonl and rfc3164.jsonl (README "How a test should
 * use this"), and the mapping of messages to records.
 *
 * Every parse gets an exact-size heap copy of its input, so ASan reports any read
 * past the end. The cases where the parser deliberately decides differently from the
 * corpus are listed below and in docs/conformance.md; the test fails when the two
 * drift apart.
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
#include <yajl/yajl_tree.h>

#include "tests/support/conformance.h"

#include "ingest/json.h"
#include "ingest/syslog.h"
#include "core/time.h"
#include "core/tz.h"
#include "core/alloc.h"

/* 2024-06-15T12:00:00Z: the receive time for year-less dates */
#define NOW_US (INT64_C(1718452800) * AGG_US_PER_SEC)

static bool is_null(yajl_val v)
{
    return v == NULL || YAJL_IS_NULL(v);
}

/* ---- parsing helpers ---------------------------------------------------------- */

/* A parse of an exact-size copy; the copy stays alive in <p> until parsed_free. */
struct parsed {
    char *p;
    size_t len;
    int rc;
    struct ing_syslog_msg m;
    struct agg_err err;
};

static void parse_in(struct parsed *r, const char *input, size_t len, int64_t now_us,
                     const struct agg_tz *zone)
{
    memset(r, 0, sizeof(*r));
    r->p = malloc(len > 0 ? len : 1);
    assert_non_null(r->p);
    if (len > 0)
        memcpy(r->p, input, len);
    r->len = len;
    r->rc = ing_syslog_parse(r->p, len, now_us, zone, &r->m, &r->err);
    if (r->rc != AGG_OK) {
        assert_int_equal(r->rc, AGG_EINVAL);
        assert_true(strlen(r->err.msg) > 0);
    }
}

static void parse(struct parsed *r, const char *input, size_t len, int64_t now_us)
{
    parse_in(r, input, len, now_us, NULL);
}

static void parse_str(struct parsed *r, const char *s)
{
    parse(r, s, strlen(s), NOW_US);
}

static void parsed_free(struct parsed *r)
{
    free(r->p);
}

static bool str_is(struct agg_str s, const char *want)
{
    return s.p != NULL && s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

/* Whether <s> equals expectation <v> (null: absent). */
static bool str_matches(struct agg_str s, yajl_val v)
{
    size_t n;
    char *want;
    bool ok;

    if (is_null(v))
        return s.p == NULL;
    if (s.p == NULL)
        return false;
    want = conf_str(v, &n);
    ok = s.len == n && memcmp(s.p, want, n) == 0;
    free(want);
    return ok;
}

/* MSG against "message"/"message_hex" of <e>; an absent MSG equals null. */
static bool msg_matches(struct agg_str s, yajl_val e)
{
    yajl_val hex = conf_key(e, "message_hex");
    size_t n;
    char *want;
    bool ok;

    if (is_null(hex))
        return str_matches(s, conf_key(e, "message"));
    want = conf_unhex(YAJL_GET_STRING(hex), &n);
    ok = s.p != NULL && s.len == n && memcmp(s.p, want, n) == 0;
    free(want);
    return ok;
}

static bool int_matches(long long have, yajl_val v)
{
    return !is_null(v) && YAJL_IS_INTEGER(v) && YAJL_GET_INTEGER(v) == have;
}

/* STRUCTURED-DATA against the expected map (values unescaped). */
static bool sd_matches(struct agg_str sd, yajl_val want)
{
    struct ing_syslog_sd_iter it;
    struct agg_str id, name, value;
    struct agg_buf b;
    size_t nel = 0;
    bool ok = true;

    if (is_null(want))
        return sd.p == NULL;
    if (sd.p == NULL || !YAJL_IS_OBJECT(want))
        return false;
    agg_buf_init(&b);
    ing_syslog_sd_init(&it, sd);
    while (ok && ing_syslog_sd_next_element(&it, &id)) {
        yajl_val el = NULL;
        size_t np = 0;

        for (size_t k = 0; k < YAJL_GET_OBJECT(want)->len; k++) {
            const char *kk = YAJL_GET_OBJECT(want)->keys[k];

            if (strlen(kk) == id.len && memcmp(kk, id.p, id.len) == 0)
                el = YAJL_GET_OBJECT(want)->values[k];
        }
        ok = el != NULL && YAJL_IS_OBJECT(el);
        while (ok && ing_syslog_sd_next_param(&it, &name, &value)) {
            yajl_val wv = NULL;

            for (size_t k = 0; k < YAJL_GET_OBJECT(el)->len; k++) {
                const char *kk = YAJL_GET_OBJECT(el)->keys[k];

                if (strlen(kk) == name.len && memcmp(kk, name.p, name.len) == 0)
                    wv = YAJL_GET_OBJECT(el)->values[k];
            }
            agg_buf_reset(&b);
            assert_int_equal(ing_syslog_sd_unescape(&b, value.p, value.len), AGG_OK);
            ok = wv != NULL && YAJL_IS_STRING(wv) &&
                 str_matches((struct agg_str){b.len > 0 ? b.data : "", b.len}, wv);
            np++;
        }
        ok = ok && np == YAJL_GET_OBJECT(el)->len;
        nel++;
    }
    agg_buf_clear(&b);
    return ok && nel == YAJL_GET_OBJECT(want)->len;
}

static char *case_input(yajl_val c, size_t *len)
{
    yajl_val hex = conf_key(c, "input_hex");

    return is_null(hex) ? conf_str(conf_key(c, "input"), len) : conf_unhex(YAJL_GET_STRING(hex), len);
}

/* Whether <id> is in the NULL-terminated <list>. */
static bool listed(const char *const *list, const char *id)
{
    for (; *list != NULL; list++) {
        if (strcmp(*list, id) == 0)
            return true;
    }
    return false;
}

struct tally {
    const char *const *decided; /* the documented deliberate differences */
    int cases, valid, valid_ok, invalid, rejected, lenient, routed, differs, failed;
};

static void report(struct tally *t, const char *id, const char *what, const char *detail)
{
    if (listed(t->decided, id)) {
        printf("  %-36s decided differently: %s%s%s\n", id, what, detail ? ": " : "",
               detail ? detail : "");
        t->differs++;
    } else {
        printf("  %-36s FAIL: %s%s%s\n", id, what, detail ? ": " : "", detail ? detail : "");
        t->failed++;
    }
}

/* ---- rfc5424.jsonl ------------------------------------------------------------ */

/* Deliberate differences (docs/conformance.md): invalid RFC 5424 that is not shaped
 * "<PRI>VERSION SP", so it is RFC 3164 to us and the lenient path keeps it. */
static const char *const differs_5424[] = {
    "influx-5424-011",
    "influx-5424-012",
    "influx-5424-013",
    "influx-5424-014",
    "influx-5424-015",
    "influx-5424-018",
    "influx-5424-019",
    "influx-5424-021",
    "influx-5424-024",
    "influx-5424-025",
    "influx-5424-026",
    "syslogng-5424-24",
    "rfc5424-6.2.2-version-missing",
    NULL,
};

static void check_5424(yajl_val c, void *arg)
{
    struct tally *t = arg;
    const char *id = YAJL_GET_STRING(conf_key(c, "id"));
    yajl_val e = conf_key(c, "expect");
    bool valid = YAJL_IS_TRUE(conf_key(c, "valid")), lenient = YAJL_IS_TRUE(conf_key(c, "lenient_ok"));
    struct parsed r;
    size_t len;
    char *in = case_input(c, &len);

    t->cases++;
    parse(&r, in, len, NOW_US);
    if (valid) {
        const char *bad = NULL;
        yajl_val ts = conf_key(e, "timestamp");

        t->valid++;
        if (r.rc != AGG_OK)
            bad = r.err.msg;
        else if (r.m.format != ING_SYSLOG_RFC5424)
            bad = "not routed to the RFC 5424 parser";
        else if (!int_matches(r.m.pri, conf_key(e, "pri")) ||
                 !int_matches(r.m.facility, conf_key(e, "facility")) ||
                 !int_matches(r.m.severity, conf_key(e, "severity")))
            bad = "PRI";
        else if (!int_matches(r.m.version, conf_key(e, "version")))
            bad = "VERSION";
        else if (!str_matches(r.m.timestamp, ts))
            bad = "TIMESTAMP";
        else if (!str_matches(r.m.hostname, conf_key(e, "hostname")))
            bad = "HOSTNAME";
        else if (!str_matches(r.m.app_name, conf_key(e, "app_name")))
            bad = "APP-NAME";
        else if (!str_matches(r.m.procid, conf_key(e, "procid")))
            bad = "PROCID";
        else if (!str_matches(r.m.msgid, conf_key(e, "msgid")))
            bad = "MSGID";
        else if (!sd_matches(r.m.sd, conf_key(e, "structured_data")))
            bad = "STRUCTURED-DATA";
        else if (!msg_matches(r.m.msg, e))
            bad = "MSG";
        if (bad == NULL && !is_null(ts)) {
            /* the instant, cross-checked with the general ISO 8601 parser */
            const char *text = YAJL_GET_STRING(ts);
            int64_t us;

            assert_non_null(text);
            assert_true(agg_time_parse_iso8601(text, strlen(text), &us));
            if (us != r.m.ts_us)
                bad = "TIMESTAMP instant";
        } else if (bad == NULL && r.m.ts_us != AGG_TIME_NONE) {
            bad = "ts_us set for NILVALUE";
        }
        if (bad == NULL)
            t->valid_ok++;
        else
            report(t, id, "valid case not parsed as expected", bad);
    } else {
        t->invalid++;
        if (r.rc != AGG_OK) {
            t->rejected++;
        } else if (r.m.format == ING_SYSLOG_RFC3164) {
            t->routed++;
            report(t, id, "not shaped <PRI>VERSION SP: kept by the RFC 3164 path", NULL);
        } else if (lenient) {
            t->lenient++;
            printf("  %-36s lenient_ok, accepted\n", id);
        } else {
            report(t, id, "invalid case accepted as RFC 5424", NULL);
        }
    }
    parsed_free(&r);
    free(in);
}

static void test_syslog_rfc5424_conformance_vectors(void **state)
{
    struct tally t = {.decided = differs_5424};

    (void)state;
    conf_for_each_case("rfc5424.jsonl", check_5424, &t);
    printf("rfc5424.jsonl: %d cases: valid %d/%d pass; invalid %d: %d rejected, %d lenient_ok "
           "accepted, %d kept as RFC 3164; %d decided differently (documented), %d failed\n",
           t.cases, t.valid_ok, t.valid, t.invalid, t.rejected, t.lenient, t.routed, t.differs,
           t.failed);
    assert_int_equal(t.cases, 307);
    assert_int_equal(t.failed, 0);
    assert_int_equal(t.differs, (int)(sizeof(differs_5424) / sizeof(differs_5424[0])) - 1);
}

/* ---- rfc3164.jsonl ------------------------------------------------------------ */

/* Deliberate differences (docs/conformance.md). */
static const char *const differs_3164[] = {
    "syslogng-3164-27", /* no TAG without ':' or [PID] when there is no header */
    NULL,
};

/* Whether <m> equals the candidate reading <e> in every field <e> has. */
static const char *candidate_differs(const struct ing_syslog_msg *m, yajl_val e)
{
    yajl_val pri = conf_key(e, "pri"), v, mc = conf_key(e, "msgcount"), sq = conf_key(e, "sequence");

    if (is_null(pri) ? !m->pri_assumed : !int_matches(m->pri, pri))
        return "PRI";
    if (!is_null(v = conf_key(e, "facility")) && !int_matches(m->facility, v))
        return "facility";
    if (!is_null(v = conf_key(e, "severity")) && !int_matches(m->severity, v))
        return "severity";
    if (!str_matches(m->timestamp, conf_key(e, "timestamp")))
        return "TIMESTAMP";
    if (!str_matches(m->hostname, conf_key(e, "hostname")))
        return "HOSTNAME";
    if (!str_matches(m->app_name, conf_key(e, "app_name")))
        return "TAG";
    if (!str_matches(m->procid, conf_key(e, "procid")))
        return "PID";
    if (!msg_matches(m->msg, e))
        return "MSG";
    if (!is_null(v = conf_key(e, "year")) && !int_matches(m->year, v))
        return "year";
    /* one Cisco number: go-syslog calls it the message counter, beats the sequence */
    if (!is_null(mc) != !is_null(sq) && (m->msgcount >= 0) != (m->sequence >= 0)) {
        yajl_val want = is_null(mc) ? sq : mc;

        if (!int_matches(m->msgcount >= 0 ? m->msgcount : m->sequence, want))
            return "Cisco counter";
    } else if ((!is_null(mc) && !int_matches(m->msgcount, mc)) ||
               (!is_null(sq) && !int_matches(m->sequence, sq))) {
        return "Cisco counters";
    }
    return NULL;
}

static bool is_digit_start(struct agg_str s)
{
    return s.len > 0 && s.p[0] >= '0' && s.p[0] <= '9';
}

static void check_3164(yajl_val c, void *arg)
{
    struct tally *t = arg;
    const char *id = YAJL_GET_STRING(conf_key(c, "id"));
    yajl_val e = conf_key(c, "expect"), also = conf_key(c, "accept_also");
    bool valid = YAJL_IS_TRUE(conf_key(c, "valid")), lenient = YAJL_IS_TRUE(conf_key(c, "lenient_ok"));
    struct parsed r;
    size_t len;
    char *in = case_input(c, &len);

    t->cases++;
    parse(&r, in, len, NOW_US);
    if (valid) {
        const char *bad = NULL;

        t->valid++;
        if (r.rc != AGG_OK)
            bad = r.err.msg;
        else if (r.m.format != ING_SYSLOG_RFC3164)
            bad = "routed to the RFC 5424 parser";
        else if ((bad = candidate_differs(&r.m, e)) != NULL && also != NULL) {
            for (size_t k = 0; bad != NULL && k < YAJL_GET_ARRAY(also)->len; k++) {
                if (candidate_differs(&r.m, YAJL_GET_ARRAY(also)->values[k]) == NULL)
                    bad = NULL;
            }
        }
        if (bad == NULL && r.m.timestamp.p != NULL && is_digit_start(r.m.timestamp)) {
            int64_t us;

            if (agg_time_parse_iso8601(r.m.timestamp.p, r.m.timestamp.len, &us) && us != r.m.ts_us)
                bad = "TIMESTAMP instant";
        }
        if (bad == NULL) {
            t->valid_ok++;
        } else {
            char detail[600];

            snprintf(detail, sizeof(detail), "%s (got host \"%.*s\" tag \"%.*s\" msg \"%.*s\")",
                     bad, (int)r.m.hostname.len, r.m.hostname.p ? r.m.hostname.p : "",
                     (int)r.m.app_name.len, r.m.app_name.p ? r.m.app_name.p : "",
                     (int)(r.m.msg.len > 60 ? 60 : r.m.msg.len), r.m.msg.p ? r.m.msg.p : "");
            report(t, id, "valid case not parsed as expect or accept_also", detail);
        }
    } else {
        t->invalid++;
        if (r.rc != AGG_OK) {
            t->rejected++;
        } else if (lenient) {
            t->lenient++;
            printf("  %-36s lenient_ok, kept: pri %d%s msg \"%.*s\"\n", id, r.m.pri,
                   r.m.pri_assumed ? " (assumed)" : "", (int)(r.m.msg.len > 50 ? 50 : r.m.msg.len),
                   r.m.msg.p ? r.m.msg.p : "");
        } else {
            report(t, id, "invalid case accepted", NULL);
        }
    }
    parsed_free(&r);
    free(in);
}

static void test_syslog_rfc3164_conformance_vectors(void **state)
{
    struct tally t = {.decided = differs_3164};

    (void)state;
    conf_for_each_case("rfc3164.jsonl", check_3164, &t);
    printf("rfc3164.jsonl: %d cases: valid %d/%d pass (expect or accept_also); invalid %d: %d "
           "rejected, %d lenient_ok kept as MSG; %d decided differently (documented), %d "
           "failed\n",
           t.cases, t.valid_ok, t.valid, t.invalid, t.rejected, t.lenient, t.differs, t.failed);
    assert_int_equal(t.cases, 194);
    assert_int_equal(t.failed, 0);
    assert_int_equal(t.differs, (int)(sizeof(differs_3164) / sizeof(differs_3164[0])) - 1);
}

/* ---- parsing behaviour -------------------------------------------------------- */

static void test_syslog_parse_rejects_empty_input(void **state)
{
    struct parsed r;

    (void)state;
    parse(&r, "\r\n", 2, NOW_US);
    assert_int_equal(r.rc, AGG_EINVAL);
    assert_non_null(strstr(r.err.msg, "empty"));
    parsed_free(&r);
}

static void test_syslog_parse_5424_error_names_field_and_offset(void **state)
{
    static const struct {
        const char *in, *needle1, *needle2;
    } cases[] = {
        {"<1>1 - host\x01name - - - -", "HOSTNAME", "offset 11"},
        {"<192>1 - - - - - -", "PRI", "191"},
        {"<01>1 - - - - - -", "PRI", "leading zero"},
        {"<1>0 - - - - - -", "VERSION", "offset 3"},
        {"<1>1 2003-09-31T22:14:15Z - - - - -", "TIMESTAMP", "offset 13"},
        {"<1>1 2003-09-29T22:14:15.0000001Z - - - - -", "TIMESTAMP", "6 fraction"},
        {"<1>1 - - - - - [a x=\"1\"][a y=\"2\"]", "duplicate SD-ID", "offset 25"},
        {"<1>1 - - - - - [a x=\"]\"]", "unescaped ']'", "offset 21"},
        {"<1>1 - - - - - [a x=\"1\"", "not closed", "offset 15"},
        {"<1>1 - - - - - -x", "STRUCTURED-DATA", "offset 16"},
        {"<1>1 - - abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvw - - -", "APP-NAME", "48"},
        {"<1>1 - - - - ", "MSGID", "end of input"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct parsed r;

        parse_str(&r, cases[i].in);
        if (r.rc != AGG_EINVAL || strstr(r.err.msg, cases[i].needle1) == NULL ||
            strstr(r.err.msg, cases[i].needle2) == NULL)
            fail_msg("\"%s\": rc %d \"%s\"", cases[i].in, r.rc, r.err.msg);
        parsed_free(&r);
    }
}

static void test_syslog_parse_5424_converts_offsets_to_utc(void **state)
{
    struct parsed r;

    (void)state;
    parse_str(&r, "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - x");
    assert_int_equal(r.rc, AGG_OK);
    /* 2003-08-24T12:14:15.000003Z */
    assert_int_equal(r.m.ts_us, INT64_C(1061727255) * AGG_US_PER_SEC + 3);
    parsed_free(&r);
}

/* RFC 5424 section 6.2.3 forbids leap seconds: the message is refused, naming the
 * second's offset. */
static void test_syslog_parse_5424_refuses_a_leap_second(void **state)
{
    struct parsed r;

    (void)state;
    parse_str(&r, "<165>1 2016-12-31T23:59:60Z h app - - - x");
    assert_int_equal(r.rc, AGG_EINVAL);
    assert_non_null(strstr(r.err.msg, "TIMESTAMP"));
    assert_non_null(strstr(r.err.msg, "offset 24"));
    parsed_free(&r);
}

/* An ISO timestamp in a BSD message reads a leap second as JSON does (core/time.h: the
 * last microsecond of its minute); test_json_timestamps_read_a_leap_second_as_the_end_
 * of_its_minute checks the same instant. */
static void test_syslog_parse_3164_reads_a_leap_second_as_json_does(void **state)
{
    static const char *const lines[] = {
        "<34>2016-12-31T23:59:60Z host app: m",
        "<34>2016-12-31T23:59:60.5Z host app: m",
        "<34>2017-01-01T00:59:60+01:00 host app: m",
        "<34>2016-12-31T23:59:60Z+00:00 host app: m",
    };
    const int64_t end_of_2016 = INT64_C(1483228800000000) - 1;
    struct parsed r;

    (void)state;
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        parse_str(&r, lines[i]);
        assert_int_equal(r.rc, AGG_OK);
        if (r.m.ts_us != end_of_2016)
            fail_msg("\"%s\": %lld, want %lld", lines[i], (long long)r.m.ts_us,
                     (long long)end_of_2016);
        assert_int_equal(r.m.hostname.len, 4);
        parsed_free(&r);
    }
}

static void test_syslog_parse_5424_keeps_sp_after_separator_and_bom(void **state)
{
    struct parsed r;

    (void)state;
    parse_str(&r, "<13>1 - h a - - -  two\xEF\xBB\xBF");
    assert_int_equal(r.rc, AGG_OK);
    assert_true(str_is(r.m.msg, " two\xEF\xBB\xBF"));
    parsed_free(&r);
    parse_str(&r, "<13>1 - h a - - - ");
    assert_int_equal(r.rc, AGG_OK);
    assert_non_null(r.m.msg.p);
    assert_int_equal(r.m.msg.len, 0);
    parsed_free(&r);
    parse_str(&r, "<13>1 - h a - - -");
    assert_null(r.m.msg.p);
    parsed_free(&r);
}

static void test_syslog_parse_drops_one_trailing_lf_cr_nul(void **state)
{
    struct parsed r;

    (void)state;
    parse(&r, "<13>1 - h a - - - x\r\n\0", 22, NOW_US);
    assert_int_equal(r.rc, AGG_OK);
    assert_true(str_is(r.m.msg, "x"));
    assert_int_equal(r.m.raw.len, 22);
    parsed_free(&r);
    parse(&r, "<13>Jan  1 00:00:00 h t: x\n\n", 28, NOW_US);
    assert_int_equal(r.rc, AGG_OK);
    assert_true(str_is(r.m.msg, "x\n"));
    parsed_free(&r);
}

static void test_syslog_parse_sd_iteration_unescapes_values(void **state)
{
    struct parsed r;
    struct ing_syslog_sd_iter it;
    struct agg_str id, name, value;
    struct agg_buf b;

    (void)state;
    parse_str(&r, "<13>1 - - - - - [a@1 x=\"q\\\"b\\\\s\\]e\\n\" y=\"\"][b] m");
    assert_int_equal(r.rc, AGG_OK);
    agg_buf_init(&b);
    ing_syslog_sd_init(&it, r.m.sd);
    assert_true(ing_syslog_sd_next_element(&it, &id));
    assert_true(str_is(id, "a@1"));
    assert_true(ing_syslog_sd_next_param(&it, &name, &value));
    assert_true(str_is(name, "x"));
    assert_int_equal(ing_syslog_sd_unescape(&b, value.p, value.len), AGG_OK);
    assert_string_equal(b.data, "q\"b\\s]e\\n");
    assert_true(ing_syslog_sd_next_param(&it, &name, &value));
    assert_true(str_is(name, "y"));
    assert_int_equal(value.len, 0);
    assert_false(ing_syslog_sd_next_param(&it, &name, &value));
    assert_true(ing_syslog_sd_next_element(&it, &id));
    assert_true(str_is(id, "b"));
    assert_false(ing_syslog_sd_next_param(&it, &name, &value));
    assert_false(ing_syslog_sd_next_element(&it, &id));
    assert_true(str_is(r.m.msg, "m"));
    agg_buf_clear(&b);
    parsed_free(&r);
}

static void test_syslog_parse_sd_refuses_too_many_elements(void **state)
{
    struct agg_buf b;
    struct parsed r;

    (void)state;
    agg_buf_init(&b);
    assert_int_equal(agg_buf_printf(&b, "<13>1 - - - - - "), AGG_OK);
    for (int i = 0; i <= ING_SYSLOG_MAX_SD_ELEMENTS; i++)
        assert_int_equal(agg_buf_printf(&b, "[e%d]", i), AGG_OK);
    parse(&r, b.data, b.len, NOW_US);
    assert_int_equal(r.rc, AGG_EINVAL);
    assert_non_null(strstr(r.err.msg, "elements"));
    parsed_free(&r);
    agg_buf_clear(&b);
}

/* Microseconds of <y>-<mo>-<d> <h>:<mi>:<s> UTC. */
static int64_t utc(int y, unsigned mo, unsigned d, int h, int mi, int s)
{
    return (agg_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * AGG_US_PER_SEC;
}

static void test_syslog_parse_3164_dates_are_utc_and_roll_over_new_year(void **state)
{
    static const struct {
        const char *in;
        int64_t now, want;
    } cases[] = {
        {"<13>Jun 15 10:00:00 h t: x", 0, 0},
        {"<13>Dec 31 23:59:59 h t: x", 1, 0},
        {"<13>Jan  1 00:00:01 h t: x", 2, 0},
        {"<13>Jul 20 00:00:00 h t: x", 3, 0},
        {"<13>Jul 10 00:00:00 h t: x", 4, 0},
        {"<13>Feb 29 00:00:00 h t: x", 5, 0},
        {"<13>Apr 15 2007 21:28:13: h t: x", 6, 0},
        {"<13>Feb 29 17:32:18 h t: x", 7, 0}, /* found by fuzz_syslog */
        {"<13>Feb 29 17:32:18 h t: x", 8, 0},
    };
    int64_t now[] = {
        utc(2024, 6, 15, 12, 0, 0), utc(2024, 1, 2, 8, 0, 0),   utc(2023, 12, 31, 23, 0, 0),
        utc(2024, 6, 15, 12, 0, 0), utc(2024, 6, 15, 12, 0, 0), utc(2025, 3, 1, 0, 0, 0),
        utc(2024, 6, 15, 12, 0, 0), utc(2022, 6, 1, 0, 0, 0),   INT64_MIN};
    int64_t want[] = {
        utc(2024, 6, 15, 10, 0, 0),   utc(2023, 12, 31, 23, 59, 59), utc(2024, 1, 1, 0, 0, 1),
        utc(2023, 7, 20, 0, 0, 0),    utc(2024, 7, 10, 0, 0, 0),     utc(2024, 2, 29, 0, 0, 0),
        utc(2007, 4, 15, 21, 28, 13), utc(2020, 2, 29, 17, 32, 18),  utc(8, 2, 29, 17, 32, 18)};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct parsed r;

        parse(&r, cases[i].in, strlen(cases[i].in), now[cases[i].now]);
        assert_int_equal(r.rc, AGG_OK);
        if (r.m.ts_us != want[i])
            fail_msg("\"%s\": %lld, want %lld", cases[i].in, (long long)r.m.ts_us,
                     (long long)want[i]);
        parsed_free(&r);
    }
}

static void test_syslog_parse_3164_reads_zone_less_times_in_the_configured_zone(void **state)
{
    static const struct {
        const char *in;
        int64_t want;
    } cases[] = {
        /* CEST in summer, CET in winter: the offset of that date, not of today */
        {"<13>Jul  1 12:00:00 h t: x", 0},
        {"<13>Jan 15 12:00:00 h t: x", 1},
        {"<13>Jul  1 2019 12:00:00 h t: x", 2},
        {"<13>2024-07-01T12:00:00 h t: x", 0},
        {"<13>2024-07-01 12:00:00.25 h t: x", 3},
        /* an offset written in the message wins */
        {"<13>2024-07-01T12:00:00Z h t: x", 4},
        {"<13>2024-07-01T12:00:00+05:30 h t: x", 5},
        /* the hour skipped on 2024-03-31 and the hour repeated on 2024-10-27 */
        {"<13>Mar 31 02:30:00 h t: x", 6},
        {"<13>Oct 27 2024 02:30:00 h t: x", 7},
    };
    const int64_t want[] = {
        utc(2024, 7, 1, 10, 0, 0),           utc(2024, 1, 15, 11, 0, 0),
        utc(2019, 7, 1, 10, 0, 0),           utc(2024, 7, 1, 10, 0, 0) + 250000,
        utc(2024, 7, 1, 12, 0, 0),           utc(2024, 7, 1, 6, 30, 0),
        utc(2024, 3, 31, 1, 30, 0),          utc(2024, 10, 27, 0, 30, 0),
    };
    struct agg_err err = {0};
    struct agg_tz *berlin;
    struct parsed r;

    (void)state;
    if (access(AGG_TZ_DIR "/Europe/Berlin", R_OK) != 0)
        skip();
    berlin = agg_tz_load("Europe/Berlin", &err);
    assert_non_null(berlin);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parse_in(&r, cases[i].in, strlen(cases[i].in), NOW_US, berlin);
        assert_int_equal(r.rc, AGG_OK);
        if (r.m.ts_us != want[cases[i].want])
            fail_msg("\"%s\": %lld, want %lld", cases[i].in, (long long)r.m.ts_us,
                     (long long)want[cases[i].want]);
        parsed_free(&r);
    }
    /* RFC 5424 always has an offset: the zone does not apply */
    parse_in(&r, "<13>1 2024-07-01T12:00:00Z h a - - - x", 39, NOW_US, berlin);
    assert_int_equal(r.m.ts_us, utc(2024, 7, 1, 12, 0, 0));
    parsed_free(&r);
    /* the year is the one nearest to the sender's wall clock: at 23:30 UTC on Dec 31 it
     * is already Jan 1 in Berlin, so "Jan  1 00:10:00" is of the new year there */
    parse_in(&r, "<13>Jan  1 00:10:00 h t: x", 26, utc(2023, 12, 31, 23, 30, 0), berlin);
    assert_int_equal(r.m.ts_us, utc(2023, 12, 31, 23, 10, 0));
    parsed_free(&r);
    /* receive times at the limits do not overflow */
    parse_in(&r, "<13>Feb 29 17:32:18 h t: x", 26, INT64_MIN, berlin);
    assert_int_equal(r.rc, AGG_OK);
    parsed_free(&r);
    parse_in(&r, "<13>Dec 31 23:59:59 h t: x", 26, INT64_MAX, berlin);
    assert_int_equal(r.rc, AGG_OK);
    parsed_free(&r);
    agg_tz_free(berlin);
}

static void test_syslog_parse_3164_takes_rsyslogs_colon_less_tag_in_its_header_shape(void **state)
{
    static const struct {
        const char *in, *host, *tag, *procid, *msg;
    } cases[] = {
        /* rsyslog's traditional forwarding of RFC 5424 messages */
        {"<14>Dec  3 10:00:00 web01 myapp hello world", "web01", "myapp", NULL, "hello world"},
        {"<14>Dec  3 10:00:00 web01 myapp[123] hello world", "web01", "myapp", "123",
         "hello world"},
        {"<14>Dec 13 10:00:00 10.1.2.3 my-svc.worker_2 {\"a\":1}", "10.1.2.3",
         "my-svc.worker_2", NULL, "{\"a\":1}"},
        /* not that shape: the text stays the message */
        {"<34>Jan  1 00:00:00 host just a message", "host", NULL, NULL, "just a message"},
        {"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!", "10.0.0.99", NULL, NULL, "Use the BFG!"},
        {"<14>Dec  3 10:00:00 Web01 myapp hello", "Web01", NULL, NULL, "myapp hello"},
        {"<14>Dec  3 10:00:00  web01 myapp hello", NULL, NULL, NULL, " web01 myapp hello"},
        {"<14>Dec  3 10:00:00 web01  myapp hello", "web01", NULL, NULL, " myapp hello"},
        {"<14>Dec  3 10:00:00 web01 myapp", "web01", NULL, NULL, "myapp"},
        {"<14>Dec  3 10:00:00.5 web01 myapp hello", "web01", NULL, NULL, "myapp hello"},
        {"<14>Dec  3 2026 10:00:00 web01 myapp hello", "web01", NULL, NULL, "myapp hello"},
        {"<14>DEC  3 10:00:00 web01 myapp hello", "web01", NULL, NULL, "myapp hello"},
        {"<14> Dec  3 10:00:00 web01 myapp hello", "web01", NULL, NULL, "myapp hello"},
        {"Dec  3 10:00:00 web01 myapp hello", "web01", NULL, NULL, "myapp hello"},
        {"<14>Dec  3 10:00:00 web01 abcdefghijklmnopqrstuvwxyz0123456 hello", "web01", NULL,
         NULL, "abcdefghijklmnopqrstuvwxyz0123456 hello"},
        {"<14>Dec  3 10:00:00 2007 myapp hello", "2007", NULL, NULL, "myapp hello"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct parsed r;

        parse_str(&r, cases[i].in);
        assert_int_equal(r.rc, AGG_OK);
        if ((cases[i].host == NULL ? r.m.hostname.p != NULL
                                   : !str_is(r.m.hostname, cases[i].host)) ||
            (cases[i].tag == NULL ? r.m.app_name.p != NULL : !str_is(r.m.app_name, cases[i].tag)) ||
            (cases[i].procid == NULL ? r.m.procid.p != NULL
                                     : !str_is(r.m.procid, cases[i].procid)) ||
            !str_is(r.m.msg, cases[i].msg))
            fail_msg("\"%s\": host \"%.*s\" tag \"%.*s\" msg \"%.*s\"", cases[i].in,
                     (int)r.m.hostname.len, r.m.hostname.p ? r.m.hostname.p : "",
                     (int)r.m.app_name.len, r.m.app_name.p ? r.m.app_name.p : "",
                     (int)r.m.msg.len, r.m.msg.p ? r.m.msg.p : "");
        parsed_free(&r);
    }
}

static void test_syslog_parse_3164_reads_cisco_ios_header(void **state)
{
    struct parsed r;

    (void)state;
    parse_str(&r, "<189>269614: 000104: core1: *Apr 11 10:02:08.123: %LINK-3-UPDOWN: down");
    assert_int_equal(r.rc, AGG_OK);
    assert_int_equal(r.m.format, ING_SYSLOG_RFC3164);
    assert_int_equal(r.m.msgcount, 269614);
    assert_int_equal(r.m.sequence, 104);
    assert_true(str_is(r.m.hostname, "core1"));
    assert_int_equal(r.m.clock_flag, '*');
    assert_true(str_is(r.m.timestamp, "Apr 11 10:02:08.123"));
    assert_int_equal(r.m.ts_us, utc(2024, 4, 11, 10, 2, 8) + 123000);
    assert_true(str_is(r.m.app_name, "%LINK-3-UPDOWN"));
    assert_true(str_is(r.m.msg, "down"));
    parsed_free(&r);
}

static void test_syslog_parse_3164_without_pri_assumes_13(void **state)
{
    struct parsed r;

    (void)state;
    parse_str(&r, "Oct 11 22:14:15 mymachine su[7]: hi");
    assert_int_equal(r.rc, AGG_OK);
    assert_true(r.m.pri_assumed);
    assert_int_equal(r.m.pri, 13);
    assert_int_equal(r.m.facility, 1);
    assert_int_equal(r.m.severity, 5);
    assert_true(str_is(r.m.procid, "7"));
    parsed_free(&r);
    /* a broken or out-of-range PRI: the whole packet is MSG */
    parse_str(&r, "<192>Jan  1 00:00:00 h m: msg");
    assert_int_equal(r.rc, AGG_OK);
    assert_true(r.m.pri_assumed);
    assert_true(str_is(r.m.msg, "<192>Jan  1 00:00:00 h m: msg"));
    assert_null(r.m.timestamp.p);
    parsed_free(&r);
}

static void test_syslog_parse_never_reads_past_truncated_input(void **state)
{
    static const char *const inputs[] = {
        "<189>269614: 000104: core1: *Apr 11 10:02:08.123: %LINK-3-UPDOWN: down",
        ("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
         "[exampleSDID@32473 iut=\"3\" eventSource=\"App\\]\" eventID=\"1011\"][x@1 a=\"\"] m"),
        "<190>2018-06-19T02:13:38.635322Z+00:00 super mon[1] message",
        "<13> Aug 16 12:25:24 10.12.255.2-1 TRAPMGR[53034492]: x",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        for (size_t n = 0; n <= strlen(inputs[i]); n++) {
            struct parsed r;

            parse(&r, inputs[i], n, NOW_US);
            parsed_free(&r);
        }
    }
}

/* ---- record mapping ----------------------------------------------------------- */

struct mapped {
    struct parsed r;
    struct agg_buf scratch;
    struct agg_record rec;
    struct agg_err err;
    int rc;
    yajl_val json;
};

static void map(struct mapped *x, const char *in)
{
    memset(x, 0, sizeof(*x));
    agg_buf_init(&x->scratch);
    parse_str(&x->r, in);
    assert_int_equal(x->r.rc, AGG_OK);
    x->rc = ing_syslog_to_record(&x->r.m, &x->scratch, &x->rec, &x->err);
    if (x->rc == AGG_OK) {
        char *text = strndup(x->rec.extra.p, x->rec.extra.len), errbuf[200];

        assert_non_null(text);
        assert_true(agg_utf8_is_clean(x->rec.extra.p, x->rec.extra.len));
        x->json = yajl_tree_parse(text, errbuf, sizeof(errbuf));
        if (x->json == NULL)
            fail_msg("extra_data is not JSON: %s: %s", errbuf, text);
        free(text);
    }
}

static bool extra_is(const struct mapped *x, const char *want)
{
    if (x->rec.extra.len == strlen(want) && memcmp(x->rec.extra.p, want, x->rec.extra.len) == 0)
        return true;
    print_message("extra_data %.*s\n    expected %s\n", (int)x->rec.extra.len, x->rec.extra.p,
                  want);
    return false;
}

static void mapped_free(struct mapped *x)
{
    yajl_tree_free(x->json);
    agg_buf_clear(&x->scratch);
    parsed_free(&x->r);
}

static yajl_val jpath(yajl_val v, const char *a, const char *b, const char *c)
{
    const char *path[] = {a, b, c, NULL};

    return yajl_tree_get(v, path, yajl_t_any);
}

static void test_syslog_to_record_maps_severity_to_level(void **state)
{
    static const enum agg_level want[8] = {
        AGG_LEVEL_CRITICAL, AGG_LEVEL_CRITICAL, AGG_LEVEL_CRITICAL, AGG_LEVEL_ERROR,
        AGG_LEVEL_WARNING,  AGG_LEVEL_INFO,     AGG_LEVEL_INFO,     AGG_LEVEL_DEBUG,
    };

    (void)state;
    for (int sev = 0; sev < 8; sev++) {
        struct mapped x;
        char in[64];

        snprintf(in, sizeof(in), "<%d>1 - - - - - - m", 8 * 3 + sev);
        map(&x, in);
        assert_int_equal(x.rc, AGG_OK);
        assert_true(x.rec.has_level);
        assert_int_equal(x.rec.level, want[sev]);
        assert_int_equal(YAJL_GET_INTEGER(jpath(x.json, "syslog", "severity", NULL)), sev);
        assert_int_equal(YAJL_GET_INTEGER(jpath(x.json, "syslog", "facility", NULL)), 3);
        mapped_free(&x);
    }
}

static void test_syslog_to_record_sets_created_at_in_utc(void **state)
{
    struct mapped x;

    (void)state;
    map(&x, "<34>1 2024-02-29T23:30:00.5+05:30 h a - - - m");
    assert_int_equal(x.rc, AGG_OK);
    assert_int_equal(x.rec.created_us, utc(2024, 2, 29, 18, 0, 0) + 500000);
    mapped_free(&x);
    map(&x, "<34>1 - h a - - - m");
    assert_int_equal(x.rec.created_us, AGG_TIME_NONE);
    mapped_free(&x);
}

static void test_syslog_to_record_writes_extra_data_json(void **state)
{
    struct mapped x;
    yajl_val sd;

    (void)state;
    map(&x, "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 42 ID47 "
            "[exampleSDID@32473 iut=\"3\" eventSource=\"App\\\"lication\"][pri@32473 "
            "class=\"high\"] An application event");
    assert_int_equal(x.rc, AGG_OK);
    assert_true(str_is(x.rec.str[AGG_F_LOGGER_NAME], "evntslog"));
    assert_true(str_is(x.rec.str[AGG_F_MESSAGE], "An application event"));
    assert_int_equal(x.rec.raw.len, x.r.len);
    assert_ptr_equal(x.rec.raw.p, x.r.p);
    assert_string_equal(YAJL_GET_STRING(jpath(x.json, "syslog", "hostname", NULL)),
                        "mymachine.example.com");
    assert_int_equal(YAJL_GET_INTEGER(jpath(x.json, "syslog", "facility", NULL)), 20);
    assert_int_equal(YAJL_GET_INTEGER(jpath(x.json, "syslog", "severity", NULL)), 5);
    assert_string_equal(YAJL_GET_STRING(jpath(x.json, "syslog", "procid", NULL)), "42");
    assert_string_equal(YAJL_GET_STRING(jpath(x.json, "syslog", "msgid", NULL)), "ID47");
    assert_null(jpath(x.json, "syslog", "version", NULL));
    sd = jpath(x.json, "sd", NULL, NULL);
    assert_non_null(sd);
    assert_int_equal(YAJL_GET_OBJECT(sd)->len, 2);
    assert_string_equal(YAJL_GET_STRING(jpath(sd, "exampleSDID@32473", "iut", NULL)), "3");
    assert_string_equal(YAJL_GET_STRING(jpath(sd, "exampleSDID@32473", "eventSource", NULL)),
                        "App\"lication");
    assert_string_equal(YAJL_GET_STRING(jpath(sd, "pri@32473", "class", NULL)), "high");
    mapped_free(&x);
}

static void test_syslog_to_record_omits_nil_fields(void **state)
{
    struct mapped x;

    (void)state;
    map(&x, "<14>1 - - - - - -");
    assert_int_equal(x.rc, AGG_OK);
    assert_null(x.rec.str[AGG_F_LOGGER_NAME].p);
    assert_non_null(x.rec.str[AGG_F_MESSAGE].p); /* message is NOT NULL: "" */
    assert_int_equal(x.rec.str[AGG_F_MESSAGE].len, 0);
    assert_int_equal(YAJL_GET_OBJECT(x.json)->len, 1); /* no "sd" */
    assert_int_equal(YAJL_GET_OBJECT(jpath(x.json, "syslog", NULL, NULL))->len, 2);
    mapped_free(&x);
}

static void test_syslog_to_record_adds_3164_extras(void **state)
{
    struct mapped x;

    (void)state;
    map(&x, "<189>643: *Jan  8 19:46:03.295: %LINEPROTO-5-UPDOWN: Line protocol up");
    assert_int_equal(x.rc, AGG_OK);
    assert_true(str_is(x.rec.str[AGG_F_LOGGER_NAME], "%LINEPROTO-5-UPDOWN"));
    assert_int_equal(YAJL_GET_INTEGER(jpath(x.json, "syslog", "msgcount", NULL)), 643);
    assert_true(YAJL_IS_FALSE(jpath(x.json, "syslog", "clock_synced", NULL)));
    assert_null(jpath(x.json, "syslog", "hostname", NULL));
    mapped_free(&x);
    map(&x, "plain text");
    assert_true(YAJL_IS_TRUE(jpath(x.json, "syslog", "pri_assumed", NULL)));
    assert_true(str_is(x.rec.str[AGG_F_MESSAGE], "plain text"));
    mapped_free(&x);
}

static void test_syslog_to_record_fills_columns_from_sd_params(void **state)
{
    struct mapped x;

    (void)state;
    map(&x, "<11>1 - h app - - [req@1 correlation_id=\"c-\\]1\" request_id=\"r1\" "
            "duration_ms=\"12.4\" user_id=\"7\" other=\"x\"][m@1 request_path=\"/a\"] boom");
    assert_int_equal(x.rc, AGG_OK);
    assert_true(str_is(x.rec.str[AGG_F_CORRELATION_ID], "c-]1"));
    assert_true(str_is(x.rec.str[AGG_F_REQUEST_ID], "r1"));
    assert_true(str_is(x.rec.str[AGG_F_REQUEST_PATH], "/a"));
    assert_true(x.rec.has_duration_ms);
    assert_int_equal(x.rec.duration_ms, 12);
    assert_true(x.rec.has_user_id);
    assert_int_equal(x.rec.user_id, 7);
    assert_int_equal(x.rec.level, AGG_LEVEL_ERROR);
    /* a param its column gives back is not repeated in sd; 12.4 is not what the
     * column holds (12), so it stays; sd_order rebuilds the order */
    assert_true(extra_is(&x, "{\"syslog\":{\"hostname\":\"h\",\"facility\":1,\"severity\":3},"
                             "\"sd\":{\"req@1\":{\"duration_ms\":\"12.4\",\"other\":\"x\"}},"
                             "\"sd_order\":\"0=ef0n1 [m@1=h\"}"));
    mapped_free(&x);
}

static void test_syslog_to_record_keeps_in_sd_what_the_column_cannot_give_back(void **state)
{
    struct mapped x;

    (void)state;
    /* not as PostgreSQL prints the column: +7, 07, 7.0, 1e3, 2.50, 0.00001; over the
     * VARCHAR limit; invalid UTF-8; a level that is not its name; created_at */
    map(&x, "<14>1 - h a - - [a@1 line_number=\"07\" duration_ms=\"7.0\" user_id=\"+7\" "
            "memory_usage_mb=\"2.50\" level=\"error\" request_method=\"OPTIONSXYZW\" "
            "module=\"m\xff\" created_at=\"2024-01-02T03:04:05Z\"] m");
    assert_int_equal(x.rc, AGG_OK);
    assert_int_equal(x.rec.line_number, 7);
    assert_int_equal(YAJL_GET_OBJECT(jpath(x.json, "sd", "a@1", NULL))->len, 8);
    assert_true(YAJL_IS_STRING(jpath(x.json, "sd_order", NULL, NULL)));
    mapped_free(&x);
    /* as PostgreSQL prints them: left out */
    map(&x, "<14>1 - h a - - [a@1 line_number=\"-7\" duration_ms=\"0\" user_id=\"u-1\" "
            "memory_usage_mb=\"0.0001\" level=\"ERROR\" request_method=\"OPTIONSXYZ\" "
            "module=\"\xc3\xa9\" exception_message=\"\"] m");
    assert_int_equal(x.rc, AGG_OK);
    assert_true(extra_is(&x, "{\"syslog\":{\"hostname\":\"h\",\"facility\":1,\"severity\":6},"
                             "\"sd_order\":\"[a@1=monpqgck\"}"));
    mapped_free(&x);
    map(&x, "<14>1 - h a - - [a@1 memory_usage_mb=\"1000000000000000\"] m");
    assert_non_null(jpath(x.json, "sd", "a@1", "memory_usage_mb"));
    mapped_free(&x);
    map(&x, "<14>1 - h a - - [a@1 memory_usage_mb=\"99999999999999.5\"] m");
    assert_null(jpath(x.json, "sd", NULL, NULL));
    mapped_free(&x);
}

static void test_syslog_to_record_keeps_repeated_params_and_their_order(void **state)
{
    struct mapped x;

    (void)state;
    /* the last request_id fills the column; the others stay, as an array in order */
    map(&x, "<14>1 - h a - - [b@1 z=\"1\" request_id=\"r1\" z=\"2\"][a@1 request_id=\"r2\" "
            "request_id=\"r3\"] m");
    assert_int_equal(x.rc, AGG_OK);
    assert_true(str_is(x.rec.str[AGG_F_REQUEST_ID], "r3"));
    assert_true(extra_is(&x, "{\"syslog\":{\"hostname\":\"h\",\"facility\":1,\"severity\":6},"
                             "\"sd\":{\"b@1\":{\"request_id\":\"r1\",\"z\":[\"1\",\"2\"]},"
                             "\"a@1\":{\"request_id\":\"r2\"}},"
                             "\"sd_order\":\"1=101 0=0f\"}"));
    mapped_free(&x);
    /* in SD-ID and name order, nothing in a column: no sd_order */
    map(&x, "<14>1 - h a - - [a@1 x=\"1\" y=\"2\"][b@1][c@1 x=\"3\"] m");
    assert_null(jpath(x.json, "sd_order", NULL, NULL));
    assert_int_equal(YAJL_GET_OBJECT(jpath(x.json, "sd", "b@1", NULL))->len, 0);
    mapped_free(&x);
    map(&x, "<14>1 - h a - - [b@1 x=\"1\"][a@1 x=\"3\"] m");
    assert_string_equal(YAJL_GET_STRING(jpath(x.json, "sd_order", NULL, NULL)), "1=0 0=0");
    mapped_free(&x);
}

/* The example of docs/json-mapping.md, "Syslog structured data stored once". */
static void test_syslog_to_record_stores_the_documented_example(void **state)
{
    struct mapped x;

    (void)state;
    map(&x, "<14>1 2026-12-03T10:00:00Z web01 api 42 - [req@32473 correlation_id=\"c-9\" "
            "request_id=\"r-1\" duration_ms=\"12\"][meta@32473 tenant=\"acme\" env=\"prod\" "
            "tag=\"a\" tag=\"b\"] done");
    assert_int_equal(x.rc, AGG_OK);
    assert_true(extra_is(&x, "{\"syslog\":{\"hostname\":\"web01\",\"facility\":1,"
                             "\"severity\":6,\"procid\":\"42\"},\"sd\":{\"meta@32473\":{"
                             "\"env\":\"prod\",\"tag\":[\"a\",\"b\"],\"tenant\":\"acme\"}},"
                             "\"sd_order\":\"[req@32473=efo 0=2011\"}"));
    mapped_free(&x);
}

static void test_syslog_to_record_keeps_the_sd_whole_under_a_json_msg(void **state)
{
    struct mapped x;

    (void)state;
    /* the JSON may set the column over the param (src/listen.c) */
    map(&x, "<14>1 - h a - - [a@1 request_id=\"r1\"] {\"request_id\":\"j\"}");
    assert_int_equal(x.rc, AGG_OK);
    assert_string_equal(YAJL_GET_STRING(jpath(x.json, "sd", "a@1", "request_id")), "r1");
    assert_null(jpath(x.json, "sd_order", NULL, NULL));
    mapped_free(&x);
}

static void test_syslog_to_record_keeps_a_user_id_that_is_not_an_integer(void **state)
{
    struct mapped x;
    char *in = malloc(20000);
    int n;

    (void)state;
    /* a long param after it: the scratch buffer moves while the params are read */
    n = snprintf(in, 20000, "<14>1 - h app - - [u@1 user_id=\"u-\\]987\" stack_trace=\"");
    memset(in + n, 's', 16000);
    snprintf(in + n + 16000, 20000 - (size_t)n - 16000, "\"] paid");
    map(&x, in);
    assert_int_equal(x.rc, AGG_OK);
    assert_false(x.rec.has_user_id);
    assert_true(str_is(x.rec.user_id_orig, "u-]987"));
    assert_true(x.rec.user_id_orig_is_string);
    assert_int_equal(x.rec.str[AGG_F_STACK_TRACE].len, 16000);
    mapped_free(&x);
    free(in);
    map(&x, "<14>1 - h app - - [u@1 user_id=\"987654\"] paid");
    assert_true(x.rec.has_user_id);
    assert_int_equal(x.rec.user_id, 987654);
    assert_null(x.rec.user_id_orig.p);
    mapped_free(&x);
}

static void test_syslog_to_record_rejects_bad_column_value_naming_the_param(void **state)
{
    struct mapped x;

    (void)state;
    map(&x, "<11>1 - h app - - [t@1 duration_ms=\"fast\"] m");
    assert_int_equal(x.rc, AGG_EINVAL);
    assert_non_null(strstr(x.err.msg, "duration_ms"));
    assert_non_null(strstr(x.err.msg, "t@1"));
    mapped_free(&x);
}

static void test_syslog_to_record_strips_bom_from_message(void **state)
{
    struct mapped x;

    (void)state;
    map(&x, "<34>1 - h su - ID47 - \xEF\xBB\xBF'su root' failed");
    assert_int_equal(x.rc, AGG_OK);
    assert_true(str_is(x.rec.str[AGG_F_MESSAGE], "'su root' failed"));
    assert_true(str_is(x.r.m.msg, "\xEF\xBB\xBF'su root' failed"));
    mapped_free(&x);
}

static void test_syslog_to_record_drops_the_sp_rsyslog_puts_before_a_5424_msg(void **state)
{
    struct mapped x;

    (void)state;
    /* RSYSLOG_SyslogProtocol23Format of a message logged through the local socket */
    map(&x, "<13>1 2026-12-03T10:00:00.000000+00:00 web01 myapp - - -  hello world");
    assert_int_equal(x.rc, AGG_OK);
    assert_true(str_is(x.r.m.msg, " hello world")); /* the parse keeps it (RFC 5424) */
    assert_true(str_is(x.rec.str[AGG_F_MESSAGE], "hello world"));
    mapped_free(&x);
    /* only one SP: of the three, one separates and one is rsyslog's */
    map(&x, "<13>1 - h a - - [x@1 a=\"b\"]   indented");
    assert_true(str_is(x.rec.str[AGG_F_MESSAGE], " indented"));
    mapped_free(&x);
    /* RFC 3164 keeps what follows the SP after its TAG */
    map(&x, "<129>Mar 10 01:00:00 host tag:  msgnum:2");
    assert_true(str_is(x.rec.str[AGG_F_MESSAGE], " msgnum:2"));
    mapped_free(&x);
}

static void test_syslog_to_record_keeps_invalid_utf8_message_but_repairs_json(void **state)
{
    struct mapped x;
    struct agg_buf in;

    (void)state;
    agg_buf_init(&in);
    /* a NUL and invalid UTF-8 in an SD value, invalid UTF-8 in MSG */
    assert_int_equal(agg_buf_append(&in, "<13>1 - h a - - [x@1 v=\"a\0b\xff\"] m\xfe", 34), AGG_OK);
    memset(&x, 0, sizeof(x));
    agg_buf_init(&x.scratch);
    parse(&x.r, in.data, in.len, NOW_US);
    assert_int_equal(x.r.rc, AGG_OK);
    x.rc = ing_syslog_to_record(&x.r.m, &x.scratch, &x.rec, &x.err);
    assert_int_equal(x.rc, AGG_OK);
    assert_int_equal(x.rec.str[AGG_F_MESSAGE].len, 2);
    assert_memory_equal(x.rec.str[AGG_F_MESSAGE].p, "m\xfe", 2);
    assert_true(agg_utf8_is_clean(x.rec.extra.p, x.rec.extra.len));
    {
        char *text = strndup(x.rec.extra.p, x.rec.extra.len);

        x.json = yajl_tree_parse(text, NULL, 0);
        free(text);
    }
    assert_non_null(x.json);
    assert_string_equal(YAJL_GET_STRING(jpath(x.json, "sd", "x@1", "v")), "a\xEF\xBF\xBD"
                                                                          "b\xEF\xBF\xBD");
    mapped_free(&x);
    agg_buf_clear(&in);
}

/* ---- JSON in MSG -------------------------------------------------------------- */

/* What the listener does with one message: the record, then, when MSG is a JSON
 * object, that object decoded over it. */
struct json_msg {
    struct parsed r;
    struct agg_buf scratch, merged;
    struct agg_record rec; /* the syslog record */
    int rc;                /* ing_json_decode_over's, or -100 when MSG is no object */
    struct agg_err err;
    int emitted;
    struct agg_record out; /* what was emitted; strings copied into <copies> */
    char *copies[AGG_F_STR_COUNT + 2];
    yajl_val extra;
};

static char *copy_str(struct json_msg *x, int slot, struct agg_str *s)
{
    if (s->p == NULL)
        return NULL;
    x->copies[slot] = strndup(s->p, s->len);
    assert_non_null(x->copies[slot]);
    s->p = x->copies[slot];
    return x->copies[slot];
}

static int capture(void *arg, const struct agg_record *rec)
{
    struct json_msg *x = arg;
    char errbuf[200];

    x->emitted++;
    x->out = *rec;
    for (int f = 0; f < AGG_F_STR_COUNT; f++)
        copy_str(x, f, &x->out.str[f]);
    copy_str(x, AGG_F_STR_COUNT, &x->out.raw);
    if (copy_str(x, AGG_F_STR_COUNT + 1, &x->out.extra) != NULL) {
        x->extra = yajl_tree_parse(x->copies[AGG_F_STR_COUNT + 1], errbuf, sizeof(errbuf));
        if (x->extra == NULL)
            fail_msg("extra_data is not JSON: %s", x->copies[AGG_F_STR_COUNT + 1]);
    }
    return AGG_OK;
}

static void json_msg(struct json_msg *x, struct ing_json *j, const char *in)
{
    struct agg_sink sink = {capture, NULL, x};
    struct agg_str obj;

    memset(x, 0, sizeof(*x));
    agg_buf_init(&x->scratch);
    agg_buf_init(&x->merged);
    parse_str(&x->r, in);
    assert_int_equal(x->r.rc, AGG_OK);
    assert_int_equal(ing_syslog_to_record(&x->r.m, &x->scratch, &x->rec, &x->err), AGG_OK);
    x->rc = -100;
    if (ing_syslog_json_msg(x->rec.str[AGG_F_MESSAGE], &obj))
        x->rc = ing_json_decode_over(j, obj.p, obj.len, &x->rec, &x->merged, &sink, &x->err);
    assert_true(x->rc == AGG_OK ? x->emitted == 1 : x->emitted == 0);
}

static void json_msg_free(struct json_msg *x)
{
    for (size_t i = 0; i < sizeof(x->copies) / sizeof(x->copies[0]); i++)
        free(x->copies[i]);
    yajl_tree_free(x->extra);
    agg_buf_clear(&x->scratch);
    agg_buf_clear(&x->merged);
    parsed_free(&x->r);
}

static bool out_is(const struct json_msg *x, int f, const char *want)
{
    return want == NULL ? x->out.str[f].p == NULL : str_is(x->out.str[f], want);
}

static void test_syslog_json_msg_is_mapped_as_json_ingest_over_the_header(void **state)
{
    struct agg_err err = {0};
    struct ing_json *j = ing_json_new(65536, &err);
    struct json_msg x;

    (void)state;
    assert_non_null(j);
    /* pino-syslog: RFC 5424, the JSON's time and level win over the header's */
    json_msg(&x, j,
             "<134>1 2026-12-03T10:00:00.000Z host app 1234 - - {\"level\":50,\"time\":"
             "1764756000000,\"pid\":1234,\"hostname\":\"host\",\"msg\":\"hello\"}");
    assert_int_equal(x.rc, AGG_OK);
    assert_true(out_is(&x, AGG_F_MESSAGE, "hello"));
    assert_true(out_is(&x, AGG_F_LOGGER_NAME, "app")); /* APP-NAME: the JSON has none */
    assert_int_equal(x.out.level, AGG_LEVEL_ERROR);
    assert_int_equal(x.out.created_us, utc(2025, 12, 3, 10, 0, 0));
    assert_int_equal(YAJL_GET_INTEGER(jpath(x.extra, "pid", NULL, NULL)), 1234);
    assert_string_equal(YAJL_GET_STRING(jpath(x.extra, "hostname", NULL, NULL)), "host");
    assert_string_equal(YAJL_GET_STRING(jpath(x.extra, "syslog", "hostname", NULL)), "host");
    assert_int_equal(YAJL_GET_INTEGER(jpath(x.extra, "syslog", "facility", NULL)), 16);
    assert_string_equal(YAJL_GET_STRING(jpath(x.extra, "syslog", "procid", NULL)), "1234");
    /* raw: the whole syslog message */
    assert_int_equal(x.out.raw.len, x.r.len);
    assert_memory_equal(x.out.raw.p, x.r.p, x.r.len);
    json_msg_free(&x);

    /* nginx escape=json: RFC 3164, no message, time or level in the JSON */
    json_msg(&x, j,
             "<190>Dec  3 10:00:00 web nginx: {\"remote_addr\":\"1.2.3.4\",\"request\":"
             "\"GET / HTTP/1.1\",\"status\":200}");
    assert_int_equal(x.rc, AGG_OK);
    assert_true(out_is(&x, AGG_F_MESSAGE, ""));
    assert_true(out_is(&x, AGG_F_LOGGER_NAME, "nginx"));
    assert_int_equal(x.out.level, AGG_LEVEL_INFO); /* PRI 190: local7.info */
    assert_true(x.out.has_level);
    assert_int_equal(x.out.created_us, x.r.m.ts_us);
    assert_int_equal(YAJL_GET_INTEGER(jpath(x.extra, "status", NULL, NULL)), 200);
    assert_string_equal(YAJL_GET_STRING(jpath(x.extra, "remote_addr", NULL, NULL)), "1.2.3.4");
    assert_string_equal(YAJL_GET_STRING(jpath(x.extra, "syslog", "hostname", NULL)), "web");
    json_msg_free(&x);

    /* columns, aliases and SD params: JSON first, then the syslog values */
    json_msg(&x, j,
             "<11>1 2026-12-03T10:00:00Z h app - - [x@1 request_id=\"sd-req\" module=\"sd\"] "
             "\xEF\xBB\xBF@cee: {\"message\":\"m\",\"logger_name\":\"json.logger\","
             "\"module\":\"json\",\"severity\":\"warning\",\"syslog\":\"mine\"} ");
    assert_int_equal(x.rc, AGG_OK);
    assert_true(out_is(&x, AGG_F_MESSAGE, "m"));
    assert_true(out_is(&x, AGG_F_LOGGER_NAME, "json.logger"));
    assert_true(out_is(&x, AGG_F_MODULE, "json"));
    assert_true(out_is(&x, AGG_F_REQUEST_ID, "sd-req"));
    assert_int_equal(x.out.level, AGG_LEVEL_WARNING);
    assert_string_equal(YAJL_GET_STRING(jpath(x.extra, "sd", "x@1", "request_id")), "sd-req");
    /* a JSON member named like the syslog key: the header's wins (jsonb keeps the last) */
    assert_true(strstr(x.copies[AGG_F_STR_COUNT + 1], "\"syslog\":\"mine\"") != NULL);
    assert_true(strstr(x.copies[AGG_F_STR_COUNT + 1], "\"syslog\":\"mine\"") <
                strstr(x.copies[AGG_F_STR_COUNT + 1], "\"syslog\":{"));
    json_msg_free(&x);

    ing_json_free(j);
}

static void test_syslog_json_msg_that_is_not_an_object_stays_text(void **state)
{
    static const char *const texts[] = {
        "<14>Dec  3 10:00:00 web app: {not json}",
        "<14>Dec  3 10:00:00 web app: {\"a\":1} trailing",
        "<14>Dec  3 10:00:00 web app: {\"a\":1}{\"b\":2}",
        "<14>Dec  3 10:00:00 web app: {\"line_number\":\"abc\"}", /* a type the column refuses */
        "<14>Dec  3 10:00:00 web app: {\"a\":\"\xff\"}",      /* invalid UTF-8 */
        "<14>1 - h app - - - {\"a\":",
        "<14>1 - h app - - - [1,2]",
        "<14>1 - h app - - - \"string\"",
        "<14>1 - h app - - - 42",
        "<14>1 - h app - - - {}x",
        "<14>1 - h app - - - @cee:",
    };
    struct agg_err err = {0};
    struct ing_json *j = ing_json_new(65536, &err);
    struct json_msg x;

    (void)state;
    assert_non_null(j);
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        json_msg(&x, j, texts[i]);
        if (x.rc == AGG_OK)
            fail_msg("\"%s\" was decoded as JSON", texts[i]);
        assert_true(x.rc == -100 || x.rc == AGG_EINVAL);
        assert_true(x.rc == -100 || strlen(x.err.msg) > 0);
        json_msg_free(&x);
    }
    /* the decoder is fine afterwards */
    json_msg(&x, j, "<14>1 - h app - - - {}");
    assert_int_equal(x.rc, AGG_OK);
    assert_true(out_is(&x, AGG_F_MESSAGE, ""));
    assert_non_null(jpath(x.extra, "syslog", "facility", NULL));
    json_msg_free(&x);
    assert_true(ing_json_check(j));
    ing_json_free(j);
}

static void test_syslog_json_msg_finds_the_object(void **state)
{
    struct agg_str obj;

    (void)state;
    assert_true(ing_syslog_json_msg((struct agg_str){"@cee:{\"a\":1}\r\n", 14}, &obj));
    assert_true(str_is(obj, "{\"a\":1}"));
    assert_true(ing_syslog_json_msg((struct agg_str){" \t{} ", 5}, &obj));
    assert_true(str_is(obj, "{}"));
    assert_false(ing_syslog_json_msg((struct agg_str){"{", 1}, &obj));
    assert_false(ing_syslog_json_msg((struct agg_str){"x {}", 4}, &obj));
    assert_false(ing_syslog_json_msg((struct agg_str){NULL, 0}, &obj));
    assert_false(ing_syslog_json_msg((struct agg_str){"@cee", 4}, &obj));
}

static void test_syslog_to_record_survives_allocation_failures(void **state)
{
    struct parsed r;
    long n;

    (void)state;
    parse_str(&r, "<11>1 - h app - - [req@1 correlation_id=\"c1\" other=\"\\\"x\xff\"] boom");
    assert_int_equal(r.rc, AGG_OK);
    for (n = 0;; n++) {
        struct agg_buf scratch;
        struct agg_record rec;
        struct agg_err err = {0};
        int rc;

        agg_buf_init(&scratch);
        agg_alloc_fail_after(n);
        rc = ing_syslog_to_record(&r.m, &scratch, &rec, &err);
        agg_alloc_fail_after(-1);
        agg_buf_clear(&scratch);
        if (rc == AGG_OK)
            break;
        assert_int_equal(rc, AGG_ENOMEM);
        assert_true(n < 100);
    }
    assert_true(n > 0);
    parsed_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syslog_rfc5424_conformance_vectors),
        cmocka_unit_test(test_syslog_rfc3164_conformance_vectors),
        cmocka_unit_test(test_syslog_parse_rejects_empty_input),
        cmocka_unit_test(test_syslog_parse_5424_error_names_field_and_offset),
        cmocka_unit_test(test_syslog_parse_5424_converts_offsets_to_utc),
        cmocka_unit_test(test_syslog_parse_5424_refuses_a_leap_second),
        cmocka_unit_test(test_syslog_parse_3164_reads_a_leap_second_as_json_does),
        cmocka_unit_test(test_syslog_parse_5424_keeps_sp_after_separator_and_bom),
        cmocka_unit_test(test_syslog_parse_drops_one_trailing_lf_cr_nul),
        cmocka_unit_test(test_syslog_parse_sd_iteration_unescapes_values),
        cmocka_unit_test(test_syslog_parse_sd_refuses_too_many_elements),
        cmocka_unit_test(test_syslog_parse_3164_dates_are_utc_and_roll_over_new_year),
        cmocka_unit_test(test_syslog_parse_3164_reads_zone_less_times_in_the_configured_zone),
        cmocka_unit_test(test_syslog_parse_3164_takes_rsyslogs_colon_less_tag_in_its_header_shape),
        cmocka_unit_test(test_syslog_parse_3164_reads_cisco_ios_header),
        cmocka_unit_test(test_syslog_parse_3164_without_pri_assumes_13),
        cmocka_unit_test(test_syslog_parse_never_reads_past_truncated_input),
        cmocka_unit_test(test_syslog_to_record_maps_severity_to_level),
        cmocka_unit_test(test_syslog_to_record_sets_created_at_in_utc),
        cmocka_unit_test(test_syslog_to_record_writes_extra_data_json),
        cmocka_unit_test(test_syslog_to_record_omits_nil_fields),
        cmocka_unit_test(test_syslog_to_record_adds_3164_extras),
        cmocka_unit_test(test_syslog_to_record_fills_columns_from_sd_params),
        cmocka_unit_test(test_syslog_to_record_keeps_a_user_id_that_is_not_an_integer),
        cmocka_unit_test(test_syslog_to_record_rejects_bad_column_value_naming_the_param),
        cmocka_unit_test(test_syslog_to_record_strips_bom_from_message),
        cmocka_unit_test(test_syslog_to_record_drops_the_sp_rsyslog_puts_before_a_5424_msg),
        cmocka_unit_test(test_syslog_to_record_keeps_invalid_utf8_message_but_repairs_json),
        cmocka_unit_test(test_syslog_to_record_keeps_in_sd_what_the_column_cannot_give_back),
        cmocka_unit_test(test_syslog_to_record_keeps_repeated_params_and_their_order),
        cmocka_unit_test(test_syslog_to_record_stores_the_documented_example),
        cmocka_unit_test(test_syslog_to_record_keeps_the_sd_whole_under_a_json_msg),
        cmocka_unit_test(test_syslog_to_record_survives_allocation_failures),
        cmocka_unit_test(test_syslog_json_msg_is_mapped_as_json_ingest_over_the_header),
        cmocka_unit_test(test_syslog_json_msg_that_is_not_an_object_stays_text),
        cmocka_unit_test(test_syslog_json_msg_finds_the_object),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
