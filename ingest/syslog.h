/*
 * ingest/syslog.h — RFC 5424 / RFC 3164 parsers: one frame or datagram in, one record out.
 *
 * Place: framer (TCP) or datagram (UDP) -> [syslog] -> record -> spool (DESIGN.md).
 * Threads: pure; callable from any thread.
 * Ownership: a parsed message points into the input; a record made from it points
 *            into the input and the caller's scratch buffer.
 * Not here: framing (ingest/framing.c), COPY encoding and UTF-8 repair of columns
 *           (store/), the timestamp range policy (the batcher).
 *
 * Detection: an input shaped "<PRI>VERSION SP" (PRI and VERSION 1-3 digits) is RFC
 * 5424 and parsed strictly: anything not RFC 5424 is refused with the reason. Every
 * other input is RFC 3164 and parsed leniently, the way rsyslog takes real devices:
 * it is never refused unless empty. The decisions, and where they differ from the
 * conformance corpus, are in docs/conformance.md.
 */
#ifndef AGGD_INGEST_SYSLOG_H
#define AGGD_INGEST_SYSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/record.h"
#include "core/err.h"

struct agg_tz; /* core/tz.h */

#define ING_SYSLOG_RFC5424 5424
#define ING_SYSLOG_RFC3164 3164

#define ING_SYSLOG_MAX_SD_ELEMENTS 512 /* more is refused (duplicate check is bounded) */

/* A parsed message. Every agg_str points into the parsed input (p == NULL: absent,
 * NILVALUE for RFC 5424), valid as long as the input is. */
struct ing_syslog_msg {
    int format;               /* ING_SYSLOG_RFC5424 or ING_SYSLOG_RFC3164 */
    int pri;                  /* 0-191 */
    int facility;             /* pri / 8 */
    int severity;             /* pri % 8 */
    int version;              /* RFC 5424 VERSION (1-999); 0 for RFC 3164 */
    int64_t ts_us;            /* TIMESTAMP in UTC microseconds, AGG_TIME_NONE if absent */
    struct agg_str timestamp; /* TIMESTAMP as written (3164: without Cisco '*'/'.'/':') */
    struct agg_str hostname;
    struct agg_str app_name; /* 3164: the TAG's program name */
    struct agg_str procid;   /* 3164: the text in TAG[...] */
    struct agg_str msgid;    /* 5424 only */
    struct agg_str sd;       /* raw STRUCTURED-DATA text, escapes kept; 5424 only */
    struct agg_str msg;      /* MSG as received (a leading BOM kept) */
    struct agg_str raw;      /* the whole input */
    /* RFC 3164 extras */
    bool pri_assumed; /* no valid PRI in the packet: 13 (user.notice) assumed */
    int year;         /* year written in a BSD timestamp ("Apr 15 2007 21:28:13"), or 0 */
    int64_t msgcount; /* Cisco IOS message counter ("643: "), -1 if absent */
    int64_t sequence; /* Cisco IOS sequence number ("000104: "), -1 if absent */
    char clock_flag;  /* Cisco '*' (clock not synchronised) or '.' before the time, or 0 */
};

/* Parses one frame or datagram <p>[<len>]. One trailing NUL, then LF, then CR are
 * dropped first. RFC 5424 when shaped "<PRI>VERSION SP" (strict), else RFC 3164
 * (lenient). RFC 3164 times without an offset (BSD dates, ISO dates without zone) are
 * wall-clock times of <zone> (borrowed for the call; NULL: UTC), DST included.
 * <now_us> resolves the year of year-less dates: the one nearest to <zone>'s wall
 * clock at <now_us>, not more than 31 days ahead of it. Returns AGG_OK, or
 * AGG_EINVAL + <err> (the reason and the byte offset) for input that cannot be
 * parsed; <out> is always initialised and points into <p>. */
int ing_syslog_parse(const char *p, size_t len, int64_t now_us, const struct agg_tz *zone,
                     struct ing_syslog_msg *out, struct agg_err *err);

/* Walks STRUCTURED-DATA text as accepted by ing_syslog_parse (ing_syslog_msg.sd).
 * Plain data; points into that text. */
struct ing_syslog_sd_iter {
    const char *p, *end;
    bool in_element;
};

void ing_syslog_sd_init(struct ing_syslog_sd_iter *it, struct agg_str sd);

/* The next SD-ELEMENT: true with its SD-ID, false when there is none (or the text is
 * malformed). Skips the parameters of the current element not yet visited. */
bool ing_syslog_sd_next_element(struct ing_syslog_sd_iter *it, struct agg_str *id);

/* The next SD-PARAM of the current element: true with its name and its value as
 * written (escapes kept; see ing_syslog_sd_unescape), false after the last one. */
bool ing_syslog_sd_next_param(struct ing_syslog_sd_iter *it, struct agg_str *name,
                              struct agg_str *raw_value);

/* Appends the PARAM-VALUE <p>[<len>] to <out> unescaped: \" -> ", \\ -> \, \] -> ];
 * a backslash before anything else is kept (RFC 5424 6.3.3). AGG_OK or AGG_ENOMEM. */
int ing_syslog_sd_unescape(struct agg_buf *out, const char *p, size_t len);

/* Maps <m> to <rec> (DESIGN.md, Record mapping): severity -> level, APP-NAME ->
 * logger_name, MSG -> message (a leading UTF-8 BOM stripped, else in RFC 5424 one
 * leading SP (rsyslog's templates); "" when absent; other bytes as received, the
 * COPY encoder repairs them), TIMESTAMP -> created_us,
 * raw -> the whole input; hostname, facility, severity, procid, msgid (3164: PRI
 * assumed, Cisco counters and clock flag) -> extra_data {"syslog":{...},"sd":{"id":
 * {"param":"value"}},"sd_order":"..."} as valid UTF-8 JSON without NUL. An SD param
 * named like a system_logs column sets that column, after the header fields (it
 * wins; of several, the last), and is left out of "sd" when the column gives its
 * text back exactly, unless MSG is a JSON object; repeated params are arrays;
 * "sd_order" rebuilds the SD's order (docs/json-mapping.md, "Syslog structured data
 * stored once").
 * <scratch> is reset and then holds the JSON and unescaped column values; <rec>
 * points into <m>'s input and <scratch>, valid until either changes. AGG_OK,
 * AGG_EINVAL + <err> naming the SD param for a value the column refuses, or
 * AGG_ENOMEM. */
int ing_syslog_to_record(const struct ing_syslog_msg *m, struct agg_buf *scratch,
                         struct agg_record *rec, struct agg_err *err);

/* Whether the message <msg> (a record's, as ing_syslog_to_record made it: BOM and
 * rsyslog's SP already stripped) carries a JSON object, as winston-syslog,
 * pino-syslog, bunyan-syslog and nginx's escape=json formats send: after an optional
 * "@cee:" cookie (CEE / rsyslog mmjsonparse) and SP/TABs, text that starts with '{'
 * and ends with '}' (trailing SP, TAB, CR, LF aside). Sets <obj> to that text, which
 * points into <msg>. Whether it is valid JSON is for the JSON decoder to say. */
bool ing_syslog_json_msg(struct agg_str msg, struct agg_str *obj);

#endif
