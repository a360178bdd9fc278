/*
 * src/listen.h — the syslog (UDP, TCP, TLS) and JSON-lines (TCP) listeners.
 *
 * Place: sockets -> [listen: framing, parsing] -> pipeline.
 * Threads: event-loop thread only.
 * Ownership: owns its sockets and connections; borrows the pipeline.
 * Traps: under backpressure TCP connections stop reading (the kernel's window then
 *        holds the sender back) and UDP datagrams are dropped and counted; nothing
 *        already read is dropped.
 */
#ifndef AGGD_SRC_LISTEN_H
#define AGGD_SRC_LISTEN_H

#include <stdint.h>

#include <event2/event.h>

struct addrinfo; /* <netdb.h> */

#include "core/buf.h"
#include "core/record.h"
#include "store/pipeline.h"
#include "core/metrics.h"
#include "core/tls.h"

enum agg_listen_kind {
    AGG_LISTEN_SYSLOG_UDP = 0,
    AGG_LISTEN_SYSLOG_TCP,
    AGG_LISTEN_JSON_TCP,
    AGG_LISTEN_SYSLOG_TLS, /* RFC 5425: syslog over TLS, framed as over TCP */
};

struct agg_listener;
struct agg_tz;   /* core/tz.h */
struct ing_json; /* ingest/json.h */

/* Decodes one syslog message <p>[<n>] received at <now_us> as the syslog listeners do:
 * parsed (RFC 5424 or 3164, whose times without offset are in <zone>; NULL: UTC) and
 * mapped (ingest/syslog.h); a MSG carrying a JSON object is decoded over the syslog
 * fields by <json>, its text kept when it is not one. The record goes to sink->emit; a
 * message that does not parse goes to sink->reject (index 0) with the reason and
 * <p>[<n>]. <scratch> and <merged> are the caller's buffers, which the record may point
 * into until the next call. Returns what emit returned (AGG_OK when rejected). Any
 * thread that owns <json> and the buffers. */
int agg_listen_syslog_decode(struct ing_json *json, const struct agg_tz *zone,
                             struct agg_buf *scratch, struct agg_buf *merged, const char *p,
                             size_t n, int64_t now_us, const struct agg_sink *sink);

/* What a listener reads of the configuration; src/server.c fills it. */
struct agg_listener_opts {
    int64_t max_message_bytes;        /* ingest.max_message_bytes */
    int64_t max_connections;          /* listen.max_connections (TCP) */
    int64_t idle_timeout_seconds;     /* listen.idle_timeout_seconds (TCP) */
    const char *syslog_3164_timezone; /* listen.syslog_3164_timezone (syslog) */
    int64_t udp_rcvbuf;               /* listen.udp_rcvbuf (UDP) */
    struct agg_tls *tls; /* syslog over TLS: the context, borrowed until free */
};

/* Binds <ai> (the first address agg_sockets_resolve() gave for <addr>, named in
 * messages; borrowed for the call) for <kind>, set up by <opts> (read during the call),
 * and feeds <pipeline> (borrowed until free); with <fd> >= 0, uses that socket, already
 * bound to <addr> (and listening, for TCP), instead, and <ai> may be NULL: the listener
 * owns <fd> from here, even on error. Resolves nothing, so it may run on the loop.
 * Caller owns the result: agg_listener_free(). */
struct agg_listener *agg_listener_new(struct event_base *base, enum agg_listen_kind kind,
                                      const char *addr, const struct addrinfo *ai, int fd,
                                      const struct agg_listener_opts *opts,
                                      struct st_pipeline *pipeline,
                                      struct agg_metrics *metrics, struct agg_err *err);

/* A reload changed listen.max_connections or listen.idle_timeout_seconds: the cap
 * applies at once (connections already open stay), the idle timeout to new connections. */
void agg_listener_set_limits(struct agg_listener *l, size_t max_connections,
                             int64_t idle_timeout_seconds);

/* Closes the listening socket and every connection (delivering what they had). */
void agg_listener_free(struct agg_listener *l);

#endif
