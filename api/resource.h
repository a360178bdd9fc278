/*
 * api/resource.h — table-driven resources: one field table per resource drives body
 * validation, the INSERT/UPDATE column lists, list filters and the JSON of a row.
 *
 * Place: routes (api/routes.c) -> [resource: validate on the loop, SQL on a job] -> PG.
 * Threads: api_res_prepare_* on the loop thread; api_res_*_work on job threads.
 * Ownership: tables are static and borrowed; nothing here allocates beyond the request.
 * Traps: bodies reach PostgreSQL as one jsonb parameter unpacked by
 *        jsonb_populate_record(NULL::<table>, $1), so a column gets the body's value
 *        converted by PostgreSQL's own rules; validation here makes those conversions
 *        safe. Column and table names come only from these static tables.
 */
#ifndef AGGD_API_RESOURCE_H
#define AGGD_API_RESOURCE_H

#include <stdbool.h>

#include <yajl/yajl_tree.h>

#include "api/req.h"

enum api_type {
    API_T_STRING = 0, /* varchar(max_chars) or text */
    API_T_INT,        /* integer within [min, max] */
    API_T_NUMBER,     /* double precision */
    API_T_BOOL,
    API_T_OBJECT, /* jsonb holding an object */
    API_T_ARRAY,  /* jsonb holding an array */
    API_T_STRINGS, /* varchar[]: an array of strings of max_chars */
    API_T_TIME,    /* timestamp, output only */
    API_T_PASSWORD, /* write-only; stored as an Argon2id hash in <column> */
};

/* Field flags */
#define API_F_CREATE 1u   /* may be given on create */
#define API_F_UPDATE 2u   /* may be given on update */
#define API_F_WRITE (API_F_CREATE | API_F_UPDATE)
#define API_F_REQUIRED 4u /* must be given on create */
#define API_F_NULLABLE 8u /* JSON null allowed */
#define API_F_HIDDEN 16u  /* never in replies */
#define API_F_FILTER 32u  /* ?<name>= filters lists (arrays: rows holding all given) */

struct api_field {
    const char *name; /* JSON key and column */
    enum api_type type;
    unsigned flags;
    int max_chars;             /* strings: 0 = no limit */
    const char *const *values; /* strings: allowed values, NULL-terminated; NULL = any */
    long long min, max;        /* integers, when min < max */
    /* Extra check of a present, non-null value: AGG_OK or an error in <err>. */
    int (*check)(yajl_val v, struct agg_err *err);
    const char *column; /* where it is stored when not <name> (passwords) */
};

/* Field-table shorthands */
#define API_FIELD_RO(name, type) {name, type, 0, 0, NULL, 0, 0, NULL, NULL}
#define API_FIELD_TIME(name) API_FIELD_RO(name, API_T_TIME)
#define API_FIELD_ACTIVE                                                                      \
    {"is_active", API_T_BOOL, API_F_WRITE | API_F_FILTER, 0, NULL, 0, 0, NULL, NULL}
#define API_FIELDS_END {NULL, 0, 0, 0, NULL, 0, 0, NULL, NULL}
/* what an owned table ends with, and the table's end */
#define API_FIELDS_OWNED_TAIL                                                                 \
    API_FIELD_RO("owner_id", API_T_INT), API_FIELD_TIME("created_at"),                        \
        API_FIELD_TIME("updated_at"), API_FIELDS_END

/* How a timestamp column is answered: UTC with microseconds and a Z. */
#define API_ISO_FMT "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"

struct api_req;

struct api_resource {
    const char *what;  /* "pipeline": for messages */
    const char *table;
    const struct api_field *fields; /* ended by a NULL name */
    const char *key;                /* the {id} column; NULL = "id" */
    const char *parent;             /* column the first {id} fills (runs: pipeline_id) */
    const char *parent_table;       /* ... and the table it must exist in */
    const char *extra_out;   /* more json_build_object pairs, e.g. "'has_secret', …" */
    const char *insert_cols; /* columns always set on create, e.g. "status" */
    const char *insert_vals; /* ... and their SQL values, e.g. "'pending'" */
    bool soft_delete;        /* DELETE sets is_active = false */
    bool owned;              /* owner_id := the caller on create */
    const char *owner_col;   /* ... or this column when not owner_id (layouts: user_id) */
    /* Job thread, in the create's / update's transaction before the INSERT / UPDATE
     * (which use r->body_text, so a hook may replace it): false = reply set. */
    bool (*before_create)(struct api_req *r, PGconn *conn);
    bool (*before_update)(struct api_req *r, PGconn *conn);
    /* Job thread: appends " AND (…)" to r->sql limiting the rows the caller may read
     * (<write> false) or change (<write> true), values through api_param. A row it
     * hides is 404; one it may read but not change is 403. NULL: every row. */
    int (*scope)(struct api_req *r, bool write);
};

/* Characters of the UTF-8 text <s> (PostgreSQL counts VARCHAR(n) in characters). */
size_t api_utf8_chars(const char *s);

/* Index of the field named <name>[<len>] in <res>, or -1. */
int api_res_field(const struct api_resource *res, const char *name, size_t len);

/* Validates r->body for create (<create> true) or update of <res>: unknown fields and
 * read-only ones 400, wrong types, lengths, enums, ranges, missing required 422, each
 * naming the field. Sets r->present. Loop thread; pure. */
bool api_res_validate(struct api_req *r, const struct api_resource *res, bool create);

/* Appends "json_build_object(…)::text" for a row of <res> (alias-free columns). */
int api_res_json_expr(struct agg_buf *sql, const struct api_resource *res);

/* Appends "jsonb_build_object(…)" of the writable fields: a snapshot of the row. */
int api_res_snapshot_expr(struct agg_buf *sql, const struct api_resource *res);

/* Appends the comma-separated writable columns present in r->present (or every
 * writable column of <res> when <all>); returns how many. */
int api_res_columns(struct agg_buf *sql, const struct api_resource *res, uint64_t present,
                    bool all);

/* The generic handlers of a route whose ->res is set. */
bool api_res_prepare_list(struct api_req *r);
bool api_res_prepare_create(struct api_req *r);
bool api_res_prepare_update(struct api_req *r);
void api_res_list_work(struct api_req *r, PGconn *conn);
void api_res_get_work(struct api_req *r, PGconn *conn);
void api_res_create_work(struct api_req *r, PGconn *conn);
void api_res_update_work(struct api_req *r, PGconn *conn);
void api_res_delete_work(struct api_req *r, PGconn *conn);

/* Inserts r->body_text (validated for <res>, which has no password field: r->present)
 * as a new row of <res> and replies it with 201; inside the caller's transaction if
 * one is open. Job thread. */
void api_res_insert(struct api_req *r, PGconn *conn, const struct api_resource *res);

/* Runs the UPDATE of r->body on row <key_value> of <res> (columns present only),
 * returning the row's JSON. NULL with the reply set on failure. Job thread. */
PGresult *api_res_update_row(struct api_req *r, PGconn *conn, const struct api_resource *res,
                             const char *key_value, const char *body_json, uint64_t present);

/* For scope hooks: nothing for an admin (every row); else " AND (<before>$n<after>)"
 * with the caller's user id as $n. */
int api_res_scope_user(struct api_req *r, const char *before, const char *after);

/* After a change of row {id} of <res> touched nothing: 404 when the caller cannot
 * see the row, 403 when it can but may not change it. Job thread. */
void api_res_missing(struct api_req *r, PGconn *conn, const struct api_resource *res);

/* GET users/{id}/preferences: the row, made with the seed's defaults when missing. */
void api_prefs_get_work(struct api_req *r, PGconn *conn);

/* POST pipelines/{id}/versions/{n}/activate: the pipeline takes snapshot n, recorded as
 * a new, active version (the reply). */
void api_activate_work(struct api_req *r, PGconn *conn);

/* POST alerts/{id}/acknowledge|resolve|close: by the caller, now; 409 when the alert's
 * status does not allow it. Replies the alert. */
void api_alert_ack_work(struct api_req *r, PGconn *conn);
void api_alert_resolve_work(struct api_req *r, PGconn *conn);
void api_alert_close_work(struct api_req *r, PGconn *conn);

/* The resources (api/resources.c). */
extern const struct api_resource api_res_users, api_res_preferences, api_res_pipelines,
    api_res_versions, api_res_runs, api_res_transformations, api_res_policies,
    api_res_endpoints, api_res_rules, api_res_alerts;

#endif
