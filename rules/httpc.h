/*
 * rules/httpc.h — asynchronous HTTP(S) POST for webhook and Slack notifications.
 *
 * Place: the notification dispatcher posts rendered bodies (rules/render.h) with it;
 *        rules/smtp.c reuses its connection and TLS plumbing.
 * Threads: event-loop thread of <base> only.
 * Ownership: the client owns its requests; callers borrow nothing past rl_httpc_post().
 * Not here: retries and backoff (the dispatcher), signing (rules/sign.h).
 */
#ifndef AGGD_RULES_HTTPC_H
#define AGGD_RULES_HTTPC_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "core/err.h"

struct rl_httpc; /* opaque */

struct rl_http_result {
    int status;       /* HTTP status, 0 for network/TLS/timeout errors and cancellation */
    char detail[256]; /* "HTTP 503 Service Unavailable", "https://h:443: timed out ..." */
};

/* Called exactly once per accepted request, on the loop thread, never from inside
 * rl_httpc_post(). <res> is valid during the call. The request is already gone, so
 * the callback may post again or free the client. */
typedef void (*rl_httpc_cb)(void *arg, const struct rl_http_result *res);

/* A client on <base>: host names resolve through its own evdns base (resolv.conf and
 * /etc/hosts read once, here), TLS verifies certificates against <ca_file> (PEM; NULL
 * or "" for the system trust store), every request is bounded by <timeout_ms> from
 * rl_httpc_post() to the response's status line. Caller owns the result:
 * rl_httpc_free(). NULL + <err> when the CA file cannot be loaded. */
struct rl_httpc *rl_httpc_new(struct event_base *base, const char *ca_file, int timeout_ms,
                              struct agg_err *err);

/* Cancels the outstanding requests, calling each callback once with status 0 and
 * detail "cancelled" (callbacks must not post to <c> then: such posts fail), and frees
 * the client. NULL is allowed. */
void rl_httpc_free(struct rl_httpc *c);

/* POSTs <body>[<len>] to <url> (http:// or https://, host, optional port, path and
 * query; no user info) with Content-Type application/json, User-Agent aggd/<version>,
 * Connection: close, and the NULL-terminated "Name: value" lines of <headers> (may be
 * NULL; no CR/LF; Host, Content-Type, Content-Length, Connection, Transfer-Encoding and
 * User-Agent are the client's). Copies everything it needs. AGG_OK: <cb>(<arg>, ...)
 * follows exactly once; the status is that of the first final response line, the body
 * is not read. AGG_EINVAL (bad URL or header; the message names neither the path, the
 * query nor header values, as they may hold secrets), AGG_ENOMEM, AGG_ERR. Errors call
 * no callback. Details only ever name scheme://host:port. */
int rl_httpc_post(struct rl_httpc *c, const char *url, const char *const *headers, const char *body,
                  size_t len, rl_httpc_cb cb, void *arg, struct agg_err *err);

/* ---- plumbing shared with rules/smtp.c ------------------------------------------ */

/* What a client needs to reach servers: a resolver on its loop and a TLS context. */
struct rl_httpc_net {
    struct evdns_base *dns;
    SSL_CTX *tls;
};

/* Fills <n> for <base>: evdns (resolv.conf and /etc/hosts read once, here; it does not
 * keep the loop alive while idle) and rl_httpc_tls_ctx_new(<ca_file>). On error <n> is
 * left cleared. Undo with rl_httpc_net_clear(), which accepts a zeroed <n>. */
int rl_httpc_net_init(struct rl_httpc_net *n, struct event_base *base, const char *ca_file,
                      struct agg_err *err);
void rl_httpc_net_clear(struct rl_httpc_net *n);

/* A TLS client context: TLS 1.2 or newer, peer verification on, CAs from <ca_file> or
 * the system default paths. Caller owns the result: SSL_CTX_free(). */
SSL_CTX *rl_httpc_tls_ctx_new(const char *ca_file, struct agg_err *err);

/* A socket bufferevent connecting to <host> (name, IPv4, or IPv6 without brackets)
 * port <port> through <dns>; callbacks deferred to the loop, so none runs inside this
 * call. Caller owns the result: bufferevent_free(). */
struct bufferevent *rl_httpc_connect(struct event_base *base, struct evdns_base *dns,
                                     const char *host, int port, struct agg_err *err);

/* Starts a TLS client handshake over the connected <under>, with SNI and certificate
 * name (or IP) verification against <host>. Takes ownership of <under>, even on error.
 * Caller owns the result: bufferevent_free(), which frees <under> too. */
struct bufferevent *rl_httpc_tls_wrap(struct bufferevent *under, SSL_CTX *ctx, const char *host,
                                      struct agg_err *err);

/* Describes why <bev> reported <what> (BEV_EVENT_ERROR/EOF): DNS, socket, TLS or
 * certificate error, into <out> (<size> bytes). Call from the event callback. */
void rl_httpc_error_text(struct bufferevent *bev, short what, char *out, size_t size);

/* True when <host> is an IPv4 or IPv6 address literal (no brackets). */
bool rl_httpc_host_is_ip(const char *host);

/* Requests started from now on time out after <timeout_ms> (a reload). */
void rl_httpc_set_timeout(struct rl_httpc *c, int timeout_ms);

#endif
