/*
 * store/jobs.h — blocking database work off the event loop.
 *
 * Place: HTTP handlers (token checks, later the API) hand queries to job threads.
 * Threads: st_jobs_run and the done callback on the loop thread; work on a job
 *          thread with a pooled connection.
 * Ownership: a job is the caller's; it is borrowed from st_jobs_run until its done
 *            callback.
 */
#ifndef AGGD_STORE_JOBS_H
#define AGGD_STORE_JOBS_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "core/err.h"
#include "core/workq.h"
#include "store/pool.h"

struct st_job;

/* Runs on a job thread. <conn> is NULL when PostgreSQL could not be reached (<err>
 * says why); the job must then record its own failure. */
typedef void (*st_job_work_fn)(struct st_job *job, PGconn *conn, const struct agg_err *err);
/* Runs on the loop thread afterwards. */
typedef void (*st_job_done_fn)(struct st_job *job);

struct st_job {
    struct agg_work work; /* first: the queue link */
    st_job_work_fn fn;
    st_job_done_fn done;
    bool conn_broken; /* set by fn when the connection must not be reused */
};

struct st_jobs;

/* For work functions: true when <conn> is NULL, after setting *<rc> to AGG_EDB and
 * copying <cerr> (why there is no connection) into <err>; else clears <err>. */
static inline bool st_job_no_conn(PGconn *conn, const struct agg_err *cerr, int *rc,
                                  struct agg_err *err)
{
    *err = (struct agg_err){0};
    if (conn != NULL)
        return false;
    *rc = AGG_EDB;
    if (cerr != NULL)
        *err = *cerr;
    return true;
}

/* <threads> job threads borrowing from <pool> (borrowed until free).
 * Caller owns the result: st_jobs_free(). */
struct st_jobs *st_jobs_new(struct event_base *base, struct st_pool *pool, int threads,
                            struct agg_err *err);
/* Stops after the queued jobs ran; every job's done callback runs. */
void st_jobs_free(struct st_jobs *jobs);

/* The loop the done callbacks run on, for callers that time their jobs. */
struct event_base *st_jobs_base(const struct st_jobs *jobs);

/* Runs every later job's statements under statement_timeout = <ms> (0: the session's
 * default), reset before the connection goes back to the pool. Loop thread, before
 * the first st_jobs_run(). */
void st_jobs_set_statement_timeout(struct st_jobs *jobs, int ms);

void st_jobs_run(struct st_jobs *jobs, struct st_job *job);

#endif
