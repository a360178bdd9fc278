/*
 * api/req.c — one path for every API request: path ids, query, token, role, body, job,
 * reply.
 *
 * Place: see api/req.h.
 * Threads: loop thread, except the work callbacks (job threads).
 * Ownership: a request lives from api_req_start() to api_finish().
 * Traps: api_sessions caches tokens for up to 30 s; logout drops its own entry.
 * Not here: which routes exist and their handlers (api/api.c, api/routes.c).
 */
#include "api/req.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <sodium.h>

#include "core/alloc.h"
#include "core/json.h"
#include "core/log.h"

#define QUERY_THREADS 4
/* Statements of API jobs stop here, a second before the job deadline answers. */
#define STATEMENT_TIMEOUT_MS ((API_JOB_DEADLINE_S - 1) * 1000)
#define AUTH_REFUSED "a valid bearer token of scope api is required"

struct api_req_env {
    struct event_base *base;
    struct st_jobs *jobs; /* queries */
    /* password hashing, one thread and a bounded queue each: trusted logins (api/login.c)
     * never wait behind a flood of others */
    struct st_jobs *slow, *trusted;
    int slow_pending, trusted_pending, jobs_pending;
    struct api_sessions *sessions;
    struct agg_log_limit late_log; /* "no answer in time" lines */
};

static const char *const role_names[] = {"none", "viewer", "editor", "admin"};

enum api_role api_role_rank(const char *role)
{
    for (int i = API_ROLE_VIEWER; i <= API_ROLE_ADMIN; i++) {
        if (role != NULL && strcmp(role, role_names[i]) == 0)
            return (enum api_role)i;
    }
    return API_ROLE_NONE;
}

bool api_req_is_admin(const struct api_req *r)
{
    return api_role_rank(r->who.role) >= API_ROLE_ADMIN;
}

/* Replaces each byte that breaks UTF-8 in <s> by '?': messages quote client text (a
 * query parameter's name may be any bytes), and truncation may cut a character. */
static void clean_utf8(char *s)
{
    size_t len = strlen(s), ok;

    while ((ok = agg_utf8_valid_prefix(s, len)) < len) {
        s[ok] = '?';
        s += ok + 1;
        len -= ok + 1;
    }
}

bool api_fail(struct api_req *r, int status, const char *code, const char *field,
              const char *fmt, ...)
{
    va_list ap;

    r->status = status;
    snprintf(r->ecode, sizeof(r->ecode), "%s", code);
    snprintf(r->efield, sizeof(r->efield), "%s", field != NULL ? field : "");
    va_start(ap, fmt);
    vsnprintf(r->emsg, sizeof(r->emsg), fmt, ap);
    va_end(ap);
    clean_utf8(r->efield);
    clean_utf8(r->emsg);
    return false;
}

/* Wipes the string values of the parsed body <v>: they may hold a password or a
 * connector's secrets (the body is at most API_MAX_DEPTH deep). */
static void wipe_strings(yajl_val v)
{
    if (YAJL_IS_STRING(v))
        sodium_memzero(v->u.string, strlen(v->u.string));
    for (size_t i = 0; YAJL_IS_OBJECT(v) && i < v->u.object.len; i++)
        wipe_strings(v->u.object.values[i]);
    for (size_t i = 0; YAJL_IS_ARRAY(v) && i < v->u.array.len; i++)
        wipe_strings(v->u.array.values[i]);
}

static void req_free(struct api_req *r)
{
    evhttp_clear_headers(&r->query);
    if (r->body != NULL) {
        wipe_strings(r->body);
        yajl_tree_free(r->body);
    }
    if (r->body_text != NULL) {
        sodium_memzero(r->body_text, strlen(r->body_text)); /* may hold a password */
        free(r->body_text);
    }
    api_sql_reset(r);
    agg_buf_clear(&r->sql);
    agg_buf_clear(&r->out);
    if (r->deadline != NULL)
        event_free(r->deadline);
    free(r->data);
    free(r);
}

/* The client hung up. libevent detaches a request nobody answered yet from its
 * connection and leaves it to us (freed in api_finish); otherwise it frees it itself. */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct api_req *r = arg;

    (void)evcon;
    if (evhttp_request_get_connection(r->req) == NULL)
        r->orphan = r->req;
    r->req = NULL;
}

void api_finish(struct api_req *r)
{
    struct evhttp_request *req = r->req;

    if (r->orphan != NULL)
        evhttp_request_free(r->orphan);

    if (req != NULL) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(req);
        struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
        char retry[16];

        if (evcon != NULL)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
        if (r->status == 401)
            evhttp_add_header(hdr, "WWW-Authenticate", "Bearer realm=\"aggd\"");
        if (r->status == 503 || r->status == 429) {
            snprintf(retry, sizeof(retry), "%d", r->retry_after_s > 0 ? r->retry_after_s : 1);
            evhttp_add_header(hdr, "Retry-After", retry);
        }
        if (r->ecode[0] != '\0') {
            agg_http_reply_error(req, r->status, r->ecode, r->emsg,
                                 r->efield[0] != '\0' ? r->efield : NULL);
        } else if (r->status == 204) {
            evhttp_send_reply(req, 204, "No Content", NULL);
        } else {
            agg_http_reply_json(req, r->status, r->out.data != NULL ? r->out.data : "{}");
        }
    }
    req_free(r);
}

/* ---- job threads ---- */

static void job_work(struct st_job *job, PGconn *conn, const struct agg_err *cerr)
{
    struct api_req *r = (struct api_req *)job;

    if (conn == NULL) {
        AGG_LOG_WARN("api", "cannot reach PostgreSQL: %s", cerr != NULL ? cerr->msg : "");
        api_fail(r, 503, "unavailable", NULL, "the database is not reachable; retry later");
        return;
    }
    r->route->work(r, conn);
    if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE)
        job->conn_broken = true;
}

/* The count of queued and running password checks <r> joins. */
static int *pending(struct api_req *r)
{
    if (!r->slow)
        return &r->env->jobs_pending;
    return r->trusted ? &r->env->trusted_pending : &r->env->slow_pending;
}

static int pending_max(const struct api_req *r)
{
    if (!r->slow)
        return API_QUEUE_MAX;
    return r->trusted ? API_TRUSTED_QUEUE_MAX : API_SLOW_QUEUE_MAX;
}

static void job_done(struct st_job *job)
{
    struct api_req *r = (struct api_req *)job;

    *pending(r) -= 1;
    if (r->route->done != NULL)
        r->route->done(r);
    api_finish(r);
}

/* The job has not answered in time (PostgreSQL hangs, or the queue is stuck behind
 * jobs that wait for it): answer 503 now. The job runs on and touches only its own
 * fields; job_done then finds no client and frees the request. Loop thread. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct api_req *r = arg;
    struct evhttp_request *req = r->req;
    struct evhttp_connection *evcon;

    (void)fd;
    (void)what;
    if (req == NULL)
        return;
    AGG_LOG_LIMITED(&r->env->late_log, AGG_LOG_LEVEL_WARN, "api",
                    "%s: no answer from the database within %d s; answered 503",
                    r->route->pattern, r->slow ? API_SLOW_DEADLINE_S : API_JOB_DEADLINE_S);
    evcon = evhttp_request_get_connection(req);
    if (evcon != NULL)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    r->req = NULL;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", API_RETRY_LATE_S);
    agg_http_reply_error(req, 503, "unavailable",
                         "the database did not answer in time; retry later", NULL);
}

void api_submit(struct api_req *r)
{
    struct timeval tv = {r->slow ? API_SLOW_DEADLINE_S : API_JOB_DEADLINE_S, 0};

    r->job.fn = job_work;
    r->job.done = job_done;
    if (*pending(r) >= pending_max(r)) {
        r->retry_after_s = 2;
        api_fail(r, 503, "busy", NULL,
                 r->slow ? "too many password checks in progress; retry"
                         : "too many requests wait for the database; retry");
        if (r->route->done != NULL)
            r->route->done(r); /* it settles what prepare counted */
        api_finish(r);
        return;
    }
    r->deadline = evtimer_new(r->env->base, on_deadline, r);
    if (r->deadline == NULL || evtimer_add(r->deadline, &tv) != 0) {
        api_fail(r, 503, "unavailable", NULL, "out of memory");
        if (r->route->done != NULL)
            r->route->done(r);
        api_finish(r);
        return;
    }
    *pending(r) += 1;
    if (r->slow) {
        st_jobs_run(r->trusted ? r->env->trusted : r->env->slow, &r->job);
        return;
    }
    st_jobs_run(r->env->jobs, &r->job);
}

/* ---- database helpers (job threads) ---- */

/* The column a constraint named "<table>_<column>_<suffix>" is about. */
static void constraint_field(const PGresult *res, char *out, size_t size)
{
    const char *c = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    const char *t = PQresultErrorField(res, PG_DIAG_TABLE_NAME);
    const char *col = PQresultErrorField(res, PG_DIAG_COLUMN_NAME);
    size_t tl, n;
    const char *end;

    out[0] = '\0';
    if (col != NULL) {
        snprintf(out, size, "%s", col);
        return;
    }
    if (c == NULL)
        return;
    tl = t != NULL ? strlen(t) : 0;
    if (t != NULL && strncmp(c, t, tl) == 0 && c[tl] == '_')
        c += tl + 1;
    end = strrchr(c, '_');
    n = end != NULL ? (size_t)(end - c) : strlen(c);
    snprintf(out, size, "%.*s", (int)n, c);
}

void api_db_fail(struct api_req *r, PGconn *conn, const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *detail = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char field[64];

    if (detail == NULL)
        detail = "refused";
    if (state != NULL && strcmp(state, "57014") == 0 && PQstatus(conn) == CONNECTION_OK) {
        /* statement_timeout: the session is fine */
        api_fail(r, 503, "unavailable", NULL, "the database did not answer in time; retry later");
        return;
    }
    if (state == NULL || PQstatus(conn) != CONNECTION_OK || strncmp(state, "08", 2) == 0 ||
        strncmp(state, "57", 2) == 0 || strncmp(state, "53", 2) == 0) {
        r->job.conn_broken = true;
        AGG_LOG_WARN("api", "PostgreSQL failed: %s", res != NULL ? PQresultErrorMessage(res)
                                                                 : PQerrorMessage(conn));
        api_fail(r, 503, "unavailable", NULL, "the database is not available; retry later");
        return;
    }
    constraint_field(res, field, sizeof(field));
    if (strcmp(state, "23505") == 0)
        api_fail(r, 409, "conflict", field, "%s already exists",
                 field[0] != '\0' ? field : "the row");
    else if (strcmp(state, "23503") == 0)
        api_fail(r, 422, "invalid_reference", field, "%s refers to a row that does not exist",
                 field[0] != '\0' ? field : "a field");
    else if (strcmp(state, "23514") == 0 || strcmp(state, "23502") == 0 ||
             strncmp(state, "22", 2) == 0)
        api_fail(r, 422, "invalid_value", field, "%s", detail);
    else if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
             strcmp(state, "55P03") == 0)
        api_fail(r, 409, "conflict", NULL, "a concurrent change interfered; retry");
    else {
        AGG_LOG_ERR("api", "unexpected PostgreSQL error: %s", PQresultErrorMessage(res));
        api_fail(r, 500, "internal", NULL, "internal error");
    }
}

PGresult *api_exec(struct api_req *r, PGconn *conn, const char *sql, int n,
                   const char *const *params, ExecStatusType want)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);

    if (res != NULL && PQresultStatus(res) == want)
        return res;
    api_db_fail(r, conn, res);
    PQclear(res);
    return NULL;
}

PGresult *api_query(struct api_req *r, PGconn *conn, const char *sql, ExecStatusType want)
{
    return api_exec(r, conn, sql, r->nparams, (const char *const *)r->params, want);
}

int api_param(struct api_req *r, const char *value)
{
    return api_param_to(r, &r->sql, value);
}

int api_param_to(struct api_req *r, struct agg_buf *sql, const char *value)
{
    if (r->nparams == API_MAX_PARAMS)
        return AGG_EFULL;
    r->params[r->nparams] = NULL;
    if (value != NULL && (r->params[r->nparams] = agg_strdup(value)) == NULL)
        return AGG_ENOMEM;
    r->nparams++;
    return agg_buf_printf(sql, "$%d", r->nparams);
}

void api_sql_reset(struct api_req *r)
{
    for (int i = 0; i < r->nparams; i++)
        free(r->params[i]);
    r->nparams = 0;
    agg_buf_reset(&r->sql);
}

bool api_begin(struct api_req *r, PGconn *conn)
{
    PGresult *res = api_exec(r, conn, "BEGIN", 0, NULL, PGRES_COMMAND_OK);

    PQclear(res);
    return res != NULL;
}

bool api_commit(struct api_req *r, PGconn *conn)
{
    PGresult *res = api_exec(r, conn, "COMMIT", 0, NULL, PGRES_COMMAND_OK);

    PQclear(res);
    return res != NULL;
}

void api_rollback(PGconn *conn)
{
    if (PQtransactionStatus(conn) != PQTRANS_IDLE)
        PQclear(PQexec(conn, "ROLLBACK"));
}

/* ---- replies built on job threads ---- */

void api_cursor_encode(const char *text, char *out, size_t size)
{
    size_t n = strlen(text);

    if (sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING) > size) {
        out[0] = '\0';
        return;
    }
    sodium_bin2base64(out, size, (const unsigned char *)text, n,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void api_reply_list(struct api_req *r, const PGresult *res, int key_col)
{
    int n = PQntuples(res), shown = n > r->page.limit ? r->page.limit : n;
    char cursor[256];

    agg_buf_reset(&r->out);
    if (agg_buf_printf(&r->out, "{\"items\":[") != AGG_OK)
        goto nomem;
    for (int i = 0; i < shown; i++) {
        if ((i > 0 && agg_buf_putc(&r->out, ',') != AGG_OK) ||
            agg_buf_append(&r->out, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0)) !=
                AGG_OK)
            goto nomem;
    }
    if (n > shown) {
        api_cursor_encode(PQgetvalue(res, shown - 1, key_col), cursor, sizeof(cursor));
        if (agg_buf_printf(&r->out, "],\"next_cursor\":\"%s\"}", cursor) != AGG_OK)
            goto nomem;
    } else if (agg_buf_printf(&r->out, "],\"next_cursor\":null}") != AGG_OK) {
        goto nomem;
    }
    r->status = 200;
    return;

nomem:
    api_fail(r, 503, "unavailable", NULL, "out of memory");
}

void api_reply_row(struct api_req *r, const PGresult *res, int status, const char *what)
{
    agg_buf_reset(&r->out);
    if (PQntuples(res) == 0) {
        api_fail(r, 404, "not_found", NULL, "no such %s", what);
        return;
    }
    if (agg_buf_append(&r->out, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0)) !=
        AGG_OK) {
        api_fail(r, 503, "unavailable", NULL, "out of memory");
        return;
    }
    r->status = status;
}

PGresult *api_query_built(struct api_req *r, PGconn *conn, int rc, ExecStatusType want)
{
    if (rc != AGG_OK) {
        api_fail(r, 503, "unavailable", NULL, "out of memory");
        return NULL;
    }
    return api_query(r, conn, r->sql.data, want);
}

void api_run_list(struct api_req *r, PGconn *conn, int rc, const char *order)
{
    char lim[16];
    PGresult *q;

    snprintf(lim, sizeof(lim), "%d", r->page.limit + 1); /* one more: is there a next page */
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, " ORDER BY %s LIMIT ", order);
    if (rc == AGG_OK)
        rc = api_param(r, lim);
    q = api_query_built(r, conn, rc, PGRES_TUPLES_OK);
    if (q != NULL)
        api_reply_list(r, q, 1);
    PQclear(q);
}

void api_run_row(struct api_req *r, PGconn *conn, int rc, int status, const char *what)
{
    PGresult *q = api_query_built(r, conn, rc, PGRES_TUPLES_OK);

    if (q != NULL)
        api_reply_row(r, q, status, what);
    PQclear(q);
}

/* ---- query parameters (loop thread) ---- */

const char *api_query_get(struct api_req *r, const char *name)
{
    return evhttp_find_header(&r->query, name);
}

bool api_query_check(struct api_req *r, const char *const *allowed)
{
    for (struct evkeyval *kv = r->query.tqh_first; kv != NULL; kv = kv->next.tqe_next) {
        bool ok = false;

        for (size_t i = 0; allowed != NULL && allowed[i] != NULL && !ok; i++)
            ok = strcmp(kv->key, allowed[i]) == 0;
        if (!ok)
            return api_fail(r, 400, "unknown_parameter", kv->key,
                            "unknown query parameter \"%.64s\"", kv->key);
    }
    return true;
}

bool api_query_int(struct api_req *r, const char *name, long long lo, long long hi,
                   long long *out)
{
    const char *s = api_query_get(r, name);
    char *end;
    long long v;

    if (s == NULL)
        return true;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi)
        return api_fail(r, 400, "invalid_parameter", name, "%s must be an integer in %lld..%lld",
                        name, lo, hi);
    *out = v;
    return true;
}

bool api_page_parse(struct api_req *r)
{
    long long limit = API_LIMIT_DEFAULT;
    const char *c = api_query_get(r, "cursor");
    size_t len = 0;

    if (!api_query_int(r, "limit", 1, API_LIMIT_MAX, &limit))
        return false;
    r->page.limit = (int)limit;
    r->page.has_cursor = c != NULL;
    if (c == NULL)
        return true;
    if (sodium_base642bin((unsigned char *)r->page.cursor, sizeof(r->page.cursor) - 1, c,
                          strlen(c), NULL, &len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        len == 0)
        return api_fail(r, 400, "invalid_parameter", "cursor", "cursor is not one this API gave");
    r->page.cursor[len] = '\0';
    return true;
}

/* ---- the request path (loop thread) ---- */

/* The route's {param} segments, read from the path as sent: an id is plain digits there.
 * The router's values are percent-decoded, and C strings stop at an encoded NUL:
 * "4%005" would read as 4. */
static bool parse_ids(struct api_req *r, const struct agg_http_match *m)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r->req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    const char *pat = r->route->pattern;
    int n = 0;

    while (path != NULL && *pat != '\0' && *path != '\0') {
        size_t len = strcspn(path, "/");
        long long v = 0;
        bool index;

        if (*pat != '{') {
            pat++;
            path++;
            continue;
        }
        if (n == AGG_HTTP_MAX_PARAMS || len == 0 || len > 18 ||
            strspn(path, "0123456789") != len)
            break;
        for (size_t i = 0; i < len; i++)
            v = v * 10 + (path[i] - '0');
        index = strncmp(pat, "{n}", 3) == 0; /* a position (a chunk's n) may be 0 */
        if (v < (index ? 0 : 1) || v > INT_MAX)
            break;
        r->ids[n++] = (int)v;
        path += len;
        pat = strchr(pat, '}') + 1;
    }
    if (n != m->n || path == NULL || *pat != '\0' || *path != '\0')
        return api_fail(r, 404, "not_found", NULL, "no such resource");
    r->nids = n;
    return true;
}

/* Deepest nesting of arrays and objects in the JSON text <s>: yajl_tree_free() frees
 * trees recursively, so a body of 100 000 '[' must not reach the parser. */
static int nesting(const char *s)
{
    int depth = 0, deepest = 0;
    bool in_string = false;

    for (; *s != '\0'; s++) {
        if (in_string) {
            if (*s == '\\' && s[1] != '\0')
                s++;
            else if (*s == '"')
                in_string = false;
        } else if (*s == '"') {
            in_string = true;
        } else if (*s == '[' || *s == '{') {
            if (++depth > deepest)
                deepest = depth;
        } else if (*s == ']' || *s == '}') {
            depth--;
        }
    }
    return deepest;
}

#define JSON_ONLY "Content-Type must be application/json"

/* Whether a body labelled <ct> (may be NULL) is read as JSON. */
static bool is_json_type(const char *ct)
{
    /* curl -d labels JSON as a form unless told otherwise: read it as JSON all the same */
    return ct == NULL || strncasecmp(ct, "application/json", 16) == 0 ||
           strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}

#define RAW_ONLY "Content-Type must be application/octet-stream"

/* Whether a raw body labelled <ct> (may be NULL) is accepted. */
static bool is_raw_type(const char *ct)
{
    return ct == NULL || strncasecmp(ct, "application/octet-stream", 24) == 0;
}

/* API_R_RAW: the bytes as they are (an empty body whatever its label). */
static bool read_raw(struct api_req *r)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(r->req), "Content-Type");
    size_t len = evbuffer_get_length(in);

    if (len > API_MAX_RAW_BYTES)
        return api_fail(r, 413, "too_large", NULL, "the body is over %d bytes",
                        API_MAX_RAW_BYTES);
    if (len > 0 && !is_raw_type(ct))
        return api_fail(r, 415, "unsupported_media_type", NULL, "%s", RAW_ONLY);
    r->body_text = agg_malloc(len + 1);
    if (r->body_text == NULL)
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    if (evbuffer_remove(in, r->body_text, len) != (int)len) /* frees libevent's copy */
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    r->body_text[len] = '\0';
    r->body_len = len;
    return true;
}

static bool read_body(struct api_req *r)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(r->req), "Content-Type");
    size_t len = evbuffer_get_length(in);

    if (len > API_MAX_BODY_BYTES)
        return api_fail(r, 413, "too_large", NULL, "the body is over %d bytes",
                        API_MAX_BODY_BYTES);
    if (!is_json_type(ct))
        return api_fail(r, 415, "unsupported_media_type", NULL, "%s", JSON_ONLY);
    /* an empty body is an empty object: POST …/runs needs nothing */
    r->body_text = agg_malloc(len > 0 ? len + 1 : 3);
    if (r->body_text == NULL)
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    evbuffer_copyout(in, r->body_text, len);
    r->body_text[len] = '\0';
    if (len == 0)
        memcpy(r->body_text, "{}", 3), len = 2;
    r->body_len = len;
    return api_req_parse_body(r, len);
}

bool api_req_parse_body(struct api_req *r, size_t len)
{
    char why[160];
    int rc;

    if (strlen(r->body_text) != len)
        return api_fail(r, 400, "bad_json", NULL, "the body contains a NUL byte");
    if (nesting(r->body_text) > API_MAX_DEPTH)
        return api_fail(r, 400, "bad_json", NULL, "the body is nested deeper than %d levels",
                        API_MAX_DEPTH);
    rc = agg_json_parse(r->body_text, len, API_MAX_DEPTH, &r->body, why, sizeof(why));
    if (rc == AGG_ENOMEM)
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    if (rc != AGG_OK) {
        /* yajl's first line says why; the next ones quote the input, which may hold
         * secrets (connectors): not in replies. Keep the message one line of ASCII. */
        why[strcspn(why, "\n")] = '\0';
        for (char *p = why; *p != '\0'; p++) {
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                *p = (*p == '\n') ? ' ' : '?';
        }
        return api_fail(r, 400, "bad_json", NULL, "the body is not JSON: %s",
                        why[0] != '\0' ? why : "empty");
    }
    if (!YAJL_IS_OBJECT(r->body))
        return api_fail(r, 400, "bad_json", NULL, "the body must be a JSON object");
    return true;
}

static void proceed(struct api_req *r)
{
    const struct api_route *rt = r->route;

    if (((rt->flags & API_R_BODY) && !read_body(r)) || ((rt->flags & API_R_RAW) && !read_raw(r))) {
        api_finish(r);
        return;
    }
    r->slow = (rt->flags & API_R_SLOW) != 0;
    if (rt->prepare != NULL && !rt->prepare(r)) {
        if (r->taken)
            req_free(r); /* the HTTP request is the live tail's now */
        else
            api_finish(r);
        return;
    }
    if (rt->work == NULL) {
        api_finish(r);
        return;
    }
    api_submit(r);
}

static void on_auth(void *arg, int status, const struct api_principal *who)
{
    struct api_req *r = arg;
    const struct api_route *rt = r->route;
    enum api_role rank;

    if (r->req == NULL) {
        api_finish(r); /* nobody to answer */
        return;
    }
    if (status == AGG_ENOTFOUND) {
        api_fail(r, 401, "unauthorized", NULL, AUTH_REFUSED);
        api_finish(r);
        return;
    }
    if (status != AGG_OK) {
        api_fail(r, 503, "unavailable", NULL, "cannot check the token now; retry later");
        api_finish(r);
        return;
    }
    r->who = *who;
    rank = api_role_rank(who->role);
    if (rank < rt->role && !((rt->flags & API_R_SELF) && r->ids[0] == who->user_id)) {
        api_fail(r, 403, "forbidden", NULL, "this needs the %s role", role_names[rt->role]);
        api_finish(r);
        return;
    }
    if ((rt->flags & API_R_SELF) && rank < API_ROLE_ADMIN && r->ids[0] != who->user_id) {
        api_fail(r, 403, "forbidden", NULL, "only an admin may see another user's settings");
        api_finish(r);
        return;
    }
    proceed(r);
}

/* ---- before the body: the connection guard asks (core/http.h, gates) ---- */

static void on_gate_auth(void *arg, int status, const struct api_principal *who)
{
    (void)who;
    if (status == AGG_ENOTFOUND)
        agg_http_gate_done(arg, 401, "unauthorized", AUTH_REFUSED);
    else if (status != AGG_OK)
        agg_http_gate_done(arg, 503, "unavailable", "cannot check the token now; retry later");
    else
        agg_http_gate_done(arg, 0, NULL, NULL);
}

void api_req_gate(struct api_req_env *env, const struct api_route *route,
                  const struct agg_http_head *head, struct agg_http_pending *p)
{
    if ((route->flags & API_R_BODY) &&
        !is_json_type(evhttp_find_header(head->headers, "Content-Type")))
        agg_http_gate_note(p, 415, "unsupported_media_type", JSON_ONLY); /* after a 401 */
    if ((route->flags & API_R_RAW) &&
        !is_raw_type(evhttp_find_header(head->headers, "Content-Type")))
        agg_http_gate_note(p, 415, "unsupported_media_type", RAW_ONLY);
    if (route->role == API_ROLE_NONE)
        agg_http_gate_done(p, 0, NULL, NULL);
    else
        api_session_check(env->sessions, evhttp_find_header(head->headers, "Authorization"),
                          "api", on_gate_auth, p);
}

static void peer_ip(struct evhttp_request *req, char *out, size_t size)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;

    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, &addr, &port);
    snprintf(out, size, "%s", addr != NULL ? addr : "unknown");
}

void api_req_start(struct api_req_env *env, const struct api_route *route, void *ctx,
                   struct evhttp_request *req, const struct agg_http_match *m)
{
    struct api_req *r = agg_calloc(1, sizeof(*r));
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);

    if (r == NULL) {
        agg_http_reply_error(req, 503, "unavailable", "out of memory", NULL);
        return;
    }
    r->env = env;
    r->route = route;
    r->ctx = ctx;
    r->req = req;
    r->query.tqh_first = NULL; /* TAILQ_INIT without <sys/queue.h> */
    r->query.tqh_last = &r->query.tqh_first;
    agg_buf_init(&r->sql);
    agg_buf_init(&r->out);
    peer_ip(req, r->peer_ip, sizeof(r->peer_ip));
    if (!parse_ids(r, m)) {
        api_finish(r);
        return;
    }
    if (q != NULL && evhttp_parse_query_str(q, &r->query) != 0) {
        api_fail(r, 400, "bad_query", NULL, "the query string is malformed");
        api_finish(r);
        return;
    }
    if (evcon != NULL)
        evhttp_connection_set_closecb(evcon, on_close, r);
    if (route->role == API_ROLE_NONE) {
        proceed(r);
        return;
    }
    api_session_check(r->env->sessions,
                      evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization"),
                      "api", on_auth, r);
}

struct api_req_env *api_req_env_new(struct event_base *base, struct st_pool *pool,
                                    struct api_sessions *sessions, struct agg_err *err)
{
    struct api_req_env *env = agg_calloc(1, sizeof(*env));

    if (env == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    env->base = base;
    env->sessions = sessions;
    env->jobs = st_jobs_new(base, pool, QUERY_THREADS, err);
    if (env->jobs == NULL)
        goto fail;
    env->slow = st_jobs_new(base, pool, 1, err);
    if (env->slow == NULL)
        goto fail;
    env->trusted = st_jobs_new(base, pool, 1, err);
    if (env->trusted == NULL)
        goto fail;
    st_jobs_set_statement_timeout(env->jobs, STATEMENT_TIMEOUT_MS);
    st_jobs_set_statement_timeout(env->slow, STATEMENT_TIMEOUT_MS);
    st_jobs_set_statement_timeout(env->trusted, STATEMENT_TIMEOUT_MS);
    return env;

fail:
    api_req_env_free(env);
    return NULL;
}

void api_req_env_free(struct api_req_env *env)
{
    if (env == NULL)
        return;
    st_jobs_free(env->trusted);
    st_jobs_free(env->slow);
    st_jobs_free(env->jobs);
    free(env);
}
