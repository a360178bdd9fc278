/*
 * src/filejobs.h — the runner of file processing jobs (file_processing_jobs):
 *                  validation, conversion, and extraction into system_logs.
 *
 * Place: API (api/filejobs.c) makes pending jobs -> [runner: its own thread and
 *        connection] -> uploads.dir files in, system_logs / ingest_rejects / new files out.
 * Threads: _new and _free on the loop thread; the jobs on the runner's one thread.
 * Ownership: borrows the pool until _free; owns its thread, connection and decoders.
 * Traps: an extraction saves its checkpoint (byte offset, lines, imported, rejected)
 *        in every transaction that lands rows or rejects, so a job killed at any point
 *        resumes after exactly what committed. A job runs under a session advisory
 *        lock of its runner's connection: a second daemon leaves it alone, and a dead
 *        daemon's jobs are free again once its connection is gone.
 */
#ifndef AGGD_SRC_FILEJOBS_H
#define AGGD_SRC_FILEJOBS_H

#include <stdint.h>

#include <event2/event.h>

#include "core/err.h"
#include "store/pool.h"

struct agg_filejobs_opts {
    const char *uploads_dir;          /* uploads.dir (copied) */
    int64_t accept_past_months;       /* partitions.accept_past_months */
    int64_t max_event_bytes;          /* ingest.max_message_bytes */
    const char *syslog_3164_timezone; /* listen.syslog_3164_timezone; NULL or "": UTC */
};

struct agg_filejobs;

/* Starts the runner on <base>'s side with connections from <pool> (borrowed until
 * _free). It picks up pending jobs, and running ones a crash left, about once a second.
 * Caller owns the result: agg_filejobs_free(). NULL + <err> on failure. */
struct agg_filejobs *agg_filejobs_new(struct event_base *base, struct st_pool *pool,
                                      const struct agg_filejobs_opts *opts, struct agg_err *err);

/* Stops the runner promptly (a job in progress stays running, resumed at the next
 * start) and frees it. Accepts NULL. Loop thread. */
void agg_filejobs_free(struct agg_filejobs *f);

#endif
