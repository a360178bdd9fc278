/*
 * core/log.c — leveled log lines on stderr.
 *
 * Place: see core/log.h.
 * Threads: any; one write(2) per line.
 * Traps: stderr may be a pipe to journald; never use stdio buffering here.
 */
#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/time.h"

_Atomic int agg_log_threshold = AGG_LOG_LEVEL_INFO;
static bool log_journal;

static const struct {
    const char *name;
    const char *tag;
    int syslog_prio;
} levels[] = {
    [AGG_LOG_LEVEL_ERR] = {"error", "ERROR", 3},
    [AGG_LOG_LEVEL_WARN] = {"warning", "WARN", 4},
    [AGG_LOG_LEVEL_INFO] = {"info", "INFO", 6},
    [AGG_LOG_LEVEL_DEBUG] = {"debug", "DEBUG", 7},
};

void agg_log_init(enum agg_log_level level, bool journal)
{
    atomic_store_explicit(&agg_log_threshold, (int)level, memory_order_relaxed);
    log_journal = journal;
}

void agg_log_set_level(enum agg_log_level level)
{
    atomic_store_explicit(&agg_log_threshold, (int)level, memory_order_relaxed);
}

bool agg_log_level_parse(const char *s, enum agg_log_level *out)
{
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        if (strcmp(s, levels[i].name) == 0) {
            *out = (enum agg_log_level)i;
            return true;
        }
    }
    return false;
}

void agg_log_write(enum agg_log_level level, const char *area, const char *fmt, ...)
{
    char line[2048];
    size_t n = 0;
    va_list ap;
    int r;

    if (log_journal) {
        r = snprintf(line, sizeof(line), "<%d>%s: ", levels[level].syslog_prio, area);
    } else {
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        r = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, levels[level].tag, area);
    }
    if (r > 0)
        n = (size_t)r < sizeof(line) ? (size_t)r : sizeof(line) - 1;
    va_start(ap, fmt);
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (r > 0)
        n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
    /* One line per message: newlines inside would split a journald entry. */
    for (size_t i = 0; i < n; i++) {
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    }
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    (void)!write(STDERR_FILENO, line, n);
}

bool agg_log_limit_pass(struct agg_log_limit *l, int64_t now_us, int64_t interval_us,
                        uint64_t *suppressed)
{
    if (l->last_us != 0 && now_us - l->last_us < interval_us) {
        l->suppressed++;
        return false;
    }
    *suppressed = l->suppressed;
    l->suppressed = 0;
    l->last_us = now_us != 0 ? now_us : 1; /* 0 means "none yet" */
    return true;
}

void agg_log_limited_write(struct agg_log_limit *l, enum agg_log_level level, const char *area,
                           const char *fmt, ...)
{
    char line[1536];
    uint64_t suppressed;
    va_list ap;

    if (!agg_log_limit_pass(l, agg_time_mono_us(), AGG_LOG_LIMIT_US, &suppressed))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (suppressed > 0)
        agg_log_write(level, area, "%s (and %llu similar messages suppressed)", line,
                      (unsigned long long)suppressed);
    else
        agg_log_write(level, area, "%s", line);
}

/* libevent may log from any thread that runs an event loop. */
static pthread_mutex_t libevent_lock = PTHREAD_MUTEX_INITIALIZER;
static struct agg_log_limit libevent_limit;

static void on_libevent_log(int severity, const char *msg)
{
    enum agg_log_level level = severity == EVENT_LOG_ERR    ? AGG_LOG_LEVEL_ERR
                               : severity == EVENT_LOG_WARN ? AGG_LOG_LEVEL_WARN
                               : severity == EVENT_LOG_MSG  ? AGG_LOG_LEVEL_INFO
                                                            : AGG_LOG_LEVEL_DEBUG;

    /* e.g. "Error from accept() call: Too many open files", once per connection */
    pthread_mutex_lock(&libevent_lock);
    AGG_LOG_LIMITED(&libevent_limit, level, "libevent", "%s", msg);
    pthread_mutex_unlock(&libevent_lock);
}

void agg_log_route_libevent(void)
{
    event_set_log_callback(on_libevent_log);
}
