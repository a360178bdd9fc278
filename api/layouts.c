/*
 * api/layouts.c — dashboard layouts: per user, one default each, shared ones readable
 *                 by everyone, and a version that a write may name as a precondition.
 *
 * Place: see api/layouts.h.
 * Threads: see api/layouts.h.
 * Traps: locks go users row, then layout rows, in every path (create, update), so
 *        concurrent defaults of one user queue instead of deadlocking. "version" in
 *        a PATCH body is a precondition, never written: its bit leaves r->present in
 *        the hook, and the trigger of 0007 sets version anyway.
 */
#include "api/layouts.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "api/resource.h"
#include "core/alloc.h"
#include "core/json.h"

/* Read: own rows and shared ones; write: own rows; admins: all. */
static int layout_scope(struct api_req *r, bool write)
{
    return api_res_scope_user(r, "user_id = ", write ? "" : " OR is_shared");
}

static bool body_sets_default(struct api_req *r)
{
    const char *p[] = {"is_default", NULL};

    return r->body != NULL && YAJL_IS_TRUE(yajl_tree_get(r->body, p, yajl_t_any));
}

/* Locks user <uid>'s row (queueing its default changes), then clears the defaults of
 * its layouts but <keep> ("0": none). false = reply set. */
static bool clear_default(struct api_req *r, PGconn *conn, const char *uid, const char *keep)
{
    const char *p[2] = {uid, keep};
    PGresult *q;

    q = api_exec(r, conn, "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", 1, p,
                 PGRES_TUPLES_OK);
    if (q == NULL)
        return false;
    PQclear(q);
    q = api_exec(r, conn,
                 "UPDATE dashboard_layouts SET is_default = false"
                 " WHERE user_id = $1 AND is_default AND id <> $2",
                 2, p, PGRES_COMMAND_OK);
    PQclear(q);
    return q != NULL;
}

static bool layout_create(struct api_req *r, PGconn *conn)
{
    char uid[16];

    if (!body_sets_default(r))
        return true;
    snprintf(uid, sizeof(uid), "%d", r->who.user_id);
    return clear_default(r, conn, uid, "0");
}

/* 409 unless the version the request names (<want>; 0: none) is <have>. */
static bool version_is(struct api_req *r, long long want, long long have)
{
    if (want == 0 || want == have)
        return true;
    return api_fail(r, 409, "version_conflict", "version",
                    "the layout is at version %lld, not %lld: read it again", have, want);
}

static bool layout_update(struct api_req *r, PGconn *conn)
{
    const struct api_resource *res = &api_res_layouts;
    const char *vp[] = {"version", NULL};
    yajl_val body_version = yajl_tree_get(r->body, vp, yajl_t_number);
    char id[16], uid[64];
    const char *p[1] = {id};
    long long have;
    PGresult *q;
    int rc;

    snprintf(id, sizeof(id), "%d", r->ids[0]);
    api_sql_reset(r);
    rc = agg_buf_printf(&r->sql, "SELECT coalesce(user_id, 0) FROM dashboard_layouts WHERE id = ");
    if (rc == AGG_OK)
        rc = api_param(r, id);
    if (rc == AGG_OK)
        rc = layout_scope(r, true);
    q = api_query_built(r, conn, rc, PGRES_TUPLES_OK);
    if (q == NULL)
        return false;
    if (PQntuples(q) == 0) {
        PQclear(q);
        api_res_missing(r, conn, res);
        return false;
    }
    snprintf(uid, sizeof(uid), "%s", PQgetvalue(q, 0, 0));
    PQclear(q);
    if (body_sets_default(r) && !clear_default(r, conn, uid, id))
        return false;
    q = api_exec(r, conn,
                 "SELECT coalesce(version, 1) FROM dashboard_layouts WHERE id = $1"
                 " FOR UPDATE",
                 1, p, PGRES_TUPLES_OK);
    if (q == NULL)
        return false;
    if (PQntuples(q) == 0) {
        PQclear(q);
        return api_fail(r, 404, "not_found", NULL, "no such dashboard layout");
    }
    have = strtoll(PQgetvalue(q, 0, 0), NULL, 10);
    PQclear(q);
    if (!version_is(r, r->data != NULL ? *(long long *)r->data : 0, have) ||
        !version_is(r, body_version != NULL ? YAJL_GET_INTEGER(body_version) : 0, have))
        return false;
    /* a precondition, not a write */
    r->present &= ~(UINT64_C(1) << api_res_field(res, "version", strlen("version")));
    return true;
}

bool api_layout_prepare_update(struct api_req *r)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(r->req), "If-Match");
    size_t n = h != NULL ? strlen(h) : 0;
    long long *want;
    char *end = NULL;
    long long v = 0;

    if (!api_res_prepare_update(r))
        return false;
    if (h == NULL || strcmp(h, "*") == 0)
        return true;
    if (n >= 3 && h[0] == '"' && h[1] >= '1' && h[1] <= '9')
        v = strtoll(h + 1, &end, 10);
    if (end == NULL || end != h + n - 1 || *end != '"' || v > INT_MAX)
        return api_fail(r, 400, "invalid_header", "If-Match",
                        "If-Match must be the ETag of a layout: \"<version>\"");
    want = agg_malloc(sizeof(*want));
    if (want == NULL)
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    *want = v;
    r->data = want;
    return true;
}

void api_layout_done(struct api_req *r)
{
    const char *p[] = {"version", NULL};
    yajl_val doc = NULL, v;
    char why[8], etag[24];

    if (r->req == NULL || (r->status != 200 && r->status != 201) || r->out.data == NULL ||
        agg_json_parse(r->out.data, r->out.len, API_MAX_DEPTH, &doc, why, sizeof(why)) != AGG_OK)
        return;
    v = yajl_tree_get(doc, p, yajl_t_number);
    if (v != NULL && YAJL_IS_INTEGER(v)) {
        snprintf(etag, sizeof(etag), "\"%lld\"", YAJL_GET_INTEGER(v));
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "ETag", etag);
    }
    yajl_tree_free(doc);
}

/* clang-format off */
static const struct api_field layout_fields[] = {
    API_FIELD_RO("id", API_T_INT),
    {"user_id", API_T_INT, 0, 0, NULL, 0, 0, NULL, NULL},
    {"name", API_T_STRING, API_F_WRITE | API_F_REQUIRED, 255, NULL, 0, 0, NULL, NULL},
    {"description", API_T_STRING, API_F_WRITE | API_F_NULLABLE, 0, NULL, 0, 0, NULL, NULL},
    {"layout_config", API_T_OBJECT, API_F_WRITE | API_F_REQUIRED, 0, NULL, 0, 0, NULL, NULL},
    {"is_default", API_T_BOOL, API_F_WRITE | API_F_FILTER, 0, NULL, 0, 0, NULL, NULL},
    {"is_shared", API_T_BOOL, API_F_WRITE | API_F_FILTER, 0, NULL, 0, 0, NULL, NULL},
    /* on PATCH: the version the change applies to (a precondition) */
    {"version", API_T_INT, API_F_UPDATE, 0, NULL, 1, INT_MAX, NULL, NULL},
    API_FIELD_TIME("created_at"),
    API_FIELD_TIME("updated_at"),
    API_FIELDS_END,
};
/* clang-format on */

const struct api_resource api_res_layouts = {
    .what = "dashboard layout",
    .table = "dashboard_layouts",
    .fields = layout_fields,
    .owned = true,
    .owner_col = "user_id",
    .before_create = layout_create,
    .before_update = layout_update,
    .scope = layout_scope,
};
