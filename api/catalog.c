/*
 * api/catalog.c — the shared catalogue: pipeline templates (and pipelines made from
 *                 them) and transformation functions (and the count of their uses).
 *
 * Place: see api/catalog.h.
 * Threads: tables are constant; prepare_* on the loop thread; the rest on job threads.
 * Ownership: the instantiated pipeline's merged body replaces r->body and r->body_text,
 *            which the request frees as usual.
 * Traps: use_count only ever moves by "use_count + 1" in the UPDATE of the transaction
 *        that uses the row: concurrent uses each count (row lock), and a use that
 *        fails rolls its count back. The UPDATE also stamps updated_at (the seed's
 *        trigger). Transformations name their function in config.function, so a
 *        function's name is fixed once created.
 * Not here: the generic CRUD (api/resource.c); the pipelines' own rules
 *           (api/resources.c).
 */
#include "api/catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json.h"

/* clang-format off */
#define RO_INT(name) API_FIELD_RO(name, API_T_INT)
#define TEXT(name, flags, check) {name, API_T_STRING, (flags), 0, NULL, 0, 0, check, NULL}
#define FLAG(name) {name, API_T_BOOL, API_F_WRITE | API_F_FILTER, 0, NULL, 0, 0, NULL, NULL}
/* what templates and functions both end with */
#define CATALOG_TAIL                                                                          \
    FLAG("is_builtin"), FLAG("is_public"), RO_INT("use_count"),                               \
        {"tags", API_T_STRINGS, API_F_WRITE | API_F_NULLABLE | API_F_FILTER, 100, NULL, 0, 0, \
         check_tags, NULL},                                                                   \
        API_FIELDS_OWNED_TAIL

static const char *const template_categories[] = {"etl", "elt", "quality", "streaming", NULL};
static const char *const function_categories[] = {"filter", "map", "aggregate",
                                                  "sort", "custom", NULL};
/* clang-format on */
static const char *const function_types[] = {"python", "sql", NULL};
static const char *const schema_types[] = {"string", "number", "integer", "boolean",
                                           "object", "array",  "null",    NULL};

static bool is_one_of(const char *s, const char *const *set)
{
    for (size_t i = 0; s != NULL && set[i] != NULL; i++) {
        if (strcmp(s, set[i]) == 0)
            return true;
    }
    return false;
}

static int check_text(yajl_val v, struct agg_err *err)
{
    const char *s = YAJL_GET_STRING(v);

    if (s == NULL || s[strspn(s, " \t\r\n")] == '\0')
        return agg_err_set(err, AGG_EINVAL, "must not be empty or blank");
    return AGG_OK;
}

static int check_tags(yajl_val v, struct agg_err *err)
{
    if (v->u.array.len > API_CATALOG_TAGS_MAX)
        return agg_err_set(err, AGG_EINVAL, "tags holds at most %d tags", API_CATALOG_TAGS_MAX);
    for (size_t i = 0; i < v->u.array.len; i++) {
        if (YAJL_GET_STRING(v->u.array.values[i])[0] == '\0')
            return agg_err_set(err, AGG_EINVAL, "tag %zu is empty", i);
    }
    return AGG_OK;
}

/* A code identifier: ^[A-Za-z_][A-Za-z0-9_]*$ */
static int check_identifier(yajl_val v, struct agg_err *err)
{
    static const char word[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789";
    const char *s = YAJL_GET_STRING(v);

    if (s == NULL || s[0] == '\0' || (s[0] >= '0' && s[0] <= '9') || s[strspn(s, word)] != '\0')
        return agg_err_set(err, AGG_EINVAL,
                           "name must be a code identifier: a letter or _, then letters, "
                           "digits or _");
    return AGG_OK;
}

/* The JSON Schema <s> at <at> ("parameters", "parameters.properties.x"): type a type
 * name (or an array of them), properties an object of schemas, required an array of
 * names from properties. */
static int check_schema(yajl_val s, const char *at, struct agg_err *err)
{
    const char *tk[] = {"type", NULL}, *pk[] = {"properties", NULL}, *rk[] = {"required", NULL};
    yajl_val t = yajl_tree_get(s, tk, yajl_t_any), p = yajl_tree_get(s, pk, yajl_t_any);
    yajl_val q = yajl_tree_get(s, rk, yajl_t_any);
    bool type_ok = t == NULL || is_one_of(YAJL_GET_STRING(t), schema_types);

    if (t != NULL && YAJL_IS_ARRAY(t)) {
        type_ok = t->u.array.len > 0;
        for (size_t i = 0; i < t->u.array.len; i++)
            type_ok = type_ok && is_one_of(YAJL_GET_STRING(t->u.array.values[i]), schema_types);
    }
    if (!type_ok)
        return agg_err_set(err, AGG_EINVAL,
                           "%s.type must be a JSON Schema type (string, number, integer, "
                           "boolean, object, array, null) or an array of them",
                           at);
    if (p != NULL && !YAJL_IS_OBJECT(p))
        return agg_err_set(err, AGG_EINVAL, "%s.properties must be an object", at);
    for (size_t i = 0; p != NULL && i < p->u.object.len; i++) {
        char sub[256];

        if (!YAJL_IS_OBJECT(p->u.object.values[i]))
            return agg_err_set(err, AGG_EINVAL, "%s.properties.%.64s must be an object", at,
                               p->u.object.keys[i]);
        snprintf(sub, sizeof(sub), "%s.properties.%.64s", at, p->u.object.keys[i]);
        if (check_schema(p->u.object.values[i], sub, err) != AGG_OK)
            return AGG_EINVAL;
    }
    if (q != NULL && !YAJL_IS_ARRAY(q))
        return agg_err_set(err, AGG_EINVAL, "%s.required must be an array of property names", at);
    for (size_t i = 0; q != NULL && i < q->u.array.len; i++) {
        const char *name = YAJL_GET_STRING(q->u.array.values[i]);
        const char *path[] = {name, NULL};

        if (name == NULL)
            return agg_err_set(err, AGG_EINVAL, "%s.required must hold strings", at);
        if (p == NULL || yajl_tree_get(p, path, yajl_t_object) == NULL)
            return agg_err_set(err, AGG_EINVAL,
                               "%s.required names \"%.64s\", which is not in its properties", at,
                               name);
    }
    return AGG_OK;
}

static int check_parameters(yajl_val v, struct agg_err *err)
{
    return check_schema(v, "parameters", err);
}

/* clang-format off */
static const struct api_field template_fields[] = {
    RO_INT("id"),
    {"name", API_T_STRING, API_F_WRITE | API_F_REQUIRED, 255, NULL, 0, 0, check_text, NULL},
    TEXT("description", API_F_WRITE | API_F_NULLABLE, NULL),
    {"category", API_T_STRING, API_F_WRITE | API_F_REQUIRED | API_F_FILTER, 100,
     template_categories, 0, 0, NULL, NULL},
    {"template_config", API_T_OBJECT, API_F_WRITE | API_F_REQUIRED, 0, NULL, 0, 0, NULL, NULL},
    CATALOG_TAIL,
};

static const struct api_field function_fields[] = {
    RO_INT("id"),
    {"name", API_T_STRING, API_F_CREATE | API_F_REQUIRED | API_F_FILTER, 255, NULL, 0, 0,
     check_identifier, NULL},
    {"display_name", API_T_STRING, API_F_WRITE | API_F_REQUIRED, 255, NULL, 0, 0, check_text,
     NULL},
    TEXT("description", API_F_WRITE | API_F_NULLABLE, NULL),
    {"category", API_T_STRING, API_F_WRITE | API_F_REQUIRED | API_F_FILTER, 100,
     function_categories, 0, 0, NULL, NULL},
    {"function_type", API_T_STRING, API_F_WRITE | API_F_REQUIRED | API_F_FILTER, 50,
     function_types, 0, 0, NULL, NULL},
    TEXT("function_code", API_F_WRITE | API_F_REQUIRED, check_text),
    {"parameters", API_T_OBJECT, API_F_WRITE | API_F_NULLABLE, 0, NULL, 0, 0, check_parameters,
     NULL},
    TEXT("example_usage", API_F_WRITE | API_F_NULLABLE, NULL),
    CATALOG_TAIL,
};
/* clang-format on */

/* Read: public, built-in or own rows; write: own rows that are not built-in. Admins
 * read and write every row. Both tables have these columns. */
static int catalog_scope(struct api_req *r, bool write)
{
    return api_res_scope_user(r,
                              write ? "is_builtin IS NOT TRUE AND owner_id = "
                                    : "is_public IS TRUE OR is_builtin IS TRUE OR owner_id = ",
                              "");
}

const struct api_resource api_res_templates = {
    .what = "pipeline template",
    .table = "pipeline_templates",
    .fields = template_fields,
    .owned = true,
    .scope = catalog_scope,
};

const struct api_resource api_res_functions = {
    .what = "transformation function",
    .table = "transformation_functions",
    .fields = function_fields,
    .owned = true,
    .scope = catalog_scope,
};

/* ---- create / update: only an admin makes a row built-in ---- */

static bool builtin_allowed(struct api_req *r)
{
    const char *path[] = {"is_builtin", NULL};

    if (api_req_is_admin(r) || yajl_tree_get(r->body, path, yajl_t_true) == NULL)
        return true;
    return api_fail(r, 403, "forbidden", "is_builtin", "only an admin may make a %s built-in",
                    r->route->res->what);
}

bool api_catalog_prepare_create(struct api_req *r)
{
    return api_res_prepare_create(r) && builtin_allowed(r);
}

bool api_catalog_prepare_update(struct api_req *r)
{
    return api_res_prepare_update(r) && builtin_allowed(r);
}

/* ---- POST pipeline-templates/{id}/instantiate ---- */

/* The merged pipeline failed validation: an error in a field the body gave stands; one
 * from the template is the template's (422), and a missing field is the body's to give. */
static void blame(struct api_req *r, yajl_val given)
{
    char field[sizeof(r->efield)], msg[sizeof(r->emsg)], code[sizeof(r->ecode)];
    const char *path[] = {field, NULL};

    snprintf(field, sizeof(field), "%s", r->efield);
    snprintf(msg, sizeof(msg), "%s", r->emsg);
    snprintf(code, sizeof(code), "%s", r->ecode);
    if (field[0] == '\0' || yajl_tree_get(given, path, yajl_t_any) != NULL)
        return;
    if (strcmp(code, "missing") == 0)
        api_fail(r, 422, code, field, "%s is required: give it in the body", field);
    else
        api_fail(r, 422, code, field, "the template's template_config: %s", msg);
}

/* Makes r->body / r->body_text the pipeline <merged> and validates it as POST pipelines
 * does; false with the reply set. */
static bool take_merged(struct api_req *r, const char *merged, size_t len)
{
    yajl_val m = NULL, given = r->body;
    char why[160];
    char *text;
    int rc = agg_json_parse(merged, len, API_MAX_DEPTH, &m, why, sizeof(why));

    if (rc == AGG_ENOMEM)
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    if (rc != AGG_OK || !YAJL_IS_OBJECT(m)) {
        if (m != NULL)
            yajl_tree_free(m);
        return api_fail(r, 422, "invalid_value", "template_config",
                        "the template's template_config is not a JSON object of at most %d "
                        "levels",
                        API_MAX_DEPTH);
    }
    text = agg_strdup(merged);
    if (text == NULL) {
        yajl_tree_free(m);
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    }
    free(r->body_text);
    r->body_text = text;
    r->body = m;
    if (!api_res_validate(r, &api_res_pipelines, true)) {
        blame(r, given);
        yajl_tree_free(given);
        return false;
    }
    yajl_tree_free(given);
    return true;
}

void api_catalog_instantiate_work(struct api_req *r, PGconn *conn)
{
    char id[16];
    PGresult *q;
    int rc;

    snprintf(id, sizeof(id), "%d", r->ids[0]);
    if (!api_begin(r, conn))
        return;
    api_sql_reset(r);
    rc = agg_buf_printf(&r->sql, "UPDATE pipeline_templates SET use_count = "
                                 "coalesce(use_count, 0) + 1 WHERE id = ");
    if (rc == AGG_OK)
        rc = api_param(r, id);
    if (rc == AGG_OK)
        rc = catalog_scope(r, false);
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, " RETURNING (template_config || ");
    if (rc == AGG_OK)
        rc = api_param(r, r->body_text);
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, "::jsonb)::text");
    q = api_query_built(r, conn, rc, PGRES_TUPLES_OK);
    if (q == NULL)
        goto out_rollback;
    if (PQntuples(q) == 0) {
        PQclear(q);
        api_fail(r, 404, "not_found", NULL, "no such pipeline template");
        goto out_rollback;
    }
    if (!take_merged(r, PQgetvalue(q, 0, 0), (size_t)PQgetlength(q, 0, 0))) {
        PQclear(q);
        goto out_rollback;
    }
    PQclear(q);
    api_res_insert(r, conn, &api_res_pipelines);
    if (r->status == 201 && api_commit(r, conn))
        return;

out_rollback:
    api_rollback(conn);
}

/* ---- transformations: config.function counts a use of that function ---- */

#define FN_FIELD "config.function"

/* config.function of the body into *<name> (NULL when absent); false with the reply
 * set when it is not a string. */
static bool body_function(struct api_req *r, const char **name)
{
    const char *path[] = {"config", "function", NULL};
    yajl_val v = yajl_tree_get(r->body, path, yajl_t_any);

    *name = NULL;
    if (v == NULL)
        return true;
    if (!YAJL_IS_STRING(v))
        return api_fail(r, 422, "invalid_type", FN_FIELD,
                        FN_FIELD " must be the name of a transformation function");
    *name = YAJL_GET_STRING(v);
    return true;
}

/* use_count + 1 of function <name>, if the caller may read it; else 422. */
static bool count_use(struct api_req *r, PGconn *conn, const char *name)
{
    PGresult *q;
    bool found;
    int rc;

    api_sql_reset(r);
    rc = agg_buf_printf(&r->sql, "UPDATE transformation_functions SET use_count = "
                                 "coalesce(use_count, 0) + 1 WHERE name = ");
    if (rc == AGG_OK)
        rc = api_param(r, name);
    if (rc == AGG_OK)
        rc = catalog_scope(r, false);
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, " RETURNING 1");
    q = api_query_built(r, conn, rc, PGRES_TUPLES_OK);
    if (q == NULL)
        return false;
    found = PQntuples(q) == 1;
    PQclear(q);
    return found || api_fail(r, 422, "invalid_reference", FN_FIELD,
                             FN_FIELD " names no transformation function you may use: "
                                      "\"%.64s\"",
                             name);
}

bool api_catalog_count_on_create(struct api_req *r, PGconn *conn)
{
    const char *name;

    if (!body_function(r, &name))
        return false;
    return name == NULL || count_use(r, conn, name);
}

bool api_catalog_count_on_update(struct api_req *r, PGconn *conn)
{
    char id[16];
    const char *p[1] = {id};
    const char *name;
    PGresult *q;
    bool same;

    if (!body_function(r, &name))
        return false;
    if (name == NULL)
        return true;
    snprintf(id, sizeof(id), "%d", r->ids[0]);
    q = api_exec(r, conn,
                 "SELECT config->>'function' FROM transformations WHERE id = $1"
                 " FOR UPDATE",
                 1, p, PGRES_TUPLES_OK);
    if (q == NULL)
        return false;
    /* a missing row is the UPDATE's 404 */
    same = PQntuples(q) == 0 || (!PQgetisnull(q, 0, 0) && strcmp(PQgetvalue(q, 0, 0), name) == 0);
    PQclear(q);
    return same || count_use(r, conn, name);
}
