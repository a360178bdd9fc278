/*
 * api/filejobs.c — file processing jobs: creation with its options, lists, reads.
 *
 * Place: see api/filejobs.h.
 * Threads: prepare on the loop thread; work on job threads.
 */
#include "api/filejobs.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define TS(name)                                                                                   \
    {                                                                                              \
        name, API_T_TIME, 0, 0, NULL, 0, 0, NULL, NULL                                             \
    }
#define RO_INT(name)                                                                               \
    {                                                                                              \
        name, API_T_INT, 0, 0, NULL, 0, 0, NULL, NULL                                              \
    }

static const char *const job_types[] = {"validation", "conversion", "extraction", NULL};
static const char *const job_statuses[] = {"pending", "running", "completed", "failed", NULL};
static const char *const formats[] = {"csv", "json", "ndjson", "syslog", NULL};
static const char *const targets[] = {"ndjson", "csv", NULL};

/* clang-format off */
static const struct api_field job_fields[] = {
    RO_INT("id"),
    RO_INT("file_id"),
    {"job_type", API_T_STRING, API_F_CREATE | API_F_REQUIRED | API_F_FILTER, 100, job_types, 0,
     0, NULL, NULL},
    {"status", API_T_STRING, API_F_FILTER, 50, job_statuses, 0, 0, NULL, NULL},
    RO_INT("progress"),
    {"result_data", API_T_OBJECT, 0, 0, NULL, 0, 0, NULL, NULL},
    {"error_message", API_T_STRING, 0, 0, NULL, 0, 0, NULL, NULL},
    RO_INT("output_file_id"),
    {"options", API_T_OBJECT, API_F_CREATE | API_F_HIDDEN, 0, NULL, 0, 0, NULL, NULL},
    TS("created_at"),
    TS("completed_at"),
    {NULL, 0, 0, 0, NULL, 0, 0, NULL, NULL},
};
/* clang-format on */

/* Rows of files the caller may see: their owner's and, for admins, all. */
static int file_scope_of(struct api_req *r, const char *file_col)
{
    char uid[16];
    int rc;

    if (api_role_rank(r->who.role) == API_ROLE_ADMIN)
        return AGG_OK;
    snprintf(uid, sizeof(uid), "%d", r->who.user_id);
    rc = agg_buf_printf(&r->sql,
                        " AND %s IN (SELECT id FROM file_uploads WHERE owner_id = ", file_col);
    if (rc == AGG_OK)
        rc = api_param(r, uid);
    return rc == AGG_OK ? agg_buf_printf(&r->sql, ")") : rc;
}

static int job_scope(struct api_req *r, bool write)
{
    (void)write;
    return file_scope_of(r, "file_id");
}

const struct api_resource api_res_file_jobs = {
    .what = "file processing job",
    .table = "file_processing_jobs",
    .fields = job_fields,
    .parent = "file_id",
    .parent_table = "file_uploads",
    .scope = job_scope,
};

const struct api_resource api_res_jobs = {
    .what = "file processing job",
    .table = "file_processing_jobs",
    .fields = job_fields,
    .scope = job_scope,
};

/* The file r->ids[0] as the caller may see it: (status, file_type, mime_type,
 * filename), or NULL with 404 (or the database's failure) set. */
static PGresult *visible_file(struct api_req *r, PGconn *conn)
{
    char id[16];
    PGresult *q;
    int rc;

    api_sql_reset(r);
    snprintf(id, sizeof(id), "%d", r->ids[0]);
    rc = agg_buf_printf(&r->sql, "SELECT status, file_type, coalesce(mime_type, ''), filename"
                                 " FROM file_uploads WHERE id = ");
    if (rc == AGG_OK)
        rc = api_param(r, id);
    if (rc == AGG_OK)
        rc = file_scope_of(r, "id");
    q = api_query_built(r, conn, rc, PGRES_TUPLES_OK);
    if (q != NULL && PQntuples(q) == 0) {
        PQclear(q);
        api_fail(r, 404, "not_found", NULL, "no such file");
        return NULL;
    }
    return q;
}

void api_filejobs_list_work(struct api_req *r, PGconn *conn)
{
    PGresult *q = visible_file(r, conn);

    if (q == NULL)
        return;
    PQclear(q);
    api_res_list_work(r, conn);
}

/* ---- create ---- */

static bool one_of(const char *const *values, const char *s)
{
    for (size_t i = 0; values[i] != NULL; i++) {
        if (strcmp(values[i], s) == 0)
            return true;
    }
    return false;
}

/* options: {"format": …, "target": …}, both optional strings from their lists. */
bool api_filejobs_prepare_create(struct api_req *r)
{
    const char *path[] = {"options", NULL};
    yajl_val o;

    if (!api_res_validate(r, &api_res_file_jobs, true))
        return false;
    o = yajl_tree_get(r->body, path, yajl_t_object);
    for (size_t i = 0; o != NULL && i < o->u.object.len; i++) {
        const char *k = o->u.object.keys[i];
        yajl_val v = o->u.object.values[i];
        bool is_format = strcmp(k, "format") == 0, is_target = strcmp(k, "target") == 0;
        char field[80];

        snprintf(field, sizeof(field), "options.%.60s", k);
        if (!is_format && !is_target)
            return api_fail(r, 400, "unknown_field", field, "unknown field \"%s\"", field);
        if (!YAJL_IS_STRING(v))
            return api_fail(r, 422, "invalid_type", field, "%s must be a string", field);
        if (!one_of(is_format ? formats : targets, YAJL_GET_STRING(v)))
            return api_fail(r, 422, "invalid_value", field, "%s must be one of %s", field,
                            is_format ? "csv, json, ndjson, syslog" : "ndjson, csv");
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* The format a file's type, media type or name says, or NULL. */
static const char *format_of(const char *file_type, const char *mime, const char *name)
{
    static const struct {
        const char *format, *type, *mime, *ext, *ext2;
    } known[] = {
        {"ndjson", "ndjson", "application/x-ndjson", ".ndjson", ".jsonl"},
        {"csv", "csv", "text/csv", ".csv", NULL},
        {"json", "json", "application/json", ".json", NULL},
        {"syslog", "syslog", "text/x-syslog", ".log", ".syslog"},
    };

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcasecmp(file_type, known[i].type) == 0 || strcasecmp(mime, known[i].mime) == 0)
            return known[i].format;
    }
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (ends_with(name, known[i].ext) ||
            (known[i].ext2 != NULL && ends_with(name, known[i].ext2)))
            return known[i].format;
    }
    return NULL;
}

static const char *option(struct api_req *r, const char *name)
{
    const char *path[] = {"options", name, NULL};
    yajl_val v = yajl_tree_get(r->body, path, yajl_t_string);

    return v != NULL ? YAJL_GET_STRING(v) : NULL;
}

/* Resolves the job's format (and target) into <json>: {"options":{…}}; false with the
 * reply set when the file cannot have them. */
static bool resolve_options(struct api_req *r, const PGresult *file, const char *type, char *json,
                            size_t size)
{
    const char *format = option(r, "format"), *target = option(r, "target");
    bool convert = strcmp(type, "conversion") == 0;

    if (format == NULL)
        format = format_of(PQgetvalue(file, 0, 1), PQgetvalue(file, 0, 2), PQgetvalue(file, 0, 3));
    if (format == NULL)
        return api_fail(r, 422, "invalid_value", "options.format",
                        "the file's format is not one aggd knows from its type, media type or "
                        "name; give options.format (csv, json, ndjson, syslog)");
    if (!convert && target != NULL)
        return api_fail(r, 422, "invalid_value", "options.target",
                        "options.target applies to conversion jobs only");
    if (convert && target == NULL)
        target = strcmp(format, "ndjson") == 0 ? "csv" : "ndjson";
    if (convert &&
        !(strcmp(target, "ndjson") == 0 ? strcmp(format, "csv") == 0 || strcmp(format, "json") == 0
                                        : strcmp(format, "ndjson") == 0))
        return api_fail(r, 422, "invalid_value", "options.target",
                        "cannot convert %s to %s (csv and json convert to ndjson, ndjson to "
                        "csv)",
                        format, target);
    if (convert)
        snprintf(json, size, "{\"options\":{\"format\":\"%s\",\"target\":\"%s\"}}", format, target);
    else
        snprintf(json, size, "{\"options\":{\"format\":\"%s\"}}", format);
    return true;
}

void api_filejobs_create_work(struct api_req *r, PGconn *conn)
{
    const char *path[] = {"job_type", NULL};
    yajl_val t = yajl_tree_get(r->body, path, yajl_t_string);
    const char *type = t != NULL ? YAJL_GET_STRING(t) : "";
    PGresult *file = visible_file(r, conn);
    char id[16], options[128];
    bool ok;
    int rc;

    if (file == NULL)
        return;
    if (strcmp(PQgetvalue(file, 0, 0), "uploading") == 0) {
        PQclear(file);
        api_fail(r, 409, "conflict", "file_id", "the file is still uploading");
        return;
    }
    ok = resolve_options(r, file, type, options, sizeof(options));
    PQclear(file);
    if (!ok)
        return;
    api_sql_reset(r);
    snprintf(id, sizeof(id), "%d", r->ids[0]);
    rc = agg_buf_printf(&r->sql, "INSERT INTO file_processing_jobs (file_id, job_type, status,"
                                 " progress, result_data) VALUES (");
    if (rc == AGG_OK)
        rc = api_param(r, id);
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, ", ");
    if (rc == AGG_OK)
        rc = api_param(r, type);
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, ", 'pending', 0, ");
    if (rc == AGG_OK)
        rc = api_param(r, options);
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, "::jsonb) RETURNING ");
    if (rc == AGG_OK)
        rc = api_res_json_expr(&r->sql, &api_res_file_jobs);
    api_run_row(r, conn, rc, 201, "file processing job");
}
