/*
 * rules/aggs.h — the aggregates of the active rules, fed one event at a time.
 *
 * Place: pipeline tap (accepted events) -> [aggs] -> evaluator (timer) -> alerts.
 * Threads: the loop thread only; no locks.
 * Ownership: caller owns the set (rl_aggs_new/_free); it copies the expressions it
 *            is given and owns one rules/window per distinct expression.
 * Traps: rules with equal compiled expressions share one window; a reload keeps the
 *        window of every expression still in use, so editing a rule's threshold or
 *        name does not reset it, and a new rule over a fed expression starts with its
 *        history.
 */
#ifndef AGGD_RULES_AGGS_H
#define AGGD_RULES_AGGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/record.h"
#include "rules/expr.h"
#include "rules/window.h"
#include "core/err.h"

struct rl_aggs;

/* One active rule: <expr> is borrowed for the rl_aggs_set call (copied). */
struct rl_rule_def {
    int64_t id;
    const struct rl_expr *expr;
};

/* An empty set. Caller owns the result: rl_aggs_free(). NULL when out of memory. */
struct rl_aggs *rl_aggs_new(void);

void rl_aggs_free(struct rl_aggs *a);

/* Replaces the set with <rules>[<n>]; new windows start empty at <now_us>. AGG_OK;
 * AGG_EINVAL when an id appears twice; AGG_ENOMEM. On error the set is unchanged. */
int rl_aggs_set(struct rl_aggs *a, const struct rl_rule_def *rules, size_t n, int64_t now_us,
                struct agg_err *err);

/* Counts <rec>, received at <now_us>, in every rule it concerns. AGG_OK, or AGG_ENOMEM
 * when a quantile sketch could not grow (the event counted, its value did not). */
int rl_aggs_add(struct rl_aggs *a, const struct agg_record *rec, int64_t now_us);

/* Rule <rule_id>'s value at <now_us> into <v> and <fig> (either may be NULL): false
 * when the rule is unknown (fig->window_s == 0 then) or its window has no data. */
bool rl_aggs_value(struct rl_aggs *a, int64_t rule_id, int64_t now_us, double *v,
                   struct rl_window_figures *fig);

/* Whether rule <rule_id> is in the set. */
bool rl_aggs_has(const struct rl_aggs *a, int64_t rule_id);

/* How many rules. */
size_t rl_aggs_count(const struct rl_aggs *a);

/* Bytes held by the set and all its windows (for /metrics). */
size_t rl_aggs_memory(const struct rl_aggs *a);

#endif
