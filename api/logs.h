/*
 * api/logs.h — log search (GET logs, runs/{run}/logs), the live tail (GET logs/tail)
 *              and GET partitions: the handlers and the tail's state.
 *
 * Place: api/api.c binds these to their routes -> [logs] -> system_logs, or the
 *        pipeline's tap for the tail.
 * Threads: prepare and the tail on the loop thread; work on job threads.
 * Ownership: the router owns the tail (api_tail_new/api_tail_free) and lends it to each
 *            tail request as r->ctx.
 */
#ifndef AGGD_API_LOGS_H
#define AGGD_API_LOGS_H

#include <stdbool.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "api/req.h"
#include "store/pipeline.h"

struct api_tail; /* opaque: the live tail's clients */

/* Taps <pipeline> and keeps clients alive with a timer on <base>; borrows both until
 * api_tail_free(). Caller owns the result. NULL + <err> on failure. Loop thread. */
struct api_tail *api_tail_new(struct event_base *base, struct st_pipeline *pipeline,
                              struct agg_err *err);
/* Ends every client's stream, unhooks, frees. Accepts NULL. Loop thread. */
void api_tail_free(struct api_tail *t);

/* GET logs */
bool api_logs_prepare(struct api_req *r);
void api_logs_work(struct api_req *r, PGconn *conn);
/* GET pipelines/{id}/runs/{run}/logs */
bool api_run_logs_prepare(struct api_req *r);
void api_run_logs_work(struct api_req *r, PGconn *conn);
/* GET logs/tail: r->ctx is the struct api_tail (NULL: no live tail, 503). */
bool api_tail_prepare(struct api_req *r);
/* GET partitions */
void api_partitions_work(struct api_req *r, PGconn *conn);

#endif
