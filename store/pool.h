/*
 * store/pool.h — a pool of PostgreSQL sessions shared by writer and job threads.
 *
 * Place: writer threads and the job runner borrow connections here.
 * Threads: any thread except the event loop (connecting blocks).
 * Ownership: the pool owns every connection; callers borrow one until _put().
 * Traps: pre-ping on checkout only after the connection sat idle a while, so a hot
 *        writer does not pay a round trip per batch; PQstatus alone cannot see a
 *        server that went away, the ping can.
 */
#ifndef AGGD_STORE_POOL_H
#define AGGD_STORE_POOL_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "core/err.h"

struct st_pool;

struct st_pool_stats {
    int in_use;
    int idle;
    long long opened;    /* connections opened since start */
    long long recycled;  /* closed for age */
    long long failed;    /* connection attempts that failed */
};

/* A pool of <size> kept connections plus <overflow> temporary ones to <conninfo>
 * (copied), each closed after <recycle_seconds> (0: never). Connects lazily.
 * Caller owns the result: st_pool_free(), once every connection is back. */
struct st_pool *st_pool_new(const char *conninfo, int size, int overflow, int recycle_seconds,
                            struct agg_err *err);
void st_pool_free(struct st_pool *pool);

/* Lends a live connection: AGG_OK; AGG_EAGAIN when size+overflow are all lent;
 * AGG_EDB + <err> when PostgreSQL cannot be reached. Borrowed until st_pool_put(). */
int st_pool_get(struct st_pool *pool, PGconn **out, struct agg_err *err);

/* Returns <conn>. <broken> true closes it (after an error that may have left it in
 * an unknown state) instead of keeping it. */
void st_pool_put(struct st_pool *pool, PGconn *conn, bool broken);

void st_pool_stats(struct st_pool *pool, struct st_pool_stats *out);

#endif
