/*
 * core/err.h — result codes and the error detail that travels up with them.
 *
 * Place: used by every module; the layer that decides what to do logs it.
 * Threads: a struct agg_err belongs to one caller; no shared state.
 * Ownership: caller-owned, fixed size, no heap.
 * Not here: logging (core/log.h).
 */
#ifndef AGGD_CORE_ERR_H
#define AGGD_CORE_ERR_H

#include <stddef.h>

enum {
    AGG_OK = 0,
    AGG_ERR = -1,     /* anything not listed below */
    AGG_EINVAL = -2,  /* bad input: config, network bytes, files, arguments */
    AGG_ENOMEM = -3,  /* out of memory */
    AGG_EAGAIN = -4,  /* try again later (nothing free, would block) */
    AGG_EFULL = -5,   /* a bounded resource is full */
    AGG_EDB = -6,     /* PostgreSQL refused or is unreachable */
    AGG_ENOTFOUND = -7,
};

#define AGG_ERR_MSG_MAX 512

struct agg_err {
    int code;
    char msg[AGG_ERR_MSG_MAX];
};

/* Records <code> and a printf-style message in <err> (NULL is allowed and ignored).
 * Returns <code>, so callers can write `return agg_err_set(err, AGG_EINVAL, ...)`. */
int agg_err_set(struct agg_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in <err> with a printf-style context ("ctx: old"). */
void agg_err_prefix(struct agg_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A short constant name for <code> ("invalid input", "out of memory", ...). */
const char *agg_err_name(int code);

#endif
