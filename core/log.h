/*
 * core/log.h — leveled log lines on stderr, journald-aware.
 *
 * Place: the layer that decides what to do with an error logs it (STYLE.md).
 * Threads: any; each line is one write(2), so lines from threads do not interleave.
 * Traps: the level check happens before the arguments are evaluated.
 */
#ifndef AGGD_CORE_LOG_H
#define AGGD_CORE_LOG_H

#include <stdbool.h>

enum agg_log_level {
    AGG_LOG_LEVEL_ERR = 0,
    AGG_LOG_LEVEL_WARN,
    AGG_LOG_LEVEL_INFO,
    AGG_LOG_LEVEL_DEBUG,
};

/* Set once at startup, before threads start: the most verbose level written. */
extern enum agg_log_level agg_log_threshold;

/* Chooses the line format: <journal> true writes "<N>area: msg" prefixes for journald
 * (JOURNAL_STREAM set), false writes "time LEVEL area: msg". */
void agg_log_init(enum agg_log_level level, bool journal);

/* Parses "error", "warning", "info", "debug" into <out>; false when unknown. */
bool agg_log_level_parse(const char *s, enum agg_log_level *out);

void agg_log_write(enum agg_log_level level, const char *area, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define AGG_LOG(level, area, ...)                                                             \
    do {                                                                                      \
        if ((level) <= agg_log_threshold)                                                     \
            agg_log_write((level), (area), __VA_ARGS__);                                      \
    } while (0)
#define AGG_LOG_ERR(area, ...) AGG_LOG(AGG_LOG_LEVEL_ERR, area, __VA_ARGS__)
#define AGG_LOG_WARN(area, ...) AGG_LOG(AGG_LOG_LEVEL_WARN, area, __VA_ARGS__)
#define AGG_LOG_INFO(area, ...) AGG_LOG(AGG_LOG_LEVEL_INFO, area, __VA_ARGS__)
#define AGG_LOG_DEBUG(area, ...) AGG_LOG(AGG_LOG_LEVEL_DEBUG, area, __VA_ARGS__)

#endif
