/*
 * core/file.c — files that appear whole or not at all: temp name, fsync, rename,
 *               directory fsync (the archive, uploaded files).
 *
 * Threads: reentrant.
 */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_CAP 4096

int agg_file_write_all(int fd, const void *buf, size_t len, const char *path, struct agg_err *err)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return agg_err_set(err, AGG_ERR, "could not write \"%s\": %s", path, strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
    return AGG_OK;
}

int agg_file_mkdirs(const char *path, struct agg_err *err)
{
    char buf[PATH_CAP];
    size_t n = strlen(path);

    if (n >= sizeof(buf))
        return agg_err_set(err, AGG_EINVAL, "path \"%s\" is too long", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0750) != 0 && errno != EEXIST)
            return agg_err_set(err, AGG_ERR, "could not create directory \"%s\": %s", buf,
                               strerror(errno));
        if (i < n)
            buf[i] = '/';
    }
    return AGG_OK;
}

int agg_file_dir_of(const char *path, char *dir, size_t cap, struct agg_err *err)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 1 : (size_t)(slash - path);

    if (n >= cap)
        return agg_err_set(err, AGG_EINVAL, "path \"%s\" is too long", path);
    if (slash == NULL)
        memcpy(dir, ".", 2);
    else if (n == 0)
        memcpy(dir, "/", 2);
    else {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    return AGG_OK;
}

int agg_file_fsync_dir(const char *path, struct agg_err *err)
{
    char dir[PATH_CAP];
    int fd, rc = AGG_OK;

    if (agg_file_dir_of(path, dir, sizeof(dir), err) != AGG_OK)
        return AGG_EINVAL;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return agg_err_set(err, AGG_ERR, "could not open directory \"%s\": %s", dir,
                           strerror(errno));
    if (fsync(fd) != 0)
        rc =
            agg_err_set(err, AGG_ERR, "could not fsync directory \"%s\": %s", dir, strerror(errno));
    close(fd);
    return rc;
}

int agg_file_open_tmp(const char *path, char *tmp, size_t cap, struct agg_err *err)
{
    char dir[PATH_CAP];
    int n = snprintf(tmp, cap, "%s.tmp", path);
    int fd;

    if (n < 0 || (size_t)n >= cap)
        return agg_err_set(err, AGG_EINVAL, "path \"%s\" is too long", path);
    if (agg_file_dir_of(path, dir, sizeof(dir), err) != AGG_OK ||
        agg_file_mkdirs(dir, err) != AGG_OK)
        return -1;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        agg_err_set(err, AGG_ERR, "could not create \"%s\": %s", tmp, strerror(errno));
    return fd;
}

int agg_file_publish(int fd, const char *tmp, const char *path, struct agg_err *err)
{
    if (fsync(fd) != 0) {
        agg_err_set(err, AGG_ERR, "could not fsync \"%s\": %s", tmp, strerror(errno));
        close(fd);
        return AGG_ERR;
    }
    if (close(fd) != 0)
        return agg_err_set(err, AGG_ERR, "could not close \"%s\": %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0)
        return agg_err_set(err, AGG_ERR, "could not rename \"%s\": %s", tmp, strerror(errno));
    return agg_file_fsync_dir(path, err);
}
