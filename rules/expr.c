/*
 * rules/expr.c — parser, matcher and printer of metric expressions.
 *
 * Place: see rules/expr.h.
 * Threads: pure.
 * Traps: every error names a position; the API returns the message as is (422), so
 *        keep them short, lower case, and about what the user typed.
 */
#include "rules/expr.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    enum rl_agg agg;
    double q;
} aggs[] = {
    {"count", RL_AGG_COUNT, 0}, {"rate", RL_AGG_RATE, 0}, {"ratio", RL_AGG_RATIO, 0},
    {"avg", RL_AGG_AVG, 0},     {"min", RL_AGG_MIN, 0},   {"max", RL_AGG_MAX, 0},
    {"sum", RL_AGG_SUM, 0},     {"p50", RL_AGG_P50, 0.5}, {"p90", RL_AGG_P90, 0.9},
    {"p95", RL_AGG_P95, 0.95},  {"p99", RL_AGG_P99, 0.99},
};
#define NAGGS (sizeof(aggs) / sizeof(aggs[0]))

static const char *const cmp_text[] = {"=", "!=", ">=", ">", "<=", "<"};

static const int filterable[] = {
    AGG_F_LEVEL,          AGG_F_LOGGER_NAME,    AGG_F_MODULE,         AGG_F_FUNCTION_NAME,
    AGG_F_CORRELATION_ID, AGG_F_REQUEST_ID,     AGG_F_REQUEST_METHOD, AGG_F_REQUEST_PATH,
    AGG_F_REQUEST_IP,     AGG_F_EXCEPTION_TYPE, AGG_F_USER_ID,        AGG_F_LINE_NUMBER,
};

const char *rl_agg_name(enum rl_agg agg)
{
    return (unsigned)agg < NAGGS ? aggs[agg].name : "?";
}

double rl_agg_quantile(enum rl_agg agg)
{
    return (unsigned)agg < NAGGS ? aggs[agg].q : 0;
}

static bool agg_takes_field(enum rl_agg agg)
{
    return agg != RL_AGG_COUNT && agg != RL_AGG_RATE && agg != RL_AGG_RATIO;
}

static bool is_filterable(int field)
{
    for (size_t i = 0; i < sizeof(filterable) / sizeof(filterable[0]); i++) {
        if (filterable[i] == field)
            return true;
    }
    return false;
}

static bool is_int_field(int field)
{
    return field == AGG_F_USER_ID || field == AGG_F_LINE_NUMBER;
}

/* ---- parsing ------------------------------------------------------------------- */

struct parser {
    const char *s;
    size_t len, i;
    size_t *err_pos;
    struct agg_err *err;
};

__attribute__((format(printf, 3, 4))) static int fail(struct parser *p, size_t at,
                                                      const char *fmt, ...)
{
    char why[AGG_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (p->err_pos != NULL)
        *p->err_pos = at;
    return agg_err_set(p->err, AGG_EINVAL, "at %zu: %s", at, why);
}

/* The character at <at> for a message: "x", byte 0x01, or the end. */
static const char *shown(const struct parser *p, size_t at, char *buf, size_t size)
{
    unsigned char c;

    if (at >= p->len)
        return "the end";
    c = (unsigned char)p->s[at];
    if (c > 0x20 && c < 0x7f)
        snprintf(buf, size, "\"%c\"", c);
    else if (c == ' ')
        snprintf(buf, size, "a space");
    else
        snprintf(buf, size, "byte 0x%02x", c);
    return buf;
}

static bool at_char(const struct parser *p, char c)
{
    return p->i < p->len && p->s[p->i] == c;
}

static void skip_space(struct parser *p)
{
    while (p->i < p->len && (p->s[p->i] == ' ' || p->s[p->i] == '\t'))
        p->i++;
}

static size_t word_len(const struct parser *p)
{
    size_t n = 0;

    while (p->i + n < p->len &&
           (isalnum((unsigned char)p->s[p->i + n]) || p->s[p->i + n] == '_'))
        n++;
    return n;
}

/* Bytes a value may hold unquoted: not space, control, or a character of the syntax. */
static bool is_bare(unsigned char c)
{
    return c >= 0x80 || (c > 0x20 && c < 0x7f && strchr("\"\\{}[],=!<>", c) == NULL);
}

static int parse_agg(struct parser *p, struct rl_expr *e)
{
    size_t n = word_len(p);
    char c[24];

    if (n == 0)
        return fail(p, 0, "expected an aggregate (count, rate, ratio, avg, min, max, sum, "
                          "p50, p90, p95, p99), got %s", shown(p, 0, c, sizeof(c)));
    for (size_t k = 0; k < NAGGS; k++) {
        if (strlen(aggs[k].name) == n && memcmp(aggs[k].name, p->s, n) == 0) {
            e->agg = aggs[k].agg;
            p->i = n;
            return AGG_OK;
        }
    }
    return fail(p, 0, "unknown aggregate \"%.*s\" (count, rate, ratio, avg, min, max, sum, "
                      "p50, p90, p95, p99)", (int)n, p->s);
}

static int parse_field(struct parser *p, struct rl_expr *e)
{
    const char *name = rl_agg_name(e->agg);
    size_t start, n;
    int f;
    char c[24];

    if (!at_char(p, ':')) {
        if (agg_takes_field(e->agg))
            return fail(p, p->i, "%s needs a numeric field: %s:duration_ms or "
                                  "%s:memory_usage_mb", name, name, name);
        return AGG_OK;
    }
    if (!agg_takes_field(e->agg))
        return fail(p, p->i, "%s takes no field", name);
    start = ++p->i;
    n = word_len(p);
    if (n == 0)
        return fail(p, start, "expected a field after ':', got %s",
                    shown(p, start, c, sizeof(c)));
    f = agg_field_by_column(p->s + start, n);
    if (f != AGG_F_DURATION_MS && f != AGG_F_MEMORY_USAGE_MB)
        return fail(p, start, "%s field \"%.*s\" (%s takes duration_ms or memory_usage_mb)",
                    f < 0 ? "unknown" : "non-numeric", (int)n, p->s + start, name);
    e->field = f;
    p->i += n;
    return AGG_OK;
}

static int parse_op(struct parser *p, struct rl_filter *f)
{
    size_t start = p->i, n = 0;
    char c[24];

    while (start + n < p->len && p->s[start + n] != '\0' &&
           strchr("=!<>", p->s[start + n]) != NULL)
        n++;
    if (n == 0)
        return fail(p, start, "expected an operator (=, !=, >=, >, <=, <) after %s, got %s",
                    agg_field_name(f->field), shown(p, start, c, sizeof(c)));
    for (int k = 0; k < (int)(sizeof(cmp_text) / sizeof(cmp_text[0])); k++) {
        if (strlen(cmp_text[k]) == n && memcmp(cmp_text[k], p->s + start, n) == 0) {
            f->cmp = (enum rl_cmp)k;
            if (f->cmp >= RL_CMP_GE && f->field != AGG_F_LEVEL)
                return fail(p, start, "operator \"%s\" applies only to level; %s takes = or !=",
                            cmp_text[k], agg_field_name(f->field));
            p->i += n;
            return AGG_OK;
        }
    }
    return fail(p, start, "unknown operator \"%.*s\" (=, !=, >=, >, <=, <)", (int)n,
                p->s + start);
}

static int parse_quoted(struct parser *p, struct rl_filter *f)
{
    size_t open = p->i;
    char c[24];

    for (p->i++;; p->i++) {
        unsigned char ch;

        if (p->i >= p->len)
            return fail(p, open, "unterminated quoted value: missing '\"'");
        ch = (unsigned char)p->s[p->i];
        if (ch == '"') {
            p->i++;
            return AGG_OK;
        }
        if (ch == '\\') {
            if (p->i + 1 >= p->len)
                return fail(p, open, "unterminated quoted value: missing '\"'");
            ch = (unsigned char)p->s[++p->i];
            if (ch != '"' && ch != '\\')
                return fail(p, p->i - 1, "unknown escape \\%s in a quoted value (only \\\" "
                                         "and \\\\)", shown(p, p->i, c, sizeof(c)));
        } else if (ch < 0x20 || ch == 0x7f) {
            return fail(p, p->i, "control character (byte 0x%02x) in a quoted value", ch);
        }
        f->value[f->len++] = (char)ch; /* fits: the text is at most 100 bytes */
    }
}

/* Checks a level or integer value and rewrites it canonically. */
static int convert_value(struct parser *p, struct rl_filter *f, size_t at)
{
    if (f->field == AGG_F_LEVEL) {
        enum agg_level lv;

        if (!agg_level_parse(f->value, f->len, &lv))
            return fail(p, at, "unknown level \"%s\" (DEBUG, INFO, WARNING, ERROR, CRITICAL)",
                        f->value);
        f->num = lv;
        f->len = (size_t)snprintf(f->value, sizeof(f->value), "%s", agg_level_name(lv));
    } else if (is_int_field(f->field)) {
        char *end;
        long long v;

        errno = 0;
        v = strtoll(f->value, &end, 10);
        if (f->len == 0 || *end != '\0' || errno != 0 || !isdigit((unsigned char)end[-1]) ||
            isspace((unsigned char)f->value[0]) || f->value[0] == '+' || v < INT32_MIN ||
            v > INT32_MAX)
            return fail(p, at, "%s takes an integer, got \"%s\"", agg_field_name(f->field),
                        f->value);
        f->num = v;
        f->len = (size_t)snprintf(f->value, sizeof(f->value), "%lld", v);
    }
    return AGG_OK;
}

static int parse_value(struct parser *p, struct rl_filter *f)
{
    size_t start = p->i;
    char c[24];
    int rc;

    if (at_char(p, '"')) {
        rc = parse_quoted(p, f);
        if (rc != AGG_OK)
            return rc;
    } else {
        while (p->i < p->len && is_bare((unsigned char)p->s[p->i]))
            f->value[f->len++] = p->s[p->i++];
        if (f->len == 0)
            return fail(p, start, "expected a value after %s%s, got %s",
                        agg_field_name(f->field), cmp_text[f->cmp],
                        shown(p, start, c, sizeof(c)));
    }
    f->value[f->len] = '\0';
    return convert_value(p, f, start);
}

static int parse_filter(struct parser *p, struct rl_filter *f)
{
    size_t start = p->i, n = word_len(p);
    char c[24];
    int rc;

    if (n == 0)
        return fail(p, start, "expected a field name, got %s", shown(p, start, c, sizeof(c)));
    f->field = agg_field_by_column(p->s + start, n);
    if (f->field < 0)
        return fail(p, start, "unknown field \"%.*s\"", (int)n, p->s + start);
    if (!is_filterable(f->field))
        return fail(p, start, "field \"%.*s\" cannot be used in a filter", (int)n,
                    p->s + start);
    p->i += n;
    skip_space(p);
    rc = parse_op(p, f);
    if (rc != AGG_OK)
        return rc;
    skip_space(p);
    return parse_value(p, f);
}

static int parse_filters(struct parser *p, struct rl_expr *e)
{
    size_t open = p->i;
    char c[24];

    p->i++;
    for (;;) {
        int rc;

        skip_space(p);
        if (p->i >= p->len)
            return fail(p, open, "unterminated filter list: missing '}'");
        if (at_char(p, '}') || at_char(p, ','))
            return fail(p, p->i, e->nfilters == 0 && at_char(p, '}') ? "empty filter list"
                                                                     : "empty filter");
        if (e->nfilters == RL_EXPR_MAX_FILTERS)
            return fail(p, p->i, "more than %d filters", RL_EXPR_MAX_FILTERS);
        rc = parse_filter(p, &e->filters[e->nfilters]);
        if (rc != AGG_OK)
            return rc;
        e->nfilters++;
        skip_space(p);
        if (p->i >= p->len)
            return fail(p, open, "unterminated filter list: missing '}'");
        if (at_char(p, '}')) {
            p->i++;
            return AGG_OK;
        }
        if (!at_char(p, ','))
            return fail(p, p->i, "unexpected %s after a filter (expected ',' or '}'; quote "
                                 "values holding special characters)",
                        shown(p, p->i, c, sizeof(c)));
        p->i++;
    }
}

static int parse_window(struct parser *p, struct rl_expr *e)
{
    size_t open = p->i, digits;
    long n = 0;
    int unit;
    char c[24];

    digits = ++p->i;
    while (p->i < p->len && isdigit((unsigned char)p->s[p->i])) {
        if (p->i - digits >= 6)
            return fail(p, digits, "window too long (at most 24h)");
        n = n * 10 + (p->s[p->i++] - '0');
    }
    if (p->i == digits)
        return fail(p, p->i, "expected a number in the window (e.g. [5m]), got %s",
                    shown(p, p->i, c, sizeof(c)));
    if (p->i >= p->len)
        return fail(p, open, "unterminated window: missing ']'");
    switch (p->s[p->i]) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    default:
        return fail(p, p->i, "unknown window unit %s (s, m or h)", shown(p, p->i, c, sizeof(c)));
    }
    p->i++;
    if (p->i >= p->len)
        return fail(p, open, "unterminated window: missing ']'");
    if (!at_char(p, ']'))
        return fail(p, p->i, "expected ']' after the window, got %s",
                    shown(p, p->i, c, sizeof(c)));
    if (n * unit < RL_EXPR_MIN_WINDOW_S)
        return fail(p, digits, "window %ld%c is shorter than 30s", n, p->s[p->i - 1]);
    if (n * unit > RL_EXPR_MAX_WINDOW_S)
        return fail(p, digits, "window %ld%c is longer than 24h", n, p->s[p->i - 1]);
    e->window_s = (int)(n * unit);
    p->i++;
    return AGG_OK;
}

/* What may follow the part just parsed: <next> lists it for the message. */
static int expect(struct parser *p, const char *allowed, const char *after, const char *next)
{
    char c[24];

    if (p->i >= p->len || strchr(allowed, p->s[p->i]) != NULL)
        return AGG_OK;
    if (p->s[p->i] == ' ' || p->s[p->i] == '\t')
        return fail(p, p->i, "unexpected whitespace after %s (allowed only inside {})", after);
    return fail(p, p->i, "unexpected %s after %s (expected %s)", shown(p, p->i, c, sizeof(c)),
                after, next);
}

int rl_expr_compile(const char *text, struct rl_expr *out, size_t *err_pos,
                    struct agg_err *err)
{
    struct parser p = {text, strlen(text), 0, err_pos, err};
    size_t filter_at;
    int rc;

    memset(out, 0, sizeof(*out));
    out->field = -1;
    out->window_s = RL_EXPR_DEFAULT_WINDOW_S;
    if (p.len == 0)
        return fail(&p, 0, "empty expression");
    if (p.len > RL_EXPR_MAX_CHARS)
        return fail(&p, RL_EXPR_MAX_CHARS, "expression longer than %d characters (%zu)",
                    RL_EXPR_MAX_CHARS, p.len);
    if ((rc = parse_agg(&p, out)) != AGG_OK || (rc = parse_field(&p, out)) != AGG_OK ||
        (rc = expect(&p, "{[", out->field >= 0 ? "the field" : "the aggregate",
                     "'{', '[' or the end")) != AGG_OK)
        return rc;
    filter_at = p.i;
    if (at_char(&p, '{') && ((rc = parse_filters(&p, out)) != AGG_OK ||
                             (rc = expect(&p, "[", "the filters", "'[' or the end")) != AGG_OK))
        return rc;
    if (at_char(&p, '[') && (rc = parse_window(&p, out)) != AGG_OK)
        return rc;
    if (p.i < p.len)
        return expect(&p, "", "the window", "the end");
    if (out->agg == RL_AGG_RATIO && out->nfilters == 0)
        return fail(&p, filter_at, "ratio needs a filter, e.g. ratio{level>=ERROR}");
    return AGG_OK;
}

/* ---- matching ------------------------------------------------------------------ */

static enum agg_level level_of(const struct agg_record *rec)
{
    return rec->has_level ? rec->level : AGG_LEVEL_INFO;
}

static bool cmp_holds(enum rl_cmp cmp, int64_t have, int64_t want)
{
    switch (cmp) {
    case RL_CMP_EQ: return have == want;
    case RL_CMP_NE: return have != want;
    case RL_CMP_GE: return have >= want;
    case RL_CMP_GT: return have > want;
    case RL_CMP_LE: return have <= want;
    case RL_CMP_LT: return have < want;
    }
    return false;
}

bool rl_filter_match(const struct rl_filter *f, const struct agg_record *rec)
{
    bool present, equal;

    switch (f->field) {
    case AGG_F_LEVEL:
        return cmp_holds(f->cmp, level_of(rec), f->num);
    case AGG_F_LINE_NUMBER:
        present = rec->has_line_number;
        equal = present && rec->line_number == f->num;
        break;
    case AGG_F_USER_ID:
        present = rec->has_user_id;
        equal = present && rec->user_id == f->num;
        break;
    default: {
        const struct agg_str *s = &rec->str[f->field];

        present = s->p != NULL;
        equal = present && s->len == f->len && memcmp(s->p, f->value, f->len) == 0;
        break;
    }
    }
    return f->cmp == RL_CMP_EQ ? equal : !equal;
}

bool rl_expr_match(const struct rl_expr *e, const struct agg_record *rec)
{
    for (int k = 0; k < e->nfilters; k++) {
        if (!rl_filter_match(&e->filters[k], rec))
            return false;
    }
    return true;
}

unsigned rl_expr_level_mask(const struct rl_expr *e)
{
    unsigned mask = 0x1f;

    for (int k = 0; k < e->nfilters; k++) {
        const struct rl_filter *f = &e->filters[k];
        unsigned pass = 0;

        if (f->field != AGG_F_LEVEL)
            continue;
        for (int lv = AGG_LEVEL_DEBUG; lv <= AGG_LEVEL_CRITICAL; lv++) {
            if (cmp_holds(f->cmp, lv, f->num))
                pass |= 1u << lv;
        }
        mask &= pass;
    }
    return mask;
}

bool rl_expr_value_of(const struct rl_expr *e, const struct agg_record *rec, double *v)
{
    if (e->field == AGG_F_DURATION_MS && rec->has_duration_ms) {
        *v = rec->duration_ms;
        return true;
    }
    if (e->field == AGG_F_MEMORY_USAGE_MB && rec->has_memory_usage_mb) {
        *v = rec->memory_usage_mb;
        return true;
    }
    return false;
}

/* ---- printing ------------------------------------------------------------------ */

struct out {
    char *buf;
    size_t size, len;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->len + 1 >= o->size)
        return;
    va_start(ap, fmt);
    n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len = o->len + (size_t)n < o->size ? o->len + (size_t)n : o->size - 1;
}

static void put_value(struct out *o, const struct rl_filter *f)
{
    bool bare = f->len > 0;

    for (size_t k = 0; k < f->len && bare; k++)
        bare = is_bare((unsigned char)f->value[k]);
    if (bare) {
        put(o, "%s", f->value);
        return;
    }
    put(o, "\"");
    for (size_t k = 0; k < f->len; k++) {
        char ch = f->value[k];

        put(o, ch == '"' || ch == '\\' ? "\\%c" : "%c", ch);
    }
    put(o, "\"");
}

void rl_expr_format(const struct rl_expr *e, char *buf, size_t size)
{
    struct out o = {buf, size, 0};
    int w = e->window_s;

    if (size == 0)
        return;
    buf[0] = '\0';
    put(&o, "%s", rl_agg_name(e->agg));
    if (e->field >= 0)
        put(&o, ":%s", agg_field_name(e->field));
    for (int k = 0; k < e->nfilters; k++) {
        put(&o, "%s%s%s", k == 0 ? "{" : ",", agg_field_name(e->filters[k].field),
            cmp_text[e->filters[k].cmp]);
        put_value(&o, &e->filters[k]);
    }
    if (e->nfilters > 0)
        put(&o, "}");
    if (w % 3600 == 0)
        put(&o, "[%dh]", w / 3600);
    else if (w % 60 == 0)
        put(&o, "[%dm]", w / 60);
    else
        put(&o, "[%ds]", w);
}

bool rl_expr_equal(const struct rl_expr *a, const struct rl_expr *b)
{
    if (a->agg != b->agg || a->field != b->field || a->window_s != b->window_s ||
        a->nfilters != b->nfilters)
        return false;
    for (int k = 0; k < a->nfilters; k++) {
        const struct rl_filter *x = &a->filters[k], *y = &b->filters[k];

        if (x->field != y->field || x->cmp != y->cmp || x->num != y->num || x->len != y->len ||
            memcmp(x->value, y->value, x->len) != 0)
            return false;
    }
    return true;
}

/* ---- alert_rules.operator ------------------------------------------------------ */

static const char *const op_names[] = {"gt", "gte", "lt", "lte", "eq"};

bool rl_expr_operator_parse(const char *op, enum rl_op *out)
{
    for (int k = 0; k < (int)(sizeof(op_names) / sizeof(op_names[0])); k++) {
        if (strcmp(op, op_names[k]) == 0) {
            *out = (enum rl_op)k;
            return true;
        }
    }
    return false;
}

const char *rl_op_name(enum rl_op op)
{
    return (unsigned)op < sizeof(op_names) / sizeof(op_names[0]) ? op_names[op] : "?";
}

bool rl_op_holds(enum rl_op op, double value, double threshold)
{
    switch (op) {
    case RL_OP_GT: return value > threshold;
    case RL_OP_GTE: return value >= threshold;
    case RL_OP_LT: return value < threshold;
    case RL_OP_LTE: return value <= threshold;
    case RL_OP_EQ:
        return fabs(value - threshold) <= 1e-9 * fmax(1.0, fmax(fabs(value), fabs(threshold)));
    }
    return false;
}
