/*
 * rules/outbox.c — claiming and recording outbox rows; retry policy; redaction.
 *
 * Place: see rules/outbox.h.
 * Threads: see rules/outbox.h.
 * Traps: a URL's user info, path and query never reach notifications_sent or the
 *        logs: Slack and many webhook receivers put their secret in the path.
 */
#include "rules/outbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/alerts.h"
#include "core/alloc.h"
#include "store/db.h"

#define BACKOFF_BASE_US INT64_C(1000000)
#define BACKOFF_MAX_US INT64_C(3600000000)
/* A send ends within one timeout; the rest covers its recording queued behind other
 * jobs and clock differences between daemons. */
#define LEASE_TIMEOUTS 4
#define LEASE_MARGIN_US INT64_C(10000000)
#define LEASE_TIMEOUT_MAX_MS INT64_C(86400000)

static const char *const delivery_names[RL_DELIVERY_COUNT] = {"delivered", "retry", "failed"};

const char *rl_delivery_name(enum rl_delivery d)
{
    return (unsigned)d < RL_DELIVERY_COUNT ? delivery_names[d] : "unknown";
}

enum rl_delivery rl_outbox_classify_http(int status, int attempts, int max_attempts,
                                         bool *disable_endpoint)
{
    bool transient = status == 0 || status == 429 || (status >= 500 && status <= 599);

    *disable_endpoint = status == 410;
    if (status >= 200 && status <= 299)
        return RL_DELIVERY_DELIVERED;
    if (transient && attempts < max_attempts)
        return RL_DELIVERY_RETRY;
    return RL_DELIVERY_FAILED;
}

enum rl_delivery rl_outbox_classify_smtp(bool ok, int code, int attempts, int max_attempts)
{
    if (ok)
        return RL_DELIVERY_DELIVERED;
    if (code >= 500 && code <= 599)
        return RL_DELIVERY_FAILED;
    return attempts < max_attempts ? RL_DELIVERY_RETRY : RL_DELIVERY_FAILED;
}

int64_t rl_outbox_backoff_us(int attempts, uint32_t random)
{
    int64_t d = BACKOFF_BASE_US;

    for (int i = 1; i < attempts && d < BACKOFF_MAX_US; i++)
        d *= 2;
    if (d > BACKOFF_MAX_US)
        d = BACKOFF_MAX_US;
    return d / 2 + (int64_t)(((uint64_t)(d / 2) * random) >> 32);
}

void rl_outbox_redact(const char *channel, const char *target, char *out, size_t size)
{
    const char *host, *end, *at;
    size_t n;

    if (size == 0)
        return;
    if (strcmp(channel, "email") == 0) {
        snprintf(out, size, "%s", target);
        return;
    }
    host = strstr(target, "://");
    if (host == NULL) {
        snprintf(out, size, "(not a URL)");
        return;
    }
    host += 3;
    end = host + strcspn(host, "/?#");
    at = memchr(host, '@', (size_t)(end - host));
    if (at != NULL)
        host = at + 1; /* user info may hold a password */
    n = (size_t)(end - host);
    snprintf(out, size, "%.*s://%.*s", (int)(strstr(target, "://") - target), target, (int)n,
             host);
}

/* Due pending rows, and 'sending' rows whose lease (next_attempt_at) has run out: their
 * daemon died or stalled (not the claimer's own sends still in flight, $4). The claim
 * stamps the new lease and counts the attempt. */
static const char claim_sql[] =
    "UPDATE alert_notifications n SET status = 'sending', attempts = n.attempts + 1,"
    "       next_attempt_at = " RL_SQL_TS("$3")
    " WHERE n.id IN (SELECT id FROM alert_notifications"
    "                 WHERE status IN ('pending', 'sending')"
    "                   AND next_attempt_at <= " RL_SQL_TS("$1")
    "                   AND NOT id = ANY ($4::bigint[])"
    "                 ORDER BY next_attempt_at, id LIMIT $2::int FOR UPDATE SKIP LOCKED)"
    " RETURNING n.id, n.alert_id, " RL_SQL_US("n.alert_created_at") ","
    "       coalesce(n.endpoint_id, 0), n.attempts, n.message_id, n.channel, n.target,"
    "       n.payload::text,"
    "       (SELECT e.secret FROM notification_endpoints e WHERE e.id = n.endpoint_id),"
    "       (SELECT m.message_id FROM alert_notifications m"
    "         WHERE m.alert_id = n.alert_id AND m.alert_created_at = n.alert_created_at"
    "           AND m.channel = n.channel AND m.target = n.target AND m.id < n.id"
    "         ORDER BY m.id LIMIT 1)";

static char *dup_or_null(const PGresult *res, int i, int col)
{
    return PQgetisnull(res, i, col) ? NULL : agg_strdup(PQgetvalue(res, i, col));
}

static int read_row(const PGresult *res, int i, struct rl_outbox_row *r)
{
    r->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    r->alert_id = (int)strtol(PQgetvalue(res, i, 1), NULL, 10);
    r->alert_created_us = strtoll(PQgetvalue(res, i, 2), NULL, 10);
    r->endpoint_id = (int)strtol(PQgetvalue(res, i, 3), NULL, 10);
    r->attempts = (int)strtol(PQgetvalue(res, i, 4), NULL, 10);
    snprintf(r->message_id, sizeof(r->message_id), "%s", PQgetvalue(res, i, 5));
    snprintf(r->channel, sizeof(r->channel), "%s", PQgetvalue(res, i, 6));
    r->target = dup_or_null(res, i, 7);
    r->payload = PQgetisnull(res, i, 8) ? agg_strdup("{}") : dup_or_null(res, i, 8);
    r->secret = dup_or_null(res, i, 9);
    r->thread_id = dup_or_null(res, i, 10);
    if (r->target == NULL || r->payload == NULL || (r->secret == NULL && !PQgetisnull(res, i, 9)) ||
        (r->thread_id == NULL && !PQgetisnull(res, i, 10)))
        return AGG_ENOMEM;
    return AGG_OK;
}

int64_t rl_outbox_lease_us(int64_t send_timeout_ms)
{
    if (send_timeout_ms < 0)
        send_timeout_ms = 0;
    if (send_timeout_ms > LEASE_TIMEOUT_MAX_MS)
        send_timeout_ms = LEASE_TIMEOUT_MAX_MS;
    return LEASE_TIMEOUTS * send_timeout_ms * 1000 + LEASE_MARGIN_US;
}

/* <ids> as a PostgreSQL array literal ("{1,2}"). Caller owns the result: free(). */
static char *id_array(const int64_t *ids, size_t n)
{
    size_t size = n * 21 + 3, len = 1;
    char *out = agg_malloc(size);

    if (out == NULL)
        return NULL;
    out[0] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, size - len, i > 0 ? ",%" PRId64 : "%" PRId64, ids[i]);
    snprintf(out + len, size - len, "}");
    return out;
}

int rl_outbox_claim(PGconn *conn, int64_t now_us, int64_t lease_us, int limit,
                    const int64_t *skip, size_t nskip, struct rl_outbox_row **rows, size_t *n,
                    struct agg_err *err)
{
    char now[24], lim[24], until[24];
    char *skipped = id_array(skip, nskip);
    const char *params[4] = {rl_alerts_i64(now_us, now), rl_alerts_i64(limit, lim),
                             rl_alerts_i64(now_us + lease_us, until), skipped};
    struct rl_outbox_row *out;
    PGresult *res;
    int count, rc = AGG_OK;

    *rows = NULL;
    *n = 0;
    if (skipped == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    rc = st_db_query(conn, claim_sql, 4, params, PGRES_TUPLES_OK, &res, err);
    free(skipped);
    if (rc != AGG_OK)
        return AGG_EDB;
    count = PQntuples(res);
    if (count == 0) {
        PQclear(res);
        return AGG_OK;
    }
    out = agg_calloc((size_t)count, sizeof(*out));
    for (int i = 0; out != NULL && i < count && rc == AGG_OK; i++)
        rc = read_row(res, i, &out[i]);
    PQclear(res);
    if (out == NULL || rc != AGG_OK) {
        rl_outbox_rows_free(out, (size_t)count);
        /* the claimed rows stay 'sending' until their lease runs out */
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    }
    *rows = out;
    *n = (size_t)count;
    return AGG_OK;
}

void rl_outbox_rows_free(struct rl_outbox_row *rows, size_t n)
{
    if (rows == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(rows[i].target);
        free(rows[i].payload);
        free(rows[i].secret);
        free(rows[i].thread_id);
    }
    free(rows);
}

/* Fenced by the attempt count: a row another daemon reclaimed is no longer ours. */
static const char release_sql[] =
    "UPDATE alert_notifications SET status = 'pending', next_attempt_at = " RL_SQL_TS("$3")
    " WHERE id = $1::bigint AND status = 'sending' AND attempts = $2::int";

int rl_outbox_release(PGconn *conn, const struct rl_outbox_row *row, int64_t now_us, bool *released,
                      struct agg_err *err)
{
    char id[24], attempts[24], now[24];
    const char *params[3] = {rl_alerts_i64(row->id, id), rl_alerts_i64(row->attempts, attempts),
                             rl_alerts_i64(now_us, now)};
    PGresult *res;

    *released = false;
    if (st_db_query(conn, release_sql, 3, params, PGRES_COMMAND_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    *released = strcmp(PQcmdTuples(res), "0") != 0;
    PQclear(res);
    return AGG_OK;
}

/* Fenced like release_sql: once another daemon reclaimed the row, its outcome wins. */
static const char record_sql[] =
    "UPDATE alert_notifications SET status = $2, next_attempt_at = " RL_SQL_TS("$3") ","
    "       last_result = $4, last_status = NULLIF($5::int, 0)"
    " WHERE id = $1::bigint AND status = 'sending' AND attempts = $6::int";

static const char sent_sql[] =
    "UPDATE alerts SET notifications_sent = coalesce(notifications_sent, '[]'::jsonb)"
    "   || jsonb_build_array(jsonb_build_object('message_id', $3::text, 'channel', $4::text,"
    "        'target', $5::text, 'at', to_char(" RL_SQL_TS("$6") ","
    "        'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), 'attempt', $7::int, 'result', $8::text,"
    "        'status', NULLIF($9::int, 0), 'detail', $10::text))"
    " WHERE id = $1::int AND created_at = " RL_SQL_TS("$2");

static const char disable_sql[] =
    "UPDATE notification_endpoints SET is_active = false WHERE id = $1::int";

static int record_in_tx(PGconn *conn, const struct rl_outbox_row *row,
                        const struct rl_outbox_outcome *o, int64_t now_us, struct agg_err *err)
{
    static const char *const row_status[RL_DELIVERY_COUNT] = {"delivered", "pending",
                                                              "failed"};
    char id[24], next[24], st[24], aid[24], created[24], now[24], attempt[24], eid[24];
    char target[256];
    const char *p[6] = {
        rl_alerts_i64(row->id, id),
        row_status[o->delivery],
        rl_alerts_i64(o->delivery == RL_DELIVERY_RETRY ? o->next_attempt_us : now_us, next),
        o->detail,
        rl_alerts_i64(o->status, st),
        rl_alerts_i64(row->attempts, attempt)};
    const char *q[10] = {rl_alerts_i64(row->alert_id, aid),
                         rl_alerts_i64(row->alert_created_us, created),
                         row->message_id,
                         row->channel,
                         target,
                         rl_alerts_i64(now_us, now),
                         p[5],
                         rl_delivery_name(o->delivery),
                         p[4],
                         o->detail};
    const char *e[1] = {rl_alerts_i64(row->endpoint_id, eid)};

    rl_outbox_redact(row->channel, row->target, target, sizeof(target));
    if (st_db_query(conn, record_sql, 6, p, PGRES_COMMAND_OK, NULL, err) != AGG_OK ||
        st_db_query(conn, sent_sql, 10, q, PGRES_COMMAND_OK, NULL, err) != AGG_OK)
        return AGG_EDB;
    if (o->disable_endpoint && row->endpoint_id > 0)
        return st_db_query(conn, disable_sql, 1, e, PGRES_COMMAND_OK, NULL, err);
    return AGG_OK;
}

int rl_outbox_record(PGconn *conn, const struct rl_outbox_row *row,
                     const struct rl_outbox_outcome *o, int64_t now_us, struct agg_err *err)
{
    int rc = rl_alerts_begin(conn, err);

    if (rc != AGG_OK)
        return rc;
    return rl_alerts_end(conn, record_in_tx(conn, row, o, now_us, err), err);
}
