/*
 * tests/test_st_batch.c — the batch container: rewriting rows in place (the writer's
 * user_id vetting), the spool record of a row or reject (round trip, damaged records
 * refused), with allocation-failure sweeps. st_batch_check() runs after every
 * mutation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "store/batch.h"
#include "store/copy.h"

/* The batch's rows are records with these messages. */
static const char *const rows[] = {"a", "bb", "ccc", "d"};
#define NROWS 4
#define T_ROWS INT64_C(1717243200000000) /* 2024-06-01T12:00:00Z */

static void check(const struct st_batch *b)
{
    struct agg_err err = {0};

    if (st_batch_check(b, &err) != AGG_OK)
        fail_msg("st_batch_check: %s", err.msg);
}

/* Appends the tuple of a record whose message is <msg>. */
static int put_row(struct agg_buf *out, const char *msg)
{
    struct st_copy_scratch scratch;
    struct agg_record rec;
    int rc;

    agg_record_init(&rec);
    rec.str[AGG_F_MESSAGE] = (struct agg_str){msg, strlen(msg)};
    st_copy_scratch_init(&scratch);
    rc = st_copy_encode(out, ST_COPY_BINARY, &rec, T_ROWS, AGG_TIME_NONE, &scratch);
    st_copy_scratch_clear(&scratch);
    return rc;
}

static struct st_batch *filled(void)
{
    struct st_batch *b = st_batch_new();
    struct agg_buf t;

    assert_non_null(b);
    agg_buf_init(&t);
    for (int i = 0; i < NROWS; i++) {
        agg_buf_reset(&t);
        assert_int_equal(put_row(&t, rows[i]), AGG_OK);
        assert_int_equal(st_batch_add_copy(b, t.data, t.len, 24000, AGG_TRANSPORT_HTTP, "peer",
                                           0, "raw", 3),
                         AGG_OK);
    }
    agg_buf_clear(&t);
    check(b);
    return b;
}

/* Row 1 doubles its message, row 2 loses its message's last letter, the others stay. */
static int change(void *arg, size_t i, const char *row, size_t len, struct agg_buf *out)
{
    (void)arg;
    if (i == 1)
        return put_row(out, "bbbb");
    if (i == 2)
        return put_row(out, "cc");
    return agg_buf_append(out, row, len);
}

static const char *const changed[NROWS] = {"a", "bbbb", "cc", "d"};

/* The rows of <b> are those of records with messages <want>, and nothing else. */
static void expect_rows(const struct st_batch *b, const char *const want[NROWS])
{
    struct agg_buf all;
    size_t len;

    agg_buf_init(&all);
    for (int i = 0; i < NROWS; i++) {
        const char *row = st_batch_row(b, (size_t)i, &len);
        size_t mark = all.len;

        assert_int_equal(put_row(&all, want[i]), AGG_OK);
        assert_int_equal(len, all.len - mark);
        assert_memory_equal(row, all.data + mark, len);
    }
    assert_int_equal(all.len, b->copy.len);
    assert_memory_equal(st_batch_range(b, 0, NROWS, &len), all.data, all.len);
    agg_buf_clear(&all);
    check(b);
}

static void test_batch_rewrite_changes_rows_and_keeps_neighbours(void **state)
{
    struct st_batch *b = filled();
    struct agg_buf scratch;

    (void)state;
    agg_buf_init(&scratch);
    assert_int_equal(st_batch_rewrite(b, 1, 3, change, NULL, &scratch), AGG_OK);
    expect_rows(b, changed);
    /* an empty range changes nothing */
    assert_int_equal(st_batch_rewrite(b, 2, 2, change, NULL, &scratch), AGG_OK);
    expect_rows(b, changed);
    agg_buf_clear(&scratch);
    st_batch_free(b);
}

static void test_batch_rewrite_of_every_row(void **state)
{
    struct st_batch *b = filled();
    struct agg_buf scratch;

    (void)state;
    agg_buf_init(&scratch);
    assert_int_equal(st_batch_rewrite(b, 0, NROWS, change, NULL, &scratch), AGG_OK);
    expect_rows(b, changed);
    agg_buf_clear(&scratch);
    st_batch_free(b);
}

static void test_batch_rewrite_out_of_memory_leaves_the_batch_as_it_was(void **state)
{
    bool done = false;

    (void)state;
    for (long n = 0; !done && n < 100; n++) {
        struct st_batch *b = filled();
        struct agg_buf scratch;
        int rc;

        agg_buf_init(&scratch);
        agg_alloc_fail_after(n);
        rc = st_batch_rewrite(b, 1, 3, change, NULL, &scratch);
        agg_alloc_fail_after(-1);
        if (rc == AGG_OK) {
            expect_rows(b, changed);
            done = true;
        } else {
            assert_int_equal(rc, AGG_ENOMEM);
            expect_rows(b, rows);
        }
        agg_buf_clear(&scratch);
        st_batch_free(b);
    }
    assert_true(done);
}

/* ---- spool records ------------------------------------------------------------ */

#define T0 T_ROWS

/* Every column set, with multi-byte UTF-8, escapes and an extra_data object. */
static void full_record(struct agg_record *rec)
{
    static const char *const text[AGG_F_STR_COUNT] = {
        [AGG_F_MESSAGE] = "caf\xc3\xa9 \xe2\x98\x83 tab\there\nnew line \\ back",
        [AGG_F_LOGGER_NAME] = "app.\xe6\x97\xa5\xe6\x9c\xac",
        [AGG_F_MODULE] = "mod",
        [AGG_F_FUNCTION_NAME] = "fn",
        [AGG_F_CORRELATION_ID] = "corr-1",
        [AGG_F_REQUEST_ID] = "req-1",
        [AGG_F_REQUEST_METHOD] = "POST",
        [AGG_F_REQUEST_PATH] = "/v1/\xf0\x9f\x98\x80",
        [AGG_F_REQUEST_IP] = "192.0.2.7",
        [AGG_F_EXCEPTION_TYPE] = "ValueError",
        [AGG_F_EXCEPTION_MESSAGE] = "bad",
        [AGG_F_STACK_TRACE] = "Traceback\n  File x\nValueError: bad",
    };
    static const char extra[] = "{\"k\":\"\xc3\xbc\",\"n\":[1,2]}";
    static const char raw[] = "{\"message\":\"caf\xc3\xa9\"}";

    agg_record_init(rec);
    for (int f = 0; f < AGG_F_STR_COUNT; f++) {
        rec->str[f].p = text[f];
        rec->str[f].len = strlen(text[f]);
    }
    rec->created_us = T0;
    rec->level = AGG_LEVEL_ERROR;
    rec->has_level = true;
    rec->has_line_number = rec->has_user_id = rec->has_duration_ms = true;
    rec->has_memory_usage_mb = true;
    rec->line_number = 42;
    rec->user_id = 7;
    rec->duration_ms = 1500;
    rec->memory_usage_mb = 12.5;
    rec->extra.p = extra;
    rec->extra.len = sizeof(extra) - 1;
    rec->raw.p = raw;
    rec->raw.len = sizeof(raw) - 1;
}

/* A batch of one full row, one row of NULLs and one reject, placed at positions. */
static struct st_batch *source(void)
{
    static const char why[] = "line 3: not JSON \xe2\x80\x94 \"x\"";
    struct st_copy_scratch scratch;
    struct st_batch *b = st_batch_new();
    struct agg_record full, empty;

    assert_non_null(b);
    st_copy_scratch_init(&scratch);
    full_record(&full);
    agg_record_init(&empty);
    assert_int_equal(st_batch_add(b, &full, T0, AGG_TIME_NONE, AGG_TRANSPORT_HTTP,
                                  "[2001:db8::1]:443", T0 + 5, &scratch),
                     AGG_OK);
    st_batch_place_last(b, false, 100, 400);
    check(b);
    assert_int_equal(st_batch_add(b, &empty, T0 - INT64_C(86400000000) * 40, T0,
                                  AGG_TRANSPORT_SYSLOG_UDP, NULL, -3, &scratch),
                     AGG_OK);
    st_batch_place_last(b, false, 400, 500);
    check(b);
    assert_int_equal(st_batch_add_reject(b, AGG_TRANSPORT_JSON_TCP, "10.1.2.3:5170", T0 + 9,
                                         why, "\x00\xff raw", 6),
                     AGG_OK);
    st_batch_place_last(b, true, 500, 580);
    check(b);
    st_copy_scratch_clear(&scratch);
    return b;
}

/* The spool record image of item <i> (a reject with <reject>). Caller frees. */
static unsigned char *image(const struct st_batch *b, size_t i, bool reject, size_t *len)
{
    struct agg_buf out;
    unsigned char *copy;

    agg_buf_init(&out);
    assert_int_equal(st_batch_record(b, i, reject, &out), AGG_OK);
    copy = malloc(out.len);
    assert_non_null(copy);
    memcpy(copy, out.data, out.len);
    *len = out.len;
    agg_buf_clear(&out);
    return copy;
}

static void expect_same_image(const struct st_batch *b, size_t i, bool reject,
                              const unsigned char *want, size_t want_len)
{
    size_t len;
    unsigned char *got = image(b, i, reject, &len);

    assert_int_equal(len, want_len);
    assert_memory_equal(got, want, len);
    free(got);
}

/* <tuples>[<len>] are the binary tuples of the COPY text rows <text>. */
static void expect_tuples_of_text(const char *tuples, size_t len, const char *text)
{
    struct agg_buf conv;

    agg_buf_init(&conv);
    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');

        assert_non_null(nl);
        assert_int_equal(st_copy_text_to_binary(&conv, p, (size_t)(nl - p) + 1), AGG_OK);
        p = nl + 1;
    }
    assert_int_equal(conv.len, len);
    assert_memory_equal(conv.data, tuples, len);
    agg_buf_clear(&conv);
}

static void test_batch_record_round_trip_keeps_every_field(void **state)
{
    struct st_batch *a = source(), *b = st_batch_new();
    size_t len, alen, blen;
    const char *ta, *tb;

    (void)state;
    assert_non_null(b);
    for (size_t i = 0; i < a->nrows + a->nrejects; i++) {
        bool reject = i >= a->nrows;
        size_t k = reject ? i - a->nrows : i;
        unsigned char *img = image(a, k, reject, &len);
        uint64_t pos = reject ? a->rejects[k].pos : a->rows[k].pos;
        uint64_t next = reject ? a->rejects[k].next : a->rows[k].next;

        assert_int_equal(st_batch_add_record(b, img, len, pos, next), AGG_OK);
        check(b);
        expect_same_image(b, k, reject, img, len);
        free(img);
    }
    assert_int_equal(b->nrows, 2);
    assert_int_equal(b->nrejects, 1);
    assert_int_equal(b->start, 100);
    assert_int_equal(b->end, 580);
    for (size_t i = 0; i < 2; i++) {
        ta = st_batch_row(a, i, &alen);
        tb = st_batch_row(b, i, &blen);
        assert_int_equal(alen, blen);
        assert_memory_equal(ta, tb, alen);
        assert_int_equal(a->rows[i].month, b->rows[i].month);
        assert_int_equal(a->rows[i].received_us, b->rows[i].received_us);
        assert_int_equal(a->rows[i].transport, b->rows[i].transport);
        assert_int_equal(a->rows[i].pos, b->rows[i].pos);
        assert_int_equal(a->rows[i].next, b->rows[i].next);
        assert_int_equal(a->rows[i].peer_len, b->rows[i].peer_len);
        assert_int_equal(a->rows[i].raw_len, b->rows[i].raw_len);
        assert_memory_equal(a->raw.data + a->rows[i].raw_off, b->raw.data + b->rows[i].raw_off,
                            a->rows[i].peer_len + a->rows[i].raw_len);
    }
    assert_int_equal(b->rejects[0].received_us, T0 + 9);
    assert_int_equal(b->rejects[0].transport, AGG_TRANSPORT_JSON_TCP);
    /* every column, in ST_COPY_COLUMNS order: unicode as is, escapes, NULLs as \N, the
     * stored created_at (the second row's original is kept in extra_data), written as
     * text and converted: the same tuples */
    ta = st_batch_range(b, 0, 2, &alen);
    expect_tuples_of_text(ta, alen,
                          "ERROR\tcaf\xc3\xa9 \xe2\x98\x83 tab\\there\\nnew line \\\\ back\t"
                          "app.\xe6\x97\xa5\xe6\x9c\xac\tmod\tfn\t42\tcorr-1\t7\treq-1\tPOST\t"
                          "/v1/\xf0\x9f\x98\x80\t192.0.2.7\t1500\t12.5\tValueError\tbad\t"
                          "Traceback\\n  File x\\nValueError: bad\t{\"k\":\"\xc3\xbc\",\"n\":[1,2]}\t"
                          "2024-06-01 12:00:00.000000\n"
                          "INFO\t\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t"
                          "\\N\t\\N\t\\N\t\\N\t"
                          "{\"original_timestamp\":\"2024-06-01T12:00:00.000000Z\"}\t"
                          "2024-04-22 12:00:00.000000\n");
    assert_int_equal(b->rows[0].month, agg_time_month_of_us(T0));
    assert_int_equal(b->rows[1].month, agg_time_month_of_us(T0) - 2);
    assert_int_equal(b->rows[1].peer_len, 0);
    st_batch_free(a);
    st_batch_free(b);
}

/* A reject without peer, reason or raw bytes leaves the batch without a raw buffer:
 * its record is the bare header all the same. */
static void test_batch_record_of_an_item_without_bytes(void **state)
{
    struct st_batch *b = st_batch_new(), *c = st_batch_new();
    struct agg_buf out;

    (void)state;
    assert_non_null(b);
    assert_non_null(c);
    agg_buf_init(&out);
    assert_int_equal(st_batch_add_reject(b, AGG_TRANSPORT_SYSLOG_UDP, NULL, 5, "", NULL, 0),
                     AGG_OK);
    check(b);
    assert_null(b->raw.data);
    assert_int_equal(st_batch_record(b, 0, true, &out), AGG_OK);
    assert_int_equal(out.len, 24);
    assert_int_equal(st_batch_add_record(c, out.data, out.len, 0, 36), AGG_OK);
    check(c);
    assert_int_equal(c->nrejects, 1);
    assert_int_equal(c->rejects[0].received_us, 5);
    agg_buf_clear(&out);
    st_batch_free(b);
    st_batch_free(c);
}

/* Decoding <rec>[<len>] into <b> fails with AGG_EINVAL and leaves <b> as it was. */
static void expect_refused(struct st_batch *b, const void *rec, size_t len)
{
    size_t nrows = b->nrows, nrejects = b->nrejects, copy = b->copy.len, raw = b->raw.len;

    assert_int_equal(st_batch_add_record(b, rec, len, 1000, 1100), AGG_EINVAL);
    assert_int_equal(b->nrows, nrows);
    assert_int_equal(b->nrejects, nrejects);
    assert_int_equal(b->copy.len, copy);
    assert_int_equal(b->raw.len, raw);
    check(b);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* A row spooled by a build before binary COPY (kind 1, a COPY text line) replays as the
 * tuple this build encodes for the same record, and is spooled again as one. */
static void test_batch_record_of_an_older_build_replays_as_a_tuple(void **state)
{
    struct st_batch *a = source(), *b = st_batch_new();
    struct st_copy_scratch scratch;
    struct agg_record full;
    struct agg_buf text, old;
    size_t len, peer, raw, tlen, blen;
    unsigned char *img = image(a, 0, false, &len);
    const char *ta, *tb;

    (void)state;
    assert_non_null(b);
    agg_buf_init(&text);
    agg_buf_init(&old);
    st_copy_scratch_init(&scratch);
    full_record(&full);
    assert_int_equal(st_copy_encode(&text, ST_COPY_TEXT, &full, T0, AGG_TIME_NONE, &scratch),
                     AGG_OK);
    peer = (size_t)img[2] | (size_t)img[3] << 8;
    tlen = (size_t)img[16] | (size_t)img[17] << 8 | (size_t)img[18] << 16;
    raw = len - 24 - peer - tlen;
    img[0] = 1;
    put_u32(img + 16, (uint32_t)text.len);
    assert_int_equal(agg_buf_append(&old, img, 24 + peer), AGG_OK);
    assert_int_equal(agg_buf_append(&old, text.data, text.len), AGG_OK);
    assert_int_equal(agg_buf_append(&old, img + 24 + peer + tlen, raw), AGG_OK);
    assert_int_equal(st_batch_add_record(b, old.data, old.len, 100, 400), AGG_OK);
    check(b);
    ta = st_batch_row(a, 0, &tlen);
    tb = st_batch_row(b, 0, &blen);
    assert_int_equal(tlen, blen);
    assert_memory_equal(ta, tb, blen);
    free(img);
    img = image(a, 0, false, &len);
    expect_same_image(b, 0, false, img, len);
    /* a text line that is not a row of ours is refused */
    old.data[24 + peer] = '\n';
    expect_refused(b, old.data, old.len);
    free(img);
    agg_buf_clear(&text);
    agg_buf_clear(&old);
    st_copy_scratch_clear(&scratch);
    st_batch_free(a);
    st_batch_free(b);
}

static void test_batch_add_record_refuses_damaged_records(void **state)
{
    struct st_batch *a = source(), *b = st_batch_new();
    size_t rlen, jlen;
    unsigned char *row = image(a, 0, false, &rlen), *rej = image(a, 0, true, &jlen);
    unsigned char *buf = malloc(rlen + 70000);

    (void)state;
    assert_non_null(b);
    assert_non_null(buf);
    /* cut anywhere, or one byte too many */
    for (size_t n = 0; n < rlen; n++)
        expect_refused(b, row, n);
    for (size_t n = 0; n < jlen; n++)
        expect_refused(b, rej, n);
    memcpy(buf, row, rlen);
    buf[rlen] = 'x';
    expect_refused(b, buf, rlen + 1);
    /* unknown kind, unknown transport */
    for (int kind = 0; kind < 256; kind++) {
        memcpy(buf, row, rlen);
        buf[0] = (unsigned char)kind;
        if (kind != 2 && kind != 4) /* 1, a text row, is not this tuple's text */
            expect_refused(b, buf, rlen);
    }
    memcpy(buf, row, rlen);
    buf[1] = AGG_TRANSPORT_COUNT;
    expect_refused(b, buf, rlen);
    /* lengths that do not add up to the record: one more, one less */
    for (int field = 2; field < 24; field += field == 2 ? 14 : 4) {
        for (int delta = -1; delta <= 1; delta += 2) {
            int width = field == 2 ? 2 : 4;
            uint64_t v = 0;

            memcpy(buf, row, rlen);
            for (int i = 0; i < width; i++)
                v |= (uint64_t)buf[field + i] << (8 * i);
            v += (uint64_t)delta;
            for (int i = 0; i < width; i++)
                buf[field + i] = (unsigned char)(v >> (8 * i));
            expect_refused(b, buf, rlen);
        }
    }
    /* a row whose COPY data is not exactly one tuple */
    memcpy(buf, row, rlen);
    {
        size_t peer = (size_t)buf[2] | (size_t)buf[3] << 8;

        buf[24 + peer + 1] = 18; /* 18 fields */
        expect_refused(b, buf, rlen);
        buf[24 + peer + 1] = 19;
        buf[24 + peer + 5] ^= 1; /* the first field's length */
        expect_refused(b, buf, rlen);
        put_u32(buf + 16, 0); /* no tuple at all */
        put_u32(buf + 20, (uint32_t)(rlen - 24 - peer));
        expect_refused(b, buf, rlen);
    }
    /* a reject reason longer than the 16-bit length it is stored with */
    memset(buf, 'w', rlen + 70000);
    memcpy(buf, rej, 24);
    put_u32(buf + 16, 70000);
    put_u32(buf + 20, 0);
    buf[2] = buf[3] = 0;
    expect_refused(b, buf, 24 + 70000);
    assert_true(st_batch_is_empty(b));
    free(buf);
    free(row);
    free(rej);
    st_batch_free(a);
    st_batch_free(b);
}

/* Every single-bit flip of a record: refused when it hits the kind, a length, the
 * tuple's field count or a field's length word, or jsonb's version byte; otherwise a row
 * decodes to exactly the flipped bytes (the spool's checksum, not this format, catches
 * silent damage) and the batch stays valid. */
static void test_batch_add_record_single_bit_flips(void **state)
{
    struct st_batch *a = source();
    size_t len;
    unsigned char *row = image(a, 0, false, &len);
    unsigned char *buf = malloc(len);
    size_t tuple = 24 + ((size_t)row[2] | (size_t)row[3] << 8), off;
    bool *framing = calloc(len, sizeof(*framing)); /* bytes of the tuple's framing */
    size_t refused = 0, nframing = 2;

    (void)state;
    assert_non_null(buf);
    assert_non_null(framing);
    framing[tuple] = framing[tuple + 1] = true;
    for (int c = 0; c < ST_COPY_NCOLS; c++) {
        int32_t n = st_copy_field((const char *)row + tuple, c, &off);

        for (size_t k = 1; k <= 4; k++)
            framing[tuple + off - k] = true;
        if (c == ST_COPY_COL_EXTRA_DATA && n > 0)
        {
            framing[tuple + off] = true;
            nframing++;
        }
        nframing += 4;
    }
    for (size_t bit = 0; bit < len * 8; bit++) {
        size_t at = bit / 8;
        struct st_batch *b = st_batch_new();
        bool must_refuse = at == 0 || at == 2 || at == 3 || (at >= 16 && at < 24) ||
                           framing[at] || (at == 1 && (bit % 8) >= 2);
        int rc;

        assert_non_null(b);
        memcpy(buf, row, len);
        buf[at] ^= (unsigned char)(1u << (bit % 8));
        rc = st_batch_add_record(b, buf, len, 7, 8);
        check(b);
        if (must_refuse || rc != AGG_OK) {
            assert_int_equal(rc, AGG_EINVAL);
            assert_true(st_batch_is_empty(b));
            refused++;
        } else {
            expect_same_image(b, 0, false, buf, len);
        }
        st_batch_free(b);
    }
    assert_true(refused >= 8 * (1 + 2 + 8 + nframing) + 6);
    free(framing);
    free(buf);
    free(row);
    st_batch_free(a);
}

/* Builds the source batch, encodes its items and decodes them into a second one, with
 * allocation <n> failing: every failure is AGG_ENOMEM (or NULL) and leaves both batches
 * valid; *<ok> once it all went through. */
static void sweep_once(long n, bool *ok)
{
    struct st_copy_scratch scratch;
    struct agg_record full;
    struct st_batch *a, *b = NULL;
    struct agg_buf out;
    int rc = AGG_ENOMEM;

    agg_buf_init(&out);
    st_copy_scratch_init(&scratch);
    full_record(&full);
    agg_alloc_fail_after(n);
    a = st_batch_new();
    if (a == NULL)
        goto out;
    b = st_batch_new();
    if (b == NULL)
        goto out;
    rc = st_batch_add(a, &full, T0, T0 - 1, AGG_TRANSPORT_HTTP, "p", T0, &scratch);
    if (rc == AGG_OK) {
        st_batch_place_last(a, false, 0, 10);
        rc = st_batch_add_reject(a, AGG_TRANSPORT_HTTP, "p", T0, "why", "raw", 3);
    }
    if (rc == AGG_OK) {
        st_batch_place_last(a, true, 10, 20);
        rc = st_batch_record(a, 0, false, &out);
    }
    if (rc == AGG_OK)
        rc = st_batch_add_record(b, out.data, out.len, 0, 10);
    if (rc == AGG_OK)
        rc = st_batch_record(a, 0, true, &out);
    if (rc == AGG_OK)
        rc = st_batch_add_record(b, out.data, out.len, 10, 20);
out:
    agg_alloc_fail_after(-1);
    if (rc == AGG_OK) {
        assert_int_equal(b->nrows, 1);
        assert_int_equal(b->nrejects, 1);
        *ok = true;
    } else {
        assert_int_equal(rc, AGG_ENOMEM);
    }
    if (a != NULL)
        check(a);
    if (b != NULL)
        check(b);
    st_batch_free(a);
    st_batch_free(b);
    agg_buf_clear(&out);
    st_copy_scratch_clear(&scratch);
}

static void test_batch_records_out_of_memory_sweep_reaches_success(void **state)
{
    bool ok = false;

    (void)state;
    for (long n = 0; !ok && n < 1000; n++)
        sweep_once(n, &ok);
    assert_true(ok);
}

static void test_batch_check_catches_damage(void **state)
{
    struct st_batch *b = source();
    struct agg_err err = {0};

    (void)state;
    b->rows[1].month = 1; /* not among the noted months */
    assert_int_equal(st_batch_check(b, &err), AGG_ERR);
    assert_non_null(strstr(err.msg, "month"));
    b->rows[1].month = b->months[1];
    check(b);
    b->progress = 1; /* settled without a count */
    assert_int_equal(st_batch_check(b, &err), AGG_ERR);
    b->committed = 1;
    check(b);
    b->rows[1].pos = 50; /* before the batch's start */
    assert_int_equal(st_batch_check(b, &err), AGG_ERR);
    st_batch_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_rewrite_changes_rows_and_keeps_neighbours),
        cmocka_unit_test(test_batch_rewrite_of_every_row),
        cmocka_unit_test(test_batch_rewrite_out_of_memory_leaves_the_batch_as_it_was),
        cmocka_unit_test(test_batch_record_round_trip_keeps_every_field),
        cmocka_unit_test(test_batch_record_of_an_older_build_replays_as_a_tuple),
        cmocka_unit_test(test_batch_record_of_an_item_without_bytes),
        cmocka_unit_test(test_batch_add_record_refuses_damaged_records),
        cmocka_unit_test(test_batch_add_record_single_bit_flips),
        cmocka_unit_test(test_batch_records_out_of_memory_sweep_reaches_success),
        cmocka_unit_test(test_batch_check_catches_damage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
