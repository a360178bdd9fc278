/*
 * api/token_cache.h — the last verdict PostgreSQL gave on each bearer token, and when
 *                     it may be served without asking again.
 *
 * Place: api/session.c asks here before it asks PostgreSQL, and tells it each answer.
 * Threads: one thread at a time (the event loop); time comes in as arguments.
 * Ownership: verdicts are copies; principals are copied out.
 * Traps: bounded (API_TOKEN_CACHE_SIZE, least recently used out first), and a verdict
 *        that a token is not valid never pushes out one that a token is, so clients
 *        sending random tokens cannot evict the valid ones an outage relies on.
 *        A revoked token stays valid here until its verdict is refreshed: 30 s while
 *        PostgreSQL answers, and during an outage until it returns, when the token
 *        was seen valid in the API_TOKEN_CACHE_STALE_WINDOW_S before PostgreSQL's last
 *        answer.
 */
#ifndef AGGD_API_TOKEN_CACHE_H
#define AGGD_API_TOKEN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/auth.h"
#include "core/err.h"

#define API_TOKEN_CACHE_SIZE 1024
/* How long a verdict is served without asking PostgreSQL again. */
#define API_TOKEN_CACHE_VALID_S   30
#define API_TOKEN_CACHE_INVALID_S 5
/* While PostgreSQL cannot answer, a token seen valid at most this long before its last
 * answer (on any token) stays valid, until its own expires_at. */
#define API_TOKEN_CACHE_STALE_WINDOW_S (15 * 60)

struct api_token_cache;

/* Room for <capacity> verdicts (> 0), allocated now. Caller owns the result:
 * api_token_cache_free(). NULL + <err> when out of memory. */
struct api_token_cache *api_token_cache_new(size_t capacity, struct agg_err *err);

/* Wipes and frees <c>; NULL is allowed. */
void api_token_cache_free(struct api_token_cache *c);

/* The fresh verdict on the token of SHA-256 <hash> for <scope> at <now_us> (monotonic
 * clock): AGG_OK (valid, *<who> filled), AGG_ENOTFOUND (not valid), or AGG_EAGAIN when
 * there is none younger than API_TOKEN_CACHE_VALID_S (valid) or _INVALID_S (not). */
int api_token_cache_get(struct api_token_cache *c, const char *hash, const char *scope,
                        int64_t now_us, struct api_principal *who);

/* For when PostgreSQL cannot answer: AGG_OK and *<who> when the last verdict on <hash>
 * for <scope> said valid, was given at most API_TOKEN_CACHE_STALE_WINDOW_S before
 * PostgreSQL's last answer, and the token's expires_at has not passed at <now_s> (Unix
 * seconds); else AGG_EDB (we cannot tell). A verdict that a token is not valid is never
 * served stale. */
int api_token_cache_get_stale(struct api_token_cache *c, const char *hash, const char *scope,
                              int64_t now_s, struct api_principal *who);

/* Remembers PostgreSQL's answer <status> (AGG_OK with <who>, or AGG_ENOTFOUND, <who>
 * ignored) on <hash> for <scope> at <now_us>, replacing the last one. When full, a
 * valid verdict takes the place of the least recently used verdict that is not valid,
 * else of the least recently used one; a verdict that is not valid takes only the
 * place of another that is not, and is not kept when there is none. */
void api_token_cache_put(struct api_token_cache *c, const char *hash, const char *scope,
                         int status, const struct api_principal *who, int64_t now_us);

/* Forgets every verdict on <hash> (its token was revoked). */
void api_token_cache_forget(struct api_token_cache *c, const char *hash);

/* Verdicts kept. */
size_t api_token_cache_count(const struct api_token_cache *c);

/* Invariant validator for tests. */
bool api_token_cache_check(const struct api_token_cache *c);

#endif
