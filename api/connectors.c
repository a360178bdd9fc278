/*
 * api/connectors.c — connectors, whose config keeps its secrets sealed at rest.
 *
 * Place: see api/connectors.h.
 * Threads: prepare_* on the loop thread; seal_create/seal_update on job threads.
 * Traps: a secret leaf is an object key named like a secret (api_connector_is_secret_name)
 *        at any depth, inside arrays too. It is stored as {"$aggd_secret":"v1:…"} in its
 *        place, so keys beginning "$aggd" are refused in bodies. The body that reaches
 *        PostgreSQL is rebuilt here with the sealed values; the plaintext in the parsed
 *        body and the original text is wiped as soon as it is sealed.
 */
#include "api/connectors.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "api/resource.h"
#include "api/secret.h"
#include "core/json.h"

#define BOX_KEY      "$aggd_secret"
#define RESERVED     "$aggd"
#define MASK         "***"
#define STORED_DEPTH (API_MAX_DEPTH + 2) /* a body's depth plus the boxes */

static const char *const secret_suffixes[] = {
    "password",    "passwd",     "passphrase", "secret",        "token",       "api_key", "apikey",
    "private_key", "access_key", "secret_key", "client_secret", "credentials", NULL,
};

bool api_connector_is_secret_name(const char *key)
{
    char k[256];
    size_t n = strlen(key);

    if (n >= sizeof(k))
        key += n - (sizeof(k) - 1); /* the suffix decides */
    n = 0;
    for (; *key != '\0'; key++)
        k[n++] = *key == '-' ? '_' : (char)tolower((unsigned char)*key);
    k[n] = '\0';
    for (size_t i = 0; secret_suffixes[i] != NULL; i++) {
        size_t sl = strlen(secret_suffixes[i]);

        if (n >= sl && strcmp(k + n - sl, secret_suffixes[i]) == 0)
            return true;
    }
    return false;
}

/* ---- the path of a value inside config, for messages: config.auth[2].password ---- */

static size_t path_push_key(struct agg_buf *path, const char *key)
{
    size_t at = path->len;

    agg_buf_printf(path, ".%s", key); /* on ENOMEM the path is only shorter */
    return at;
}

static size_t path_push_index(struct agg_buf *path, size_t i)
{
    size_t at = path->len;

    agg_buf_printf(path, "[%zu]", i);
    return at;
}

static void path_pop(struct agg_buf *path, size_t at)
{
    if (path->data != NULL && at <= path->len) {
        path->len = at;
        path->data[at] = '\0';
    }
}

static const char *path_text(const struct agg_buf *path)
{
    return path->data != NULL ? path->data : "config";
}

/* ---- loop thread: what a body's config may hold ---- */

static bool check_value(struct api_req *r, yajl_val v, struct agg_buf *path)
{
    bool ok = true;

    if (YAJL_IS_OBJECT(v)) {
        for (size_t i = 0; ok && i < v->u.object.len; i++) {
            const char *k = v->u.object.keys[i];
            yajl_val c = v->u.object.values[i];
            size_t at = path_push_key(path, k);

            if (strncmp(k, RESERVED, strlen(RESERVED)) == 0)
                ok = api_fail(r, 422, "invalid_value", path_text(path),
                              "keys beginning \"%s\" are reserved", RESERVED);
            else if (api_connector_is_secret_name(k) && !YAJL_IS_STRING(c) && !YAJL_IS_NULL(c))
                ok = api_fail(r, 422, "invalid_type", path_text(path),
                              "%.160s names a secret: its value must be a string (or null to "
                              "remove it)",
                              path_text(path));
            else
                ok = check_value(r, c, path);
            path_pop(path, at);
        }
    } else if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; ok && i < v->u.array.len; i++) {
            size_t at = path_push_index(path, i);

            ok = check_value(r, v->u.array.values[i], path);
            path_pop(path, at);
        }
    }
    return ok;
}

static yajl_val body_config(struct api_req *r)
{
    const char *p[] = {"config", NULL};

    return r->body != NULL ? yajl_tree_get(r->body, p, yajl_t_object) : NULL;
}

static bool check_config(struct api_req *r)
{
    yajl_val config = body_config(r);
    struct agg_buf path;
    bool ok;

    if (config == NULL)
        return true;
    agg_buf_init(&path);
    agg_buf_printf(&path, "config");
    ok = check_value(r, config, &path);
    agg_buf_clear(&path);
    return ok;
}

bool api_connector_prepare_create(struct api_req *r)
{
    return api_res_prepare_create(r) && check_config(r);
}

bool api_connector_prepare_update(struct api_req *r)
{
    return api_res_prepare_update(r) && check_config(r);
}

/* ---- JSON text out of a parsed tree ---- */

static int emit_string(struct agg_buf *out, const char *s)
{
    int rc = agg_buf_putc(out, '"');

    for (; rc == AGG_OK && *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            rc = agg_buf_printf(out, "\\%c", c);
        else if (c < 0x20)
            rc = agg_buf_printf(out, "\\u%04x", c);
        else
            rc = agg_buf_putc(out, (char)c);
    }
    return rc == AGG_OK ? agg_buf_putc(out, '"') : rc;
}

static int emit(struct agg_buf *out, yajl_val v)
{
    int rc = AGG_OK;

    if (YAJL_IS_STRING(v))
        return emit_string(out, YAJL_GET_STRING(v));
    if (YAJL_IS_NUMBER(v))
        return agg_buf_printf(out, "%s", YAJL_GET_NUMBER(v));
    if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))
        return agg_buf_printf(out, "%s", YAJL_IS_TRUE(v) ? "true" : "false");
    if (YAJL_IS_OBJECT(v)) {
        rc = agg_buf_putc(out, '{');
        for (size_t i = 0; rc == AGG_OK && i < v->u.object.len; i++) {
            if (i > 0)
                rc = agg_buf_putc(out, ',');
            if (rc == AGG_OK)
                rc = emit_string(out, v->u.object.keys[i]);
            if (rc == AGG_OK)
                rc = agg_buf_putc(out, ':');
            if (rc == AGG_OK)
                rc = emit(out, v->u.object.values[i]);
        }
        return rc == AGG_OK ? agg_buf_putc(out, '}') : rc;
    }
    if (YAJL_IS_ARRAY(v)) {
        rc = agg_buf_putc(out, '[');
        for (size_t i = 0; rc == AGG_OK && i < v->u.array.len; i++) {
            if (i > 0)
                rc = agg_buf_putc(out, ',');
            if (rc == AGG_OK)
                rc = emit(out, v->u.array.values[i]);
        }
        return rc == AGG_OK ? agg_buf_putc(out, ']') : rc;
    }
    return agg_buf_printf(out, "null");
}

/* ---- job thread: seal the new secrets, keep the stored ones ---- */

struct merge {
    struct api_req *r;
    const struct api_secrets *key;
    struct agg_buf path; /* of the value being merged */
};

/* The sealed value of <v> when it is a stored secret {"$aggd_secret": "…"}, else NULL. */
static const char *stored_secret(yajl_val v)
{
    if (v == NULL || !YAJL_IS_OBJECT(v) || v->u.object.len != 1 ||
        strcmp(v->u.object.keys[0], BOX_KEY) != 0 || !YAJL_IS_STRING(v->u.object.values[0]))
        return NULL;
    return YAJL_GET_STRING(v->u.object.values[0]);
}

static yajl_val member(yajl_val obj, const char *key)
{
    const char *path[] = {key, NULL};

    return yajl_tree_get(obj, path, yajl_t_any);
}

static int emit_box(struct agg_buf *out, const char *sealed)
{
    int rc = agg_buf_printf(out, "{\"" BOX_KEY "\":");

    return rc == AGG_OK ? emit_string(out, sealed) : rc;
}

/* Emits the secret leaf <v> (a string; null was dropped) whose stored form, if any, is
 * <old>. Wipes the plaintext. AGG_EINVAL with the reply set for "***" without a
 * stored secret. */
static int merge_secret(struct merge *m, yajl_val v, yajl_val old, struct agg_buf *out)
{
    char *plain = YAJL_GET_STRING(v);
    const char *kept = stored_secret(old);
    struct agg_buf sealed;
    int rc;

    if (strcmp(plain, MASK) == 0) {
        if (kept == NULL) {
            api_fail(m->r, 422, "invalid_value", path_text(&m->path),
                     "%.160s is \"" MASK "\" but no secret is stored there", path_text(&m->path));
            return AGG_EINVAL;
        }
        rc = emit_box(out, kept);
        return rc == AGG_OK ? agg_buf_putc(out, '}') : rc;
    }
    agg_buf_init(&sealed);
    rc = api_secret_seal(m->key, plain, strlen(plain), &sealed);
    sodium_memzero(plain, strlen(plain));
    if (rc == AGG_OK)
        rc = emit_box(out, sealed.data);
    if (rc == AGG_OK)
        rc = agg_buf_putc(out, '}');
    agg_buf_clear(&sealed);
    return rc;
}

static int merge_value(struct merge *m, yajl_val v, yajl_val old, struct agg_buf *out);

static int merge_object(struct merge *m, yajl_val v, yajl_val old, struct agg_buf *out)
{
    int rc = agg_buf_putc(out, '{');
    bool first = true;

    for (size_t i = 0; rc == AGG_OK && i < v->u.object.len; i++) {
        const char *k = v->u.object.keys[i];
        yajl_val c = v->u.object.values[i];
        bool secret = api_connector_is_secret_name(k);
        size_t at;

        if (secret && YAJL_IS_NULL(c))
            continue; /* null removes the secret */
        if (!first)
            rc = agg_buf_putc(out, ',');
        first = false;
        if (rc == AGG_OK)
            rc = emit_string(out, k);
        if (rc == AGG_OK)
            rc = agg_buf_putc(out, ':');
        at = path_push_key(&m->path, k);
        if (rc == AGG_OK)
            rc = secret ? merge_secret(m, c, member(old, k), out)
                        : merge_value(m, c, member(old, k), out);
        path_pop(&m->path, at);
    }
    /* stored secrets the new object leaves out stay where they were */
    for (size_t i = 0; rc == AGG_OK && old != NULL && YAJL_IS_OBJECT(old) && i < old->u.object.len;
         i++) {
        const char *k = old->u.object.keys[i];
        const char *kept = stored_secret(old->u.object.values[i]);

        if (kept == NULL || !api_connector_is_secret_name(k) || member(v, k) != NULL)
            continue;
        rc = agg_buf_printf(out, "%s", first ? "" : ",");
        first = false;
        if (rc == AGG_OK)
            rc = emit_string(out, k);
        if (rc == AGG_OK)
            rc = agg_buf_putc(out, ':');
        if (rc == AGG_OK)
            rc = emit_box(out, kept);
        if (rc == AGG_OK)
            rc = agg_buf_putc(out, '}');
    }
    return rc == AGG_OK ? agg_buf_putc(out, '}') : rc;
}

static int merge_value(struct merge *m, yajl_val v, yajl_val old, struct agg_buf *out)
{
    int rc;

    if (YAJL_IS_OBJECT(v))
        return merge_object(m, v, old, out);
    if (!YAJL_IS_ARRAY(v))
        return emit(out, v);
    rc = agg_buf_putc(out, '[');
    for (size_t i = 0; rc == AGG_OK && i < v->u.array.len; i++) {
        yajl_val o = old != NULL && YAJL_IS_ARRAY(old) && i < old->u.array.len
                         ? old->u.array.values[i]
                         : NULL;
        size_t at = path_push_index(&m->path, i);

        if (i > 0)
            rc = agg_buf_putc(out, ',');
        if (rc == AGG_OK)
            rc = merge_value(m, v->u.array.values[i], o, out);
        path_pop(&m->path, at);
    }
    return rc == AGG_OK ? agg_buf_putc(out, ']') : rc;
}

/* Replaces r->body_text by the body with config's secrets sealed, those it leaves out
 * or gives as "***" taken from <old> (the stored config, or NULL). false = reply set. */
static bool seal_body(struct api_req *r, yajl_val old)
{
    struct merge m = {r, r->ctx, {0}};
    struct agg_buf out;
    int rc;

    if (m.key == NULL)
        return api_fail(r, 503, "unavailable", NULL, "no secrets key is loaded");
    agg_buf_init(&m.path);
    agg_buf_init(&out);
    agg_buf_printf(&m.path, "config");
    rc = agg_buf_putc(&out, '{');
    for (size_t i = 0; rc == AGG_OK && i < r->body->u.object.len; i++) {
        const char *k = r->body->u.object.keys[i];
        yajl_val v = r->body->u.object.values[i];

        if (i > 0)
            rc = agg_buf_putc(&out, ',');
        if (rc == AGG_OK)
            rc = emit_string(&out, k);
        if (rc == AGG_OK)
            rc = agg_buf_putc(&out, ':');
        if (rc == AGG_OK)
            rc = strcmp(k, "config") == 0 ? merge_value(&m, v, old, &out) : emit(&out, v);
    }
    if (rc == AGG_OK)
        rc = agg_buf_putc(&out, '}');
    agg_buf_clear(&m.path);
    if (rc != AGG_OK) {
        agg_buf_clear(&out);
        return rc == AGG_EINVAL ? false : api_fail(r, 503, "unavailable", NULL, "out of memory");
    }
    sodium_memzero(r->body_text, strlen(r->body_text));
    free(r->body_text);
    r->body_text = out.data; /* the buffer's text is the caller's after agg_buf_init */
    return true;
}

static bool seal_create(struct api_req *r, PGconn *conn)
{
    (void)conn;
    return seal_body(r, NULL);
}

static bool seal_update(struct api_req *r, PGconn *conn)
{
    char id[16], why[160];
    const char *p[1] = {id};
    yajl_val old = NULL;
    PGresult *q;
    bool ok;
    int rc;

    if (body_config(r) == NULL)
        return true;
    snprintf(id, sizeof(id), "%d", r->ids[0]);
    q = api_exec(r, conn, "SELECT config::text FROM connectors WHERE id = $1 FOR UPDATE", 1, p,
                 PGRES_TUPLES_OK);
    if (q == NULL)
        return false;
    if (PQntuples(q) == 0) {
        PQclear(q);
        return api_fail(r, 404, "not_found", NULL, "no such connector");
    }
    rc = agg_json_parse(PQgetvalue(q, 0, 0), (size_t)PQgetlength(q, 0, 0), STORED_DEPTH, &old, why,
                        sizeof(why));
    PQclear(q);
    if (rc == AGG_ENOMEM)
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    /* a stored config aggd cannot read keeps no secret: the new one replaces it */
    ok = seal_body(r, rc == AGG_OK ? old : NULL);
    if (old != NULL)
        yajl_tree_free(old);
    return ok;
}

/* clang-format off */
static const struct api_field connector_fields[] = {
    API_FIELD_RO("id", API_T_INT),
    {"name", API_T_STRING, API_F_WRITE | API_F_REQUIRED, 255, NULL, 0, 0, NULL, NULL},
    {"connector_type", API_T_STRING, API_F_WRITE | API_F_REQUIRED | API_F_FILTER, 100, NULL, 0,
     0, NULL, NULL},
    /* answered masked, through extra_out */
    {"config", API_T_OBJECT, API_F_WRITE | API_F_REQUIRED | API_F_HIDDEN, 0, NULL, 0, 0, NULL,
     NULL},
    API_FIELD_ACTIVE,
    API_FIELDS_OWNED_TAIL,
};
/* clang-format on */

const struct api_resource api_res_connectors = {
    .what = "connector",
    .table = "connectors",
    .fields = connector_fields,
    .extra_out = "'config', aggd_mask_secrets(config), "
                 "'has_secret', aggd_mask_secrets(config) IS DISTINCT FROM config",
    .soft_delete = true,
    .owned = true,
    .before_create = seal_create,
    .before_update = seal_update,
};
