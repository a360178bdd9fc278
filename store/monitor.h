/*
 * store/monitor.h — non-blocking PostgreSQL health probe on the event loop.
 *
 * Place: feeds /readyz, /metrics and the schema-version guard of `aggd serve`.
 * Threads: event-loop thread only.
 * Ownership: owns one libpq connection; the callback borrows <reason> for the call.
 * Traps: a single host name is resolved without blocking (evdns) and only its first
 *        address is tried; a host list ("h1,h2") is resolved by libpq, synchronously.
 */
#ifndef AGGD_STORE_MONITOR_H
#define AGGD_STORE_MONITOR_H

#include <stdbool.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "core/err.h"

struct st_monitor;

/* Called on the loop thread whenever up/down, the schema version or the reason
 * changes. <reason> is "" when up, and points into the monitor until the next call. */
typedef void (*st_monitor_cb)(void *arg, bool up, int schema_version, const char *reason);

/* Probes <conninfo> (copied) every <interval_ms>, starting now: resolves its host name
 * through <dns> (borrowed until free; NULL: a resolver of the system's configuration),
 * connects, then reads the schema version; a probe taking over <timeout_ms> at any of
 * these steps counts as down. Caller owns the result: st_monitor_free(). */
struct st_monitor *st_monitor_new(struct event_base *base, struct evdns_base *dns,
                                  const char *conninfo, int interval_ms, int timeout_ms,
                                  st_monitor_cb cb, void *arg, struct agg_err *err);
void st_monitor_free(struct st_monitor *m);

bool st_monitor_is_up(const struct st_monitor *m);
/* The schema version seen by the last successful probe; -1 before one. */
int st_monitor_schema_version(const struct st_monitor *m);
/* Why the database is down ("" when up); points into <m>, valid until the next probe. */
const char *st_monitor_reason(const struct st_monitor *m);

#endif
