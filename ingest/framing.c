/*
 * ingest/framing.c — RFC 6587 octet counting and non-transparent (LF/NUL) framing.
 *
 * Place: see ingest/framing.h.
 * Threads: pure.
 * Ownership: keeps no pointer into the data after return.
 * Traps: the caller re-feeds unconsumed bytes, so everything about a frame that is
 *        not complete yet is re-derived from the bytes on the next call, except
 *        <scanned> (how far the LF search got) and the skip states. Every length
 *        check is done before the bytes are looked at: fuzz_framing splits inputs
 *        at arbitrary points and ASan sees any read past <len>.
 * Not here: frame contents (ingest/syslog.c).
 */
#include "ingest/framing.h"

#include <stdio.h>
#include <string.h>

#include "src/err.h"

enum count_result {
    COUNT_OK = 0,
    COUNT_NEED_MORE, /* only digits so far */
    COUNT_BAD,
};

void ing_framer_init(struct ing_framer *f, enum ing_framing_mode mode, size_t max_frame)
{
    memset(f, 0, sizeof(*f));
    f->mode = mode;
    f->max_frame = max_frame != 0 ? max_frame : ING_FRAMING_DEFAULT_MAX;
    f->cisco_asa_fix = true;
    f->state = ING_FRAMER_AT_FRAME;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* <c> for an error message: 'x', or a C escape for anything not printable. */
static void describe_octet(char c, char out[8])
{
    unsigned char u = (unsigned char)c;

    if (u == '\n')
        snprintf(out, 8, "'\\n'");
    else if (u == '\r')
        snprintf(out, 8, "'\\r'");
    else if (u >= 0x20 && u < 0x7f && u != '\'')
        snprintf(out, 8, "'%c'", c);
    else
        snprintf(out, 8, "0x%02x", u);
}

/* Reads MSG-LEN SP at <p>[<n>] (n >= 1): the count and the header length, or why not. */
static enum count_result scan_count(const char *p, size_t n, uint64_t at, uint64_t *count,
                                    size_t *hdr, char why[160])
{
    char found[8];
    uint64_t v = 0;
    size_t i = 0;

    if (p[0] == '0' || !is_digit(p[0])) {
        describe_octet(p[0], found);
        snprintf(why, 160, "MSG-LEN expected at offset %llu, found %s%s", (unsigned long long)at,
                 found, p[0] == '0' ? " (MSG-LEN = NONZERO-DIGIT *DIGIT)" : "");
        return COUNT_BAD;
    }
    while (i < n && is_digit(p[i])) {
        if (i == ING_FRAMING_MAX_DIGITS) {
            snprintf(why, 160, "MSG-LEN at offset %llu has more than %d digits",
                     (unsigned long long)at, ING_FRAMING_MAX_DIGITS);
            return COUNT_BAD;
        }
        v = v * 10 + (uint64_t)(p[i] - '0');
        i++;
    }
    if (i == n)
        return COUNT_NEED_MORE;
    if (p[i] != ' ') {
        describe_octet(p[i], found);
        snprintf(why, 160, "SP expected after MSG-LEN at offset %llu, found %s",
                 (unsigned long long)(at + i), found);
        return COUNT_BAD;
    }
    *count = v;
    *hdr = i + 1;
    return COUNT_OK;
}

static void report(struct ing_framer *f, const struct ing_frame_cb *cb, int kind, const char *why)
{
    if (kind == ING_FRAMING_E_OVERSIZE)
        f->oversized++;
    else if (kind == ING_FRAMING_E_BAD_COUNT)
        f->bad_counts++;
    else
        f->incomplete++;
    if (cb->error != NULL)
        cb->error(cb->arg, kind, why);
}

/* An LF/NUL frame over the limit. The text must not depend on whether its trailer has
 * arrived yet: a stream gives the same reports however it is split. */
static void report_long_line(struct ing_framer *f, const struct ing_frame_cb *cb, uint64_t at)
{
    char why[160];

    snprintf(why, sizeof(why), "frame at offset %llu: longer than the maximum %zu octets; skipped",
             (unsigned long long)at, f->max_frame);
    report(f, cb, ING_FRAMING_E_OVERSIZE, why);
}

static char trailer(const struct ing_framer *f)
{
    return f->mode == ING_FRAMING_NUL ? '\0' : '\n';
}

/* Length of the payload <p>[<n>] of a non-transparent frame once its trailer junk is
 * stripped: LF framing drops one CR (CRLF senders) and then one NUL (senders that
 * end their C strings with both). */
static size_t strip_payload(const struct ing_framer *f, const char *p, size_t n)
{
    if (f->mode == ING_FRAMING_NUL)
        return n;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    if (n > 0 && p[n - 1] == '\0')
        n--;
    return n;
}

/* Whether the frame at <c> is octet-counted. */
static bool octet_counted(const struct ing_framer *f, char c)
{
    return f->mode == ING_FRAMING_OCTET || (f->mode == ING_FRAMING_AUTO && is_digit(c));
}

/* The work of feed. Sets *<full> when cb->frame refused a frame. */
static size_t feed(struct ing_framer *f, const char *data, size_t len,
                   const struct ing_frame_cb *cb, bool *full)
{
    size_t pos = 0;
    char why[160];

    *full = false;
    for (;;) {
        if (f->state == ING_FRAMER_SKIP_COUNT) {
            uint64_t n = len - pos < f->skip_left ? len - pos : f->skip_left;

            pos += (size_t)n;
            f->skip_left -= n;
            f->skipped_bytes += n;
            if (f->skip_left > 0)
                break;
            f->state = ING_FRAMER_AT_FRAME;
            continue;
        }
        if (f->state == ING_FRAMER_SKIP_LINE) {
            const char *t = pos < len ? memchr(data + pos, trailer(f), len - pos) : NULL;
            size_t end = t != NULL ? (size_t)(t - data) + 1 : len;

            f->skipped_bytes += end - pos;
            pos = end;
            if (t == NULL)
                break;
            f->state = ING_FRAMER_AT_FRAME;
            continue;
        }

        /* at the start of a frame */
        if (pos == len)
            break;
        if (f->mode != ING_FRAMING_OCTET && f->cisco_asa_fix && data[pos] == ' ') {
            pos++;
            f->scanned = 0;
            continue;
        }
        if (octet_counted(f, data[pos])) {
            uint64_t count = 0;
            size_t hdr = 0;
            enum count_result r =
                scan_count(data + pos, len - pos, f->offset + pos, &count, &hdr, why);

            if (r == COUNT_NEED_MORE)
                break;
            if (r == COUNT_OK) {
                if (count > f->max_frame) {
                    snprintf(why, sizeof(why),
                             "frame at offset %llu: MSG-LEN %llu exceeds the maximum %zu; "
                             "skipped",
                             (unsigned long long)(f->offset + pos), (unsigned long long)count,
                             f->max_frame);
                    report(f, cb, ING_FRAMING_E_OVERSIZE, why);
                    pos += hdr;
                    f->skipped_bytes += hdr;
                    f->state = ING_FRAMER_SKIP_COUNT;
                    f->skip_left = count;
                    continue;
                }
                if (len - pos - hdr < count)
                    break;
                if (cb->frame(cb->arg, data + pos + hdr, (size_t)count) == AGG_EFULL) {
                    *full = true;
                    break;
                }
                f->frames++;
                pos += hdr + (size_t)count;
                continue;
            }
            if (f->mode == ING_FRAMING_OCTET) {
                /* Framing is lost. Resync after the next LF: a sender that lost count
                 * is usually one sending LF-terminated lines. */
                report(f, cb, ING_FRAMING_E_BAD_COUNT, why);
                f->state = ING_FRAMER_SKIP_LINE;
                f->scanned = 0;
                continue;
            }
            /* auto: a digit-led line that is not MSG-LEN SP is an LF frame */
        }
        {
            size_t from = pos + f->scanned;
            const char *t = from < len ? memchr(data + from, trailer(f), len - from) : NULL;
            size_t n;

            if (t == NULL) {
                /* a payload of max_frame may still get a CR and a NUL before its LF */
                if (len - pos > f->max_frame + 2) {
                    report_long_line(f, cb, f->offset + pos);
                    f->scanned = 0;
                    f->state = ING_FRAMER_SKIP_LINE;
                    continue;
                }
                f->scanned = len - pos;
                break;
            }
            n = strip_payload(f, data + pos, (size_t)(t - (data + pos)));
            if (n > f->max_frame) {
                report_long_line(f, cb, f->offset + pos);
                f->skipped_bytes += (size_t)(t - data) + 1 - pos;
            } else if (n > 0) {
                if (cb->frame(cb->arg, data + pos, n) == AGG_EFULL) {
                    f->scanned = (size_t)(t - (data + pos));
                    *full = true;
                    break;
                }
                f->frames++;
            }
            pos = (size_t)(t - data) + 1;
            f->scanned = 0;
        }
    }
    f->offset += pos;
    return pos;
}

size_t ing_framer_feed(struct ing_framer *f, const char *data, size_t len,
                       const struct ing_frame_cb *cb)
{
    bool full;

    return feed(f, data, len, cb, &full);
}

static void reset_stream(struct ing_framer *f)
{
    f->state = ING_FRAMER_AT_FRAME;
    f->skip_left = 0;
    f->scanned = 0;
    f->offset = 0;
}

size_t ing_framer_finish(struct ing_framer *f, const char *data, size_t len,
                         const struct ing_frame_cb *cb)
{
    bool full;
    size_t pos = feed(f, data, len, cb, &full);
    const char *p = data + pos;
    size_t n = len - pos;
    char why[160];

    if (full)
        return pos;
    if (f->state != ING_FRAMER_AT_FRAME || n == 0) {
        /* an oversized frame cut short by the end: already reported */
        reset_stream(f);
        return len;
    }
    if (octet_counted(f, p[0])) {
        uint64_t count = 0;
        size_t hdr = 0;
        enum count_result r = scan_count(p, n, f->offset, &count, &hdr, why);

        if (r == COUNT_NEED_MORE) {
            snprintf(why, sizeof(why), "stream ends inside MSG-LEN at offset %llu",
                     (unsigned long long)(f->offset + n));
            report(f, cb, ING_FRAMING_E_INCOMPLETE, why);
            f->skipped_bytes += n;
            reset_stream(f);
            return len;
        }
        if (r == COUNT_OK) {
            snprintf(why, sizeof(why),
                     "stream ends inside a frame: MSG-LEN %llu at offset %llu but only %zu "
                     "octets follow",
                     (unsigned long long)count, (unsigned long long)f->offset, n - hdr);
            report(f, cb, ING_FRAMING_E_INCOMPLETE, why);
            f->skipped_bytes += n;
            reset_stream(f);
            return len;
        }
        /* auto mode, not MSG-LEN SP: an LF tail (octet mode never stops at COUNT_BAD) */
    }
    {
        size_t m = strip_payload(f, p, n);

        if (m > f->max_frame) {
            report_long_line(f, cb, f->offset);
            f->skipped_bytes += n;
        } else if (m > 0) {
            if (cb->frame(cb->arg, p, m) == AGG_EFULL)
                return pos;
            f->frames++;
        }
    }
    reset_stream(f);
    return len;
}
