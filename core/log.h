/*
 * core/log.h — leveled log lines on stderr, journald-aware.
 *
 * Place: the layer that decides what to do with an error logs it (STYLE.md).
 * Threads: any; each line is one write(2), so lines from threads do not interleave.
 * Traps: the level check happens before the arguments are evaluated.
 */
#ifndef AGGD_CORE_LOG_H
#define AGGD_CORE_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum agg_log_level {
    AGG_LOG_LEVEL_ERR = 0,
    AGG_LOG_LEVEL_WARN,
    AGG_LOG_LEVEL_INFO,
    AGG_LOG_LEVEL_DEBUG,
};

/* The most verbose level written (an enum agg_log_level): set at startup, changed by
 * a reload (agg_log_set_level) while threads log. */
extern _Atomic int agg_log_threshold;

/* Chooses the line format: <journal> true writes "<N>area: msg" prefixes for journald
 * (JOURNAL_STREAM set), false writes "time LEVEL area: msg". */
void agg_log_init(enum agg_log_level level, bool journal);

/* Changes the level while running (configuration reload). */
void agg_log_set_level(enum agg_log_level level);

/* Parses "error", "warning", "info", "debug" into <out>; false when unknown. */
bool agg_log_level_parse(const char *s, enum agg_log_level *out);

void agg_log_write(enum agg_log_level level, const char *area, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define AGG_LOG(level, area, ...)                                                             \
    do {                                                                                      \
        if ((int)(level) <= atomic_load_explicit(&agg_log_threshold, memory_order_relaxed)) \
            agg_log_write((level), (area), __VA_ARGS__);                                      \
    } while (0)
#define AGG_LOG_ERR(area, ...) AGG_LOG(AGG_LOG_LEVEL_ERR, area, __VA_ARGS__)
#define AGG_LOG_WARN(area, ...) AGG_LOG(AGG_LOG_LEVEL_WARN, area, __VA_ARGS__)
#define AGG_LOG_INFO(area, ...) AGG_LOG(AGG_LOG_LEVEL_INFO, area, __VA_ARGS__)
#define AGG_LOG_DEBUG(area, ...) AGG_LOG(AGG_LOG_LEVEL_DEBUG, area, __VA_ARGS__)

/* ---- rate-limited lines, for problems that repeat per event or per retry ---- */

/* At most one line per AGG_LOG_LIMIT_US from one agg_log_limit. */
#define AGG_LOG_LIMIT_US (INT64_C(10) * 1000000)

/* One source of repeated lines (a thread, a spool). Zero-initialise; not locked: use
 * from one thread at a time. */
struct agg_log_limit {
    int64_t last_us;     /* monotonic time of the last line written; 0: none yet */
    uint64_t suppressed; /* lines dropped since */
};

/* Whether a line from <l> may be written at monotonic <now_us>, at most one per
 * <interval_us>: true and *<suppressed> the number dropped since the last one (then
 * reset), or false and the line counted as dropped. */
bool agg_log_limit_pass(struct agg_log_limit *l, int64_t now_us, int64_t interval_us,
                        uint64_t *suppressed);

/* Writes the line if agg_log_limit_pass(<l>, now, AGG_LOG_LIMIT_US) lets it, ending in
 * " (and N similar messages suppressed)" when lines were dropped before it. */
void agg_log_limited_write(struct agg_log_limit *l, enum agg_log_level level, const char *area,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* AGG_LOG() through <limit> (struct agg_log_limit *): at most one line per
 * AGG_LOG_LIMIT_US, with the count of the lines dropped in between. */
#define AGG_LOG_LIMITED(limit, level, area, ...)                                                   \
    do {                                                                                           \
        if ((int)(level) <= atomic_load_explicit(&agg_log_threshold, memory_order_relaxed))      \
            agg_log_limited_write((limit), (level), (area), __VA_ARGS__);                          \
    } while (0)

/* Sends libevent's own messages (accept errors, bad requests) through this logger,
 * rate-limited, instead of straight to stderr. Once, at startup. */
void agg_log_route_libevent(void);

#endif
