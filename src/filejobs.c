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
#include "src/filejobs_int.h"

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

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/time.h"
#include "core/tz.h"
#include "core/workq.h"
#include "ingest/csv.h"
#include "ingest/json.h"
#include "src/listen.h"
#include "store/batch.h"
#include "store/db.h"
#include "store/pipeline.h"
#include "store/writer.h"

/* Column names whose CSV values are numbers, not text. */
static const char *const numeric_columns[] = {"line_number", "user_id", "duration_ms",
                                              "memory_usage_mb", NULL};

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
int fj_note_progress(struct job *j, uint64_t done, uint64_t total)
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
int fj_finish(struct job *j, const char *status, const char *message, const char *result,
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

int fj_map_file(struct job *j)
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

void fj_unmap_file(struct job *j)
{
    if (j->size > 0 && j->data != NULL)
        munmap((void *)j->data, j->size);
    j->data = NULL;
}

/* The line at <at>: its length without the line end (LF, CRLF) into *<len>; returns
 * where the next starts. */
size_t fj_next_line(const struct job *j, size_t at, size_t *len)
{
    const char *lf = memchr(j->data + at, '\n', j->size - at);
    size_t end = lf != NULL ? (size_t)(lf - j->data) : j->size;

    *len = end - at;
    if (*len > 0 && j->data[end - 1] == '\r')
        (*len)--;
    return lf != NULL ? end + 1 : end;
}

bool fj_is_blank(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    }
    return true;
}

bool fj_stopping(struct job *j, uint64_t n)
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
int fj_csv_row_json(struct agg_filejobs *f, const struct agg_buf *header, size_t nheader,
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

/* See src/filejobs_int.h. */
size_t fj_csv_header(struct job *j, struct agg_buf *header, size_t *n)
{
    struct agg_filejobs *f = j->f;
    size_t used = 0, len;

    agg_buf_init(header);
    if (j->size == 0) {
        agg_err_set(&j->err, AGG_EINVAL, "the file is empty: no CSV header");
        return 0;
    }
    if (ing_csv_read(&f->csv, j->data, j->size, &used, &j->err) != AGG_OK) {
        agg_err_prefix(&j->err, "CSV header");
        return 0;
    }
    for (size_t i = 0; i < f->csv.nfields; i++) {
        const char *name = ing_csv_field(&f->csv, i, &len);

        if (agg_buf_append(header, name, len + 1) != AGG_OK) {
            agg_buf_clear(header);
            agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
            return 0;
        }
    }
    *n = f->csv.nfields;
    return used;
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

        next = fj_next_line(j, at, &len);
        x->line++;
        if (fj_stopping(j, x->line))
            return AGG_EAGAIN;
        if (fj_is_blank(j->data + at, len))
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

    at = fj_csv_header(j, &header, &nheader);
    if (at == 0)
        return j->err.code;
    if (j->offset > at) {
        at = j->offset;
        x->line = j->lines;
    } else {
        x->line = f->csv.lines;
    }
    for (; rc == AGG_OK && at < j->size; at += used) {
        struct agg_err err = {0};
        int read;

        if (fj_stopping(j, x->line + 1)) {
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
        } else if ((rc = fj_csv_row_json(f, &header, nheader, true)) == AGG_OK) {
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
        rc = fj_map_file(j);
    if (rc == AGG_OK) {
        AGG_LOG_INFO("filejobs", "job %s: %s of file %s (%s) from offset %" PRIu64, j->id, j->type,
                     j->file_id, j->format, j->offset);
        if (strcmp(j->type, "validation") == 0)
            rc = fj_run_validation(j, &result);
        else if (strcmp(j->type, "conversion") == 0)
            rc = fj_run_conversion(j, &result, output_id);
        else if (strcmp(j->type, "extraction") == 0)
            rc = run_extraction(j, &result);
        else
            rc = agg_err_set(&j->err, AGG_EINVAL, "unknown job type \"%s\"", j->type);
    }
    fj_unmap_file(j);
    if (rc == AGG_OK && j->finished) {
        /* finished with its output file, in one transaction */
    } else if (rc == AGG_OK) {
        rc = fj_finish(j, "completed", NULL, result.data, NULL, 0, NULL, NULL);
    } else if (rc != AGG_EDB && rc != AGG_EAGAIN) {
        AGG_LOG_WARN("filejobs", "job %s failed: %s", j->id, j->err.msg);
        rc = fj_finish(j, "failed", j->err.msg, NULL, NULL, 0, NULL, NULL);
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
