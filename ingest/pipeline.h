/*
 * ingest/pipeline.h — the loop-side end of ingest: records in, batches to writers.
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
#ifndef AGGD_INGEST_PIPELINE_H
#define AGGD_INGEST_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "ingest/record.h"
#include "src/config.h"
#include "src/metrics.h"
#include "store/batch.h"
#include "store/pool.h"
#include "store/spool.h"

struct ing_pipeline;

/* What each counter counts, per transport (README "HTTP operations" has the same). */
enum ing_count {
    ING_COUNT_RECEIVED = 0, /* events seen = accepted + rejected + dropped; counted by
                             * ing_pipeline_add/_reject/_dropped, never directly */
    ING_COUNT_REJECTED,     /* could not be parsed or decoded; kept in ingest_rejects */
    ING_COUNT_DROPPED,      /* seen, neither spooled nor kept: ing_pipeline_dropped() */
    ING_COUNT_BYTES,        /* bytes read off the wire (HTTP: bodies before decompression) */
    ING_COUNT_OVERSIZED,    /* events over ingest.max_message_bytes (also rejected) */
    ING_COUNT_KINDS,
};

/* Builds the pipeline and its writer threads on <pool>, spooling to <spool> (both
 * borrowed until free). Caller owns the result: ing_pipeline_free(). */
struct ing_pipeline *ing_pipeline_new(struct event_base *base, const struct agg_config *cfg,
                                      struct st_pool *pool, struct st_spool *spool,
                                      struct agg_metrics *metrics, struct agg_err *err);
void ing_pipeline_free(struct ing_pipeline *p);

/* Adds one record received over <transport> from <peer> (may be NULL) at
 * <received_us>, and spools it. AGG_EFULL when the spool cannot take it (full, or
 * the disk failed), AGG_ENOMEM: the event was not taken. */
int ing_pipeline_add(struct ing_pipeline *p, const struct ing_record *rec,
                     enum ing_transport transport, const char *peer, int64_t received_us);

/* Keeps an event that could not be decoded, with <why>, for ingest_rejects (and
 * counts it rejected). Fails as ing_pipeline_add. */
int ing_pipeline_reject(struct ing_pipeline *p, enum ing_transport transport, const char *peer,
                        int64_t received_us, const char *why, const char *raw, size_t len);

/* Counts <n> events or bytes of <kind> for <transport>. */
void ing_pipeline_count(struct ing_pipeline *p, enum ing_transport transport,
                        enum ing_count kind, int64_t n);

/* Counts <n> events of <transport> seen and lost: neither added nor rejected (UDP
 * under backpressure, events the spool could not take and that are not read again). */
void ing_pipeline_dropped(struct ing_pipeline *p, enum ing_transport transport, int64_t n);

/* True while producers should stop reading: the spool cannot take events (full,
 * failing, or the disk is behind). Busy writers are no reason: while they are behind,
 * batches leave memory and are read back from the spool when a writer is free. */
bool ing_pipeline_is_full(const struct ing_pipeline *p);

/* True while the spool cannot take events (at spool.max_bytes, or the disk failed):
 * unlike busy writers, waiting a moment will not help. */
bool ing_pipeline_is_spool_full(const struct ing_pipeline *p);

/* Calls <fn>(<arg>) each time the pipeline stops being full. At most 8. */
int ing_pipeline_on_drain(struct ing_pipeline *p, void (*fn)(void *arg), void *arg);

/* Forgets a callback given to ing_pipeline_on_drain (its owner is going away). */
void ing_pipeline_off_drain(struct ing_pipeline *p, void (*fn)(void *arg), void *arg);

/* Sees each event ing_pipeline_add() accepted, once it is spooled (not replays, not
 * rejects): <rec> is borrowed for the call, <created_us> is the created_at it lands
 * with. Taps run on the loop thread, inline on the ingest path: they must be cheap. */
typedef void (*ing_pipeline_tap_fn)(void *arg, const struct ing_record *rec, int64_t created_us);

/* Adds a tap (at most 4; AGG_EFULL beyond), or removes one given earlier. */
int ing_pipeline_tap(struct ing_pipeline *p, ing_pipeline_tap_fn fn, void *arg);
void ing_pipeline_untap(struct ing_pipeline *p, ing_pipeline_tap_fn fn, void *arg);

/* Called when everything added before ing_pipeline_wait() has landed (<landed>
 * true) or the writers stopped first (false); <refused> of the events added since
 * <from> went to ingest_rejects because PostgreSQL refused them. */
typedef void (*ing_pipeline_wait_fn)(void *arg, bool landed, size_t refused);

/* The spool position after the newest event: pass it, taken before adding, as the
 * <from> of ing_pipeline_wait. */
uint64_t ing_pipeline_tail(const struct ing_pipeline *p);

/* Calls <fn>(<arg>, …) once every event added so far has landed, closing the open
 * batch now rather than after batch.max_ms. May call <fn> before returning. */
int ing_pipeline_wait(struct ing_pipeline *p, uint64_t from, ing_pipeline_wait_fn fn,
                      void *arg);

/* Calls <fn>(<arg>) once everything added so far is durable in the spool (per
 * spool.fsync): the moment an event may be acknowledged. */
int ing_pipeline_sync(struct ing_pipeline *p, void (*fn)(void *arg), void *arg);

/* Replays the spool: every record on disk goes through the writers again (they skip
 * what PostgreSQL already has), as fast as the writers take it. Calls <done>(<arg>)
 * when all is queued; until then ing_pipeline_accepting() is false and nothing else
 * may be added. */
void ing_pipeline_replay(struct ing_pipeline *p, void (*done)(void *arg), void *arg);
bool ing_pipeline_accepting(const struct ing_pipeline *p);

/* Why the pipeline cannot take events now (spool full or failing), "" if it can. */
void ing_pipeline_problem(const struct ing_pipeline *p, char *why, size_t size);

/* Closes the open batch, lets writers land what they can within the grace period,
 * and stops them. */
void ing_pipeline_shutdown(struct ing_pipeline *p);

#endif
