/*
 * ingest/framing.h — RFC 6587 framing: one syslog TCP byte stream in, frames out.
 *
 * Place: tcp listener -> [framing] -> syslog parser -> record (DESIGN.md, Data flow).
 * Threads: pure; a framer belongs to one connection (one thread).
 * Ownership: the framer is caller-owned plain data and keeps no pointer into the
 *            data it is fed: unconsumed bytes stay in the caller's buffer (the
 *            listener's libevent input buffer) until the next call.
 * Not here: what a frame contains (ingest/syslog.c), reading the socket.
 *
 * Methods (see docs/conformance.md for the decisions and the test vectors):
 *   octet counting  MSG-LEN SP MSG, MSG-LEN = NONZERO-DIGIT *DIGIT (at most 9 digits)
 *   LF              MSG LF; one trailing CR and then one trailing NUL are stripped.
 *                   Also MSG NUL when the NUL is followed by '<' (the next message's
 *                   PRI): from that frame on the connection is NUL-framed and LF is
 *                   data (Python's SysLogHandler over TCP, syslog-ng). Any other NUL
 *                   is data (rsyslog imtcp). A NUL that ends the bytes received so
 *                   far is undecided until the next octet arrives (nul_pending), or
 *                   the caller flushes it after a pause (ing_framer_flush).
 *   NUL             MSG NUL; LF is data
 *   auto            per frame, as rsyslog: a first octet that is a digit means octet
 *                   counting, anything else LF (with the NUL rule above). A digit-led
 *                   frame whose MSG-LEN is malformed (no SP, leading zero, too long)
 *                   is read as an LF frame.
 */
#ifndef AGGD_INGEST_FRAMING_H
#define AGGD_INGEST_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ING_FRAMING_DEFAULT_MAX 65536 /* ingest.max_message_bytes default */
#define ING_FRAMING_MAX_DIGITS  9     /* longest MSG-LEN accepted (< 1e9 octets) */

enum ing_framing_mode {
    ING_FRAMING_AUTO = 0,
    ING_FRAMING_OCTET,
    ING_FRAMING_LF,
    ING_FRAMING_NUL,
};

/* The <kind> passed to ing_frame_cb.error. */
enum ing_framing_error {
    ING_FRAMING_E_OVERSIZE = 0, /* a frame longer than max_frame: cut off, skipped, in sync */
    ING_FRAMING_E_BAD_COUNT,    /* malformed MSG-LEN; octet mode resyncs after the next LF */
    ING_FRAMING_E_INCOMPLETE,   /* the stream ended inside an octet-counted frame */
};

enum ing_framer_state {
    ING_FRAMER_AT_FRAME = 0, /* at the start of a frame */
    ING_FRAMER_SKIP_COUNT,   /* dropping the rest of an oversized octet-counted frame */
    ING_FRAMER_SKIP_LINE,    /* dropping up to and including the next trailer */
};

/* Plain data: set up with ing_framer_init(), then only read (counters) by callers. */
struct ing_framer {
    enum ing_framing_mode mode;
    size_t max_frame;   /* largest payload delivered, in octets */
    bool cisco_asa_fix; /* LF/NUL/auto: skip SPs in front of a frame (rsyslog
                         * framingfix.cisco.asa); on after init */
    bool nul_detect;    /* LF/auto: a NUL before '<' ends a frame (see above); on after
                         * init */

    enum ing_framer_state state;
    uint64_t skip_left; /* SKIP_COUNT: octets still to drop */
    size_t scanned;     /* octets at the head of the pending data known to hold no trailer */
    bool nul_framed;    /* LF/auto: a NUL trailer was seen; frames end at NUL only now */
    bool nul_pending;   /* the last feed stopped at a NUL that ends the data: flush
                         * (ing_framer_flush) if nothing more arrives soon */

    uint64_t offset;        /* stream octets consumed so far */
    uint64_t frames;        /* frames delivered */
    uint64_t oversized;     /* ING_FRAMING_E_OVERSIZE reports */
    uint64_t bad_counts;    /* ING_FRAMING_E_BAD_COUNT reports */
    uint64_t incomplete;    /* ING_FRAMING_E_INCOMPLETE reports */
    uint64_t skipped_bytes; /* octets dropped without being delivered */
};

struct ing_frame_cb {
    /* One frame: <payload>[<len>] (len >= 1) is borrowed for the call. Returns AGG_OK,
     * or AGG_EFULL to stop now (backpressure): the frame is then NOT consumed and is
     * delivered again by the next feed. */
    int (*frame)(void *arg, const char *payload, size_t len);
    /* A framing problem (enum ing_framing_error) and a reason naming the stream
     * offset. May be NULL. */
    void (*error)(void *arg, int kind, const char *why);
    void *arg;
};

/* Sets up <f> for <mode> with the frame limit <max_frame> (0: ING_FRAMING_DEFAULT_MAX). */
void ing_framer_init(struct ing_framer *f, enum ing_framing_mode mode, size_t max_frame);

/* Scans <data>[<len>], which starts with the bytes the previous call did not consume,
 * delivers every complete frame and returns how many bytes it consumed; the caller
 * drops those and calls again with the rest plus new data. Never reads past <len>.
 * The caller must be able to keep max_frame + 16 unconsumed bytes: longer frames are
 * consumed (skipped) as they arrive. Returns early, with less consumed, when
 * cb->frame returns AGG_EFULL. */
size_t ing_framer_feed(struct ing_framer *f, const char *data, size_t len,
                       const struct ing_frame_cb *cb);

/* The sender paused while nul_pending: as feed, but a NUL that ends <data> is a
 * trailer (the connection is NUL-framed from here on). Returns the bytes consumed. */
size_t ing_framer_flush(struct ing_framer *f, const char *data, size_t len,
                        const struct ing_frame_cb *cb);

/* At end of stream: as feed, then an unterminated LF/NUL-framed tail is delivered as
 * a last frame and an incomplete octet-counted frame is reported
 * (ING_FRAMING_E_INCOMPLETE) without being delivered. Returns the bytes consumed:
 * <len>, unless cb->frame returned AGG_EFULL (call again later with the rest).
 * Afterwards <f> is ready for a new stream (counters are kept). */
size_t ing_framer_finish(struct ing_framer *f, const char *data, size_t len,
                         const struct ing_frame_cb *cb);

#endif
