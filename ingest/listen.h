/*
 * ingest/listen.h — the syslog (UDP, TCP) and JSON-lines (TCP) listeners.
 *
 * Place: sockets -> [listen: framing, parsing] -> pipeline.
 * Threads: event-loop thread only.
 * Ownership: owns its sockets and connections; borrows the pipeline.
 * Traps: under backpressure TCP connections stop reading (the kernel's window then
 *        holds the sender back) and UDP datagrams are dropped and counted; nothing
 *        already read is dropped.
 */
#ifndef AGGD_INGEST_LISTEN_H
#define AGGD_INGEST_LISTEN_H

#include <event2/event.h>

#include "ingest/pipeline.h"
#include "src/config.h"
#include "src/metrics.h"

enum ing_listen_kind {
    ING_LISTEN_SYSLOG_UDP = 0,
    ING_LISTEN_SYSLOG_TCP,
    ING_LISTEN_JSON_TCP,
};

struct ing_listener;

/* Binds <addr> ("host:port", "[v6]:port") for <kind> and feeds <pipeline>
 * (borrowed until free); with <fd> >= 0, uses that socket, already bound to <addr>
 * (and listening, for TCP), instead: the listener owns it from here, even on error.
 * Caller owns the result: ing_listener_free(). */
struct ing_listener *ing_listener_new(struct event_base *base, enum ing_listen_kind kind,
                                      const char *addr, int fd, const struct agg_config *cfg,
                                      struct ing_pipeline *pipeline,
                                      struct agg_metrics *metrics, struct agg_err *err);

/* Closes the listening socket and every connection (delivering what they had). */
void ing_listener_free(struct ing_listener *l);

#endif
