/*
 * store/pipeline.h — the loop-side end of ingest: records in, batches to writers.
 *
 * Place: listeners/decoders -> [pipeline: timestamp policy, spooling, batching,
 *        backpressure, counters] -> store/writer; the spool is replayed through here.
 * Threads: event-loop thread only.
 * Ownership: owns the open batch and the writer; borrows the pool, spool, metrics.
 * Traps: every event is appended to the spool as it is batched; it counts as
 *        accepted only then (AGG_EFULL otherwise, and the caller keeps it). Batches go
 *        to writers in spool order, so the committed prefix of the spool is the end of
 *        the last batch before the first one not yet back. While every writer is
 *        busy and the open batch is at its largest, the batch leaves memory (spilled):
 *        its records are read back from the spool, still in order, once a writer is
 *        free, so a database outage costs spool space, not memory.
 */
#ifndef AGGD_STORE_PIPELINE_H
#define AGGD_STORE_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "core/record.h"
#include "core/config.h"
#include "core/metrics.h"
#include "store/batch.h"
#include "store/pool.h"
#include "store/spool.h"

struct st_pipeline;

/* What each counter counts, per transport (README "HTTP operations" has the same). */
enum st_count {
    ST_COUNT_RECEIVED = 0, /* events seen = accepted + rejected + dropped; counted by
                             * st_pipeline_add/_reject/_dropped, never directly */
    ST_COUNT_REJECTED,     /* could not be parsed or decoded; kept in ingest_rejects */
    ST_COUNT_DROPPED,      /* seen, neither spooled nor kept: st_pipeline_dropped() */
    ST_COUNT_BYTES,        /* bytes read off the wire (HTTP: bodies before decompression) */
    ST_COUNT_OVERSIZED,    /* events over ingest.max_message_bytes (also rejected) */
    ST_COUNT_KINDS,
};

/* What the pipeline reads of the configuration; src/server.c fills it. */
struct st_pipeline_opts {
    struct agg_batch_opts batch;   /* batch.max_rows, batch.max_ms */
    struct agg_writer_opts writer; /* writer.threads, writer.grace_seconds */
    int64_t accept_past_months;    /* partitions.accept_past_months */
};

/* Builds the pipeline and its writer threads on <pool>, spooling to <spool> (both
 * borrowed until free), as <opts> (read during the call) says. Caller owns the result:
 * st_pipeline_free(). */
struct st_pipeline *st_pipeline_new(struct event_base *base, const struct st_pipeline_opts *opts,
                                      struct st_pool *pool, struct st_spool *spool,
                                      struct agg_metrics *metrics, struct agg_err *err);
void st_pipeline_free(struct st_pipeline *p);

/* DESIGN.md "Timestamps" for every way events come in: the created_at of an event
 * stamped <created_us> (AGG_TIME_NONE: none) received at <received_us>, given the
 * window's low end <window_low_us> (st_pipeline_window_low): the receive time when it
 * has none or falls outside [window low, received + 1 day], the original then in
 * *<original_us> (else AGG_TIME_NONE). Pure. */
int64_t st_pipeline_stamp(int64_t created_us, int64_t received_us, int64_t window_low_us,
                          int64_t *original_us);

/* The first instant of the month <accept_past_months> before the month of <now_us>. */
int64_t st_pipeline_window_low(int64_t now_us, int64_t accept_past_months);

/* Adds one record received over <transport> from <peer> (may be NULL) at
 * <received_us>, and spools it. AGG_EFULL when the spool cannot take it (full, or
 * the disk failed), AGG_ENOMEM: the event was not taken. */
int st_pipeline_add(struct st_pipeline *p, const struct agg_record *rec,
                     enum agg_transport transport, const char *peer, int64_t received_us);

/* Keeps an event that could not be decoded, with <why>, for ingest_rejects (and
 * counts it rejected). Fails as st_pipeline_add. */
int st_pipeline_reject(struct st_pipeline *p, enum agg_transport transport, const char *peer,
                        int64_t received_us, const char *why, const char *raw, size_t len);

/* Counts <n> events or bytes of <kind> for <transport>. */
void st_pipeline_count(struct st_pipeline *p, enum agg_transport transport,
                        enum st_count kind, int64_t n);

/* Counts <n> events of <transport> seen and lost: neither added nor rejected (UDP
 * under backpressure, events the spool could not take and that are not read again). */
void st_pipeline_dropped(struct st_pipeline *p, enum agg_transport transport, int64_t n);

/* True while producers should stop reading: the spool cannot take events (full,
 * failing, or the disk is behind). Busy writers are no reason: while they are behind,
 * batches leave memory and are read back from the spool when a writer is free. */
bool st_pipeline_is_full(const struct st_pipeline *p);

/* True while the spool cannot take events (at spool.max_bytes, or the disk failed):
 * unlike busy writers, waiting a moment will not help. */
bool st_pipeline_is_spool_full(const struct st_pipeline *p);

/* Calls <fn>(<arg>) each time the pipeline stops being full. At most 8. */
int st_pipeline_on_drain(struct st_pipeline *p, void (*fn)(void *arg), void *arg);

/* Forgets a callback given to st_pipeline_on_drain (its owner is going away). */
void st_pipeline_off_drain(struct st_pipeline *p, void (*fn)(void *arg), void *arg);

/* Sees each event st_pipeline_add() accepted, once it is spooled (not replays, not
 * rejects): <rec> is borrowed for the call, <created_us> is the created_at it lands
 * with. Taps run on the loop thread, inline on the ingest path: they must be cheap. */
typedef void (*st_pipeline_tap_fn)(void *arg, const struct agg_record *rec, int64_t created_us);

/* Adds a tap (at most 4; AGG_EFULL beyond), or removes one given earlier. */
int st_pipeline_tap(struct st_pipeline *p, st_pipeline_tap_fn fn, void *arg);
void st_pipeline_untap(struct st_pipeline *p, st_pipeline_tap_fn fn, void *arg);

/* Called when everything added before st_pipeline_wait() has landed (<landed>
 * true) or the writers stopped first (false); <refused> of the events added since
 * <from> went to ingest_rejects because PostgreSQL refused them. */
typedef void (*st_pipeline_wait_fn)(void *arg, bool landed, size_t refused);

/* The spool position after the newest event: pass it, taken before adding, as the
 * <from> of st_pipeline_wait. */
uint64_t st_pipeline_tail(const struct st_pipeline *p);

/* Calls <fn>(<arg>, …) once every event added so far has landed, closing the open
 * batch now rather than after batch.max_ms. May call <fn> before returning. */
int st_pipeline_wait(struct st_pipeline *p, uint64_t from, st_pipeline_wait_fn fn,
                      void *arg);

/* Calls <fn>(<arg>) once everything added so far is durable in the spool (per
 * spool.fsync): the moment an event may be acknowledged. */
int st_pipeline_sync(struct st_pipeline *p, void (*fn)(void *arg), void *arg);

/* Replays the spool: every record on disk goes through the writers again (they skip
 * what PostgreSQL already has), as fast as the writers take it. Calls <done>(<arg>)
 * when all is queued; until then st_pipeline_accepting() is false and nothing else
 * may be added. */
void st_pipeline_replay(struct st_pipeline *p, void (*done)(void *arg), void *arg);
bool st_pipeline_accepting(const struct st_pipeline *p);

/* Why the pipeline cannot take events now (spool full or failing), "" if it can. */
void st_pipeline_problem(const struct st_pipeline *p, char *why, size_t size);

/* Closes the open batch, lets writers land what they can within the grace period,
 * and stops them. */
void st_pipeline_shutdown(struct st_pipeline *p);

/* Invariant validator for tests: AGG_OK, or AGG_ERR with what is wrong in <err>:
 * batches in flight in spool order, the committed prefix <= spilled range <= open batch
 * <= tail, waiters sorted and pending, spare batches empty, each transport's received
 * count = accepted + rejected + dropped. Loop thread, outside the pipeline's callbacks. */
int st_pipeline_check(const struct st_pipeline *p, struct agg_err *err);

#endif
