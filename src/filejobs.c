/*
 * src/filejobs.c — file processing jobs: claim, read the uploaded file, validate,
 *                  convert, or extract its events into system_logs.
 *
 * Place: see src/filejobs.h.
 * Threads: one work-queue thread runs the claim loop and every job; nothing here runs
 *          on the event loop.
 * Ownership: the runner owns its connection between jobs; a job maps its file
 *            read-only for its run.
 * Traps: extraction writes through store/writer.c's direct writes, which isolate
 *        poison rows and make partitions as live ingest does; every transaction they
 *        commit also moves the job's checkpoint (st_writer_commit_fn). That holds only
 *        if each transaction settles a prefix of the file: a batch never takes a good
 *        row after a reject (it is written first). JSON documents are decoded whole;
 *        their checkpoint counts elements, not bytes.
 * Not here: the routes (api/filejobs.c), the decoders (ingest/), the COPY (store/).
 */
#include "src/filejobs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "core/log.h"
#include "core/time.h"
#include "core/tz.h"
#include "core/workq.h"
#include "ingest/csv.h"
#include "ingest/json.h"
#include "ingest/syslog.h"
#include "src/listen.h"
#include "store/batch.h"
#include "store/db.h"
#include "store/pipeline.h"
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
/* Column names whose CSV values are numbers, not text. */
static const char *const numeric_columns[] = {"line_number", "user_id", "duration_ms",
                                              "memory_usage_mb", NULL};

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

/* ---- database ---- */

static int exec_params(struct job *j, const char *sql, int n, const char *const *p)
{
    return st_db_query(j->conn, sql, n, p, PGRES_COMMAND_OK, NULL, &j->err);
}

/* Picks the oldest pending or running job no other runner holds, marks it and its file
 * running: AGG_OK with <j> filled, AGG_ENOTFOUND when there is none, AGG_EDB. */
static int claim(struct job *j)
{
    static const char pick[] = "SELECT id FROM file_processing_jobs WHERE status IN ('pending',"
                               " 'running') ORDER BY id LIMIT 16 FOR UPDATE SKIP LOCKED";
    static const char lock[] = "SELECT pg_try_advisory_lock(" LOCK_CLASS ", $1::int)";
    static const char mark[] =
        "WITH j AS (UPDATE file_processing_jobs SET status = 'running' WHERE id = $1"
        " RETURNING file_id) UPDATE file_uploads SET status = 'processing',"
        " updated_at = now() AT TIME ZONE 'UTC' WHERE id = (SELECT file_id FROM j)";
    PGresult *ids = NULL, *got;
    int rc = st_db_exec(j->conn, "BEGIN", &j->err);

    if (rc == AGG_OK)
        rc = st_db_query(j->conn, pick, 0, NULL, PGRES_TUPLES_OK, &ids, &j->err);
    for (int i = 0; rc == AGG_OK && i < (ids != NULL ? PQntuples(ids) : 0); i++) {
        const char *p[1] = {PQgetvalue(ids, i, 0)};

        rc = st_db_query(j->conn, lock, 1, p, PGRES_TUPLES_OK, &got, &j->err);
        if (rc != AGG_OK)
            break;
        if (strcmp(PQgetvalue(got, 0, 0), "t") == 0) {
            snprintf(j->id, sizeof(j->id), "%s", p[0]);
            PQclear(got);
            rc = exec_params(j, mark, 1, p);
            if (rc == AGG_OK)
                rc = st_db_exec(j->conn, "COMMIT", &j->err);
            PQclear(ids);
            return rc;
        }
        PQclear(got);
    }
    PQclear(ids);
    if (rc != AGG_OK)
        return rc;
    rc = st_db_exec(j->conn, "COMMIT", &j->err);
    return rc == AGG_OK ? AGG_ENOTFOUND : rc;
}

/* Reads what the job needs: its type, options, checkpoint, and its file. */
static int load(struct job *j)
{
    static const char sql[] =
        "SELECT j.job_type, coalesce(j.result_data->'options'->>'format', ''),"
        " coalesce(j.result_data->'options'->>'target', ''),"
        " coalesce((j.result_data->>'offset')::bigint, 0),"
        " coalesce((j.result_data->>'lines')::bigint, 0), f.id, f.file_path, f.filename"
        " FROM file_processing_jobs j LEFT JOIN file_uploads f ON f.id = j.file_id"
        " WHERE j.id = $1";
    const char *p[1] = {j->id};
    PGresult *res;
    const char *fp;
    int rc = st_db_query(j->conn, sql, 1, p, PGRES_TUPLES_OK, &res, &j->err);

    if (rc != AGG_OK)
        return rc;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return agg_err_set(&j->err, AGG_ENOTFOUND, "the job is gone");
    }
    snprintf(j->type, sizeof(j->type), "%s", PQgetvalue(res, 0, 0));
    snprintf(j->format, sizeof(j->format), "%s", PQgetvalue(res, 0, 1));
    snprintf(j->target, sizeof(j->target), "%s", PQgetvalue(res, 0, 2));
    j->offset = strtoull(PQgetvalue(res, 0, 3), NULL, 10);
    j->lines = strtoull(PQgetvalue(res, 0, 4), NULL, 10);
    snprintf(j->file_id, sizeof(j->file_id), "%s", PQgetvalue(res, 0, 5));
    snprintf(j->filename, sizeof(j->filename), "%s", PQgetvalue(res, 0, 7));
    fp = PQgetvalue(res, 0, 6);
    rc = AGG_OK;
    if (PQgetisnull(res, 0, 5))
        rc = agg_err_set(&j->err, AGG_EINVAL, "the job's file is gone");
    else if (fp[0] == '\0' || fp[0] == '.' || strchr(fp, '/') != NULL)
        rc = agg_err_set(&j->err, AGG_EINVAL,
                         "the file's path \"%.100s\" is not a name in "
                         "uploads.dir",
                         fp);
    else if (snprintf(j->path, sizeof(j->path), "%s/%s", j->f->dir, fp) >= (int)sizeof(j->path))
        rc = agg_err_set(&j->err, AGG_EINVAL, "the file's path is too long");
    PQclear(res);
    return rc;
}

/* Sets the job's progress (0..99 while running) at most every 250 ms. */
static int note_progress(struct job *j, uint64_t done, uint64_t total)
{
    static const char sql[] = "UPDATE file_processing_jobs SET progress = $2 WHERE id = $1";
    int pct = total > 0 ? (int)(done * 100 / total) : 0;
    int64_t now = agg_time_mono_us();
    char text[16];
    const char *p[2] = {j->id, text};

    if (pct > 99)
        pct = 99;
    if (pct <= j->progress || now - j->progress_at_us < 250000)
        return AGG_OK;
    j->progress = pct;
    j->progress_at_us = now;
    snprintf(text, sizeof(text), "%d", pct);
    return exec_params(j, sql, 2, p);
}

/* Ends the job in one transaction: <status>, <message> (NULL: none), <result> merged
 * into result_data, the output file <output> (NULL: none) made first by <pre> (NULL:
 * nothing) with parameters <pre_p>[<pre_n>]; the file completed or failed after its
 * last job. */
static int finish(struct job *j, const char *status, const char *message, const char *result,
                  const char *pre, int pre_n, const char *const *pre_p, const char *output)
{
    static const char end_sql[] =
        "UPDATE file_processing_jobs SET status = $2::varchar, error_message = $3,"
        " result_data = coalesce(result_data, '{}'::jsonb) || $4::jsonb,"
        " progress = CASE WHEN $2::varchar = 'completed' THEN 100 ELSE progress END,"
        " output_file_id = coalesce($5::int, output_file_id),"
        " completed_at = now() AT TIME ZONE 'UTC' WHERE id = $1";
    static const char file_sql[] =
        "UPDATE file_uploads SET status = $2, updated_at = now() AT TIME ZONE 'UTC'"
        " WHERE id = $3 AND NOT EXISTS (SELECT 1 FROM file_processing_jobs WHERE file_id = $3"
        " AND status IN ('pending', 'running') AND id <> $1)";
    const char *p[5] = {j->id, status, message, result != NULL ? result : "{}", output};
    const char *fp[3] = {j->id, status, j->file_id};
    int rc = st_db_exec(j->conn, "BEGIN", &j->err);

    if (rc == AGG_OK && pre != NULL)
        rc = exec_params(j, pre, pre_n, pre_p);
    if (rc == AGG_OK)
        rc = exec_params(j, end_sql, 5, p);
    if (rc == AGG_OK && j->file_id[0] != '\0')
        rc = exec_params(j, file_sql, 3, fp);
    if (rc == AGG_OK)
        rc = st_db_exec(j->conn, "COMMIT", &j->err);
    if (rc != AGG_OK)
        st_db_exec(j->conn, "ROLLBACK", NULL);
    return rc;
}

/* ---- reading the file ---- */

static int map_file(struct job *j)
{
    struct stat st;
    int fd = open(j->path, O_RDONLY | O_CLOEXEC);
    void *p;

    if (fd < 0)
        return agg_err_set(&j->err, AGG_EINVAL, "cannot open the file: %s", strerror(errno));
    if (fstat(fd, &st) != 0) {
        close(fd);
        return agg_err_set(&j->err, AGG_EINVAL, "cannot read the file: %s", strerror(errno));
    }
    j->size = (size_t)st.st_size;
    j->data = "";
    if (j->size > 0) {
        p = mmap(NULL, j->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return agg_err_set(&j->err, AGG_EINVAL, "cannot map the file: %s", strerror(errno));
        }
        madvise(p, j->size, MADV_SEQUENTIAL);
        j->data = p;
    }
    close(fd);
    return AGG_OK;
}

static void unmap_file(struct job *j)
{
    if (j->size > 0 && j->data != NULL)
        munmap((void *)j->data, j->size);
    j->data = NULL;
}

/* The line at <at>: its length without the line end (LF, CRLF) into *<len>; returns
 * where the next starts. */
static size_t next_line(const struct job *j, size_t at, size_t *len)
{
    const char *lf = memchr(j->data + at, '\n', j->size - at);
    size_t end = lf != NULL ? (size_t)(lf - j->data) : j->size;

    *len = end - at;
    if (*len > 0 && j->data[end - 1] == '\r')
        (*len)--;
    return lf != NULL ? end + 1 : end;
}

static bool is_blank(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    }
    return true;
}

static bool stopping(struct job *j, uint64_t n)
{
    if (n % STOP_EVERY != 0 || !agg_workq_expired(j->f->q))
        return false;
    agg_err_set(&j->err, AGG_EAGAIN, "stopping");
    return true;
}

static bool is_numeric_column(const char *name)
{
    for (size_t i = 0; numeric_columns[i] != NULL; i++) {
        if (strcmp(numeric_columns[i], name) == 0)
            return true;
    }
    return false;
}

static bool is_json_number(const char *s, size_t len)
{
    char *end;

    if (len == 0 || len > 40 || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) ||
        strspn(s, "0123456789+-.eE") < len) /* strtod also reads hex, inf and nan */
        return false;
    strtod(s, &end);
    return end == s + len;
}

/* The current CSV record as a JSON object into f->line: header i -> field i. With
 * <typed>, empty fields are left out and the numeric columns are numbers. */
static int csv_row_json(struct agg_filejobs *f, const struct agg_buf *header, size_t nheader,
                        bool typed)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *out;
    size_t len, at = 0;
    int rc = AGG_ENOMEM;

    if (g == NULL)
        return AGG_ENOMEM;
    yajl_gen_config(g, yajl_gen_validate_utf8, 0);
    if (yajl_gen_map_open(g) != yajl_gen_status_ok)
        goto out;
    for (size_t i = 0; i < nheader && i < f->csv.nfields; i++) {
        const char *key = header->data + at, *v = ing_csv_field(&f->csv, i, &len);

        at += strlen(key) + 1;
        if (typed && len == 0)
            continue;
        if (yajl_gen_string(g, (const unsigned char *)key, strlen(key)) != yajl_gen_status_ok)
            goto out;
        if (typed && is_numeric_column(key) && is_json_number(v, len)) {
            if (yajl_gen_number(g, v, len) != yajl_gen_status_ok)
                goto out;
        } else if (yajl_gen_string(g, (const unsigned char *)v, len) != yajl_gen_status_ok) {
            goto out;
        }
    }
    if (yajl_gen_map_close(g) != yajl_gen_status_ok)
        goto out;
    yajl_gen_get_buf(g, &out, &len);
    agg_buf_reset(&f->line);
    rc = agg_buf_append(&f->line, out, len);
out:
    yajl_gen_free(g);
    return rc;
}

/* Reads the CSV header at the start of the file into <header> (names, NUL after each):
 * the bytes it took, or 0 with <j>->err set. */
static size_t csv_header(struct job *j, struct agg_buf *header, size_t *n)
{
    struct agg_filejobs *f = j->f;
    size_t used = 0, len;

    if (j->size == 0) {
        agg_err_set(&j->err, AGG_EINVAL, "the file is empty: no CSV header");
        return 0;
    }
    if (ing_csv_read(&f->csv, j->data, j->size, &used, &j->err) != AGG_OK) {
        agg_err_prefix(&j->err, "CSV header");
        return 0;
    }
    agg_buf_reset(header);
    for (size_t i = 0; i < f->csv.nfields; i++) {
        const char *name = ing_csv_field(&f->csv, i, &len);

        if (agg_buf_append(header, name, len + 1) != AGG_OK) {
            agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
            return 0;
        }
    }
    *n = f->csv.nfields;
    return used;
}

/* ---- validation ---- */

struct tally {
    uint64_t records, valid, invalid;
    int nerrors;
    struct {
        int64_t at; /* line (or element index for JSON); -1: the whole document */
        char message[200];
    } errors[MAX_ERRORS];
    bool by_index;
};

static void tally_bad(struct tally *t, int64_t at, const char *message)
{
    t->invalid++;
    if (t->nerrors == MAX_ERRORS)
        return;
    t->errors[t->nerrors].at = at;
    snprintf(t->errors[t->nerrors].message, sizeof(t->errors[0].message), "%s", message);
    t->nerrors++;
}

static int count_emit(void *arg, const struct agg_record *rec)
{
    struct tally *t = arg;

    (void)rec;
    t->records++;
    t->valid++;
    return AGG_OK;
}

static void count_reject(void *arg, size_t index, const char *why, const char *raw, size_t len)
{
    struct tally *t = arg;

    (void)raw;
    (void)len;
    t->records++;
    tally_bad(t, (int64_t)index, why);
}

/* The validation's result as JSON text into <out>. */
static int tally_json(const struct job *j, const struct tally *t, struct agg_buf *out)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    size_t len;
    int rc;

    if (g == NULL)
        return AGG_ENOMEM;
    yajl_gen_map_open(g);
    yajl_gen_string(g, (const unsigned char *)"format", 6);
    yajl_gen_string(g, (const unsigned char *)j->format, strlen(j->format));
#define KEY(k) yajl_gen_string(g, (const unsigned char *)(k), strlen(k))
    KEY("records");
    yajl_gen_integer(g, (long long)t->records);
    KEY("valid");
    yajl_gen_integer(g, (long long)t->valid);
    KEY("invalid");
    yajl_gen_integer(g, (long long)t->invalid);
    KEY("well_formed");
    yajl_gen_bool(g, t->invalid == 0);
    KEY("errors");
    yajl_gen_array_open(g);
    for (int i = 0; i < t->nerrors; i++) {
        yajl_gen_map_open(g);
        if (t->errors[i].at >= 0) {
            KEY(t->by_index ? "index" : "line");
            yajl_gen_integer(g, (long long)t->errors[i].at);
        }
        KEY("message");
        KEY(t->errors[i].message);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
#undef KEY
    yajl_gen_map_close(g);
    rc = yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok ? agg_buf_append(out, buf, len)
                                                               : AGG_ENOMEM;
    yajl_gen_free(g);
    return rc;
}

static int validate_lines(struct job *j, struct tally *t, bool syslog)
{
    struct agg_sink sink = {count_emit, count_reject, t};
    uint64_t line = 0;
    size_t len;

    for (size_t at = 0, next; at < j->size; at = next) {
        struct agg_err err = {0};
        struct ing_syslog_msg msg;

        next = next_line(j, at, &len);
        line++;
        if (stopping(j, line) || note_progress(j, at, j->size) != AGG_OK)
            return j->err.code;
        if (is_blank(j->data + at, len))
            continue;
        if (!syslog) { /* count_emit and count_reject count it, the line as index */
            ing_json_decode_line(j->f->json, j->data + at, len, (size_t)line, &sink, &err);
            continue;
        }
        t->records++;
        /* live ingest takes a line without PRI as RFC 3164 user.notice; a file that
         * claims to be syslog is not well formed with one */
        if (ing_syslog_parse(j->data + at, len, agg_time_now_us(), j->f->zone, &msg, &err) !=
            AGG_OK)
            tally_bad(t, (int64_t)line, err.msg);
        else if (msg.pri_assumed)
            tally_bad(t, (int64_t)line, "no valid PRI: neither RFC 5424 nor RFC 3164");
        else
            t->valid++;
    }
    return AGG_OK;
}

static int validate_csv(struct job *j, struct tally *t)
{
    struct agg_filejobs *f = j->f;
    struct agg_buf header;
    size_t nheader = 0, used;
    uint64_t line = 1;
    size_t at;

    agg_buf_init(&header);
    at = csv_header(j, &header, &nheader);
    agg_buf_clear(&header);
    if (at == 0) {
        if (j->err.code == AGG_ENOMEM)
            return AGG_ENOMEM;
        tally_bad(t, 1, j->err.msg);
        return AGG_OK;
    }
    line += f->csv.lines - 1;
    for (; at < j->size; at += used) {
        struct agg_err err = {0};
        int rc;

        line++;
        if (stopping(j, line) || note_progress(j, at, j->size) != AGG_OK)
            return j->err.code;
        rc = ing_csv_read(&f->csv, j->data + at, j->size - at, &used, &err);
        if (rc == AGG_ENOMEM)
            return agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
        if (rc == AGG_OK && f->csv.nfields == 1 && f->csv.len[0] == 0 &&
            is_blank(j->data + at, used - (j->data[at + used - 1] == '\n')))
            continue; /* a blank line */
        t->records++;
        if (rc != AGG_OK) {
            tally_bad(t, (int64_t)line, err.msg);
        } else if (f->csv.nfields != nheader) {
            char why[96];

            snprintf(why, sizeof(why), "%zu fields where the header has %zu", f->csv.nfields,
                     nheader);
            tally_bad(t, (int64_t)line, why);
        } else {
            t->valid++;
        }
        if (rc == AGG_OK)
            line += f->csv.lines - 1;
    }
    return AGG_OK;
}

static int run_validation(struct job *j, struct agg_buf *result)
{
    struct tally t = {0};
    int rc;

    if (strcmp(j->format, "json") == 0) {
        struct agg_sink sink = {count_emit, count_reject, &t};
        struct ing_json_stats stats;
        struct agg_err err = {0};

        t.by_index = true;
        rc = ing_json_decode_document(j->f->json, j->data, j->size, &sink, &stats, &err);
        if (rc == AGG_EINVAL) {
            t.records = 1;
            tally_bad(&t, -1, err.msg);
        } else if (rc != AGG_OK) {
            return agg_err_set(&j->err, rc, "%s", err.msg);
        }
    } else if (strcmp(j->format, "csv") == 0) {
        if ((rc = validate_csv(j, &t)) != AGG_OK)
            return rc;
    } else if ((rc = validate_lines(j, &t, strcmp(j->format, "syslog") == 0)) != AGG_OK) {
        return rc;
    }
    return tally_json(j, &t, result) == AGG_OK ? AGG_OK
                                               : agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
}

/* ---- conversion to NDJSON ---- */

struct output {
    int fd;
    char tmp[PATH_MAX + 8];
    crypto_hash_sha256_state sha;
    uint64_t bytes, records;
    struct agg_buf buf;
};

static int out_flush(struct job *j, struct output *o)
{
    crypto_hash_sha256_update(&o->sha, (const unsigned char *)o->buf.data, o->buf.len);
    o->bytes += o->buf.len;
    if (agg_file_write_all(o->fd, o->buf.data, o->buf.len, o->tmp, &j->err) != AGG_OK)
        return AGG_EINVAL;
    agg_buf_reset(&o->buf);
    return AGG_OK;
}

/* One NDJSON line (<p>[<len>] and a LF) to the output. */
static int out_line(struct job *j, struct output *o, const char *p, size_t len)
{
    o->records++;
    if (agg_buf_append(&o->buf, p, len) != AGG_OK || agg_buf_putc(&o->buf, '\n') != AGG_OK)
        return agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
    return o->buf.len >= 1024 * 1024 ? out_flush(j, o) : AGG_OK;
}

static int gen_tree(yajl_gen g, yajl_val v)
{
    yajl_gen_status st = yajl_gen_status_ok;

    if (YAJL_IS_OBJECT(v)) {
        st = yajl_gen_map_open(g);
        for (size_t i = 0; st == yajl_gen_status_ok && i < v->u.object.len; i++) {
            const char *k = v->u.object.keys[i];

            st = yajl_gen_string(g, (const unsigned char *)k, strlen(k));
            if (st == yajl_gen_status_ok && gen_tree(g, v->u.object.values[i]) != AGG_OK)
                return AGG_ENOMEM;
        }
        if (st == yajl_gen_status_ok)
            st = yajl_gen_map_close(g);
    } else if (YAJL_IS_ARRAY(v)) {
        st = yajl_gen_array_open(g);
        for (size_t i = 0; st == yajl_gen_status_ok && i < v->u.array.len; i++) {
            if (gen_tree(g, v->u.array.values[i]) != AGG_OK)
                return AGG_ENOMEM;
        }
        if (st == yajl_gen_status_ok)
            st = yajl_gen_array_close(g);
    } else if (YAJL_IS_STRING(v)) {
        const char *text = v->u.string;

        st = yajl_gen_string(g, (const unsigned char *)text, strlen(text));
    } else if (YAJL_IS_NUMBER(v)) {
        st = yajl_gen_number(g, YAJL_GET_NUMBER(v), strlen(YAJL_GET_NUMBER(v)));
    } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        st = yajl_gen_bool(g, YAJL_IS_TRUE(v));
    } else {
        st = yajl_gen_null(g);
    }
    return st == yajl_gen_status_ok ? AGG_OK : AGG_ENOMEM;
}

static int convert_json(struct job *j, struct output *o, struct tally *t)
{
    yajl_val root = NULL;
    char why[256];
    int rc = agg_json_parse(j->data, j->size, 512, &root, why, sizeof(why));
    size_t n;

    if (rc == AGG_EINVAL)
        return agg_err_set(&j->err, AGG_EINVAL, "the file is not JSON: %s", why);
    if (rc != AGG_OK)
        return agg_err_set(&j->err, rc, "out of memory");
    if (!YAJL_IS_ARRAY(root) && !YAJL_IS_OBJECT(root)) {
        yajl_tree_free(root);
        return agg_err_set(&j->err, AGG_EINVAL, "the document is neither an object nor an array");
    }
    n = YAJL_IS_ARRAY(root) ? root->u.array.len : 1;
    for (size_t i = 0; rc == AGG_OK && i < n; i++) {
        yajl_val v = YAJL_IS_ARRAY(root) ? root->u.array.values[i] : root;
        yajl_gen g = yajl_gen_alloc(NULL);
        const unsigned char *buf;
        size_t len;

        t->records++;
        if (g == NULL) {
            rc = agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
            break;
        }
        if (gen_tree(g, v) != AGG_OK || yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
            rc = agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
        else
            rc = out_line(j, o, (const char *)buf, len);
        t->valid += rc == AGG_OK;
        yajl_gen_free(g);
    }
    yajl_tree_free(root);
    return rc;
}

static int convert_csv(struct job *j, struct output *o, struct tally *t)
{
    struct agg_filejobs *f = j->f;
    struct agg_buf header;
    size_t nheader = 0, used, at;
    uint64_t line = 1;
    int rc = AGG_OK;

    agg_buf_init(&header);
    at = csv_header(j, &header, &nheader);
    if (at == 0) {
        agg_buf_clear(&header);
        return j->err.code;
    }
    line += f->csv.lines - 1;
    for (; rc == AGG_OK && at < j->size; at += used) {
        struct agg_err err = {0};

        line++;
        if (stopping(j, line) || note_progress(j, at, j->size) != AGG_OK) {
            rc = j->err.code;
            break;
        }
        rc = ing_csv_read(&f->csv, j->data + at, j->size - at, &used, &err);
        if (rc == AGG_ENOMEM)
            break;
        if (rc == AGG_OK && f->csv.nfields == 1 && f->csv.len[0] == 0) {
            line += f->csv.lines - 1;
            continue;
        }
        t->records++;
        if (rc != AGG_OK) {
            tally_bad(t, (int64_t)line, err.msg);
            rc = AGG_OK;
            continue;
        }
        if (f->csv.nfields != nheader) {
            tally_bad(t, (int64_t)line, "the row's field count differs from the header's");
        } else {
            t->valid++;
            rc = csv_row_json(f, &header, nheader, false);
            if (rc == AGG_OK)
                rc = out_line(j, o, f->line.data, f->line.len);
        }
        line += f->csv.lines - 1;
    }
    agg_buf_clear(&header);
    if (rc == AGG_ENOMEM)
        agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
    return rc;
}

/* Appends <p>[<len>] as one CSV field (RFC 4180: quoted when it holds a comma, a
 * quote, CR or LF, quotes doubled), after a comma unless <first>. */
static int put_csv_field(struct agg_buf *out, const char *p, size_t len, bool first)
{
    bool quote = memchr(p, ',', len) != NULL || memchr(p, '"', len) != NULL ||
                 memchr(p, '\r', len) != NULL || memchr(p, '\n', len) != NULL;
    int rc = first ? AGG_OK : agg_buf_putc(out, ',');

    if (rc != AGG_OK || !quote)
        return rc == AGG_OK ? agg_buf_append(out, p, len) : rc;
    rc = agg_buf_putc(out, '"');
    for (size_t i = 0; rc == AGG_OK && i < len; i++)
        rc = p[i] == '"' ? agg_buf_append(out, "\"\"", 2) : agg_buf_putc(out, p[i]);
    return rc == AGG_OK ? agg_buf_putc(out, '"') : rc;
}

/* The CSV cell of JSON value <v> (NULL: the member is missing): strings as they are,
 * numbers and booleans as written, null and missing empty, objects and arrays as JSON. */
static int put_csv_cell(struct agg_buf *out, yajl_val v, bool first)
{
    const unsigned char *buf;
    size_t len;
    yajl_gen g;
    int rc;

    if (v == NULL || YAJL_IS_NULL(v))
        return put_csv_field(out, "", 0, first);
    if (YAJL_IS_STRING(v))
        return put_csv_field(out, v->u.string, strlen(v->u.string), first);
    if (YAJL_IS_NUMBER(v))
        return put_csv_field(out, YAJL_GET_NUMBER(v), strlen(YAJL_GET_NUMBER(v)), first);
    if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))
        return put_csv_field(out, YAJL_IS_TRUE(v) ? "true" : "false", YAJL_IS_TRUE(v) ? 4 : 5,
                             first);
    g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return AGG_ENOMEM;
    rc = gen_tree(g, v);
    if (rc == AGG_OK && yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
        rc = AGG_ENOMEM;
    if (rc == AGG_OK)
        rc = put_csv_field(out, (const char *)buf, len, first);
    yajl_gen_free(g);
    return rc;
}

/* The header of an NDJSON file's CSV: every member name, in order of first sight. */
struct columns {
    struct agg_buf names; /* each followed by a NUL */
    size_t n;
};

#define MAX_COLUMNS 1024

static int add_columns(struct job *j, struct columns *c, yajl_val obj)
{
    for (size_t i = 0; i < obj->u.object.len; i++) {
        const char *k = obj->u.object.keys[i];
        size_t at = 0, m;
        bool seen = false;

        for (m = 0; m < c->n && !seen; m++) {
            seen = strcmp(c->names.data + at, k) == 0;
            at += strlen(c->names.data + at) + 1;
        }
        if (seen)
            continue;
        if (c->n == MAX_COLUMNS)
            return agg_err_set(&j->err, AGG_EINVAL, "more than %d distinct members", MAX_COLUMNS);
        if (agg_buf_append(&c->names, k, strlen(k) + 1) != AGG_OK)
            return agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
        c->n++;
    }
    return AGG_OK;
}

/* NDJSON to CSV in two passes: the columns, then the rows. */
static int convert_ndjson(struct job *j, struct output *o, struct tally *t)
{
    struct columns c = {.n = 0};
    struct agg_buf row;
    int rc = AGG_OK;

    agg_buf_init(&c.names);
    agg_buf_init(&row);
    for (int pass = 0; rc == AGG_OK && pass < 2; pass++) {
        uint64_t line = 0;
        size_t len, at = 0;

        if (pass == 1) { /* the header row */
            for (size_t i = 0, k = 0; rc == AGG_OK && i < c.n; i++) {
                const char *name = c.names.data + k;

                k += strlen(name) + 1;
                rc = put_csv_field(&row, name, strlen(name), i == 0);
            }
            if (rc == AGG_OK && agg_buf_putc(&row, '\r') == AGG_OK)
                rc = out_line(j, o, row.data, row.len);
            o->records = 0;
        }
        for (size_t next; rc == AGG_OK && at < j->size; at = next) {
            yajl_val v = NULL;
            char why[128];

            next = next_line(j, at, &len);
            line++;
            if (stopping(j, line) ||
                note_progress(j, (uint64_t)pass * j->size + at, 2 * (uint64_t)j->size) != AGG_OK) {
                rc = j->err.code;
                break;
            }
            if (is_blank(j->data + at, len))
                continue;
            rc = agg_json_parse(j->data + at, len, ING_JSON_MAX_EVENT_DEPTH, &v, why, sizeof(why));
            if (rc == AGG_OK && !YAJL_IS_OBJECT(v)) {
                rc = AGG_EINVAL;
                snprintf(why, sizeof(why), "not a JSON object");
            }
            if (rc == AGG_EINVAL) {
                if (pass == 1) {
                    t->records++;
                    tally_bad(t, (int64_t)line, why);
                }
                rc = AGG_OK;
            } else if (rc == AGG_OK && pass == 0) {
                rc = add_columns(j, &c, v);
            } else if (rc == AGG_OK) {
                agg_buf_reset(&row);
                t->records++;
                t->valid++;
                for (size_t i = 0, k = 0; rc == AGG_OK && i < c.n; i++) {
                    const char *path[2] = {c.names.data + k, NULL};

                    k += strlen(path[0]) + 1;
                    rc = put_csv_cell(&row, yajl_tree_get(v, path, yajl_t_any), i == 0);
                }
                if (rc == AGG_OK && agg_buf_putc(&row, '\r') == AGG_OK)
                    rc = out_line(j, o, row.data, row.len);
            }
            yajl_tree_free(v);
        }
    }
    agg_buf_clear(&c.names);
    agg_buf_clear(&row);
    if (rc == AGG_ENOMEM)
        agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
    return rc;
}

/* The output's name: the source's with its extension replaced by the target's. */
static void output_name(const struct job *j, char *out, size_t size)
{
    const char *dot = strrchr(j->filename, '.');
    int stem =
        dot != NULL && dot != j->filename ? (int)(dot - j->filename) : (int)strlen(j->filename);

    if (stem > 240)
        stem = 240;
    snprintf(out, size, "%.*s.%s", stem, j->filename, j->target);
}

static int run_conversion(struct job *j, struct agg_buf *result, char *output_id)
{
    static const char next_id[] = "SELECT nextval(pg_get_serial_sequence('file_uploads', 'id'))";
    static const char insert_sql[] =
        "INSERT INTO file_uploads (id, filename, file_path, file_type, file_size, mime_type,"
        " file_hash, status, upload_progress, total_chunks, uploaded_chunks, is_temporary,"
        " expires_at, owner_id)"
        " SELECT $1, $2, $3, $7, $4, $8, $5, 'uploaded', 100, 1, 1,"
        " is_temporary, expires_at, owner_id FROM file_uploads WHERE id = $6";
    struct output o = {.fd = -1};
    struct tally t = {0};
    unsigned char digest[crypto_hash_sha256_BYTES];
    char path[PATH_MAX], name[64], hash[crypto_hash_sha256_BYTES * 2 + 1], size[24];
    char filename[256];
    PGresult *res;
    int rc;

    rc = st_db_query(j->conn, next_id, 0, NULL, PGRES_TUPLES_OK, &res, &j->err);
    if (rc != AGG_OK)
        return rc;
    snprintf(output_id, 16, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    snprintf(name, sizeof(name), "%s.data", output_id);
    if (snprintf(path, sizeof(path), "%s/%s", j->f->dir, name) >= (int)sizeof(path))
        return agg_err_set(&j->err, AGG_EINVAL, "uploads.dir is too long");
    o.fd = agg_file_open_tmp(path, o.tmp, sizeof(o.tmp), &j->err);
    if (o.fd < 0)
        return AGG_EINVAL;
    agg_buf_init(&o.buf);
    crypto_hash_sha256_init(&o.sha);
    if (strcmp(j->format, "csv") == 0)
        rc = convert_csv(j, &o, &t);
    else if (strcmp(j->format, "json") == 0)
        rc = convert_json(j, &o, &t);
    else
        rc = convert_ndjson(j, &o, &t);
    if (rc == AGG_OK)
        rc = out_flush(j, &o);
    if (rc == AGG_OK) {
        rc = agg_file_publish(o.fd, o.tmp, path, &j->err);
        o.fd = -1;
    }
    if (o.fd >= 0) {
        close(o.fd);
        unlink(o.tmp);
    }
    agg_buf_clear(&o.buf);
    if (rc != AGG_OK)
        return rc;
    crypto_hash_sha256_final(&o.sha, digest);
    sodium_bin2hex(hash, sizeof(hash), digest, sizeof(digest));
    snprintf(size, sizeof(size), "%" PRIu64, o.bytes);
    output_name(j, filename, sizeof(filename));
    {
        bool csv = strcmp(j->target, "csv") == 0;
        const char *p[8] = {output_id,
                            filename,
                            name,
                            size,
                            hash,
                            j->file_id,
                            csv ? "csv" : "ndjson",
                            csv ? "text/csv" : "application/x-ndjson"};

        if (tally_json(j, &t, result) != AGG_OK)
            return agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
        /* the target, records written, and the row in one transaction with the end */
        if (result->len > 0)
            result->len--; /* reopen the object */
        if (agg_buf_printf(result,
                           ",\"target\":\"%s\",\"written\":%" PRIu64 ",\"output_file_id\":%s}",
                           j->target, o.records, output_id) != AGG_OK)
            return agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
        rc = finish(j, "completed", NULL, result->data, insert_sql, 8, p, output_id);
        j->finished = rc == AGG_OK;
        return rc;
    }
}

/* ---- extraction ---- */

struct extract {
    struct job *j;
    struct st_batch *b;
    struct st_copy_scratch scratch;
    int64_t now_us, window_lo_us;
    char peer[48];
    bool by_element;          /* JSON document: positions are element indices */
    uint64_t pos, next, line; /* the item being decoded: [pos, next), its last line */
    uint64_t index;           /* JSON: elements seen */
    /* for the hook: where each item of the batch ends, and the line it ends on */
    struct mark {
        uint64_t end, line;
    } * marks;
    size_t nmarks, cap;
    int rc;
};

/* st_writer_commit_fn: the job's checkpoint, in the transaction that settled up to <to>. */
static int save_checkpoint(void *arg, PGconn *conn, uint64_t to, size_t rows, size_t rejects,
                           struct agg_err *err)
{
    static const char sql[] =
        "UPDATE file_processing_jobs SET progress = CASE WHEN $2::int < 0 THEN progress"
        " ELSE $2::int END, result_data = coalesce(result_data, '{}'::jsonb) ||"
        " jsonb_build_object('offset', $3::bigint, 'lines', $4::bigint,"
        " 'imported', coalesce((result_data->>'imported')::bigint, 0) + $5::bigint,"
        " 'rejected', coalesce((result_data->>'rejected')::bigint, 0) + $6::bigint)"
        " WHERE id = $1 AND status = 'running'";
    struct extract *x = arg;
    size_t lo = 0, hi = x->nmarks;
    char pct[16], off[24], lines[24], nrows[24], nrej[24];
    const char *p[6] = {x->j->id, pct, off, lines, nrows, nrej};
    PGresult *res;
    int rc;

    while (lo < hi) { /* the item ending at <to> */
        size_t mid = lo + (hi - lo) / 2;

        if (x->marks[mid].end < to)
            lo = mid + 1;
        else
            hi = mid;
    }
    snprintf(pct, sizeof(pct), "%d",
             x->by_element || x->j->size == 0 ? -1 : (int)(to * 99 / x->j->size));
    snprintf(off, sizeof(off), "%" PRIu64, to);
    snprintf(lines, sizeof(lines), "%" PRIu64, lo < x->nmarks ? x->marks[lo].line : x->line);
    snprintf(nrows, sizeof(nrows), "%zu", rows);
    snprintf(nrej, sizeof(nrej), "%zu", rejects);
    rc = st_db_query(conn, sql, 6, p, PGRES_COMMAND_OK, &res, err);
    if (rc != AGG_OK)
        return rc;
    if (strcmp(PQcmdTuples(res), "1") != 0)
        rc = agg_err_set(err, AGG_ENOTFOUND, "job %s is no longer running", x->j->id);
    PQclear(res);
    return rc;
}

static int flush(struct extract *x)
{
    struct job *j = x->j;

    if (st_batch_is_empty(x->b))
        return AGG_OK;
    if (st_writer_direct_write(j->f->direct, j->conn, x->b, save_checkpoint, x, &j->err) != AGG_OK)
        return AGG_EDB;
    st_batch_reset(x->b);
    x->nmarks = 0;
    return AGG_OK;
}

/* Gives the newest row or reject its place, and the hook its line. */
static int place(struct extract *x, bool reject)
{
    uint64_t pos = x->by_element ? x->index : x->pos, next = x->by_element ? x->index + 1 : x->next;

    if (agg_grow((void **)&x->marks, sizeof(*x->marks), &x->cap, x->nmarks + 1) != AGG_OK)
        return AGG_ENOMEM;
    st_batch_place_last(x->b, reject, pos, next);
    x->marks[x->nmarks].end = next;
    x->marks[x->nmarks].line = x->by_element ? next : x->line;
    x->nmarks++;
    return AGG_OK;
}

/* Room for one more item; a row never follows a reject within a batch. */
static int make_room(struct extract *x, bool row)
{
    if ((row && x->b->nrejects > 0) || x->b->nrows + x->b->nrejects >= BATCH_ITEMS)
        return flush(x);
    return AGG_OK;
}

static int x_emit(void *arg, const struct agg_record *rec)
{
    struct extract *x = arg;
    int64_t original, created;
    int rc;

    if (x->by_element && x->index < x->j->offset) { /* committed before a restart */
        x->index++;
        return AGG_OK;
    }
    if ((rc = make_room(x, true)) != AGG_OK)
        return rc;
    created = st_pipeline_stamp(rec->created_us, x->now_us, x->window_lo_us, &original);
    if (st_batch_add(x->b, rec, created, original, AGG_TRANSPORT_HTTP, x->peer, x->now_us,
                     &x->scratch) != AGG_OK ||
        place(x, false) != AGG_OK)
        return agg_err_set(&x->j->err, AGG_ENOMEM, "out of memory");
    x->index++;
    return AGG_OK;
}

static void add_reject(struct extract *x, const char *why, const char *raw, size_t len)
{
    if (x->rc != AGG_OK)
        return;
    if (x->by_element && x->index < x->j->offset) {
        x->index++;
        return;
    }
    if (len > x->j->f->max_event_bytes)
        len = x->j->f->max_event_bytes; /* as the JSON decoder keeps its rejects */
    x->rc = make_room(x, false);
    if (x->rc == AGG_OK && (st_batch_add_reject(x->b, AGG_TRANSPORT_HTTP, x->peer, x->now_us, why,
                                                raw, len) != AGG_OK ||
                            place(x, true) != AGG_OK))
        x->rc = agg_err_set(&x->j->err, AGG_ENOMEM, "out of memory");
    x->index++;
}

static void x_reject(void *arg, size_t index, const char *why, const char *raw, size_t len)
{
    (void)index;
    add_reject(arg, why, raw, len);
}

/* One syslog line: mapped as the syslog listeners map it (src/listen.h), or rejected. */
static int extract_syslog(struct extract *x, const struct agg_sink *sink, const char *p, size_t len)
{
    struct agg_filejobs *f = x->j->f;
    char why[64];

    if (len > f->max_event_bytes) {
        snprintf(why, sizeof(why), "message longer than %zu bytes", f->max_event_bytes);
        add_reject(x, why, p, len);
        return x->rc;
    }
    return agg_listen_syslog_decode(f->json, f->zone, &f->scratch, &f->merged, p, len, x->now_us,
                                    sink);
}

static int extract_lines(struct extract *x, const struct agg_sink *sink)
{
    struct job *j = x->j;
    bool syslog = strcmp(j->format, "syslog") == 0;
    size_t len;
    int rc = AGG_OK;

    x->line = j->lines;
    for (size_t at = j->offset, next; rc == AGG_OK && at < j->size; at = next) {
        struct agg_err err = {0};

        next = next_line(j, at, &len);
        x->line++;
        if (stopping(j, x->line))
            return AGG_EAGAIN;
        if (is_blank(j->data + at, len))
            continue;
        x->pos = at;
        x->next = next;
        x->now_us = agg_time_now_us();
        if (syslog) {
            rc = extract_syslog(x, sink, j->data + at, len);
        } else {
            rc = ing_json_decode_line(j->f->json, j->data + at, len, (size_t)x->line, sink, &err);
            rc = rc == AGG_EINVAL ? AGG_OK : rc; /* rejected: in the batch */
        }
        if (rc == AGG_OK)
            rc = x->rc;
    }
    return rc;
}

static int extract_csv(struct extract *x, const struct agg_sink *sink)
{
    struct job *j = x->j;
    struct agg_filejobs *f = j->f;
    struct agg_buf header;
    size_t nheader = 0, used, at;
    int rc = AGG_OK;

    agg_buf_init(&header);
    at = csv_header(j, &header, &nheader);
    if (at == 0) {
        agg_buf_clear(&header);
        return j->err.code;
    }
    if (j->offset > at) {
        at = j->offset;
        x->line = j->lines;
    } else {
        x->line = f->csv.lines;
    }
    for (; rc == AGG_OK && at < j->size; at += used) {
        struct agg_err err = {0};
        int read;

        if (stopping(j, x->line + 1)) {
            rc = AGG_EAGAIN;
            break;
        }
        read = ing_csv_read(&f->csv, j->data + at, j->size - at, &used, &err);
        x->line += read == AGG_OK ? f->csv.lines : 1;
        x->pos = at;
        x->next = at + used;
        x->now_us = agg_time_now_us();
        if (read == AGG_ENOMEM) {
            rc = agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
        } else if (read != AGG_OK) {
            add_reject(x, err.msg, j->data + at, used);
        } else if (f->csv.nfields == 1 && f->csv.len[0] == 0) {
            continue; /* a blank line */
        } else if (f->csv.nfields != nheader) {
            add_reject(x, "the row's field count differs from the header's", j->data + at, used);
        } else if ((rc = csv_row_json(f, &header, nheader, true)) == AGG_OK) {
            rc = ing_json_decode_line(f->json, f->line.data, f->line.len, (size_t)x->line, sink,
                                      &err);
            rc = rc == AGG_EINVAL ? AGG_OK : rc;
        }
        if (rc == AGG_OK)
            rc = x->rc;
    }
    agg_buf_clear(&header);
    return rc;
}

static int run_extraction(struct job *j, struct agg_buf *result)
{
    struct extract x = {.j = j, .rc = AGG_OK};
    struct agg_sink sink = {x_emit, x_reject, &x};
    int rc;

    x.b = st_batch_new();
    if (x.b == NULL)
        return agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
    st_copy_scratch_init(&x.scratch);
    x.now_us = agg_time_now_us();
    x.window_lo_us = st_pipeline_window_low(x.now_us, j->f->accept_past_months);
    snprintf(x.peer, sizeof(x.peer), "file %s job %s", j->file_id, j->id);
    if (strcmp(j->format, "json") == 0) {
        struct ing_json_stats stats;
        struct agg_err err = {0};

        x.by_element = true;
        rc = ing_json_decode_document(j->f->json, j->data, j->size, &sink, &stats, &err);
        if (rc == AGG_EINVAL)
            rc = agg_err_set(&j->err, AGG_EINVAL, "%s", err.msg);
        else if (rc == AGG_OK)
            rc = x.rc;
    } else if (strcmp(j->format, "csv") == 0) {
        rc = extract_csv(&x, &sink);
    } else {
        rc = extract_lines(&x, &sink);
    }
    if (rc == AGG_OK)
        rc = flush(&x);
    if (rc == AGG_OK)
        rc = agg_buf_printf(result,
                            "{\"format\":\"%s\",\"offset\":%" PRIu64 ",\"lines\":%" PRIu64 "}",
                            j->format, x.by_element ? x.index : (uint64_t)j->size,
                            x.by_element ? x.index : x.line) == AGG_OK
                 ? AGG_OK
                 : agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
    st_copy_scratch_clear(&x.scratch);
    st_batch_free(x.b);
    free(x.marks);
    return rc;
}

/* ---- the loop ---- */

/* Runs the claimed job <j>: AGG_OK when it ended (completed or failed, recorded);
 * AGG_EDB when the database failed and AGG_EAGAIN when stopping: it stays running. */
static int run_job(struct job *j)
{
    struct agg_buf result;
    char output_id[16] = "";
    int rc;

    agg_buf_init(&result);
    rc = load(j);
    if (rc == AGG_ENOTFOUND)
        return AGG_OK;
    if (rc == AGG_OK)
        rc = map_file(j);
    if (rc == AGG_OK) {
        AGG_LOG_INFO("filejobs", "job %s: %s of file %s (%s) from offset %" PRIu64, j->id, j->type,
                     j->file_id, j->format, j->offset);
        if (strcmp(j->type, "validation") == 0)
            rc = run_validation(j, &result);
        else if (strcmp(j->type, "conversion") == 0)
            rc = run_conversion(j, &result, output_id);
        else if (strcmp(j->type, "extraction") == 0)
            rc = run_extraction(j, &result);
        else
            rc = agg_err_set(&j->err, AGG_EINVAL, "unknown job type \"%s\"", j->type);
    }
    unmap_file(j);
    if (rc == AGG_OK && j->finished) {
        /* finished with its output file, in one transaction */
    } else if (rc == AGG_OK) {
        rc = finish(j, "completed", NULL, result.data, NULL, 0, NULL, NULL);
    } else if (rc != AGG_EDB && rc != AGG_EAGAIN) {
        AGG_LOG_WARN("filejobs", "job %s failed: %s", j->id, j->err.msg);
        rc = finish(j, "failed", j->err.msg, NULL, NULL, 0, NULL, NULL);
    }
    if (rc == AGG_OK)
        AGG_LOG_INFO("filejobs", "job %s ended", j->id);
    agg_buf_clear(&result);
    return rc;
}

static void loop(void *arg, void *state, struct agg_work *item)
{
    struct agg_filejobs *f = arg;
    PGconn *conn = NULL;

    (void)state;
    (void)item;
    while (!agg_workq_expired(f->q)) {
        struct job j = {.f = f, .progress = -1};
        int rc;

        if (conn == NULL && st_pool_get(f->pool, &conn, &j.err) != AGG_OK) {
            conn = NULL;
            agg_workq_sleep(f->q, RETRY_MS);
            continue;
        }
        j.conn = conn;
        rc = claim(&j);
        if (rc == AGG_ENOTFOUND) {
            agg_workq_sleep(f->q, IDLE_POLL_MS);
            continue;
        }
        if (rc == AGG_OK)
            rc = run_job(&j);
        if (rc == AGG_OK)
            rc = st_db_exec(conn, "SELECT pg_advisory_unlock_all()", &j.err);
        if (rc == AGG_OK)
            continue;
        /* The job stays running; closing the connection frees its lock. */
        if (rc != AGG_EAGAIN)
            AGG_LOG_LIMITED(&f->trouble, AGG_LOG_LEVEL_WARN, "filejobs",
                            "job %s waits, will retry: %s", j.id[0] != '\0' ? j.id : "-",
                            j.err.msg);
        st_pool_put(f->pool, conn, true);
        conn = NULL;
        if (rc != AGG_EAGAIN)
            agg_workq_sleep(f->q, RETRY_MS);
    }
    if (conn != NULL)
        st_pool_put(f->pool, conn, true);
}

static void item_done(void *arg, struct agg_work *item)
{
    (void)arg;
    (void)item;
}

static const struct agg_workq_ops ops = {NULL, NULL, loop, item_done};

struct agg_filejobs *agg_filejobs_new(struct event_base *base, struct st_pool *pool,
                                      const struct agg_filejobs_opts *opts, struct agg_err *err)
{
    struct agg_filejobs *f = agg_calloc(1, sizeof(*f));

    if (f == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    f->pool = pool;
    f->accept_past_months = opts->accept_past_months;
    f->max_event_bytes = (size_t)opts->max_event_bytes;
    ing_csv_init(&f->csv);
    agg_buf_init(&f->line);
    agg_buf_init(&f->scratch);
    agg_buf_init(&f->merged);
    f->dir = agg_strdup(opts->uploads_dir);
    f->json = ing_json_new((size_t)opts->max_event_bytes, err);
    f->direct = st_writer_direct_new();
    if (f->dir == NULL || f->json == NULL || f->direct == NULL) {
        if (f->json != NULL || err == NULL || err->code == AGG_OK)
            agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    if (opts->syslog_3164_timezone != NULL && opts->syslog_3164_timezone[0] != '\0') {
        f->zone = agg_tz_load(opts->syslog_3164_timezone, err);
        if (f->zone == NULL)
            goto fail;
    }
    f->q = agg_workq_new(base, 1, &ops, f, err);
    if (f->q == NULL)
        goto fail;
    agg_workq_submit(f->q, &f->item);
    return f;

fail:
    agg_filejobs_free(f);
    return NULL;
}

void agg_filejobs_free(struct agg_filejobs *f)
{
    if (f == NULL)
        return;
    if (f->q != NULL) {
        agg_workq_stop(f->q, 0);
        agg_workq_free(f->q);
    }
    st_writer_direct_free(f->direct);
    ing_json_free(f->json);
    agg_tz_free(f->zone);
    ing_csv_clear(&f->csv);
    agg_buf_clear(&f->line);
    agg_buf_clear(&f->scratch);
    agg_buf_clear(&f->merged);
    free(f->dir);
    free(f);
}
