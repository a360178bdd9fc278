/*
 * src/sdnotify.h — the systemd notification protocol: one datagram to NOTIFY_SOCKET.
 *
 * Place: `aggd serve` says READY=1 once listening and STOPPING=1 on shutdown.
 * Threads: any; no state.
 * Not here: socket activation (src/sockets.c).
 */
#ifndef AGGD_SRC_SDNOTIFY_H
#define AGGD_SRC_SDNOTIFY_H

#include "core/err.h"

/* Sends <state> (e.g. "READY=1\nSTATUS=listening") to the AF_UNIX datagram socket
 * <path> ('@' first means the abstract namespace). A NULL or empty <path> does
 * nothing and succeeds, as when systemd did not ask for notifications. */
int agg_sd_notify(const char *path, const char *state, struct agg_err *err);

#endif
