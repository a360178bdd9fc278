/*
 * store/jobs.c — job threads with pooled connections.
 *
 * Place: see store/jobs.h.
 * Threads: see store/jobs.h.
 */
#include "store/jobs.h"

#include <stdlib.h>

#include "core/alloc.h"

struct st_jobs {
    struct st_pool *pool;
    struct agg_workq *q;
};

static void work(void *arg, void *state, struct agg_work *item)
{
    struct st_jobs *jobs = arg;
    struct st_job *job = (struct st_job *)item;
    struct agg_err err = {0};
    PGconn *conn = NULL;

    (void)state;
    if (st_pool_get(jobs->pool, &conn, &err) != AGG_OK)
        conn = NULL;
    job->conn_broken = false;
    job->fn(job, conn, &err);
    if (conn != NULL)
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

void st_jobs_run(struct st_jobs *jobs, struct st_job *job)
{
    agg_workq_submit(jobs->q, &job->work);
}
