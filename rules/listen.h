/*
 * rules/listen.h — LISTEN on a PostgreSQL channel from the event loop, without
 * blocking: the alert engine reloads its rules when aggd_rules is notified.
 *
 * Place: schema/0005 triggers NOTIFY aggd_rules -> [listen] -> rules/engine.c reload.
 * Threads: event-loop thread only.
 * Ownership: owns one libpq connection (non-blocking, like store/monitor.c).
 * Traps: notifications sent while the connection was down are lost: the callback
 *        also runs after every (re)connection, so the listener reloads then; the
 *        engine's periodic reload covers the rest. libpq resolves host names
 *        synchronously in PQconnectStart (see store/monitor.h).
 */
#ifndef AGGD_RULES_LISTEN_H
#define AGGD_RULES_LISTEN_H

#include <event2/event.h>

#include "core/err.h"

struct rl_listen;

/* Called on the loop thread for each batch of notifications on the channel, and once
 * after each successful LISTEN. */
typedef void (*rl_listen_cb)(void *arg);

/* Listens on <channel> (a plain identifier, copied) at <conninfo> (copied), reconnecting
 * <retry_ms> after a failure. Caller owns the result: rl_listen_free(). */
struct rl_listen *rl_listen_new(struct event_base *base, const char *conninfo,
                                const char *channel, int retry_ms, rl_listen_cb cb, void *arg,
                                struct agg_err *err);

/* NULL is allowed. */
void rl_listen_free(struct rl_listen *l);

#endif
