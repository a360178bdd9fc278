/*
 * core/err.c — result codes and error detail.
 *
 * Place: see core/err.h.
 * Threads: pure.
 */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int agg_err_set(struct agg_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

void agg_err_prefix(struct agg_err *err, const char *fmt, ...)
{
    char old[AGG_ERR_MSG_MAX];
    char pre[AGG_ERR_MSG_MAX];
    va_list ap;

    if (err == NULL)
        return;
    memcpy(old, err->msg, sizeof(old));
    va_start(ap, fmt);
    vsnprintf(pre, sizeof(pre), fmt, ap);
    va_end(ap);
    /* Truncation keeps the context, which is what a reader needs first. */
    size_t plen = strnlen(pre, sizeof(err->msg) - 1);
    size_t olen = strnlen(old, sizeof(old));
    size_t n = plen;

    memcpy(err->msg, pre, plen);
    if (n + 2 < sizeof(err->msg)) {
        memcpy(err->msg + n, ": ", 2);
        n += 2;
    }
    if (olen > sizeof(err->msg) - 1 - n)
        olen = sizeof(err->msg) - 1 - n;
    memcpy(err->msg + n, old, olen);
    err->msg[n + olen] = '\0';
}

const char *agg_err_name(int code)
{
    switch (code) {
    case AGG_OK:
        return "ok";
    case AGG_EINVAL:
        return "invalid input";
    case AGG_ENOMEM:
        return "out of memory";
    case AGG_EAGAIN:
        return "try again";
    case AGG_EFULL:
        return "full";
    case AGG_EDB:
        return "database error";
    case AGG_ENOTFOUND:
        return "not found";
    default:
        return "error";
    }
}
