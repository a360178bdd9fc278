/*
 * store/writer.c — writer threads: COPY, poison-row isolation, retries.
 *
 * Place: see store/writer.h.
 * Threads: the queue and the done list are guarded by one mutex; each thread owns
 *          its connection and its cache of existing month partitions.
 * Ownership: a batch belongs to the queue, then to one thread, then to the done
 *            list, then to the loop's callback.
 * Traps: a batch is written left to right and b->progress marks the rows settled
 *        (committed or rejected), so a retry after a lost connection resumes there
 *        and never sends a committed row twice. PostgreSQL names the bad COPY line
 *        for data errors (binary COPY counts tuples as lines: "line N, column c");
 *        constraint errors found at statement end (foreign keys) name none, and
 *        those ranges are bisected. Before a COPY into a month the
 *        thread notes it in partition_activity (once a minute per month, its own
 *        transaction): maintenance never archives a month still being written.
 *        Direct writes (file imports) run the same code on their caller's thread and
 *        connection, with a hook in every transaction for the caller's checkpoint.
 *        A batch's decode rejects go in with its last rows (one INSERT of arrays, one
 *        checkpoint, one commit), never one transaction each: a junk flood costs the
 *        writers what good rows cost.
 */
#include "store/writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/time.h"
#include "core/workq.h"
#include "store/db.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define COPY_CHUNK (1024 * 1024)
/* How often a thread notes again that a month receives rows (partition_activity). */
#define NOTE_EVERY_US (60 * INT64_C(1000000))

static const char copy_sql[] = "COPY system_logs (" ST_COPY_COLUMNS ") FROM STDIN (FORMAT binary)";
/* Any number of rejects in one statement: five arrays in binary format (rejects_start,
 * array_put), one element per reject, so raw bytes need no escaping. */
static const char reject_sql[] =
    "INSERT INTO ingest_rejects (received_at, transport, peer, error, raw) "
    "SELECT r::timestamp, t, p, e, x FROM unnest($1::text[], $2::text[], $3::text[], "
    "$4::text[], $5::bytea[]) AS u(r, t, p, e, x)";
/* Records the spool intervals [$2[i], $3[i]) as committed and moves the committed
 * prefix of stream $1 to $4, dropping the intervals it now covers. */
static const char checkpoint_sql[] =
    "WITH ins AS (INSERT INTO ingest_checkpoints (stream, position, committed_rows) "
    "  SELECT $1 || ':' || s, e, 0 FROM unnest($2::bigint[], $3::bigint[]) AS t(s, e) "
    "  ON CONFLICT (stream) DO UPDATE SET position = GREATEST(ingest_checkpoints.position, "
    "  EXCLUDED.position)), "
    "pre AS (INSERT INTO ingest_checkpoints (stream, position, committed_rows) "
    "  VALUES ($1, $4, $5) ON CONFLICT (stream) DO UPDATE SET position = "
    "  GREATEST(ingest_checkpoints.position, EXCLUDED.position), committed_rows = "
    "  ingest_checkpoints.committed_rows + EXCLUDED.committed_rows), "
    "del AS (DELETE FROM ingest_checkpoints WHERE stream LIKE $1 || ':%' AND position <= $4) "
    "SELECT 1";
static const char committed_sql[] =
    "SELECT split_part(stream, ':', 2)::bigint, position FROM ingest_checkpoints "
    "WHERE stream LIKE $1 || ':%' UNION ALL "
    "SELECT 0, position FROM ingest_checkpoints WHERE stream = $1";
/* Creates a month's partition when missing; notes that the month receives rows. */
static const char create_sql[] = "SELECT aggd_create_month_partition('system_logs', $1::date)";
static const char note_sql[] = "SELECT aggd_note_received('system_logs', $1::date)";
/* The ids of a batch that are users; locked so that none goes away before COMMIT. */
static const char users_sql[] = "SELECT id FROM users WHERE id = ANY($1::int[]) FOR KEY SHARE";
static const char *const transport_names[] = {"syslog_udp", "syslog_tcp", "json_tcp", "http"};
/* The arrays of reject_sql, with their element types (pg_type OIDs). */
enum { REJ_RECEIVED = 0, REJ_TRANSPORT, REJ_PEER, REJ_ERROR, REJ_RAW, REJ_ARRAYS };
#define OID_TEXT  25
#define OID_BYTEA 17
/* Binary array header: ndim, has-nulls flag, element type, then count and lower bound
 * of its one dimension. */
#define ARRAY_HEAD  20
#define ARRAY_COUNT 12

struct st_writer {
    struct agg_workq *q;
    struct st_pool *pool;
    st_writer_done_fn done;
    void *arg;
    int grace_ms;
    _Atomic int64_t *m_rows, *m_rejected, *m_batches, *m_retries, *m_last_commit;
    _Atomic int64_t *m_user_unknown;
    struct agg_histogram *h_rows, *h_copy;
};

enum outcome {
    OUT_OK = 0,
    OUT_ROW,       /* the data: isolate the bad row(s) */
    OUT_TRANSIENT, /* the connection or the server: retry later */
};

/* A month whose partition this thread knows to exist, and when (monotonic) it last
 * noted the month as receiving rows. */
struct seen_month {
    int month;
    int64_t noted_us;
};

struct thread {
    struct st_writer *w;
    PGconn *conn;
    struct seen_month *months;
    size_t nmonths, cap_months;
    char why[1024];
    long line; /* COPY line (tuple) PostgreSQL blamed, 0 if none */
    struct agg_log_limit trouble; /* repeated trouble: one line per 10 s per thread */
    bool *done; /* replayed batch: rows then rejects already committed; else NULL */
    size_t cap_done;
    int32_t *ids; /* user ids of a range being written */
    size_t cap_ids;
    struct agg_buf idtext;  /* the same as a PostgreSQL array literal */
    struct agg_buf rewrite; /* rows rebuilt without an unknown user_id */
    st_writer_commit_fn commit; /* direct writes: saves the caller's checkpoint */
    void *commit_arg;
    struct agg_buf rej[REJ_ARRAYS]; /* rejects of the next reject_sql */
    uint64_t *rej_pos;              /* their spool records: pos, next of each */
    size_t nrej, cap_rej;
    uint64_t *span;                 /* checkpoint positions: pos[0..n), then next[0..n) */
    size_t cap_span;
};

/* The <attempt>th backoff pause in ms, with jitter. */
static int backoff_ms(int attempt)
{
    int ms = BACKOFF_MIN_MS << (attempt < 6 ? attempt : 6);

    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    /* seeded per process, unlike rand(): writers of several daemons do not retry in step */
    return ms / 2 + (int)randombytes_uniform((uint32_t)(ms / 2 + 1));
}

/* Sorts a failed result into row trouble or transient trouble, keeping the text. */
static enum outcome classify(struct thread *t, PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *context = res != NULL ? PQresultErrorField(res, PG_DIAG_CONTEXT) : NULL;
    const char *line = context != NULL ? strstr(context, ", line ") : NULL;

    t->line = line != NULL ? strtol(line + 7, NULL, 10) : 0;
    if (msg == NULL)
        msg = PQerrorMessage(t->conn);
    snprintf(t->why, sizeof(t->why), "%s%s%s%s", msg, detail != NULL ? " (" : "",
             detail != NULL ? detail : "", detail != NULL ? ")" : "");
    for (char *p = t->why; *p != '\0'; p++) {
        if (*p == '\n')
            *p = ' ';
    }
    if (PQstatus(t->conn) != CONNECTION_OK || state == NULL)
        return OUT_TRANSIENT;
    if (strcmp(state, "23514") == 0 && strstr(msg, "no partition") != NULL) {
        t->nmonths = 0; /* a partition went away: look again before retrying */
        return OUT_TRANSIENT;
    }
    /* data exceptions, integrity constraints, program limits: the rows' fault */
    if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ||
        strncmp(state, "54", 2) == 0)
        return OUT_ROW;
    return OUT_TRANSIENT;
}

static enum outcome copy_in(struct thread *t, struct st_batch *b, size_t lo, size_t hi);

/* Appends "n" or ",n" to <b>. */
static int put_num(struct agg_buf *b, uint64_t n)
{
    return agg_buf_printf(b, b->len > 1 ? ",%llu" : "%llu", (unsigned long long)n);
}

/* Inside the open transaction: marks the spool records [pos[i], next[i]) of the <n>
 * items as committed (adjacent ones merged into one interval). */
static enum outcome checkpoint(struct thread *t, const struct st_batch *b, const uint64_t *pos,
                               const uint64_t *next, size_t n, size_t rows)
{
    struct agg_buf starts, ends;
    char prefix[24], count[24];
    const char *params[5];
    PGresult *res;
    enum outcome out = OUT_OK;
    bool ok = true;

    if (b->stream == NULL || n == 0)
        return OUT_OK;
    agg_buf_init(&starts);
    agg_buf_init(&ends);
    ok = agg_buf_putc(&starts, '{') == AGG_OK && agg_buf_putc(&ends, '{') == AGG_OK;
    for (size_t i = 0; ok && i < n;) {
        size_t j = i;

        while (j + 1 < n && next[j] == pos[j + 1])
            j++;
        ok = put_num(&starts, pos[i]) == AGG_OK && put_num(&ends, next[j]) == AGG_OK;
        i = j + 1;
    }
    ok = ok && agg_buf_putc(&starts, '}') == AGG_OK && agg_buf_putc(&ends, '}') == AGG_OK;
    if (!ok) {
        snprintf(t->why, sizeof(t->why), "out of memory");
        out = OUT_TRANSIENT;
        goto out;
    }
    snprintf(prefix, sizeof(prefix), "%llu", (unsigned long long)b->prefix);
    snprintf(count, sizeof(count), "%zu", rows);
    params[0] = b->stream;
    params[1] = starts.data;
    params[2] = ends.data;
    params[3] = prefix;
    params[4] = count;
    res = PQexecParams(t->conn, checkpoint_sql, 5, NULL, params, NULL, NULL, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
        out = OUT_TRANSIENT; /* not the rows' fault: retry the whole transaction */
    if (out != OUT_OK)
        classify(t, res);
    PQclear(res);
out:
    agg_buf_clear(&starts);
    agg_buf_clear(&ends);
    return out;
}

/* Inside the open transaction: tells a direct writer's caller what it settles. */
static enum outcome settled(struct thread *t, uint64_t to, size_t rows, size_t rejects)
{
    struct agg_err err = {0};

    if (t->commit == NULL || t->commit(t->commit_arg, t->conn, to, rows, rejects, &err) == AGG_OK)
        return OUT_OK;
    snprintf(t->why, sizeof(t->why), "%s", err.msg);
    return OUT_TRANSIENT;
}

static enum outcome exec_simple(struct thread *t, const char *sql)
{
    PGresult *res = PQexec(t->conn, sql);
    enum outcome out = OUT_OK;

    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        classify(t, res);
        out = OUT_TRANSIENT;
    }
    PQclear(res);
    return out;
}

/* Ends the transaction opened for a COPY or a reject: COMMIT when <out> is OK (the
 * commit failing makes it transient), else ROLLBACK. */
static enum outcome end_transaction(struct thread *t, enum outcome out)
{
    if (out == OUT_OK)
        return exec_simple(t, "COMMIT");
    if (PQstatus(t->conn) == CONNECTION_OK && PQtransactionStatus(t->conn) != PQTRANS_IDLE) {
        char why[sizeof(t->why)];

        memcpy(why, t->why, sizeof(why)); /* keep the first error's words */
        exec_simple(t, "ROLLBACK");
        memcpy(t->why, why, sizeof(why));
    }
    return out;
}

static int cmp_id(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

    return (x > y) - (x < y);
}

struct vetting {
    const int32_t *known; /* sorted */
    size_t nknown;
    size_t unlinked;
};

/* st_batch_rewrite_fn: a row whose user_id is no user's gets user_id NULL and the id
 * as extra_data.user_id (DESIGN.md: never refused for a foreign key). The tuple's
 * fields up to extra_data are copied, user_id as NULL; extra_data's length word is
 * written once its new value is known. */
static int unlink_user(void *arg, size_t i, const char *row, size_t len, struct agg_buf *out)
{
    struct vetting *v = arg;
    size_t uoff, eoff, body = 0, word;
    int32_t elen;
    char key[32];
    uint32_t vlen;
    int n, rc;
    int32_t id;

    (void)i;
    if (!st_copy_field_int4(row, ST_COPY_COL_USER_ID, &id) ||
        bsearch(&id, v->known, v->nknown, sizeof(id), cmp_id) != NULL)
        return agg_buf_append(out, row, len);
    st_copy_field(row, ST_COPY_COL_USER_ID, &uoff);
    elen = st_copy_field(row, ST_COPY_COL_EXTRA_DATA, &eoff);
    if (elen != -1) {
        if (elen < 3 || row[eoff + 1] != '{') /* after jsonb's version byte */
            return agg_buf_append(out, row, len);
        body = eoff + 2; /* the members, then the object's '}' */
        while (body < eoff + (size_t)elen && (row[body] == ' ' || row[body] == '\n'))
            body++;
    }
    n = snprintf(key, sizeof(key), "\1{\"user_id\":%ld", (long)id);
    rc = agg_buf_append(out, row, uoff - 4);
    rc = rc == AGG_OK ? agg_buf_append(out, "\xFF\xFF\xFF\xFF", 4) : rc;
    rc = rc == AGG_OK ? agg_buf_append(out, row + uoff + 4, eoff - 4 - (uoff + 4)) : rc;
    word = out->len;
    rc = rc == AGG_OK ? agg_buf_append(out, "\0\0\0\0", 4) : rc;
    rc = rc == AGG_OK ? agg_buf_append(out, key, (size_t)n) : rc;
    if (elen == -1 || body >= eoff + (size_t)elen || row[body] == '}') {
        rc = rc == AGG_OK ? agg_buf_putc(out, '}') : rc;
    } else {
        rc = rc == AGG_OK ? agg_buf_putc(out, ',') : rc;
        rc = rc == AGG_OK ? agg_buf_append(out, row + body, eoff + (size_t)elen - body) : rc;
    }
    if (rc != AGG_OK)
        return rc;
    vlen = (uint32_t)(out->len - word - 4);
    for (int k = 0; k < 4; k++)
        out->data[word + (size_t)k] = (char)(vlen >> (24 - 8 * k));
    if (elen == -1)
        elen = 0;
    v->unlinked++;
    return agg_buf_append(out, row + eoff + (size_t)elen, len - eoff - (size_t)elen);
}

/* Inside the open transaction: rows [lo, hi) whose user_id is no user's are rewritten
 * (unlink_user); the users of the others are locked until COMMIT, so the foreign key
 * holds. */
static enum outcome vet_users(struct thread *t, struct st_batch *b, size_t lo, size_t hi)
{
    struct vetting v = {0};
    const char *params[1];
    size_t n = 0, m = 0, len;
    PGresult *res;
    bool ok;

    if (agg_grow((void **)&t->ids, sizeof(*t->ids), &t->cap_ids, hi - lo) != AGG_OK)
        goto oom;
    for (size_t i = lo; i < hi; i++) {
        const char *row = st_batch_row(b, i, &len);

        if (st_copy_field_int4(row, ST_COPY_COL_USER_ID, &t->ids[n]))
            n++;
    }
    if (n == 0)
        return OUT_OK;
    qsort(t->ids, n, sizeof(*t->ids), cmp_id);
    agg_buf_reset(&t->idtext);
    ok = agg_buf_putc(&t->idtext, '{') == AGG_OK;
    for (size_t i = 0; ok && i < n; i++) {
        if (i > 0 && t->ids[i] == t->ids[i - 1])
            continue;
        ok = agg_buf_printf(&t->idtext, m++ > 0 ? ",%ld" : "%ld", (long)t->ids[i]) == AGG_OK;
    }
    if (!ok || agg_buf_putc(&t->idtext, '}') != AGG_OK)
        goto oom;
    params[0] = t->idtext.data;
    res = PQexecParams(t->conn, users_sql, 1, NULL, params, NULL, NULL, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        classify(t, res);
        PQclear(res);
        return OUT_TRANSIENT; /* not the rows' fault */
    }
    v.nknown = (size_t)PQntuples(res);
    for (size_t i = 0; i < v.nknown; i++) /* at most the m <= n ids asked for */
        t->ids[i] = (int32_t)strtol(PQgetvalue(res, (int)i, 0), NULL, 10);
    PQclear(res);
    if (v.nknown == m)
        return OUT_OK;
    qsort(t->ids, v.nknown, sizeof(*t->ids), cmp_id);
    v.known = t->ids;
    if (st_batch_rewrite(b, lo, hi, unlink_user, &v, &t->rewrite) != AGG_OK)
        goto oom;
    agg_metric_inc(t->w->m_user_unknown, (int64_t)v.unlinked);
    return OUT_OK;

oom:
    snprintf(t->why, sizeof(t->why), "out of memory");
    return OUT_TRANSIENT;
}

static enum outcome settle_rows(struct thread *t, struct st_batch *b, size_t lo, size_t hi);

static enum outcome copy_rows(struct thread *t, struct st_batch *b, size_t lo, size_t hi)
{
    enum outcome out = exec_simple(t, "BEGIN");

    if (out == OUT_OK)
        out = vet_users(t, b, lo, hi);
    if (out == OUT_OK)
        out = copy_in(t, b, lo, hi);
    if (out == OUT_OK)
        out = settle_rows(t, b, lo, hi);
    out = end_transaction(t, out);
    if (out == OUT_OK && t->nrej > 0)
        b->rejects_stored = b->nrejects; /* they rode along (settle_rows) */
    return out;
}

/* COPY of rows [lo, hi) inside the open transaction. */
static enum outcome copy_in(struct thread *t, struct st_batch *b, size_t lo, size_t hi)
{
    PGresult *res = PQexec(t->conn, copy_sql);
    enum outcome out = OUT_OK;
    const char *data;
    size_t len;
    int64_t started = agg_time_mono_us();

    if (res == NULL || PQresultStatus(res) != PGRES_COPY_IN) {
        out = classify(t, res);
        PQclear(res);
        return out == OUT_OK ? OUT_TRANSIENT : out;
    }
    PQclear(res);
    data = st_batch_range(b, lo, hi, &len);
    if (PQputCopyData(t->conn, st_copy_header, ST_COPY_HEADER_LEN) != 1) {
        classify(t, NULL);
        return OUT_TRANSIENT;
    }
    for (size_t off = 0; off < len; off += COPY_CHUNK) {
        size_t n = len - off < COPY_CHUNK ? len - off : COPY_CHUNK;

        if (PQputCopyData(t->conn, data + off, (int)n) != 1) {
            classify(t, NULL);
            return OUT_TRANSIENT;
        }
    }
    if (PQputCopyData(t->conn, st_copy_trailer, ST_COPY_TRAILER_LEN) != 1 ||
        PQputCopyEnd(t->conn, NULL) != 1) {
        classify(t, NULL);
        return OUT_TRANSIENT;
    }
    while ((res = PQgetResult(t->conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && out == OUT_OK)
            out = classify(t, res);
        PQclear(res);
    }
    if (out == OUT_OK && t->w->h_copy != NULL) /* NULL: a direct writer's */
        agg_histogram_observe(t->w->h_copy, (double)(agg_time_mono_us() - started) / 1e6);
    return out;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Empties the rejects of the next reject_sql. */
static void rejects_start(struct thread *t)
{
    static const uint32_t oids[REJ_ARRAYS] = {OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_BYTEA};

    for (int i = 0; i < REJ_ARRAYS; i++) {
        unsigned char *head;

        agg_buf_reset(&t->rej[i]);
        if (agg_buf_reserve(&t->rej[i], ARRAY_HEAD) != AGG_OK)
            continue; /* rejects_add fails the same way */
        head = (unsigned char *)t->rej[i].data;
        put_be32(head, 1);
        put_be32(head + 4, 1);
        put_be32(head + 8, oids[i]);
        put_be32(head + ARRAY_COUNT, 0);
        put_be32(head + 16, 1);
        t->rej[i].len = ARRAY_HEAD;
    }
    t->nrej = 0;
}

/* Appends an element of <len> bytes at <p> (NULL: a NULL) to the array <a>. */
static int array_put(struct agg_buf *a, const char *p, size_t len)
{
    unsigned char n[4];

    put_be32(n, p != NULL ? (uint32_t)len : UINT32_MAX); /* -1: NULL */
    if (a->len < ARRAY_HEAD || agg_buf_append(a, n, sizeof(n)) != AGG_OK)
        return AGG_ENOMEM;
    return p != NULL ? agg_buf_append(a, p, len) : AGG_OK;
}

/* Adds one event for ingest_rejects (spool record [<pos>, <next>)) to the next
 * reject_sql. Text stops at a NUL, which PostgreSQL's text cannot hold. */
static enum outcome rejects_add(struct thread *t, uint64_t pos, uint64_t next, int64_t received_us,
                                int transport, const char *peer, size_t peer_len, const char *why,
                                size_t why_len, const char *raw, size_t raw_len)
{
    char received[32];
    const char *name = transport_names[transport];
    size_t n = t->nrej;

    if (agg_grow((void **)&t->rej_pos, 2 * sizeof(*t->rej_pos), &t->cap_rej, n + 1) != AGG_OK)
        goto oom;
    agg_time_format(received_us, received);
    if (array_put(&t->rej[REJ_RECEIVED], received, strlen(received)) != AGG_OK ||
        array_put(&t->rej[REJ_TRANSPORT], name, strlen(name)) != AGG_OK ||
        array_put(&t->rej[REJ_PEER], peer_len > 0 ? peer : NULL,
                  peer_len > 0 ? strnlen(peer, peer_len) : 0) != AGG_OK ||
        array_put(&t->rej[REJ_ERROR], why, strnlen(why, why_len)) != AGG_OK ||
        array_put(&t->rej[REJ_RAW], raw_len > 0 ? raw : "", raw_len) != AGG_OK)
        goto oom;
    t->rej_pos[2 * n] = pos;
    t->rej_pos[2 * n + 1] = next;
    t->nrej++;
    return OUT_OK;

oom:
    snprintf(t->why, sizeof(t->why), "out of memory");
    return OUT_TRANSIENT;
}

/* Adds the decode rejects of <b> not yet in ingest_rejects to the next reject_sql. */
static enum outcome rejects_add_pending(struct thread *t, const struct st_batch *b)
{
    for (size_t i = b->rejects_stored; i < b->nrejects; i++) {
        const struct st_reject *r = &b->rejects[i];
        const char *p = b->raw.data + r->off;

        if (b->replayed && t->done[b->nrows + i])
            continue; /* replayed, and already in ingest_rejects */
        if (rejects_add(t, r->pos, r->next, r->received_us, r->transport, p, r->peer_len,
                        p + r->peer_len, r->why_len, p + r->peer_len + r->why_len,
                        r->raw_len) != OUT_OK)
            return OUT_TRANSIENT;
    }
    return OUT_OK;
}

/* Inside the open transaction: the rejects added since rejects_start() into
 * ingest_rejects, in one statement. Losing a reject would lose its event, so any
 * failure is transient, never the rows' fault. */
static enum outcome rejects_insert(struct thread *t)
{
    const char *values[REJ_ARRAYS];
    int lengths[REJ_ARRAYS], formats[REJ_ARRAYS];
    PGresult *res;
    enum outcome out = OUT_OK;

    if (t->nrej == 0)
        return OUT_OK;
    for (int i = 0; i < REJ_ARRAYS; i++) {
        put_be32((unsigned char *)t->rej[i].data + ARRAY_COUNT, (uint32_t)t->nrej);
        values[i] = t->rej[i].data;
        lengths[i] = (int)t->rej[i].len;
        formats[i] = 1;
    }
    res = PQexecParams(t->conn, reject_sql, REJ_ARRAYS, NULL, values, lengths, formats, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        classify(t, res);
        out = OUT_TRANSIENT;
    }
    PQclear(res);
    return out;
}

/* Inside the open transaction: marks as committed rows [<lo>, <hi>) of <b> and the
 * rejects added since rejects_start(), merged in spool order so that adjacent records
 * make one interval, and tells a direct writer's caller. */
static enum outcome settle(struct thread *t, const struct st_batch *b, size_t lo, size_t hi)
{
    size_t n = hi - lo + t->nrej, i = lo, k = 0;
    uint64_t to = 0;

    if (agg_grow((void **)&t->span, 2 * sizeof(*t->span), &t->cap_span, n) != AGG_OK) {
        snprintf(t->why, sizeof(t->why), "out of memory");
        return OUT_TRANSIENT;
    }
    for (size_t m = 0; m < n; m++) {
        bool row = k == t->nrej || (i < hi && b->rows[i].pos < t->rej_pos[2 * k]);

        t->span[m] = row ? b->rows[i].pos : t->rej_pos[2 * k];
        t->span[n + m] = row ? b->rows[i++].next : t->rej_pos[2 * k++ + 1];
        if (t->span[n + m] > to)
            to = t->span[n + m];
    }
    if (checkpoint(t, b, t->span, t->span + n, n, hi - lo) != OUT_OK)
        return OUT_TRANSIENT;
    return settled(t, to, hi - lo, t->nrej);
}

/* Inside the open transaction, rows [<lo>, <hi>) copied: when <hi> ends the batch, its
 * decode rejects not yet stored ride along (one statement, one commit for the batch);
 * then the checkpoint. t->nrej says how many rode along. */
static enum outcome settle_rows(struct thread *t, struct st_batch *b, size_t lo, size_t hi)
{
    rejects_start(t);
    if (hi == b->nrows && (rejects_add_pending(t, b) != OUT_OK || rejects_insert(t) != OUT_OK))
        return OUT_TRANSIENT;
    return settle(t, b, lo, hi);
}

/* The rejects added since rejects_start() in a transaction of their own. */
static enum outcome store_rejects(struct thread *t, const struct st_batch *b)
{
    enum outcome out;

    if (t->nrej == 0)
        return OUT_OK;
    out = exec_simple(t, "BEGIN");
    if (out == OUT_OK)
        out = rejects_insert(t);
    if (out == OUT_OK)
        out = settle(t, b, 0, 0);
    return end_transaction(t, out);
}

/* Row <i>, refused by PostgreSQL, into ingest_rejects with t->why. */
static enum outcome reject_row(struct thread *t, struct st_batch *b, size_t i)
{
    const struct st_row *row = &b->rows[i];
    const char *peer = b->raw.data + row->raw_off;

    rejects_start(t);
    if (rejects_add(t, row->pos, row->next, row->received_us, row->transport, peer, row->peer_len,
                    t->why, strlen(t->why), peer + row->peer_len, row->raw_len) != OUT_OK)
        return OUT_TRANSIENT;
    return store_rejects(t, b);
}

/* The decode rejects not yet stored (no transaction of rows took them along), all in
 * one transaction. */
static enum outcome store_decode_rejects(struct thread *t, struct st_batch *b)
{
    rejects_start(t);
    if (rejects_add_pending(t, b) != OUT_OK || store_rejects(t, b) != OUT_OK)
        return OUT_TRANSIENT;
    b->rejects_stored = b->nrejects;
    return OUT_OK;
}

/* Writes rows [lo, hi) of <b>, isolating rows PostgreSQL refuses. OUT_OK when every
 * row is settled; OUT_TRANSIENT to retry from b->progress later. */
static enum outcome write_range(struct thread *t, struct st_batch *b, size_t lo, size_t hi)
{
    while (lo < hi) {
        enum outcome out = copy_rows(t, b, lo, hi);
        size_t cut;

        if (out == OUT_OK) {
            b->committed += hi - lo;
            b->progress = hi;
            return OUT_OK;
        }
        if (out == OUT_TRANSIENT)
            return OUT_TRANSIENT;
        if (hi - lo == 1) {
            if (reject_row(t, b, lo) != OUT_OK)
                return OUT_TRANSIENT;
            b->rows[lo].refused = true;
            b->rejected++;
            b->progress = hi;
            return OUT_OK;
        }
        /* the blamed line alone, or else the first half, then go on after it */
        if (t->line >= 1 && (size_t)t->line <= hi - lo) {
            size_t bad = lo + (size_t)t->line - 1;

            if (write_range(t, b, lo, bad) != OUT_OK ||
                write_range(t, b, bad, bad + 1) != OUT_OK)
                return OUT_TRANSIENT;
            cut = bad + 1;
        } else {
            cut = lo + (hi - lo) / 2;
            if (write_range(t, b, lo, cut) != OUT_OK)
                return OUT_TRANSIENT;
        }
        lo = cut;
    }
    return OUT_OK;
}

static struct seen_month *month_seen(struct thread *t, int month)
{
    for (size_t i = 0; i < t->nmonths; i++) {
        if (t->months[i].month == month)
            return &t->months[i];
    }
    return NULL;
}

/* Makes sure the partition of every month in <b> exists (cached per thread) and notes,
 * before the COPY and at most once a minute per month, that the month receives rows:
 * maintenance does not archive a month noted within partitions.archive_grace_hours.
 * The note is its own short transaction, not part of the COPY's: a row lock on
 * partition_activity held until the COPY commits would serialize the writers. */
static enum outcome ensure_partitions(struct thread *t, const struct st_batch *b)
{
    int64_t now = agg_time_mono_us();

    for (int i = 0; i < b->nmonths; i++) {
        int month = b->months[i];
        struct seen_month *seen = month_seen(t, month);
        char date[32];
        const char *params[1] = {date};
        struct agg_err err = {0};

        if (seen != NULL && now - seen->noted_us < NOTE_EVERY_US)
            continue;
        agg_time_month_date(month, date);
        if (seen != NULL) {
            if (st_db_query(t->conn, note_sql, 1, params, PGRES_TUPLES_OK, NULL, &err) != AGG_OK) {
                snprintf(t->why, sizeof(t->why), "could not note rows for %s: %s", date, err.msg);
                return OUT_TRANSIENT;
            }
            seen->noted_us = now;
            continue;
        }
        /* Creating a partition locks the parent: bounded, so a long reader cannot
         * queue every writer behind this lock. */
        if (st_db_exec(t->conn, "BEGIN", &err) != AGG_OK ||
            st_db_exec(t->conn, "SET LOCAL lock_timeout = '5s'", &err) != AGG_OK ||
            st_db_query(t->conn, create_sql, 1, params, PGRES_TUPLES_OK, NULL, &err) != AGG_OK ||
            st_db_query(t->conn, note_sql, 1, params, PGRES_TUPLES_OK, NULL, &err) != AGG_OK ||
            st_db_exec(t->conn, "COMMIT", &err) != AGG_OK) {
            st_db_exec(t->conn, "ROLLBACK", NULL);
            snprintf(t->why, sizeof(t->why), "could not create the partition for %s: %s", date,
                     err.msg);
            return OUT_TRANSIENT;
        }
        if (agg_grow((void **)&t->months, sizeof(*t->months), &t->cap_months,
                     t->nmonths + 1) != AGG_OK)
            return OUT_OK; /* uncached: asked again next time */
        t->months[t->nmonths].month = month;
        t->months[t->nmonths].noted_us = now;
        t->nmonths++;
    }
    return OUT_OK;
}

/* For a batch rebuilt from the spool: which of its rows and rejects PostgreSQL has
 * already (their spool record lies inside a committed interval). */
static enum outcome load_done(struct thread *t, const struct st_batch *b)
{
    size_t n = b->nrows + b->nrejects;
    const char *params[1] = {b->stream};
    PGresult *res;
    int nint;

    if (agg_grow((void **)&t->done, sizeof(*t->done), &t->cap_done, n) != AGG_OK) {
        snprintf(t->why, sizeof(t->why), "out of memory");
        return OUT_TRANSIENT;
    }
    res = PQexecParams(t->conn, committed_sql, 1, NULL, params, NULL, NULL, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        classify(t, res);
        PQclear(res);
        return OUT_TRANSIENT;
    }
    nint = PQntuples(res);
    for (size_t i = 0; i < n; i++) {
        uint64_t pos = i < b->nrows ? b->rows[i].pos : b->rejects[i - b->nrows].pos;

        t->done[i] = false;
        for (int r = 0; r < nint && !t->done[i]; r++) {
            uint64_t lo = strtoull(PQgetvalue(res, r, 0), NULL, 10);
            uint64_t hi = strtoull(PQgetvalue(res, r, 1), NULL, 10);

            t->done[i] = pos >= lo && pos < hi; /* the prefix row has lo = 0 */
        }
    }
    PQclear(res);
    return OUT_OK;
}

/* Writes the rows not yet settled, skipping runs a previous life committed. */
static enum outcome write_rows(struct thread *t, struct st_batch *b)
{
    bool *done = b->replayed ? t->done : NULL;

    while (b->progress < b->nrows) {
        size_t lo = b->progress, hi = lo;

        if (done != NULL && done[lo]) {
            b->progress++;
            b->skipped++;
            continue;
        }
        while (hi < b->nrows && !(done != NULL && done[hi]))
            hi++;
        if (write_range(t, b, lo, hi) != OUT_OK)
            return OUT_TRANSIENT;
    }
    return OUT_OK;
}

static void write_batch(struct thread *t, struct st_batch *b)
{
    struct st_writer *w = t->w;
    struct agg_err err = {0};

    for (int attempt = 0;; attempt++) {
        if (attempt > 0) {
            agg_metric_inc(w->m_retries, 1);
            if (!agg_workq_sleep(w->q, backoff_ms(attempt - 1)))
                return; /* stopping: b->done stays false */
        } else if (agg_workq_expired(w->q)) {
            return;
        }
        if (t->conn == NULL && st_pool_get(w->pool, &t->conn, &err) != AGG_OK) {
            AGG_LOG_LIMITED(&t->trouble, AGG_LOG_LEVEL_WARN, "writer",
                            "cannot reach PostgreSQL, batch of %zu rows waits: %s",
                            b->nrows - b->progress, err.msg);
            continue;
        }
        if ((!b->replayed || load_done(t, b) == OUT_OK) && ensure_partitions(t, b) == OUT_OK &&
            write_rows(t, b) == OUT_OK && store_decode_rejects(t, b) == OUT_OK)
            break;
        AGG_LOG_LIMITED(&t->trouble, AGG_LOG_LEVEL_WARN, "writer",
                        "batch of %zu rows waits, will retry: %s", b->nrows - b->progress, t->why);
        st_pool_put(w->pool, t->conn, true);
        t->conn = NULL;
    }
    b->done = true;
    agg_metric_inc(w->m_rows, (int64_t)b->committed);
    agg_metric_inc(w->m_rejected, (int64_t)b->rejected);
    agg_metric_inc(w->m_batches, 1);
    agg_metric_set(w->m_last_commit, (int64_t)time(NULL));
    agg_histogram_observe(w->h_rows, (double)b->nrows);
    if (b->rejected > 0)
        AGG_LOG_LIMITED(&t->trouble, AGG_LOG_LEVEL_WARN, "writer",
                        "%zu of %zu rows refused by PostgreSQL, kept in ingest_rejects; last "
                        "reason: %s",
                        b->rejected, b->nrows, t->why);
}

static void *thread_init(void *arg)
{
    struct thread *t = agg_calloc(1, sizeof(*t));

    if (t != NULL) {
        t->w = arg;
        agg_buf_init(&t->idtext);
        agg_buf_init(&t->rewrite);
        for (int i = 0; i < REJ_ARRAYS; i++)
            agg_buf_init(&t->rej[i]);
    }
    return t;
}

static void thread_fini(void *arg, void *state)
{
    struct thread *t = state;

    (void)arg;
    if (t == NULL)
        return;
    if (t->conn != NULL)
        st_pool_put(t->w->pool, t->conn, false);
    free(t->months);
    free(t->done);
    free(t->ids);
    agg_buf_clear(&t->idtext);
    agg_buf_clear(&t->rewrite);
    for (int i = 0; i < REJ_ARRAYS; i++)
        agg_buf_clear(&t->rej[i]);
    free(t->rej_pos);
    free(t->span);
    free(t);
}

static void work(void *arg, void *state, struct agg_work *item)
{
    struct thread *t = state;

    (void)arg;
    if (t != NULL) /* without its state (out of memory) the batch comes back not done */
        write_batch(t, (struct st_batch *)item);
}

static void done(void *arg, struct agg_work *item)
{
    struct st_writer *w = arg;

    w->done(w->arg, (struct st_batch *)item);
}

static const struct agg_workq_ops writer_ops = {thread_init, thread_fini, work, done};

static double since_commit(void *arg)
{
    struct st_writer *w = arg;
    int64_t last = atomic_load_explicit(w->m_last_commit, memory_order_relaxed);

    return last == 0 ? -1 : (double)(time(NULL) - last);
}

static double queue_depth(void *arg)
{
    struct st_writer *w = arg;

    return (double)agg_workq_queued(w->q);
}

static int register_metrics(struct st_writer *w, struct agg_metrics *m)
{
    static const double rows[] = {1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000};
    static const double secs[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                  0.25,  0.5,    1,     2.5,  5,     10};

    w->m_rows = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_rows_committed_total", NULL,
                                "Rows committed to system_logs.");
    w->m_rejected = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_rows_refused_total", NULL,
                                    "Rows PostgreSQL refused, kept in ingest_rejects.");
    w->m_batches = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_batches_committed_total", NULL,
                                   "Batches written.");
    w->m_retries = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_writer_retries_total", NULL,
                                   "Batch attempts retried after a database failure.");
    w->m_user_unknown = agg_metrics_add(
        m, AGG_METRIC_COUNTER, "aggd_events_user_id_unknown_total", NULL,
        "Events whose user_id is no user's: stored with user_id NULL, the id in "
        "extra_data.user_id.");
    w->m_last_commit = agg_metrics_add(m, AGG_METRIC_GAUGE, "aggd_last_commit_timestamp_seconds",
                                       NULL, "When a batch last landed (unix time).");
    w->h_rows = agg_metrics_add_histogram(m, "aggd_batch_rows", NULL, "Rows per batch.", rows,
                                          (int)(sizeof(rows) / sizeof(rows[0])));
    w->h_copy = agg_metrics_add_histogram(m, "aggd_copy_duration_seconds", NULL,
                                          "Duration of one COPY statement.", secs,
                                          (int)(sizeof(secs) / sizeof(secs[0])));
    if (w->m_rows == NULL || w->m_rejected == NULL || w->m_batches == NULL ||
        w->m_retries == NULL || w->m_last_commit == NULL || w->m_user_unknown == NULL ||
        w->h_rows == NULL ||
        w->h_copy == NULL ||
        agg_metrics_add_fn(m, "aggd_writer_queue_depth", NULL, "Batches waiting for a writer.",
                           queue_depth, w) != AGG_OK ||
        agg_metrics_add_fn(m, "aggd_seconds_since_last_commit", NULL,
                           "Seconds since a batch last landed (-1: none yet).", since_commit,
                           w) != AGG_OK)
        return AGG_ENOMEM;
    return AGG_OK;
}

struct st_writer *st_writer_new(struct event_base *base, struct st_pool *pool,
                                const struct st_writer_opts *opts, struct agg_metrics *metrics,
                                st_writer_done_fn done_fn, void *arg, struct agg_err *err)
{
    struct st_writer *w = agg_calloc(1, sizeof(*w));

    if (w == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    w->pool = pool;
    w->done = done_fn;
    w->arg = arg;
    w->grace_ms = opts->grace_ms;
    if (register_metrics(w, metrics) != AGG_OK) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    w->q = agg_workq_new(base, opts->threads, &writer_ops, w, err);
    if (w->q == NULL)
        goto fail;
    return w;

fail:
    st_writer_free(w);
    return NULL;
}

void st_writer_submit(struct st_writer *w, struct st_batch *b)
{
    agg_workq_submit(w->q, &b->work);
}

size_t st_writer_inflight(const struct st_writer *w)
{
    return agg_workq_inflight(w->q);
}

void st_writer_stop(struct st_writer *w)
{
    if (w != NULL)
        agg_workq_stop(w->q, w->grace_ms);
}

void st_writer_free(struct st_writer *w)
{
    if (w == NULL)
        return;
    agg_workq_free(w->q);
    free(w);
}

/* ---- direct writes: one caller's thread and connection, its checkpoint in every
 * transaction ---- */

struct st_writer_direct {
    struct st_writer w;             /* what a thread reads of its writer: counters */
    _Atomic int64_t unknown_users;  /* w.m_user_unknown */
    struct thread *t;
};

struct st_writer_direct *st_writer_direct_new(void)
{
    struct st_writer_direct *d = agg_calloc(1, sizeof(*d));

    if (d == NULL)
        return NULL;
    d->w.m_user_unknown = &d->unknown_users;
    d->t = thread_init(&d->w);
    if (d->t == NULL) {
        free(d);
        return NULL;
    }
    return d;
}

void st_writer_direct_free(struct st_writer_direct *d)
{
    if (d == NULL)
        return;
    thread_fini(NULL, d->t);
    free(d);
}

int st_writer_direct_write(struct st_writer_direct *d, PGconn *conn, struct st_batch *b,
                           st_writer_commit_fn commit, void *arg, struct agg_err *err)
{
    struct thread *t = d->t;
    bool ok;

    t->conn = conn;
    t->commit = commit;
    t->commit_arg = arg;
    ok = ensure_partitions(t, b) == OUT_OK && write_rows(t, b) == OUT_OK &&
         store_decode_rejects(t, b) == OUT_OK;
    t->conn = NULL; /* the caller's */
    t->commit = NULL;
    if (!ok)
        return agg_err_set(err, AGG_EDB, "%s", t->why);
    b->done = true;
    return AGG_OK;
}
