/*
 * core/metrics.h — counters and gauges rendered as Prometheus text on /metrics.
 *
 * Place: modules register their series at _new() and bump them on any thread.
 * Threads: registration on the main thread before threads start; updates are relaxed
 *          atomics from any thread; rendering on the loop thread.
 * Ownership: the registry owns every series; returned pointers live as long as it.
 */
#ifndef AGGD_CORE_METRICS_H
#define AGGD_CORE_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "core/err.h"

struct agg_metrics;

enum agg_metric_type {
    AGG_METRIC_COUNTER = 0,
    AGG_METRIC_GAUGE,
    AGG_METRIC_HISTOGRAM,
};

/* Computes a gauge at render time (e.g. a queue depth). */
typedef double (*agg_metric_fn)(void *arg);

/* Caller owns the result: agg_metrics_free(). */
struct agg_metrics *agg_metrics_new(struct agg_err *err);
void agg_metrics_free(struct agg_metrics *m);

/* Registers the series <name>{<labels>} (labels: `a="x",b="y"` or NULL) and returns its
 * value cell, owned by <m>. Series of one name share <help> and <type>. NULL on OOM. */
_Atomic int64_t *agg_metrics_add(struct agg_metrics *m, enum agg_metric_type type,
                                 const char *name, const char *labels, const char *help);

/* Registers a gauge whose value <fn>(<arg>) computes when rendered. */
int agg_metrics_add_fn(struct agg_metrics *m, const char *name, const char *labels,
                       const char *help, agg_metric_fn fn, void *arg);

/* Registers a counter read from elsewhere (e.g. the kernel) when rendered: <fn> must
 * never return less than it returned before. */
int agg_metrics_add_counter_fn(struct agg_metrics *m, const char *name, const char *labels,
                               const char *help, agg_metric_fn fn, void *arg);

#define AGG_METRICS_MAX_BUCKETS 16

/* A histogram: cumulative buckets with upper bounds, a sum and a count. */
struct agg_histogram {
    int n;
    double bounds[AGG_METRICS_MAX_BUCKETS];
    _Atomic int64_t buckets[AGG_METRICS_MAX_BUCKETS + 1]; /* last: +Inf */
    _Atomic int64_t count;
    _Atomic int64_t sum_micro; /* sum of observations x 1e6 */
};

/* Registers histogram <name> with <n> ascending <bounds> (at most
 * AGG_METRICS_MAX_BUCKETS). The result is owned by <m>; NULL on OOM or bad bounds. */
struct agg_histogram *agg_metrics_add_histogram(struct agg_metrics *m, const char *name,
                                                const char *labels, const char *help,
                                                const double *bounds, int n);

/* Records <v> in <h>: any thread, lock-free. */
void agg_histogram_observe(struct agg_histogram *h, double v);

/* Appends the exposition text of every series, then process_* metrics, to <out>. */
int agg_metrics_render(struct agg_metrics *m, struct evbuffer *out);

static inline void agg_metric_inc(_Atomic int64_t *cell, int64_t by)
{
    atomic_fetch_add_explicit(cell, by, memory_order_relaxed);
}

static inline void agg_metric_set(_Atomic int64_t *cell, int64_t v)
{
    atomic_store_explicit(cell, v, memory_order_relaxed);
}

#endif
