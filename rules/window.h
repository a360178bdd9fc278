/*
 * rules/window.h — one rule's aggregate over a sliding time window of buckets.
 *
 * Place: rules/aggs.c feeds one window per rule from the ingest path; the evaluator
 *        reads its value every alerts.eval_interval_ms.
 * Threads: the loop thread only.
 * Ownership: caller owns a window (rl_window_new/_free); it keeps no pointer to the
 *            expression it was made from.
 * Traps: events are bucketed by the clock the caller passes (receive time), not by
 *        created_at: late or replayed events count now, and a window can never be
 *        starved or flooded by skewed producer clocks. A <now> earlier than the newest
 *        bucket counts in the newest bucket.
 *        Buckets are 1 s wide up to 600 s, ceil(W / 600) s beyond: at most 600.
 */
#ifndef AGGD_RULES_WINDOW_H
#define AGGD_RULES_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rules/expr.h"

#define RL_WINDOW_MAX_BUCKETS 600

struct rl_window;

/* What a value was computed from, for alerts.context. */
struct rl_window_figures {
    uint64_t total;   /* events seen (all events for ratio, matching ones otherwise) */
    uint64_t matched; /* events matching the filters */
    uint64_t valued;  /* matching events carrying the field */
    bool has_value;   /* false: no data (avg/min/max/sum/pNN of nothing) */
    double value;
    int window_s;
};

/* A window for the aggregate and window of <e>, starting empty at <now_us>. Caller
 * owns the result: rl_window_free(). NULL when out of memory. */
struct rl_window *rl_window_new(const struct rl_expr *e, int64_t now_us);

void rl_window_free(struct rl_window *w);

/* Counts one event at <now_us>: <matched> whether it passed the filters, <value> the
 * field's value when <has_value>. AGG_OK, or AGG_ENOMEM when a pNN sketch could not
 * grow (the event still counts, without its value in the quantile). */
int rl_window_add(struct rl_window *w, int64_t now_us, bool matched, bool has_value,
                  double value);

/* The aggregate over the last W seconds ending at <now_us> (W rounded up to whole
 * buckets) into <fig> (may be NULL) and <out>: false when there is no data (<out>
 * untouched). count, rate and ratio always have data (0 when empty). Quantiles are
 * within 1 % relative error; false also when merging their sketches ran out of
 * memory. */
bool rl_window_value(struct rl_window *w, int64_t now_us, double *out,
                     struct rl_window_figures *fig);

/* Heap and struct bytes held. */
size_t rl_window_memory(const struct rl_window *w);

/* Width of one bucket and how many buckets there are. */
int rl_window_bucket_s(const struct rl_window *w);
uint32_t rl_window_buckets(const struct rl_window *w);

/* Invariant check for tests: true when every bucket is consistent. */
bool rl_window_check(const struct rl_window *w);

#endif
