/*
 * rules/engine.h — the alert engine inside `aggd serve`: rules loaded and reloaded,
 * aggregates fed from the ingest path, evaluation on a timer, the lifecycle carried
 * out in PostgreSQL, escalation passes and the notification dispatcher.
 *
 * Place: st_pipeline_tap -> rl_aggs -> [engine: eval timer -> lifecycle -> alerts]
 *        -> outbox -> dispatch (DESIGN.md, Data flow and Rules; docs/alerts.md).
 * Threads: the event-loop thread; every query runs on the engine's own job thread,
 *          so the loop never waits on PostgreSQL.
 * Ownership: borrows <opts>->notify, <pool>, <pipeline> and <metrics> until
 *            rl_engine_free().
 * Traps: a rule's in-memory state changes only once the database has it, and a rule
 *        with a query in flight is not evaluated: a failed write is retried at the
 *        next tick. Free the engine before the pipeline and the pool.
 */
#ifndef AGGD_RULES_ENGINE_H
#define AGGD_RULES_ENGINE_H

#include <stdint.h>

#include <event2/event.h>

#include "store/pipeline.h"
#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"
#include "store/pool.h"

struct rl_engine;

/* What the engine reads of the configuration; src/server.c fills it. */
struct rl_engine_opts {
    const char *database_url;             /* database.url: LISTEN for rule changes */
    int64_t eval_interval_ms;             /* alerts.eval_interval_ms */
    const struct agg_notify_opts *notify; /* the dispatcher's notify.* keys */
};

/* Starts the engine: loads the rules and their persisted state, taps <pipeline>,
 * listens for rule changes at <opts>->database_url (copied), and starts the timers and
 * the dispatcher. Caller owns the result: rl_engine_free(). NULL + <err> on failure. */
struct rl_engine *rl_engine_new(struct event_base *base, const struct rl_engine_opts *opts,
                                struct st_pool *pool, struct st_pipeline *pipeline,
                                struct agg_metrics *metrics, struct agg_err *err);

/* Stops everything, waits for the queries in flight, untaps the pipeline, frees.
 * NULL is allowed. */
void rl_engine_free(struct rl_engine *e);

/* A reload changed notify.webhook_timeout_ms: the dispatcher's sends and leases. */
void rl_engine_set_notify_timeout(struct rl_engine *e, int64_t timeout_ms);

/* A reload changed alerts.eval_interval_ms: evaluate every <eval_interval_ms> from now. */
void rl_engine_set_interval(struct rl_engine *e, int64_t eval_interval_ms);

#endif
