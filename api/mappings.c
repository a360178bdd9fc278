/*
 * api/mappings.c — schema mappings: a source schema, a destination schema and the
 *                  field mappings between them, checked to agree.
 *
 * Place: see api/mappings.h.
 * Threads: the checks are pure; check_merged runs on job threads.
 * Traps: a PATCH changing one of the three is checked against the other two as
 *        stored, read FOR UPDATE in the update's transaction.
 */
#include "api/mappings.h"

#include <stdio.h>
#include <string.h>

#include "api/resource.h"
#include "core/json.h"

#define SCHEMA_SHAPES                                                                              \
    "a JSON Schema object {\"type\":\"object\",\"properties\":{…}} or "                          \
    "{\"fields\":[{\"name\":…,\"type\":…},…]}"

static yajl_val member(yajl_val obj, const char *key)
{
    const char *path[] = {key, NULL};

    return yajl_tree_get(obj, path, yajl_t_any);
}

/* Whether <key> is <name>[<len>] (*<rest> NULL), or its first segments: then *<rest>
 * points after the dot that follows them. */
static bool key_matches(const char *key, const char *name, size_t len, const char **rest)
{
    size_t kl = strlen(key);

    *rest = NULL;
    if (kl == len && memcmp(key, name, len) == 0)
        return true;
    if (kl < len && memcmp(key, name, kl) == 0 && name[kl] == '.') {
        *rest = name + kl + 1;
        return true;
    }
    return false;
}

static bool has_field(yajl_val s, const char *name, size_t len)
{
    yajl_val props = member(s, "properties"), fields = member(s, "fields"),
             items = member(s, "items");
    const char *rest;

    for (size_t i = 0; props != NULL && YAJL_IS_OBJECT(props) && i < props->u.object.len; i++) {
        if (key_matches(props->u.object.keys[i], name, len, &rest) &&
            (rest == NULL ||
             has_field(props->u.object.values[i], rest, len - (size_t)(rest - name))))
            return true;
    }
    for (size_t i = 0; fields != NULL && YAJL_IS_ARRAY(fields) && i < fields->u.array.len; i++) {
        yajl_val f = fields->u.array.values[i], n = member(f, "name");

        if (n != NULL && YAJL_IS_STRING(n) && key_matches(YAJL_GET_STRING(n), name, len, &rest) &&
            (rest == NULL || has_field(f, rest, len - (size_t)(rest - name))))
            return true;
    }
    return items != NULL && YAJL_IS_OBJECT(items) && has_field(items, name, len);
}

bool api_mapping_has_field(yajl_val schema, const char *name)
{
    return has_field(schema, name, strlen(name));
}

/* ---- the shapes (field checks: the message names the field) ---- */

static int check_fields(yajl_val fields, struct agg_err *err);

static int check_schema(yajl_val v, struct agg_err *err)
{
    yajl_val props = member(v, "properties"), fields = member(v, "fields"),
             type = member(v, "type");

    if (props != NULL && YAJL_IS_OBJECT(props) &&
        (type == NULL || (YAJL_IS_STRING(type) && strcmp(type->u.string, "object") == 0)))
        return AGG_OK;
    if (fields != NULL)
        return check_fields(fields, err);
    return agg_err_set(err, AGG_EINVAL, "must be " SCHEMA_SHAPES);
}

static int check_fields(yajl_val fields, struct agg_err *err)
{
    if (!YAJL_IS_ARRAY(fields))
        return agg_err_set(err, AGG_EINVAL, "fields must be an array: " SCHEMA_SHAPES);
    for (size_t i = 0; i < fields->u.array.len; i++) {
        yajl_val f = fields->u.array.values[i], n = member(f, "name"), sub = member(f, "fields");

        if (n == NULL || !YAJL_IS_STRING(n) || YAJL_GET_STRING(n)[0] == '\0')
            return agg_err_set(err, AGG_EINVAL, "fields[%zu] must be an object with a name", i);
        if (sub != NULL && check_fields(sub, err) != AGG_OK)
            return AGG_EINVAL;
    }
    return AGG_OK;
}

static int check_mappings(yajl_val v, struct agg_err *err)
{
    for (size_t i = 0; i < v->u.object.len; i++) {
        yajl_val d = v->u.object.values[i];

        if (v->u.object.keys[i][0] == '\0' || !YAJL_IS_STRING(d) || YAJL_GET_STRING(d)[0] == '\0')
            return agg_err_set(err, AGG_EINVAL,
                               "field_mappings must map source field names to destination field "
                               "names: {\"<source>\":\"<destination>\",…} (\"%.64s\")",
                               v->u.object.keys[i]);
    }
    return AGG_OK;
}

/* Every mapped field of <fm> exists: sources in <src>, destinations in <dst>. */
static bool check_fields_exist(struct api_req *r, yajl_val src, yajl_val dst, yajl_val fm)
{
    for (size_t i = 0; i < fm->u.object.len; i++) {
        const char *from = fm->u.object.keys[i];
        const char *to = YAJL_GET_STRING(fm->u.object.values[i]);

        if (!api_mapping_has_field(src, from))
            return api_fail(r, 422, "invalid_value", "field_mappings",
                            "source field \"%.64s\" is not in source_schema", from);
        if (to == NULL || !api_mapping_has_field(dst, to))
            return api_fail(r, 422, "invalid_value", "field_mappings",
                            "destination field \"%.64s\" is not in destination_schema",
                            to != NULL ? to : "");
    }
    return true;
}

static yajl_val body_member(struct api_req *r, const char *name)
{
    return r->body != NULL ? member(r->body, name) : NULL;
}

bool api_mapping_prepare_create(struct api_req *r)
{
    return api_res_prepare_create(r) && check_fields_exist(r, body_member(r, "source_schema"),
                                                           body_member(r, "destination_schema"),
                                                           body_member(r, "field_mappings"));
}

/* PATCH: the body's schemas and mappings, or else the stored ones, must agree. */
static bool check_merged(struct api_req *r, PGconn *conn)
{
    static const char *const cols[] = {"source_schema", "destination_schema", "field_mappings"};
    yajl_val v[3] = {NULL, NULL, NULL}, stored[3] = {NULL, NULL, NULL};
    char id[16], why[160];
    const char *p[1] = {id};
    PGresult *q;
    bool ok = true, any = false;

    for (int i = 0; i < 3; i++) {
        v[i] = body_member(r, cols[i]);
        any = any || v[i] != NULL;
    }
    if (!any)
        return true;
    snprintf(id, sizeof(id), "%d", r->ids[0]);
    q = api_exec(r, conn,
                 "SELECT source_schema::text, destination_schema::text, field_mappings::text"
                 "  FROM schema_mappings WHERE id = $1 FOR UPDATE",
                 1, p, PGRES_TUPLES_OK);
    if (q == NULL)
        return false;
    if (PQntuples(q) == 0) {
        PQclear(q);
        return api_fail(r, 404, "not_found", NULL, "no such schema mapping");
    }
    for (int i = 0; ok && i < 3; i++) {
        int rc;

        if (v[i] != NULL)
            continue;
        rc = agg_json_parse(PQgetvalue(q, 0, i), (size_t)PQgetlength(q, 0, i), API_MAX_DEPTH,
                            &stored[i], why, sizeof(why));
        if (rc == AGG_ENOMEM)
            ok = api_fail(r, 503, "unavailable", NULL, "out of memory");
        v[i] = stored[i];
    }
    PQclear(q);
    if (ok && (v[2] == NULL || !YAJL_IS_OBJECT(v[2])))
        ok = api_fail(r, 422, "invalid_value", "field_mappings",
                      "the stored field_mappings is not an object: give field_mappings too");
    if (ok)
        ok = check_fields_exist(r, v[0], v[1], v[2]);
    for (int i = 0; i < 3; i++) {
        if (stored[i] != NULL)
            yajl_tree_free(stored[i]);
    }
    return ok;
}

/* clang-format off */
static const struct api_field mapping_fields[] = {
    API_FIELD_RO("id", API_T_INT),
    {"name", API_T_STRING, API_F_WRITE | API_F_REQUIRED, 255, NULL, 0, 0, NULL, NULL},
    {"source_schema", API_T_OBJECT, API_F_WRITE | API_F_REQUIRED, 0, NULL, 0, 0, check_schema,
     NULL},
    {"destination_schema", API_T_OBJECT, API_F_WRITE | API_F_REQUIRED, 0, NULL, 0, 0,
     check_schema, NULL},
    {"field_mappings", API_T_OBJECT, API_F_WRITE | API_F_REQUIRED, 0, NULL, 0, 0,
     check_mappings, NULL},
    {"transformation_rules", API_T_OBJECT, API_F_WRITE | API_F_NULLABLE, 0, NULL, 0, 0, NULL,
     NULL},
    API_FIELD_ACTIVE,
    API_FIELDS_OWNED_TAIL,
};
/* clang-format on */

const struct api_resource api_res_mappings = {
    .what = "schema mapping",
    .table = "schema_mappings",
    .fields = mapping_fields,
    .soft_delete = true,
    .owned = true,
    .before_update = check_merged,
};
