/*
 * api/resources.c — the resources of /api/v1 as field tables, and the few behaviours a
 * table cannot say: pipeline versions, run transitions, preference defaults.
 *
 * Place: api/routes.c names these; api/resource.c runs them.
 * Threads: tables are constant; hooks run on job threads.
 * Traps: VARCHAR lengths here must follow the schema (the seed's); PostgreSQL
 *        refuses longer strings anyway, but the API names the field first.
 */
#include "api/resource.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "api/auth.h"
#include "api/catalog.h"
#include "core/time.h"
#include "rules/alerts.h"
#include "rules/expr.h"
#include "core/alloc.h"
#include "core/log.h"

#define TS(name) API_FIELD_TIME(name)
#define RO_INT(name) API_FIELD_RO(name, API_T_INT)
#define END API_FIELDS_END
#define NAME                                                                                  \
    {"name", API_T_STRING, API_F_WRITE | API_F_REQUIRED, 255, NULL, 0, 0, check_not_empty, NULL}
#define DESCRIPTION                                                                           \
    {"description", API_T_STRING, API_F_WRITE | API_F_NULLABLE, 0, NULL, 0, 0, NULL, NULL}
#define ACTIVE API_FIELD_ACTIVE
#define OWNED_TAIL API_FIELDS_OWNED_TAIL

static const char *const roles[] = {"admin", "editor", "viewer", NULL};
static const char *const run_statuses[] = {"pending", "running", "completed", "failed", NULL};
static const char *const severities[] = {"low", "medium", "high", "critical", NULL};
static const char *const alert_statuses[] = {"active", "acknowledged", "resolved", "closed",
                                             NULL};
static const char *const endpoint_kinds[] = {"email", "slack", "webhook", NULL};
static const char *const operators[] = {"gt", "gte", "lt", "lte", "eq", NULL};
static const char *const themes[] = {"light", "dark", NULL};
static const char *const time_formats[] = {"12h", "24h", NULL};

/* The text of a string value ("" for anything else). */
static const char *text_of(yajl_val v)
{
    const char *s = YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;

    return s != NULL ? s : "";
}

static int check_email(yajl_val v, struct agg_err *err)
{
    return api_auth_check_user(text_of(v), "viewer", NULL, err);
}

static int check_password(yajl_val v, struct agg_err *err)
{
    size_t n = strlen(text_of(v));

    if (n == 0 || n > API_AUTH_PASSWORD_MAX)
        return agg_err_set(err, AGG_EINVAL, "password must be 1..%d bytes",
                           API_AUTH_PASSWORD_MAX);
    return AGG_OK;
}

static int check_not_empty(yajl_val v, struct agg_err *err)
{
    if (text_of(v)[0] == '\0')
        return agg_err_set(err, AGG_EINVAL, "must not be empty");
    return AGG_OK;
}

/* levels: [{"after_minutes": N >= 0, "channels": ["email", "slack:ops", …]}, …] */
static int check_levels(yajl_val v, struct agg_err *err)
{
    for (size_t i = 0; i < v->u.array.len; i++) {
        yajl_val l = v->u.array.values[i];
        const char *am[] = {"after_minutes", NULL}, *ch[] = {"channels", NULL};
        yajl_val a, c;

        if (!YAJL_IS_OBJECT(l) || l->u.object.len != 2)
            return agg_err_set(err, AGG_EINVAL,
                               "level %zu must be {\"after_minutes\":N,\"channels\":[…]}", i);
        a = yajl_tree_get(l, am, yajl_t_number);
        c = yajl_tree_get(l, ch, yajl_t_array);
        if (a == NULL || !YAJL_IS_INTEGER(a) || YAJL_GET_INTEGER(a) < 0 ||
            YAJL_GET_INTEGER(a) > 525600)
            return agg_err_set(err, AGG_EINVAL, "level %zu: after_minutes must be 0..525600", i);
        if (c == NULL || c->u.array.len == 0)
            return agg_err_set(err, AGG_EINVAL, "level %zu: channels must be a non-empty array",
                               i);
        for (size_t j = 0; j < c->u.array.len; j++) {
            if (!YAJL_IS_STRING(c->u.array.values[j]) ||
                text_of(c->u.array.values[j])[0] == '\0')
                return agg_err_set(err, AGG_EINVAL, "level %zu: channels must be strings", i);
        }
    }
    return AGG_OK;
}

/* A Standard Webhooks secret: "whsec_" + base64 of at least 16 bytes. */
static int check_secret(yajl_val v, struct agg_err *err)
{
    const char *s = text_of(v);
    unsigned char key[256];
    size_t len = 0;

    if (strncmp(s, "whsec_", 6) != 0 ||
        sodium_base642bin(key, sizeof(key), s + 6, strlen(s + 6), NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        len < 16)
        return agg_err_set(err, AGG_EINVAL,
                           "secret must be \"whsec_\" and the base64 of 16 to 256 bytes");
    sodium_memzero(key, sizeof(key));
    return AGG_OK;
}

/* The rules parser's verdict; its message says at which character it stopped. */
static int check_metric(yajl_val v, struct agg_err *err)
{
    struct rl_expr e;
    size_t pos = 0;

    if (rl_expr_compile(text_of(v), &e, &pos, err) != AGG_OK) {
        agg_err_prefix(err, "invalid metric expression");
        return AGG_EINVAL;
    }
    return AGG_OK;
}

/* A channel is a kind ("email", "slack", "webhook") or "kind:endpoint-name". */
static int check_channels(yajl_val v, struct agg_err *err)
{
    for (size_t i = 0; i < v->u.array.len; i++) {
        const char *c = text_of(v->u.array.values[i]);
        size_t k = strcspn(c, ":");
        bool known = false;

        for (size_t j = 0; endpoint_kinds[j] != NULL; j++)
            known = known || (strlen(endpoint_kinds[j]) == k &&
                              strncmp(endpoint_kinds[j], c, k) == 0);
        if (!known || (c[k] == ':' && c[k + 1] == '\0'))
            return agg_err_set(err, AGG_EINVAL,
                               "channel %zu must be email, slack, webhook or kind:name", i);
    }
    return AGG_OK;
}

/* clang-format off */
static const struct api_field user_fields[] = {
    RO_INT("id"),
    {"email", API_T_STRING, API_F_WRITE | API_F_REQUIRED | API_F_FILTER, 255, NULL, 0, 0,
     check_email, NULL},
    {"full_name", API_T_STRING, API_F_WRITE | API_F_NULLABLE, 255, NULL, 0, 0, NULL, NULL},
    {"role", API_T_STRING, API_F_WRITE | API_F_REQUIRED | API_F_FILTER, 50, roles, 0, 0, NULL,
     NULL},
    {"is_active", API_T_BOOL, API_F_UPDATE | API_F_FILTER, 0, NULL, 0, 0, NULL, NULL},
    {"is_verified", API_T_BOOL, API_F_UPDATE, 0, NULL, 0, 0, NULL, NULL},
    {"password", API_T_PASSWORD, API_F_WRITE | API_F_REQUIRED | API_F_HIDDEN, 0, NULL, 0, 0,
     check_password, "hashed_password"},
    TS("created_at"),
    TS("updated_at"),
    END,
};

const struct api_resource api_res_users = {
    .what = "user", .table = "users", .fields = user_fields, .soft_delete = true,
};

static const struct api_field pref_fields[] = {
    RO_INT("user_id"),
    {"theme", API_T_STRING, API_F_UPDATE, 20, themes, 0, 0, NULL, NULL},
    {"language", API_T_STRING, API_F_UPDATE, 10, NULL, 0, 0, check_not_empty, NULL},
    {"timezone", API_T_STRING, API_F_UPDATE, 50, NULL, 0, 0, check_not_empty, NULL},
    {"date_format", API_T_STRING, API_F_UPDATE, 20, NULL, 0, 0, check_not_empty, NULL},
    {"time_format", API_T_STRING, API_F_UPDATE, 20, time_formats, 0, 0, NULL, NULL},
    {"notifications_enabled", API_T_BOOL, API_F_UPDATE, 0, NULL, 0, 0, NULL, NULL},
    {"email_notifications", API_T_BOOL, API_F_UPDATE, 0, NULL, 0, 0, NULL, NULL},
    {"dashboard_refresh_interval", API_T_INT, API_F_UPDATE, 0, NULL, 1, 86400, NULL, NULL},
    {"accessibility_mode", API_T_BOOL, API_F_UPDATE, 0, NULL, 0, 0, NULL, NULL},
    {"custom_settings", API_T_OBJECT, API_F_UPDATE | API_F_NULLABLE, 0, NULL, 0, 0, NULL, NULL},
    TS("created_at"),
    TS("updated_at"),
    END,
};

static const struct api_field pipeline_fields[] = {
    RO_INT("id"),
    {"name", API_T_STRING, API_F_WRITE | API_F_REQUIRED | API_F_FILTER, 255, NULL, 0, 0,
     check_not_empty, NULL},
    DESCRIPTION,
    {"source_config", API_T_OBJECT, API_F_WRITE | API_F_REQUIRED, 0, NULL, 0, 0, NULL, NULL},
    {"transformation_config", API_T_OBJECT, API_F_WRITE | API_F_NULLABLE, 0, NULL, 0, 0, NULL,
     NULL},
    {"destination_config", API_T_OBJECT, API_F_WRITE | API_F_REQUIRED, 0, NULL, 0, 0, NULL,
     NULL},
    {"schedule", API_T_STRING, API_F_WRITE | API_F_NULLABLE, 100, NULL, 0, 0, NULL, NULL},
    ACTIVE,
    {"visual_definition", API_T_OBJECT, API_F_WRITE | API_F_NULLABLE, 0, NULL, 0, 0, NULL,
     NULL},
    {"owner_id", API_T_INT, API_F_FILTER, 0, NULL, 0, 0, NULL, NULL},
    TS("created_at"),
    TS("updated_at"),
    END,
};

static const struct api_field version_fields[] = {
    RO_INT("id"),
    RO_INT("pipeline_id"),
    RO_INT("version_number"),
    {"version_name", API_T_STRING, 0, 255, NULL, 0, 0, NULL, NULL},
    {"change_description", API_T_STRING, 0, 0, NULL, 0, 0, NULL, NULL},
    {"snapshot", API_T_OBJECT, 0, 0, NULL, 0, 0, NULL, NULL},
    {"is_active", API_T_BOOL, 0, 0, NULL, 0, 0, NULL, NULL},
    RO_INT("created_by"),
    TS("created_at"),
    END,
};

static const struct api_field run_fields[] = {
    RO_INT("id"),
    RO_INT("pipeline_id"),
    {"status", API_T_STRING, API_F_UPDATE | API_F_FILTER, 50, run_statuses, 0, 0, NULL, NULL},
    TS("started_at"),
    TS("completed_at"),
    {"records_processed", API_T_INT, API_F_WRITE, 0, NULL, 0, 2147483647, NULL, NULL},
    {"error_message", API_T_STRING, API_F_UPDATE | API_F_NULLABLE, 0, NULL, 0, 0, NULL, NULL},
    {"execution_log", API_T_OBJECT, API_F_WRITE | API_F_NULLABLE, 0, NULL, 0, 0, NULL, NULL},
    TS("created_at"),
    END,
};

static const struct api_field transformation_fields[] = {
    RO_INT("id"),
    NAME,
    {"transformation_type", API_T_STRING, API_F_WRITE | API_F_REQUIRED | API_F_FILTER, 100, NULL,
     0, 0, check_not_empty, NULL},
    {"transformation_code", API_T_STRING, API_F_WRITE | API_F_NULLABLE, 0, NULL, 0, 0, NULL,
     NULL},
    {"config", API_T_OBJECT, API_F_WRITE | API_F_NULLABLE, 0, NULL, 0, 0, NULL, NULL},
    ACTIVE,
    OWNED_TAIL,
};

static const struct api_field policy_fields[] = {
    RO_INT("id"),
    NAME,
    DESCRIPTION,
    {"levels", API_T_ARRAY, API_F_WRITE | API_F_REQUIRED, 0, NULL, 0, 0, check_levels, NULL},
    {"repeat_count", API_T_INT, API_F_WRITE, 0, NULL, 0, 1000, NULL, NULL},
    ACTIVE,
    OWNED_TAIL,
};

static const struct api_field endpoint_fields[] = {
    RO_INT("id"),
    NAME,
    {"kind", API_T_STRING, API_F_WRITE | API_F_REQUIRED | API_F_FILTER, 20, endpoint_kinds, 0, 0,
     NULL, NULL},
    {"target", API_T_STRING, API_F_WRITE | API_F_REQUIRED, 2048, NULL, 0, 0, check_not_empty,
     NULL},
    {"secret", API_T_STRING, API_F_WRITE | API_F_NULLABLE | API_F_HIDDEN, 0, NULL, 0, 0,
     check_secret, NULL},
    ACTIVE,
    OWNED_TAIL,
};

static const struct api_field rule_fields[] = {
    RO_INT("id"),
    NAME,
    DESCRIPTION,
    {"metric", API_T_STRING, API_F_WRITE | API_F_REQUIRED, 100, NULL, 0, 0, check_metric, NULL},
    {"threshold", API_T_NUMBER, API_F_WRITE | API_F_REQUIRED, 0, NULL, 0, 0, NULL, NULL},
    {"operator", API_T_STRING, API_F_WRITE | API_F_REQUIRED, 20, operators, 0, 0, NULL, NULL},
    {"severity", API_T_STRING, API_F_WRITE | API_F_REQUIRED | API_F_FILTER, 20, severities, 0, 0,
     NULL, NULL},
    ACTIVE,
    {"cooldown_minutes", API_T_INT, API_F_WRITE, 0, NULL, 0, 525600, NULL, NULL},
    {"notification_channels", API_T_STRINGS, API_F_WRITE | API_F_NULLABLE, 255, NULL, 0, 0,
     check_channels, NULL},
    {"escalation_policy_id", API_T_INT, API_F_WRITE | API_F_NULLABLE, 0, NULL, 1, 2147483647,
     NULL, NULL},
    {"for_seconds", API_T_INT, API_F_WRITE, 0, NULL, 0, 604800, NULL, NULL},
    {"keep_firing_seconds", API_T_INT, API_F_WRITE, 0, NULL, 0, 604800, NULL, NULL},
    OWNED_TAIL,
};

static const struct api_field alert_fields[] = {
    RO_INT("id"),
    {"rule_id", API_T_INT, API_F_FILTER, 0, NULL, 0, 0, NULL, NULL},
    {"severity", API_T_STRING, API_F_FILTER, 20, severities, 0, 0, NULL, NULL},
    {"status", API_T_STRING, API_F_FILTER, 20, alert_statuses, 0, 0, NULL, NULL},
    {"metric_value", API_T_NUMBER, 0, 0, NULL, 0, 0, NULL, NULL},
    {"message", API_T_STRING, 0, 0, NULL, 0, 0, NULL, NULL},
    {"context", API_T_OBJECT, 0, 0, NULL, 0, 0, NULL, NULL},
    RO_INT("acknowledged_by"),
    TS("acknowledged_at"),
    RO_INT("resolved_by"),
    TS("resolved_at"),
    {"resolution_type", API_T_STRING, 0, 20, NULL, 0, 0, NULL, NULL},
    RO_INT("escalation_level"),
    TS("last_escalated_at"),
    {"notifications_sent", API_T_ARRAY, 0, 0, NULL, 0, 0, NULL, NULL},
    TS("created_at"),
    TS("updated_at"),
    END,
};
/* clang-format on */

/* ---- pipelines: every update first keeps the previous state as the next version ---- */

static bool pipeline_snapshot(struct api_req *r, PGconn *conn)
{
    char id[16], uid[16];
    PGresult *q;
    bool ok;

    if (r->present == 0)
        return true; /* nothing changes: no version */

    api_sql_reset(r);
    snprintf(id, sizeof(id), "%d", r->ids[0]);
    snprintf(uid, sizeof(uid), "%d", r->who.user_id);
    if (agg_buf_printf(&r->sql,
                       "INSERT INTO pipeline_versions (pipeline_id, version_number, snapshot,"
                       " created_by, change_description, is_active)"
                       " SELECT p.id, coalesce((SELECT max(version_number) FROM pipeline_versions"
                       " v WHERE v.pipeline_id = p.id), 0) + 1, ") != AGG_OK ||
        api_res_snapshot_expr(&r->sql, &api_res_pipelines) != AGG_OK ||
        agg_buf_printf(&r->sql, ", ") != AGG_OK || api_param(r, uid) != AGG_OK ||
        agg_buf_printf(&r->sql, ", 'state before an update', false FROM (SELECT * FROM "
                                "pipelines WHERE id = ") != AGG_OK ||
        api_param(r, id) != AGG_OK || agg_buf_printf(&r->sql, " FOR UPDATE) p") != AGG_OK)
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    q = api_query(r, conn, r->sql.data, PGRES_COMMAND_OK);
    if (q == NULL)
        return false;
    ok = strcmp(PQcmdTuples(q), "1") == 0;
    PQclear(q);
    return ok || api_fail(r, 404, "not_found", NULL, "no such pipeline");
}

const struct api_resource api_res_pipelines = {
    .what = "pipeline", .table = "pipelines", .fields = pipeline_fields, .soft_delete = true,
    .owned = true, .before_update = pipeline_snapshot,
};

const struct api_resource api_res_versions = {
    .what = "pipeline version", .table = "pipeline_versions", .fields = version_fields,
    .parent = "pipeline_id", .parent_table = "pipelines",
};

/* ---- transformations: config.function counts a use of that function (api/catalog.c) ---- */

const struct api_resource api_res_transformations = {
    .what = "transformation", .table = "transformations", .fields = transformation_fields,
    .soft_delete = true, .owned = true, .before_create = api_catalog_count_on_create,
    .before_update = api_catalog_count_on_update,
};

/* ---- runs: pending -> running -> completed | failed, stamping the times ---- */

static bool legal_transition(const char *from, const char *to)
{
    return (strcmp(from, "pending") == 0 && strcmp(to, "running") == 0) ||
           (strcmp(from, "running") == 0 &&
            (strcmp(to, "completed") == 0 || strcmp(to, "failed") == 0));
}

static bool run_transition(struct api_req *r, PGconn *conn)
{
    const char *path[] = {"status", NULL};
    yajl_val v = yajl_tree_get(r->body, path, yajl_t_string);
    char run[16], pipe[16];
    const char *p[3] = {run, pipe, NULL};
    const char *stamp;
    PGresult *q;
    bool ok;

    snprintf(pipe, sizeof(pipe), "%d", r->ids[0]);
    snprintf(run, sizeof(run), "%d", r->ids[1]);
    q = api_exec(r, conn, "SELECT status FROM pipeline_runs WHERE id = $1 AND pipeline_id = $2"
                          " FOR UPDATE", 2, p, PGRES_TUPLES_OK);
    if (q == NULL)
        return false;
    if (PQntuples(q) == 0) {
        PQclear(q);
        return api_fail(r, 404, "not_found", NULL, "no such pipeline run");
    }
    if (v == NULL) {
        PQclear(q);
        return true;
    }
    ok = legal_transition(PQgetvalue(q, 0, 0), text_of(v));
    if (!ok)
        api_fail(r, 409, "invalid_transition", "status",
                 "a run cannot go from %.20s to %.20s (pending -> running -> completed|failed)",
                 PQgetvalue(q, 0, 0), text_of(v));
    PQclear(q);
    if (!ok)
        return false;
    stamp = strcmp(text_of(v), "running") == 0
                ? "UPDATE pipeline_runs SET started_at = now() AT TIME ZONE 'UTC' WHERE id = $1"
                : "UPDATE pipeline_runs SET completed_at = now() AT TIME ZONE 'UTC' WHERE id = $1";
    q = api_exec(r, conn, stamp, 1, p, PGRES_COMMAND_OK);
    PQclear(q);
    return q != NULL;
}

const struct api_resource api_res_runs = {
    .what = "pipeline run", .table = "pipeline_runs", .fields = run_fields,
    .parent = "pipeline_id", .parent_table = "pipelines", .insert_cols = "status",
    .insert_vals = "'pending'", .before_update = run_transition,
};

/* ---- preferences: a user without a row has the seed's defaults ---- */

/* Materialises the defaults row (the columns' defaults are the seed's). */
static bool prefs_ensure(struct api_req *r, PGconn *conn)
{
    char id[16];
    const char *p[1] = {id};
    PGresult *q;

    snprintf(id, sizeof(id), "%d", r->ids[0]);
    q = api_exec(r, conn, "INSERT INTO user_preferences (user_id) SELECT id FROM users"
                          " WHERE id = $1 ON CONFLICT (user_id) DO NOTHING", 1, p,
                 PGRES_COMMAND_OK);
    PQclear(q);
    return q != NULL;
}

const struct api_resource api_res_preferences = {
    .what = "user", .table = "user_preferences", .fields = pref_fields, .key = "user_id",
    .before_update = prefs_ensure,
};

void api_prefs_get_work(struct api_req *r, PGconn *conn)
{
    if (prefs_ensure(r, conn))
        api_res_get_work(r, conn);
}

/* ---- alerting ---- */

const struct api_resource api_res_policies = {
    .what = "escalation policy", .table = "alert_escalation_policies", .fields = policy_fields,
    .soft_delete = true, .owned = true,
};

const struct api_resource api_res_endpoints = {
    .what = "notification endpoint", .table = "notification_endpoints",
    .fields = endpoint_fields, .extra_out = "'has_secret', secret IS NOT NULL",
    .soft_delete = true, .owned = true,
};

const struct api_resource api_res_rules = {
    .what = "alert rule", .table = "alert_rules", .fields = rule_fields, .soft_delete = true,
    .owned = true,
};

const struct api_resource api_res_alerts = {
    .what = "alert", .table = "alerts", .fields = alert_fields,
};

/* ---- POST alerts/{id}/acknowledge|resolve|close (rules/alerts.c does the work) ---- */

static void alert_action(struct api_req *r, PGconn *conn,
                         int (*act)(PGconn *, int, int, int64_t, struct agg_err *))
{
    struct agg_err err = {0};
    int rc = act(conn, r->ids[0], r->who.user_id, agg_time_now_us(), &err);

    if (rc == AGG_ENOTFOUND) {
        api_fail(r, 404, "not_found", NULL, "no such alert");
    } else if (rc == AGG_EINVAL) {
        api_fail(r, 409, "invalid_transition", "status", "%s", err.msg);
    } else if (rc != AGG_OK) {
        r->job.conn_broken = true;
        AGG_LOG_WARN("api", "alert %d: %s", r->ids[0], err.msg);
        api_fail(r, 503, "unavailable", NULL, "the database is not available; retry later");
    } else {
        api_res_get_work(r, conn); /* the alert as it is now */
    }
}

void api_alert_ack_work(struct api_req *r, PGconn *conn)
{
    alert_action(r, conn, rl_alerts_acknowledge);
}

void api_alert_resolve_work(struct api_req *r, PGconn *conn)
{
    alert_action(r, conn, rl_alerts_resolve);
}

void api_alert_close_work(struct api_req *r, PGconn *conn)
{
    alert_action(r, conn, rl_alerts_close);
}

/* ---- POST pipelines/{id}/versions/{n}/activate ---- */

static const char restore_sql[] =
    "INSERT INTO pipeline_versions (pipeline_id, version_number, snapshot, created_by,"
    " change_description, is_active)"
    " SELECT $1, coalesce(max(version_number), 0) + 1, $2::jsonb, $3,"
    "        'restored version ' || $4, true"
    "   FROM pipeline_versions WHERE pipeline_id = $1 RETURNING ";

static bool restore_version(struct api_req *r, PGconn *conn, const char *pipe, const char *snap)
{
    char n[16], uid[16];
    const char *p[4] = {pipe, snap, uid, n};
    PGresult *q;
    struct agg_buf sql;

    snprintf(n, sizeof(n), "%d", r->ids[1]);
    snprintf(uid, sizeof(uid), "%d", r->who.user_id);
    q = api_exec(r, conn, "UPDATE pipeline_versions SET is_active = false WHERE pipeline_id = $1",
                 1, p, PGRES_COMMAND_OK);
    if (q == NULL)
        return false;
    PQclear(q);
    agg_buf_init(&sql);
    if (agg_buf_printf(&sql, "%s", restore_sql) != AGG_OK ||
        api_res_json_expr(&sql, &api_res_versions) != AGG_OK) {
        agg_buf_clear(&sql);
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    }
    q = api_exec(r, conn, sql.data, 4, p, PGRES_TUPLES_OK);
    agg_buf_clear(&sql);
    if (q == NULL)
        return false;
    api_reply_row(r, q, 201, "pipeline version");
    PQclear(q);
    return true;
}

void api_activate_work(struct api_req *r, PGconn *conn)
{
    char pipe[16], n[16];
    const char *p[2] = {pipe, n};
    PGresult *q, *u;
    char *snap;

    snprintf(pipe, sizeof(pipe), "%d", r->ids[0]);
    snprintf(n, sizeof(n), "%d", r->ids[1]);
    if (!api_begin(r, conn))
        return;
    q = api_exec(r, conn, "SELECT snapshot::text FROM pipeline_versions"
                          " WHERE pipeline_id = $1 AND version_number = $2", 2, p,
                 PGRES_TUPLES_OK);
    if (q == NULL)
        goto out_rollback;
    if (PQntuples(q) == 0) {
        PQclear(q);
        api_fail(r, 404, "not_found", NULL, "no such pipeline version");
        goto out_rollback;
    }
    snap = agg_strdup(PQgetvalue(q, 0, 0));
    PQclear(q);
    if (snap == NULL) {
        api_fail(r, 503, "unavailable", NULL, "out of memory");
        goto out_rollback;
    }
    u = api_res_update_row(r, conn, &api_res_pipelines, pipe, snap, UINT64_MAX);
    if (u != NULL && PQntuples(u) == 0)
        api_fail(r, 404, "not_found", NULL, "no such pipeline");
    if (u != NULL && PQntuples(u) == 1 && restore_version(r, conn, pipe, snap) &&
        api_commit(r, conn)) {
        PQclear(u);
        free(snap);
        return;
    }
    PQclear(u);
    free(snap);

out_rollback:
    api_rollback(conn);
}
