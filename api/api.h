/*
 * api/api.h — the JSON API under /api/v1 (DESIGN.md "HTTP").
 *
 * Place: server.c -> [api: routes, auth, roles, validation] -> job threads -> PostgreSQL;
 *        the live tail hangs off the ingest pipeline's taps.
 * Threads: event-loop thread; SQL and password hashing run on the API's own job threads.
 * Ownership: borrows <http>, <pool>, <sessions> and <pipeline> until api_free().
 * Not here: the request framework (api/req.c), the route table (api/routes.c),
 *           resources (api/resource.c), login (api/login.c), log search and tail
 *           (api/logs.c).
 */
#ifndef AGGD_API_API_H
#define AGGD_API_API_H

#include <stdint.h>

#include <event2/event.h>

#include "api/session.h"
#include "core/http.h"
#include "store/pipeline.h"
#include "store/pool.h"

struct api;

/* What the API takes from the configuration (src/server.c fills it). */
struct api_options {
    int token_ttl_days;         /* auth.token_ttl_days: lifetime of a login's token */
    const char *secrets_key_file; /* secrets.key_file */
    const char *uploads_dir;      /* uploads.dir */
    int64_t uploads_max_bytes;    /* uploads.max_bytes */
};

/* Registers every /api/v1 route on <http>. <opts> is read during the call only.
 * <pipeline> may be NULL (no live tail).
 * Caller owns the result: api_free(). NULL + <err> on failure. */
struct api *api_new(struct event_base *base, struct agg_http *http,
                    const struct api_options *opts, struct st_pool *pool,
                    struct api_sessions *sessions, struct st_pipeline *pipeline,
                    struct agg_err *err);

/* Ends live tails, lets running jobs answer, frees. Accepts NULL. */
void api_free(struct api *a);

#endif
