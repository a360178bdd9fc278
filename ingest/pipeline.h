/*
 * ingest/pipeline.h — the loop-side end of ingest: records in, batches to writers.
 *
 * Place: listeners/decoders -> [pipeline: timestamp policy, batching, backpressure,
 *        counters] -> store/writer.
 * Threads: event-loop thread only.
 * Ownership: owns the open batch and the writer; borrows the pool and metrics.
 * Traps: adding never fails for lack of room (producers check ing_pipeline_is_full()
 *        between reads), so an event already read is never dropped; the overshoot
 *        is bounded by one read or one HTTP body.
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

struct ing_pipeline;

enum ing_count {
    ING_COUNT_RECEIVED = 0, /* events seen (accepted + rejected + dropped) */
    ING_COUNT_REJECTED,     /* could not be parsed or decoded */
    ING_COUNT_DROPPED,      /* thrown away under backpressure (UDP only) */
    ING_COUNT_BYTES,        /* bytes read */
    ING_COUNT_OVERSIZED,    /* frames over ingest.max_message_bytes */
    ING_COUNT_KINDS,
};

/* Builds the pipeline and its writer threads on <pool> (borrowed until free).
 * Caller owns the result: ing_pipeline_free(). */
struct ing_pipeline *ing_pipeline_new(struct event_base *base, const struct agg_config *cfg,
                                      struct st_pool *pool, struct agg_metrics *metrics,
                                      struct agg_err *err);
void ing_pipeline_free(struct ing_pipeline *p);

/* Adds one record received over <transport> from <peer> (may be NULL) at
 * <received_us>. AGG_ENOMEM is the only failure. */
int ing_pipeline_add(struct ing_pipeline *p, const struct ing_record *rec,
                     enum ing_transport transport, const char *peer, int64_t received_us);

/* Keeps an event that could not be decoded, with <why>, for ingest_rejects (and
 * counts it rejected). AGG_ENOMEM is the only failure. */
int ing_pipeline_reject(struct ing_pipeline *p, enum ing_transport transport, const char *peer,
                        int64_t received_us, const char *why, const char *raw, size_t len);

/* Counts <n> events or bytes of <kind> for <transport>. */
void ing_pipeline_count(struct ing_pipeline *p, enum ing_transport transport,
                        enum ing_count kind, int64_t n);

/* True while producers should stop reading: the open batch is at its limit and
 * every writer slot is taken. */
bool ing_pipeline_is_full(const struct ing_pipeline *p);

/* Calls <fn>(<arg>) each time the pipeline stops being full. At most 4. */
int ing_pipeline_on_drain(struct ing_pipeline *p, void (*fn)(void *arg), void *arg);

/* Called when everything added before ing_pipeline_wait() has landed (<landed>
 * true) or the writers stopped first (false). */
typedef void (*ing_pipeline_wait_fn)(void *arg, bool landed);

/* Calls <fn>(<arg>, …) once every event added so far has landed, closing the open
 * batch now rather than after batch.max_ms. May call <fn> before returning. */
int ing_pipeline_wait(struct ing_pipeline *p, ing_pipeline_wait_fn fn, void *arg);

/* Closes the open batch, lets writers land what they can within the grace period,
 * and stops them. */
void ing_pipeline_shutdown(struct ing_pipeline *p);

#endif
