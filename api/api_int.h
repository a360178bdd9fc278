/*
 * api/api_int.h — what the API's modules share: the request, the route, replies.
 *
 * Place: included by the api/ sources and their unit tests only.
 * Threads: a request is touched by the loop thread, then by one job thread while its
 *          job runs (never both at once), then by the loop thread again.
 * Ownership: a request owns its query, body, and reply buffer; api_finish() frees it.
 * Traps: the client may hang up while a job runs: <req> is then NULL and the reply is
 *        dropped, but the job still completes.
 */
#ifndef AGGD_API_API_INT_H
#define AGGD_API_API_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libpq-fe.h>
#include <yajl/yajl_tree.h>

#include "api/api.h"
#include "api/auth.h"
#include "core/buf.h"
#include "store/jobs.h"

#define API_PREFIX "/api/v1"
/* Largest JSON body the API reads (ingest has its own, larger limit). */
#define API_MAX_BODY_BYTES (256 * 1024)
/* Deepest nesting of arrays and objects a body may have. */
#define API_MAX_DEPTH 32
#define API_LIMIT_DEFAULT 50
#define API_LIMIT_MAX 500

enum api_role {
    API_ROLE_NONE = 0, /* no token needed */
    API_ROLE_VIEWER,
    API_ROLE_EDITOR,
    API_ROLE_ADMIN,
};

/* Route flags */
#define API_R_BODY 1u /* a JSON object body is required */
#define API_R_SELF 2u /* users/{id}/...: the user themself, or an admin */
#define API_R_SLOW 4u /* runs on the bounded password-hashing threads */

struct api_req;
struct api_resource;

struct api_route {
    enum evhttp_cmd_type method;
    const char *pattern;
    enum api_role role;
    unsigned flags;
    const struct api_resource *res; /* for the generic handlers, else NULL */
    /* Loop thread, after authentication and body parsing: validates. false stops:
     * the reply set by api_fail() is sent, or nothing when it set r->taken. */
    bool (*prepare)(struct api_req *r);
    /* Job thread: the SQL. Sets the reply (api_fail or r->out + r->status). NULL for
     * routes that answer from prepare. */
    void (*work)(struct api_req *r, PGconn *conn);
    /* Loop thread, after the work and before the reply (may be NULL). */
    void (*done)(struct api_req *r);
};

/* The route table (api/routes.c), ended by a NULL pattern. */
extern const struct api_route api_routes[];

struct api_login;
struct api_tail;

struct api {
    struct event_base *base;
    const struct agg_config *cfg;
    struct st_jobs *jobs; /* queries */
    struct st_jobs *slow; /* password hashing: few threads, bounded queue */
    int slow_pending;
    struct api_sessions *sessions;
    struct st_pipeline *pipeline;
    struct api_login *login;
    struct api_tail *tail;
    struct api_binding *bindings; /* one per route: what the router hands back */
};

/* A list's paging: limit and the key after which to start. */
struct api_page {
    int limit;
    bool has_cursor;
    char cursor[96]; /* decoded cursor text */
};

#define API_MAX_FIELDS 32
#define API_MAX_PARAMS 24

struct api_req {
    struct st_job job; /* first: the queue link */
    struct api *api;
    const struct api_route *route;
    struct evhttp_request *req; /* NULL once the client hung up */
    struct evhttp_request *orphan; /* ... and the request libevent left us to free */
    int ids[AGG_HTTP_MAX_PARAMS]; /* {id} path segments, in order */
    int nids;
    struct evkeyvalq query;
    struct api_principal who;
    char peer_ip[64];
    char *body_text; /* NUL-terminated copy of the body */
    yajl_val body;   /* parsed object, or NULL */
    uint64_t present; /* bit i: field i of the resource is in the body */
    bool slow;        /* run on the hashing threads */
    bool taken;       /* prepare took the HTTP request over (live tail): no reply */
    struct api_page page;
    /* SQL parameters gathered on the loop (filters), owned copies */
    char *params[API_MAX_PARAMS];
    int nparams;
    struct agg_buf sql;
    /* the reply */
    int status;
    struct agg_buf out;
    char ecode[32];
    char emsg[256];
    char efield[64];
    int retry_after_s;
    void *data; /* route-specific, freed with free() */
};

/* Sets the error reply: <status>, {"error":{"code":<code>,"message":…,"field":<field>}}.
 * <field> may be NULL. Any thread (it only writes into <r>). Returns false. */
bool api_fail(struct api_req *r, int status, const char *code, const char *field,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Sends the reply (unless the client left) and frees <r>. Loop thread. */
void api_finish(struct api_req *r);



/* Maps a failed statement to a reply: 409 unique, 422 foreign key / check / bad value,
 * 503 when PostgreSQL is unreachable, else 500. Marks the connection broken when it
 * is. <res> may be NULL. Job thread. */
void api_db_fail(struct api_req *r, PGconn *conn, const PGresult *res);

/* Runs <sql> with the request's gathered parameters plus <extra> (<nextra> more, may
 * be NULL), expecting <want>. On failure sets the reply via api_db_fail and returns
 * NULL. Caller owns the result: PQclear(). Job thread. */
PGresult *api_query(struct api_req *r, PGconn *conn, const char *sql, ExecStatusType want);

/* Appends a copy of <value> (NULL = SQL NULL) to the request's parameters and writes
 * "$n" into r->sql. AGG_OK or AGG_ENOMEM / AGG_EFULL. */
int api_param(struct api_req *r, const char *value);
/* Same, writing "$n" into <sql> instead. */
int api_param_to(struct api_req *r, struct agg_buf *sql, const char *value);

/* Forgets the gathered parameters and SQL text, to build the next statement. */
void api_sql_reset(struct api_req *r);

/* Runs a fixed statement outside the gathered parameters. */
PGresult *api_exec(struct api_req *r, PGconn *conn, const char *sql, int n,
                   const char *const *params, ExecStatusType want);

/* Begins / commits a transaction; on failure sets the reply. */
bool api_begin(struct api_req *r, PGconn *conn);
bool api_commit(struct api_req *r, PGconn *conn);
void api_rollback(PGconn *conn);

/* A query parameter's value, or NULL. */
const char *api_query_get(struct api_req *r, const char *name);

/* Checks that every query parameter is one of <allowed> (NULL-terminated); 400 with
 * the field otherwise. */
bool api_query_check(struct api_req *r, const char *const *allowed);

/* Parses ?limit= (1..API_LIMIT_MAX, default API_LIMIT_DEFAULT) and ?cursor= (base64url)
 * into r->page. false (400 with the field) on bad values. */
bool api_page_parse(struct api_req *r);

/* Writes the base64url of <text> into <out> (NUL-terminated). */
void api_cursor_encode(const char *text, char *out, size_t size);

/* Replies 200 {"items":[<rows' column 0>…],"next_cursor":…} from <res>, which holds up
 * to limit + 1 rows; the cursor is column <key_col> of the last row shown. */
void api_reply_list(struct api_req *r, const PGresult *res, int key_col);

/* Replies <status> with the JSON text of row 0, column 0 of <res>; 404 when no row. */
void api_reply_row(struct api_req *r, const PGresult *res, int status, const char *what);

/* Ends the statement in r->sql (built so far with result <rc>) with
 * " ORDER BY <order> LIMIT <limit + 1>", runs it and replies the page; the rows are
 * (JSON text, cursor key). Job thread. */
void api_run_list(struct api_req *r, PGconn *conn, int rc, const char *order);

/* Runs the statement in r->sql (built with result <rc>) and replies its first row with
 * <status>, or 404 naming <what>. Job thread. */
void api_run_row(struct api_req *r, PGconn *conn, int rc, int status, const char *what);

/* Characters of the UTF-8 text <s> (PostgreSQL counts VARCHAR(n) in characters). */
size_t api_utf8_chars(const char *s);

/* Rank of a users.role value; API_ROLE_NONE for anything unknown. */
enum api_role api_role_rank(const char *role);

/* The request's integer from query parameter <name> into *<out> within [lo, hi]; absent
 * leaves *<out>. false (400 naming it) when malformed. */
bool api_query_int(struct api_req *r, const char *name, long long lo, long long hi,
                   long long *out);

/* Hands <r> to a job thread: r->route->work runs there, then the reply. Loop thread. */
void api_submit(struct api_req *r);

/* Login and logout (api/login.c). A login's r->data: what the work tells the loop. */
struct api_login_attempt {
    char email_key[300]; /* "email:<lower-cased address>" */
    char ip_key[80];     /* "ip:<client address>" */
    bool failed;         /* wrong email or password: counts against both keys */
};
struct api_login *api_login_new(struct agg_err *err);
void api_login_free(struct api_login *l);
bool api_login_prepare(struct api_req *r);
void api_login_work(struct api_req *r, PGconn *conn);
void api_login_done(struct api_req *r);
void api_logout_done(struct api_req *r);
void api_logout_work(struct api_req *r, PGconn *conn);

/* Log search and tail (api/logs.c). */
struct api_tail *api_tail_new(struct api *a, struct agg_err *err);
void api_tail_free(struct api_tail *t);
bool api_logs_prepare(struct api_req *r);
void api_logs_work(struct api_req *r, PGconn *conn);
bool api_run_logs_prepare(struct api_req *r);
void api_run_logs_work(struct api_req *r, PGconn *conn);
bool api_tail_prepare(struct api_req *r);
void api_partitions_work(struct api_req *r, PGconn *conn);

#endif
