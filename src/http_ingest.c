/*
 * src/http_ingest.c — the HTTP ingest route.
 *
 * Place: see src/http_ingest.h; DESIGN.md "HTTP" is the contract.
 * Threads: event-loop thread only.
 * Ownership: each request has a context that lives until the reply is sent and no
 *            asynchronous step (token check, commit wait) still refers to it.
 * Traps: a client may hang up while its token is checked or its rows are being
 *        committed; the connection's close callback marks the context dead so
 *        nothing is sent to a freed request.
 */
#include "src/http_ingest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <yajl/yajl_gen.h>

#include "ingest/decompress.h"
#include "ingest/json.h"
#include "core/alloc.h"
#include "core/log.h"

#define MAX_REPORTED_ERRORS 100
/* A request that finds every writer busy waits for room rather than bouncing with a
 * 503: a client retrying after Retry-After seconds would idle the writers meanwhile.
 * Bounded in time and in the body bytes held, so memory stays bounded. */
#define HOLD_MAX_MS 5000
#define HOLD_MAX_BYTES (32u << 20)
#define HOLD_CHECK_MS 100
/* A request whose events cannot reach the disk (full, failing) is answered 503 after
 * this long rather than when space returns; its events may still land later. */
#define SYNC_MAX_MS 2000
#define AUTH_REFUSED "a valid bearer token of scope ingest is required"

struct agg_http_ingest {
    struct agg_http *http;
    struct st_pipeline *pipeline;
    struct api_sessions *sessions;
    struct ing_json *json;
    struct agg_http_gate gate; /* what the route admits before its body */
    bool auth;
    size_t max_body;
    struct agg_buf body; /* decompressed body of the request being decoded */
    struct request *held, *held_tail; /* waiting for room, oldest first */
    size_t held_bytes;
    struct event *hold_timer;
    bool stopped;
};

struct request {
    struct agg_http_ingest *h;
    struct evhttp_request *req; /* NULL once the client hung up */
    struct evhttp_request *orphan; /* left to us by libevent when the client hung up */
    int refs;                   /* the request itself + pending async steps */
    bool wait_commit;
    char peer[64];
    int64_t received_us;
    size_t accepted, rejected;
    size_t refused;      /* ?wait=commit: rows PostgreSQL refused (in ingest_rejects) */
    uint64_t from;       /* the spool position before its first event */
    struct event *sync_timer; /* answers 503 when the spool is stuck */
    bool answered;
    yajl_gen errors; /* the "errors" array being built */
    size_t nerrors;
    bool failed; /* adding to the pipeline failed (out of memory) */
    bool ndjson;
    enum ing_encoding enc;
    struct request *next_held;
    int64_t held_us;
    size_t held_len;
};

static void request_unref(struct request *r)
{
    if (--r->refs > 0)
        return;
    if (r->orphan != NULL)
        evhttp_request_free(r->orphan);
    if (r->sync_timer != NULL)
        event_free(r->sync_timer);
    if (r->errors != NULL)
        yajl_gen_free(r->errors);
    free(r);
}

/* The client hung up. libevent detaches a request nobody answered yet from its
 * connection and leaves it to us (freed with the context); otherwise it frees it. */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct request *r = arg;

    (void)evcon;
    if (r->req != NULL && evhttp_request_get_connection(r->req) == NULL)
        r->orphan = r->req;
    r->req = NULL;
}

/* Sends the reply (if the client is still there) and ends the request's own ref. */
static void finish(struct request *r, int code, const char *ecode, const char *message)
{
    r->answered = true;
    if (r->req != NULL) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(r->req);

        if (evcon != NULL)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
        if (code == 401)
            evhttp_add_header(evhttp_request_get_output_headers(r->req), "WWW-Authenticate",
                              "Bearer realm=\"aggd\"");
        if (code == 503)
            evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After", "1");
        if (ecode != NULL) {
            agg_http_reply_error(r->req, code, ecode, message, NULL);
        } else {
            const unsigned char *buf;
            size_t len;
            yajl_gen g = r->errors;
            char head[128];

            /* {"accepted":N,"rejected":M,"errors":[...]} around the errors array; once
             * committed, accepted counts rows in system_logs and refused those
             * PostgreSQL refused (among the rejected) */
            yajl_gen_array_close(g);
            yajl_gen_get_buf(g, &buf, &len);
            if (code == 200)
                snprintf(head, sizeof(head),
                         "{\"accepted\":%zu,\"rejected\":%zu,\"refused\":%zu,\"errors\":",
                         r->accepted - r->refused, r->rejected + r->refused, r->refused);
            else
                snprintf(head, sizeof(head), "{\"accepted\":%zu,\"rejected\":%zu,\"errors\":",
                         r->accepted, r->rejected);
            {
                struct evbuffer *out = evbuffer_new();
                struct evkeyvalq *hdr = evhttp_request_get_output_headers(r->req);

                evhttp_add_header(hdr, "Content-Type", "application/json");
                if (out != NULL) {
                    evbuffer_add(out, head, strlen(head));
                    evbuffer_add(out, buf, len);
                    evbuffer_add(out, "}\n", 2);
                }
                evhttp_send_reply(r->req, code, NULL, out);
                if (out != NULL)
                    evbuffer_free(out);
            }
        }
        r->req = NULL;
    }
    request_unref(r);
}

/* Reports event <index> in the reply's errors and counts it rejected. */
static void sink_error(struct request *r, size_t index, const char *why)
{
    r->rejected++;
    if (r->nerrors < MAX_REPORTED_ERRORS) {
        yajl_gen_map_open(r->errors);
        yajl_gen_string(r->errors, (const unsigned char *)"index", 5);
        yajl_gen_integer(r->errors, (long long)index);
        yajl_gen_string(r->errors, (const unsigned char *)"error", 5);
        yajl_gen_string(r->errors, (const unsigned char *)why, strlen(why));
        yajl_gen_map_close(r->errors);
        r->nerrors++;
    }
}

static int sink_emit(void *arg, const struct agg_record *rec)
{
    struct request *r = arg;

    if (r->failed ||
        st_pipeline_add(r->h->pipeline, rec, AGG_TRANSPORT_HTTP, r->peer, r->received_us) !=
            AGG_OK) {
        r->failed = true; /* this and every later event is reported, not taken */
        st_pipeline_dropped(r->h->pipeline, AGG_TRANSPORT_HTTP, 1);
        sink_error(r, r->accepted + r->rejected, "not taken: the spool is full; send it again");
        return AGG_OK;
    }
    r->accepted++;
    return AGG_OK;
}

static void sink_reject(void *arg, size_t index, const char *why, const char *raw, size_t len)
{
    struct request *r = arg;

    sink_error(r, index, why);
    /* kept in ingest_rejects too; if the spool cannot take it, the reply says why */
    if (st_pipeline_reject(r->h->pipeline, AGG_TRANSPORT_HTTP, r->peer, r->received_us, why,
                            raw, len) != AGG_OK)
        st_pipeline_dropped(r->h->pipeline, AGG_TRANSPORT_HTTP, 1);
}

static void on_landed(void *arg, bool landed, size_t refused)
{
    struct request *r = arg;

    r->refused = refused < r->accepted ? refused : r->accepted;
    if (landed)
        finish(r, 200, NULL, NULL);
    else
        finish(r, 503, "unavailable", "aggd stopped before the events were committed");
}

static void on_spooled(void *arg)
{
    struct request *r = arg;

    if (r->sync_timer != NULL)
        evtimer_del(r->sync_timer);
    if (r->answered) { /* a 503 went out already: only the wait's reference is left */
        request_unref(r);
        return;
    }
    request_unref(r); /* the wait's reference; the request's own one stays */
    if (r->req == NULL || !r->wait_commit) {
        finish(r, 202, NULL, NULL); /* (no reply when the client is gone) */
        return;
    }
    if (st_pipeline_wait(r->h->pipeline, r->from, on_landed, r) != AGG_OK)
        finish(r, 503, "unavailable", "out of memory");
}

/* The spool has not made the events durable for SYNC_MAX_MS: when it is stuck (a full
 * or failing disk) the client hears so now, not when space returns. */
static void on_sync_timer(evutil_socket_t fd, short what, void *arg)
{
    struct request *r = arg;
    struct timeval tv = {SYNC_MAX_MS / 1000, (SYNC_MAX_MS % 1000) * 1000};
    char why[256];

    (void)fd;
    (void)what;
    if (r->answered)
        return;
    if (!st_pipeline_is_full(r->h->pipeline)) {
        evtimer_add(r->sync_timer, &tv); /* slow, not stuck */
        return;
    }
    st_pipeline_problem(r->h->pipeline, why, sizeof(why));
    finish(r, 503, "unavailable",
           why[0] != '\0' ? why : "the spool cannot make the events durable now");
}

/* The media type of <ct> without parameters, lower-cased into <out>. */
static void media_type(const char *ct, char *out, size_t size)
{
    size_t n = 0;

    if (ct != NULL) {
        while (*ct == ' ')
            ct++;
        for (; ct[n] != '\0' && ct[n] != ';' && ct[n] != ' ' && n + 1 < size; n++)
            out[n] = (char)((ct[n] >= 'A' && ct[n] <= 'Z') ? ct[n] + 32 : ct[n]);
    }
    out[n] = '\0';
}

/* Decodes the body into the pipeline and waits for the spool to acknowledge. */
static void decode(struct request *r)
{
    struct agg_http_ingest *h = r->h;
    struct evbuffer *body = evhttp_request_get_input_buffer(r->req);
    const char *data;
    size_t len = evbuffer_get_length(body);
    struct agg_sink sink = {sink_emit, sink_reject, r};
    struct ing_json_stats stats = {0};
    struct agg_err err = {0};
    int rc;

    data = (const char *)evbuffer_pullup(body, -1);
    if (r->enc != ING_ENCODING_IDENTITY) {
        agg_buf_reset(&h->body);
        rc = ing_decompress(r->enc, data, len, h->max_body, &h->body, &err);
        if (rc == AGG_EFULL) {
            finish(r, 413, "too_large", "the decompressed body is over ingest.max_body_bytes");
            return;
        }
        if (rc != AGG_OK) {
            finish(r, 400, "bad_encoding", err.msg);
            return;
        }
        data = h->body.data != NULL ? h->body.data : "";
        len = h->body.len;
    }
    r->errors = yajl_gen_alloc(NULL);
    if (r->errors == NULL) {
        finish(r, 503, "unavailable", "out of memory");
        return;
    }
    yajl_gen_array_open(r->errors);
    r->from = st_pipeline_tail(h->pipeline);
    if (r->ndjson)
        rc = ing_json_decode_ndjson(h->json, data, len, &sink, &stats, &err);
    else
        rc = ing_json_decode_document(h->json, data, len, &sink, &stats, &err);
    st_pipeline_count(h->pipeline, AGG_TRANSPORT_HTTP, ST_COUNT_OVERSIZED,
                       (int64_t)stats.oversized);
    if (rc != AGG_OK && !r->failed && r->accepted == 0 && r->rejected == 0) {
        finish(r, 400, "bad_json", err.msg);
        return;
    }
    if (r->failed && r->accepted == 0) {
        finish(r, 503, "backpressure", "the spool cannot take events now; retry later");
        return;
    }
    /* Acknowledged only once durable in the spool (spool.fsync); the wait holds a
     * reference of its own, so a 503 for a stuck disk may answer first. */
    r->sync_timer = evtimer_new(agg_http_base(h->http), on_sync_timer, r);
    if (r->sync_timer == NULL) {
        finish(r, 503, "unavailable", "out of memory");
        return;
    }
    r->refs += 2; /* the wait's, and ours across the call: on_spooled may run inside */
    if (st_pipeline_sync(h->pipeline, on_spooled, r) != AGG_OK) {
        r->refs--;
        finish(r, 503, "unavailable", "out of memory");
    } else if (!r->answered) {
        struct timeval tv = {SYNC_MAX_MS / 1000, (SYNC_MAX_MS % 1000) * 1000};

        evtimer_add(r->sync_timer, &tv);
    }
    request_unref(r);
}

static size_t body_bytes(const struct request *r)
{
    return evbuffer_get_length(evhttp_request_get_input_buffer(r->req));
}

/* Queues <r> until the pipeline has room; false when the queue is at its limits. */
static bool hold(struct request *r)
{
    struct agg_http_ingest *h = r->h;
    size_t len = body_bytes(r);
    struct timeval tv = {0, HOLD_CHECK_MS * 1000};

    if (h->stopped || h->held_bytes + len > HOLD_MAX_BYTES)
        return false;
    r->held_us = agg_time_now_us();
    r->held_len = len;
    r->next_held = NULL;
    if (h->held_tail != NULL)
        h->held_tail->next_held = r;
    else
        h->held = r;
    h->held_tail = r;
    h->held_bytes += len;
    if (!evtimer_pending(h->hold_timer, NULL))
        evtimer_add(h->hold_timer, &tv);
    return true;
}

static struct request *unhold(struct agg_http_ingest *h)
{
    struct request *r = h->held;

    h->held = r->next_held;
    if (h->held == NULL)
        h->held_tail = NULL;
    h->held_bytes -= r->held_len;
    return r;
}

/* Answers 503 when the pipeline cannot take <r> now and holding is no answer. */
static void refuse_full(struct request *r)
{
    char why[256];

    st_pipeline_problem(r->h->pipeline, why, sizeof(why));
    finish(r, 503, "backpressure", why[0] != '\0' ? why : "aggd is saturated; retry later");
}

/* Admits held requests, oldest first, while the pipeline has room. */
static void on_drain(void *arg)
{
    struct agg_http_ingest *h = arg;

    while (h->held != NULL && !st_pipeline_is_full(h->pipeline)) {
        struct request *r = unhold(h);

        if (r->req == NULL)
            request_unref(r); /* the client hung up while waiting */
        else
            decode(r);
    }
}

/* Answers requests held too long (or all of them once stopping) with a 503. */
static void expire_held(struct agg_http_ingest *h, bool all)
{
    int64_t now = agg_time_now_us();

    while (h->held != NULL &&
           (all || h->held->req == NULL || now - h->held->held_us >= HOLD_MAX_MS * 1000)) {
        struct request *r = unhold(h);

        if (r->req == NULL)
            request_unref(r);
        else
            refuse_full(r);
    }
}

static void on_hold_timer(evutil_socket_t fd, short what, void *arg)
{
    struct agg_http_ingest *h = arg;
    struct timeval tv = {0, HOLD_CHECK_MS * 1000};

    (void)fd;
    (void)what;
    on_drain(h); /* a drain notice may have raced with a new arrival */
    expire_held(h, false);
    if (h->held != NULL)
        evtimer_add(h->hold_timer, &tv);
}

/* Reads the body's format from the headers <in> into <ndjson> and <enc>: NULL, or the
 * error code of a 415 with its message in <why>. */
static const char *body_format(const struct evkeyvalq *in, bool *ndjson, enum ing_encoding *enc,
                               const char **why)
{
    char type[64];

    media_type(evhttp_find_header(in, "Content-Type"), type, sizeof(type));
    if (strcmp(type, "application/x-ndjson") == 0 || strcmp(type, "application/ndjson") == 0 ||
        strcmp(type, "application/jsonl") == 0 || strcmp(type, "application/x-jsonlines") == 0)
        *ndjson = true;
    else if (strcmp(type, "application/json") == 0)
        *ndjson = false;
    else {
        *why = "Content-Type must be application/x-ndjson or application/json";
        return "unsupported_media_type";
    }
    if (!ing_encoding_parse(evhttp_find_header(in, "Content-Encoding"), enc)) {
        *why = "Content-Encoding must be gzip, zstd or identity";
        return "unsupported_encoding";
    }
    return NULL;
}

static void ingest(struct request *r)
{
    struct agg_http_ingest *h = r->h;
    const char *why = NULL;
    const char *bad = body_format(evhttp_request_get_input_headers(r->req), &r->ndjson, &r->enc,
                                  &why);

    if (bad != NULL) {
        finish(r, 415, bad, why);
        return;
    }
    if (!st_pipeline_accepting(h->pipeline)) {
        finish(r, 503, "starting", "aggd is replaying its spool; retry shortly");
        return;
    }
    if (st_pipeline_is_spool_full(h->pipeline)) {
        refuse_full(r);
        return;
    }
    /* Behind earlier held requests, or no writer free: wait in line. */
    if (h->held != NULL || st_pipeline_is_full(h->pipeline)) {
        if (!hold(r))
            refuse_full(r);
        return;
    }
    decode(r);
}

/* ---- before the body: the connection guard asks (core/http.h, gates) ---- */

static void on_gate_auth(void *arg, int status, const struct api_principal *who)
{
    (void)who;
    if (status == AGG_ENOTFOUND)
        agg_http_gate_done(arg, 401, "unauthorized", AUTH_REFUSED);
    else if (status != AGG_OK)
        agg_http_gate_done(arg, 503, "unavailable", "cannot check the token now");
    else
        agg_http_gate_done(arg, 0, NULL, NULL);
}

/* The token (a lookup is cached for the route's own check) and the body's format. */
static void gate(void *arg, const struct agg_http_head *head, struct agg_http_pending *p)
{
    struct agg_http_ingest *h = arg;
    const char *why = NULL, *bad;
    enum ing_encoding enc;
    bool ndjson;

    bad = body_format(head->headers, &ndjson, &enc, &why);
    if (bad != NULL)
        agg_http_gate_note(p, 415, bad, why); /* after a 401, as the route answers */
    if (!h->auth)
        agg_http_gate_done(p, 0, NULL, NULL);
    else
        api_session_check(h->sessions, evhttp_find_header(head->headers, "Authorization"),
                          "ingest", on_gate_auth, p);
}

static void on_auth(void *arg, int status, const struct api_principal *who)
{
    struct request *r = arg;

    (void)who;
    if (r->req == NULL) {
        request_unref(r);
        return;
    }
    if (status == AGG_ENOTFOUND)
        finish(r, 401, "unauthorized", AUTH_REFUSED);
    else if (status != AGG_OK)
        finish(r, 503, "unavailable", "cannot check the token now");
    else
        ingest(r);
}

static bool wants_commit(struct evhttp_request *req)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq q = {0};
    const char *wait;
    bool yes;

    if (query == NULL || evhttp_parse_query_str(query, &q) != 0)
        return false;
    wait = evhttp_find_header(&q, "wait");
    yes = wait != NULL && strcmp(wait, "commit") == 0;
    evhttp_clear_headers(&q);
    return yes;
}

static void on_post(struct evhttp_request *req, const struct agg_http_match *m, void *arg)
{
    struct agg_http_ingest *h = arg;
    struct request *r = agg_calloc(1, sizeof(*r));
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);

    (void)m;
    if (r == NULL) {
        agg_http_reply_error(req, 503, "unavailable", "out of memory", NULL);
        return;
    }
    r->h = h;
    r->req = req;
    r->refs = 1;
    r->received_us = agg_time_now_us();
    r->wait_commit = wants_commit(req);
    /* every body that reached the route, as sent: whatever its fate */
    st_pipeline_count(h->pipeline, AGG_TRANSPORT_HTTP, ST_COUNT_BYTES,
                       (int64_t)evbuffer_get_length(evhttp_request_get_input_buffer(req)));
    agg_http_peer(req, r->peer, sizeof(r->peer));
    if (evcon != NULL)
        evhttp_connection_set_closecb(evcon, on_close, r);
    if (!h->auth) {
        ingest(r);
        return;
    }
    api_session_check(h->sessions,
                      evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization"),
                      "ingest", on_auth, r);
}

struct agg_http_ingest *agg_http_ingest_new(struct agg_http *http,
                                            const struct agg_ingest_opts *opts,
                                            struct st_pipeline *pipeline,
                                            struct api_sessions *sessions, struct agg_err *err)
{
    struct agg_http_ingest *h = agg_calloc(1, sizeof(*h));

    if (h == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    h->http = http;
    h->pipeline = pipeline;
    h->sessions = sessions;
    h->auth = opts->http_auth == AGG_HTTP_AUTH_TOKEN;
    h->max_body = (size_t)opts->max_body_bytes;
    agg_buf_init(&h->body);
    h->hold_timer = evtimer_new(agg_http_base(http), on_hold_timer, h);
    if (h->hold_timer == NULL ||
        st_pipeline_on_drain(pipeline, on_drain, h) != AGG_OK) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    h->json = ing_json_new((size_t)opts->max_message_bytes, err);
    if (h->json == NULL)
        goto fail;
    h->gate = (struct agg_http_gate){h->max_body, gate};
    if (agg_http_route_gated(http, EVHTTP_REQ_POST, "/v1/logs", on_post, h, &h->gate) !=
        AGG_OK) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    agg_http_set_max_body(http, h->max_body);
    return h;

fail:
    agg_http_ingest_free(h);
    return NULL;
}

void agg_http_ingest_set_max_body(struct agg_http_ingest *h, struct agg_http *http,
                                  int64_t max_body_bytes)
{
    if (h == NULL)
        return;
    h->max_body = (size_t)max_body_bytes;
    h->gate.max_body_bytes = h->max_body; /* the gate reads it for each request */
    agg_http_set_max_body(http, h->max_body);
}

void agg_http_ingest_stop(struct agg_http_ingest *h)
{
    if (h == NULL || h->stopped)
        return;
    h->stopped = true;
    expire_held(h, true);
    st_pipeline_off_drain(h->pipeline, on_drain, h);
}

void agg_http_ingest_free(struct agg_http_ingest *h)
{
    if (h == NULL)
        return;
    agg_http_ingest_stop(h);
    if (h->hold_timer != NULL)
        event_free(h->hold_timer);
    ing_json_free(h->json);
    agg_buf_clear(&h->body);
    free(h);
}
