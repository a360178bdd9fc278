/*
 * src/filejobs_int.h — what the job runner (src/filejobs.c) and the format work of
 *                      validation and conversion (src/fileformats.c) share.
 *
 * Threads: all of it runs on the runner's one thread.
 */
#ifndef AGGD_SRC_FILEJOBS_INT_H
#define AGGD_SRC_FILEJOBS_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/tz.h"
#include "core/workq.h"
#include "ingest/csv.h"
#include "ingest/json.h"
#include "store/pool.h"
#include "store/writer.h"

#define IDLE_POLL_MS 1000
#define RETRY_MS     2000
/* Rows (and rejects) per transaction of an extraction. */
#define BATCH_ITEMS 2000
/* How often the stop flag is looked at, in lines. */
#define STOP_EVERY 1024
/* First errors kept in a validation's result. */
#define MAX_ERRORS 10
/* pg_try_advisory_lock(LOCK_CLASS, job id): "aggd" */
#define LOCK_CLASS "1634166628"

struct agg_filejobs {
    struct agg_workq *q;
    struct agg_work item; /* the one work item: the claim loop */
    struct st_pool *pool;
    char *dir;
    int64_t accept_past_months;
    size_t max_event_bytes; /* longer events are rejected, their raw bytes cut there */
    struct agg_tz *zone;
    struct ing_json *json;
    struct st_writer_direct *direct;
    struct ing_csv csv;
    struct agg_buf line;    /* a CSV row as JSON */
    struct agg_buf scratch; /* syslog mapping */
    struct agg_buf merged;  /* syslog: extra_data of a JSON MSG and the syslog fields */
    struct agg_log_limit trouble;
};

struct job {
    struct agg_filejobs *f;
    PGconn *conn;
    char id[16], file_id[16];
    char type[16], format[8], target[8];
    char path[PATH_MAX];
    char filename[256];
    const char *data; /* the file, mapped */
    size_t size;
    uint64_t offset; /* extraction checkpoint: bytes (elements for JSON) settled */
    uint64_t lines;  /* ... and lines up to there */
    int64_t progress_at_us;
    int progress;
    bool finished; /* the job's end is already recorded */
    struct agg_err err;
};

/* ---- src/filejobs.c ---- */

/* Sets the job's progress (0..99 while running) at most every 250 ms. */
int fj_note_progress(struct job *j, uint64_t done, uint64_t total);

/* Ends the job in one transaction: <status>, <message> (NULL: none), <result> merged
 * into result_data, the output file <output> (NULL: none) made first by <pre> (NULL:
 * nothing) with parameters <pre_p>[<pre_n>]; the file completed or failed after its
 * last job. */
int fj_finish(struct job *j, const char *status, const char *message, const char *result,
              const char *pre, int pre_n, const char *const *pre_p, const char *output);

/* Maps the job's file read-only into j->data, j->size; unmaps it. */
int fj_map_file(struct job *j);
void fj_unmap_file(struct job *j);

/* The line at <at>: its length without the line end (LF, CRLF) into *<len>; returns
 * where the next starts. */
size_t fj_next_line(const struct job *j, size_t at, size_t *len);

/* Whether <p>[<len>] holds only blanks. */
bool fj_is_blank(const char *p, size_t len);

/* Every STOP_EVERY lines (<n>): whether the runner is stopping. */
bool fj_stopping(struct job *j, uint64_t n);

/* The current CSV record as a JSON object into f->line: header i -> field i. With
 * <typed>, empty fields are left out and the numeric columns are numbers. */
int fj_csv_row_json(struct agg_filejobs *f, const struct agg_buf *header, size_t nheader,
                    bool typed);

/* Reads the CSV header at the start of the file into <header>, which it initialises
 * (names, NUL after each; the caller clears it): the bytes it took, or 0 with
 * <j>->err set and nothing to clear. */
size_t fj_csv_header(struct job *j, struct agg_buf *header, size_t *n);

/* ---- src/fileformats.c ---- */

/* A validation: the counts and first errors as JSON into <result>. */
int fj_run_validation(struct job *j, struct agg_buf *result);

/* A conversion to a new file: its row id into <output_id>, the counts into <result>. */
int fj_run_conversion(struct job *j, struct agg_buf *result, char *output_id);

#endif
