/*
 * src/server.h — `aggd serve`: the event loop, listeners, signals and health.
 *
 * Place: main.c -> [server] -> http routes, store monitor (and, later, ingest).
 * Threads: runs the event loop on the calling thread until SIGTERM/SIGINT.
 * Ownership: borrows <cfg> for the whole run.
 */
#ifndef AGGD_SRC_SERVER_H
#define AGGD_SRC_SERVER_H

#include "core/config.h"
#include "core/err.h"

struct agg_serve_opts {
    const char *notify_socket; /* NOTIFY_SOCKET, or NULL */
    const char *listen_pid;    /* LISTEN_PID and LISTEN_FDS (socket activation), or NULL */
    const char *listen_fds;
    int schema_version;        /* the schema version this binary needs */
    int health_interval_ms;    /* how often PostgreSQL is probed */
};

/* Serves until a stop signal (AGG_OK) or a fatal condition (error + <err>). */
int agg_server_run(const struct agg_config *cfg, const struct agg_serve_opts *opts,
                   struct agg_err *err);

#endif
