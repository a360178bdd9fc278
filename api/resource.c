/*
 * api/resource.c — the generic list/get/create/update/delete of table-driven resources.
 *
 * Place: see api/resource.h.
 * Threads: prepare_* and validation on the loop thread; *_work on job threads.
 * Traps: a body is validated whole before any SQL; PostgreSQL still has the last word
 *        (unique keys, foreign keys, checks), mapped to 409/422 by api_db_fail().
 */
#include "api/resource.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api/auth.h"

/* Filters a list takes at most: each is a parameter, and the scope, the cursor and
 * the limit need theirs (API_MAX_PARAMS). */
#define API_MAX_FILTERS (API_MAX_PARAMS - 4)

static const char *key_col(const struct api_resource *res)
{
    return res->key != NULL ? res->key : "id";
}

int api_res_field(const struct api_resource *res, const char *name, size_t len)
{
    for (int i = 0; res->fields[i].name != NULL; i++) {
        if (strlen(res->fields[i].name) == len && memcmp(res->fields[i].name, name, len) == 0)
            return i;
    }
    return -1;
}

size_t api_utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80; /* bytes that start a character */
    return n;
}

static const char *type_name(enum api_type t)
{
    static const char *const names[] = {"a string", "an integer", "a number", "a boolean",
                                        "an object", "an array", "an array of strings",
                                        "a timestamp", "a string"};

    return names[t];
}

/* A string value (or query text) against the field's length and allowed values. */
static bool check_string(struct api_req *r, const struct api_field *f, const char *s)
{
    if (f->max_chars > 0 && api_utf8_chars(s) > (size_t)f->max_chars)
        return api_fail(r, 422, "too_long", f->name, "%s is longer than %d characters", f->name,
                        f->max_chars);
    if (f->values == NULL)
        return true;
    for (size_t i = 0; f->values[i] != NULL; i++) {
        if (strcmp(f->values[i], s) == 0)
            return true;
    }
    return api_fail(r, 422, "invalid_value", f->name, "%s must be one of the allowed values",
                    f->name);
}

static bool check_int(struct api_req *r, const struct api_field *f, long long v)
{
    long long lo = f->min < f->max ? f->min : INT_MIN, hi = f->min < f->max ? f->max : INT_MAX;

    if (v < lo || v > hi)
        return api_fail(r, 422, "out_of_range", f->name, "%s must be in %lld..%lld", f->name, lo,
                        hi);
    return true;
}

static bool type_ok(struct api_req *r, const struct api_field *f, yajl_val v)
{
    switch (f->type) {
    case API_T_STRING:
    case API_T_PASSWORD:
        return YAJL_IS_STRING(v) && check_string(r, f, YAJL_GET_STRING(v));
    case API_T_INT:
        return YAJL_IS_INTEGER(v) && check_int(r, f, YAJL_GET_INTEGER(v));
    case API_T_NUMBER:
        return YAJL_IS_NUMBER(v);
    case API_T_BOOL:
        return YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v);
    case API_T_OBJECT:
        return YAJL_IS_OBJECT(v);
    case API_T_ARRAY:
        return YAJL_IS_ARRAY(v);
    case API_T_STRINGS:
        if (!YAJL_IS_ARRAY(v))
            return false;
        for (size_t i = 0; i < v->u.array.len; i++) {
            if (!YAJL_IS_STRING(v->u.array.values[i]) ||
                !check_string(r, f, YAJL_GET_STRING(v->u.array.values[i])))
                return false;
        }
        return true;
    case API_T_TIME:
        return false;
    }
    return false;
}

static bool check_value(struct api_req *r, const struct api_field *f, yajl_val v)
{
    struct agg_err err = {0};

    if (YAJL_IS_NULL(v)) {
        if (f->flags & API_F_NULLABLE)
            return true;
        return api_fail(r, 422, "null_not_allowed", f->name, "%s must not be null", f->name);
    }
    if (!type_ok(r, f, v)) {
        if (r->ecode[0] != '\0')
            return false; /* a precise reason is already set */
        return api_fail(r, 422, "invalid_type", f->name, "%s must be %s", f->name,
                        type_name(f->type));
    }
    if (f->check != NULL && f->check(v, &err) != AGG_OK)
        return api_fail(r, 422, "invalid_value", f->name, "%s", err.msg);
    return true;
}

bool api_res_validate(struct api_req *r, const struct api_resource *res, bool create)
{
    yajl_val b = r->body;
    unsigned need = create ? API_F_CREATE : API_F_UPDATE;

    r->present = 0;
    for (size_t i = 0; i < b->u.object.len; i++) {
        const char *k = b->u.object.keys[i];
        int fi = api_res_field(res, k, strlen(k));

        if (fi < 0)
            return api_fail(r, 400, "unknown_field", k, "unknown field \"%.64s\"", k);
        if (!(res->fields[fi].flags & need))
            return api_fail(r, 400, "read_only", k, "%s cannot be %s", k,
                            create ? "set on create" : "changed");
        if (!check_value(r, &res->fields[fi], b->u.object.values[i]))
            return false;
        r->present |= UINT64_C(1) << fi;
    }
    for (int i = 0; create && res->fields[i].name != NULL; i++) {
        if ((res->fields[i].flags & API_F_REQUIRED) && !(r->present & (UINT64_C(1) << i)))
            return api_fail(r, 422, "missing", res->fields[i].name, "%s is required",
                            res->fields[i].name);
    }
    return true;
}

/* ---- SQL text from the tables (identifiers are ours, values are parameters) ---- */

int api_res_json_expr(struct agg_buf *sql, const struct api_resource *res)
{
    bool first = true;
    int rc = agg_buf_printf(sql, "json_build_object(");

    for (int i = 0; rc == AGG_OK && res->fields[i].name != NULL; i++) {
        const struct api_field *f = &res->fields[i];

        if (f->flags & API_F_HIDDEN)
            continue;
        if (f->type == API_T_TIME)
            rc = agg_buf_printf(sql, "%s'%s', to_char(%s, " API_ISO_FMT ")", first ? "" : ", ",
                                f->name, f->name);
        else
            rc = agg_buf_printf(sql, "%s'%s', %s", first ? "" : ", ", f->name, f->name);
        first = false;
    }
    if (rc == AGG_OK && res->extra_out != NULL)
        rc = agg_buf_printf(sql, ", %s", res->extra_out);
    return rc == AGG_OK ? agg_buf_printf(sql, ")::text") : rc;
}

int api_res_snapshot_expr(struct agg_buf *sql, const struct api_resource *res)
{
    bool first = true;
    int rc = agg_buf_printf(sql, "jsonb_build_object(");

    for (int i = 0; rc == AGG_OK && res->fields[i].name != NULL; i++) {
        if (!(res->fields[i].flags & API_F_UPDATE))
            continue;
        rc = agg_buf_printf(sql, "%s'%s', %s", first ? "" : ", ", res->fields[i].name,
                            res->fields[i].name);
        first = false;
    }
    return rc == AGG_OK ? agg_buf_printf(sql, ")") : rc;
}

int api_res_columns(struct agg_buf *sql, const struct api_resource *res, uint64_t present,
                    bool all)
{
    int n = 0;

    for (int i = 0; res->fields[i].name != NULL; i++) {
        const struct api_field *f = &res->fields[i];

        if (f->type == API_T_PASSWORD || !(f->flags & API_F_WRITE))
            continue;
        if (!all && !(present & (UINT64_C(1) << i)))
            continue;
        if (agg_buf_printf(sql, "%s%s", n > 0 ? ", " : "", f->name) != AGG_OK)
            return -1;
        n++;
    }
    return n;
}

/* The password field of <res> present in r->body, or NULL. */
static const struct api_field *password_field(struct api_req *r, const struct api_resource *res,
                                              const char **value)
{
    for (int i = 0; res->fields[i].name != NULL; i++) {
        const char *path[] = {res->fields[i].name, NULL};
        yajl_val v;

        if (r->body == NULL || res->fields[i].type != API_T_PASSWORD ||
            !(r->present & (UINT64_C(1) << i)))
            continue;
        v = yajl_tree_get(r->body, path, yajl_t_string);
        if (v == NULL)
            continue;
        *value = YAJL_GET_STRING(v);
        return &res->fields[i];
    }
    return NULL;
}

/* Hashes the body's password (if any) into <hash>; false with the reply set. */
static bool hash_password(struct api_req *r, const struct api_resource *res,
                          char hash[API_AUTH_PWHASH_SIZE], const struct api_field **field)
{
    const char *pw = NULL;
    struct agg_err err = {0};
    int rc;

    hash[0] = '\0';
    *field = password_field(r, res, &pw);
    if (*field == NULL)
        return true;
    rc = api_auth_hash_password(pw, hash, &err);
    if (rc == AGG_EINVAL)
        return api_fail(r, 422, "invalid_value", (*field)->name, "%s", err.msg);
    if (rc != AGG_OK)
        return api_fail(r, 503, "unavailable", NULL, "cannot hash the password now; retry");
    return true;
}

static char *itoa_buf(int v, char buf[16])
{
    snprintf(buf, 16, "%d", v);
    return buf;
}

static int where_key(struct api_req *r, const struct api_resource *res)
{
    char a[16], b[16];
    int rc;

    if (res->parent != NULL) {
        rc = agg_buf_printf(&r->sql, " WHERE %s = ", key_col(res));
        if (rc == AGG_OK)
            rc = api_param(r, itoa_buf(r->ids[1], a));
        if (rc == AGG_OK)
            rc = agg_buf_printf(&r->sql, " AND %s = ", res->parent);
        return rc == AGG_OK ? api_param(r, itoa_buf(r->ids[0], b)) : rc;
    }
    rc = agg_buf_printf(&r->sql, " WHERE %s = ", key_col(res));
    return rc == AGG_OK ? api_param(r, itoa_buf(r->ids[0], a)) : rc;
}

static bool nomem(struct api_req *r)
{
    return api_fail(r, 503, "unavailable", NULL, "out of memory");
}

/* 404 unless the parent row of a nested resource exists. */
static bool parent_exists(struct api_req *r, PGconn *conn, const struct api_resource *res)
{
    char id[16], sql[160];
    const char *p[1] = {itoa_buf(r->ids[0], id)};
    PGresult *q;
    bool ok;

    if (res->parent_table == NULL)
        return true;
    snprintf(sql, sizeof(sql), "SELECT 1 FROM %s WHERE id = $1", res->parent_table);
    q = api_exec(r, conn, sql, 1, p, PGRES_TUPLES_OK);
    if (q == NULL)
        return false;
    ok = PQntuples(q) == 1;
    PQclear(q);
    return ok || api_fail(r, 404, "not_found", NULL, "no such %s", res->parent_table);
}

int api_res_scope_user(struct api_req *r, const char *before, const char *after)
{
    char uid[16];
    int rc;

    if (api_req_is_admin(r))
        return AGG_OK;
    rc = agg_buf_printf(&r->sql, " AND (%s", before);
    if (rc == AGG_OK)
        rc = api_param(r, itoa_buf(r->who.user_id, uid));
    return rc == AGG_OK ? agg_buf_printf(&r->sql, "%s)", after) : rc;
}

void api_res_missing(struct api_req *r, PGconn *conn, const struct api_resource *res)
{
    PGresult *q;
    int rc;

    if (res->scope == NULL) {
        api_fail(r, 404, "not_found", NULL, "no such %s", res->what);
        return;
    }
    api_sql_reset(r);
    rc = agg_buf_printf(&r->sql, "SELECT 1 FROM %s", res->table);
    if (rc == AGG_OK)
        rc = where_key(r, res);
    if (rc == AGG_OK)
        rc = res->scope(r, false);
    q = api_query_built(r, conn, rc, PGRES_TUPLES_OK);
    if (q == NULL)
        return;
    if (PQntuples(q) == 0)
        api_fail(r, 404, "not_found", NULL, "no such %s", res->what);
    else
        api_fail(r, 403, "forbidden", NULL, "you may not change this %s", res->what);
    PQclear(q);
}

/* ---- list ---- */

bool api_res_prepare_list(struct api_req *r)
{
    const struct api_resource *res = r->route->res;
    int filters = 0;

    for (struct evkeyval *kv = r->query.tqh_first; kv != NULL; kv = kv->next.tqe_next) {
        int fi = api_res_field(res, kv->key, strlen(kv->key));
        const struct api_field *f = fi >= 0 ? &res->fields[fi] : NULL;
        long long v;

        if (strcmp(kv->key, "limit") == 0 || strcmp(kv->key, "cursor") == 0)
            continue;
        if (f == NULL || !(f->flags & API_F_FILTER))
            return api_fail(r, 400, "unknown_parameter", kv->key,
                            "unknown query parameter \"%.64s\"", kv->key);
        if (f->type == API_T_BOOL && strcmp(kv->value, "true") != 0 &&
            strcmp(kv->value, "false") != 0)
            return api_fail(r, 400, "invalid_parameter", f->name, "%s must be true or false",
                            f->name);
        if (f->type == API_T_INT && !api_query_int(r, f->name, INT_MIN, INT_MAX, &v))
            return false;
        if ((f->type == API_T_STRING || f->type == API_T_STRINGS) &&
            !check_string(r, f, kv->value)) {
            r->status = 400;
            return false;
        }
        if (++filters > API_MAX_FILTERS)
            return api_fail(r, 400, "invalid_parameter", f->name,
                            "a list takes at most %d filters", API_MAX_FILTERS);
    }
    return api_page_parse(r);
}

static bool is_int_text(const char *s)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    return *s != '\0' && *end == '\0' && errno == 0 && v >= 0 && v <= INT_MAX;
}

void api_res_list_work(struct api_req *r, PGconn *conn)
{
    const struct api_resource *res = r->route->res;
    char a[16];
    int rc;

    if (res->parent != NULL && !parent_exists(r, conn, res))
        return;
    api_sql_reset(r);
    rc = agg_buf_printf(&r->sql, "SELECT ");
    if (rc == AGG_OK)
        rc = api_res_json_expr(&r->sql, res);
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, ", %s::text FROM %s WHERE true", key_col(res), res->table);
    if (rc == AGG_OK && res->parent != NULL) {
        rc = agg_buf_printf(&r->sql, " AND %s = ", res->parent);
        if (rc == AGG_OK)
            rc = api_param(r, itoa_buf(r->ids[0], a));
    }
    for (struct evkeyval *kv = r->query.tqh_first; rc == AGG_OK && kv != NULL;
         kv = kv->next.tqe_next) {
        int fi = api_res_field(res, kv->key, strlen(kv->key));

        if (fi < 0)
            continue; /* limit, cursor */
        /* an array column: rows holding the value (repeated: all of them) */
        if (res->fields[fi].type == API_T_STRINGS)
            rc = agg_buf_printf(&r->sql, " AND %s @> ARRAY[", res->fields[fi].name);
        else
            rc = agg_buf_printf(&r->sql, " AND %s = ", res->fields[fi].name);
        if (rc == AGG_OK)
            rc = api_param(r, kv->value);
        if (rc == AGG_OK && res->fields[fi].type == API_T_STRINGS)
            rc = agg_buf_printf(&r->sql, "]::varchar[]");
    }
    if (rc == AGG_OK && res->scope != NULL)
        rc = res->scope(r, false);
    if (rc == AGG_OK && r->page.has_cursor) {
        if (!is_int_text(r->page.cursor)) {
            api_fail(r, 400, "invalid_parameter", "cursor", "cursor is not one this API gave");
            return;
        }
        rc = agg_buf_printf(&r->sql, " AND %s > ", key_col(res));
        if (rc == AGG_OK)
            rc = api_param(r, r->page.cursor);
    }
    api_run_list(r, conn, rc, key_col(res));
}

/* ---- get ---- */

void api_res_get_work(struct api_req *r, PGconn *conn)
{
    const struct api_resource *res = r->route->res;
    int rc;

    api_sql_reset(r);
    rc = agg_buf_printf(&r->sql, "SELECT ");
    if (rc == AGG_OK)
        rc = api_res_json_expr(&r->sql, res);
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, " FROM %s", res->table);
    if (rc == AGG_OK)
        rc = where_key(r, res);
    if (rc == AGG_OK && res->scope != NULL)
        rc = res->scope(r, false);
    api_run_row(r, conn, rc, 200, res->what);
}

/* ---- create ---- */

bool api_res_prepare_create(struct api_req *r)
{
    return api_res_validate(r, r->route->res, true);
}

static const char *sep(const struct agg_buf *b)
{
    return b->len > 0 ? ", " : "";
}

/* Appends <col> to <cols> and its value <v>, as a parameter, to <vals>. */
static int add_value(struct api_req *r, struct agg_buf *cols, struct agg_buf *vals,
                     const char *col, const char *v)
{
    int rc = agg_buf_printf(cols, "%s%s", sep(cols), col);

    if (rc == AGG_OK)
        rc = agg_buf_printf(vals, "%s", sep(vals));
    return rc == AGG_OK ? api_param_to(r, vals, v) : rc;
}

/* INSERT INTO <table> (<cols>) SELECT <vals> FROM jsonb_populate_record(…, $1) RETURNING */
static int build_insert(struct api_req *r, const struct api_resource *res, const char *hash_col,
                        const char *hash, struct agg_buf *cols, struct agg_buf *vals)
{
    char a[16], b[16];
    struct agg_buf one;
    int rc;

    agg_buf_init(&one);
    rc = api_param_to(r, &one, r->body_text); /* $1 */
    agg_buf_clear(&one);
    if (rc != AGG_OK || api_res_columns(cols, res, r->present, false) < 0 ||
        api_res_columns(vals, res, r->present, false) < 0)
        return AGG_ENOMEM;
    if (hash_col != NULL && (rc = add_value(r, cols, vals, hash_col, hash)) != AGG_OK)
        return rc;
    if (res->owned && (rc = add_value(r, cols, vals,
                                      res->owner_col != NULL ? res->owner_col : "owner_id",
                                      itoa_buf(r->who.user_id, a))) != AGG_OK)
        return rc;
    if (res->parent != NULL &&
        (rc = add_value(r, cols, vals, res->parent, itoa_buf(r->ids[0], b))) != AGG_OK)
        return rc;
    if (res->insert_cols != NULL &&
        (agg_buf_printf(cols, "%s%s", sep(cols), res->insert_cols) != AGG_OK ||
         agg_buf_printf(vals, "%s%s", sep(vals), res->insert_vals) != AGG_OK))
        return AGG_ENOMEM;
    if (cols->len == 0)
        return agg_buf_printf(&r->sql, "INSERT INTO %s DEFAULT VALUES RETURNING ", res->table);
    return agg_buf_printf(&r->sql,
                          "INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_record(NULL::%s, "
                          "$1::jsonb) RETURNING ",
                          res->table, cols->data, vals->data, res->table);
}

/* INSERT of r->body_text into <res>, with <hash> in <pwf>'s column if <pwf>; replies. */
static void insert_row(struct api_req *r, PGconn *conn, const struct api_resource *res,
                       const struct api_field *pwf, const char *hash)
{
    struct agg_buf cols, vals;
    int rc;

    agg_buf_init(&cols);
    agg_buf_init(&vals);
    api_sql_reset(r);
    rc = build_insert(r, res, pwf != NULL ? pwf->column : NULL, hash, &cols, &vals);
    if (rc == AGG_OK)
        rc = api_res_json_expr(&r->sql, res);
    api_run_row(r, conn, rc, 201, res->what);
    agg_buf_clear(&cols);
    agg_buf_clear(&vals);
}

void api_res_insert(struct api_req *r, PGconn *conn, const struct api_resource *res)
{
    insert_row(r, conn, res, NULL, NULL);
}

void api_res_create_work(struct api_req *r, PGconn *conn)
{
    const struct api_resource *res = r->route->res;
    const struct api_field *pwf = NULL;
    char hash[API_AUTH_PWHASH_SIZE];

    if (!hash_password(r, res, hash, &pwf))
        return;
    if (res->parent != NULL && !parent_exists(r, conn, res))
        return;
    if (res->before_create != NULL && !api_begin(r, conn))
        return;
    if (res->before_create != NULL && !res->before_create(r, conn)) {
        api_rollback(conn);
        return;
    }
    insert_row(r, conn, res, pwf, hash);
    if (res->before_create != NULL && (r->status != 201 || !api_commit(r, conn)))
        api_rollback(conn);
    sodium_memzero(hash, sizeof(hash));
}

/* ---- update ---- */

bool api_res_prepare_update(struct api_req *r)
{
    const char *pw = NULL;

    if (!api_res_validate(r, r->route->res, false))
        return false;
    r->slow = password_field(r, r->route->res, &pw) != NULL;
    return true;
}

PGresult *api_res_update_row(struct api_req *r, PGconn *conn, const struct api_resource *res,
                             const char *key_value, const char *body_json, uint64_t present)
{
    const struct api_field *pwf = NULL;
    char hash[API_AUTH_PWHASH_SIZE];
    struct agg_buf cols;
    PGresult *q = NULL;
    int n, rc;

    if (!hash_password(r, res, hash, &pwf))
        return NULL;
    agg_buf_init(&cols);
    api_sql_reset(r);
    n = api_res_columns(&cols, res, present, false);
    if (n < 0)
        goto out_nomem;
    if (n == 0 && pwf == NULL) {
        rc = agg_buf_printf(&r->sql, "SELECT ");
        if (rc == AGG_OK)
            rc = api_res_json_expr(&r->sql, res);
        if (rc == AGG_OK)
            rc = agg_buf_printf(&r->sql, " FROM %s WHERE %s = ", res->table, key_col(res));
    } else {
        rc = agg_buf_printf(&r->sql, "UPDATE %s SET ", res->table);
        if (rc == AGG_OK && n > 0)
            rc = agg_buf_printf(&r->sql, "(%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, ",
                                cols.data, cols.data, res->table);
        if (rc == AGG_OK && n > 0)
            rc = api_param(r, body_json);
        if (rc == AGG_OK && n > 0)
            rc = agg_buf_printf(&r->sql, "::jsonb))%s", pwf != NULL ? ", " : "");
        if (rc == AGG_OK && pwf != NULL)
            rc = agg_buf_printf(&r->sql, "%s = ", pwf->column);
        if (rc == AGG_OK && pwf != NULL)
            rc = api_param(r, hash);
        if (rc == AGG_OK)
            rc = agg_buf_printf(&r->sql, " WHERE %s = ", key_col(res));
    }
    if (rc == AGG_OK)
        rc = api_param(r, key_value);
    if (rc == AGG_OK && res->parent != NULL) {
        char a[16];

        rc = agg_buf_printf(&r->sql, " AND %s = ", res->parent);
        if (rc == AGG_OK)
            rc = api_param(r, itoa_buf(r->ids[0], a));
    }
    if (rc == AGG_OK && res->scope != NULL)
        rc = res->scope(r, true);
    if (rc == AGG_OK && (n > 0 || pwf != NULL)) {
        rc = agg_buf_printf(&r->sql, " RETURNING ");
        if (rc == AGG_OK)
            rc = api_res_json_expr(&r->sql, res);
    }
    if (rc != AGG_OK)
        goto out_nomem;
    q = api_query(r, conn, r->sql.data, PGRES_TUPLES_OK);
    goto out;

out_nomem:
    nomem(r);
out:
    sodium_memzero(hash, sizeof(hash));
    agg_buf_clear(&cols);
    return q;
}

void api_res_update_work(struct api_req *r, PGconn *conn)
{
    const struct api_resource *res = r->route->res;
    char key[16];
    PGresult *q;

    itoa_buf(r->ids[res->parent != NULL ? 1 : 0], key);
    if (res->before_update != NULL) {
        if (!api_begin(r, conn))
            return;
        if (!res->before_update(r, conn)) {
            api_rollback(conn);
            return;
        }
    }
    q = api_res_update_row(r, conn, res, key, r->body_text, r->present);
    if (q != NULL && PQntuples(q) == 1 && res->before_update != NULL && !api_commit(r, conn)) {
        PQclear(q);
        return;
    }
    api_rollback(conn);
    if (q != NULL && PQntuples(q) == 0)
        api_res_missing(r, conn, res);
    else if (q != NULL)
        api_reply_row(r, q, 200, res->what);
    PQclear(q);
}

/* ---- delete ---- */

void api_res_delete_work(struct api_req *r, PGconn *conn)
{
    const struct api_resource *res = r->route->res;
    PGresult *q;
    int rc;

    api_sql_reset(r);
    if (res->soft_delete)
        rc = agg_buf_printf(&r->sql, "UPDATE %s SET is_active = false", res->table);
    else
        rc = agg_buf_printf(&r->sql, "DELETE FROM %s", res->table);
    if (rc == AGG_OK)
        rc = where_key(r, res);
    if (rc == AGG_OK && res->scope != NULL)
        rc = res->scope(r, true);
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, " RETURNING 1");
    q = api_query_built(r, conn, rc, PGRES_TUPLES_OK);
    if (q == NULL)
        return;
    if (PQntuples(q) == 0)
        api_res_missing(r, conn, res);
    else
        r->status = 204;
    PQclear(q);
}
