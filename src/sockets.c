/*
 * src/sockets.c — listening sockets passed in by systemd (socket activation).
 *
 * Place: see src/sockets.h.
 * Threads: the main thread, at start, before the event loop runs: getaddrinfo(3) may
 *          block on DNS, so nothing here is called from the running loop.
 */
#include "src/sockets.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"

static bool parse_count(const char *s, long max, long *out)
{
    char *end;
    long v;

    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return false;
    *out = v;
    return true;
}

int agg_sockets_init(struct agg_sockets *set, const char *listen_pid, const char *listen_fds,
                     pid_t self, struct agg_err *err)
{
    long pid, n;

    set->n = 0;
    if (listen_pid == NULL || listen_fds == NULL)
        return AGG_OK;
    if (!parse_count(listen_pid, INT_MAX, &pid))
        return agg_err_set(err, AGG_EINVAL, "LISTEN_PID \"%s\" is not a process id", listen_pid);
    if (pid != (long)self)
        return AGG_OK; /* meant for another process */
    if (!parse_count(listen_fds, INT_MAX, &n))
        return agg_err_set(err, AGG_EINVAL, "LISTEN_FDS \"%s\" is not a number", listen_fds);
    if (n > AGG_SOCKETS_MAX)
        return agg_err_set(err, AGG_EINVAL, "LISTEN_FDS %ld: at most %d sockets are taken", n,
                           AGG_SOCKETS_MAX);
    for (int i = 0; i < (int)n; i++) {
        int fd = AGG_SOCKETS_FIRST_FD + i;

        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        set->fd[set->n++] = fd;
    }
    return AGG_OK;
}

/* True when the bound address <sa> is the resolved <ai>. */
static bool same_address(const struct sockaddr_storage *sa, const struct addrinfo *ai)
{
    if (sa->ss_family != ai->ai_family)
        return false;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)sa, *b = (const void *)ai->ai_addr;

        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)sa, *b = (const void *)ai->ai_addr;

        return a->sin6_port == b->sin6_port &&
               memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
    }
    return false;
}

static bool matches(int fd, const struct addrinfo *list, int socktype)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    int type = 0;
    socklen_t tlen = sizeof(type);

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != socktype ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return false;
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        if (same_address(&sa, ai))
            return true;
    }
    return false;
}

int agg_sockets_resolve(const char *addr, int socktype, struct addrinfo **out, struct agg_err *err)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = socktype, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    char host[256], port[16];
    int p, rc;

    if (agg_config_parse_addr(addr, host, sizeof(host), &p, err) != AGG_OK)
        return AGG_EINVAL;
    snprintf(port, sizeof(port), "%d", p);
    rc = getaddrinfo(host, port, &hints, out);
    if (rc != 0)
        return agg_err_set(err, AGG_EINVAL, "cannot resolve \"%s\": %s", addr, gai_strerror(rc));
    return AGG_OK;
}

int agg_sockets_take(struct agg_sockets *set, const char *addr, int socktype)
{
    struct addrinfo *list = NULL;
    int fd = -1;

    if (set->n == 0 || agg_sockets_resolve(addr, socktype, &list, NULL) != AGG_OK)
        return -1;
    for (int i = 0; i < set->n && fd < 0; i++) {
        if (set->fd[i] >= 0 && matches(set->fd[i], list, socktype)) {
            fd = set->fd[i];
            set->fd[i] = -1;
        }
    }
    freeaddrinfo(list);
    if (fd >= 0)
        AGG_LOG_INFO("server", "using the socket passed by systemd for %s (fd %d)", addr, fd);
    return fd;
}

void agg_sockets_clear(struct agg_sockets *set)
{
    for (int i = 0; i < set->n; i++) {
        if (set->fd[i] < 0)
            continue;
        AGG_LOG_WARN("server", "socket fd %d passed by systemd matches no listen.* address: "
                               "closed", set->fd[i]);
        close(set->fd[i]);
        set->fd[i] = -1;
    }
    set->n = 0;
}
