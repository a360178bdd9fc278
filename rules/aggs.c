/*
 * rules/aggs.c — per-event fan-out of records to the rules' windows.
 *
 * Place: see rules/aggs.h.
 * Threads: loop thread.
 * Traps: the per-event cost is what 100 rules add to ingest: the level filters of a
 *        rule are folded into one bit mask tested first (most rules filter on level),
 *        then its other filters (strings compared by length first); unmatched events
 *        skip every rule but ratio ones. Rules are sorted by id for lookups.
 */
#include "rules/aggs.h"

#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"

struct rule {
    int64_t id;
    struct rl_expr expr;
    unsigned level_mask;
    int nother;                        /* non-level filters: indexes into expr.filters */
    uint8_t other[RL_EXPR_MAX_FILTERS];
    struct rl_window *w;
};

struct rl_aggs {
    struct rule *r; /* sorted by id */
    size_t n;
};

struct rl_aggs *rl_aggs_new(void)
{
    return agg_calloc(1, sizeof(struct rl_aggs));
}

static void free_rules(struct rule *r, size_t n)
{
    for (size_t k = 0; r != NULL && k < n; k++)
        rl_window_free(r[k].w);
    free(r);
}

void rl_aggs_free(struct rl_aggs *a)
{
    if (a == NULL)
        return;
    free_rules(a->r, a->n);
    free(a);
}

static int by_id(const void *x, const void *y)
{
    const struct rule *a = x, *b = y;

    return a->id < b->id ? -1 : a->id > b->id;
}

static struct rule *find(const struct rl_aggs *a, int64_t id)
{
    struct rule key;

    if (a->n == 0)
        return NULL;
    key.id = id;
    return bsearch(&key, a->r, a->n, sizeof(a->r[0]), by_id);
}

/* Fills <r> from <def>: the expression copy and its split filters. */
static void prepare(struct rule *r, const struct rl_rule_def *def)
{
    memset(r, 0, sizeof(*r));
    r->id = def->id;
    r->expr = *def->expr;
    r->level_mask = rl_expr_level_mask(&r->expr);
    for (int k = 0; k < r->expr.nfilters; k++) {
        if (r->expr.filters[k].field != ING_F_LEVEL)
            r->other[r->nother++] = (uint8_t)k;
    }
}

int rl_aggs_set(struct rl_aggs *a, const struct rl_rule_def *rules, size_t n, int64_t now_us,
                struct agg_err *err)
{
    struct rule *r = agg_calloc(n > 0 ? n : 1, sizeof(*r));
    int rc;

    if (r == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    for (size_t k = 0; k < n; k++)
        prepare(&r[k], &rules[k]);
    qsort(r, n, sizeof(*r), by_id);
    for (size_t k = 0; k + 1 < n; k++) {
        if (r[k].id == r[k + 1].id) {
            rc = agg_err_set(err, AGG_EINVAL, "rule %lld listed twice", (long long)r[k].id);
            goto fail;
        }
    }
    /* new windows first, so that failing leaves the old set whole */
    for (size_t k = 0; k < n; k++) {
        const struct rule *old = find(a, r[k].id);

        if (old != NULL && rl_expr_equal(&old->expr, &r[k].expr))
            continue;
        r[k].w = rl_window_new(&r[k].expr, now_us);
        if (r[k].w == NULL) {
            rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
            goto fail;
        }
    }
    for (size_t k = 0; k < n; k++) {
        struct rule *old = find(a, r[k].id);

        if (r[k].w == NULL) { /* kept: take the old window over */
            r[k].w = old->w;
            old->w = NULL;
        }
    }
    free_rules(a->r, a->n);
    a->r = r;
    a->n = n;
    return AGG_OK;

fail:
    free_rules(r, n);
    return rc;
}

static bool rule_matches(const struct rule *r, const struct ing_record *rec, unsigned level_bit)
{
    if ((r->level_mask & level_bit) == 0)
        return false;
    for (int k = 0; k < r->nother; k++) {
        if (!rl_filter_match(&r->expr.filters[r->other[k]], rec))
            return false;
    }
    return true;
}

int rl_aggs_add(struct rl_aggs *a, const struct ing_record *rec, int64_t now_us)
{
    unsigned level_bit = 1u << (rec->has_level ? rec->level : ING_LEVEL_INFO);
    int rc = AGG_OK;

    for (size_t k = 0; k < a->n; k++) {
        const struct rule *r = &a->r[k];
        bool m = rule_matches(r, rec, level_bit), has = false;
        double v = 0;

        if (!m && r->expr.agg != RL_AGG_RATIO)
            continue;
        if (m && r->expr.field >= 0)
            has = rl_expr_value_of(&r->expr, rec, &v);
        if (rl_window_add(r->w, now_us, m, has, v) != AGG_OK)
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
    return rl_window_value(r->w, now_us, v != NULL ? v : &dummy, fig != NULL ? fig : &local);
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
    size_t n = sizeof(*a) + a->n * sizeof(a->r[0]);

    for (size_t k = 0; k < a->n; k++)
        n += rl_window_memory(a->r[k].w);
    return n;
}
