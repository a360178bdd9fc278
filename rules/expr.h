/*
 * rules/expr.h — the metric expression language of alert_rules.metric.
 *
 * Place: alert_rules.metric -> [expr] -> rules/aggs (per event) and the API (422).
 * Threads: pure; a compiled expression is plain data, copyable, shareable read-only.
 * Ownership: struct rl_expr holds copies of its values; nothing points outside it.
 * Traps: error positions are 0-based byte offsets into the text; whitespace is allowed
 *        only inside {…} (docs/rules.md has the grammar).
 * Not here: windows and aggregation (rules/window.c), the rule set (rules/aggs.c).
 */
#ifndef AGGD_RULES_EXPR_H
#define AGGD_RULES_EXPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/record.h"
#include "core/err.h"

#define RL_EXPR_MAX_CHARS 100
#define RL_EXPR_MAX_FILTERS 8
#define RL_EXPR_DEFAULT_WINDOW_S 300
#define RL_EXPR_MIN_WINDOW_S 30
#define RL_EXPR_MAX_WINDOW_S 86400
/* Room for rl_expr_format(): canonical text may be longer than the source (level
 * names spelled out, values quoted). */
#define RL_EXPR_FORMAT_MAX 512

enum rl_agg {
    RL_AGG_COUNT = 0,
    RL_AGG_RATE,
    RL_AGG_RATIO,
    RL_AGG_AVG,
    RL_AGG_MIN,
    RL_AGG_MAX,
    RL_AGG_SUM,
    RL_AGG_P50,
    RL_AGG_P90,
    RL_AGG_P95,
    RL_AGG_P99,
};

enum rl_cmp {
    RL_CMP_EQ = 0,
    RL_CMP_NE,
    RL_CMP_GE, /* the ordering ones apply to level only */
    RL_CMP_GT,
    RL_CMP_LE,
    RL_CMP_LT,
};

struct rl_filter {
    int field;       /* enum agg_field: one of the filterable columns */
    enum rl_cmp cmp;
    int64_t num;     /* level (enum agg_level) or integer value, for those fields */
    size_t len;      /* of value */
    char value[RL_EXPR_MAX_CHARS + 1]; /* canonical text, NUL-terminated */
};

struct rl_expr {
    enum rl_agg agg;
    int field;       /* AGG_F_DURATION_MS, AGG_F_MEMORY_USAGE_MB, or -1 (none) */
    int window_s;
    int nfilters;
    struct rl_filter filters[RL_EXPR_MAX_FILTERS];
};

/* Compiles <text> (NUL-terminated, at most RL_EXPR_MAX_CHARS bytes) into <out>.
 * AGG_OK, or AGG_EINVAL with <err>->msg "at <pos>: <reason>" and <err_pos> (may be
 * NULL) set to the 0-based offset of the offending character. */
int rl_expr_compile(const char *text, struct rl_expr *out, size_t *err_pos,
                    struct agg_err *err);

/* Whether <rec> passes every filter of <e> (true when there are none). A missing
 * field never matches =, always matches !=; a record without a level is INFO (as it
 * is stored). */
bool rl_expr_match(const struct rl_expr *e, const struct agg_record *rec);

/* One filter against <rec>, with the rules of rl_expr_match. */
bool rl_filter_match(const struct rl_filter *f, const struct agg_record *rec);

/* The levels <e>'s level filters let through, as bits 1 << enum agg_level (0x1f when
 * it has none), so a caller can test the level with one AND. */
unsigned rl_expr_level_mask(const struct rl_expr *e);

/* The value of <e>'s field in <rec> into <v>: false when <e> has no field or <rec>
 * lacks it. */
bool rl_expr_value_of(const struct rl_expr *e, const struct agg_record *rec, double *v);

/* Canonical text of <e> into <buf>[<size>] (always NUL-terminated; RL_EXPR_FORMAT_MAX
 * is enough): it compiles back to an equal expression when it fits the length limit. */
void rl_expr_format(const struct rl_expr *e, char *buf, size_t size);

/* Whether <a> and <b> mean the same thing (same aggregate, field, filters in the same
 * order, window). */
bool rl_expr_equal(const struct rl_expr *a, const struct rl_expr *b);

/* "count", "p95", ... */
const char *rl_agg_name(enum rl_agg agg);

/* The quantile of a pNN aggregate (0.95 for p95), or 0 for the others. */
double rl_agg_quantile(enum rl_agg agg);

/* The comparison of alert_rules.operator. */
enum rl_op {
    RL_OP_GT = 0,
    RL_OP_GTE,
    RL_OP_LT,
    RL_OP_LTE,
    RL_OP_EQ,
};

/* Parses "gt", "gte", "lt", "lte", "eq" (exact, lower case). */
bool rl_expr_operator_parse(const char *op, enum rl_op *out);

/* "gt", ... */
const char *rl_op_name(enum rl_op op);

/* Whether <value> <op> <threshold> holds. eq allows a relative difference of 1e-9
 * (rates and averages are rarely exact); NaN never holds. */
bool rl_op_holds(enum rl_op op, double value, double threshold);

#endif
