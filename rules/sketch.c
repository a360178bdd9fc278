/*
 * rules/sketch.c — DDSketch: log-spaced bins, dense with an offset.
 *
 * Place: see rules/sketch.h.
 * Threads: one owner.
 * Traps: a value x goes to key ceil(log_gamma(x)), gamma = (1 + a) / (1 - a); the
 *        key's representative 2 gamma^k / (gamma + 1) is within a of every x in it.
 *        Growing the bins is the only allocation, so callers reuse sketches.
 */
#include "rules/sketch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

#define GAMMA ((1.0 + RL_SKETCH_ALPHA) / (1.0 - RL_SKETCH_ALPHA))

/* ln(GAMMA), computed once: the hot path divides by it. */
static double ln_gamma(void)
{
    static const double v = 0.020000666706669525; /* log1p(2a / (1 - a)), a = 0.01 */

    return v;
}

static int32_t key_of(double x)
{
    /* x in (MIN_VALUE, DBL_MAX]: keys stay within about +-36000 */
    return (int32_t)ceil(log(x) / ln_gamma());
}

static double value_of_key(int32_t k)
{
    return 2.0 * exp(k * ln_gamma()) / (GAMMA + 1.0);
}

void rl_sketch_init(struct rl_sketch *s)
{
    memset(s, 0, sizeof(*s));
}

void rl_sketch_clear(struct rl_sketch *s)
{
    free(s->bins);
    rl_sketch_init(s);
}

void rl_sketch_reset(struct rl_sketch *s)
{
    if (s->nbins > 0)
        memset(s->bins, 0, s->nbins * sizeof(s->bins[0]));
    s->nbins = 0;
    s->min_key = 0;
    s->collapsed = false;
    s->zero = 0;
    s->count = 0;
}

static int reserve(struct rl_sketch *s, size_t need)
{
    void *p = s->bins;

    if (need <= s->cap)
        return AGG_OK;
    if (agg_grow(&p, sizeof(s->bins[0]), &s->cap, need) != AGG_OK)
        return AGG_ENOMEM;
    s->bins = p;
    return AGG_OK;
}

/* Makes key <k> addressable and returns its bin in <idx>: extends the range, or,
 * past the bin cap, folds the lowest keys into one (k itself, when it is lowest). */
static int locate(struct rl_sketch *s, int32_t k, uint32_t *idx)
{
    int64_t lo = s->min_key, hi = (int64_t)s->min_key + s->nbins - 1;

    if (s->nbins == 0) {
        if (reserve(s, 1) != AGG_OK)
            return AGG_ENOMEM;
        s->bins[0] = 0;
        s->min_key = k;
        s->nbins = 1;
    } else if (k < lo) {
        int64_t new_lo = hi - (RL_SKETCH_MAX_BINS - 1);
        uint32_t d;

        if (s->collapsed || lo <= new_lo) {
            s->collapsed = true; /* the range is full: k joins the lowest bin */
            *idx = 0;
            return AGG_OK;
        }
        if (k > new_lo)
            new_lo = k;
        else
            s->collapsed = true; /* k folds into the new lowest bin */
        d = (uint32_t)(lo - new_lo);
        if (reserve(s, s->nbins + d) != AGG_OK) {
            s->collapsed = false;
            return AGG_ENOMEM;
        }
        memmove(s->bins + d, s->bins, s->nbins * sizeof(s->bins[0]));
        memset(s->bins, 0, d * sizeof(s->bins[0]));
        s->min_key = (int32_t)new_lo;
        s->nbins += d;
    } else if (k > hi) {
        int64_t span = (int64_t)k - lo + 1;

        if (reserve(s, span > RL_SKETCH_MAX_BINS ? RL_SKETCH_MAX_BINS : (size_t)span) !=
            AGG_OK)
            return AGG_ENOMEM;
        if (span > RL_SKETCH_MAX_BINS) {
            /* fold the keys below k - MAX + 1 into that key's bin */
            int64_t new_lo = (int64_t)k - (RL_SKETCH_MAX_BINS - 1);
            uint32_t drop = new_lo - lo < s->nbins ? (uint32_t)(new_lo - lo) : s->nbins;
            uint64_t folded = 0;

            for (uint32_t j = 0; j < drop; j++)
                folded += s->bins[j];
            memmove(s->bins, s->bins + drop, (s->nbins - drop) * sizeof(s->bins[0]));
            memset(s->bins + (s->nbins - drop), 0,
                   (RL_SKETCH_MAX_BINS - (s->nbins - drop)) * sizeof(s->bins[0]));
            s->bins[0] += folded;
            s->min_key = (int32_t)new_lo;
            s->nbins = RL_SKETCH_MAX_BINS;
            s->collapsed = true;
        } else {
            memset(s->bins + s->nbins, 0, ((size_t)span - s->nbins) * sizeof(s->bins[0]));
            s->nbins = (uint32_t)span;
        }
    }
    *idx = k < s->min_key ? 0 : (uint32_t)(k - s->min_key);
    return AGG_OK;
}

int32_t rl_sketch_key(double x)
{
    return isfinite(x) && x > RL_SKETCH_MIN_VALUE ? key_of(x) : 0;
}

int rl_sketch_add_key(struct rl_sketch *s, double x, int32_t key)
{
    uint32_t idx;

    if (!isfinite(x))
        return AGG_EINVAL;
    if (x <= RL_SKETCH_MIN_VALUE) {
        s->zero++;
    } else {
        if (locate(s, key, &idx) != AGG_OK)
            return AGG_ENOMEM;
        s->bins[idx]++;
    }
    s->count++;
    return AGG_OK;
}

int rl_sketch_add(struct rl_sketch *s, double x)
{
    return rl_sketch_add_key(s, x, rl_sketch_key(x));
}

int rl_sketch_merge(struct rl_sketch *dst, const struct rl_sketch *src)
{
    uint32_t idx;

    /* make room for src's whole range first, so the adds below cannot fail */
    if (src->nbins > 0 &&
        (locate(dst, src->min_key, &idx) != AGG_OK ||
         locate(dst, src->min_key + (int32_t)src->nbins - 1, &idx) != AGG_OK))
        return AGG_ENOMEM;
    for (uint32_t j = 0; j < src->nbins; j++) {
        if (src->bins[j] == 0)
            continue;
        (void)locate(dst, src->min_key + (int32_t)j, &idx);
        dst->bins[idx] += src->bins[j];
    }
    dst->zero += src->zero;
    dst->count += src->count;
    return AGG_OK;
}

bool rl_sketch_quantile(const struct rl_sketch *s, double q, double *out)
{
    uint64_t rank, seen;

    if (s->count == 0 || !(q >= 0 && q <= 1))
        return false;
    rank = (uint64_t)floor(q * (double)(s->count - 1));
    if (rank < s->zero) {
        *out = 0;
        return true;
    }
    seen = s->zero;
    for (uint32_t j = 0; j < s->nbins; j++) {
        seen += s->bins[j];
        if (seen > rank) {
            *out = value_of_key(s->min_key + (int32_t)j);
            return true;
        }
    }
    *out = value_of_key(s->min_key + (int32_t)s->nbins - 1); /* not reached: counts add up */
    return true;
}

size_t rl_sketch_memory(const struct rl_sketch *s)
{
    return s->cap * sizeof(s->bins[0]);
}
