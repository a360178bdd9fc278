/*
 * core/tls.h — the server side of TLS: one OpenSSL context for every TLS listener
 *              (listen.syslog_tls, listen.https), rebuilt on reload.
 *
 * Place: server.c builds it from tls.*; src/listen.c and core/http.c wrap accepted
 *        sockets with agg_tls_bufferevent_new().
 * Threads: event-loop thread only.
 * Ownership: owns the current SSL_CTX; each connection's SSL holds its own reference
 *            to the context it was made from, so a reload never disturbs open ones.
 * Traps: TLS 1.2 at least, OpenSSL's default ciphers without 3DES/RC4/NULL/EXPORT, no
 *        compression, no renegotiation. With a client CA, a client without a good
 *        certificate fails the handshake; under TLS 1.3 the client learns it only on
 *        its first read (the server checks the certificate after its own Finished).
 */
#ifndef AGGD_CORE_TLS_H
#define AGGD_CORE_TLS_H

#include <stdbool.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/config.h"
#include "core/err.h"

struct agg_tls; /* opaque */

/* A context from <opts> (the paths are read during the call): the certificate chain,
 * its key, and, with a client_ca_file, client certificates required. Caller owns the
 * result: agg_tls_free(). NULL + <err> naming the file and OpenSSL's reason. */
struct agg_tls *agg_tls_new(const struct agg_tls_opts *opts, struct agg_err *err);

/* Accepts NULL. Connections still open keep their context until they close. */
void agg_tls_free(struct agg_tls *t);

/* Reload: when the paths of <opts> or the contents of those files differ from what
 * <t> was built from, builds a new context and swaps it in (new connections use it).
 * AGG_OK with <*changed> telling whether it swapped; an error + <err> when the new
 * files are not usable, and <t> keeps serving the old certificate. */
int agg_tls_reload(struct agg_tls *t, const struct agg_tls_opts *opts, bool *changed,
                   struct agg_err *err);

/* A server-side TLS bufferevent for the accepted socket <fd> (-1: set later with
 * bufferevent_setfd(), as evhttp does), handshaking with the current context; <options>
 * as for bufferevent_socket_new(). A peer's close without close_notify is an EOF.
 * Caller owns the result: bufferevent_free(). NULL when out of memory (<fd> is then
 * not closed). */
struct bufferevent *agg_tls_bufferevent_new(struct agg_tls *t, struct event_base *base,
                                            evutil_socket_t fd, int options);

/* Writes <len> bytes of <data> on the TLS bufferevent <bev> directly, its own output
 * being empty: 1 when written, 0 when the socket cannot take them now (call again with
 * the same bytes), -1 on a failed connection. */
int agg_tls_write_now(struct bufferevent *bev, const void *data, int len);

/* Answers a peer's close_notify with ours (RFC 5425 4.4: the closing party sends a
 * closure alert) on the TLS bufferevent <bev>, before it is freed; best effort. */
void agg_tls_close_notify(struct bufferevent *bev);

#endif
