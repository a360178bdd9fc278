/*
 * api/logs.c — log search (GET logs, runs/{run}/logs), the live tail (GET logs/tail,
 * server-sent events) and GET partitions.
 *
 * Place: api/api.c -> [logs] -> system_logs (search) or the pipeline's tap (tail).
 * Threads: filters and the tail on the loop thread; searches on job threads.
 * Ownership: the tail owns its clients; a client lives until its connection closes or
 *            the API is freed.
 * Traps: searches are bounded in time (default: the last 24 h) so that PostgreSQL
 *        prunes partitions; the keyset is (created_at, id), newest first. A tail
 *        client whose socket buffer is over TAIL_MAX_BUFFER loses events, counted and
 *        announced by an "event: dropped" before the next one it gets. The tail's
 *        q matches ASCII case-insensitively; the search's ILIKE follows the database.
 */
#include "api/logs.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <yajl/yajl_gen.h>

#include "api/resource.h"
#include "core/record.h"
#include "core/time.h"
#include "core/alloc.h"
#include "core/log.h"
#include "store/partitions.h"

#define DEFAULT_SPAN_US (24 * 3600 * AGG_US_PER_SEC)
#define Q_MAX_BYTES 1000
#define TAIL_MAX_BUFFER (256 * 1024)
#define TAIL_MAX_CLIENTS 64
#define TAIL_KEEPALIVE_S 15

/* clang-format off */
#define LOG_STR(name, n) {name, API_T_STRING, 0, n, NULL, 0, 0, NULL, NULL}
#define LOG_INT(name) {name, API_T_INT, 0, 0, NULL, 0, 0, NULL, NULL}
static const struct api_field log_fields[] = {
    LOG_INT("id"),
    {"created_at", API_T_TIME, 0, 0, NULL, 0, 0, NULL, NULL},
    LOG_STR("level", 20), LOG_STR("message", 0), LOG_STR("logger_name", 255),
    LOG_STR("module", 255), LOG_STR("function_name", 255), LOG_INT("line_number"),
    LOG_STR("correlation_id", 100), LOG_INT("user_id"), LOG_STR("request_id", 100),
    LOG_STR("request_method", 10), LOG_STR("request_path", 500), LOG_STR("request_ip", 45),
    LOG_INT("duration_ms"), {"memory_usage_mb", API_T_NUMBER, 0, 0, NULL, 0, 0, NULL, NULL},
    LOG_STR("exception_type", 255), LOG_STR("exception_message", 0), LOG_STR("stack_trace", 0),
    {"extra_data", API_T_OBJECT, 0, 0, NULL, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, NULL, 0, 0, NULL, NULL},
};
/* clang-format on */

static const struct api_resource logs_res = {.what = "log", .table = "system_logs",
                                             .fields = log_fields};

/* The exact-match text filters and their record fields. */
static const struct {
    const char *name;
    int field;
} str_filters[] = {
    {"logger_name", AGG_F_LOGGER_NAME},
    {"module", AGG_F_MODULE},
    {"correlation_id", AGG_F_CORRELATION_ID},
    {"request_id", AGG_F_REQUEST_ID},
};
#define N_STR_FILTERS 4
#define CORRELATION 2

struct log_filter {
    int64_t since_us, until_us; /* AGG_TIME_NONE: open */
    int level;                  /* -1: any */
    bool has_str[N_STR_FILTERS];
    char str[N_STR_FILTERS][1024];
    bool has_user;
    int user_id;
    bool has_q;
    char q[Q_MAX_BYTES + 1];
};

static bool parse_time(struct api_req *r, const char *name, int64_t *out)
{
    const char *s = api_query_get(r, name);

    if (s != NULL && !agg_time_parse_iso8601(s, strlen(s), out))
        return api_fail(r, 400, "invalid_parameter", name,
                        "%s must be an ISO 8601 time such as 2025-01-31T12:00:00Z", name);
    return true;
}

static bool parse_strings(struct api_req *r, struct log_filter *f)
{
    for (int i = 0; i < N_STR_FILTERS; i++) {
        const char *s = api_query_get(r, str_filters[i].name);

        if (s == NULL)
            continue;
        if (api_utf8_chars(s) > agg_field_max_chars(str_filters[i].field) ||
            strlen(s) >= sizeof(f->str[i]))
            return api_fail(r, 400, "too_long", str_filters[i].name,
                            "%s is longer than the column", str_filters[i].name);
        snprintf(f->str[i], sizeof(f->str[i]), "%s", s);
        f->has_str[i] = true;
    }
    return true;
}

/* Reads the filters of the query into <f>; <since_default> applies without ?since. */
static bool parse_filter(struct api_req *r, struct log_filter *f, int64_t since_default)
{
    const char *level = api_query_get(r, "level"), *q = api_query_get(r, "q");
    long long uid = -1;
    enum agg_level lv;

    f->since_us = since_default;
    f->until_us = AGG_TIME_NONE;
    f->level = -1;
    if (!parse_time(r, "since", &f->since_us) || !parse_time(r, "until", &f->until_us))
        return false;
    if (f->since_us != AGG_TIME_NONE && f->until_us != AGG_TIME_NONE && f->since_us >= f->until_us)
        return api_fail(r, 400, "invalid_parameter", "until", "until must be after since");
    if (level != NULL) {
        if (!agg_level_parse(level, strlen(level), &lv))
            return api_fail(r, 400, "invalid_parameter", "level",
                            "level must be DEBUG, INFO, WARNING, ERROR or CRITICAL");
        f->level = (int)lv;
    }
    if (!api_query_int(r, "user_id", 0, INT_MAX, &uid))
        return false;
    f->has_user = uid >= 0;
    f->user_id = (int)uid;
    if (q != NULL && strlen(q) > Q_MAX_BYTES)
        return api_fail(r, 400, "too_long", "q", "q is longer than %d bytes", Q_MAX_BYTES);
    if (q != NULL)
        snprintf(f->q, sizeof(f->q), "%s", q);
    f->has_q = q != NULL && *q != '\0';
    return parse_strings(r, f);
}

static bool prepare_search(struct api_req *r, const char *const *allowed, int64_t since_default)
{
    struct log_filter *f;

    if (!api_query_check(r, allowed) || !api_page_parse(r))
        return false;
    f = agg_calloc(1, sizeof(*f));
    if (f == NULL)
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    r->data = f;
    return parse_filter(r, f, since_default);
}

bool api_logs_prepare(struct api_req *r)
{
    static const char *const allowed[] = {
        "since", "until", "level", "logger_name", "module", "correlation_id", "request_id",
        "user_id", "q", "limit", "cursor", NULL};

    return prepare_search(r, allowed, agg_time_now_us() - DEFAULT_SPAN_US);
}

bool api_run_logs_prepare(struct api_req *r)
{
    static const char *const allowed[] = {"since", "until", "level", "logger_name", "module",
                                          "request_id", "user_id", "q", "limit", "cursor",
                                          NULL};

    return prepare_search(r, allowed, AGG_TIME_NONE); /* a run's logs, however old */
}

/* ---- search SQL (job thread) ---- */

/* " AND <col> <op> $n" with <value>. */
static int cond(struct api_req *r, const char *col, const char *op, const char *value)
{
    int rc = agg_buf_printf(&r->sql, " AND %s %s ", col, op);

    return rc == AGG_OK ? api_param(r, value) : rc;
}

static int time_cond(struct api_req *r, const char *op, int64_t us)
{
    char ts[32];

    if (us == AGG_TIME_NONE)
        return AGG_OK;
    agg_time_format(us, ts);
    return cond(r, "created_at", op, ts);
}

/* The ILIKE pattern matching <q> anywhere, its wildcards escaped. */
static int like_pattern(const char *q, struct agg_buf *out)
{
    int rc = agg_buf_putc(out, '%');

    for (; rc == AGG_OK && *q != '\0'; q++) {
        if (*q == '%' || *q == '_' || *q == '\\')
            rc = agg_buf_putc(out, '\\');
        if (rc == AGG_OK)
            rc = agg_buf_putc(out, *q);
    }
    return rc == AGG_OK ? agg_buf_putc(out, '%') : rc;
}

/* The cursor "YYYY-MM-DD HH:MM:SS.ffffff/<id>" into its two keys. */
static bool split_cursor(struct api_req *r, char *ts, size_t tsize, const char **id)
{
    char *slash = strrchr(r->page.cursor, '/');
    int64_t us;

    if (slash == NULL || slash[1] == '\0' || strspn(slash + 1, "0123456789") != strlen(slash + 1) ||
        strlen(slash + 1) > 19 ||
        !agg_time_parse_iso8601(r->page.cursor, (size_t)(slash - r->page.cursor), &us))
        return api_fail(r, 400, "invalid_parameter", "cursor", "cursor is not one this API gave");
    agg_time_format(us, ts);
    (void)tsize;
    *id = slash + 1;
    return true;
}

static int search_sql(struct api_req *r, const struct log_filter *f)
{
    struct agg_buf like;
    char num[32];
    int rc;

    api_sql_reset(r);
    rc = agg_buf_printf(&r->sql, "SELECT ");
    if (rc == AGG_OK)
        rc = api_res_json_expr(&r->sql, &logs_res);
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, ", to_char(created_at, 'YYYY-MM-DD HH24:MI:SS.US') || '/'"
                                     " || id FROM system_logs WHERE true");
    if (rc == AGG_OK)
        rc = time_cond(r, ">=", f->since_us);
    if (rc == AGG_OK)
        rc = time_cond(r, "<", f->until_us);
    if (rc == AGG_OK && f->level >= 0)
        rc = cond(r, "level", "=", agg_level_name((enum agg_level)f->level));
    for (int i = 0; rc == AGG_OK && i < N_STR_FILTERS; i++) {
        if (f->has_str[i])
            rc = cond(r, str_filters[i].name, "=", f->str[i]);
    }
    if (rc == AGG_OK && f->has_user) {
        snprintf(num, sizeof(num), "%d", f->user_id);
        rc = cond(r, "user_id", "=", num);
    }
    if (rc == AGG_OK && f->has_q) {
        agg_buf_init(&like);
        rc = like_pattern(f->q, &like);
        if (rc == AGG_OK)
            rc = cond(r, "message", "ILIKE", like.data);
        agg_buf_clear(&like);
    }
    return rc;
}

static void search(struct api_req *r, PGconn *conn, const struct log_filter *f)
{
    char ts[32];
    const char *id = NULL;
    int rc;

    if (r->page.has_cursor && !split_cursor(r, ts, sizeof(ts), &id))
        return;
    rc = search_sql(r, f);
    if (rc == AGG_OK && id != NULL) {
        rc = agg_buf_printf(&r->sql, " AND (created_at, id) < (");
        if (rc == AGG_OK)
            rc = api_param(r, ts);
        if (rc == AGG_OK)
            rc = agg_buf_printf(&r->sql, "::timestamp, ");
        if (rc == AGG_OK)
            rc = api_param(r, id);
        if (rc == AGG_OK)
            rc = agg_buf_printf(&r->sql, "::bigint)");
    }
    api_run_list(r, conn, rc, "created_at DESC, id DESC");
}

void api_logs_work(struct api_req *r, PGconn *conn)
{
    search(r, conn, r->data);
}

void api_run_logs_work(struct api_req *r, PGconn *conn)
{
    struct log_filter *f = r->data;
    char run[16], pipe[16];
    const char *p[2] = {run, pipe};
    PGresult *q;
    bool found;

    snprintf(run, sizeof(run), "%d", r->ids[1]);
    snprintf(pipe, sizeof(pipe), "%d", r->ids[0]);
    q = api_exec(r, conn, "SELECT 1 FROM pipeline_runs WHERE id = $1 AND pipeline_id = $2", 2, p,
                 PGRES_TUPLES_OK);
    if (q == NULL)
        return;
    found = PQntuples(q) == 1;
    PQclear(q);
    if (!found) {
        api_fail(r, 404, "not_found", NULL, "no such pipeline run");
        return;
    }
    snprintf(f->str[CORRELATION], sizeof(f->str[CORRELATION]), "%s", run);
    f->has_str[CORRELATION] = true;
    search(r, conn, f);
}

/* ---- GET partitions: what `aggd partitions list` prints, as JSON ---- */

static void gen_key(yajl_gen g, int col)
{
    const char *name = st_partitions_columns[col];

    yajl_gen_string(g, (const unsigned char *)name, strlen(name));
}

static void gen_text_or_null(yajl_gen g, int col, const char *s)
{
    gen_key(g, col);
    if (s == NULL)
        yajl_gen_null(g);
    else
        yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

/* A count as a number; as the text of its digits from 19 of them on (and when negative),
 * as this answer always gave it. */
static void gen_count(yajl_gen g, int col, bool has, int64_t v)
{
    char text[24];

    gen_key(g, col);
    if (!has) {
        yajl_gen_null(g);
        return;
    }
    if (v >= 0 && v < INT64_C(1000000000000000000)) {
        yajl_gen_integer(g, v);
        return;
    }
    snprintf(text, sizeof(text), "%" PRId64, v);
    yajl_gen_string(g, (const unsigned char *)text, strlen(text));
}

static int gen_partition(void *arg, const struct st_partitions_row *row)
{
    yajl_gen g = arg;

    yajl_gen_map_open(g);
    gen_text_or_null(g, 0, row->table);
    gen_text_or_null(g, 1, row->month);
    gen_text_or_null(g, 2, row->where);
    gen_text_or_null(g, 3, row->archive_state);
    gen_count(g, 4, row->has_rows, row->rows);
    gen_count(g, 5, row->has_bytes, row->bytes);
    gen_text_or_null(g, 6, row->range);
    yajl_gen_map_close(g);
    return AGG_OK;
}

void api_partitions_work(struct api_req *r, PGconn *conn)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    struct agg_err err = {0};
    const unsigned char *buf;
    size_t blen;

    if (g == NULL) {
        api_fail(r, 503, "unavailable", NULL, "out of memory");
        return;
    }
    yajl_gen_map_open(g);
    yajl_gen_string(g, (const unsigned char *)"items", 5);
    yajl_gen_array_open(g);
    if (st_partitions_each(conn, gen_partition, g, &err) != AGG_OK) {
        AGG_LOG_WARN("api", "could not list partitions: %s", err.msg);
        api_fail(r, 503, "unavailable", NULL, "cannot list partitions now");
        goto out;
    }
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &buf, &blen);
    if (agg_buf_append(&r->out, buf, blen) == AGG_OK)
        r->status = 200;
    else
        api_fail(r, 503, "unavailable", NULL, "out of memory");

out:
    yajl_gen_free(g);
}

/* ---- GET logs/tail: server-sent events ---- */

struct tail_client {
    struct api_tail *t;
    struct evhttp_request *req;
    struct log_filter f;
    uint64_t dropped;
    struct tail_client *prev, *next;
};

struct api_tail {
    struct st_pipeline *pipeline;
    struct tail_client *clients;
    int nclients;
    struct event *keepalive;
    struct agg_buf text; /* the current event as SSE */
    struct agg_buf fix;  /* scratch for UTF-8 repair */
};

static void client_unlink(struct tail_client *c)
{
    struct api_tail *t = c->t;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        t->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    t->nclients--;
    free(c);
}

/* A request still streaming is detached from its closing connection and left to us:
 * ending the reply frees it. */
static void on_client_close(struct evhttp_connection *evcon, void *arg)
{
    struct tail_client *c = arg;

    (void)evcon;
    if (evhttp_request_get_connection(c->req) == NULL)
        evhttp_send_reply_end(c->req);
    client_unlink(c);
}

static size_t backlog(struct tail_client *c)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
    struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;

    return bev != NULL ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void chunk(struct tail_client *c, const char *text, size_t len)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL)
        return;
    evbuffer_add(b, text, len);
    evhttp_send_reply_chunk(c->req, b);
    evbuffer_free(b);
}

/* Sends <text> unless the client is too far behind: then counts it dropped, and says
 * so before the next event that fits. */
static void deliver(struct tail_client *c, const char *text, size_t len)
{
    char note[96];
    int n;

    if (backlog(c) > TAIL_MAX_BUFFER) {
        c->dropped++;
        return;
    }
    if (c->dropped > 0) {
        n = snprintf(note, sizeof(note), "event: dropped\ndata: {\"count\":%llu}\n\n",
                     (unsigned long long)c->dropped);
        chunk(c, note, (size_t)n);
        c->dropped = 0;
    }
    chunk(c, text, len);
}

static bool str_is(struct agg_str s, const char *want)
{
    return s.p != NULL && s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

static bool contains_nocase(struct agg_str hay, const char *needle)
{
    size_t n = strlen(needle);

    if (hay.p == NULL)
        return false;
    for (size_t i = 0; i + n <= hay.len; i++) {
        if (strncasecmp(hay.p + i, needle, n) == 0)
            return true;
    }
    return false;
}

static bool matches(const struct log_filter *f, const struct agg_record *rec)
{
    int level = rec->has_level ? (int)rec->level : (int)AGG_LEVEL_INFO;

    if (f->level >= 0 && f->level != level)
        return false;
    for (int i = 0; i < N_STR_FILTERS; i++) {
        if (f->has_str[i] && !str_is(rec->str[str_filters[i].field], f->str[i]))
            return false;
    }
    if (f->has_user && (!rec->has_user_id || rec->user_id != f->user_id))
        return false;
    return !f->has_q || contains_nocase(rec->str[AGG_F_MESSAGE], f->q);
}

static void gen_text(struct api_tail *t, yajl_gen g, const char *key, struct agg_str s)
{
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    if (agg_utf8_is_clean(s.p, s.len)) {
        yajl_gen_string(g, (const unsigned char *)s.p, s.len);
        return;
    }
    agg_buf_reset(&t->fix);
    if (agg_utf8_repair(&t->fix, s.p, s.len) == AGG_OK && t->fix.data != NULL)
        yajl_gen_string(g, (const unsigned char *)t->fix.data, t->fix.len);
    else
        yajl_gen_null(g);
}

static void gen_int(yajl_gen g, const char *key, bool has, long long v)
{
    if (!has)
        return;
    yajl_gen_string(g, (const unsigned char *)key, strlen(key));
    yajl_gen_integer(g, v);
}

/* The record as "event: log\ndata: {…}\n\n" into t->text. */
static int render(struct api_tail *t, const struct agg_record *rec, int64_t created_us)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const char *lv = agg_level_name(rec->has_level ? rec->level : AGG_LEVEL_INFO);
    char ts[40];
    const unsigned char *buf;
    size_t len;
    int rc;

    if (g == NULL)
        return AGG_ENOMEM;
    agg_time_format_rfc3339(created_us, ts);
    yajl_gen_map_open(g);
    gen_text(t, g, "created_at", (struct agg_str){ts, strlen(ts)});
    gen_text(t, g, "level", (struct agg_str){lv, strlen(lv)});
    for (int i = 0; i < AGG_F_STR_COUNT; i++) {
        if (rec->str[i].p != NULL)
            gen_text(t, g, agg_field_name(i), rec->str[i]);
    }
    gen_int(g, "line_number", rec->has_line_number, rec->line_number);
    gen_int(g, "user_id", rec->has_user_id, rec->user_id);
    gen_int(g, "duration_ms", rec->has_duration_ms, rec->duration_ms);
    if (rec->has_memory_usage_mb) {
        yajl_gen_string(g, (const unsigned char *)"memory_usage_mb", 15);
        yajl_gen_double(g, rec->memory_usage_mb);
    }
    if (rec->extra.p != NULL && rec->extra.len > 0) {
        /* already a JSON object's text: written through as it is */
        yajl_gen_string(g, (const unsigned char *)"extra_data", 10);
        yajl_gen_number(g, rec->extra.p, rec->extra.len);
    }
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &buf, &len);
    agg_buf_reset(&t->text);
    rc = agg_buf_printf(&t->text, "event: log\ndata: ");
    if (rc == AGG_OK)
        rc = agg_buf_append(&t->text, buf, len);
    if (rc == AGG_OK)
        rc = agg_buf_append(&t->text, "\n\n", 2);
    yajl_gen_free(g);
    return rc;
}

static void on_event(void *arg, const struct agg_record *rec, int64_t created_us)
{
    struct api_tail *t = arg;
    bool rendered = false;

    for (struct tail_client *c = t->clients, *next; c != NULL; c = next) {
        next = c->next;
        if (!matches(&c->f, rec))
            continue;
        if (!rendered && render(t, rec, created_us) != AGG_OK)
            return;
        rendered = true;
        deliver(c, t->text.data, t->text.len);
    }
}

static void on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    struct api_tail *t = arg;

    (void)fd;
    (void)what;
    /* only to idle clients: a keepalive is no event to count as lost */
    for (struct tail_client *c = t->clients; c != NULL; c = c->next) {
        if (backlog(c) == 0)
            chunk(c, ": keepalive\n\n", 13);
    }
}

bool api_tail_prepare(struct api_req *r)
{
    static const char *const allowed[] = {"level", "logger_name", "module", "correlation_id",
                                          "request_id", "user_id", "q", NULL};
    struct api_tail *t = r->ctx;
    struct evhttp_connection *evcon = evhttp_request_get_connection(r->req);
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(r->req);
    struct tail_client *c;

    if (!api_query_check(r, allowed))
        return false;
    if (t == NULL || evcon == NULL)
        return api_fail(r, 503, "unavailable", NULL, "the live tail is not available");
    if (t->nclients >= TAIL_MAX_CLIENTS)
        return api_fail(r, 503, "busy", NULL, "too many live tails; retry later");
    c = agg_calloc(1, sizeof(*c));
    if (c == NULL)
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    if (!parse_filter(r, &c->f, AGG_TIME_NONE)) {
        free(c);
        return false;
    }
    c->t = t;
    c->req = r->req;
    c->next = t->clients;
    if (t->clients != NULL)
        t->clients->prev = c;
    t->clients = c;
    t->nclients++;
    evhttp_connection_set_closecb(evcon, on_client_close, c);
    evhttp_add_header(hdr, "Content-Type", "text/event-stream");
    evhttp_add_header(hdr, "Cache-Control", "no-store");
    evhttp_send_reply_start(r->req, 200, "OK");
    chunk(c, ": connected\n\n", 13);
    r->taken = true;
    return false;
}

struct api_tail *api_tail_new(struct event_base *base, struct st_pipeline *pipeline,
                              struct agg_err *err)
{
    struct api_tail *t = agg_calloc(1, sizeof(*t));
    struct timeval every = {TAIL_KEEPALIVE_S, 0};

    if (t == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    t->pipeline = pipeline;
    agg_buf_init(&t->text);
    agg_buf_init(&t->fix);
    t->keepalive = event_new(base, -1, EV_PERSIST, on_keepalive, t);
    if (t->keepalive == NULL || event_add(t->keepalive, &every) != 0) {
        agg_err_set(err, AGG_ENOMEM, "could not start the live tail's timer");
        goto fail;
    }
    if (st_pipeline_tap(pipeline, on_event, t) != AGG_OK) {
        agg_err_set(err, AGG_EFULL, "no room for the live tail's pipeline tap");
        goto fail;
    }
    return t;

fail:
    if (t->keepalive != NULL)
        event_free(t->keepalive);
    agg_buf_clear(&t->text);
    agg_buf_clear(&t->fix);
    free(t);
    return NULL;
}

void api_tail_free(struct api_tail *t)
{
    if (t == NULL)
        return;
    st_pipeline_untap(t->pipeline, on_event, t);
    while (t->clients != NULL) {
        struct tail_client *c = t->clients;
        struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);

        if (evcon != NULL)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
        evhttp_send_reply_end(c->req);
        client_unlink(c);
    }
    event_free(t->keepalive);
    agg_buf_clear(&t->text);
    agg_buf_clear(&t->fix);
    free(t);
}
