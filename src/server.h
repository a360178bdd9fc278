/*
 * src/server.h — `aggd serve`: the event loop, listeners, signals and health.
 *
 * Place: main.c -> [server] -> http routes, store monitor (and, later, ingest).
 * Threads: runs the event loop on the calling thread until SIGTERM/SIGINT.
 * Ownership: borrows <cfg> for the whole run, and changes it on reload.
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
    /* SIGHUP: builds the configuration afresh (NULL and <err> when it is refused). */
    struct agg_config *(*reload)(void *arg, struct agg_err *err);
    void *reload_arg;
};

/* Serves until a stop signal (AGG_OK) or a fatal condition (error + <err>). A reload
 * (SIGHUP) changes in <cfg> the keys that may change while running. */
int agg_server_run(struct agg_config *cfg, const struct agg_serve_opts *opts,
                   struct agg_err *err);

#endif
