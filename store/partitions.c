/*
 * store/partitions.c — partition maintenance and the archive state machine.
 *
 * Place: CLI (src/cli_partitions.c) and the serve maintenance job (src/server.c) call
 *        here; files through store/archive.c. DESIGN.md, Partitions and archive;
 *        docs/partitions.md has the state diagram.
 * Threads: blocking libpq on the caller's thread (CLI or a job thread).
 * Ownership: borrows the connection; nothing kept after return.
 * Traps: every state is recorded *after* its step is durable, and each step copes with
 *        its own effect already done (a detached table without a row, a dropped table
 *        whose row still says verified). The row for a month is written after the
 *        DETACH, but the detached table keeps the data until "verified", so a month is
 *        never both missing from the database and absent from the archive.
 *        DETACH … CONCURRENTLY refuses a transaction block: no BEGIN around it.
 *        A "dropped" month can have a table again (ingest re-created it after a
 *        clock jump): its archived rows are merged back before anything is
 *        exported over the old file, which holds the only copy of them.
 * Not here: file format (store/archive.c), the timer (src/server.c).
 */
#include "store/partitions.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/time.h"
#include "core/version.h"
#include "store/archive.h"
#include "store/db.h"
#include "store/migrate.h"

#define PATH_CAP 4096
#define SQL_CAP  8192

const char *const st_partitions_tables[] = {"system_logs", "alerts", NULL};

enum state {
    STATE_NONE = 0,
    STATE_DETACHED,
    STATE_EXPORTED,
    STATE_VERIFIED,
    STATE_DROPPED,
    STATE_RESTORED,
    STATE_FAILED,
};

static const char *const state_names[] = {"",        "detached", "exported", "verified",
                                          "dropped", "restored", "failed"};

static enum state state_parse(const char *s)
{
    for (int i = 1; i < (int)(sizeof(state_names) / sizeof(state_names[0])); i++) {
        if (strcmp(s, state_names[i]) == 0)
            return (enum state)i;
    }
    return STATE_NONE;
}

static bool known_table(const char *table)
{
    for (int i = 0; st_partitions_tables[i] != NULL; i++) {
        if (strcmp(table, st_partitions_tables[i]) == 0)
            return true;
    }
    return false;
}

/* One month of one table being worked on. */
struct month_ctx {
    PGconn *conn;
    const struct st_partitions_opts *opts;
    FILE *log;
    const char *table;
    int month;
    char ym[8];
    char date[16];
    char part[ST_ARCHIVE_NAME_MAX + 16]; /* bare partition name */
    char *qtable;                        /* quoted identifiers (PQescapeIdentifier) */
    char *qpart;
    char file[PATH_CAP];
    char manifest[PATH_CAP];
    bool postponed; /* received rows within the grace: left attached */
};

static void say(FILE *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(FILE *log, const char *fmt, ...)
{
    va_list ap;

    if (log == NULL)
        return;
    va_start(ap, fmt);
    vfprintf(log, fmt, ap);
    va_end(ap);
    fputc('\n', log);
    fflush(log);
}

static int ctx_init(struct month_ctx *c, PGconn *conn, const char *dir, const char *table,
                    int month, struct agg_err *err)
{
    char suffix[8];

    memset(c, 0, sizeof(*c));
    c->conn = conn;
    c->table = table;
    c->month = month;
    agg_time_month_format(month, '-', c->ym);
    agg_time_month_date(month, c->date);
    agg_time_month_format(month, '_', suffix);
    snprintf(c->part, sizeof(c->part), "%s_%s", table, suffix);
    c->qtable = PQescapeIdentifier(conn, table, strlen(table));
    c->qpart = PQescapeIdentifier(conn, c->part, strlen(c->part));
    if (c->qtable == NULL || c->qpart == NULL)
        return agg_err_set(err, AGG_ENOMEM, "could not quote \"%s\"", c->part);
    if (dir != NULL &&
        (st_archive_path(dir, table, month, false, c->file, sizeof(c->file), err) != AGG_OK ||
         st_archive_path(dir, table, month, true, c->manifest, sizeof(c->manifest), err) != AGG_OK))
        return AGG_EINVAL;
    return AGG_OK;
}

static void ctx_clear(struct month_ctx *c)
{
    PQfreemem(c->qtable);
    PQfreemem(c->qpart);
    c->qtable = c->qpart = NULL;
}

/* Runs a statement built from trusted text and quoted identifiers. */
static int exec_fmt(PGconn *conn, struct agg_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int exec_fmt(PGconn *conn, struct agg_err *err, const char *fmt, ...)
{
    char sql[SQL_CAP];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(sql))
        return agg_err_set(err, AGG_EINVAL, "statement is too long");
    return st_db_exec(conn, sql, err);
}

/* The partition_archives state of the month (STATE_NONE without a row). */
static int read_state(struct month_ctx *c, enum state *st, struct agg_err *err)
{
    const char *p[] = {c->table, c->date};
    PGresult *res;

    if (st_db_query(c->conn,
                    "SELECT state FROM partition_archives WHERE table_name = $1 AND month = "
                    "$2::date",
                    2, p, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    *st = PQntuples(res) > 0 ? state_parse(PQgetvalue(res, 0, 0)) : STATE_NONE;
    PQclear(res);
    return AGG_OK;
}

/* Whether the partition's table exists, is attached to its parent, is pending detach. */
static int read_rel(struct month_ctx *c, bool *exists, bool *attached, bool *pending,
                    struct agg_err *err)
{
    const char *p[] = {c->qpart};
    PGresult *res;

    if (st_db_query(c->conn,
                    "SELECT r.oid IS NOT NULL, i.inhrelid IS NOT NULL, "
                    "       coalesce(i.inhdetachpending, false) "
                    "  FROM (SELECT to_regclass($1) AS oid) r "
                    "  LEFT JOIN pg_inherits i ON i.inhrelid = r.oid",
                    1, p, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    *exists = PQgetvalue(res, 0, 0)[0] == 't';
    *attached = PQgetvalue(res, 0, 1)[0] == 't';
    *pending = PQgetvalue(res, 0, 2)[0] == 't';
    PQclear(res);
    return AGG_OK;
}

static int set_state(struct month_ctx *c, enum state st, const char *error, struct agg_err *err)
{
    const char *p[] = {c->table, c->date, state_names[st], error};

    return st_db_query(c->conn,
                       "INSERT INTO partition_archives (table_name, month, state, error) "
                       "VALUES ($1, $2::date, $3, $4) ON CONFLICT (table_name, month) "
                       "DO UPDATE SET state = excluded.state, error = excluded.error",
                       4, p, PGRES_COMMAND_OK, NULL, err);
}

static int injected(struct month_ctx *c, enum state st, struct agg_err *err)
{
    if (c->opts != NULL && c->opts->fail_after != NULL &&
        strcmp(c->opts->fail_after, state_names[st]) == 0)
        return agg_err_set(err, AGG_ERR, "injected failure after %s (%s %s)", state_names[st],
                           c->table, c->ym);
    return AGG_OK;
}

/* The parent's columns in order, as a quoted, comma-separated list and as names. */
static int read_columns(struct month_ctx *c, struct st_archive_manifest *m, char *list, size_t cap,
                        struct agg_err *err)
{
    const char *p[] = {c->qtable};
    PGresult *res;
    size_t used = 0;
    int rc = AGG_OK;

    if (st_db_query(c->conn,
                    "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) "
                    "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    1, p, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    if (PQntuples(res) == 0 || PQntuples(res) > ST_ARCHIVE_MAX_COLUMNS) {
        PQclear(res);
        return agg_err_set(err, AGG_ERR, "cannot read the columns of \"%s\"", c->table);
    }
    list[0] = '\0';
    m->ncolumns = 0;
    for (int i = 0; i < PQntuples(res) && rc == AGG_OK; i++) {
        const char *name = PQgetvalue(res, i, 0);
        char *q = PQescapeIdentifier(c->conn, name, strlen(name));
        int n;

        if (q == NULL || strlen(name) >= ST_ARCHIVE_NAME_MAX) {
            rc = agg_err_set(err, AGG_ERR, "cannot use column \"%s\"", name);
        } else {
            n = snprintf(list + used, cap - used, "%s%s", i > 0 ? ", " : "", q);
            if (n < 0 || (size_t)n >= cap - used)
                rc = agg_err_set(err, AGG_EINVAL, "column list of \"%s\" is too long", c->table);
            else
                used += (size_t)n;
            memcpy(m->columns[m->ncolumns++], name, strlen(name) + 1);
        }
        PQfreemem(q);
    }
    PQclear(res);
    return rc;
}

/* Streams COPY … TO STDOUT of <sql> into <w>. */
static int copy_out(PGconn *conn, const char *sql, struct st_archive_writer *w, struct agg_err *err)
{
    PGresult *res = PQexec(conn, sql);
    int rc = AGG_OK;

    if (res == NULL || PQresultStatus(res) != PGRES_COPY_OUT) {
        st_db_error(conn, res, err);
        PQclear(res);
        return AGG_EDB;
    }
    PQclear(res);
    for (;;) {
        char *buf = NULL;
        int n = PQgetCopyData(conn, &buf, 0);

        if (n == -1)
            break;
        if (n < 0) {
            rc = st_db_error(conn, NULL, err);
            break;
        }
        if (rc == AGG_OK)
            rc = st_archive_writer_write(w, buf, (size_t)n, err);
        PQfreemem(buf);
    }
    while ((res = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && rc == AGG_OK)
            rc = st_db_error(conn, res, err);
        PQclear(res);
    }
    return rc;
}

/* detached -> exported: the CSV file and the manifest, and the row's figures. */
static int do_export(struct month_ctx *c, uint64_t *bytes, struct agg_err *err)
{
    struct st_archive_manifest m;
    struct st_archive_stats st;
    struct st_archive_writer *w;
    char cols[SQL_CAP / 2], sql[SQL_CAP], rows[32], comp[32], minid[32], maxid[32];
    const char *p[11];
    PGresult *res;
    int n;

    memset(&m, 0, sizeof(m));
    snprintf(m.table, sizeof(m.table), "%s", c->table);
    m.month = c->month;
    m.schema_version = st_migrate_latest();
    snprintf(m.aggd_version, sizeof(m.aggd_version), "%s", AGG_VERSION);
    if (read_columns(c, &m, cols, sizeof(cols), err) != AGG_OK)
        return AGG_ERR;

    n = snprintf(sql, sizeof(sql),
                 "SELECT count(*), min(created_at)::text, max(created_at)::text, min(id), "
                 "max(id) FROM %s",
                 c->qpart);
    if (n < 0 || (size_t)n >= sizeof(sql))
        return agg_err_set(err, AGG_EINVAL, "statement is too long");
    if (st_db_query(c->conn, sql, 0, NULL, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    m.rows = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    snprintf(m.min_created_at, sizeof(m.min_created_at), "%s", PQgetvalue(res, 0, 1));
    snprintf(m.max_created_at, sizeof(m.max_created_at), "%s", PQgetvalue(res, 0, 2));
    m.min_id = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    m.max_id = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    PQclear(res);

    n = snprintf(sql, sizeof(sql),
                 "COPY (SELECT %s FROM %s ORDER BY created_at, id) TO STDOUT (FORMAT csv, "
                 "HEADER)",
                 cols, c->qpart);
    if (n < 0 || (size_t)n >= sizeof(sql))
        return agg_err_set(err, AGG_EINVAL, "statement is too long");
    w = st_archive_writer_open(c->file, err);
    if (w == NULL)
        return AGG_ERR;
    if (copy_out(c->conn, sql, w, err) != AGG_OK) {
        st_archive_writer_free(w);
        return AGG_ERR;
    }
    if (st_archive_writer_commit(w, &st, err) != AGG_OK)
        return AGG_ERR;
    if (st.rows != m.rows)
        return agg_err_set(err, AGG_EINVAL,
                           "export of %s %s wrote %" PRIu64 " rows, the table has %" PRIu64,
                           c->table, c->ym, st.rows, m.rows);
    memcpy(m.sha256, st.sha256, sizeof(m.sha256));
    m.compressed_bytes = st.compressed_bytes;
    if (st_archive_manifest_write(c->manifest, &m, err) != AGG_OK)
        return AGG_ERR;
    *bytes += st.compressed_bytes;

    snprintf(rows, sizeof(rows), "%" PRIu64, m.rows);
    snprintf(comp, sizeof(comp), "%" PRIu64, m.compressed_bytes);
    snprintf(minid, sizeof(minid), "%" PRId64, m.min_id);
    snprintf(maxid, sizeof(maxid), "%" PRId64, m.max_id);
    p[0] = c->table;
    p[1] = c->date;
    p[2] = c->file;
    p[3] = c->manifest;
    p[4] = rows;
    p[5] = m.sha256;
    p[6] = comp;
    /* min/max stay NULL for an empty month */
    p[7] = m.rows > 0 ? m.min_created_at : NULL;
    p[8] = m.rows > 0 ? m.max_created_at : NULL;
    p[9] = m.rows > 0 ? minid : NULL;
    p[10] = m.rows > 0 ? maxid : NULL;
    if (st_db_query(c->conn,
                    "UPDATE partition_archives SET state = 'exported', error = NULL, "
                    "file_path = $3, manifest_path = $4, row_count = $5, sha256 = $6, "
                    "compressed_bytes = $7, min_created_at = $8, max_created_at = $9, "
                    "min_id = $10, max_id = $11 "
                    "WHERE table_name = $1 AND month = $2::date",
                    11, p, PGRES_COMMAND_OK, NULL, err) != AGG_OK)
        return AGG_EDB;
    return AGG_OK;
}

/* Checks the file at <file> against the manifest at <manifest>; fills <m>. */
static int verify_files(const char *table, int month, const char *file, const char *manifest,
                        struct st_archive_manifest *m, struct agg_err *err)
{
    struct st_archive_stats st;
    char ym[8];
    int rc;

    agg_time_month_format(month, '-', ym);
    rc = st_archive_manifest_read(manifest, m, err);
    if (rc != AGG_OK)
        return rc;
    if (strcmp(m->table, table) != 0 || m->month != month)
        return agg_err_set(err, AGG_EINVAL, "manifest \"%s\" is for another table or month",
                           manifest);
    rc = st_archive_read(file, NULL, NULL, &st, err);
    if (rc != AGG_OK)
        return rc;
    if (strcmp(st.sha256, m->sha256) != 0)
        return agg_err_set(err, AGG_EINVAL, "archive %s %s: SHA-256 %s, manifest says %s", table,
                           ym, st.sha256, m->sha256);
    if (st.rows != m->rows)
        return agg_err_set(err, AGG_EINVAL,
                           "archive %s %s: %" PRIu64 " rows, manifest says %" PRIu64, table, ym,
                           st.rows, m->rows);
    if (st.compressed_bytes != m->compressed_bytes)
        return agg_err_set(err, AGG_EINVAL,
                           "archive %s %s: %" PRIu64 " bytes, manifest says %" PRIu64, table, ym,
                           st.compressed_bytes, m->compressed_bytes);
    return AGG_OK;
}

/* exported -> verified: the file against the manifest, the row and count(*). */
static int do_verify(struct month_ctx *c, struct agg_err *err)
{
    struct st_archive_manifest m;
    const char *p[] = {c->table, c->date};
    char sql[SQL_CAP];
    PGresult *res;
    uint64_t count;
    int rc;

    rc = verify_files(c->table, c->month, c->file, c->manifest, &m, err);
    if (rc != AGG_OK)
        return rc;
    if (st_db_query(c->conn,
                    "SELECT coalesce(row_count, -1), coalesce(sha256, '') FROM "
                    "partition_archives WHERE table_name = $1 AND month = $2::date",
                    2, p, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    rc = PQntuples(res) == 1 && strtoull(PQgetvalue(res, 0, 0), NULL, 10) == m.rows &&
                 strcmp(PQgetvalue(res, 0, 1), m.sha256) == 0
             ? AGG_OK
             : agg_err_set(err, AGG_EINVAL, "archive %s %s does not match partition_archives",
                           c->table, c->ym);
    PQclear(res);
    if (rc != AGG_OK)
        return rc;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", c->qpart);
    if (st_db_query(c->conn, sql, 0, NULL, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    count = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (count != m.rows)
        return agg_err_set(err, AGG_EINVAL,
                           "archive %s %s has %" PRIu64 " rows, the detached table %" PRIu64,
                           c->table, c->ym, m.rows, count);
    return AGG_OK;
}

/* Reports a month the pass gives up on for now: <left> says how it stays. */
static void report_failure(struct month_ctx *c, const char *left, const struct agg_err *why)
{
    /* The pass goes on with other months: this is the only report of this one (serve
     * passes no <log>; the CLI prints it on stdout and the first error on stderr). */
    if (c->log != NULL)
        say(c->log, "%s %s: failed: %s", c->table, c->ym, why->msg);
    else
        AGG_LOG_WARN("partitions", "could not archive %s %s, %s: %s", c->table, c->ym, left,
                     why->msg);
}

/* Records a failed step: the table stays detached, the next run exports again. */
static int fail_month(struct month_ctx *c, const struct agg_err *why, struct agg_err *err)
{
    struct agg_err ignored = {0};

    report_failure(c, "left detached", why);
    set_state(c, STATE_FAILED, why->msg, &ignored);
    if (err != NULL && err != why)
        *err = *why;
    return AGG_ERR;
}

/* Whether the attached month of <c> may be detached now: not an alerts month with
 * alerts still open, nor a month noted receiving rows within the grace (measured on
 * PostgreSQL's clock, the one the notes are written with: --now and the clock of
 * aggd's host play no part). Sets c->postponed for the latter. */
static int may_detach(struct month_ctx *c, bool *go, struct agg_err *err)
{
    char sql[SQL_CAP], hours[16];
    const char *p[] = {c->table, c->date, hours};
    PGresult *res;

    *go = false;
    if (strcmp(c->table, "alerts") == 0) {
        long open_alerts;

        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM %s WHERE status NOT IN ('resolved', 'closed')", c->qpart);
        if (st_db_query(c->conn, sql, 0, NULL, PGRES_TUPLES_OK, &res, err) != AGG_OK)
            return AGG_EDB;
        open_alerts = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        if (open_alerts > 0) {
            say(c->log, "%s %s: kept: %ld alerts not resolved or closed", c->table, c->ym,
                open_alerts);
            return AGG_OK;
        }
    }
    if (c->opts->archive_grace_hours > 0) {
        snprintf(hours, sizeof(hours), "%d", c->opts->archive_grace_hours);
        if (st_db_query(c->conn,
                        "SELECT greatest(0, extract(epoch FROM (now() AT TIME ZONE 'UTC') - "
                        "       last_received_at) / 3600)::float8"
                        "  FROM partition_activity WHERE table_name = $1 AND month = $2::date"
                        "   AND last_received_at > (now() AT TIME ZONE 'UTC') - "
                        "       $3::int * interval '1 hour'",
                        3, p, PGRES_TUPLES_OK, &res, err) != AGG_OK)
            return AGG_EDB;
        if (PQntuples(res) > 0) {
            double ago = strtod(PQgetvalue(res, 0, 0), NULL);

            if (c->log != NULL)
                say(c->log,
                    "%s %s: received rows %.1f hours ago (partitions.archive_grace_hours %d): "
                    "archiving postponed",
                    c->table, c->ym, ago, c->opts->archive_grace_hours);
            else
                AGG_LOG_INFO("partitions",
                             "%s %s received rows %.1f hours ago "
                             "(partitions.archive_grace_hours %d): archiving postponed",
                             c->table, c->ym, ago, c->opts->archive_grace_hours);
            c->postponed = true;
        }
        PQclear(res);
        if (c->postponed)
            return AGG_OK;
    }
    *go = true;
    return AGG_OK;
}

/* The columns of manifest <m> as a quoted, comma-separated list. */
static int manifest_columns(PGconn *conn, const struct st_archive_manifest *m, char *cols,
                            size_t cap, struct agg_err *err)
{
    size_t used = 0;

    cols[0] = '\0';
    for (int i = 0; i < m->ncolumns; i++) {
        char *q = PQescapeIdentifier(conn, m->columns[i], strlen(m->columns[i]));
        int n = q == NULL ? -1 : snprintf(cols + used, cap - used, "%s%s", i ? ", " : "", q);

        PQfreemem(q);
        if (n < 0 || (size_t)n >= cap - used)
            return agg_err_set(err, AGG_EINVAL, "column list of \"%s\" is too long", m->table);
        used += (size_t)n;
    }
    return AGG_OK;
}

struct restore_sink {
    PGconn *conn;
};

static int restore_put(void *arg, const void *buf, size_t len, struct agg_err *err)
{
    struct restore_sink *s = arg;

    while (len > 0) {
        int n = len > (1 << 20) ? (1 << 20) : (int)len;

        if (PQputCopyData(s->conn, buf, n) != 1)
            return st_db_error(s->conn, NULL, err);
        buf = (const char *)buf + n;
        len -= (size_t)n;
    }
    return AGG_OK;
}

/* COPY <target> (<cols>) FROM the archive file of <c>, re-hashing on the way: a hash or
 * row count other than <m>'s aborts the COPY. Inside the caller's transaction. */
static int load_archive(struct month_ctx *c, const char *target, const char *cols,
                        const struct st_archive_manifest *m, struct agg_err *err)
{
    struct restore_sink sink = {c->conn};
    struct st_archive_stats st;
    char sql[SQL_CAP];
    PGresult *res;
    int rc, n;

    n = snprintf(sql, sizeof(sql), "COPY %s (%s) FROM STDIN (FORMAT csv, HEADER)", target, cols);
    if (n < 0 || (size_t)n >= sizeof(sql))
        return agg_err_set(err, AGG_EINVAL, "statement is too long");
    res = PQexec(c->conn, sql);
    if (res == NULL || PQresultStatus(res) != PGRES_COPY_IN) {
        rc = st_db_error(c->conn, res, err);
        PQclear(res);
        return rc;
    }
    PQclear(res);
    rc = st_archive_read(c->file, restore_put, &sink, &st, err);
    if (rc == AGG_OK && (strcmp(st.sha256, m->sha256) != 0 || st.rows != m->rows))
        rc = agg_err_set(err, AGG_EINVAL, "archive %s %s changed while restoring", c->table, c->ym);
    PQputCopyEnd(c->conn, rc == AGG_OK ? NULL : "archive rejected");
    while ((res = PQgetResult(c->conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            if (rc == AGG_OK)
                rc = st_db_error(c->conn, res, err);
        } else if (rc == AGG_OK && strtoull(PQcmdTuples(res), NULL, 10) != m->rows) {
            rc = agg_err_set(err, AGG_EINVAL, "restore of %s %s loaded %s rows, expected %" PRIu64,
                             c->table, c->ym, PQcmdTuples(res), m->rows);
        }
        PQclear(res);
    }
    return rc;
}

/* For a month archived and then re-created: inserts into its existing table the
 * archived rows it lacks (same (id, created_at): the primary key), through a staging
 * table, so a merge done twice adds nothing the second time. Inside the caller's
 * transaction; <added> gets how many were inserted. Fills <m> from the verified file. */
static int merge_archive(struct month_ctx *c, struct st_archive_manifest *m, uint64_t *added,
                         struct agg_err *err)
{
    char cols[SQL_CAP / 2];
    PGresult *res;
    int rc;

    /* Check the whole file first: a bad archive fails before any change. */
    rc = verify_files(c->table, c->month, c->file, c->manifest, m, err);
    if (rc != AGG_OK)
        return rc;
    rc = manifest_columns(c->conn, m, cols, sizeof(cols), err);
    if (rc != AGG_OK)
        return rc;
    /* Only the archive's columns, no constraints: the table's own apply on insert. */
    rc = exec_fmt(c->conn, err,
                  "CREATE TEMP TABLE aggd_restore_staging ON COMMIT DROP AS SELECT %s FROM %s "
                  "WITH NO DATA",
                  cols, c->qtable);
    if (rc == AGG_OK)
        rc = load_archive(c, "pg_temp.aggd_restore_staging", cols, m, err);
    if (rc != AGG_OK)
        return rc;
    {
        char sql[SQL_CAP];
        int n = snprintf(sql, sizeof(sql),
                         "INSERT INTO %s (%s) SELECT * FROM pg_temp.aggd_restore_staging "
                         "ON CONFLICT DO NOTHING",
                         c->qpart, cols);

        if (n < 0 || (size_t)n >= sizeof(sql))
            return agg_err_set(err, AGG_EINVAL, "statement is too long");
        if (st_db_query(c->conn, sql, 0, NULL, PGRES_COMMAND_OK, &res, err) != AGG_OK)
            return AGG_EDB;
        *added = strtoull(PQcmdTuples(res), NULL, 10);
        PQclear(res);
    }
    return AGG_OK;
}

/* dropped, and the table is back (rows written into the month after its archive): puts
 * the archived rows back into it, in one transaction, so that the next export holds
 * both. The state stays "dropped" until the detach: a crash before it merges again
 * (adding nothing). The old file stays authoritative until the new one is verified. */
static int merge_recreated(struct month_ctx *c, struct agg_err *err)
{
    struct st_archive_manifest m;
    uint64_t added = 0;
    int rc = st_db_exec(c->conn, "BEGIN", err);

    if (rc != AGG_OK)
        return rc;
    rc = merge_archive(c, &m, &added, err);
    if (rc == AGG_OK)
        rc = st_db_exec(c->conn, "COMMIT", err);
    if (rc != AGG_OK) {
        st_db_exec(c->conn, "ROLLBACK", NULL);
        return rc;
    }
    say(c->log,
        "%s %s: re-created after its archive: merged %" PRIu64 " of its %" PRIu64
        " archived rows back",
        c->table, c->ym, added, m.rows);
    return AGG_OK;
}

/* Detaches the month's table (or finalizes a detach) when still attached, records
 * "detached" unless <st> already says so, and exports it. */
static int detach_export(struct month_ctx *c, enum state st, bool attached, bool pending,
                         uint64_t *bytes, struct agg_err *err)
{
    struct agg_err e = {0};

    if (pending) {
        if (exec_fmt(c->conn, err, "ALTER TABLE %s DETACH PARTITION %s FINALIZE", c->qtable,
                     c->qpart) != AGG_OK)
            return AGG_EDB;
        say(c->log, "%s %s: detach finalized", c->table, c->ym);
    } else if (attached) {
        if (exec_fmt(c->conn, err, "ALTER TABLE %s DETACH PARTITION %s CONCURRENTLY", c->qtable,
                     c->qpart) != AGG_OK)
            return AGG_EDB;
        say(c->log, "%s %s: detached", c->table, c->ym);
    }
    if (st != STATE_DETACHED && st != STATE_FAILED) {
        if (set_state(c, STATE_DETACHED, NULL, err) != AGG_OK)
            return AGG_EDB;
        if (injected(c, STATE_DETACHED, err) != AGG_OK)
            return AGG_ERR;
    }
    if (do_export(c, bytes, &e) != AGG_OK)
        return fail_month(c, &e, err);
    say(c->log, "%s %s: exported to %s", c->table, c->ym, c->file);
    return injected(c, STATE_EXPORTED, err);
}

/* Drives one month through detached -> exported -> verified -> dropped, from whatever
 * state it is in. <done> is set when it reached dropped in this call. */
static int archive_month(struct month_ctx *c, bool *done, uint64_t *bytes, struct agg_err *err)
{
    struct agg_err e = {0};

    *done = false;
    for (;;) {
        enum state st;
        bool exists, attached, pending, go = true;
        int rc;

        if (read_state(c, &st, err) != AGG_OK ||
            read_rel(c, &exists, &attached, &pending, err) != AGG_OK)
            return AGG_EDB;
        switch (st) {
        case STATE_RESTORED:
            if (!c->opts->rearchive)
                return AGG_OK;
            /* fall through */
        case STATE_NONE:
        case STATE_DROPPED:
            if (!exists)
                return AGG_OK;
            if (attached && !pending && may_detach(c, &go, err) != AGG_OK)
                return AGG_EDB;
            if (!go)
                return AGG_OK;
            if (st == STATE_DROPPED) {
                /* Re-created after its archive: never export over the old file
                 * without its rows. A failure leaves the month as it is (attached,
                 * "dropped"): the next pass tries again. */
                if (merge_recreated(c, &e) != AGG_OK) {
                    report_failure(c, "left as it is", &e);
                    if (err != NULL)
                        *err = e;
                    return AGG_ERR;
                }
            }
            rc = detach_export(c, st, attached, pending, bytes, err);
            if (rc != AGG_OK)
                return rc;
            break;
        case STATE_FAILED:
        case STATE_DETACHED:
            if (!exists)
                return agg_err_set(err, AGG_ERR, "%s %s is %s but its table \"%s\" is missing",
                                   c->table, c->ym, state_names[st], c->part);
            rc = detach_export(c, st, attached, pending, bytes, err);
            if (rc != AGG_OK)
                return rc;
            break;
        case STATE_EXPORTED:
            if (!exists)
                return agg_err_set(err, AGG_ERR,
                                   "%s %s is exported but its table \"%s\" is "
                                   "missing",
                                   c->table, c->ym, c->part);
            if (do_verify(c, &e) != AGG_OK)
                return fail_month(c, &e, err);
            if (set_state(c, STATE_VERIFIED, NULL, err) != AGG_OK)
                return AGG_EDB;
            say(c->log, "%s %s: verified", c->table, c->ym);
            if (injected(c, STATE_VERIFIED, err) != AGG_OK)
                return AGG_ERR;
            break;
        case STATE_VERIFIED:
            if (exists) {
                if (attached)
                    return agg_err_set(err, AGG_ERR, "%s %s is verified but still attached",
                                       c->table, c->ym);
                if (exec_fmt(c->conn, err, "DROP TABLE %s", c->qpart) != AGG_OK)
                    return AGG_EDB;
            }
            if (set_state(c, STATE_DROPPED, NULL, err) != AGG_OK)
                return AGG_EDB;
            say(c->log, "%s %s: dropped", c->table, c->ym);
            *done = true;
            return AGG_OK;
        }
    }
}

/* Months of <table> that may need archive work: partitions (attached or not) named
 * <table>_YYYY_MM, and unfinished partition_archives rows. */
static int candidate_months(PGconn *conn, const char *table, PGresult **res, struct agg_err *err)
{
    char *q = PQescapeIdentifier(conn, table, strlen(table));
    const char *p[] = {table, q};
    int rc;

    if (q == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    rc = st_db_query(conn,
                     "SELECT m, bool_or(unfinished) FROM ("
                     "  SELECT to_char(to_date(right(c.relname, 7), 'YYYY_MM'), 'YYYY-MM') AS m,"
                     "         false AS unfinished"
                     "    FROM pg_class c"
                     "   WHERE c.relkind = 'r'"
                     "     AND c.relnamespace = (SELECT relnamespace FROM pg_class"
                     "                            WHERE oid = to_regclass($2))"
                     "     AND c.relname ~ ('^' || $1 || '_[0-9]{4}_[0-9]{2}$')"
                     "  UNION ALL"
                     "  SELECT to_char(month, 'YYYY-MM'), true FROM partition_archives"
                     "   WHERE table_name = $1 AND state IN ('detached', 'exported', 'verified',"
                     "                                       'failed')"
                     ") s GROUP BY m ORDER BY m",
                     2, p, PGRES_TUPLES_OK, res, err);
    PQfreemem(q);
    return rc;
}

static int create_ahead(PGconn *conn, const char *table, int month, int *created, FILE *log,
                        struct agg_err *err)
{
    bool exists = false, attached, pending;
    struct month_ctx c;
    const char *p[2];
    PGresult *res;
    int rc;

    rc = ctx_init(&c, conn, NULL, table, month, err);
    if (rc == AGG_OK)
        rc = read_rel(&c, &exists, &attached, &pending, err);
    p[0] = table;
    p[1] = c.date;
    if (rc == AGG_OK) {
        rc = st_db_query(conn, "SELECT aggd_create_month_partition($1, $2::date)", 2, p,
                         PGRES_TUPLES_OK, &res, err);
        if (rc == AGG_OK) {
            PQclear(res);
            if (!exists) {
                (*created)++;
                say(log, "%s %s: created", table, c.ym);
            }
        }
    }
    ctx_clear(&c);
    return rc;
}

int st_partitions_maintain(PGconn *conn, const struct st_partitions_opts *opts, FILE *log,
                           struct st_partitions_result *res, struct agg_err *err)
{
    char key[32];
    const char *p[] = {key};
    PGresult *r;
    int now = agg_time_month_of_us(opts->now_us);
    int cutoff = now - opts->retention_months; /* months before this one are archived */
    bool locked;
    int rc = AGG_OK;
    struct agg_err first = {0};

    memset(res, 0, sizeof(*res));
    snprintf(key, sizeof(key), "%" PRId64, ST_LOCK_PARTITIONS);
    if (st_db_query(conn, "SELECT pg_try_advisory_lock($1::bigint)", 1, p, PGRES_TUPLES_OK, &r,
                    err) != AGG_OK)
        return AGG_EDB;
    locked = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!locked) {
        res->skipped = true;
        say(log, "another session is maintaining partitions: nothing done");
        return AGG_OK;
    }
    /* Creating a partition locks the parent: do not queue behind a long transaction. */
    if (st_db_exec(conn, "SET lock_timeout = '10s'", err) != AGG_OK) {
        rc = AGG_EDB;
        goto out_unlock;
    }

    for (int t = 0; st_partitions_tables[t] != NULL; t++) {
        for (int m = now; m <= now + opts->premake_months; m++) {
            struct agg_err e = {0};

            if (create_ahead(conn, st_partitions_tables[t], m, &res->created, log, &e) != AGG_OK) {
                say(log, "%s: %s", st_partitions_tables[t], e.msg);
                if (rc == AGG_OK) {
                    rc = AGG_ERR;
                    first = e;
                }
            }
        }
    }

    for (int t = 0; st_partitions_tables[t] != NULL; t++) {
        const char *table = st_partitions_tables[t];
        struct agg_err e = {0};

        if (candidate_months(conn, table, &r, &e) != AGG_OK) {
            if (rc == AGG_OK) {
                rc = AGG_ERR;
                first = e;
            }
            continue;
        }
        for (int i = 0; i < PQntuples(r); i++) {
            struct month_ctx c;
            int month;
            bool done = false;
            bool unfinished = PQgetvalue(r, i, 1)[0] == 't';

            if (st_archive_month_parse(PQgetvalue(r, i, 0), &month) != AGG_OK)
                continue;
            if (month >= cutoff && !unfinished)
                continue;
            memset(&e, 0, sizeof(e));
            if (ctx_init(&c, conn, opts->archive_dir, table, month, &e) == AGG_OK) {
                c.opts = opts;
                c.log = log;
                if (archive_month(&c, &done, &res->archived_bytes, &e) == AGG_OK) {
                    res->archived += done ? 1 : 0;
                    res->postponed += c.postponed ? 1 : 0;
                } else {
                    res->failed++;
                    if (rc == AGG_OK) {
                        rc = AGG_ERR;
                        first = e;
                    }
                }
            } else if (rc == AGG_OK) {
                rc = AGG_ERR;
                first = e;
            }
            ctx_clear(&c);
            /* An injected failure simulates a crash: stop here. */
            if (opts->fail_after != NULL && rc != AGG_OK)
                break;
        }
        PQclear(r);
        if (opts->fail_after != NULL && rc != AGG_OK)
            break;
    }
    if (rc != AGG_OK && err != NULL)
        *err = first;
    st_db_exec(conn, "RESET lock_timeout", NULL);

out_unlock:
    if (PQtransactionStatus(conn) == PQTRANS_IDLE &&
        st_db_query(conn, "SELECT pg_advisory_unlock($1::bigint)", 1, p, PGRES_TUPLES_OK, NULL,
                    NULL) != AGG_OK)
        rc = rc == AGG_OK ? AGG_EDB : rc;
    return rc;
}

static int print_rows(PGconn *conn, const char *sql, const char *header, FILE *out,
                      struct agg_err *err)
{
    PGresult *res;

    if (st_db_query(conn, sql, 0, NULL, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    fprintf(out, "%s\n", header);
    for (int i = 0; i < PQntuples(res); i++) {
        for (int j = 0; j < PQnfields(res); j++)
            fprintf(out, "%s%s", j > 0 ? "\t" : "",
                    PQgetisnull(res, i, j) ? "-" : PQgetvalue(res, i, j));
        fputc('\n', out);
    }
    PQclear(res);
    return AGG_OK;
}

const char *const st_partitions_columns[] = {"table", "month",  "where", "archive_state",
                                              "rows",  "bytes", "range", NULL};

/* Column <col> of row <i> as text, NULL when SQL NULL. */
static const char *cell(const PGresult *res, int i, int col)
{
    return PQgetisnull(res, i, col) ? NULL : PQgetvalue(res, i, col);
}

/* Column <col> of row <i> as a bigint into *<out>; false when SQL NULL. */
static bool cell_int(const PGresult *res, int i, int col, int64_t *out)
{
    if (PQgetisnull(res, i, col))
        return false;
    *out = strtoll(PQgetvalue(res, i, col), NULL, 10);
    return true;
}

int st_partitions_each(PGconn *conn, int (*fn)(void *arg, const struct st_partitions_row *row),
                       void *arg, struct agg_err *err)
{
    PGresult *res;
    int rc = AGG_OK;

    if (st_db_query(
            conn,
            "WITH parts AS ("
            "  SELECT p.relname::text AS tbl, to_date(right(c.relname, 7), 'YYYY_MM') AS month,"
            "         pg_get_expr(c.relpartbound, c.oid) AS bound,"
            "         (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM"
            " %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint AS nrows,"
            "         pg_total_relation_size(c.oid) AS bytes"
            "    FROM pg_inherits i"
            "    JOIN pg_class c ON c.oid = i.inhrelid"
            "    JOIN pg_class p ON p.oid = i.inhparent"
            "    JOIN pg_namespace n ON n.oid = c.relnamespace"
            "   WHERE p.oid IN (to_regclass('system_logs'), to_regclass('alerts'))"
            "     AND c.relname ~ '_[0-9]{4}_[0-9]{2}$')"
            "SELECT coalesce(parts.tbl, a.table_name), to_char(coalesce(parts.month, a.month),"
            "       'YYYY-MM'), CASE WHEN parts.tbl IS NULL THEN 'archived' ELSE 'attached' END,"
            "       a.state, coalesce(parts.nrows, a.row_count),"
            "       coalesce(parts.bytes, a.compressed_bytes),"
            "       substring(parts.bound from 'FROM \\((.*)\\) TO') || ' .. ' ||"
            "       substring(parts.bound from 'TO \\((.*)\\)$')"
            "  FROM parts FULL JOIN partition_archives a"
            "    ON a.table_name = parts.tbl AND a.month = parts.month"
            " ORDER BY 1, 2",
            0, NULL, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    for (int i = 0; i < PQntuples(res) && rc == AGG_OK; i++) {
        struct st_partitions_row row = {
            .table = cell(res, i, 0),
            .month = cell(res, i, 1),
            .where = cell(res, i, 2),
            .archive_state = cell(res, i, 3),
            .range = cell(res, i, 6),
        };

        row.has_rows = cell_int(res, i, 4, &row.rows);
        row.has_bytes = cell_int(res, i, 5, &row.bytes);
        rc = fn(arg, &row);
    }
    PQclear(res);
    return rc;
}

int st_archive_list(PGconn *conn, FILE *out, struct agg_err *err)
{
    return print_rows(conn,
                      "SELECT table_name, to_char(month, 'YYYY-MM'), row_count,"
                      "       compressed_bytes, state, error"
                      "  FROM partition_archives ORDER BY 1, 2",
                      "table\tmonth\trows\tbytes\tstate\terror", out, err);
}

int st_archive_verify(PGconn *conn, const char *dir, const char *table, int month,
                      struct agg_err *err)
{
    struct st_archive_manifest m;
    char file[PATH_CAP], manifest[PATH_CAP], date[16];
    int rc;

    if (!known_table(table))
        return agg_err_set(err, AGG_EINVAL, "unknown table \"%s\"", table);
    if (st_archive_path(dir, table, month, false, file, sizeof(file), err) != AGG_OK ||
        st_archive_path(dir, table, month, true, manifest, sizeof(manifest), err) != AGG_OK)
        return AGG_EINVAL;
    rc = verify_files(table, month, file, manifest, &m, err);
    if (rc != AGG_OK || conn == NULL)
        return rc;
    agg_time_month_date(month, date);
    {
        const char *p[] = {table, date};
        PGresult *res;

        if (st_db_query(conn,
                        "SELECT coalesce(sha256, ''), coalesce(row_count, -1) FROM "
                        "partition_archives WHERE table_name = $1 AND month = $2::date",
                        2, p, PGRES_TUPLES_OK, &res, err) != AGG_OK)
            return AGG_EDB;
        if (PQntuples(res) == 1 && (strcmp(PQgetvalue(res, 0, 0), m.sha256) != 0 ||
                                    strtoull(PQgetvalue(res, 0, 1), NULL, 10) != m.rows))
            rc = agg_err_set(err, AGG_EINVAL,
                             "archive %s of %s does not match "
                             "partition_archives",
                             table, date);
        PQclear(res);
    }
    return rc;
}

/* Runs the statement that format(<fmt>, <params>...) builds server-side (%I, %L);
 * <n> is 2 or 4. */
static int exec_server_format(PGconn *conn, const char *fmt, int n, const char *const *params,
                              struct agg_err *err)
{
    const char *all[5] = {fmt};
    PGresult *res;
    int rc;

    for (int i = 0; i < n && i < 4; i++)
        all[i + 1] = params[i];
    if (st_db_query(conn,
                    n == 2 ? "SELECT format($1::text, $2::text, $3::text)"
                           : "SELECT format($1::text, $2::text, $3::text, $4::text, $5::text)",
                    n + 1, all, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    rc = st_db_exec(conn, PQgetvalue(res, 0, 0), err);
    PQclear(res);
    return rc;
}

/* Attaches the loaded standalone table of <c> to its parent. A CHECK constraint matching
 * the bounds lets ATTACH skip its validation scan; it is dropped afterwards. */
static int attach_loaded(struct month_ctx *c, struct agg_err *err)
{
    char next[16], check[ST_ARCHIVE_NAME_MAX + 32];
    const char *p[5];

    agg_time_month_date(c->month + 1, next);
    snprintf(check, sizeof(check), "%s_restore_bounds", c->part);
    p[0] = c->part;
    p[1] = check;
    p[2] = c->date;
    p[3] = next;
    if (exec_server_format(c->conn,
                           "ALTER TABLE %I ADD CONSTRAINT %I CHECK (created_at IS NOT NULL "
                           "AND created_at >= %L AND created_at < %L)",
                           4, p, err) != AGG_OK)
        return AGG_EDB;
    p[0] = c->table;
    p[1] = c->part;
    p[2] = c->date;
    p[3] = next;
    if (exec_server_format(c->conn,
                           "ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)", 4, p,
                           err) != AGG_OK)
        return AGG_EDB;
    p[0] = c->part;
    p[1] = check;
    return exec_server_format(c->conn, "ALTER TABLE %I DROP CONSTRAINT %I", 2, p, err);
}

int st_archive_restore(PGconn *conn, const char *dir, const char *table, int month,
                       struct st_archive_restored *out, struct agg_err *err)
{
    struct st_archive_restored done = {0};
    struct st_archive_manifest m;
    struct month_ctx c;
    char cols[SQL_CAP / 2];
    const char *p[2];
    PGresult *res;
    enum state state;
    char key[32];
    const char *kp[1];
    bool locked, exists, attached, pending;
    int rc;

    if (!known_table(table))
        return agg_err_set(err, AGG_EINVAL, "unknown table \"%s\"", table);
    rc = ctx_init(&c, conn, dir, table, month, err);
    if (rc != AGG_OK)
        goto out;
    /* The same lock as maintenance, for this transaction: neither sees the other's
     * half-done month. */
    snprintf(key, sizeof(key), "%" PRId64, ST_LOCK_PARTITIONS);
    kp[0] = key;
    rc = st_db_exec(conn, "BEGIN", err);
    if (rc != AGG_OK)
        goto out;
    rc = st_db_query(conn, "SELECT pg_try_advisory_xact_lock($1::bigint)", 1, kp, PGRES_TUPLES_OK,
                     &res, err);
    if (rc != AGG_OK)
        goto out_rollback;
    locked = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!locked) {
        rc = agg_err_set(err, AGG_EAGAIN, "partition maintenance is running: try again later");
        goto out_rollback;
    }
    rc = read_state(&c, &state, err);
    if (rc == AGG_OK)
        rc = read_rel(&c, &exists, &attached, &pending, err);
    if (rc != AGG_OK)
        goto out_rollback;
    if (state != STATE_DROPPED) {
        rc = agg_err_set(err, AGG_EINVAL, "%s %s is %s, not dropped: nothing to restore", table,
                         c.ym, state == STATE_NONE ? "not archived" : state_names[state]);
        goto out_rollback;
    }
    if (pending) {
        rc = agg_err_set(err, AGG_EINVAL,
                         "%s %s was re-created and is being detached: run partition "
                         "maintenance first",
                         table, c.ym);
        goto out_rollback;
    }
    if (exists) {
        /* Re-created since its archive (late rows): merge, keeping its rows. */
        done.merged = true;
        rc = merge_archive(&c, &m, &done.added_rows, err);
        if (rc == AGG_OK && !attached)
            rc = attach_loaded(&c, err);
        if (rc != AGG_OK)
            goto out_rollback;
    } else {
        /* Check the whole file first: a bad archive fails before any DDL. */
        rc = verify_files(table, month, c.file, c.manifest, &m, err);
        if (rc == AGG_OK)
            rc = manifest_columns(conn, &m, cols, sizeof(cols), err);
        if (rc != AGG_OK)
            goto out_rollback;
        /* Load a standalone table and ATTACH it, rather than CREATE … PARTITION OF: the
         * parent is then locked SHARE UPDATE EXCLUSIVE (ingest goes on) instead of ACCESS
         * EXCLUSIVE for the whole load. */
        rc = exec_fmt(conn, err,
                      "CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)", c.qpart,
                      c.qtable);
        if (rc == AGG_OK)
            rc = load_archive(&c, c.qpart, cols, &m, err);
        if (rc == AGG_OK)
            rc = attach_loaded(&c, err);
        if (rc != AGG_OK)
            goto out_rollback;
        done.added_rows = m.rows;
    }
    done.archived_rows = m.rows;
    p[0] = table;
    p[1] = c.date;
    rc = st_db_query(conn,
                     "UPDATE partition_archives SET state = 'restored', error = NULL "
                     "WHERE table_name = $1 AND month = $2::date",
                     2, p, PGRES_COMMAND_OK, NULL, err);
    if (rc != AGG_OK)
        goto out_rollback;
    rc = st_db_exec(conn, "COMMIT", err);
    if (rc == AGG_OK && out != NULL)
        *out = done;
    goto out;

out_rollback:
    st_db_exec(conn, "ROLLBACK", NULL);
out:
    ctx_clear(&c);
    return rc;
}

int st_partitions_month_is_archived(PGconn *conn, const char *table, int month, bool *out,
                                    struct agg_err *err)
{
    char date[16];
    const char *p[] = {table, date};
    PGresult *res;

    agg_time_month_date(month, date);
    if (st_db_query(conn,
                    "SELECT EXISTS (SELECT 1 FROM partition_archives WHERE table_name = $1 "
                    "AND month = $2::date AND state <> 'restored')",
                    2, p, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    *out = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return AGG_OK;
}

int st_partitions_stats(PGconn *conn, struct st_partitions_stats *out, struct agg_err *err)
{
    PGresult *res;

    memset(out, 0, sizeof(*out));
    if (st_db_query(conn,
                    "SELECT (SELECT count(*) FROM pg_inherits"
                    "         WHERE inhparent = to_regclass('system_logs')),"
                    "       (SELECT count(*) FROM pg_inherits"
                    "         WHERE inhparent = to_regclass('alerts')),"
                    "       (SELECT coalesce(sum(compressed_bytes), 0) FROM partition_archives"
                    "         WHERE state = 'dropped'),"
                    "       (SELECT count(*) FROM partition_archives WHERE state = 'failed')",
                    0, NULL, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    out->partitions[0] = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    out->partitions[1] = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    out->archived_bytes = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    out->failed = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    PQclear(res);
    return AGG_OK;
}
