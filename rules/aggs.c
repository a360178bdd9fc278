/*
 * rules/aggs.c — per-event fan-out of records to the rules' windows.
 *
 * Place: see rules/aggs.h.
 * Threads: loop thread.
 * Traps: the per-event cost is what 100 rules add to ingest. Rules with the same
 *        expression (a warning and a critical threshold, say) share one window, so
 *        the cost follows the distinct expressions. Per window, the level filters
 *        are folded into one bit mask tested first, then the other filters (strings
 *        compared by length first); unmatched events skip every window but ratio
 *        ones. Each numeric field's value and sketch key are computed once per event.
 */
#include "rules/aggs.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

enum { SAMPLE_DURATION = 0, SAMPLE_MEMORY, SAMPLE_FIELDS };

/* One distinct expression and its window. What the per-event loop reads comes first;
 * the expression (mostly filter values) only when a non-level filter is checked. */
struct feed {
    struct rl_window *w;
    unsigned level_mask;
    int nother;                        /* non-level filters: indexes into expr.filters */
    uint8_t other[RL_EXPR_MAX_FILTERS];
    bool ratio;                        /* every event counts in the total */
    int8_t sample;                     /* SAMPLE_* of the field, or SAMPLE_FIELDS */
    struct rl_expr expr;
};

struct rule {
    int64_t id;
    size_t feed;
};

struct rl_aggs {
    struct rule *r; /* sorted by id */
    size_t n;
    struct feed *f;
    size_t nf;
};

struct rl_aggs *rl_aggs_new(void)
{
    return agg_calloc(1, sizeof(struct rl_aggs));
}

static void free_feeds(struct feed *f, size_t n)
{
    for (size_t k = 0; f != NULL && k < n; k++)
        rl_window_free(f[k].w);
    free(f);
}

void rl_aggs_free(struct rl_aggs *a)
{
    if (a == NULL)
        return;
    free_feeds(a->f, a->nf);
    free(a->r);
    free(a);
}

static int by_id(const void *x, const void *y)
{
    const struct rule *a = x, *b = y;

    return (a->id > b->id) - (a->id < b->id);
}

static struct rule *find(const struct rl_aggs *a, int64_t id)
{
    struct rule key;

    if (a->n == 0)
        return NULL;
    key.id = id;
    return bsearch(&key, a->r, a->n, sizeof(a->r[0]), by_id);
}

static struct feed *feed_of(struct feed *f, size_t n, const struct rl_expr *e)
{
    for (size_t k = 0; k < n; k++) {
        if (rl_expr_equal(&f[k].expr, e))
            return &f[k];
    }
    return NULL;
}

/* Fills <f> for <e>: the expression copy and its split filters; no window yet. */
static void prepare(struct feed *f, const struct rl_expr *e)
{
    memset(f, 0, sizeof(*f));
    f->expr = *e;
    f->level_mask = rl_expr_level_mask(e);
    for (int k = 0; k < e->nfilters; k++) {
        if (e->filters[k].field != AGG_F_LEVEL)
            f->other[f->nother++] = (uint8_t)k;
    }
    f->ratio = e->agg == RL_AGG_RATIO;
    f->sample = e->field == AGG_F_DURATION_MS     ? SAMPLE_DURATION
                : e->field == AGG_F_MEMORY_USAGE_MB ? SAMPLE_MEMORY
                                                    : SAMPLE_FIELDS;
}

int rl_aggs_set(struct rl_aggs *a, const struct rl_rule_def *rules, size_t n, int64_t now_us,
                struct agg_err *err)
{
    struct rule *r = agg_calloc(n > 0 ? n : 1, sizeof(*r));
    struct feed *f = agg_calloc(n > 0 ? n : 1, sizeof(*f));
    size_t nf = 0;
    int rc;

    if (r == NULL || f == NULL) {
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t k = 0; k < n; k++) {
        struct feed *same = feed_of(f, nf, rules[k].expr);

        if (same == NULL) {
            same = &f[nf++];
            prepare(same, rules[k].expr);
        }
        r[k].id = rules[k].id;
        r[k].feed = (size_t)(same - f);
    }
    qsort(r, n, sizeof(*r), by_id);
    for (size_t k = 0; k + 1 < n; k++) {
        if (r[k].id == r[k + 1].id) {
            rc = agg_err_set(err, AGG_EINVAL, "rule %lld listed twice", (long long)r[k].id);
            goto fail;
        }
    }
    /* new windows first, so that failing leaves the old set whole */
    for (size_t k = 0; k < nf; k++) {
        if (feed_of(a->f, a->nf, &f[k].expr) != NULL)
            continue;
        f[k].w = rl_window_new(&f[k].expr, now_us);
        if (f[k].w == NULL) {
            rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
            goto fail;
        }
    }
    for (size_t k = 0; k < nf; k++) {
        if (f[k].w == NULL) { /* an expression already fed: its window carries on */
            struct feed *old = feed_of(a->f, a->nf, &f[k].expr);

            f[k].w = old->w;
            old->w = NULL;
        }
    }
    free_feeds(a->f, a->nf);
    free(a->r);
    a->r = r;
    a->n = n;
    a->f = f;
    a->nf = nf;
    return AGG_OK;

fail:
    free_feeds(f, nf);
    free(r);
    return rc;
}

static bool feed_matches(const struct feed *f, const struct agg_record *rec, unsigned level_bit)
{
    if ((f->level_mask & level_bit) == 0)
        return false;
    for (int k = 0; k < f->nother; k++) {
        if (!rl_filter_match(&f->expr.filters[f->other[k]], rec))
            return false;
    }
    return true;
}

int rl_aggs_add(struct rl_aggs *a, const struct agg_record *rec, int64_t now_us)
{
    unsigned level_bit = 1u << (rec->has_level ? rec->level : AGG_LEVEL_INFO);
    struct rl_sample samples[SAMPLE_FIELDS + 1] = {
        [SAMPLE_DURATION] = {rec->has_duration_ms, false, 0, rec->duration_ms},
        [SAMPLE_MEMORY] = {rec->has_memory_usage_mb, false, 0, rec->memory_usage_mb},
    };
    int rc = AGG_OK;

    for (size_t k = 0; k < a->nf; k++) {
        const struct feed *f = &a->f[k];
        bool m = feed_matches(f, rec, level_bit);

        if (!m && !f->ratio)
            continue;
        if (rl_window_add_sample(f->w, now_us, m, &samples[f->sample]) != AGG_OK)
            rc = AGG_ENOMEM;
    }
    return rc;
}

bool rl_aggs_value(struct rl_aggs *a, int64_t rule_id, int64_t now_us, double *v,
                   struct rl_window_figures *fig)
{
    struct rule *r = find(a, rule_id);
    struct rl_window_figures local;
    double dummy;

    if (r == NULL) {
        if (fig != NULL)
            memset(fig, 0, sizeof(*fig));
        return false;
    }
    return rl_window_value(a->f[r->feed].w, now_us, v != NULL ? v : &dummy,
                           fig != NULL ? fig : &local);
}

bool rl_aggs_has(const struct rl_aggs *a, int64_t rule_id)
{
    return find(a, rule_id) != NULL;
}

size_t rl_aggs_count(const struct rl_aggs *a)
{
    return a->n;
}

size_t rl_aggs_memory(const struct rl_aggs *a)
{
    size_t n = sizeof(*a) + a->n * sizeof(a->r[0]) + a->nf * sizeof(a->f[0]);

    for (size_t k = 0; k < a->nf; k++)
        n += rl_window_memory(a->f[k].w);
    return n;
}
