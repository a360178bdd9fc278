/*
 * core/http.c — HTTP listener and pattern router.
 *
 * Place: see core/http.h.
 * Threads: event-loop thread only.
 * Traps: the guard (core/http_guard.c) answers malformed and refused requests before
 *        their body is read, through dispatch(); evhttp answers what the guard let
 *        pass but it cannot parse (400, 413); every reply we send ourselves is JSON
 *        with a Content-Type.
 */
#include "core/http.h"
#include "core/http_int.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <yajl/yajl_gen.h>

#include "core/alloc.h"
#include "core/config.h"

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    default:
        return "OTHER";
    }
}

bool agg_http_match(const char *pattern, const char *path, struct agg_http_match *m)
{
    size_t used = 0;

    m->n = 0;
    while (*pattern != '\0' && *path != '\0') {
        if (*pattern == '{') {
            const char *pend = strchr(pattern, '}');
            size_t len = strcspn(path, "/");
            char *dec;

            if (pend == NULL || len == 0 || m->n == AGG_HTTP_MAX_PARAMS ||
                used + len + 1 > sizeof(m->buf))
                return false;
            memcpy(m->buf + used, path, len);
            m->buf[used + len] = '\0';
            dec = evhttp_uridecode(m->buf + used, 0, NULL);
            if (dec == NULL)
                return false;
            snprintf(m->buf + used, len + 1, "%s", dec);
            free(dec);
            m->values[m->n++] = m->buf + used;
            used += len + 1;
            pattern = pend + 1;
            path += len;
            continue;
        }
        if (*pattern != *path)
            return false;
        pattern++;
        path++;
    }
    return *pattern == '\0' && *path == '\0';
}

static void dispatch(struct evhttp_request *req, void *arg)
{
    struct agg_http *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    struct agg_http_match m;
    char allow[128] = "";

    if (agg_http_guard_answer(h, req))
        return;
    if (path == NULL || *path == '\0')
        path = "/";
    for (size_t i = 0; i < h->n; i++) {
        const struct route *r = &h->routes[i];

        if (!agg_http_match(r->pattern, path, &m))
            continue;
        if (r->method == method || (method == EVHTTP_REQ_HEAD && r->method == EVHTTP_REQ_GET)) {
            r->fn(req, &m, r->arg);
            return;
        }
        if (strlen(allow) + 16 < sizeof(allow)) {
            if (allow[0] != '\0')
                strncat(allow, ", ", sizeof(allow) - strlen(allow) - 1);
            strncat(allow, method_name(r->method), sizeof(allow) - strlen(allow) - 1);
        }
    }
    if (allow[0] != '\0') {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
        agg_http_reply_error(req, 405, "method_not_allowed", "method not allowed on this path",
                             NULL);
        return;
    }
    agg_http_reply_error(req, 404, "not_found", "no such route", NULL);
}

/* Binds <side> of <h> on <addr>, or takes <fd> (owned from here, even on error). */
static int listen_side(struct agg_http *h, int side, const char *addr, int fd,
                       struct agg_err *err)
{
    const char *what = side == HTTP_TLS ? "HTTPS" : "HTTP";
    struct evhttp_bound_socket *bound;
    struct evhttp *http;
    char host[256];
    int port;

    if (agg_config_parse_addr(addr, host, sizeof(host), &port, err) != AGG_OK)
        goto fail;
    http = h->http[side] = evhttp_new(h->base);
    if (http == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
                                         EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    evhttp_set_max_headers_size(http, 64 * 1024);
    if (h->max_body > 0)
        evhttp_set_max_body_size(http, (ev_ssize_t)h->max_body);
    /* no evhttp_set_timeout(): libevent 2.1 then arms timers on the guard's filter that
     * outlive it (a use after free); the guard times the socket itself */
    evhttp_set_gencb(http, dispatch, h);
    evhttp_set_bevcb(http, side == HTTP_TLS ? agg_http_guard_new_tls : agg_http_guard_new, h);
    if (fd >= 0) {
        if (evutil_make_socket_nonblocking(fd) != 0 ||
            (bound = evhttp_accept_socket_with_handle(http, fd)) == NULL) {
            agg_err_set(err, AGG_EINVAL, "could not use the %s socket for \"%s\"", what, addr);
            goto fail;
        }
        fd = -1; /* evhttp's now */
    } else if ((bound = evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)port)) ==
               NULL) {
        agg_err_set(err, AGG_EINVAL, "could not listen for %s on \"%s\"", what, addr);
        goto fail;
    }
    h->lev[side] = evhttp_bound_socket_get_listener(bound);
    if (agg_http_guard_listen(h, side) != AGG_OK)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    return AGG_OK;

fail:
    if (fd >= 0)
        evutil_closesocket(fd);
    return err != NULL && err->code != AGG_OK ? err->code : AGG_EINVAL;
}

struct agg_http *agg_http_new(struct event_base *base, const char *addr, int fd,
                              const struct agg_http_limits *limits, struct agg_err *err)
{
    struct agg_http *h = agg_calloc(1, sizeof(*h));

    if (h == NULL) {
        if (fd >= 0)
            evutil_closesocket(fd);
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    h->base = base;
    h->limits = *limits;
    if (addr[0] != '\0' && listen_side(h, HTTP_PLAIN, addr, fd, err) != AGG_OK) {
        agg_http_free(h);
        return NULL;
    }
    return h;
}

int agg_http_listen_tls(struct agg_http *h, const char *addr, int fd, struct agg_tls *tls,
                        struct agg_err *err)
{
    h->tls = tls;
    return listen_side(h, HTTP_TLS, addr, fd, err);
}

struct event_base *agg_http_base(const struct agg_http *h)
{
    return h->base;
}

void agg_http_free(struct agg_http *h)
{
    if (h == NULL)
        return;
    if (h->resume != NULL)
        event_free(h->resume);
    for (int i = 0; i < HTTP_SIDES; i++) {
        h->lev[i] = NULL; /* evhttp frees it before the connections, whose guards look at it */
        if (h->http[i] != NULL)
            evhttp_free(h->http[i]);
    }
    agg_http_guard_detach(h);
    free(h->routes);
    free(h);
}

int agg_http_route_gated(struct agg_http *h, enum evhttp_cmd_type method, const char *pattern,
                         agg_http_handler fn, void *arg, const struct agg_http_gate *gate)
{
    if (agg_grow((void **)&h->routes, sizeof(*h->routes), &h->cap, h->n + 1) != AGG_OK)
        return AGG_ENOMEM;
    h->routes[h->n++] = (struct route){method, pattern, fn, arg, gate};
    return AGG_OK;
}

int agg_http_route(struct agg_http *h, enum evhttp_cmd_type method, const char *pattern,
                   agg_http_handler fn, void *arg)
{
    return agg_http_route_gated(h, method, pattern, fn, arg, NULL);
}

void agg_http_set_max_body(struct agg_http *h, size_t bytes)
{
    h->max_body = bytes;
    for (int i = 0; i < HTTP_SIDES; i++) {
        if (h->http[i] != NULL)
            evhttp_set_max_body_size(h->http[i], (ev_ssize_t)bytes);
    }
}

void agg_http_peer(struct evhttp_request *req, char *out, size_t size)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;

    if (evcon == NULL) {
        snprintf(out, size, "unknown");
        return;
    }
    evhttp_connection_get_peer(evcon, &addr, &port);
    if (addr != NULL && strchr(addr, ':') != NULL)
        snprintf(out, size, "[%s]:%u", addr, (unsigned)port);
    else
        snprintf(out, size, "%s:%u", addr != NULL ? addr : "unknown", (unsigned)port);
}

void agg_http_reply_json(struct evhttp_request *req, int code, const char *body)
{
    struct evbuffer *buf = evbuffer_new();
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);

    evhttp_add_header(hdr, "Content-Type", "application/json");
    evhttp_add_header(hdr, "Cache-Control", "no-store");
    if (buf != NULL) {
        evbuffer_add(buf, body, strlen(body));
        evbuffer_add(buf, "\n", 1);
    }
    evhttp_send_reply(req, code, NULL, buf);
    if (buf != NULL)
        evbuffer_free(buf);
}

static void gen_str(yajl_gen g, const char *s)
{
    if (s == NULL)
        yajl_gen_null(g);
    else
        yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

void agg_http_reply_error(struct evhttp_request *req, int code, const char *ecode,
                          const char *message, const char *field)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *out;
    size_t len;

    if (g == NULL) {
        agg_http_reply_json(req, code, "{\"error\":{\"code\":\"internal\"}}");
        return;
    }
    yajl_gen_map_open(g);
    gen_str(g, "error");
    yajl_gen_map_open(g);
    gen_str(g, "code");
    gen_str(g, ecode);
    gen_str(g, "message");
    gen_str(g, message);
    gen_str(g, "field");
    gen_str(g, field);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &out, &len);
    agg_http_reply_json(req, code, (const char *)out);
    yajl_gen_free(g);
}
