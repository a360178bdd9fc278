/*
 * rules/sketch.h — a mergeable quantile sketch with 1 % relative accuracy (DDSketch).
 *
 * Place: rules/window.c keeps one per time bucket of a pNN rule and merges them to
 *        answer a quantile over the window.
 * Threads: a sketch belongs to one thread.
 * Ownership: the struct is caller-owned (rl_sketch_init/rl_sketch_clear); it owns
 *            its bins.
 * Traps: values <= RL_SKETCH_MIN_VALUE, negative ones included, count as zero (the
 *        numeric columns are >= 0); NaN and infinities are refused. Past
 *        RL_SKETCH_MAX_BINS the lowest bins fold together, so low quantiles lose
 *        accuracy first.
 */
#ifndef AGGD_RULES_SKETCH_H
#define AGGD_RULES_SKETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RL_SKETCH_ALPHA 0.01
#define RL_SKETCH_MAX_BINS 2048
#define RL_SKETCH_MIN_VALUE 1e-9

struct rl_sketch {
    uint64_t *bins;    /* bins[k] counts values of key min_key + k */
    size_t cap;        /* allocated bins */
    uint32_t nbins;    /* keys in use: [min_key, min_key + nbins) */
    int32_t min_key;
    bool collapsed;    /* bins[0] also holds every value below its key */
    uint64_t zero;     /* values <= RL_SKETCH_MIN_VALUE */
    uint64_t count;    /* all values */
};

/* An empty sketch; allocates nothing. */
void rl_sketch_init(struct rl_sketch *s);

/* Frees the bins; the sketch may be reused after rl_sketch_init. */
void rl_sketch_clear(struct rl_sketch *s);

/* Empties the sketch, keeping its bins allocated for reuse. */
void rl_sketch_reset(struct rl_sketch *s);

/* Adds <x>: AGG_OK, AGG_EINVAL for NaN or an infinity, AGG_ENOMEM when the bins had
 * to grow and could not (the sketch is unchanged). Allocates only while the range
 * of values seen grows. */
int rl_sketch_add(struct rl_sketch *s, double x);

/* Adds every value of <src> to <dst>: AGG_OK, or AGG_ENOMEM with <dst>'s counts
 * unchanged. */
int rl_sketch_merge(struct rl_sketch *dst, const struct rl_sketch *src);

/* The <q>-quantile (0 <= q <= 1) into <out>, within RL_SKETCH_ALPHA relative error of
 * the value of rank floor(q * (count - 1)) in sorted order; false when empty. */
bool rl_sketch_quantile(const struct rl_sketch *s, double q, double *out);

static inline uint64_t rl_sketch_count(const struct rl_sketch *s)
{
    return s->count;
}

/* Heap bytes held by the bins. */
size_t rl_sketch_memory(const struct rl_sketch *s);

#endif
