/*
 * store/batch.h — rows on their way to one COPY, with what a reject needs.
 *
 * Place: pipeline (loop thread) fills a batch -> writer thread COPYs it -> back to
 *        the loop, which reuses it.
 * Threads: one owner at a time; ownership moves with st_writer_submit() and the
 *          writer's done callback.
 * Ownership: the batch owns its buffers.
 */
#ifndef AGGD_STORE_BATCH_H
#define AGGD_STORE_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/record.h"
#include "core/workq.h"
#include "store/copy.h"

struct st_row {
    uint64_t pos, next;  /* the row's spool record: [pos, next) */
    size_t copy_off;     /* the row's first byte in copy */
    size_t raw_off;      /* peer then raw bytes in raw */
    uint32_t raw_len;
    uint16_t peer_len;
    uint8_t transport;   /* enum agg_transport */
    bool refused;        /* set by the writer: PostgreSQL refused it, in ingest_rejects */
    int month;           /* agg_time_month_of_us(created_at) */
    int64_t received_us;
};

/* An event that could not be decoded, stored in ingest_rejects with the batch. */
struct st_reject {
    uint64_t pos, next; /* the reject's spool record */
    size_t off; /* peer, then reason, then raw bytes, in raw */
    uint32_t raw_len;
    uint16_t peer_len;
    uint16_t why_len;
    uint8_t transport;
    int64_t received_us;
};

struct st_batch {
    struct agg_work work; /* first: the writer's queue link */
    uint64_t seq;
    struct agg_buf copy; /* binary COPY tuples, in order, without header and trailer */
    struct agg_buf raw;  /* per row: peer, then the input as received */
    struct st_row *rows;
    size_t nrows, cap_rows;
    int *months; /* year * 12 + month - 1 of every row's created_at, distinct */
    int nmonths, cap_months;
    struct st_reject *rejects;
    size_t nrejects, cap_rejects;
    int64_t opened_us;
    bool replayed;       /* rebuilt from the spool: rows may already be committed */
    uint64_t start, end; /* spool positions covered: [start, end) */
    uint64_t prefix;     /* every position before it was committed when submitted */
    const char *stream;  /* the spool's checkpoint stream name; NULL: no spool */
    /* set by the writer */
    bool done;           /* every row committed or rejected */
    size_t progress;     /* rows [0, progress) are settled */
    size_t committed;    /* rows in system_logs */
    size_t rejected;     /* rows PostgreSQL refused, now in ingest_rejects */
    size_t skipped;      /* replayed rows found already committed */
    size_t rejects_stored; /* rejects [0, rejects_stored) are in ingest_rejects */
};

/* Caller owns the result: st_batch_free(). */
struct st_batch *st_batch_new(void);
void st_batch_free(struct st_batch *b);
/* Empties <b> for reuse, keeping its memory. */
void st_batch_reset(struct st_batch *b);

/* Appends <rec> as a row stored with <created_us> (and <original_us> kept in
 * extra_data unless AGG_TIME_NONE), remembering transport, peer and receive time
 * for a possible reject. AGG_ENOMEM leaves the batch as it was. */
int st_batch_add(struct st_batch *b, const struct agg_record *rec, int64_t created_us,
                 int64_t original_us, enum agg_transport transport, const char *peer,
                 int64_t received_us, struct st_copy_scratch *scratch);

/* The spool record of row <i> (or, with <reject>, of reject <i>) into <out>. */
int st_batch_record(const struct st_batch *b, size_t i, bool reject, struct agg_buf *out);

/* Adds a row or reject read back from the spool (a st_batch_record() image) at
 * positions [<pos>, <next>). AGG_EINVAL for a record that is not one. */
int st_batch_add_record(struct st_batch *b, const void *rec, size_t len, uint64_t pos,
                        uint64_t next);

/* Sets the spool positions of the newest row (or reject) and widens [start, end). */
void st_batch_place_last(struct st_batch *b, bool reject, uint64_t pos, uint64_t next);

/* Removes the newest row (or reject): undoes an add whose spooling failed. */
void st_batch_drop_last(struct st_batch *b, bool reject);

/* Adds an event that could not be decoded: stored in ingest_rejects with <why>. */
int st_batch_add_reject(struct st_batch *b, enum agg_transport transport, const char *peer,
                        int64_t received_us, const char *why, const char *raw, size_t raw_len);

/* True when the batch holds nothing to write. */
static inline bool st_batch_is_empty(const struct st_batch *b)
{
    return b->nrows == 0 && b->nrejects == 0;
}

/* As st_batch_add, for a row already encoded as the binary COPY tuple <tuple>[<len>]
 * whose created_at falls in <month>. AGG_EINVAL when it is not one (st_copy_is_tuple). */
int st_batch_add_copy(struct st_batch *b, const char *tuple, size_t len, int month,
                      enum agg_transport transport, const char *peer, int64_t received_us,
                      const char *raw, size_t raw_len);

/* Appends the new COPY tuple of row <i>, given its current tuple <row>[<len>], to <out>.
 * AGG_OK, or an error that st_batch_rewrite returns. */
typedef int (*st_batch_rewrite_fn)(void *arg, size_t i, const char *row, size_t len,
                                   struct agg_buf *out);

/* Replaces the COPY tuples of rows [<lo>, <hi>) by what <fn> makes of each, building the
 * new tuples in <scratch> (caller's, swapped with the batch's: it gets the old buffer
 * back). On error the batch is as it was. */
int st_batch_rewrite(struct st_batch *b, size_t lo, size_t hi, st_batch_rewrite_fn fn,
                     void *arg, struct agg_buf *scratch);

/* Row <i>'s COPY tuple: <len> bytes at the returned pointer. */
const char *st_batch_row(const struct st_batch *b, size_t i, size_t *len);
/* COPY tuples of rows [<lo>, <hi>), to be sent between st_copy_header and
 * st_copy_trailer. */
const char *st_batch_range(const struct st_batch *b, size_t lo, size_t hi, size_t *len);

/* Invariant validator for tests: AGG_OK, or AGG_ERR with what is wrong in <err>.
 * Checks row tuples (one binary COPY tuple each, contiguous), raw slices, months, spool
 * positions and the writer's counters. Walks every byte: tests only. */
int st_batch_check(const struct st_batch *b, struct agg_err *err);

#endif
