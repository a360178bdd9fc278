/*
 * core/buf.c — growable byte buffer and UTF-8 repair.
 *
 * Place: see core/buf.h.
 * Threads: pure.
 * Traps: UTF-8 validity follows RFC 3629: no overlongs, no surrogates, nothing
 *        above U+10FFFF; each maximal invalid subsequence becomes one U+FFFD.
 */
#include "core/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"

void agg_buf_init(struct agg_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void agg_buf_clear(struct agg_buf *b)
{
    free(b->data);
    agg_buf_init(b);
}

int agg_buf_reserve(struct agg_buf *b, size_t n)
{
    size_t need = b->len + n + 1;
    size_t cap = b->cap ? b->cap : 256;
    char *p;

    if (need <= b->cap)
        return AGG_OK;
    while (cap < need)
        cap *= 2;
    p = agg_realloc(b->data, cap);
    if (p == NULL)
        return AGG_ENOMEM;
    b->data = p;
    b->cap = cap;
    return AGG_OK;
}

size_t agg_fmt_u64(char out[20], uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

int agg_buf_put_u64(struct agg_buf *b, uint64_t v)
{
    char d[20];

    return agg_buf_append(b, d, agg_fmt_u64(d, v));
}

int agg_buf_printf(struct agg_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || agg_buf_reserve(b, (size_t)n) != AGG_OK)
        return AGG_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return AGG_OK;
}

/* Length of the valid, NUL-free UTF-8 sequence at <p> (at most <len>), or 0. */
static size_t utf8_seq(const unsigned char *p, size_t len)
{
    unsigned char c = p[0];

    if (c >= 0x01 && c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return len >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;

        return len >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;

        return len >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 &&
                       (p[3] & 0xC0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

size_t agg_utf8_valid_prefix(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n;

        /* ASCII fast path, eight bytes at a time */
        while (i + 8 <= len) {
            uint64_t w;

            memcpy(&w, p + i, 8);
            if ((w & UINT64_C(0x8080808080808080)) != 0 ||
                ((w - UINT64_C(0x0101010101010101)) & ~w & UINT64_C(0x8080808080808080)) != 0)
                break;
            i += 8;
        }
        if (i >= len)
            break;
        n = utf8_seq(p + i, len - i);
        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

int agg_utf8_repair(struct agg_buf *out, const char *s, size_t len)
{
    static const char fffd[] = "\xEF\xBF\xBD";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t ok = agg_utf8_valid_prefix(s + i, len - i);

        if (ok > 0 && agg_buf_append(out, s + i, ok) != AGG_OK)
            return AGG_ENOMEM;
        i += ok;
        if (i >= len)
            break;
        if (agg_buf_append(out, fffd, 3) != AGG_OK)
            return AGG_ENOMEM;
        /* Skip one maximal invalid subpart: the lead byte plus those continuation
         * bytes a valid sequence of its kind could have had (Unicode 3.9, U+FFFD
         * substitution of maximal subparts). */
        {
            unsigned char c = p[i++];
            size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
            unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;

            if (c < 0xC2 || c > 0xF4)
                continue;
            for (size_t k = 1; k < n && i < len; k++, lo = 0x80, hi = 0xBF) {
                if (p[i] < lo || p[i] > hi)
                    break;
                i++;
            }
        }
    }
    return AGG_OK;
}
