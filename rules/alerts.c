/*
 * rules/alerts.c — alerts, rule state and outbox rows in PostgreSQL.
 *
 * Place: see rules/alerts.h.
 * Threads: blocking libpq; job threads or the CLI.
 * Traps: every query is parameterised; times travel as bigint microseconds and are
 *        turned into `timestamp` (UTC) in SQL, never formatted by us. The firing
 *        transaction locks the rule row first: two daemons sharing a database cannot
 *        both find "no open alert" and open two.
 */
#include "rules/alerts.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "store/db.h"

#define OPEN_STATUS "status IN ('active', 'acknowledged')"
#define ISO(c) "to_char(" c ", 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

const char *rl_alerts_i64(int64_t v, char buf[24])
{
    snprintf(buf, 24, "%" PRId64, v);
    return buf;
}

int rl_alerts_begin(PGconn *conn, struct agg_err *err)
{
    return st_db_exec(conn, "BEGIN", err);
}

int rl_alerts_end(PGconn *conn, int rc, struct agg_err *err)
{
    if (rc != AGG_OK) {
        st_db_exec(conn, "ROLLBACK", NULL); /* the first error is the one that counts */
        return rc;
    }
    return st_db_exec(conn, "COMMIT", err);
}

static void copy_text(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

static const char load_sql[] =
    "SELECT r.id, r.name, r.metric, r.operator, r.severity, r.threshold, r.for_seconds,"
    "       r.keep_firing_seconds, coalesce(s.state, 'ok'),"
    "       coalesce(" RL_SQL_US("s.since") ", 0), coalesce(s.alert_id, 0),"
    "       coalesce(" RL_SQL_US("s.alert_created_at") ", 0)"
    "  FROM alert_rules r LEFT JOIN alert_rule_state s ON s.rule_id = r.id"
    " WHERE r.is_active IS NOT FALSE ORDER BY r.id";

static void load_row(const PGresult *res, int i, struct rl_rule_row *r)
{
    memset(r, 0, sizeof(*r));
    r->id = (int)strtol(PQgetvalue(res, i, 0), NULL, 10);
    copy_text(r->name, sizeof(r->name), PQgetvalue(res, i, 1));
    copy_text(r->metric, sizeof(r->metric), PQgetvalue(res, i, 2));
    copy_text(r->op, sizeof(r->op), PQgetvalue(res, i, 3));
    copy_text(r->severity, sizeof(r->severity), PQgetvalue(res, i, 4));
    r->threshold = strtod(PQgetvalue(res, i, 5), NULL);
    r->for_us = strtoll(PQgetvalue(res, i, 6), NULL, 10) * INT64_C(1000000);
    r->keep_firing_us = strtoll(PQgetvalue(res, i, 7), NULL, 10) * INT64_C(1000000);
    if (!rl_state_parse(PQgetvalue(res, i, 8), &r->life.state))
        r->life.state = RL_STATE_OK; /* the CHECK constraint makes this unreachable */
    r->life.since_us = strtoll(PQgetvalue(res, i, 9), NULL, 10);
    r->alert_id = (int)strtol(PQgetvalue(res, i, 10), NULL, 10);
    r->alert_created_us = strtoll(PQgetvalue(res, i, 11), NULL, 10);
    if (r->alert_id == 0 && rl_state_has_alert(r->life.state))
        r->life.state = RL_STATE_OK; /* an alert state without its alert: start over */
}

int rl_alerts_load_rules(PGconn *conn, struct rl_rule_row **out, size_t *n,
                         struct agg_err *err)
{
    PGresult *res;
    struct rl_rule_row *rows;
    int count;

    *out = NULL;
    *n = 0;
    if (st_db_query(conn, load_sql, 0, NULL, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    count = PQntuples(res);
    rows = agg_calloc(count > 0 ? (size_t)count : 1, sizeof(*rows));
    if (rows == NULL) {
        PQclear(res);
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    }
    for (int i = 0; i < count; i++)
        load_row(res, i, &rows[i]);
    PQclear(res);
    *out = rows;
    *n = (size_t)count;
    return AGG_OK;
}

/* ---- outbox ---- */

/* $1 alert id, $2 alert created_at (us), $3 notice, $4 now (us), [$5 channels JSON].
 * Due at once even when <now> is injected in the future (`alerts escalate --now`). */
#define QUEUE_SQL(targets)                                                                         \
    "INSERT INTO alert_notifications (message_id, alert_id, alert_created_at, rule_id, notice,"    \
    "       channel, endpoint_id, target, next_attempt_at, payload)"                               \
    " SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), a.id, a.created_at,"            \
    "        a.rule_id, $3::text, t.channel, t.endpoint_id, t.target,"                            \
    "        least(" RL_SQL_TS("$4") ", now() AT TIME ZONE 'UTC'),"                                 \
    "        jsonb_build_object('notice', $3::text,"                                               \
    "          'status', CASE WHEN $3::text = 'resolved' THEN 'resolved' ELSE 'firing' END,"       \
    "          'alert_id', a.id, 'alert_created_at', " ISO("a.created_at") ","                      \
    "          'rule_id', a.rule_id, 'rule', r.name, 'metric', r.metric,"                         \
    "          'operator', r.operator, 'threshold', r.threshold, 'value', a.metric_value,"         \
    "          'severity', a.severity, 'escalation_level', a.escalation_level,"                    \
    "          'message', a.message, 'starts_at', " ISO("a.created_at") ","                         \
    "          'ends_at', " ISO("a.resolved_at") ","                                                \
    "          'context', coalesce(a.context, '{}'::jsonb) - 'escalation_policy',"                 \
    "          'link', '/api/v1/alerts/' || a.id)"                                                 \
    "   FROM alerts a JOIN alert_rules r ON r.id = a.rule_id CROSS JOIN LATERAL " targets " t"     \
    "  WHERE a.id = $1::int AND a.created_at = " RL_SQL_TS("$2")

static const char *const queue_sql[] = {
    [RL_TARGETS_RULE] = QUEUE_SQL("aggd_alert_targets(r.notification_channels::text[], "
                                  "r.owner_id)"),
    [RL_TARGETS_CHANNELS] = QUEUE_SQL(
        "aggd_alert_targets(ARRAY(SELECT jsonb_array_elements_text($5::jsonb)), r.owner_id)"),
    [RL_TARGETS_NOTIFIED] = QUEUE_SQL(
        "(SELECT DISTINCT n.channel::text AS channel, n.endpoint_id, n.target"
        "   FROM alert_notifications n"
        "  WHERE n.alert_id = a.id AND n.alert_created_at = a.created_at"
        "    AND n.notice <> 'resolved')"),
};

int rl_alerts_queue(PGconn *conn, int alert_id, int64_t alert_created_us, const char *notice,
                    enum rl_targets targets, const char *channels_json, int64_t now_us,
                    int *queued, struct agg_err *err)
{
    char id[24], created[24], now[24];
    const char *params[5] = {rl_alerts_i64(alert_id, id), rl_alerts_i64(alert_created_us, created),
                             notice, rl_alerts_i64(now_us, now), channels_json};
    PGresult *res;

    if (st_db_query(conn, queue_sql[targets], targets == RL_TARGETS_CHANNELS ? 5 : 4, params,
                    PGRES_COMMAND_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    if (queued != NULL)
        *queued = (int)strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return AGG_OK;
}

/* ---- rule state ---- */

static const char save_state_sql[] =
    "INSERT INTO alert_rule_state AS s (rule_id, state, since, alert_id, alert_created_at,"
    "       last_value, last_eval_at)"
    " VALUES ($1::int, $2, " RL_SQL_TS("$3") ", NULLIF($4::int, 0),"
    "         CASE WHEN $4::int = 0 THEN NULL ELSE " RL_SQL_TS("$5") " END, $6::float8, "
    RL_SQL_TS("$7") ")"
    " ON CONFLICT (rule_id) DO UPDATE SET state = EXCLUDED.state, since = EXCLUDED.since,"
    "       alert_id = EXCLUDED.alert_id, alert_created_at = EXCLUDED.alert_created_at,"
    "       last_value = coalesce(EXCLUDED.last_value, s.last_value),"
    "       last_eval_at = EXCLUDED.last_eval_at";

int rl_alerts_save_state(PGconn *conn, int rule_id, const struct rl_lifecycle *life,
                         int alert_id, int64_t alert_created_us, bool has_value, double value,
                         int64_t now_us, struct agg_err *err)
{
    char rid[24], since[24], aid[24], acreated[24], val[40], now[24];
    const char *params[7] = {rl_alerts_i64(rule_id, rid),
                             rl_state_name(life->state),
                             rl_alerts_i64(life->since_us, since),
                             rl_alerts_i64(alert_id, aid),
                             rl_alerts_i64(alert_created_us, acreated),
                             NULL,
                             rl_alerts_i64(now_us, now)};

    if (has_value) {
        snprintf(val, sizeof(val), "%.17g", value);
        params[5] = val;
    }
    return st_db_query(conn, save_state_sql, 7, params, PGRES_COMMAND_OK, NULL, err);
}

/* ---- firing ---- */

/* An inactive rule never fires: a deactivation that commits first wins, and one that
 * commits after this lock is followed by a reload that resolves the alert. */
static const char lock_rule_sql[] =
    "SELECT 1 FROM alert_rules WHERE id = $1::int AND is_active IS NOT FALSE FOR UPDATE";

static const char open_alert_sql[] =
    "SELECT id, " RL_SQL_US("created_at") " FROM alerts"
    " WHERE rule_id = $1::int AND " OPEN_STATUS " ORDER BY created_at DESC LIMIT 1";

static const char insert_alert_sql[] =
    "INSERT INTO alerts (rule_id, severity, status, metric_value, message, context,"
    "       escalation_level, notifications_sent, created_at, updated_at)"
    " SELECT r.id, r.severity, 'active', $2::float8, $3,"
    "        coalesce($4::jsonb, '{}'::jsonb) || jsonb_build_object('escalation_policy',"
    "          (SELECT jsonb_build_object('id', p.id, 'name', p.name, 'levels', p.levels,"
    "                                     'repeat_count', p.repeat_count)"
    "             FROM alert_escalation_policies p"
    "            WHERE p.id = r.escalation_policy_id AND p.is_active IS NOT FALSE)),"
    "        0, '[]'::jsonb, " RL_SQL_TS("$5") ", " RL_SQL_TS("$5")
    "   FROM alert_rules r WHERE r.id = $1::int"
    " RETURNING id, " RL_SQL_US("created_at");

static const char partition_sql[] =
    "SELECT aggd_create_month_partition('alerts', (" RL_SQL_TS("$1") ")::date),"
    "       aggd_note_received('alerts', (" RL_SQL_TS("$1") ")::date)";

/* The month's partition, in its own short transaction: creating one locks the parent.
 * Also notes the month as receiving rows (partition_activity): maintenance does not
 * archive it within partitions.archive_grace_hours (docs/partitions.md). */
static int ensure_partition(PGconn *conn, int64_t now_us, struct agg_err *err)
{
    char now[24];
    const char *params[1] = {rl_alerts_i64(now_us, now)};
    int rc = rl_alerts_begin(conn, err);

    if (rc == AGG_OK)
        rc = st_db_exec(conn, "SET LOCAL lock_timeout = '5s'", err);
    if (rc == AGG_OK)
        rc = st_db_query(conn, partition_sql, 1, params, PGRES_TUPLES_OK, NULL, err);
    return rl_alerts_end(conn, rc, err);
}

/* Reads the one row of <res> as an alert reference. */
static void ref_of(const PGresult *res, struct rl_alert_ref *out)
{
    out->id = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
    out->created_us = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
}

static int fire_in_tx(PGconn *conn, const struct rl_fire *f, struct rl_alert_ref *out,
                      struct agg_err *err)
{
    char rid[24], val[40], now[24];
    const char *params[5] = {rl_alerts_i64(f->rule_id, rid), val, f->message, f->context_json,
                             rl_alerts_i64(f->now_us, now)};
    struct rl_lifecycle life = {RL_STATE_FIRING, f->now_us};
    PGresult *res;
    int rc;

    snprintf(val, sizeof(val), "%.17g", f->value);
    if (st_db_query(conn, lock_rule_sql, 1, params, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    rc = PQntuples(res) == 1
             ? AGG_OK
             : agg_err_set(err, AGG_ENOTFOUND, "rule %d is gone or inactive", f->rule_id);
    PQclear(res);
    if (rc != AGG_OK ||
        st_db_query(conn, open_alert_sql, 1, params, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return rc != AGG_OK ? rc : AGG_EDB;
    out->adopted = PQntuples(res) == 1;
    if (out->adopted)
        ref_of(res, out);
    PQclear(res);
    if (!out->adopted) {
        if (st_db_query(conn, insert_alert_sql, 5, params, PGRES_TUPLES_OK, &res, err) != AGG_OK)
            return AGG_EDB;
        ref_of(res, out);
        PQclear(res);
        rc = rl_alerts_queue(conn, out->id, out->created_us, "firing", RL_TARGETS_RULE, NULL,
                             f->now_us, NULL, err);
        if (rc != AGG_OK)
            return rc;
    }
    return rl_alerts_save_state(conn, f->rule_id, &life, out->id, out->created_us, true,
                                f->value, f->now_us, err);
}

int rl_alerts_fire(PGconn *conn, const struct rl_fire *f, struct rl_alert_ref *out,
                   struct agg_err *err)
{
    int rc = ensure_partition(conn, f->now_us, err);

    memset(out, 0, sizeof(*out));
    if (rc != AGG_OK)
        return rc;
    if ((rc = rl_alerts_begin(conn, err)) != AGG_OK)
        return rc;
    return rl_alerts_end(conn, fire_in_tx(conn, f, out, err), err);
}

/* ---- while firing, and the automatic resolve ---- */

static const char follow_sql[] =
    "UPDATE alerts SET metric_value = $3::float8"
    " WHERE id = $1::int AND created_at = " RL_SQL_TS("$2") " AND " OPEN_STATUS;

int rl_alerts_follow(PGconn *conn, int alert_id, int64_t alert_created_us, double value,
                     bool *open, struct agg_err *err)
{
    char aid[24], created[24], val[40];
    const char *params[3] = {rl_alerts_i64(alert_id, aid),
                             rl_alerts_i64(alert_created_us, created), val};
    PGresult *res;

    snprintf(val, sizeof(val), "%.17g", value);
    if (st_db_query(conn, follow_sql, 3, params, PGRES_COMMAND_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    *open = strcmp(PQcmdTuples(res), "0") != 0;
    PQclear(res);
    return AGG_OK;
}

/* $4 NULL keeps the value; $5 (NULL: none) says why, in context.resolved_reason. */
static const char resolve_auto_sql[] =
    "UPDATE alerts SET status = 'resolved', resolution_type = 'auto',"
    "       resolved_at = " RL_SQL_TS("$3") ", metric_value = coalesce($4::float8, metric_value),"
    "       context = CASE WHEN $5::text IS NULL THEN context"
    "                 ELSE coalesce(context, '{}'::jsonb)"
    "                      || jsonb_build_object('resolved_reason', $5::text) END"
    " WHERE id = $1::int AND created_at = " RL_SQL_TS("$2") " AND " OPEN_STATUS;

/* An automatic resolve of a rule's alert (<alert_id> 0: none, only the state) with
 * <value> (NULL: keep the alert's) and <reason> (NULL: none). */
struct auto_resolve {
    int rule_id;
    int alert_id;
    int64_t alert_created_us;
    const double *value;
    const char *reason;
    int64_t now_us;
};

static int resolve_auto_in_tx(PGconn *conn, const struct auto_resolve *a, struct agg_err *err)
{
    char aid[24], created[24], now[24], val[40];
    const char *params[5] = {
        rl_alerts_i64(a->alert_id, aid), rl_alerts_i64(a->alert_created_us, created),
        rl_alerts_i64(a->now_us, now), a->value != NULL ? val : NULL, a->reason};
    struct rl_lifecycle ok = {RL_STATE_OK, a->now_us};
    PGresult *res;
    bool was_open;
    int rc = AGG_OK;

    if (a->value != NULL)
        snprintf(val, sizeof(val), "%.17g", *a->value);
    if (st_db_query(conn, resolve_auto_sql, 5, params, PGRES_COMMAND_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    was_open = strcmp(PQcmdTuples(res), "0") != 0;
    PQclear(res);
    if (was_open)
        rc = rl_alerts_queue(conn, a->alert_id, a->alert_created_us, "resolved",
                             RL_TARGETS_NOTIFIED, NULL, a->now_us, NULL, err);
    if (rc != AGG_OK)
        return rc;
    return rl_alerts_save_state(conn, a->rule_id, &ok, 0, 0, a->value != NULL,
                                a->value != NULL ? *a->value : 0, a->now_us, err);
}

int rl_alerts_resolve_auto(PGconn *conn, int rule_id, int alert_id, int64_t alert_created_us,
                           double value, int64_t now_us, struct agg_err *err)
{
    struct auto_resolve a = {rule_id, alert_id, alert_created_us, &value, NULL, now_us};
    int rc = rl_alerts_begin(conn, err);

    if (rc != AGG_OK)
        return rc;
    return rl_alerts_end(conn, resolve_auto_in_tx(conn, &a, err), err);
}

/* States of inactive rules that are not at rest; SKIP LOCKED: another daemon's reload
 * is retiring them. */
static const char inactive_states_sql[] =
    "SELECT s.rule_id, coalesce(s.alert_id, 0), coalesce(" RL_SQL_US("s.alert_created_at") ", 0)"
    "  FROM alert_rule_state s JOIN alert_rules r ON r.id = s.rule_id"
    " WHERE r.is_active IS FALSE AND (s.state <> 'ok' OR s.alert_id IS NOT NULL)"
    " ORDER BY s.rule_id FOR UPDATE OF s SKIP LOCKED";

static int retire_in_tx(PGconn *conn, int64_t now_us, int *retired, struct agg_err *err)
{
    PGresult *res;
    int rc = AGG_OK;

    if (st_db_query(conn, inactive_states_sql, 0, NULL, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    for (int i = 0; i < PQntuples(res) && rc == AGG_OK; i++) {
        struct auto_resolve a = {(int)strtol(PQgetvalue(res, i, 0), NULL, 10),
                                 (int)strtol(PQgetvalue(res, i, 1), NULL, 10),
                                 strtoll(PQgetvalue(res, i, 2), NULL, 10), NULL,
                                 RL_RESOLVED_DEACTIVATED, now_us};

        rc = resolve_auto_in_tx(conn, &a, err);
        *retired += a.alert_id != 0;
    }
    PQclear(res);
    return rc;
}

int rl_alerts_retire_inactive(PGconn *conn, int64_t now_us, int *retired, struct agg_err *err)
{
    int n = 0;
    int rc = rl_alerts_begin(conn, err);

    if (rc == AGG_OK)
        rc = rl_alerts_end(conn, retire_in_tx(conn, now_us, &n, err), err);
    if (retired != NULL)
        *retired = rc == AGG_OK ? n : 0;
    return rc;
}

/* ---- manual actions ---- */

/* Explains why the action on <alert_id> changed nothing: AGG_ENOTFOUND, AGG_OK when
 * the alert is already in <done_status>, else AGG_EINVAL naming its status. */
static int why_not(PGconn *conn, int alert_id, const char *action, const char *done_status,
                   const char *allowed, struct agg_err *err)
{
    char aid[24];
    const char *params[1] = {rl_alerts_i64(alert_id, aid)};
    PGresult *res;
    int rc;

    if (st_db_query(conn, "SELECT status FROM alerts WHERE id = $1::int", 1, params,
                    PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    if (PQntuples(res) == 0)
        rc = agg_err_set(err, AGG_ENOTFOUND, "alert %d does not exist", alert_id);
    else if (done_status != NULL && strcmp(PQgetvalue(res, 0, 0), done_status) == 0)
        rc = AGG_OK;
    else
        rc = agg_err_set(err, AGG_EINVAL, "alert %d is %s: only %s alerts can be %s", alert_id,
                         PQgetvalue(res, 0, 0), allowed, action);
    PQclear(res);
    return rc;
}

/* Runs the one-statement action <sql> ($1 alert id, $2 user id or NULL, $3 now). *<row>
 * gets its RETURNING row (NULL when it changed nothing); caller owns it: PQclear(). */
static int act(PGconn *conn, const char *sql, int alert_id, int user_id, int64_t now_us,
               PGresult **row, struct agg_err *err)
{
    char aid[24], uid[24], now[24];
    const char *params[3] = {rl_alerts_i64(alert_id, aid),
                             user_id > 0 ? rl_alerts_i64(user_id, uid) : NULL,
                             rl_alerts_i64(now_us, now)};
    PGresult *res;

    *row = NULL;
    if (st_db_query(conn, sql, 3, params, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    if (PQntuples(res) == 0)
        PQclear(res);
    else
        *row = res;
    return AGG_OK;
}

static const char ack_sql[] =
    "UPDATE alerts SET status = 'acknowledged', acknowledged_by = $2::int,"
    "       acknowledged_at = " RL_SQL_TS("$3") " WHERE id = $1::int AND status = 'active'"
    " RETURNING id";

int rl_alerts_acknowledge(PGconn *conn, int alert_id, int user_id, int64_t now_us,
                          struct agg_err *err)
{
    PGresult *row;

    if (act(conn, ack_sql, alert_id, user_id, now_us, &row, err) != AGG_OK)
        return AGG_EDB;
    if (row != NULL) {
        PQclear(row);
        return AGG_OK;
    }
    return why_not(conn, alert_id, "acknowledged", "acknowledged", "active", err);
}

static const char resolve_sql[] =
    "UPDATE alerts SET status = 'resolved', resolution_type = 'manual', resolved_by = $2::int,"
    "       resolved_at = " RL_SQL_TS("$3") " WHERE id = $1::int AND " OPEN_STATUS
    " RETURNING coalesce(rule_id, 0), " RL_SQL_US("created_at");

static const char forget_sql[] =
    "UPDATE alert_rule_state SET state = 'ok', since = " RL_SQL_TS("$3") ","
    "       alert_id = NULL, alert_created_at = NULL"
    " WHERE rule_id = $1::int AND alert_id = $2::int";

static int resolve_in_tx(PGconn *conn, int alert_id, int user_id, int64_t now_us,
                         struct agg_err *err)
{
    PGresult *row;
    char aid[24], now[24];
    const char *params[3] = {NULL, rl_alerts_i64(alert_id, aid), rl_alerts_i64(now_us, now)};
    int64_t created_us;
    int rc;

    if (act(conn, resolve_sql, alert_id, user_id, now_us, &row, err) != AGG_OK)
        return AGG_EDB;
    if (row == NULL)
        return why_not(conn, alert_id, "resolved", "resolved", "active or acknowledged", err);
    created_us = strtoll(PQgetvalue(row, 0, 1), NULL, 10);
    params[0] = PQgetvalue(row, 0, 0);
    rc = rl_alerts_queue(conn, alert_id, created_us, "resolved", RL_TARGETS_NOTIFIED, NULL,
                         now_us, NULL, err);
    if (rc == AGG_OK)
        rc = st_db_query(conn, forget_sql, 3, params, PGRES_COMMAND_OK, NULL, err);
    PQclear(row);
    return rc;
}

int rl_alerts_resolve(PGconn *conn, int alert_id, int user_id, int64_t now_us,
                      struct agg_err *err)
{
    int rc = rl_alerts_begin(conn, err);

    if (rc != AGG_OK)
        return rc;
    return rl_alerts_end(conn, resolve_in_tx(conn, alert_id, user_id, now_us, err), err);
}

static const char close_sql[] =
    "UPDATE alerts SET status = 'closed' WHERE id = $1::int AND status = 'resolved'"
    " RETURNING id, $2::int, $3::bigint"; /* alerts has no closed_by: updated_at says when */

int rl_alerts_close(PGconn *conn, int alert_id, int user_id, int64_t now_us,
                    struct agg_err *err)
{
    PGresult *row;

    if (act(conn, close_sql, alert_id, user_id, now_us, &row, err) != AGG_OK)
        return AGG_EDB;
    if (row != NULL) {
        PQclear(row);
        return AGG_OK;
    }
    return why_not(conn, alert_id, "closed", "closed", "resolved", err);
}
