/*
 * rules/escalate.c — escalation passes.
 *
 * Place: see rules/escalate.h.
 * Threads: see rules/escalate.h.
 * Traps: a malformed policy snapshot (hand-edited context) escalates nothing rather
 *        than failing the pass for every other alert.
 */
#include "rules/escalate.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rules/alerts.h"
#include "store/db.h"

#define US_PER_MIN 60000000.0

enum rl_escalation rl_escalate_next(const struct rl_escalation_in *in, int64_t now_us,
                                    int *index)
{
    int64_t total;
    double wait_us;

    *index = -1;
    if (in->level < 0)
        return RL_ESCALATION_NONE;
    total = in->nlevels > 0 ? (int64_t)in->nlevels * ((int64_t)in->repeat_count + 1) : 0;
    if (in->level < total) {
        wait_us = (isfinite(in->after_minutes) && in->after_minutes > 0 ? in->after_minutes
                                                                         : 0) * US_PER_MIN;
        if ((double)(now_us - in->base_us) < wait_us)
            return RL_ESCALATION_NONE;
        *index = in->level % in->nlevels;
        return RL_ESCALATION_LEVEL;
    }
    if (in->cooldown_minutes <= 0 ||
        (double)(now_us - in->base_us) < in->cooldown_minutes * US_PER_MIN)
        return RL_ESCALATION_NONE;
    return RL_ESCALATION_REPEAT;
}

/* Locks the candidates; levels is the policy snapshot's array ([] when malformed). */
static const char due_sql[] =
    "WITH c AS ("
    "  SELECT a.id, a.created_at, coalesce(a.escalation_level, 0) AS k,"
    "         coalesce(a.last_escalated_at, a.created_at) AS base,"
    "         CASE WHEN jsonb_typeof(a.context #> '{escalation_policy,levels}') = 'array'"
    "              THEN a.context #> '{escalation_policy,levels}' ELSE '[]'::jsonb END AS levels,"
    "         a.context #>> '{escalation_policy,repeat_count}' AS rep,"
    "         coalesce(r.cooldown_minutes, 0) AS cooldown"
    "    FROM alerts a JOIN alert_rules r ON r.id = a.rule_id"
    "   WHERE a.status = 'active' AND a.created_at <= " RL_SQL_TS("$1")
    "   ORDER BY a.created_at, a.id"
    "     FOR UPDATE OF a SKIP LOCKED)"
    " SELECT id, " RL_SQL_US("created_at") ", k, jsonb_array_length(levels), rep,"
    "        " RL_SQL_US("base") ", cooldown,"
    "        levels -> (k % greatest(jsonb_array_length(levels), 1)) ->> 'after_minutes',"
    "        CASE WHEN jsonb_typeof(levels -> (k % greatest(jsonb_array_length(levels), 1))"
    "                               -> 'channels') = 'array'"
    "             THEN (levels -> (k % greatest(jsonb_array_length(levels), 1))"
    "                          -> 'channels')::text ELSE '[]' END"
    "   FROM c";

static const char bump_sql[] =
    "UPDATE alerts SET escalation_level = coalesce(escalation_level, 0) + $3::int,"
    "       last_escalated_at = " RL_SQL_TS("$4")
    " WHERE id = $1::int AND created_at = " RL_SQL_TS("$2");

static void read_in(const PGresult *res, int i, struct rl_escalation_in *in)
{
    const char *after = PQgetvalue(res, i, 7);
    char *end;

    memset(in, 0, sizeof(*in));
    in->level = (int)strtol(PQgetvalue(res, i, 2), NULL, 10);
    in->nlevels = (int)strtol(PQgetvalue(res, i, 3), NULL, 10);
    in->repeat_count = (int)strtol(PQgetvalue(res, i, 4), &end, 10);
    if (*end != '\0' || in->repeat_count < 0 || in->repeat_count > 1000)
        in->repeat_count = 0;
    in->base_us = strtoll(PQgetvalue(res, i, 5), NULL, 10);
    in->cooldown_minutes = (int)strtol(PQgetvalue(res, i, 6), NULL, 10);
    in->after_minutes = strtod(after, &end);
    if (PQgetisnull(res, i, 7) || *end != '\0')
        in->nlevels = 0; /* a level without a number: the policy cannot be followed */
}

static int escalate_one(PGconn *conn, const PGresult *res, int i, int64_t now_us,
                        struct rl_escalate_result *out, struct agg_err *err)
{
    struct rl_escalation_in in;
    enum rl_escalation what;
    int index, queued = 0, rc;
    int64_t created_us = strtoll(PQgetvalue(res, i, 1), NULL, 10);
    char step[4], now[24];
    const char *params[4] = {PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), step,
                             rl_alerts_i64(now_us, now)};

    read_in(res, i, &in);
    what = rl_escalate_next(&in, now_us, &index);
    if (what == RL_ESCALATION_NONE)
        return AGG_OK;
    /* bump first: the notice carries the level it announces */
    snprintf(step, sizeof(step), "%d", what == RL_ESCALATION_LEVEL ? 1 : 0);
    if (st_db_query(conn, bump_sql, 4, params, PGRES_COMMAND_OK, NULL, err) != AGG_OK)
        return AGG_EDB;
    if (what == RL_ESCALATION_LEVEL)
        rc = rl_alerts_queue(conn, (int)strtol(params[0], NULL, 10), created_us, "escalation",
                             RL_TARGETS_CHANNELS, PQgetvalue(res, i, 8), now_us, &queued, err);
    else
        rc = rl_alerts_queue(conn, (int)strtol(params[0], NULL, 10), created_us, "repeat",
                             RL_TARGETS_RULE, NULL, now_us, &queued, err);
    if (rc != AGG_OK)
        return rc;
    out->escalated += what == RL_ESCALATION_LEVEL;
    out->repeated += what == RL_ESCALATION_REPEAT;
    out->notices += queued;
    return AGG_OK;
}

static int pass_in_tx(PGconn *conn, int64_t now_us, struct rl_escalate_result *out,
                      struct agg_err *err)
{
    char now[24];
    const char *params[1] = {rl_alerts_i64(now_us, now)};
    PGresult *res;
    int rc = AGG_OK;

    if (st_db_query(conn, due_sql, 1, params, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    for (int i = 0; i < PQntuples(res) && rc == AGG_OK; i++)
        rc = escalate_one(conn, res, i, now_us, out, err);
    PQclear(res);
    return rc;
}

int rl_escalate_pass(PGconn *conn, int64_t now_us, struct rl_escalate_result *res,
                     struct agg_err *err)
{
    struct rl_escalate_result local = {0};
    int rc = rl_alerts_begin(conn, err);

    if (rc == AGG_OK)
        rc = rl_alerts_end(conn, pass_in_tx(conn, now_us, &local, err), err);
    if (rc != AGG_OK)
        local = (struct rl_escalate_result){0};
    if (res != NULL)
        *res = local;
    return rc;
}
