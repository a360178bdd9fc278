/*
 * api/session.c — cached, asynchronous bearer-token checks.
 *
 * Place: see api/session.h.
 * Threads: event-loop thread; the lookup itself on a job thread.
 * Ownership: each pending lookup owns a copy of the token, wiped when done.
 * Traps: while PostgreSQL cannot be reached, one lookup at a time probes it (the
 *        others answer at once from the cache, or 503): without that, each request
 *        would queue a job that waits out the connect timeout. A lookup that has no
 *        answer within LOOKUP_DEADLINE_S (PostgreSQL hangs) is answered as if it were
 *        down; its job runs on and is freed when it ends.
 */
#include "api/session.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>
#include <sodium.h>

#include "api/token_cache.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/time.h"

#define SCOPE_SIZE 16
/* A lookup without an answer by then counts as PostgreSQL being down (it hangs). */
#define LOOKUP_DEADLINE_S 10

struct api_sessions {
    struct st_jobs *jobs;
    struct api_token_cache *cache;
    bool db_down; /* the last lookup could not reach PostgreSQL */
    bool probing; /* a lookup is out while db_down */
};

struct lookup {
    struct st_job job; /* first */
    struct api_sessions *s;
    char token[API_AUTH_TOKEN_SIZE + 1];
    char hash[API_AUTH_TOKEN_HASH_SIZE];
    char scope[SCOPE_SIZE];
    api_session_cb cb; /* NULL for a probe nobody waits for, or once answered late */
    struct event *deadline;
    void *arg;
    bool probe;
    int status;
    struct api_principal who;
    char why[AGG_ERR_MSG_MAX];
};

struct api_sessions *api_sessions_new(struct st_jobs *jobs, struct agg_err *err)
{
    struct api_sessions *s = agg_calloc(1, sizeof(*s));

    if (s == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    s->jobs = jobs;
    s->cache = api_token_cache_new(API_TOKEN_CACHE_SIZE, err);
    if (s->cache == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

void api_sessions_free(struct api_sessions *s)
{
    if (s == NULL)
        return;
    api_token_cache_free(s->cache);
    free(s);
}

static void lookup_work(struct st_job *job, PGconn *conn, const struct agg_err *cerr)
{
    struct lookup *l = (struct lookup *)job;
    struct agg_err err = {0};

    if (conn == NULL) {
        l->status = AGG_EDB;
        snprintf(l->why, sizeof(l->why), "%s", cerr->msg);
        return;
    }
    l->status = api_auth_lookup_token(conn, l->token, l->scope, &l->who, &err);
    if (l->status != AGG_OK && l->status != AGG_ENOTFOUND) {
        l->status = AGG_EDB;
        job->conn_broken = PQstatus(conn) != CONNECTION_OK;
    }
    snprintf(l->why, sizeof(l->why), "%s", err.msg);
}

/* Notes whether PostgreSQL answered <l>, logging the moments it stops and starts. */
static void note_database(struct api_sessions *s, const struct lookup *l)
{
    bool down = l->status == AGG_EDB;

    if (down && !s->db_down)
        AGG_LOG_WARN("auth", "could not check a bearer token: %s; until PostgreSQL answers, "
                     "tokens seen valid before are accepted and others get 503", l->why);
    else if (down)
        AGG_LOG_DEBUG("auth", "could not check a bearer token: %s", l->why);
    else if (s->db_down)
        AGG_LOG_INFO("auth", "PostgreSQL answers token checks again");
    s->db_down = down;
    if (l->probe)
        s->probing = false;
}

static void lookup_done(struct st_job *job)
{
    struct lookup *l = (struct lookup *)job;
    struct api_sessions *s = l->s;
    int status = l->status;

    note_database(s, l);
    if (status != AGG_EDB)
        api_token_cache_put(s->cache, l->hash, l->scope, status, &l->who, agg_time_mono_us());
    else if (api_token_cache_get_stale(s->cache, l->hash, l->scope, time(NULL), &l->who) ==
             AGG_OK)
        status = AGG_OK; /* seen valid before the database went away */
    if (l->status == AGG_ENOTFOUND)
        AGG_LOG_INFO("auth", "refused a bearer token: %s", l->why);
    if (l->cb != NULL)
        l->cb(l->arg, status, status == AGG_OK ? &l->who : NULL);
    if (l->deadline != NULL)
        event_free(l->deadline);
    sodium_memzero(l, sizeof(*l));
    free(l);
}

/* <l> has had no answer in time: its waiter gets what an outage would give it. */
static void on_lookup_late(evutil_socket_t fd, short what, void *arg)
{
    struct lookup *l = arg;
    struct api_sessions *s = l->s;
    api_session_cb cb = l->cb;
    struct api_principal who;
    int status;

    (void)fd;
    (void)what;
    if (!s->db_down)
        AGG_LOG_WARN("auth", "could not check a bearer token: no answer from PostgreSQL within "
                     "%d s; until it answers, tokens seen valid before are accepted and others "
                     "get 503", LOOKUP_DEADLINE_S);
    s->db_down = true;
    if (cb == NULL)
        return;
    l->cb = NULL; /* lookup_done must not answer again */
    status = api_token_cache_get_stale(s->cache, l->hash, l->scope, time(NULL), &who) == AGG_OK
                 ? AGG_OK
                 : AGG_EDB;
    cb(l->arg, status, status == AGG_OK ? &who : NULL);
}

/* The token of "Bearer <token>", or NULL when <authorization> is not one. */
static const char *bearer(const char *authorization)
{
    const char *token;

    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return NULL;
    token = authorization + 7;
    while (*token == ' ')
        token++;
    return token;
}

void api_session_forget(struct api_sessions *s, const char *authorization)
{
    const char *token = bearer(authorization);
    char hash[API_AUTH_TOKEN_HASH_SIZE];

    if (!api_auth_is_token_shaped(token))
        return;
    api_auth_token_hash(token, hash);
    api_token_cache_forget(s->cache, hash);
}

/* Looks <token> up on a job thread; <cb> NULL for a probe. AGG_ENOMEM when it cannot. */
static int start_lookup(struct api_sessions *s, const char *token, const char *hash,
                        const char *scope, api_session_cb cb, void *arg)
{
    struct lookup *l = agg_calloc(1, sizeof(*l));
    struct timeval tv = {LOOKUP_DEADLINE_S, 0};

    if (l == NULL)
        return AGG_ENOMEM;
    l->deadline = evtimer_new(st_jobs_base(s->jobs), on_lookup_late, l);
    if (l->deadline == NULL || evtimer_add(l->deadline, &tv) != 0) {
        if (l->deadline != NULL)
            event_free(l->deadline);
        free(l);
        return AGG_ENOMEM;
    }
    l->job.fn = lookup_work;
    l->job.done = lookup_done;
    l->s = s;
    snprintf(l->token, sizeof(l->token), "%s", token);
    memcpy(l->hash, hash, sizeof(l->hash));
    snprintf(l->scope, sizeof(l->scope), "%s", scope);
    l->cb = cb;
    l->arg = arg;
    l->probe = cb == NULL;
    if (l->probe)
        s->probing = true;
    st_jobs_run(s->jobs, &l->job);
    return AGG_OK;
}

void api_session_check(struct api_sessions *s, const char *authorization, const char *scope,
                       api_session_cb cb, void *arg)
{
    const char *token = bearer(authorization);
    char hash[API_AUTH_TOKEN_HASH_SIZE];
    struct api_principal who;
    int status;

    if (!api_auth_is_token_shaped(token) || strlen(scope) >= SCOPE_SIZE) {
        cb(arg, AGG_ENOTFOUND, NULL);
        return;
    }
    api_auth_token_hash(token, hash);
    status = api_token_cache_get(s->cache, hash, scope, agg_time_mono_us(), &who);
    if (status == AGG_EAGAIN && s->db_down) {
        /* answer now; one lookup at a time tells when PostgreSQL is back */
        status = api_token_cache_get_stale(s->cache, hash, scope, time(NULL), &who);
        if (!s->probing)
            (void)start_lookup(s, token, hash, scope, NULL, NULL);
    }
    if (status == AGG_EAGAIN && start_lookup(s, token, hash, scope, cb, arg) != AGG_OK)
        status = AGG_EDB;
    if (status != AGG_EAGAIN)
        cb(arg, status, status == AGG_OK ? &who : NULL);
}
