/*
 * src/sdnotify.c — sd_notify without libsystemd.
 *
 * Place: see src/sdnotify.h.
 * Threads: any.
 */
#include "src/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int agg_sd_notify(const char *path, const char *state, struct agg_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t plen;
    socklen_t salen;
    ssize_t sent;
    int fd;

    if (path == NULL || path[0] == '\0')
        return AGG_OK;
    plen = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(sa.sun_path))
        return agg_err_set(err, AGG_EINVAL, "cannot use NOTIFY_SOCKET \"%s\"", path);
    memcpy(sa.sun_path, path, plen);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return agg_err_set(err, AGG_ERR, "could not create notify socket: %s", strerror(errno));
    sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    close(fd);
    if (sent < 0)
        return agg_err_set(err, AGG_ERR, "could not notify \"%s\": %s", path, strerror(errno));
    return AGG_OK;
}
