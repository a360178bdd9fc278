/*
 * core/buf.h — a growable byte buffer, and UTF-8 repair.
 *
 * Place: scratch space of decoders and the COPY batch encoder.
 * Threads: a buffer belongs to one thread at a time.
 * Ownership: the struct is caller-owned (agg_buf_init/agg_buf_clear); it owns <data>.
 */
#ifndef AGGD_CORE_BUF_H
#define AGGD_CORE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/err.h"

struct agg_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
};

void agg_buf_init(struct agg_buf *b);
void agg_buf_clear(struct agg_buf *b); /* frees; the struct may be reused after init */
static inline void agg_buf_reset(struct agg_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

/* Makes room for <n> more bytes: AGG_OK or AGG_ENOMEM. */
int agg_buf_reserve(struct agg_buf *b, size_t n);

static inline int agg_buf_append(struct agg_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return AGG_OK;
    if (b->cap - b->len <= n && agg_buf_reserve(b, n) != AGG_OK)
        return AGG_ENOMEM;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return AGG_OK;
}

static inline int agg_buf_putc(struct agg_buf *b, char c)
{
    return agg_buf_append(b, &c, 1);
}

int agg_buf_printf(struct agg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* <v> in decimal into <out> (no NUL); its length. Per-event hot paths use it where
 * printf's cost shows. */
size_t agg_fmt_u64(char out[20], uint64_t v);

/* Appends <v> in decimal. */
int agg_buf_put_u64(struct agg_buf *b, uint64_t v);

/* Length of the longest prefix of <p>[<len>] that is valid UTF-8 without NUL bytes. */
size_t agg_utf8_valid_prefix(const char *p, size_t len);

/* True when <p>[<len>] is valid UTF-8 and holds no NUL byte. */
static inline bool agg_utf8_is_clean(const char *p, size_t len)
{
    return agg_utf8_valid_prefix(p, len) == len;
}

/* Appends <p>[<len>] to <out> with every invalid UTF-8 sequence and every NUL byte
 * replaced by U+FFFD (as PostgreSQL text and jsonb accept neither). */
int agg_utf8_repair(struct agg_buf *out, const char *p, size_t len);

#endif
