/*
 * store/batch.c — the batch container.
 *
 * Place: see store/batch.h.
 * Threads: single owner.
 */
#include "store/batch.h"

#include <inttypes.h>
#include <stdlib.h>

#include "core/alloc.h"

struct st_batch *st_batch_new(void)
{
    struct st_batch *b = agg_calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    agg_buf_init(&b->copy);
    agg_buf_init(&b->raw);
    return b;
}

void st_batch_free(struct st_batch *b)
{
    if (b == NULL)
        return;
    agg_buf_clear(&b->copy);
    agg_buf_clear(&b->raw);
    free(b->rows);
    free(b->months);
    free(b->rejects);
    free(b);
}

void st_batch_reset(struct st_batch *b)
{
    agg_buf_reset(&b->copy);
    agg_buf_reset(&b->raw);
    b->nrows = 0;
    b->nmonths = 0;
    b->nrejects = 0;
    b->rejects_stored = 0;
    b->replayed = false;
    b->start = b->end = 0;
    b->prefix = 0;
    b->opened_us = 0;
    b->done = false;
    b->progress = 0;
    b->committed = 0;
    b->rejected = 0;
    b->skipped = 0;
}

static int note_month(struct st_batch *b, int month)
{
    size_t cap = (size_t)b->cap_months;

    for (int i = 0; i < b->nmonths; i++) {
        if (b->months[i] == month)
            return AGG_OK;
    }
    if (agg_grow((void **)&b->months, sizeof(*b->months), &cap, (size_t)b->nmonths + 1) != AGG_OK)
        return AGG_ENOMEM;
    b->cap_months = (int)cap;
    b->months[b->nmonths++] = month;
    return AGG_OK;
}

/* Records row metadata for the COPY tuple appended at <copy_mark>; on failure rolls the
 * batch back to <copy_mark>/<raw_mark>. */
static int finish_row(struct st_batch *b, size_t copy_mark, int month,
                      enum agg_transport transport, const char *peer, int64_t received_us,
                      const char *raw, size_t raw_len)
{
    size_t peer_len = peer != NULL ? strnlen(peer, UINT16_MAX) : 0;
    size_t raw_mark = b->raw.len;
    struct st_row *row;

    if (raw_len > UINT32_MAX)
        raw_len = UINT32_MAX;
    if (note_month(b, month) != AGG_OK || agg_buf_append(&b->raw, peer, peer_len) != AGG_OK ||
        agg_buf_append(&b->raw, raw, raw_len) != AGG_OK) {
        b->copy.len = copy_mark;
        b->raw.len = raw_mark;
        return AGG_ENOMEM;
    }
    row = &b->rows[b->nrows++];
    row->pos = row->next = 0;
    row->copy_off = copy_mark;
    row->raw_off = raw_mark;
    row->raw_len = (uint32_t)raw_len;
    row->peer_len = (uint16_t)peer_len;
    row->transport = (uint8_t)transport;
    row->refused = false;
    row->month = month;
    row->received_us = received_us;
    return AGG_OK;
}

int st_batch_add(struct st_batch *b, const struct agg_record *rec, int64_t created_us,
                 int64_t original_us, enum agg_transport transport, const char *peer,
                 int64_t received_us, struct st_copy_scratch *scratch)
{
    size_t copy_mark = b->copy.len;

    if (agg_grow((void **)&b->rows, sizeof(*b->rows), &b->cap_rows, b->nrows + 1) != AGG_OK ||
        st_copy_encode(&b->copy, ST_COPY_BINARY, rec, created_us, original_us, scratch) != AGG_OK)
        return AGG_ENOMEM;
    return finish_row(b, copy_mark, agg_time_month_of_us(created_us), transport, peer, received_us,
                      rec->raw.p, rec->raw.p != NULL ? rec->raw.len : 0);
}

int st_batch_add_copy(struct st_batch *b, const char *tuple, size_t len, int month,
                      enum agg_transport transport, const char *peer, int64_t received_us,
                      const char *raw, size_t raw_len)
{
    size_t copy_mark = b->copy.len;

    if (!st_copy_is_tuple(tuple, len))
        return AGG_EINVAL; /* exactly one tuple, or the COPY stream would lose its framing */
    if (agg_grow((void **)&b->rows, sizeof(*b->rows), &b->cap_rows, b->nrows + 1) != AGG_OK ||
        agg_buf_append(&b->copy, tuple, len) != AGG_OK)
        return AGG_ENOMEM;
    return finish_row(b, copy_mark, month, transport, peer, received_us, raw, raw_len);
}

int st_batch_add_reject(struct st_batch *b, enum agg_transport transport, const char *peer,
                        int64_t received_us, const char *why, const char *raw, size_t raw_len)
{
    size_t peer_len = peer != NULL ? strnlen(peer, UINT16_MAX) : 0;
    size_t why_len = strnlen(why, UINT16_MAX);
    size_t mark = b->raw.len;
    struct st_reject *r;

    if (raw_len > UINT32_MAX)
        raw_len = UINT32_MAX;
    if (agg_grow((void **)&b->rejects, sizeof(*b->rejects), &b->cap_rejects, b->nrejects + 1) !=
            AGG_OK ||
        agg_buf_append(&b->raw, peer, peer_len) != AGG_OK ||
        agg_buf_append(&b->raw, why, why_len) != AGG_OK ||
        agg_buf_append(&b->raw, raw, raw_len) != AGG_OK) {
        b->raw.len = mark;
        return AGG_ENOMEM;
    }
    r = &b->rejects[b->nrejects++];
    r->pos = r->next = 0;
    r->off = mark;
    r->raw_len = (uint32_t)raw_len;
    r->peer_len = (uint16_t)peer_len;
    r->why_len = (uint16_t)why_len;
    r->transport = (uint8_t)transport;
    r->received_us = received_us;
    return AGG_OK;
}

const char *st_batch_range(const struct st_batch *b, size_t lo, size_t hi, size_t *len)
{
    size_t start = b->rows[lo].copy_off;
    size_t end = hi < b->nrows ? b->rows[hi].copy_off : b->copy.len;

    *len = end - start;
    return b->copy.data + start;
}

int st_batch_rewrite(struct st_batch *b, size_t lo, size_t hi, st_batch_rewrite_fn fn,
                     void *arg, struct agg_buf *scratch)
{
    size_t start, end, len, *offs;
    int rc;

    if (lo >= hi)
        return AGG_OK;
    agg_buf_reset(scratch);
    offs = agg_malloc((hi - lo) * sizeof(*offs));
    if (offs == NULL)
        return AGG_ENOMEM;
    start = b->rows[lo].copy_off;
    end = hi < b->nrows ? b->rows[hi].copy_off : b->copy.len;
    rc = agg_buf_append(scratch, b->copy.data, start);
    for (size_t i = lo; rc == AGG_OK && i < hi; i++) {
        const char *row = st_batch_row(b, i, &len);

        offs[i - lo] = scratch->len;
        rc = fn(arg, i, row, len, scratch);
    }
    if (rc == AGG_OK)
        rc = agg_buf_append(scratch, b->copy.data + end, b->copy.len - end);
    if (rc == AGG_OK) {
        struct agg_buf old = b->copy;
        size_t shift = scratch->len - b->copy.len; /* modulo 2^N: may shrink */

        for (size_t i = lo; i < hi; i++)
            b->rows[i].copy_off = offs[i - lo];
        for (size_t i = hi; i < b->nrows; i++)
            b->rows[i].copy_off += shift;
        b->copy = *scratch;
        *scratch = old;
    }
    free(offs);
    return rc;
}

const char *st_batch_row(const struct st_batch *b, size_t i, size_t *len)
{
    return st_batch_range(b, i, i + 1, len);
}

/* Spool record of a row or reject, little-endian header then bytes:
 * u8 kind | u8 transport | u16 peer_len | i64 received_us | i32 month |
 * u32 text_len (COPY row or reason) | u32 raw_len | peer | text | raw
 * Kinds: 4 a row as a binary COPY tuple; 2 a reject; 1 a row as a COPY text line,
 * written by builds before binary COPY, read (converted to a tuple) but never written.
 * No single bit flip turns one kind into another. */
enum { REC_ROW_TEXT = 1, REC_REJECT = 2, REC_ROW = 4, REC_HEAD = 24 };

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

int st_batch_record(const struct st_batch *b, size_t i, bool reject, struct agg_buf *out)
{
    unsigned char head[REC_HEAD];
    const char *peer, *text, *raw;
    /* a batch of items without peer or raw bytes has no raw buffer at all */
    const char *raw_base = b->raw.data != NULL ? b->raw.data : "";
    size_t peer_len, text_len, raw_len;
    int64_t received;
    int transport, month = 0;

    if (reject) {
        const struct st_reject *r = &b->rejects[i];

        peer = raw_base + r->off;
        peer_len = r->peer_len;
        text = peer + peer_len;
        text_len = r->why_len;
        raw = text + text_len;
        raw_len = r->raw_len;
        transport = r->transport;
        received = r->received_us;
    } else {
        const struct st_row *row = &b->rows[i];

        peer = raw_base + row->raw_off;
        peer_len = row->peer_len;
        raw = peer + peer_len;
        raw_len = row->raw_len;
        text = st_batch_row(b, i, &text_len);
        transport = row->transport;
        received = row->received_us;
        month = row->month;
    }
    head[0] = reject ? REC_REJECT : REC_ROW;
    head[1] = (unsigned char)transport;
    put_le(head + 2, peer_len, 2);
    put_le(head + 4, (uint64_t)received, 8);
    put_le(head + 12, (uint64_t)(uint32_t)month, 4);
    put_le(head + 16, text_len, 4);
    put_le(head + 20, raw_len, 4);
    agg_buf_reset(out);
    if (agg_buf_append(out, head, REC_HEAD) != AGG_OK ||
        agg_buf_append(out, peer, peer_len) != AGG_OK ||
        agg_buf_append(out, text, text_len) != AGG_OK ||
        agg_buf_append(out, raw, raw_len) != AGG_OK)
        return AGG_ENOMEM;
    return AGG_OK;
}

int st_batch_add_record(struct st_batch *b, const void *rec, size_t len, uint64_t pos,
                        uint64_t next)
{
    const unsigned char *p = rec;
    size_t peer_len, text_len, raw_len;
    const char *peer, *text, *raw;
    char peer_z[UINT16_MAX + 1];
    int64_t received;
    int transport, rc;

    if (len < REC_HEAD || (p[0] != REC_ROW && p[0] != REC_REJECT && p[0] != REC_ROW_TEXT) ||
        p[1] >= AGG_TRANSPORT_COUNT)
        return AGG_EINVAL;
    transport = p[1];
    peer_len = (size_t)get_le(p + 2, 2);
    received = (int64_t)get_le(p + 4, 8);
    text_len = (size_t)get_le(p + 16, 4);
    raw_len = (size_t)get_le(p + 20, 4);
    if (REC_HEAD + peer_len + text_len + raw_len != len)
        return AGG_EINVAL;
    peer = (const char *)p + REC_HEAD;
    text = peer + peer_len;
    raw = text + text_len;
    memcpy(peer_z, peer, peer_len);
    peer_z[peer_len] = '\0';
    if (p[0] == REC_REJECT) {
        char why[UINT16_MAX + 1];

        if (text_len > UINT16_MAX)
            return AGG_EINVAL;
        memcpy(why, text, text_len);
        why[text_len] = '\0';
        rc = st_batch_add_reject(b, transport, peer_z, received, why, raw, raw_len);
    } else if (p[0] == REC_ROW_TEXT) {
        struct agg_buf tuple;

        agg_buf_init(&tuple);
        rc = st_copy_text_to_binary(&tuple, text, text_len);
        if (rc == AGG_OK)
            rc = st_batch_add_copy(b, tuple.data, tuple.len, (int)(int32_t)get_le(p + 12, 4),
                                   transport, peer_z, received, raw, raw_len);
        agg_buf_clear(&tuple);
    } else {
        rc = st_batch_add_copy(b, text, text_len, (int)(int32_t)get_le(p + 12, 4), transport,
                               peer_z, received, raw, raw_len);
    }
    if (rc == AGG_OK)
        st_batch_place_last(b, p[0] == REC_REJECT, pos, next);
    return rc;
}

void st_batch_place_last(struct st_batch *b, bool reject, uint64_t pos, uint64_t next)
{
    if (reject) {
        b->rejects[b->nrejects - 1].pos = pos;
        b->rejects[b->nrejects - 1].next = next;
    } else {
        b->rows[b->nrows - 1].pos = pos;
        b->rows[b->nrows - 1].next = next;
    }
    if (b->start == b->end) /* nothing placed yet */
        b->start = pos;
    if (pos < b->start)
        b->start = pos;
    if (next > b->end)
        b->end = next;
}

void st_batch_drop_last(struct st_batch *b, bool reject)
{
    if (reject) {
        b->raw.len = b->rejects[--b->nrejects].off;
    } else {
        const struct st_row *row = &b->rows[--b->nrows];

        b->copy.len = row->copy_off;
        b->raw.len = row->raw_off;
        if (b->copy.data != NULL)
            b->copy.data[b->copy.len] = '\0';
    }
}

static bool has_month(const struct st_batch *b, int month)
{
    for (int i = 0; i < b->nmonths; i++) {
        if (b->months[i] == month)
            return true;
    }
    return false;
}

/* [<pos>, <next>) of one row or reject: unplaced (both 0) or inside [start, end). */
static int check_place(const struct st_batch *b, const char *what, size_t i, uint64_t pos,
                       uint64_t next, uint64_t *last, struct agg_err *err)
{
    if (pos == 0 && next == 0)
        return AGG_OK;
    if (pos >= next || pos < b->start || next > b->end || pos < *last)
        return agg_err_set(err, AGG_ERR,
                           "%s %zu at [%" PRIu64 ", %" PRIu64 ") outside [%" PRIu64 ", %" PRIu64
                           ") or before the previous one",
                           what, i, pos, next, b->start, b->end);
    *last = next;
    return AGG_OK;
}

static int check_rows(const struct st_batch *b, struct agg_err *err)
{
    uint64_t last = 0;
    size_t raw_end = 0, refused = 0;

    if (b->nrows == 0 && b->copy.len != 0)
        return agg_err_set(err, AGG_ERR, "no rows but %zu bytes of COPY data", b->copy.len);
    for (size_t i = 0; i < b->nrows; i++) {
        const struct st_row *r = &b->rows[i];
        size_t end = i + 1 < b->nrows ? b->rows[i + 1].copy_off : b->copy.len;

        if (i == 0 && r->copy_off != 0)
            return agg_err_set(err, AGG_ERR, "row 0 starts at %zu", r->copy_off);
        if (end <= r->copy_off || end > b->copy.len ||
            !st_copy_is_tuple(b->copy.data + r->copy_off, end - r->copy_off))
            return agg_err_set(err, AGG_ERR, "row %zu is not one COPY tuple", i);
        if (r->raw_off < raw_end || r->raw_off + r->peer_len + r->raw_len > b->raw.len)
            return agg_err_set(err, AGG_ERR, "row %zu raw bytes out of place", i);
        raw_end = r->raw_off + r->peer_len + r->raw_len;
        if (r->transport >= AGG_TRANSPORT_COUNT || !has_month(b, r->month))
            return agg_err_set(err, AGG_ERR, "row %zu: transport %d, month %d not noted", i,
                               r->transport, r->month);
        if (check_place(b, "row", i, r->pos, r->next, &last, err) != AGG_OK)
            return AGG_ERR;
        refused += r->refused && i < b->progress;
    }
    if (refused != b->rejected)
        return agg_err_set(err, AGG_ERR, "%zu rows marked refused, %zu counted", refused,
                           b->rejected);
    return AGG_OK;
}

static int check_rejects(const struct st_batch *b, struct agg_err *err)
{
    uint64_t last = 0;
    size_t raw_end = 0;

    for (size_t i = 0; i < b->nrejects; i++) {
        const struct st_reject *r = &b->rejects[i];
        size_t len = (size_t)r->peer_len + r->why_len + r->raw_len;

        if (r->off < raw_end || r->off + len > b->raw.len || r->transport >= AGG_TRANSPORT_COUNT)
            return agg_err_set(err, AGG_ERR, "reject %zu out of place", i);
        raw_end = r->off + len;
        if (check_place(b, "reject", i, r->pos, r->next, &last, err) != AGG_OK)
            return AGG_ERR;
    }
    return AGG_OK;
}

int st_batch_check(const struct st_batch *b, struct agg_err *err)
{
    if (b->nrows > b->cap_rows || b->nrejects > b->cap_rejects || b->nmonths < 0 ||
        b->nmonths > b->cap_months)
        return agg_err_set(err, AGG_ERR, "counts past capacities");
    for (int i = 0; i < b->nmonths; i++) {
        for (int k = 0; k < i; k++) {
            if (b->months[k] == b->months[i])
                return agg_err_set(err, AGG_ERR, "month %d noted twice", b->months[i]);
        }
    }
    if (b->start > b->end)
        return agg_err_set(err, AGG_ERR, "start %" PRIu64 " past end %" PRIu64, b->start,
                           b->end);
    if (b->progress > b->nrows || b->committed + b->rejected + b->skipped != b->progress ||
        b->rejects_stored > b->nrejects || (b->done && b->progress != b->nrows))
        return agg_err_set(err, AGG_ERR,
                           "progress %zu of %zu rows, %zu committed + %zu rejected + %zu "
                           "skipped, %zu of %zu rejects stored, done %d",
                           b->progress, b->nrows, b->committed, b->rejected, b->skipped,
                           b->rejects_stored, b->nrejects, b->done);
    if (check_rows(b, err) != AGG_OK || check_rejects(b, err) != AGG_OK)
        return AGG_ERR;
    return AGG_OK;
}
