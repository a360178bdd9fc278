/*
 * tests/test_ing_framing.c — RFC 6587 framing: every case of
 * tests/data/conformance/framing.jsonl fed in one piece, split at every byte offset,
 * byte by byte and under backpressure, plus resync and limits.
 *
 * Every feed gets an exact-size heap copy of the pending bytes, so ASan reports any
 * read past <len>.
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

#include "tests/support/conformance.h"

#include "ingest/framing.h"
#include "core/err.h"

/* ---- a driver that records what the framer does ----------------------------- */

struct event {
    int kind; /* -1: frame, else enum ing_framing_error */
    char *data;
    size_t len;
};

struct driver {
    struct ing_framer f;
    struct event ev[256];
    size_t nev;
    char *pending;
    size_t plen;
    int refuse_every; /* refuse every Nth frame with AGG_EFULL (0: never) */
    int calls;
    bool refused;
    size_t max_pending; /* most bytes ever left unconsumed */
};

static int on_frame(void *arg, const char *p, size_t len)
{
    struct driver *d = arg;
    struct event *e;

    assert_true(len > 0);
    if (d->refuse_every > 0 && ++d->calls % d->refuse_every == 0) {
        d->refused = true;
        return AGG_EFULL;
    }
    assert_true(d->nev < sizeof(d->ev) / sizeof(d->ev[0]));
    e = &d->ev[d->nev++];
    e->kind = -1;
    e->data = malloc(len);
    assert_non_null(e->data);
    memcpy(e->data, p, len);
    e->len = len;
    return AGG_OK;
}

static void on_error(void *arg, int kind, const char *why)
{
    struct driver *d = arg;
    struct event *e;

    assert_non_null(why);
    assert_true(strlen(why) > 0);
    assert_true(d->nev < sizeof(d->ev) / sizeof(d->ev[0]));
    e = &d->ev[d->nev++];
    e->kind = kind;
    e->data = strdup(why);
    e->len = strlen(why);
}

static void driver_init(struct driver *d, enum ing_framing_mode mode, size_t max)
{
    memset(d, 0, sizeof(*d));
    ing_framer_init(&d->f, mode, max);
}

static void driver_clear(struct driver *d)
{
    for (size_t i = 0; i < d->nev; i++)
        free(d->ev[i].data);
    free(d->pending);
    d->nev = 0;
    d->pending = NULL;
    d->plen = 0;
}

/* Runs feed (or finish) over the pending bytes plus <p>[<n>], as the TCP listener does
 * with its input buffer, re-feeding after every refusal. */
static void drive(struct driver *d, const char *p, size_t n, bool eof)
{
    const struct ing_frame_cb cb = {on_frame, on_error, d};
    char *buf = malloc(d->plen + n + 1);

    assert_non_null(buf);
    if (d->plen > 0)
        memcpy(buf, d->pending, d->plen);
    if (n > 0)
        memcpy(buf + d->plen, p, n);
    free(d->pending);
    d->pending = buf;
    d->plen += n;
    do {
        char *exact = malloc(d->plen > 0 ? d->plen : 1);
        size_t used;

        assert_non_null(exact);
        if (d->plen > 0)
            memcpy(exact, d->pending, d->plen);
        d->refused = false;
        used = eof ? ing_framer_finish(&d->f, exact, d->plen, &cb)
                   : ing_framer_feed(&d->f, exact, d->plen, &cb);
        free(exact);
        assert_true(used <= d->plen);
        memmove(d->pending, d->pending + used, d->plen - used);
        d->plen -= used;
    } while (d->refused);
    if (eof)
        assert_int_equal(d->plen, 0);
    if (d->plen > d->max_pending)
        d->max_pending = d->plen;
}

static bool same_events(const struct driver *a, const struct driver *b)
{
    if (a->nev != b->nev)
        return false;
    for (size_t i = 0; i < a->nev; i++) {
        if (a->ev[i].kind != b->ev[i].kind || a->ev[i].len != b->ev[i].len ||
            memcmp(a->ev[i].data, b->ev[i].data, a->ev[i].len) != 0)
            return false;
    }
    return true;
}

/* ---- the conformance cases --------------------------------------------------- */

struct vector {
    char id[64];
    enum ing_framing_mode mode;
    size_t max_frame;
    char *stream;
    size_t len;
    char *msg[64];
    size_t msg_len[64];
    size_t nmsg;
    bool error;
};

static void vector_load(yajl_val c, struct vector *v)
{
    const char *framing = YAJL_GET_STRING(conf_key(c, "framing"));
    yajl_val msgs = conf_key(c, "messages_crlf_normalised");
    yajl_val hex = conf_key(c, "messages_hex");
    yajl_val skip = conf_key(c, "empty_frames_may_be_skipped");
    yajl_val max = conf_key(c, "max_frame");

    memset(v, 0, sizeof(*v));
    snprintf(v->id, sizeof(v->id), "%s", YAJL_GET_STRING(conf_key(c, "id")));
    v->mode = strcmp(framing, "octet-counting") == 0 ? ING_FRAMING_OCTET
              : strcmp(framing, "lf") == 0           ? ING_FRAMING_LF
              : strcmp(framing, "nul") == 0          ? ING_FRAMING_NUL
                                                     : ING_FRAMING_AUTO;
    v->max_frame = max != NULL && YAJL_IS_INTEGER(max) ? (size_t)YAJL_GET_INTEGER(max) : 0;
    if (conf_key(c, "stream_hex") != NULL)
        v->stream = conf_unhex(YAJL_GET_STRING(conf_key(c, "stream_hex")), &v->len);
    else
        v->stream = conf_str(conf_key(c, "stream"), &v->len);
    /* our LF framing strips one trailing CR: compare with the normalised frames */
    if (msgs == NULL)
        msgs = conf_key(c, "messages");
    for (size_t i = 0; i < YAJL_GET_ARRAY(msgs)->len; i++) {
        yajl_val h = hex != NULL && YAJL_IS_ARRAY(hex) ? YAJL_GET_ARRAY(hex)->values[i] : NULL;
        size_t n;
        char *m = h != NULL && YAJL_IS_STRING(h) ? conf_unhex(YAJL_GET_STRING(h), &n)
                                                 : conf_str(YAJL_GET_ARRAY(msgs)->values[i], &n);

        if (n == 0 && skip != NULL && YAJL_IS_TRUE(skip)) {
            free(m); /* empty frames are skipped */
            continue;
        }
        assert_true(v->nmsg < 64);
        v->msg[v->nmsg] = m;
        v->msg_len[v->nmsg++] = n;
    }
    v->error = !YAJL_IS_NULL(conf_key(c, "error"));
}

static void vector_clear(struct vector *v)
{
    free(v->stream);
    for (size_t i = 0; i < v->nmsg; i++)
        free(v->msg[i]);
}

/* Whether what <d> recorded agrees with <v>: the frames before the first error are
 * <v>'s messages, and there is an error exactly when <v> has one. Frames after the
 * error (our resync) are allowed: README "either close the connection or resync". */
static bool matches(const struct vector *v, const struct driver *d, char *why, size_t whylen)
{
    size_t nframes = 0, nerr = 0;

    for (size_t i = 0; i < d->nev; i++) {
        if (d->ev[i].kind >= 0) {
            nerr++;
            continue;
        }
        if (nerr > 0)
            continue;
        if (nframes >= v->nmsg) {
            snprintf(why, whylen, "extra frame %zu \"%.*s\"", nframes, (int)d->ev[i].len,
                     d->ev[i].data);
            return false;
        }
        if (d->ev[i].len != v->msg_len[nframes] ||
            memcmp(d->ev[i].data, v->msg[nframes], v->msg_len[nframes]) != 0) {
            snprintf(why, whylen, "frame %zu is \"%.*s\"", nframes, (int)d->ev[i].len,
                     d->ev[i].data);
            return false;
        }
        nframes++;
    }
    if (nframes != v->nmsg) {
        snprintf(why, whylen, "%zu frames before any error, want %zu", nframes, v->nmsg);
        return false;
    }
    if ((nerr > 0) != v->error) {
        snprintf(why, whylen, "%zu errors reported, want %s", nerr, v->error ? "some" : "none");
        return false;
    }
    return true;
}

struct tally {
    int cases, passed, splits, resynced;
};

static void one_shot(const struct vector *v, struct driver *d, enum ing_framing_mode mode)
{
    driver_init(d, mode, v->max_frame);
    drive(d, v->stream, v->len, false);
    drive(d, NULL, 0, true);
}

static void check_case(yajl_val c, void *arg)
{
    struct tally *t = arg;
    struct vector v;
    struct driver ref, d;
    char why[256];
    bool after_error = false;

    vector_load(c, &v);
    t->cases++;
    one_shot(&v, &ref, v.mode);
    if (!matches(&v, &ref, why, sizeof(why)))
        fail_msg("framing %s: %s", v.id, why);
    t->passed++;
    for (size_t i = 0; i < ref.nev; i++) {
        after_error = after_error || ref.ev[i].kind >= 0;
        if (after_error && ref.ev[i].kind < 0) {
            printf("  %s: resynced after the error, then delivered \"%.*s\"\n", v.id,
                   (int)(ref.ev[i].len > 40 ? 40 : ref.ev[i].len), ref.ev[i].data);
            t->resynced++;
            break;
        }
    }

    /* split in two at every offset: the same frames and errors */
    for (size_t k = 0; k <= v.len; k++) {
        driver_init(&d, v.mode, v.max_frame);
        drive(&d, v.stream, k, false);
        drive(&d, v.stream + k, v.len - k, false);
        drive(&d, NULL, 0, true);
        if (!same_events(&ref, &d))
            fail_msg("framing %s: split at %zu differs from the one-shot result", v.id, k);
        driver_clear(&d);
        t->splits++;
    }

    /* byte by byte, and under backpressure */
    driver_init(&d, v.mode, v.max_frame);
    for (size_t k = 0; k < v.len; k++)
        drive(&d, v.stream + k, 1, false);
    drive(&d, NULL, 0, true);
    if (!same_events(&ref, &d))
        fail_msg("framing %s: byte-by-byte feeding differs", v.id);
    driver_clear(&d);
    for (int every = 1; every <= 3; every++) {
        driver_init(&d, v.mode, v.max_frame);
        d.refuse_every = every == 1 ? 2 : every; /* 1 would refuse forever */
        drive(&d, v.stream, v.len, false);
        drive(&d, NULL, 0, true);
        if (!same_events(&ref, &d))
            fail_msg("framing %s: refusing every %d. frame differs", v.id, d.refuse_every);
        driver_clear(&d);
    }

    /* auto mode frames every LF case as LF framing does */
    if (v.mode == ING_FRAMING_LF) {
        one_shot(&v, &d, ING_FRAMING_AUTO);
        if (!same_events(&ref, &d))
            fail_msg("framing %s: auto mode differs from LF mode", v.id);
        driver_clear(&d);
    }
    driver_clear(&ref);
    vector_clear(&v);
}

static void test_framing_conformance_vectors_all_pass(void **state)
{
    struct tally t = {0};

    (void)state;
    conf_for_each_case("framing.jsonl", check_case, &t);
    printf("framing.jsonl: %d cases, %d pass (one piece, %d two-piece splits, byte by byte, "
           "under backpressure), %d resynced after their error\n",
           t.cases, t.passed, t.splits, t.resynced);
    assert_int_equal(t.cases, 52);
    assert_int_equal(t.passed, t.cases);
}

/* ---- behaviour --------------------------------------------------------------- */

static void test_framing_octet_oversized_frame_is_skipped_without_buffering(void **state)
{
    struct driver d;
    char big[1000];

    (void)state;
    memset(big, 'x', sizeof(big));
    driver_init(&d, ING_FRAMING_OCTET, 100);
    drive(&d, "1000 ", 5, false);
    for (size_t k = 0; k < sizeof(big); k += 10) {
        drive(&d, big + k, 10, false);
        assert_int_equal(d.plen, 0); /* consumed as it arrives */
    }
    drive(&d, "5 hello", 7, false);
    drive(&d, NULL, 0, true);
    assert_int_equal(d.nev, 2);
    assert_int_equal(d.ev[0].kind, ING_FRAMING_E_OVERSIZE);
    assert_non_null(strstr(d.ev[0].data, "1000"));
    assert_int_equal(d.ev[1].kind, -1);
    assert_memory_equal(d.ev[1].data, "hello", 5);
    assert_int_equal(d.f.oversized, 1);
    assert_int_equal(d.f.frames, 1);
    assert_int_equal(d.f.skipped_bytes, 1005);
    driver_clear(&d);
}

static void test_framing_lf_oversized_line_is_skipped_to_the_next_lf(void **state)
{
    struct driver d;
    char big[500];

    (void)state;
    memset(big, 'y', sizeof(big));
    driver_init(&d, ING_FRAMING_LF, 64);
    for (size_t k = 0; k < sizeof(big); k += 50) {
        drive(&d, big + k, 50, false);
        assert_true(d.plen <= 64 + 2);
    }
    drive(&d, "tail\nnext\n", 10, false);
    drive(&d, NULL, 0, true);
    assert_int_equal(d.nev, 2);
    assert_int_equal(d.ev[0].kind, ING_FRAMING_E_OVERSIZE);
    assert_int_equal(d.ev[1].kind, -1);
    assert_int_equal(d.ev[1].len, 4);
    assert_memory_equal(d.ev[1].data, "next", 4);
    driver_clear(&d);
}

static void test_framing_lf_frame_of_exactly_max_is_delivered(void **state)
{
    struct driver d;
    char line[66];

    (void)state;
    memset(line, 'z', 64);
    line[64] = '\r';
    line[65] = '\n';
    driver_init(&d, ING_FRAMING_LF, 64);
    drive(&d, line, 40, false);
    drive(&d, line + 40, 26, false);
    drive(&d, "z\n", 2, false);
    drive(&d, NULL, 0, true);
    assert_int_equal(d.nev, 2);
    assert_int_equal(d.ev[0].kind, -1);
    assert_int_equal(d.ev[0].len, 64);
    assert_int_equal(d.ev[1].len, 1);
    driver_clear(&d);
}

static void test_framing_octet_bad_count_resyncs_after_the_next_lf(void **state)
{
    static const char s[] = "16<1>1 - - - - - -\n5 hello3 abc";
    struct driver d;

    (void)state;
    driver_init(&d, ING_FRAMING_OCTET, 0);
    drive(&d, s, sizeof(s) - 1, false);
    drive(&d, NULL, 0, true);
    assert_int_equal(d.nev, 3);
    assert_int_equal(d.ev[0].kind, ING_FRAMING_E_BAD_COUNT);
    assert_non_null(strstr(d.ev[0].data, "offset 2"));
    assert_memory_equal(d.ev[1].data, "hello", 5);
    assert_memory_equal(d.ev[2].data, "abc", 3);
    assert_int_equal(d.f.bad_counts, 1);
    driver_clear(&d);
}

static void test_framing_octet_refuses_too_many_digits_and_leading_zero(void **state)
{
    struct driver d;

    (void)state;
    driver_init(&d, ING_FRAMING_OCTET, 0);
    drive(&d, "1234567890 x\n", 13, false);
    drive(&d, "012 abc\n", 8, false);
    drive(&d, "3 abc", 5, false);
    drive(&d, NULL, 0, true);
    assert_int_equal(d.nev, 3);
    assert_int_equal(d.ev[0].kind, ING_FRAMING_E_BAD_COUNT);
    assert_non_null(strstr(d.ev[0].data, "digits"));
    assert_int_equal(d.ev[1].kind, ING_FRAMING_E_BAD_COUNT);
    assert_memory_equal(d.ev[2].data, "abc", 3);
    driver_clear(&d);
}

static void test_framing_auto_reads_digit_led_lines_without_msg_len_as_lf(void **state)
{
    static const char s[] = "0\n2019-01-01 text\n5 hello<13>plain\n";
    struct driver d;

    (void)state;
    driver_init(&d, ING_FRAMING_AUTO, 0);
    drive(&d, s, sizeof(s) - 1, false);
    drive(&d, NULL, 0, true);
    assert_int_equal(d.nev, 4);
    assert_memory_equal(d.ev[0].data, "0", 1);
    assert_int_equal(d.ev[1].len, 15);
    assert_memory_equal(d.ev[1].data, "2019-01-01 text", 15);
    assert_memory_equal(d.ev[2].data, "hello", 5);
    assert_memory_equal(d.ev[3].data, "<13>plain", 9);
    assert_int_equal(d.f.bad_counts, 0);
    driver_clear(&d);
}

static void test_framing_lf_keeps_nul_inside_and_strips_trailing_cr_nul(void **state)
{
    static const char s[] = "a\0b\n c\r\n\r\nd\0\n";
    struct driver d;

    (void)state;
    driver_init(&d, ING_FRAMING_LF, 0);
    drive(&d, s, sizeof(s) - 1, false);
    drive(&d, NULL, 0, true);
    assert_int_equal(d.nev, 3);
    assert_int_equal(d.ev[0].len, 3);
    assert_memory_equal(d.ev[0].data, "a\0b", 3);
    assert_int_equal(d.ev[1].len, 1); /* leading SP skipped (Cisco ASA fix), CR stripped */
    assert_memory_equal(d.ev[1].data, "c", 1);
    assert_int_equal(d.ev[2].len, 1); /* the empty line is skipped */
    assert_memory_equal(d.ev[2].data, "d", 1);
    driver_clear(&d);
}

static void test_framing_cisco_asa_fix_can_be_turned_off(void **state)
{
    struct driver d;

    (void)state;
    driver_init(&d, ING_FRAMING_LF, 0);
    d.f.cisco_asa_fix = false;
    drive(&d, " <13>x\n", 7, false);
    drive(&d, NULL, 0, true);
    assert_int_equal(d.nev, 1);
    assert_int_equal(d.ev[0].len, 6);
    assert_memory_equal(d.ev[0].data, " <13>x", 6);
    driver_clear(&d);
}

static void test_framing_nul_mode_treats_lf_as_data(void **state)
{
    static const char s[] = "a\nb\0c";
    struct driver d;

    (void)state;
    driver_init(&d, ING_FRAMING_NUL, 0);
    drive(&d, s, sizeof(s) - 1, false);
    assert_int_equal(d.nev, 1);
    drive(&d, NULL, 0, true);
    assert_int_equal(d.nev, 2);
    assert_int_equal(d.ev[0].len, 3);
    assert_memory_equal(d.ev[0].data, "a\nb", 3);
    assert_memory_equal(d.ev[1].data, "c", 1);
    driver_clear(&d);
}

static void test_framing_finish_reports_incomplete_octet_frame(void **state)
{
    struct driver d;

    (void)state;
    driver_init(&d, ING_FRAMING_OCTET, 0);
    drive(&d, "5 abc", 5, false);
    assert_int_equal(d.plen, 5);
    drive(&d, NULL, 0, true);
    assert_int_equal(d.nev, 1);
    assert_int_equal(d.ev[0].kind, ING_FRAMING_E_INCOMPLETE);
    assert_non_null(strstr(d.ev[0].data, "MSG-LEN 5"));
    assert_int_equal(d.f.incomplete, 1);
    /* the framer is ready for a new stream */
    drive(&d, "2 ok", 4, false);
    assert_int_equal(d.nev, 2);
    assert_memory_equal(d.ev[1].data, "ok", 2);
    driver_clear(&d);
}

#define STREAM(lit)                                                                                \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }

static void test_framing_reports_do_not_depend_on_how_the_stream_is_split(void **state)
{
    static const struct {
        const char *p;
        size_t n;
    } streams[] = {
        /* found by fuzz_framing: an over-long line reported differently before and
         * after its LF had arrived */
        STREAM("\x01\xed\xed\xed\xed\xed\xed\xed\xed\xed\xed\xed\xed\xed\x00\x00\x00"
               "1>17\n hhhhhh"),
        STREAM("0123456789abc\nok\n0123456789\r\nabcdefghij\r\x00\nx"),
        STREAM("12 abcdefghijkl5 hello3 abc\n16<1>\n4 abcd"),
        STREAM("x\x00yyyyyyyyyyyyyy\x00z\x00"),
        /* NUL before '<' ends a frame and makes LF data; held NULs, oversized frames */
        STREAM("<1>a\x00b\n<2>cccccccccccccccc\x00<3>d\ne\x00\x00<4>\x00\n<5>f\x00"),
        STREAM("<1>aaaaaaaaaaaaaaaaaaaa\x00<2>b\n\x00<3>c\r\x00"),
    };

    (void)state;
    for (size_t i = 0; i < sizeof(streams) / sizeof(streams[0]); i++) {
        const char *p = streams[i].p;
        size_t n = streams[i].n;

        for (int mode = ING_FRAMING_AUTO; mode <= ING_FRAMING_NUL; mode++) {
            for (size_t max = 1; max <= 12; max++) {
                struct driver ref, d;

                driver_init(&ref, (enum ing_framing_mode)mode, max);
                drive(&ref, p, n, false);
                drive(&ref, NULL, 0, true);
                for (size_t k = 0; k <= n; k++) {
                    driver_init(&d, (enum ing_framing_mode)mode, max);
                    drive(&d, p, k, false);
                    drive(&d, p + k, n - k, false);
                    drive(&d, NULL, 0, true);
                    if (!same_events(&ref, &d))
                        fail_msg("stream %zu, mode %d, max %zu: split at %zu differs", i, mode, max,
                                 k);
                    driver_clear(&d);
                }
                driver_clear(&ref);
            }
        }
    }
}

static void test_framing_feed_consumes_nothing_of_an_incomplete_frame(void **state)
{
    const struct ing_frame_cb cb = {on_frame, on_error, NULL};
    struct ing_framer f;

    (void)state;
    ing_framer_init(&f, ING_FRAMING_AUTO, 0);
    assert_int_equal(ing_framer_feed(&f, "12 <13>", 7, &cb), 0);
    assert_int_equal(ing_framer_feed(&f, "<13>abc", 7, &cb), 0);
    assert_int_equal(ing_framer_feed(&f, "", 0, &cb), 0);
    assert_int_equal(f.max_frame, ING_FRAMING_DEFAULT_MAX);
}

/* Python's logging.handlers.SysLogHandler over TCP: "<PRI>text\0", no LF. */
static const char python_stream[] =
    "<14>started\0"
    "<11>boom\nTraceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n"
    "ValueError: x\0"
    "<12>careful\0<14>fourth\0<15>fifth\0";

static void check_python_frames(const struct driver *d)
{
    static const char traceback[] =
        "<11>boom\nTraceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n"
        "ValueError: x";

    assert_int_equal(d->nev, 5);
    assert_int_equal(d->ev[0].len, 11);
    assert_memory_equal(d->ev[0].data, "<14>started", 11);
    assert_int_equal(d->ev[1].len, sizeof(traceback) - 1);
    assert_memory_equal(d->ev[1].data, traceback, sizeof(traceback) - 1);
    assert_int_equal(d->ev[4].len, 9);
    assert_memory_equal(d->ev[4].data, "<15>fifth", 9);
}

static void test_framing_lf_mode_takes_nul_before_pri_as_trailer_then_lf_as_data(void **state)
{
    struct driver ref, d;

    (void)state;
    for (int mode = ING_FRAMING_AUTO; mode <= ING_FRAMING_LF; mode++) {
        if (mode == ING_FRAMING_OCTET)
            continue;
        driver_init(&ref, (enum ing_framing_mode)mode, 0);
        drive(&ref, python_stream, sizeof(python_stream) - 1, false);
        assert_true(ref.f.nul_framed);
        drive(&ref, NULL, 0, true);
        check_python_frames(&ref);
        assert_false(ref.f.nul_framed); /* a new stream starts undecided */
        for (size_t k = 0; k <= sizeof(python_stream) - 1; k++) {
            driver_init(&d, (enum ing_framing_mode)mode, 0);
            drive(&d, python_stream, k, false);
            drive(&d, python_stream + k, sizeof(python_stream) - 1 - k, false);
            drive(&d, NULL, 0, true);
            if (!same_events(&ref, &d))
                fail_msg("mode %d: split at %zu differs", mode, k);
            driver_clear(&d);
        }
        driver_clear(&ref);
    }
}

static void test_framing_nul_ending_the_data_waits_for_the_next_octet_or_a_flush(void **state)
{
    const struct ing_frame_cb cb = {on_frame, on_error, NULL};
    struct driver d;
    size_t used;

    (void)state;
    driver_init(&d, ING_FRAMING_AUTO, 0);
    drive(&d, "<14>started\0", 12, false);
    assert_int_equal(d.nev, 0);
    assert_true(d.f.nul_pending);
    assert_int_equal(d.plen, 12);
    /* the sender paused: the listener flushes */
    used = ing_framer_flush(&d.f, d.pending, d.plen, &(struct ing_frame_cb){on_frame, on_error,
                                                                            &d});
    assert_int_equal(used, 12);
    d.plen = 0;
    assert_int_equal(d.nev, 1);
    assert_memory_equal(d.ev[0].data, "<14>started", 11);
    assert_false(d.f.nul_pending);
    assert_true(d.f.nul_framed);
    /* NUL-framed now: a multi-line message is one frame, delivered at once */
    drive(&d, "<11>boom\n  at x\0", 16, false);
    assert_int_equal(d.nev, 2);
    assert_int_equal(d.ev[1].len, 15);
    assert_memory_equal(d.ev[1].data, "<11>boom\n  at x", 15);
    assert_false(d.f.nul_pending);
    driver_clear(&d);

    /* a NUL followed by anything but '<' is data, also once it was held */
    driver_init(&d, ING_FRAMING_LF, 0);
    drive(&d, "<1>msg\0", 7, false);
    assert_true(d.f.nul_pending);
    drive(&d, "content\n", 8, false);
    assert_false(d.f.nul_pending);
    assert_false(d.f.nul_framed);
    assert_int_equal(d.nev, 1);
    assert_int_equal(d.ev[0].len, 14);
    assert_memory_equal(d.ev[0].data, "<1>msg\0content", 14);
    /* flushing with no held NUL is a feed */
    assert_int_equal(ing_framer_flush(&d.f, "<2>x", 4, &cb), 0);
    assert_int_equal(d.nev, 1);
    driver_clear(&d);
}

static void test_framing_nul_detection_can_be_turned_off(void **state)
{
    static const char s[] = "{\"a\":1}\0<b\n";
    struct driver d;

    (void)state;
    driver_init(&d, ING_FRAMING_LF, 0);
    d.f.nul_detect = false;
    drive(&d, s, 6, false);
    assert_false(d.f.nul_pending);
    drive(&d, s + 6, sizeof(s) - 1 - 6, false);
    drive(&d, NULL, 0, true);
    assert_int_equal(d.nev, 1);
    assert_int_equal(d.ev[0].len, sizeof(s) - 2);
    driver_clear(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing_conformance_vectors_all_pass),
        cmocka_unit_test(test_framing_octet_oversized_frame_is_skipped_without_buffering),
        cmocka_unit_test(test_framing_lf_oversized_line_is_skipped_to_the_next_lf),
        cmocka_unit_test(test_framing_lf_frame_of_exactly_max_is_delivered),
        cmocka_unit_test(test_framing_octet_bad_count_resyncs_after_the_next_lf),
        cmocka_unit_test(test_framing_octet_refuses_too_many_digits_and_leading_zero),
        cmocka_unit_test(test_framing_auto_reads_digit_led_lines_without_msg_len_as_lf),
        cmocka_unit_test(test_framing_lf_keeps_nul_inside_and_strips_trailing_cr_nul),
        cmocka_unit_test(test_framing_cisco_asa_fix_can_be_turned_off),
        cmocka_unit_test(test_framing_nul_mode_treats_lf_as_data),
        cmocka_unit_test(test_framing_finish_reports_incomplete_octet_frame),
        cmocka_unit_test(test_framing_reports_do_not_depend_on_how_the_stream_is_split),
        cmocka_unit_test(test_framing_feed_consumes_nothing_of_an_incomplete_frame),
        cmocka_unit_test(test_framing_lf_mode_takes_nul_before_pri_as_trailer_then_lf_as_data),
        cmocka_unit_test(test_framing_nul_ending_the_data_waits_for_the_next_octet_or_a_flush),
        cmocka_unit_test(test_framing_nul_detection_can_be_turned_off),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
