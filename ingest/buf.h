/*
 * ingest/buf.h — a growable byte buffer, and UTF-8 repair.
 *
 * Place: scratch space of decoders and the COPY batch encoder.
 * Threads: a buffer belongs to one thread at a time.
 * Ownership: the struct is caller-owned (ing_buf_init/ing_buf_clear); it owns <data>.
 */
#ifndef AGGD_INGEST_BUF_H
#define AGGD_INGEST_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "src/err.h"

struct ing_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
};

void ing_buf_init(struct ing_buf *b);
void ing_buf_clear(struct ing_buf *b); /* frees; the struct may be reused after init */
static inline void ing_buf_reset(struct ing_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

/* Makes room for <n> more bytes: AGG_OK or AGG_ENOMEM. */
int ing_buf_reserve(struct ing_buf *b, size_t n);

static inline int ing_buf_append(struct ing_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return AGG_OK;
    if (b->cap - b->len <= n && ing_buf_reserve(b, n) != AGG_OK)
        return AGG_ENOMEM;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return AGG_OK;
}

static inline int ing_buf_putc(struct ing_buf *b, char c)
{
    return ing_buf_append(b, &c, 1);
}

int ing_buf_printf(struct ing_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Length of the longest prefix of <p>[<len>] that is valid UTF-8 without NUL bytes. */
size_t ing_utf8_valid_prefix(const char *p, size_t len);

/* True when <p>[<len>] is valid UTF-8 and holds no NUL byte. */
static inline bool ing_utf8_is_clean(const char *p, size_t len)
{
    return ing_utf8_valid_prefix(p, len) == len;
}

/* Appends <p>[<len>] to <out> with every invalid UTF-8 sequence and every NUL byte
 * replaced by U+FFFD (as PostgreSQL text and jsonb accept neither). */
int ing_utf8_repair(struct ing_buf *out, const char *p, size_t len);

#endif
