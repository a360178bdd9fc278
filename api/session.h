/*
 * api/session.h — bearer-token checks for HTTP requests, without blocking the loop.
 *
 * Place: HTTP handlers (ingest, API) -> [session: cache, else a job] -> api/auth.c.
 * Threads: event-loop thread; lookups run on job threads.
 * Ownership: borrows the job runner; the callback's <who> is borrowed for the call.
 * Traps: answers are cached (30 s when valid, 5 s when not) keyed by the token's
 *        hash, so a revoked token may work for up to 30 s more. While PostgreSQL
 *        cannot answer, a token it last said valid stays valid (api/token_cache.h
 *        says how long); any other gets AGG_EDB, at once.
 */
#ifndef AGGD_API_SESSION_H
#define AGGD_API_SESSION_H

#include "api/auth.h"
#include "store/jobs.h"

struct api_sessions;

/* <status>: AGG_OK (valid; <who> filled), AGG_ENOTFOUND (no valid token: 401),
 * AGG_EDB (cannot check now: 503 with Retry-After; PostgreSQL is unreachable and the
 * token was not seen valid just before). */
typedef void (*api_session_cb)(void *arg, int status, const struct api_principal *who);

/* Caller owns the result: api_sessions_free(). <jobs> is borrowed until then. */
struct api_sessions *api_sessions_new(struct st_jobs *jobs, struct agg_err *err);
void api_sessions_free(struct api_sessions *s);

/* Checks the "Bearer <token>" in <authorization> (may be NULL) for <scope>; calls
 * <cb> right away when it can, else once a job thread has looked the token up. */
void api_session_check(struct api_sessions *s, const char *authorization, const char *scope,
                       api_session_cb cb, void *arg);

/* Drops the cached answer for the bearer token in <authorization> (after it was
 * revoked), so that its next use is looked up again. */
void api_session_forget(struct api_sessions *s, const char *authorization);

#endif
