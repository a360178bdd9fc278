/*
 * src/sockets.h — listening sockets passed in by systemd (socket activation).
 *
 * Place: `aggd serve` takes them at start (LISTEN_PID, LISTEN_FDS: sd_listen_fds(3)'s
 *        protocol, without libsystemd); the HTTP server and the ingest listeners use
 *        the one bound to their configured address instead of binding it themselves.
 * Threads: the main thread, at start, before the event loop runs (getaddrinfo blocks).
 * Ownership: the set owns the inherited descriptors until one is taken.
 * Traps: sockets are matched by type and bound address, not by FileDescriptorName=,
 *        so one aggd.socket can carry them all; the listen.* keys still say where
 *        aggd listens, and a socket no key asks for is closed with a warning.
 */
#ifndef AGGD_SRC_SOCKETS_H
#define AGGD_SRC_SOCKETS_H

#include <sys/types.h>

struct addrinfo; /* <netdb.h> */

#include "core/err.h"

#define AGG_SOCKETS_MAX 16
/* sd_listen_fds(3): passed descriptors start here. */
#define AGG_SOCKETS_FIRST_FD 3

struct agg_sockets {
    int n;
    int fd[AGG_SOCKETS_MAX]; /* -1 once taken */
};

/* Fills <set> from the values of LISTEN_PID and LISTEN_FDS (either may be NULL: no
 * sockets) when LISTEN_PID is <self>: descriptors AGG_SOCKETS_FIRST_FD onwards, marked
 * close-on-exec. AGG_OK (possibly with none); AGG_EINVAL + <err> for values that are not
 * numbers or more than AGG_SOCKETS_MAX sockets. */
int agg_sockets_init(struct agg_sockets *set, const char *listen_pid, const char *listen_fds,
                     pid_t self, struct agg_err *err);

/* Resolves the listen address <addr> ("host:port", "[v6]:port"; empty host: any) for
 * binding a <socktype> socket, with getaddrinfo(3), which may block on DNS: only before
 * the event loop runs (aggd serve resolves every listen.* address at start), never from
 * it. Caller owns *<out>: freeaddrinfo(). AGG_EINVAL + <err> when it cannot. */
int agg_sockets_resolve(const char *addr, int socktype, struct addrinfo **out, struct agg_err *err);

/* Takes the inherited socket of <socktype> (SOCK_STREAM, SOCK_DGRAM) bound to <addr>
 * ("host:port", "[v6]:port"; names resolved as for binding): the caller owns it. -1 when
 * none matches. Resolves as agg_sockets_resolve() does: before the loop runs only. */
int agg_sockets_take(struct agg_sockets *set, const char *addr, int socktype);

/* Closes the sockets nobody took, logging each one. */
void agg_sockets_clear(struct agg_sockets *set);

#endif
