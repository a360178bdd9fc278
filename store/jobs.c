/*
 * store/jobs.c — job threads with pooled connections.
 *
 * Place: see store/jobs.h.
 * Threads: see store/jobs.h.
 */
#include "store/jobs.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "store/db.h"

struct st_jobs {
    struct event_base *base;
    struct st_pool *pool;
    struct agg_workq *q;
    int statement_timeout_ms; /* 0: the session's own */
};

/* Sets the statement timeout for one job's statements; false when the connection
 * failed and must not be used. */
static bool set_timeout(PGconn *conn, int ms, struct agg_err *err)
{
    char sql[64];

    snprintf(sql, sizeof(sql), "SET statement_timeout = %d", ms);
    return st_db_exec(conn, sql, err) == AGG_OK;
}

static void work(void *arg, void *state, struct agg_work *item)
{
    struct st_jobs *jobs = arg;
    struct st_job *job = (struct st_job *)item;
    struct agg_err err = {0};
    PGconn *conn = NULL;

    (void)state;
    if (st_pool_get(jobs->pool, &conn, &err) != AGG_OK)
        conn = NULL;
    if (conn != NULL && jobs->statement_timeout_ms > 0 &&
        !set_timeout(conn, jobs->statement_timeout_ms, &err)) {
        st_pool_put(jobs->pool, conn, true);
        conn = NULL;
    }
    job->conn_broken = false;
    job->fn(job, conn, &err);
    if (conn == NULL)
        return;
    /* the pool is shared with writers and rules, whose statements may run longer */
    if (jobs->statement_timeout_ms > 0 && !job->conn_broken &&
        st_db_exec(conn, "RESET statement_timeout", NULL) != AGG_OK)
        job->conn_broken = true;
    st_pool_put(jobs->pool, conn, job->conn_broken);
}

static void done(void *arg, struct agg_work *item)
{
    struct st_job *job = (struct st_job *)item;

    (void)arg;
    job->done(job);
}

static const struct agg_workq_ops jobs_ops = {NULL, NULL, work, done};

struct st_jobs *st_jobs_new(struct event_base *base, struct st_pool *pool, int threads,
                            struct agg_err *err)
{
    struct st_jobs *jobs = agg_calloc(1, sizeof(*jobs));

    if (jobs == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    jobs->base = base;
    jobs->pool = pool;
    jobs->q = agg_workq_new(base, threads, &jobs_ops, jobs, err);
    if (jobs->q == NULL) {
        free(jobs);
        return NULL;
    }
    return jobs;
}

void st_jobs_free(struct st_jobs *jobs)
{
    if (jobs == NULL)
        return;
    agg_workq_stop(jobs->q, 2000);
    agg_workq_free(jobs->q);
    free(jobs);
}

struct event_base *st_jobs_base(const struct st_jobs *jobs)
{
    return jobs->base;
}

void st_jobs_set_statement_timeout(struct st_jobs *jobs, int ms)
{
    jobs->statement_timeout_ms = ms > 0 ? ms : 0;
}

void st_jobs_run(struct st_jobs *jobs, struct st_job *job)
{
    agg_workq_submit(jobs->q, &job->work);
}
