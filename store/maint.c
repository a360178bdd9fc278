/*
 * store/maint.c — partition maintenance on a timer (store/maint.h, docs/partitions.md).
 *
 * A timer fires at start, then an hour after each pass (a minute after a failed one);
 * each firing hands one maintenance pass to a job thread (never blocking the loop).
 * Several daemons may share a database: the pass itself takes the advisory lock.
 */
#include "store/maint.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/time.h"
#include "store/partitions.h"

#define MAINT_INTERVAL_S 3600
#define MAINT_RETRY_S 60 /* after a failed pass, e.g. PostgreSQL down at start */

struct st_maint {
    struct st_job job; /* first: the queue link */
    struct st_jobs *jobs;
    const struct agg_partitions_opts *parts;
    const struct agg_archive_opts *archive;
    struct st_partitions_opts po; /* this pass's, taken on the loop thread */
    struct event *timer;
    bool running;
    int rc;
    struct st_partitions_result res;
    struct st_partitions_stats stats;
    bool have_stats;
    struct agg_err err;
    _Atomic int64_t *last_run, *last_ok, *archived_bytes, *failed, *counts[2];
};

static void maint_work(struct st_job *job, PGconn *conn, const struct agg_err *cerr)
{
    struct st_maint *m = (struct st_maint *)job;

    m->have_stats = false;
    if (st_job_no_conn(conn, cerr, &m->rc, &m->err))
        return;
    m->rc = st_partitions_maintain(conn, &m->po, NULL, &m->res, &m->err);
    m->have_stats = st_partitions_stats(conn, &m->stats, NULL) == AGG_OK;
    /* After a failed pass the session may still hold the advisory lock or be mid-COPY:
     * closing it is the sure way to release both. */
    job->conn_broken = m->rc != AGG_OK || PQstatus(conn) != CONNECTION_OK ||
                       PQtransactionStatus(conn) != PQTRANS_IDLE;
}

static void maint_done(struct st_job *job)
{
    struct st_maint *m = (struct st_maint *)job;
    struct timeval next = {m->rc == AGG_OK ? MAINT_INTERVAL_S : MAINT_RETRY_S, 0};

    m->running = false;
    agg_metric_set(m->last_run, agg_time_now_us() / AGG_US_PER_SEC);
    agg_metric_set(m->last_ok, m->rc == AGG_OK);
    if (m->have_stats) {
        agg_metric_set(m->archived_bytes, m->stats.archived_bytes);
        agg_metric_set(m->failed, m->stats.failed);
        agg_metric_set(m->counts[0], m->stats.partitions[0]);
        agg_metric_set(m->counts[1], m->stats.partitions[1]);
    }
    if (m->rc != AGG_OK)
        AGG_LOG_WARN("partitions", "partition maintenance failed: %s", m->err.msg);
    else if (!m->res.skipped && (m->res.created > 0 || m->res.archived > 0))
        AGG_LOG_INFO("partitions", "partition maintenance: %d created, %d archived",
                     m->res.created, m->res.archived);
    evtimer_add(m->timer, &next);
}

static void maint_fire(evutil_socket_t fd, short what, void *arg)
{
    struct st_maint *m = arg;

    (void)fd;
    (void)what;
    if (m->running)
        return;
    /* a reload may change the keys while the pass runs: it works on a copy */
    m->po = (struct st_partitions_opts){.now_us = agg_time_now_us(),
                                        .premake_months = (int)m->parts->premake_months,
                                        .retention_months = (int)m->parts->retention_months,
                                        .archive_grace_hours =
                                            (int)m->parts->archive_grace_hours,
                                        .archive_dir = m->archive->dir};
    m->running = true;
    st_jobs_run(m->jobs, &m->job);
}

struct st_maint *st_maint_new(struct event_base *base, struct st_jobs *jobs,
                              struct agg_metrics *metrics,
                              const struct agg_partitions_opts *parts,
                              const struct agg_archive_opts *archive, struct agg_err *err)
{
    struct timeval now = {0, 0};
    struct st_maint *m = agg_calloc(1, sizeof(*m));

    if (m == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    m->jobs = jobs;
    m->parts = parts;
    m->archive = archive;
    m->job.fn = maint_work;
    m->job.done = maint_done;
    m->timer = evtimer_new(base, maint_fire, m);
    m->last_run = agg_metrics_add(metrics, AGG_METRIC_GAUGE,
                                  "aggd_partition_maintenance_last_run_seconds", NULL,
                                  "Unix time the last partition maintenance ended.");
    m->last_ok = agg_metrics_add(metrics, AGG_METRIC_GAUGE,
                                 "aggd_partition_maintenance_last_success", NULL,
                                 "1 when the last partition maintenance succeeded.");
    m->archived_bytes = agg_metrics_add(metrics, AGG_METRIC_GAUGE, "aggd_archived_bytes", NULL,
                                        "Compressed bytes of archived months.");
    m->failed = agg_metrics_add(metrics, AGG_METRIC_GAUGE, "aggd_archive_failed_months", NULL,
                                "Months left detached after an archive error.");
    m->counts[0] = agg_metrics_add(metrics, AGG_METRIC_GAUGE, "aggd_partitions",
                                   "table=\"system_logs\"", "Attached monthly partitions.");
    m->counts[1] = agg_metrics_add(metrics, AGG_METRIC_GAUGE, "aggd_partitions",
                                   "table=\"alerts\"", "Attached monthly partitions.");
    if (m->timer == NULL || m->last_run == NULL || m->last_ok == NULL ||
        m->archived_bytes == NULL || m->failed == NULL || m->counts[0] == NULL ||
        m->counts[1] == NULL || evtimer_add(m->timer, &now) != 0) {
        agg_err_set(err, AGG_ENOMEM, "could not start partition maintenance");
        st_maint_free(m);
        return NULL;
    }
    return m;
}

void st_maint_free(struct st_maint *m)
{
    if (m == NULL)
        return;
    if (m->timer != NULL)
        event_free(m->timer);
    free(m);
}
