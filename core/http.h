/*
 * core/http.h — the HTTP listener (libevent evhttp) and its route table.
 *
 * Place: server.c creates it; ingest, api and ops handlers register routes.
 * Threads: event-loop thread only.
 * Ownership: owns the evhttp and its bound sockets; handlers borrow the request
 *            until they reply (now or later, still on the loop thread).
 */
#ifndef AGGD_CORE_HTTP_H
#define AGGD_CORE_HTTP_H

#include <event2/event.h>
#include <event2/http.h>

#include "core/err.h"

#define AGG_HTTP_MAX_PARAMS 4

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

/* Listens on <addr> ("host:port", "[v6]:port"), or with <fd> >= 0 on that socket,
 * already bound to <addr> and listening (owned from here, even on error). Caller owns
 * the result: agg_http_free(). NULL + <err> when the address cannot be bound. */
struct agg_http *agg_http_new(struct event_base *base, const char *addr, int fd,
                              struct agg_err *err);
void agg_http_free(struct agg_http *h);

/* The loop <h> runs on. */
struct event_base *agg_http_base(const struct agg_http *h);

/* Routes <method> (EVHTTP_REQ_GET, ...) on <pattern> ("/api/v1/users/{id}") to <fn>.
 * <pattern> must outlive <h>. Unknown paths answer 404, known paths with another method
 * 405, both as JSON errors. */
int agg_http_route(struct agg_http *h, enum evhttp_cmd_type method, const char *pattern,
                   agg_http_handler fn, void *arg);

/* Bodies over <bytes> get evhttp's own 413 before any handler runs. */
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
