/*
 * rules/window.c — a ring of time buckets with counts, sum, min, max and sketches.
 *
 * Place: see rules/window.h.
 * Threads: loop thread.
 * Traps: the ring is indexed by bucket number (time / width) modulo its size; head
 *        is the newest number. Moving head forward empties the buckets it passes, so
 *        every bucket in the ring is inside the window and value() just sums them.
 *        Quantiles merge the bucket sketches into one scratch sketch at read time: the
 *        per-event path only touches the current bucket.
 */
#include "rules/window.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rules/sketch.h"
#include "core/alloc.h"
#include "core/err.h"

struct bucket {
    uint32_t total, matched, valued;
    double sum, min, max;
};

struct rl_window {
    enum rl_agg agg;
    int window_s, width_s;
    uint32_t n;
    int64_t head;          /* bucket number of the newest bucket */
    uint32_t head_j;       /* its slot */
    int64_t head_end_us;   /* where the next bucket begins: the per-event fast path */
    struct bucket *b;      /* n buckets; number h lives at h % n */
    struct rl_sketch *sk;  /* n sketches, pNN rules only; bins grow lazily */
    struct rl_sketch scratch;
};

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t bucket_of(const struct rl_window *w, int64_t now_us)
{
    return floor_div(floor_div(now_us, 1000000), w->width_s);
}

static struct bucket *slot(const struct rl_window *w, int64_t number, uint32_t *j)
{
    *j = (uint32_t)(number - floor_div(number, w->n) * (int64_t)w->n);
    return &w->b[*j];
}

static void empty_bucket(struct rl_window *w, int64_t number)
{
    uint32_t j;
    struct bucket *b = slot(w, number, &j);

    memset(b, 0, sizeof(*b));
    b->min = INFINITY;
    b->max = -INFINITY;
    if (w->sk != NULL)
        rl_sketch_reset(&w->sk[j]);
}

static void set_head(struct rl_window *w, int64_t number)
{
    w->head = number;
    (void)slot(w, number, &w->head_j);
    w->head_end_us = (number + 1) * w->width_s * INT64_C(1000000);
}

/* Moves head to the bucket of <now_us>, emptying the ones that left the window. */
static void advance(struct rl_window *w, int64_t now_us)
{
    int64_t cur;

    if (now_us < w->head_end_us)
        return;
    cur = bucket_of(w, now_us);
    for (int64_t h = w->head + 1; h <= cur && h <= w->head + (int64_t)w->n; h++)
        empty_bucket(w, h);
    set_head(w, cur);
}

struct rl_window *rl_window_new(const struct rl_expr *e, int64_t now_us)
{
    struct rl_window *w = agg_calloc(1, sizeof(*w));

    if (w == NULL)
        return NULL;
    w->agg = e->agg;
    w->window_s = e->window_s > 0 ? e->window_s : RL_EXPR_DEFAULT_WINDOW_S;
    w->width_s = (w->window_s + RL_WINDOW_MAX_BUCKETS - 1) / RL_WINDOW_MAX_BUCKETS;
    w->n = (uint32_t)((w->window_s + w->width_s - 1) / w->width_s);
    rl_sketch_init(&w->scratch);
    w->b = agg_calloc(w->n, sizeof(w->b[0]));
    if (w->b == NULL)
        goto fail;
    if (rl_agg_quantile(e->agg) > 0) {
        w->sk = agg_calloc(w->n, sizeof(w->sk[0]));
        if (w->sk == NULL)
            goto fail;
    }
    set_head(w, bucket_of(w, now_us));
    for (uint32_t j = 0; j < w->n; j++)
        empty_bucket(w, (int64_t)j);
    return w;

fail:
    rl_window_free(w);
    return NULL;
}

void rl_window_free(struct rl_window *w)
{
    if (w == NULL)
        return;
    for (uint32_t j = 0; w->sk != NULL && j < w->n; j++)
        rl_sketch_clear(&w->sk[j]);
    rl_sketch_clear(&w->scratch);
    free(w->sk);
    free(w->b);
    free(w);
}

int rl_window_add_sample(struct rl_window *w, int64_t now_us, bool matched, struct rl_sample *s)
{
    uint32_t j;
    struct bucket *b;
    double value = s->v;

    advance(w, now_us);
    j = w->head_j;
    b = &w->b[j];
    b->total++;
    if (!matched)
        return AGG_OK;
    b->matched++;
    if (!s->has || !isfinite(value))
        return AGG_OK;
    if (w->sk != NULL) {
        if (!s->keyed) {
            s->key = rl_sketch_key(value);
            s->keyed = true;
        }
        if (rl_sketch_add_key(&w->sk[j], value, s->key) != AGG_OK)
            return AGG_ENOMEM;
    }
    b->valued++;
    b->sum += value;
    b->min = fmin(b->min, value);
    b->max = fmax(b->max, value);
    return AGG_OK;
}

int rl_window_add(struct rl_window *w, int64_t now_us, bool matched, bool has_value,
                  double value)
{
    struct rl_sample s = {has_value, false, 0, value};

    return rl_window_add_sample(w, now_us, matched, &s);
}

bool rl_window_has_sketch(const struct rl_window *w)
{
    return w->sk != NULL;
}

/* The quantile of the whole ring, merged into the scratch sketch. */
static bool ring_quantile(struct rl_window *w, double *out)
{
    rl_sketch_reset(&w->scratch);
    for (uint32_t j = 0; j < w->n; j++) {
        if (rl_sketch_count(&w->sk[j]) > 0 && rl_sketch_merge(&w->scratch, &w->sk[j]) != AGG_OK)
            return false;
    }
    return rl_sketch_quantile(&w->scratch, rl_agg_quantile(w->agg), out);
}

/* The ring summed up. */
struct totals {
    uint64_t total, matched, valued;
    double sum, min, max;
};

/* The aggregate of <t>: false for no data. */
static bool compute(struct rl_window *w, const struct totals *t, double *v)
{
    switch (w->agg) {
    case RL_AGG_COUNT: *v = (double)t->matched; return true;
    case RL_AGG_RATE: *v = (double)t->matched / w->window_s; return true;
    case RL_AGG_RATIO: *v = t->total > 0 ? (double)t->matched / (double)t->total : 0; return true;
    default: break;
    }
    if (t->valued == 0)
        return false;
    switch (w->agg) {
    case RL_AGG_AVG: *v = t->sum / (double)t->valued; return true;
    case RL_AGG_MIN: *v = t->min; return true;
    case RL_AGG_MAX: *v = t->max; return true;
    case RL_AGG_SUM: *v = t->sum; return true;
    default: return ring_quantile(w, v);
    }
}

bool rl_window_value(struct rl_window *w, int64_t now_us, double *out,
                     struct rl_window_figures *fig)
{
    struct totals t = {0, 0, 0, 0, INFINITY, -INFINITY};
    double v = 0;
    bool has;

    advance(w, now_us);
    for (uint32_t j = 0; j < w->n; j++) {
        t.total += w->b[j].total;
        t.matched += w->b[j].matched;
        t.valued += w->b[j].valued;
        t.sum += w->b[j].sum;
        t.min = fmin(t.min, w->b[j].min);
        t.max = fmax(t.max, w->b[j].max);
    }
    has = compute(w, &t, &v);
    if (fig != NULL)
        *fig = (struct rl_window_figures){t.total, t.matched, t.valued, has, has ? v : 0,
                                          w->window_s};
    if (has)
        *out = v;
    return has;
}

size_t rl_window_memory(const struct rl_window *w)
{
    size_t n = sizeof(*w) + w->n * sizeof(w->b[0]) + rl_sketch_memory(&w->scratch);

    for (uint32_t j = 0; w->sk != NULL && j < w->n; j++)
        n += sizeof(w->sk[j]) + rl_sketch_memory(&w->sk[j]);
    return n;
}

int rl_window_bucket_s(const struct rl_window *w)
{
    return w->width_s;
}

uint32_t rl_window_buckets(const struct rl_window *w)
{
    return w->n;
}

bool rl_window_check(const struct rl_window *w)
{
    for (uint32_t j = 0; j < w->n; j++) {
        const struct bucket *b = &w->b[j];

        if (b->matched > b->total || b->valued > b->matched)
            return false;
        if (b->valued == 0 ? (b->sum != 0 || b->min != INFINITY || b->max != -INFINITY)
                           : b->min > b->max)
            return false;
        if (w->sk != NULL && rl_sketch_count(&w->sk[j]) != b->valued)
            return false;
    }
    return true;
}
