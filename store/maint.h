/*
 * store/maint.h — partition maintenance on a timer: premake, archive, drop.
 *
 * Place: started by src/server.c; each pass is st_partitions_maintain() on a job thread.
 * Threads: loop thread only; the pass itself runs on a job thread.
 * Ownership: the caller owns the handle; <jobs> and <metrics> are borrowed until free.
 * Traps: free only after st_jobs_free(), so that no pass is left running.
 */
#ifndef AGGD_STORE_MAINT_H
#define AGGD_STORE_MAINT_H

#include <event2/event.h>

#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"
#include "store/jobs.h"

struct st_maint;

/* Runs a pass at once, then an hour after each pass (a minute after a failed one).
 * <parts> and <archive> are borrowed until free. Caller owns the result:
 * st_maint_free(). */
struct st_maint *st_maint_new(struct event_base *base, struct st_jobs *jobs,
                              struct agg_metrics *metrics,
                              const struct agg_partitions_opts *parts,
                              const struct agg_archive_opts *archive, struct agg_err *err);
void st_maint_free(struct st_maint *m);

#endif
