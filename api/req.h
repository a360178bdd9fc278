/*
 * api/req.h — the request framework every API handler uses: the request, the route
 *             it runs, errors and replies, SQL parameters, query and paging parsing.
 *
 * Place: api/api.c (the router) -> [req: path ids, query, token, role, body, job,
 *        reply] -> the route's handlers (login, logs, resource) -> PostgreSQL.
 * Threads: a request is touched by the loop thread, then by one job thread while its
 *          job runs (never both at once), then by the loop thread again.
 * Ownership: a request owns its query, body, and reply buffer; api_finish() frees it.
 *            r->ctx is borrowed from the router until api_free().
 * Traps: the client may hang up while a job runs, or the job may pass its deadline
 *        (answered 503 there and then): <req> is then NULL and the reply is dropped,
 *        but the job still completes, and its done callback still runs.
 * Not here: the route table and which handler runs (api/api.c, api/routes.c).
 */
#ifndef AGGD_API_REQ_H
#define AGGD_API_REQ_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libpq-fe.h>
#include <yajl/yajl_tree.h>

#include "api/auth.h"
#include "api/session.h"
#include "core/buf.h"
#include "core/http.h"
#include "store/jobs.h"
#include "store/pool.h"

#define API_PREFIX "/api/v1"
/* Largest JSON body the API reads (ingest has its own, larger limit). */
#define API_MAX_BODY_BYTES (256 * 1024)
/* Largest raw body (API_R_RAW routes: an upload's chunk). */
#define API_MAX_RAW_BYTES (16 * 1024 * 1024)
/* Deepest nesting of arrays and objects a body may have. */
#define API_MAX_DEPTH 32
/* A job (its wait for a thread, a connection, and its statements) that has not
 * answered after this many seconds gets 503 + Retry-After: API_RETRY_LATE_S; its late
 * result is dropped. Password checks wait in a longer queue. */
#define API_JOB_DEADLINE_S 10
#define API_SLOW_DEADLINE_S 30
#define API_RETRY_LATE_S "5"
/* Password checks queued or running at most (each takes 256 MiB and ~1 s; more answer
 * 503 busy): in the lane of logins api/login.c trusts (r->trusted), and in the lane of
 * all others. Each lane hashes on one thread. */
#define API_TRUSTED_QUEUE_MAX 4
#define API_SLOW_QUEUE_MAX 6
/* Requests waiting for a database job at once; beyond, 503 "busy" at once. While
 * PostgreSQL hangs, late jobs stay queued after their 503: this bounds their memory. */
#define API_QUEUE_MAX 128
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
/* The body is bytes, not JSON: application/octet-stream (or unlabelled), up to
 * API_MAX_RAW_BYTES, kept in r->body_text / r->body_len unparsed. */
#define API_R_RAW 8u

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
    /* Which of the router's handler states r->ctx gets (api/routes.h); not read here. */
    int state;
};

/* What every request shares: the job queues and the token checker. Opaque. */
struct api_req_env;

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
    struct api_req_env *env;
    const struct api_route *route;
    void *ctx; /* the route's handler state, lent by the router (NULL: none) */
    struct evhttp_request *req; /* NULL once the client hung up */
    struct evhttp_request *orphan; /* ... and the request libevent left us to free */
    int ids[AGG_HTTP_MAX_PARAMS]; /* {id} path segments, in order */
    int nids;
    struct evkeyvalq query;
    struct api_principal who;
    char peer_ip[64];
    char *body_text; /* NUL-terminated copy of the body */
    size_t body_len; /* its length in bytes (raw bodies may hold NULs) */
    yajl_val body;   /* parsed object, or NULL */
    uint64_t present; /* bit i: field i of the resource is in the body */
    bool slow;        /* run on the hashing threads */
    bool trusted;     /* prepare vouched for it: hashed in the trusted lane */
    struct event *deadline; /* while the job runs: answers 503 when it is late */
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

/* The gate of every API route (core/http.h): checks the token of <route> (cached for
 * the request's own check), then the media type of a body it reads, from <head>,
 * before the body is read. Loop thread. */
void api_req_gate(struct api_req_env *env, const struct api_route *route,
                  const struct agg_http_head *head, struct agg_http_pending *p);

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

/* api_query of r->sql when building it went well (<rc> AGG_OK); otherwise NULL with
 * the reply set to 503 out of memory. Job thread. */
PGresult *api_query_built(struct api_req *r, PGconn *conn, int rc, ExecStatusType want);

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

/* Rank of a users.role value; API_ROLE_NONE for anything unknown. */
enum api_role api_role_rank(const char *role);

/* Whether the caller of <r> is an admin. */
bool api_req_is_admin(const struct api_req *r);

/* The request's integer from query parameter <name> into *<out> within [lo, hi]; absent
 * leaves *<out>. false (400 naming it) when malformed. */
bool api_query_int(struct api_req *r, const char *name, long long lo, long long hi,
                   long long *out);

/* Hands <r> to a job thread: r->route->work runs there, then the reply. Loop thread. */
void api_submit(struct api_req *r);


/* The framework's shared part: query jobs and password-hashing jobs on <pool>, tokens
 * checked by <sessions>. Borrows <base>, <pool> and <sessions> until
 * api_req_env_free(). Caller owns the result. NULL + <err> on failure. Loop thread. */
struct api_req_env *api_req_env_new(struct event_base *base, struct st_pool *pool,
                                    struct api_sessions *sessions, struct agg_err *err);

/* Lets running jobs answer, then frees. Accepts NULL. Loop thread. */
void api_req_env_free(struct api_req_env *env);

/* Takes <req>, matched to <route> with path values <m>, through the whole request
 * path: path ids, query, token and role, body, prepare, job, done, reply. <ctx> becomes
 * r->ctx. Borrows <route> and <ctx> until the reply. Loop thread. */
void api_req_start(struct api_req_env *env, const struct api_route *route, void *ctx,
                   struct evhttp_request *req, const struct agg_http_match *m);

/* Checks and parses r->body_text (NUL-terminated, <len> bytes) into r->body: a JSON
 * object without NUL bytes nested at most API_MAX_DEPTH deep. false with the reply
 * set: 400 when it is not, 503 when memory ran out. Loop thread. */
bool api_req_parse_body(struct api_req *r, size_t len);

#endif
