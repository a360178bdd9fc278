/*
 * core/file.h — files that appear whole or not at all: written under "<path>.tmp",
 *               fsynced, renamed, and the directory fsynced, so a crash leaves the old
 *               file, the new one, or a stray .tmp (overwritten by the next attempt).
 *
 * Threads: reentrant. Errors: AGG_OK, or an error code with <err> set naming the path.
 */
#ifndef AGGD_CORE_FILE_H
#define AGGD_CORE_FILE_H

#include <stddef.h>

#include "core/err.h"

/* Writes all <len> bytes of <buf> to <fd> (retrying short writes); <path> names it. */
int agg_file_write_all(int fd, const void *buf, size_t len, const char *path, struct agg_err *err);

/* mkdir -p <path> (0750). */
int agg_file_mkdirs(const char *path, struct agg_err *err);

/* The directory part of <path> ("." when it has none) into <dir>[<cap>]. */
int agg_file_dir_of(const char *path, char *dir, size_t cap, struct agg_err *err);

/* fsyncs the directory holding <path>. */
int agg_file_fsync_dir(const char *path, struct agg_err *err);

/* Opens "<path>.tmp" (its name into <tmp>[<cap>]) for writing, truncated, creating the
 * directories above it. The descriptor, or -1 with <err> set. */
int agg_file_open_tmp(const char *path, char *tmp, size_t cap, struct agg_err *err);

/* fsync + close <fd>, rename <tmp> to <path>, fsync the directory. <fd> is closed
 * whatever happens. */
int agg_file_publish(int fd, const char *tmp, const char *path, struct agg_err *err);

#endif
