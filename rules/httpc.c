/*
 * rules/httpc.c — asynchronous HTTP(S) POST on libevent bufferevents, OpenSSL for TLS.
 *
 * Place: see rules/httpc.h.
 * Threads: event-loop thread only.
 * Ownership: each request owns its bufferevent, timer and pending output; the client
 *            owns the TLS context, the evdns base and the list of requests.
 * Traps: evhttp's client has per-operation timeouts only and frees requests behind
 *        our back, so this is a small HTTP/1.1 writer that reads just the status line
 *        and closes. TLS is a filter over the connected socket, as in SMTP's STARTTLS,
 *        so both use the same code. Callbacks are deferred (BEV_OPT_DEFER_CALLBACKS):
 *        evdns answers numeric hosts synchronously and nothing may call back inside
 *        rl_httpc_post(). URLs' paths and queries and header values are secrets
 *        (Slack webhook URLs are); only scheme://host:port ever reaches a message.
 * Not here: retries, logging (the caller logs the result).
 */
#include "rules/httpc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/version.h"

#define STATUS_LINE_MAX 8192
#define HOST_MAX        256

struct httpc_req {
    struct rl_httpc *c;
    struct httpc_req *prev, *next;
    struct bufferevent *bev;
    struct event *timer;
    struct evbuffer *pending; /* the request, written once TLS is set up */
    bool tls, wrapped, in_headers;
    char host[HOST_MAX];
    char where[HOST_MAX + 32]; /* scheme://host:port, safe to show */
    rl_httpc_cb cb;
    void *arg;
};

struct rl_httpc {
    struct event_base *base;
    struct rl_httpc_net net;
    int timeout_ms;
    bool closing;
    struct httpc_req *reqs;
};

/* ---- shared plumbing ------------------------------------------------------------ */

/* The first queued OpenSSL error as text, or <fallback>; empties the queue. */
static void ssl_error_text(unsigned long e, const char *fallback, char *out, size_t size)
{
    if (e != 0)
        ERR_error_string_n(e, out, size);
    else
        snprintf(out, size, "%s", fallback);
    ERR_clear_error();
}

SSL_CTX *rl_httpc_tls_ctx_new(const char *ca_file, struct agg_err *err)
{
    SSL_CTX *ctx;
    char why[160];
    int ok;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        ssl_error_text(ERR_get_error(), "unknown error", why, sizeof(why));
        agg_err_set(err, AGG_ERR, "could not create a TLS context: %s", why);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file != NULL && ca_file[0] != '\0')
        ok = SSL_CTX_load_verify_locations(ctx, ca_file, NULL);
    else
        ok = SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        ssl_error_text(ERR_get_error(), "no certificates", why, sizeof(why));
        if (ca_file != NULL && ca_file[0] != '\0')
            agg_err_set(err, AGG_EINVAL, "could not load CA file \"%s\": %s", ca_file, why);
        else
            agg_err_set(err, AGG_ERR, "could not load the system CA certificates: %s", why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int rl_httpc_net_init(struct rl_httpc_net *n, struct event_base *base, const char *ca_file,
                      struct agg_err *err)
{
    n->tls = rl_httpc_tls_ctx_new(ca_file, err);
    n->dns = NULL;
    if (n->tls == NULL)
        return AGG_EINVAL; /* <err> says why */
    n->dns =
        evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (n->dns == NULL) {
        rl_httpc_net_clear(n);
        return agg_err_set(err, AGG_ERR, "could not start the DNS resolver");
    }
    return AGG_OK;
}

void rl_httpc_net_clear(struct rl_httpc_net *n)
{
    if (n->dns != NULL)
        evdns_base_free(n->dns, 0);
    SSL_CTX_free(n->tls);
    n->dns = NULL;
    n->tls = NULL;
}

bool rl_httpc_host_is_ip(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

struct bufferevent *rl_httpc_connect(struct event_base *base, struct evdns_base *dns,
                                     const char *host, int port, struct agg_err *err)
{
    struct bufferevent *bev =
        bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);

    if (bev == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    if (bufferevent_socket_connect_hostname(bev, dns, AF_UNSPEC, host, port) != 0) {
        agg_err_set(err, AGG_ERR, "could not start connecting to %s port %d", host, port);
        bufferevent_free(bev);
        return NULL;
    }
    return bev;
}

/* A client SSL for <host>: SNI for names, and the name or address to verify. */
static SSL *tls_new(SSL_CTX *ctx, const char *host, struct agg_err *err)
{
    SSL *ssl = SSL_new(ctx);
    X509_VERIFY_PARAM *param;
    int ok;

    if (ssl == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    param = SSL_get0_param(ssl);
    if (rl_httpc_host_is_ip(host)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(param, host);
    } else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set_tlsext_host_name(ssl, host) == 1 &&
             X509_VERIFY_PARAM_set1_host(param, host, 0) == 1;
    }
    if (ok != 1) {
        ERR_clear_error();
        agg_err_set(err, AGG_EINVAL, "cannot verify TLS certificates for host \"%s\"", host);
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

struct bufferevent *rl_httpc_tls_wrap(struct bufferevent *under, SSL_CTX *ctx, const char *host,
                                      struct agg_err *err)
{
    SSL *ssl = tls_new(ctx, host, err);
    struct bufferevent *bev = NULL;

    if (ssl != NULL)
        bev = bufferevent_openssl_filter_new(bufferevent_get_base(under), under, ssl,
                                             BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev == NULL) {
        if (ssl != NULL) {
            agg_err_set(err, AGG_ENOMEM, "out of memory");
            SSL_free(ssl);
        }
        bufferevent_free(under);
        return NULL;
    }
    /* peers often close without close_notify after the last reply */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void rl_httpc_error_text(struct bufferevent *bev, short what, char *out, size_t size)
{
    int saved = EVUTIL_SOCKET_ERROR(); /* before any call below may change it */
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    struct bufferevent *under = bufferevent_get_underlying(bev);
    int dns = bufferevent_socket_get_dns_error(under != NULL ? under : bev);
    unsigned long e;

    if (dns != 0) {
        snprintf(out, size, "could not resolve host: %s", evutil_gai_strerror(dns));
        return;
    }
    if (ssl != NULL && SSL_get_verify_result(ssl) != X509_V_OK) {
        snprintf(out, size, "TLS certificate verification failed: %s",
                 X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
        ERR_clear_error();
        return;
    }
    if (ssl != NULL && (e = bufferevent_get_openssl_error(bev)) != 0) {
        char why[160];

        ssl_error_text(e, "", why, sizeof(why));
        while (bufferevent_get_openssl_error(bev) != 0)
            ; /* drain */
        snprintf(out, size, "TLS error: %s", why);
        return;
    }
    if ((what & BEV_EVENT_EOF) != 0 || saved == 0)
        snprintf(out, size, "connection closed by the server");
    else
        snprintf(out, size, "%s", evutil_socket_error_to_string(saved));
}

/* ---- requests ------------------------------------------------------------------- */

static void req_free(struct httpc_req *r)
{
    if (r->timer != NULL)
        event_free(r->timer);
    if (r->bev != NULL)
        bufferevent_free(r->bev);
    if (r->pending != NULL)
        evbuffer_free(r->pending);
    free(r);
}

/* Ends <r>: frees it, then calls its callback with <status> and the detail text. */
static void finish(struct httpc_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void finish(struct httpc_req *r, int status, const char *fmt, ...)
{
    struct rl_http_result res = {.status = status};
    rl_httpc_cb cb = r->cb;
    void *arg = r->arg;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(res.detail, sizeof(res.detail), fmt, ap);
    va_end(ap);
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        r->c->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    req_free(r);
    cb(arg, &res);
}

/* "HTTP/1.x NNN reason" → NNN, or -1. */
static int parse_status_line(const char *line, const char **reason)
{
    if (strncmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) || line[8] != ' ' ||
        !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
        !isdigit((unsigned char)line[11]) || (line[12] != ' ' && line[12] != '\0'))
        return -1;
    *reason = line[12] == ' ' ? line + 13 : "";
    return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct httpc_req *r = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char *line;
    size_t n;

    while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
        const char *reason = "";
        int status;

        if (r->in_headers) { /* skipping the headers of a 1xx interim response */
            r->in_headers = n > 0;
            free(line);
            continue;
        }
        status = parse_status_line(line, &reason);
        if (status >= 100 && status < 200) {
            r->in_headers = true;
            free(line);
            continue;
        }
        if (status < 0) {
            free(line);
            finish(r, 0, "%s: not an HTTP response", r->where);
            return;
        }
        /* the reason phrase is the server's text: keep it printable */
        for (char *p = line; *p != '\0'; p++) {
            if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
                *p = ' ';
        }
        finish(r, status, "HTTP %d %.200s", status, reason);
        free(line);
        return;
    }
    if (evbuffer_get_length(in) > STATUS_LINE_MAX)
        finish(r, 0, "%s: response line too long", r->where);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct httpc_req *r = arg;
    char why[200];

    if ((what & BEV_EVENT_CONNECTED) != 0) {
        struct agg_err err = {0};

        if (!r->tls || r->wrapped)
            return; /* plain: the request is already queued; TLS: handshake done */
        r->bev = rl_httpc_tls_wrap(bev, r->c->net.tls, r->host, &err);
        r->wrapped = true;
        if (r->bev == NULL) {
            finish(r, 0, "%s: %s", r->where, err.msg);
            return;
        }
        bufferevent_setcb(r->bev, on_read, NULL, on_event, r);
        if (bufferevent_write_buffer(r->bev, r->pending) != 0 ||
            bufferevent_enable(r->bev, EV_READ | EV_WRITE) != 0)
            finish(r, 0, "%s: could not queue the request", r->where);
        return;
    }
    if ((what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) != 0) {
        rl_httpc_error_text(bev, what, why, sizeof(why));
        finish(r, 0, "%s: %s", r->where, why);
    }
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct httpc_req *r = arg;

    (void)fd;
    (void)what;
    finish(r, 0, "%s: timed out after %d ms", r->where, r->c->timeout_ms);
}

void rl_httpc_set_timeout(struct rl_httpc *c, int timeout_ms)
{
    if (c != NULL)
        c->timeout_ms = timeout_ms > 0 ? timeout_ms : 1; /* requests started from now on */
}

struct rl_httpc *rl_httpc_new(struct event_base *base, const char *ca_file, int timeout_ms,
                              struct agg_err *err)
{
    struct rl_httpc *c = agg_calloc(1, sizeof(*c));

    if (c == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    c->base = base;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    if (rl_httpc_net_init(&c->net, base, ca_file, err) != AGG_OK) {
        free(c);
        return NULL;
    }
    return c;
}

void rl_httpc_free(struct rl_httpc *c)
{
    if (c == NULL)
        return;
    c->closing = true;
    while (c->reqs != NULL)
        finish(c->reqs, 0, "cancelled");
    rl_httpc_net_clear(&c->net);
    free(c);
}

/* Appends the caller's header lines to <out>: "Name: value" with a token name, no
 * CR/LF, and none of the headers the client sets itself. */
static int add_headers(struct evbuffer *out, const char *const *headers, struct agg_err *err)
{
    static const char *const ours[] = {"host",       "content-type",      "content-length",
                                       "connection", "transfer-encoding", "user-agent"};
    static const char tchar[] = "!#$%&'*+-.^_`|~0123456789"
                                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

    for (int i = 0; headers != NULL && headers[i] != NULL; i++) {
        const char *h = headers[i];
        size_t name = strspn(h, tchar);

        if (name == 0 || h[name] != ':' || strpbrk(h, "\r\n") != NULL)
            return agg_err_set(err, AGG_EINVAL, "header %d is not a \"Name: value\" line", i);
        for (size_t k = 0; k < sizeof(ours) / sizeof(ours[0]); k++) {
            if (strlen(ours[k]) == name && strncasecmp(h, ours[k], name) == 0)
                return agg_err_set(err, AGG_EINVAL, "header %.*s is set by the client", (int)name,
                                   h);
        }
        if (evbuffer_add_printf(out, "%s\r\n", h) < 0)
            return agg_err_set(err, AGG_ENOMEM, "out of memory");
    }
    return AGG_OK;
}

/* Fills <r>'s host and where from <uri>, and writes the request line and our headers. */
static int start_request(struct httpc_req *r, const struct evhttp_uri *uri, int *port,
                         struct agg_err *err)
{
    const char *scheme = evhttp_uri_get_scheme(uri);
    const char *host = evhttp_uri_get_host(uri);
    const char *path = evhttp_uri_get_path(uri);
    const char *query = evhttp_uri_get_query(uri);
    size_t hlen;
    bool v6;

    if (scheme == NULL || (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0))
        return agg_err_set(err, AGG_EINVAL, "URL scheme must be http or https");
    if (host == NULL || host[0] == '\0')
        return agg_err_set(err, AGG_EINVAL, "URL has no host");
    if (evhttp_uri_get_userinfo(uri) != NULL)
        return agg_err_set(err, AGG_EINVAL, "URL user info is not supported");
    r->tls = strcasecmp(scheme, "https") == 0;
    *port = evhttp_uri_get_port(uri);
    if (*port < 0)
        *port = r->tls ? 443 : 80;
    if (*port == 0 || *port > 65535)
        return agg_err_set(err, AGG_EINVAL, "URL port is out of range");
    hlen = strlen(host);
    v6 = host[0] == '[' && hlen > 2 && host[hlen - 1] == ']';
    if (hlen - (v6 ? 2 : 0) >= sizeof(r->host))
        return agg_err_set(err, AGG_EINVAL, "URL host is too long");
    snprintf(r->host, sizeof(r->host), "%.*s", (int)(hlen - (v6 ? 2 : 0)), host + (v6 ? 1 : 0));
    snprintf(r->where, sizeof(r->where), "%s://%s:%d", r->tls ? "https" : "http", host, *port);
    if (evbuffer_add_printf(r->pending, "POST %s%s%s HTTP/1.1\r\nHost: %s", path[0] ? path : "/",
                            query != NULL ? "?" : "", query != NULL ? query : "", host) < 0 ||
        (*port != (r->tls ? 443 : 80) && evbuffer_add_printf(r->pending, ":%d", *port) < 0) ||
        evbuffer_add_printf(r->pending,
                            "\r\nUser-Agent: aggd/%s\r\nContent-Type: application/json\r\n"
                            "Connection: close\r\n",
                            AGG_VERSION) < 0)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    return AGG_OK;
}

int rl_httpc_post(struct rl_httpc *c, const char *url, const char *const *headers, const char *body,
                  size_t len, rl_httpc_cb cb, void *arg, struct agg_err *err)
{
    struct evhttp_uri *uri = NULL;
    struct httpc_req *r;
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    int port = 0, rc;

    if (c->closing)
        return agg_err_set(err, AGG_EAGAIN, "HTTP client is shutting down");
    if (url == NULL || cb == NULL || (body == NULL && len > 0))
        return agg_err_set(err, AGG_EINVAL, "HTTP POST needs a URL and a callback");
    r = agg_calloc(1, sizeof(*r));
    if (r == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    r->c = c;
    r->cb = cb;
    r->arg = arg;
    r->pending = evbuffer_new();
    if (r->pending == NULL) {
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto out_free;
    }
    uri = evhttp_uri_parse_with_flags(url, 0);
    if (uri == NULL) {
        rc = agg_err_set(err, AGG_EINVAL, "not a valid URL");
        goto out_free;
    }
    rc = start_request(r, uri, &port, err);
    if (rc == AGG_OK)
        rc = add_headers(r->pending, headers, err);
    if (rc != AGG_OK)
        goto out_free;
    if (evbuffer_add_printf(r->pending, "Content-Length: %zu\r\n\r\n", len) < 0 ||
        evbuffer_add(r->pending, body, len) != 0) {
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto out_free;
    }
    r->timer = evtimer_new(c->base, on_timeout, r);
    if (r->timer == NULL || evtimer_add(r->timer, &tv) != 0) {
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto out_free;
    }
    r->bev = rl_httpc_connect(c->base, c->net.dns, r->host, port, err);
    if (r->bev == NULL) {
        rc = AGG_ERR; /* <err> says why */
        goto out_free;
    }
    bufferevent_setcb(r->bev, on_read, NULL, on_event, r);
    if (!r->tls && (bufferevent_write_buffer(r->bev, r->pending) != 0 ||
                    bufferevent_enable(r->bev, EV_READ | EV_WRITE) != 0)) {
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto out_free;
    }
    evhttp_uri_free(uri);
    r->next = c->reqs;
    if (c->reqs != NULL)
        c->reqs->prev = r;
    c->reqs = r;
    return AGG_OK;

out_free:
    if (uri != NULL)
        evhttp_uri_free(uri);
    req_free(r);
    return rc;
}
