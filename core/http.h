/*
 * core/http.h — the HTTP listener (libevent evhttp) and its route table.
 *
 * Place: server.c creates it; ingest, api and ops handlers register routes.
 * Threads: event-loop thread only.
 * Ownership: owns the evhttp and its bound sockets; handlers borrow the request
 *            until they reply (now or later, still on the loop thread).
 * Traps: every connection reads through a guard (core/http_guard.c) that sees each
 *        request's head before evhttp does: the route, method, framing, declared length
 *        and the route's gate (token, media type) are checked before any body byte is
 *        read, and refusals are answered with Connection: close.
 */
#ifndef AGGD_CORE_HTTP_H
#define AGGD_CORE_HTTP_H

#include <event2/event.h>
#include <event2/http.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/tls.h"

#define AGG_HTTP_MAX_PARAMS 4
/* Largest body of a route registered without a gate (health, metrics). */
#define AGG_HTTP_DEFAULT_MAX_BODY (64 * 1024)
/* A connection silent (or not taking its reply) this long is closed. */
#define AGG_HTTP_IDLE_TIMEOUT_S 60
/* Largest request head (request line and header fields); more answers 431. */
#define AGG_HTTP_MAX_HEAD (64 * 1024)
/* After accept() fails for want of descriptors (EMFILE, ENFILE) the listener rests
 * this long before it accepts again. */
#define AGG_HTTP_ACCEPT_PAUSE_MS 250

struct agg_http;

/* Path parameters captured by `{name}` segments of the route pattern, in order.
 * Values are percent-decoded and point into the match, valid during the handler. */
struct agg_http_match {
    int n;
    const char *values[AGG_HTTP_MAX_PARAMS];
    char buf[1024];
};

typedef void (*agg_http_handler)(struct evhttp_request *req, const struct agg_http_match *m,
                                 void *arg);

/* Limits against slow and greedy clients (plain data). */
struct agg_http_limits {
    int64_t header_timeout_ms; /* a request's first byte to the end of its head */
    int64_t body_timeout_ms;   /* the end of its head to the end of its body */
    size_t max_connections;    /* open connections; beyond, the listener stops accepting */
    size_t inflight_body_bytes; /* bodies being read, all connections (declared length;
                                 * chunked ones count their route's limit); beyond, 503 */
};

/* A request's head as a gate sees it, before the body is read. Borrowed for the call. */
struct agg_http_head {
    enum evhttp_cmd_type method;
    const char *path;                 /* as sent, without the query */
    const struct evkeyvalq *headers;  /* the header fields */
    int64_t content_length;           /* declared length; -1 when chunked */
};

/* A head waiting for its gate's verdict (opaque). */
struct agg_http_pending;

/* Checks <head> of a request for the route registered with <arg>, before its body is
 * read, and calls agg_http_gate_done(<p>, ...) exactly once, now or later (loop thread). */
typedef void (*agg_http_gate_fn)(void *arg, const struct agg_http_head *head,
                                 struct agg_http_pending *p);

/* What a route admits before its body is read. */
struct agg_http_gate {
    size_t max_body_bytes; /* declared lengths above answer 413; chunked ones too, by evhttp */
    agg_http_gate_fn check; /* NULL: none */
};

/* Listens on <addr> ("host:port", "[v6]:port"; "": no plain listener, only the TLS
 * one of agg_http_listen_tls()), or with <fd> >= 0 on that socket, already bound to
 * <addr> and listening (owned from here, even on error), within <limits> (copied).
 * Caller owns the result: agg_http_free(). NULL + <err> when the address cannot be
 * bound. */
struct agg_http *agg_http_new(struct event_base *base, const char *addr, int fd,
                              const struct agg_http_limits *limits, struct agg_err *err);

/* Also serves the same routes over TLS (<tls>, borrowed until agg_http_free()) on
 * <addr>, or on <fd> >= 0 as for agg_http_new(); both listeners share the limits (one
 * connection cap, one body budget). Once, before the loop runs. */
int agg_http_listen_tls(struct agg_http *h, const char *addr, int fd, struct agg_tls *tls,
                        struct agg_err *err);
void agg_http_free(struct agg_http *h);

/* A reload changed the limits: deadlines and the budget apply to requests from now on,
 * the cap at once (the listener stops or starts accepting). Loop thread. */
void agg_http_set_limits(struct agg_http *h, const struct agg_http_limits *limits);

/* The loop <h> runs on. */
struct event_base *agg_http_base(const struct agg_http *h);

/* Routes <method> (EVHTTP_REQ_GET, ...) on <pattern> ("/api/v1/users/{id}") to <fn>.
 * <pattern> must outlive <h>. Unknown paths answer 404, known paths with another method
 * 405, both as JSON errors. */
int agg_http_route(struct agg_http *h, enum evhttp_cmd_type method, const char *pattern,
                   agg_http_handler fn, void *arg);

/* agg_http_route() with <gate> (borrowed until agg_http_free()) checking each request
 * that has a body from its head: its check gets <arg>. */
int agg_http_route_gated(struct agg_http *h, enum evhttp_cmd_type method, const char *pattern,
                         agg_http_handler fn, void *arg, const struct agg_http_gate *gate);

/* The gate's verdict on <p>: <status> 0 reads the body; else the request is answered
 * <status> with the error <ecode> and <message> (copied) before its body is read, and
 * the connection closed. A 0 after agg_http_gate_note() gives the noted verdict. */
void agg_http_gate_done(struct agg_http_pending *p, int status, const char *ecode,
                        const char *message);

/* Notes a verdict (copied) for <p> to give if the gate later finds nothing worse
 * (e.g. a wrong media type, answered only once the token is known to be good); the
 * first one noted stands (the guard notes a 413 before the gate runs). */
void agg_http_gate_note(struct agg_http_pending *p, int status, const char *ecode,
                        const char *message);

/* Bodies over <bytes> get evhttp's own 413 before any handler runs (the ceiling for
 * every route; gates set lower ones). */
void agg_http_set_max_body(struct agg_http *h, size_t bytes);

/* The client's "address:port" (IPv6 in brackets) into <out>. */
void agg_http_peer(struct evhttp_request *req, char *out, size_t size);

/* Replies <code> with the JSON text <body> (NUL-terminated). */
void agg_http_reply_json(struct evhttp_request *req, int code, const char *body);

/* Replies <code> with {"error":{"code":<ecode>,"message":<message>,"field":<field>}};
 * <field> may be NULL. */
void agg_http_reply_error(struct evhttp_request *req, int code, const char *ecode,
                          const char *message, const char *field);

#endif
