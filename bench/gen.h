/*
 * bench/gen.h — the benchmark's deterministic events and their wire forms, shared by
 *               aggd_loadgen (bench/loadgen.c) and aggd_parsebench (bench/parsebench.c).
 *
 * Place: benchmark tools only; not part of the daemon (libc only: the load generator
 *        must not share code with the daemon it measures).
 * Threads: pure; a generator's buffers belong to the caller's thread.
 * Ownership: every gen_buf is caller-owned (zero-initialised, gen_buf_free()); an
 *            event owns its three buffers (gen_event_free()).
 * Traps: event n is a pure function of (seed, n): every mode and every run with the
 *        same seed produces the same events; only timestamps (the moment an event
 *        is formatted, UTC µs) differ. Out of memory exits the process (a tool).
 * Not here: COPY rows of the loadgen's baseline (bench/loadgen.c), sockets.
 */
#ifndef AGGD_BENCH_GEN_H
#define AGGD_BENCH_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- growable byte buffer (exits on out of memory) ---------------------- */

struct gen_buf {
    char *p;
    size_t len, cap;
};

/* "out of memory" on stderr, exit 1. */
__attribute__((noreturn)) void gen_die_oom(void);
/* Room for <more> bytes plus a NUL after len. */
void gen_buf_reserve(struct gen_buf *b, size_t more);
void gen_buf_add(struct gen_buf *b, const char *s, size_t n);
void gen_buf_adds(struct gen_buf *b, const char *s);
void gen_buf_addc(struct gen_buf *b, char c);
void gen_buf_addu(struct gen_buf *b, uint64_t v);
void gen_buf_addf(struct gen_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gen_buf_free(struct gen_buf *b);

/* ---- JSON ---------------------------------------------------------------- */

/* "<s>" with quote, backslash and control characters escaped. */
void gen_json_str(struct gen_buf *b, const char *s, size_t n);
/* ,"<key>": (no comma before the first member: *<first> says, and is cleared). */
void gen_json_key(struct gen_buf *b, bool *first, const char *key);
void gen_json_kv(struct gen_buf *b, bool *first, const char *key, const char *v, size_t n);
void gen_json_kvs(struct gen_buf *b, bool *first, const char *key, const char *v);

/* ---- time ---------------------------------------------------------------- */

/* Formats wall-clock timestamps; caches the seconds part. Zero-initialise. */
struct gen_clock {
    time_t sec;
    char head[24]; /* "YYYY-MM-DDTHH:MM:SS" */
};

/* Appends the current UTC time with µs: ISO 8601 "…T…Z" when <iso>, else the COPY
 * form "YYYY-MM-DD HH:MM:SS.ffffff" (timestamp without time zone). */
void gen_clock_add(struct gen_buf *b, struct gen_clock *c, bool iso);

/* ---- events -------------------------------------------------------------- */

enum gen_level { GEN_LV_DEBUG = 0, GEN_LV_INFO, GEN_LV_WARNING, GEN_LV_ERROR, GEN_LV_CRITICAL };

extern const char *const gen_level_names[]; /* by enum gen_level: "DEBUG"… */
extern const int gen_level_severity[];      /* by enum gen_level: syslog severity */

/* One event; the strings point into static tables or into the event itself. */
struct gen_event {
    uint64_t n;
    enum gen_level level;
    const char *logger;
    const char *host;
    int procid;
    bool has_src;
    const char *module, *function;
    int line;
    char corr[48];
    bool has_req;
    char request_id[40];
    const char *method;
    char path[96];
    char ip[20];
    int duration_ms;
    bool has_mem;
    char mem[16];
    bool has_exc;
    const char *exc_type;
    bool has_extra;
    const char *env, *region, *tenant, *cache;
    int retry;
    struct gen_buf msg, exc_msg, stack;
};

/* Event <n> of run <seed> into <e> (zero-initialised once; reused across calls). */
void gen_event_make(uint64_t seed, uint64_t n, struct gen_event *e);
void gen_event_free(struct gen_event *e);

/* ---- wire forms ------------------------------------------------------------ */

/* The RFC 5424 message (no framing) appended to <b>: facility local0, APP-NAME the
 * logger, the columns in SD elements req@, src@, exception@, meta@32473. */
void gen_syslog5424(struct gen_buf *b, const struct gen_event *e, struct gen_clock *c);
/* The same message framed "LEN SP MSG" (RFC 6587 octet counting) appended to <out>;
 * <tmp> is scratch. */
void gen_enc_syslog(struct gen_buf *out, struct gen_buf *tmp, const struct gen_event *e,
                    struct gen_clock *c);
/* The RFC 3164 form appended to <b>: "<PRI>Mmm dd hh:mm:ss HOST APP[PROCID]: MSG", the
 * BSD timestamp in UTC without year; the columns other than level, logger and
 * message are not carried (3164 has no structured data). */
void gen_syslog3164(struct gen_buf *b, const struct gen_event *e);
/* The unknown fields of the JSON form (host, env, region, attrs{…}) as members
 * without braces. */
void gen_json_extra(struct gen_buf *b, const struct gen_event *e, bool *first);
/* One NDJSON line (ending in LF) with the system_logs column names as keys. */
void gen_enc_json(struct gen_buf *b, const struct gen_event *e, struct gen_clock *c);
/* One OTLP/HTTP JSON ResourceLogs element (service.name, host.name; one ScopeLogs,
 * named after the logger as OTel SDKs name scopes, with one LogRecord: timeUnixNano, severityNumber/Text, string body, the columns as
 * attributes with their semantic-convention names where docs/json-mapping.md has
 * one, the unknown fields as attributes too). A document is
 * {"resourceLogs":[e1,e2,…]}: the caller writes the brackets and commas. */
void gen_enc_otlp(struct gen_buf *b, const struct gen_event *e);

#endif
