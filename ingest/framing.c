/*
 * ingest/framing.c — RFC 6587 octet counting and non-transparent (LF/NUL) framing.
 *
 * Place: see ingest/framing.h.
 * Threads: pure.
 * Ownership: keeps no pointer into the data after return.
 * Traps: the caller re-feeds unconsumed bytes, so everything about a frame that is
 *        not complete yet is re-derived from the bytes on the next call, except
 *        <scanned> (how far the trailer search got), <nul_framed> and the skip
 *        states. Whether a NUL ends a frame depends on the octet after it, so a NUL
 *        that ends the data is left unconsumed (<scanned> stops before it) and
 *        looked at again: that keeps the frames independent of how the stream was
 *        split. Every length check is done before the bytes are looked at:
 *        fuzz_framing splits inputs at arbitrary points and ASan sees any read past
 *        <len>.
 * Not here: frame contents (ingest/syslog.c).
 */
#include "ingest/framing.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"

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
    f->nul_detect = true;
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

enum trail {
    TRAIL_NONE = 0, /* no trailer in the data yet */
    TRAIL_LF,       /* an LF ends the frame */
    TRAIL_NUL,      /* a NUL ends the frame */
    TRAIL_HOLD,     /* the data ends with a NUL that may or may not end the frame */
};

/* Whether non-transparent frames end at NUL only (LF is data). */
static bool nul_only(const struct ing_framer *f)
{
    return f->mode == ING_FRAMING_NUL || f->nul_framed;
}

/* The first trailer in <data>[<from>..<len>): its kind and index (*<at>). In LF and
 * auto mode (nul_detect) a NUL followed by '<' (the PRI of the next message) also
 * ends a frame, and from then on the connection is NUL-framed; a NUL followed by
 * anything else is data. A NUL that ends the data is undecided (TRAIL_HOLD) unless
 * <flush>: then it is a trailer. */
static enum trail find_trailer(const struct ing_framer *f, const char *data, size_t len,
                               size_t from, bool flush, size_t *at)
{
    const char *lf;
    size_t stop;

    if (from >= len)
        return TRAIL_NONE;
    if (nul_only(f)) {
        const char *z = memchr(data + from, '\0', len - from);

        if (z == NULL)
            return TRAIL_NONE;
        *at = (size_t)(z - data);
        return TRAIL_NUL;
    }
    lf = memchr(data + from, '\n', len - from);
    stop = lf != NULL ? (size_t)(lf - data) : len;
    if (f->nul_detect && f->mode != ING_FRAMING_OCTET) {
        for (size_t i = from; i < stop; i++) {
            const char *z = memchr(data + i, '\0', stop - i);

            if (z == NULL)
                break;
            i = (size_t)(z - data);
            if (i + 1 == len) { /* only when no LF follows: stop == len */
                *at = i;
                return flush ? TRAIL_NUL : TRAIL_HOLD;
            }
            if (data[i + 1] == '<') {
                *at = i;
                return TRAIL_NUL;
            }
        }
    }
    if (lf == NULL)
        return TRAIL_NONE;
    *at = stop;
    return TRAIL_LF;
}

/* Length of the payload <p>[<n>] of a non-transparent frame once its trailer junk is
 * stripped: a frame that ended at an LF drops one CR (CRLF senders) and then one NUL
 * (senders that end their C strings with both); a NUL-terminated one keeps all. */
static size_t strip_payload(const char *p, size_t n, bool lf)
{
    if (!lf)
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

/* The work of feed. Sets *<full> when cb->frame refused a frame. <flush>: a NUL that
 * ends the data is a trailer (find_trailer). */
static size_t feed(struct ing_framer *f, const char *data, size_t len,
                   const struct ing_frame_cb *cb, bool flush, bool *full)
{
    size_t pos = 0;
    char why[160];

    *full = false;
    f->nul_pending = false;
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
            size_t at = 0;
            enum trail tr = find_trailer(f, data, len, pos, flush, &at);
            size_t end = tr == TRAIL_NONE ? len : tr == TRAIL_HOLD ? at : at + 1;

            f->skipped_bytes += end - pos;
            pos = end;
            if (tr == TRAIL_NONE || tr == TRAIL_HOLD) {
                f->nul_pending = tr == TRAIL_HOLD;
                break;
            }
            f->nul_framed = f->nul_framed || (tr == TRAIL_NUL && f->mode != ING_FRAMING_NUL);
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
            size_t at = 0;
            enum trail tr = find_trailer(f, data, len, pos + f->scanned, flush, &at);
            size_t n;

            if (tr == TRAIL_NONE || tr == TRAIL_HOLD) {
                size_t have = len - pos;

                /* a payload of max_frame may still get a CR and a NUL before its LF */
                if (have > f->max_frame + 2) {
                    report_long_line(f, cb, f->offset + pos);
                    f->scanned = 0;
                    f->state = ING_FRAMER_SKIP_LINE;
                    continue;
                }
                /* a held NUL is looked at again when the next octet is there */
                f->scanned = tr == TRAIL_HOLD ? at - pos : have;
                f->nul_pending = tr == TRAIL_HOLD;
                break;
            }
            if (tr == TRAIL_NUL && f->mode != ING_FRAMING_NUL)
                f->nul_framed = true;
            n = strip_payload(data + pos, at - pos, tr == TRAIL_LF);
            if (n > f->max_frame) {
                report_long_line(f, cb, f->offset + pos);
                f->skipped_bytes += at + 1 - pos;
            } else if (n > 0) {
                if (cb->frame(cb->arg, data + pos, n) == AGG_EFULL) {
                    f->scanned = at - pos;
                    *full = true;
                    break;
                }
                f->frames++;
            }
            pos = at + 1;
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

    return feed(f, data, len, cb, false, &full);
}

size_t ing_framer_flush(struct ing_framer *f, const char *data, size_t len,
                        const struct ing_frame_cb *cb)
{
    bool full;

    return feed(f, data, len, cb, true, &full);
}

static void reset_stream(struct ing_framer *f)
{
    f->state = ING_FRAMER_AT_FRAME;
    f->skip_left = 0;
    f->scanned = 0;
    f->offset = 0;
    f->nul_framed = false;
    f->nul_pending = false;
}

size_t ing_framer_finish(struct ing_framer *f, const char *data, size_t len,
                         const struct ing_frame_cb *cb)
{
    bool full;
    size_t pos = feed(f, data, len, cb, false, &full);
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
        size_t m = strip_payload(p, n, !nul_only(f));

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
