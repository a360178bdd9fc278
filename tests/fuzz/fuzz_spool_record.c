/*
 * tests/fuzz/fuzz_spool_record.c — libFuzzer target for the spool record of a batch row
 * or reject (st_batch_add_record, the decoder replay and read-back go through).
 *
 * Input: one mode octet, then either (mode bit 0 clear) one record, or (set) a batch
 * read from bytes: records each preceded by a little-endian u32 length, decoded in turn
 * into one batch at growing positions, as the pipeline reads spilled records back.
 * Checks: a record is taken (AGG_OK) or refused (AGG_EINVAL), never anything else;
 * a refused one leaves the batch as it was; st_batch_check() holds after each; a taken
 * one encodes (st_batch_record) to bytes that decode again and encode to the same
 * bytes, and to the input itself unless the input held what the format normalises (a
 * NUL in the peer or reason, a month on a reject, a row as COPY text of older builds,
 * spooled again as a binary tuple).
 * Seeds: scripts/test.sh writes a row, a reject and a two-record batch.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_spool_record: check failed: %s (line %d)\n", #cond, __LINE__);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum { HEAD = 24, KIND_ROW_TEXT = 1, KIND_REJECT = 2 };

static void check_batch(const struct st_batch *b)
{
    struct agg_err err = {0};

    if (st_batch_check(b, &err) != AGG_OK) {
        fprintf(stderr, "fuzz_spool_record: st_batch_check: %s\n", err.msg);
        abort();
    }
}

static uint32_t le(const uint8_t *p, int n)
{
    uint32_t v = 0;

    for (int i = 0; i < n; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

/* Whether encoding the decoded <rec> must give back exactly its bytes. */
static bool canonical(const uint8_t *rec)
{
    size_t peer = le(rec + 2, 2), text = le(rec + 16, 4);

    if (rec[0] == KIND_ROW_TEXT || memchr(rec + HEAD, '\0', peer) != NULL)
        return false;
    if (rec[0] != KIND_REJECT)
        return true;
    return le(rec + 12, 4) == 0 && memchr(rec + HEAD + peer, '\0', text) == NULL;
}

/* Decodes <rec>[<len>] into <b> at [<pos>, <pos> + 1 + len) and checks what came of it. */
static void one(struct st_batch *b, const uint8_t *rec, size_t len, uint64_t pos,
                struct agg_buf *out)
{
    size_t nrows = b->nrows, nrejects = b->nrejects, copy = b->copy.len, raw = b->raw.len;
    int rc = st_batch_add_record(b, rec, len, pos, pos + 1 + len);
    struct st_batch *again;
    struct agg_buf back;
    bool reject;

    CHECK(rc == AGG_OK || rc == AGG_EINVAL);
    check_batch(b);
    if (rc != AGG_OK) {
        CHECK(b->nrows == nrows && b->nrejects == nrejects && b->copy.len == copy &&
              b->raw.len == raw);
        return;
    }
    reject = b->nrejects > nrejects;
    CHECK(reject ? b->nrows == nrows && b->nrejects == nrejects + 1
                 : b->nrows == nrows + 1 && b->nrejects == nrejects);
    CHECK(st_batch_record(b, reject ? b->nrejects - 1 : b->nrows - 1, reject, out) == AGG_OK);
    CHECK(!canonical(rec) || (out->len == len && memcmp(out->data, rec, len) == 0));
    again = st_batch_new();
    CHECK(again != NULL);
    agg_buf_init(&back);
    CHECK(st_batch_add_record(again, out->data, out->len, 1, 2) == AGG_OK);
    check_batch(again);
    CHECK(st_batch_record(again, 0, reject, &back) == AGG_OK);
    CHECK(back.len == out->len && memcmp(back.data, out->data, back.len) == 0);
    agg_buf_clear(&back);
    st_batch_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct st_batch *b;
    struct agg_buf out;
    uint64_t pos = 0;

    if (size < 1)
        return 0;
    b = st_batch_new();
    CHECK(b != NULL);
    agg_buf_init(&out);
    if ((data[0] & 1) == 0) {
        one(b, data + 1, size - 1, 0, &out);
    } else {
        size_t at = 1;

        while (size - at >= 4) {
            size_t len = le(data + at, 4);

            at += 4;
            if (len > size - at)
                len = size - at;
            one(b, data + at, len, pos, &out);
            pos += 1 + len;
            at += len;
        }
    }
    agg_buf_clear(&out);
    st_batch_free(b);
    return 0;
}
