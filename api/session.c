/*
 * api/session.c — cached, asynchronous bearer-token checks.
 *
 * Place: see api/session.h.
 * Threads: event-loop thread; the lookup itself on a job thread.
 * Ownership: each pending lookup owns a copy of the token, wiped when done.
 */
#include "api/session.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "src/alloc.h"
#include "src/log.h"

#define CACHE_SIZE 128
#define TTL_VALID_US (30 * INT64_C(1000000))
#define TTL_INVALID_US (5 * INT64_C(1000000))

struct entry {
    char hash[API_AUTH_TOKEN_HASH_SIZE];
    char scope[16];
    int status; /* AGG_OK or AGG_ENOTFOUND */
    struct api_principal who;
    int64_t expires_us;
};

struct api_sessions {
    struct st_jobs *jobs;
    struct entry cache[CACHE_SIZE];
    unsigned next; /* round-robin replacement */
};

struct lookup {
    struct st_job job; /* first */
    struct api_sessions *s;
    char token[API_AUTH_TOKEN_SIZE + 1];
    char hash[API_AUTH_TOKEN_HASH_SIZE];
    char scope[16];
    api_session_cb cb;
    void *arg;
    int status;
    struct api_principal who;
    char why[AGG_ERR_MSG_MAX];
};

static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct api_sessions *api_sessions_new(struct st_jobs *jobs, struct agg_err *err)
{
    struct api_sessions *s = agg_calloc(1, sizeof(*s));

    if (s == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    s->jobs = jobs;
    return s;
}

void api_sessions_free(struct api_sessions *s)
{
    if (s != NULL)
        sodium_memzero(s, sizeof(*s));
    free(s);
}

static struct entry *find(struct api_sessions *s, const char *hash, const char *scope)
{
    int64_t now = mono_us();

    for (int i = 0; i < CACHE_SIZE; i++) {
        struct entry *e = &s->cache[i];

        if (e->expires_us > now && strcmp(e->hash, hash) == 0 && strcmp(e->scope, scope) == 0)
            return e;
    }
    return NULL;
}

static void remember(struct api_sessions *s, const struct lookup *l)
{
    struct entry *e = &s->cache[s->next++ % CACHE_SIZE];

    memcpy(e->hash, l->hash, sizeof(e->hash));
    memcpy(e->scope, l->scope, sizeof(e->scope));
    e->status = l->status;
    e->who = l->who;
    e->expires_us = mono_us() + (l->status == AGG_OK ? TTL_VALID_US : TTL_INVALID_US);
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

static void lookup_done(struct st_job *job)
{
    struct lookup *l = (struct lookup *)job;

    if (l->status != AGG_EDB)
        remember(l->s, l);
    if (l->status == AGG_ENOTFOUND)
        AGG_LOG_INFO("auth", "refused a bearer token: %s", l->why);
    else if (l->status == AGG_EDB)
        AGG_LOG_WARN("auth", "could not check a bearer token: %s", l->why);
    l->cb(l->arg, l->status, l->status == AGG_OK ? &l->who : NULL);
    sodium_memzero(l->token, sizeof(l->token));
    free(l);
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
    return strlen(token) <= API_AUTH_TOKEN_LEN ? token : NULL;
}

void api_session_forget(struct api_sessions *s, const char *authorization)
{
    const char *token = bearer(authorization);
    char hash[API_AUTH_TOKEN_HASH_SIZE];

    if (token == NULL)
        return;
    api_auth_token_hash(token, hash);
    for (int i = 0; i < CACHE_SIZE; i++) {
        if (strcmp(s->cache[i].hash, hash) == 0)
            s->cache[i].expires_us = 0;
    }
}

void api_session_check(struct api_sessions *s, const char *authorization, const char *scope,
                       api_session_cb cb, void *arg)
{
    const char *token = bearer(authorization);
    char hash[API_AUTH_TOKEN_HASH_SIZE];
    struct entry *e;
    struct lookup *l;

    if (token == NULL || strlen(scope) >= sizeof(l->scope)) {
        cb(arg, AGG_ENOTFOUND, NULL);
        return;
    }
    api_auth_token_hash(token, hash);
    e = find(s, hash, scope);
    if (e != NULL) {
        cb(arg, e->status, e->status == AGG_OK ? &e->who : NULL);
        return;
    }
    l = agg_calloc(1, sizeof(*l));
    if (l == NULL) {
        cb(arg, AGG_EDB, NULL);
        return;
    }
    l->job.fn = lookup_work;
    l->job.done = lookup_done;
    l->s = s;
    snprintf(l->token, sizeof(l->token), "%s", token);
    memcpy(l->hash, hash, sizeof(hash));
    snprintf(l->scope, sizeof(l->scope), "%s", scope);
    l->cb = cb;
    l->arg = arg;
    st_jobs_run(s->jobs, &l->job);
}
