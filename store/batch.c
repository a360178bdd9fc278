/*
 * store/batch.c — the batch container.
 *
 * Place: see store/batch.h.
 * Threads: single owner.
 */
#include "store/batch.h"

#include <stdlib.h>

#include "src/alloc.h"

struct st_batch *st_batch_new(void)
{
    struct st_batch *b = agg_calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    ing_buf_init(&b->copy);
    ing_buf_init(&b->raw);
    return b;
}

void st_batch_free(struct st_batch *b)
{
    if (b == NULL)
        return;
    ing_buf_clear(&b->copy);
    ing_buf_clear(&b->raw);
    free(b->rows);
    free(b->months);
    free(b->rejects);
    free(b);
}

void st_batch_reset(struct st_batch *b)
{
    ing_buf_reset(&b->copy);
    ing_buf_reset(&b->raw);
    b->nrows = 0;
    b->nmonths = 0;
    b->nrejects = 0;
    b->rejects_stored = 0;
    b->opened_us = 0;
    b->done = false;
    b->progress = 0;
    b->committed = 0;
    b->rejected = 0;
}

/* Grows the array at *<p> (element size <size>, capacity *<cap>) to hold <need>. */
static int grow(void **p, size_t size, size_t *cap, size_t need)
{
    size_t n = *cap ? *cap : 16;
    void *q;

    if (need <= *cap)
        return AGG_OK;
    while (n < need)
        n *= 2;
    q = agg_realloc(*p, n * size);
    if (q == NULL)
        return AGG_ENOMEM;
    *p = q;
    *cap = n;
    return AGG_OK;
}

int st_batch_month_of(int64_t us)
{
    int64_t days = us >= 0 ? us / (86400 * ING_US_PER_SEC)
                           : -((-us + 86400 * ING_US_PER_SEC - 1) / (86400 * ING_US_PER_SEC));
    int64_t y;
    unsigned m, d;

    ing_civil_from_days(days, &y, &m, &d);
    return (int)(y * 12 + m - 1);
}

static int note_month(struct st_batch *b, int month)
{
    size_t cap = (size_t)b->cap_months;

    for (int i = 0; i < b->nmonths; i++) {
        if (b->months[i] == month)
            return AGG_OK;
    }
    if (grow((void **)&b->months, sizeof(*b->months), &cap, (size_t)b->nmonths + 1) != AGG_OK)
        return AGG_ENOMEM;
    b->cap_months = (int)cap;
    b->months[b->nmonths++] = month;
    return AGG_OK;
}

int st_batch_add(struct st_batch *b, const struct ing_record *rec, int64_t created_us,
                 int64_t original_us, enum ing_transport transport, const char *peer,
                 int64_t received_us, struct st_copy_scratch *scratch)
{
    size_t peer_len = peer != NULL ? strnlen(peer, UINT16_MAX) : 0;
    size_t raw_len = rec->raw.p != NULL ? rec->raw.len : 0;
    size_t copy_mark = b->copy.len, raw_mark = b->raw.len;
    struct st_row *row;

    if (raw_len > UINT32_MAX)
        raw_len = UINT32_MAX;
    if (grow((void **)&b->rows, sizeof(*b->rows), &b->cap_rows, b->nrows + 1) != AGG_OK ||
        note_month(b, st_batch_month_of(created_us)) != AGG_OK ||
        st_copy_encode(&b->copy, rec, created_us, original_us, scratch) != AGG_OK ||
        ing_buf_append(&b->raw, peer, peer_len) != AGG_OK ||
        ing_buf_append(&b->raw, rec->raw.p, raw_len) != AGG_OK) {
        b->copy.len = copy_mark;
        b->raw.len = raw_mark;
        return AGG_ENOMEM;
    }
    row = &b->rows[b->nrows++];
    row->copy_off = copy_mark;
    row->raw_off = raw_mark;
    row->raw_len = (uint32_t)raw_len;
    row->peer_len = (uint16_t)peer_len;
    row->transport = (uint8_t)transport;
    row->received_us = received_us;
    return AGG_OK;
}

int st_batch_add_reject(struct st_batch *b, enum ing_transport transport, const char *peer,
                        int64_t received_us, const char *why, const char *raw, size_t raw_len)
{
    size_t peer_len = peer != NULL ? strnlen(peer, UINT16_MAX) : 0;
    size_t why_len = strnlen(why, UINT16_MAX);
    size_t mark = b->raw.len;
    struct st_reject *r;

    if (raw_len > UINT32_MAX)
        raw_len = UINT32_MAX;
    if (grow((void **)&b->rejects, sizeof(*b->rejects), &b->cap_rejects, b->nrejects + 1) !=
            AGG_OK ||
        ing_buf_append(&b->raw, peer, peer_len) != AGG_OK ||
        ing_buf_append(&b->raw, why, why_len) != AGG_OK ||
        ing_buf_append(&b->raw, raw, raw_len) != AGG_OK) {
        b->raw.len = mark;
        return AGG_ENOMEM;
    }
    r = &b->rejects[b->nrejects++];
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

const char *st_batch_row(const struct st_batch *b, size_t i, size_t *len)
{
    return st_batch_range(b, i, i + 1, len);
}
