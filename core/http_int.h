/*
 * core/http_int.h — what core/http.c (listener, router) and core/http_guard.c (the
 *                   connection guard) share. Included by those two files only.
 *
 * Threads: event-loop thread only.
 */
#ifndef AGGD_CORE_HTTP_INT_H
#define AGGD_CORE_HTTP_INT_H

#include <stdbool.h>

#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "core/http.h"
#include "core/tls.h"

/* The plain listener (listen.http) and the TLS one (listen.https). */
enum { HTTP_PLAIN = 0, HTTP_TLS, HTTP_SIDES };

struct route {
    enum evhttp_cmd_type method;
    const char *pattern;
    agg_http_handler fn;
    void *arg;
    const struct agg_http_gate *gate; /* NULL: none */
};

struct agg_http {
    struct event_base *base;
    struct evhttp *http[HTTP_SIDES];       /* NULL: that side is off */
    struct evconnlistener *lev[HTTP_SIDES]; /* evhttp's, borrowed; NULL: off */
    struct agg_tls *tls;                    /* HTTP_TLS's context; borrowed */
    struct route *routes;
    size_t n, cap;
    size_t max_body; /* ceiling for every route (agg_http_set_max_body) */
    struct agg_http_limits limits;
    struct agg_http_pending *conns; /* one guard per open connection */
    size_t nconns;
    size_t inflight;      /* body bytes reserved by the bodies being read */
    struct event *resume; /* re-enables the listener after a pause */
};

/* Matches <path> against <pattern>; on success fills <m> with the {param} segments. */
bool agg_http_match(const char *pattern, const char *path, struct agg_http_match *m);

/* For evhttp_set_bevcb(): the guarded bufferevent of a new connection, arg <h>, over
 * the socket (plain) or over TLS with <h->tls>. */
struct bufferevent *agg_http_guard_new(struct event_base *base, void *arg);
struct bufferevent *agg_http_guard_new_tls(struct event_base *base, void *arg);

/* For dispatch(): true when <req> is a refusal made by the guard, now answered. */
bool agg_http_guard_answer(struct agg_http *h, struct evhttp_request *req);

/* For agg_http_new(): watch <h->lev[side]> for accept errors and the connection cap
 * (the first call also starts the timer that resumes a paused listener). */
int agg_http_guard_listen(struct agg_http *h, int side);

/* For agg_http_free(), after evhttp_free(): the guards of connections whose bufferevents
 * libevent frees later forget <h>. */
void agg_http_guard_detach(struct agg_http *h);

#endif
