/*
 * store/writer.h — writer threads: batches in, COPY into system_logs, batches back.
 *
 * Place: pipeline (loop) -> [writer threads] -> PostgreSQL; done batches return to
 *        the loop through a libevent event.
 * Threads: st_writer_submit() and the done callback on the loop thread; the
 *          writing on writer.threads threads, each with one pooled connection.
 * Ownership: takes ownership of a submitted batch; hands it back in the callback.
 * Traps: a batch is retried until it lands: rows PostgreSQL refuses (data and
 *        constraint errors) are isolated and stored in ingest_rejects, anything
 *        else (connection, disk, locks) is retried whole with backoff.
 */
#ifndef AGGD_STORE_WRITER_H
#define AGGD_STORE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include <event2/event.h>

#include "core/err.h"
#include "core/metrics.h"
#include "store/batch.h"
#include "store/pool.h"

struct st_writer;

/* Called on the loop thread with each batch the writer is done with; the callee
 * owns <b> from then on. <b>->done is false only when the writer stopped before the
 * batch could land. */
typedef void (*st_writer_done_fn)(void *arg, struct st_batch *b);

struct st_writer_opts {
    int threads;
    int grace_ms;  /* how long st_writer_stop() lets queued batches land */
};

/* Starts <opts>->threads writers borrowing connections from <pool> (borrowed until
 * st_writer_free). Caller owns the result: st_writer_free(). */
struct st_writer *st_writer_new(struct event_base *base, struct st_pool *pool,
                                const struct st_writer_opts *opts, struct agg_metrics *metrics,
                                st_writer_done_fn done, void *arg, struct agg_err *err);

/* Queues <b> (ownership moves to the writer). Loop thread. Never blocks. */
void st_writer_submit(struct st_writer *w, struct st_batch *b);

/* Batches submitted and not yet handed back. Loop thread. */
size_t st_writer_inflight(const struct st_writer *w);

/* Lets queued batches land for up to grace_ms, then stops the threads; batches not
 * landed come back with done = false. Loop thread; runs the done callbacks. */
void st_writer_stop(struct st_writer *w);
void st_writer_free(struct st_writer *w);

/* Direct writes: a caller with its own thread and connection (file imports) writes a
 * batch the way writer threads do (partitions made on demand, poison rows isolated into
 * ingest_rejects, unknown user ids unlinked), synchronously. Inside every transaction
 * that settles rows or rejects, before its COMMIT, <commit> gets <arg>, the connection,
 * the spool position <to> where the last settled item ends (st_batch_place_last), and
 * how many rows it committed and how many items it stored in ingest_rejects; anything
 * but AGG_OK (with <err>) rolls that transaction back. Rows are settled left to
 * right; the decode rejects all at once, with the transaction of the batch's last rows
 * (or alone, after them): a caller that wants every transaction to settle a prefix of
 * its input puts rejects only after the rows of a batch. */
typedef int (*st_writer_commit_fn)(void *arg, PGconn *conn, uint64_t to, size_t rows,
                                   size_t rejects, struct agg_err *err);

struct st_writer_direct;

/* Caller owns the result: st_writer_direct_free(). NULL when out of memory. */
struct st_writer_direct *st_writer_direct_new(void);
void st_writer_direct_free(struct st_writer_direct *d);

/* Writes <b> (no spool stream) on <conn> (borrowed for the call), calling <commit> in
 * each transaction. AGG_OK when every row and reject is settled (b->done); AGG_EDB +
 * <err> when the database failed: what committed stays committed (b->progress says
 * how far), the caller decides whether to retry. */
int st_writer_direct_write(struct st_writer_direct *d, PGconn *conn, struct st_batch *b,
                           st_writer_commit_fn commit, void *arg, struct agg_err *err);

#endif
