/*
 * rules/render.c — notification bodies (webhook, Slack, email) from a notice's facts.
 *
 * Place: see rules/render.h; the facts object is documented in docs/notifications.md.
 * Threads: pure.
 * Ownership: the parsed facts tree lives for one call.
 * Traps: numbers are re-emitted from their original text (yajl_tree keeps it), so a
 *        threshold of 0.1 stays 0.1. Text from the facts is user-controlled (rule
 *        names, messages): JSON goes through yajl_gen, Slack mrkdwn escapes & < >,
 *        email headers lose control characters and non-ASCII subjects become RFC 2047
 *        encoded words. yajl validated the facts as UTF-8, so every cut here is made on
 *        a character boundary to keep it so.
 * Not here: the outbox row, signing, delivery.
 */
#include "rules/render.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "core/time.h"
#include "core/alloc.h"

#define ZERO_TIME        "0001-01-01T00:00:00Z" /* Alertmanager's "not resolved" endsAt */
#define MAIL_LINE_MAX    990                    /* under RFC 5322's 998 */
#define SUBJECT_MAX      900
#define SLACK_HEADER_MAX 150
#define SLACK_FIELD_MAX  1900
#define SLACK_TEXT_MAX   2900
#define ADDR_MAX         320
#define ID_MAX           200

struct facts {
    yajl_val root;
    const char *notice, *status, *rule, *metric, *op, *severity, *message;
    const char *starts_at, *ends_at, *link;
    yajl_val alert_id, rule_id, level, threshold, value; /* numbers, or NULL */
    yajl_val context;                                    /* any JSON, or NULL */
};

static void facts_clear(struct facts *f)
{
    yajl_tree_free(f->root);
    f->root = NULL;
}

static bool is_one_of(const char *s, const char *const *set)
{
    for (; *set != NULL; set++) {
        if (strcmp(s, *set) == 0)
            return true;
    }
    return false;
}

/* The member <key> of the facts; NULL when absent or JSON null. */
static yajl_val member(const struct facts *f, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val v = yajl_tree_get(f->root, path, yajl_t_any);

    return YAJL_IS_NULL(v) ? NULL : v;
}

static int get_str(const struct facts *f, const char *key, bool required, const char **out,
                   struct agg_err *err)
{
    yajl_val v = member(f, key);

    *out = NULL;
    if (v == NULL)
        return required ? agg_err_set(err, AGG_EINVAL, "notification facts: \"%s\" is missing", key)
                        : AGG_OK;
    if (!YAJL_IS_STRING(v))
        return agg_err_set(err, AGG_EINVAL, "notification facts: \"%s\" must be a string", key);
    *out = YAJL_GET_STRING(v);
    return AGG_OK;
}

static int get_num(const struct facts *f, const char *key, bool integer, bool required,
                   yajl_val *out, struct agg_err *err)
{
    yajl_val v = member(f, key);

    *out = NULL;
    if (v == NULL)
        return required ? agg_err_set(err, AGG_EINVAL, "notification facts: \"%s\" is missing", key)
                        : AGG_OK;
    if (!YAJL_IS_NUMBER(v) || (integer && !YAJL_IS_INTEGER(v)))
        return agg_err_set(err, AGG_EINVAL, "notification facts: \"%s\" must be %s", key,
                           integer ? "an integer" : "a number");
    *out = v;
    return AGG_OK;
}

static int check_time(const char *key, const char *s, struct agg_err *err)
{
    int64_t us;

    if (s != NULL && !agg_time_parse_iso8601(s, strlen(s), &us))
        return agg_err_set(err, AGG_EINVAL,
                           "notification facts: \"%s\" is not an ISO 8601 timestamp", key);
    return AGG_OK;
}

static int facts_read(struct facts *f, struct agg_err *err)
{
    static const char *const notices[] = {"firing", "resolved", "escalation", "repeat", NULL};
    static const char *const statuses[] = {"firing", "resolved", NULL};
    static const char *const ops[] = {"gt", "gte", "lt", "lte", "eq", NULL};
    int rc;

    if ((rc = get_str(f, "notice", true, &f->notice, err)) != AGG_OK ||
        (rc = get_str(f, "status", true, &f->status, err)) != AGG_OK ||
        (rc = get_num(f, "alert_id", true, true, &f->alert_id, err)) != AGG_OK ||
        (rc = get_num(f, "rule_id", true, true, &f->rule_id, err)) != AGG_OK ||
        (rc = get_str(f, "rule", true, &f->rule, err)) != AGG_OK ||
        (rc = get_str(f, "starts_at", true, &f->starts_at, err)) != AGG_OK ||
        (rc = get_str(f, "ends_at", false, &f->ends_at, err)) != AGG_OK ||
        (rc = get_str(f, "metric", false, &f->metric, err)) != AGG_OK ||
        (rc = get_str(f, "operator", false, &f->op, err)) != AGG_OK ||
        (rc = get_str(f, "severity", false, &f->severity, err)) != AGG_OK ||
        (rc = get_str(f, "message", false, &f->message, err)) != AGG_OK ||
        (rc = get_str(f, "link", false, &f->link, err)) != AGG_OK ||
        (rc = get_num(f, "escalation_level", true, false, &f->level, err)) != AGG_OK ||
        (rc = get_num(f, "threshold", false, false, &f->threshold, err)) != AGG_OK ||
        (rc = get_num(f, "value", false, false, &f->value, err)) != AGG_OK ||
        (rc = check_time("starts_at", f->starts_at, err)) != AGG_OK ||
        (rc = check_time("ends_at", f->ends_at, err)) != AGG_OK)
        return rc;
    if (!is_one_of(f->notice, notices))
        return agg_err_set(err, AGG_EINVAL,
                           "notification facts: \"notice\" must be firing, resolved, escalation "
                           "or repeat");
    if (!is_one_of(f->status, statuses))
        return agg_err_set(err, AGG_EINVAL,
                           "notification facts: \"status\" must be firing or resolved");
    if (f->op != NULL && !is_one_of(f->op, ops))
        return agg_err_set(err, AGG_EINVAL,
                           "notification facts: \"operator\" must be gt, gte, lt, lte or eq");
    if (f->severity == NULL)
        f->severity = "unknown";
    f->context = member(f, "context");
    return AGG_OK;
}

/* Parses <text>[<len>] into <f>: AGG_OK (then facts_clear()), or an error. */
static int facts_parse(const char *text, size_t len, struct facts *f, struct agg_err *err)
{
    char ebuf[128] = "";
    char *copy;
    int rc;

    memset(f, 0, sizeof(*f));
    if (text == NULL)
        return agg_err_set(err, AGG_EINVAL, "notification facts are missing");
    copy = agg_strndup(text, len); /* yajl_tree wants NUL-terminated text */
    if (copy == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    f->root = yajl_tree_parse(copy, ebuf, sizeof(ebuf));
    free(copy);
    if (f->root == NULL || !YAJL_IS_OBJECT(f->root)) {
        facts_clear(f);
        return agg_err_set(err, AGG_EINVAL, "notification facts are not a JSON object");
    }
    rc = facts_read(f, err);
    if (rc != AGG_OK)
        facts_clear(f);
    return rc;
}

static const char *op_symbol(const char *op)
{
    static const char *const names[] = {"gt", "gte", "lt", "lte", "eq"};
    static const char *const symbols[] = {">", ">=", "<", "<=", "=="};

    for (size_t i = 0; op != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(op, names[i]) == 0)
            return symbols[i];
    }
    return "?";
}

static const char *num_text(yajl_val v)
{
    return v != NULL ? YAJL_GET_NUMBER(v) : NULL;
}

/* "FIRING", "RESOLVED", "ESCALATION", "REPEAT". */
static const char *notice_label(const struct facts *f)
{
    if (strcmp(f->notice, "resolved") == 0)
        return "RESOLVED";
    if (strcmp(f->notice, "escalation") == 0)
        return "ESCALATION";
    if (strcmp(f->notice, "repeat") == 0)
        return "REPEAT";
    return "FIRING";
}

/* Appends "FIRING <severity>: <rule>", as typed (callers sanitise for their medium). */
static int put_headline(struct agg_buf *b, const struct facts *f)
{
    return agg_buf_printf(b, "%s %s: %s", notice_label(f), f->severity, f->rule);
}

/* Appends "<rule>: <metric> = <value> (<op> <threshold>)", parts present in the facts. */
static int put_summary(struct agg_buf *b, const struct facts *f)
{
    int rc = agg_buf_printf(b, "%s", f->rule);

    if (rc == AGG_OK && f->metric != NULL)
        rc = agg_buf_printf(b, ": %s", f->metric);
    if (rc == AGG_OK && f->value != NULL)
        rc = agg_buf_printf(b, " = %s", num_text(f->value));
    if (rc == AGG_OK && f->threshold != NULL)
        rc = agg_buf_printf(b, " (%s %s)", f->op != NULL ? op_symbol(f->op) : "vs",
                            num_text(f->threshold));
    return rc;
}

/* Largest n <= <max> such that <s>[n] does not cut a UTF-8 character. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

/* ---- JSON ------------------------------------------------------------------------ */

static void gen_str(yajl_gen g, const char *s)
{
    if (s == NULL)
        yajl_gen_null(g);
    else
        yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

static void gen_kv(yajl_gen g, const char *key, const char *value)
{
    gen_str(g, key);
    gen_str(g, value);
}

static void gen_num(yajl_gen g, yajl_val v)
{
    if (v == NULL)
        yajl_gen_null(g);
    else
        yajl_gen_number(g, YAJL_GET_NUMBER(v), strlen(YAJL_GET_NUMBER(v)));
}

/* Re-emits the parsed JSON value <v>. */
static void gen_tree(yajl_gen g, yajl_val v)
{
    if (v == NULL || YAJL_IS_NULL(v)) {
        yajl_gen_null(g);
    } else if (YAJL_IS_STRING(v)) {
        gen_str(g, YAJL_GET_STRING(v));
    } else if (YAJL_IS_NUMBER(v)) {
        gen_num(g, v);
    } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        yajl_gen_bool(g, YAJL_IS_TRUE(v));
    } else if (YAJL_IS_ARRAY(v)) {
        yajl_gen_array_open(g);
        for (size_t i = 0; i < v->u.array.len; i++)
            gen_tree(g, v->u.array.values[i]);
        yajl_gen_array_close(g);
    } else {
        yajl_gen_map_open(g);
        for (size_t i = 0; i < v->u.object.len; i++) {
            gen_str(g, v->u.object.keys[i]);
            gen_tree(g, v->u.object.values[i]);
        }
        yajl_gen_map_close(g);
    }
}

/* Appends what <g> generated to <out> and frees <g>. */
static int gen_finish(yajl_gen g, struct agg_buf *out, struct agg_err *err)
{
    const unsigned char *text;
    size_t n;
    int rc = AGG_OK;

    if (yajl_gen_get_buf(g, &text, &n) != yajl_gen_status_ok)
        rc = agg_err_set(err, AGG_ERR, "could not generate notification JSON");
    else if (agg_buf_append(out, text, n) != AGG_OK)
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
    yajl_gen_free(g);
    return rc;
}

static yajl_gen gen_new(struct agg_err *err)
{
    yajl_gen g = yajl_gen_alloc(NULL);

    if (g == NULL)
        agg_err_set(err, AGG_ENOMEM, "out of memory");
    return g;
}

/* Stable per alert: hex of the first 8 bytes of SHA-256("<rule_id>:<alert_id>"). */
static void fingerprint(const struct facts *f, char out[17])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    char in[64];
    int n = snprintf(in, sizeof(in), "%s:%s", YAJL_GET_NUMBER(f->rule_id),
                     YAJL_GET_NUMBER(f->alert_id));

    crypto_hash_sha256(h, (const unsigned char *)in, n > 0 ? strlen(in) : 0);
    sodium_bin2hex(out, 17, h, 8);
}

static void gen_labels(yajl_gen g, const struct facts *f)
{
    yajl_gen_map_open(g);
    gen_kv(g, "alertname", f->rule);
    gen_kv(g, "severity", f->severity);
    gen_kv(g, "rule_id", num_text(f->rule_id));
    yajl_gen_map_close(g);
}

static void gen_annotations(yajl_gen g, const struct facts *f, const char *summary)
{
    yajl_gen_map_open(g);
    gen_kv(g, "summary", summary);
    gen_kv(g, "description", f->message != NULL ? f->message : summary);
    yajl_gen_map_close(g);
}

static void gen_webhook(yajl_gen g, const struct facts *f, const char *summary)
{
    char fp[17], key[96];
    bool resolved = strcmp(f->status, "resolved") == 0;

    fingerprint(f, fp);
    snprintf(key, sizeof(key), "{}:{rule_id=\"%s\"}", num_text(f->rule_id));
    yajl_gen_map_open(g);
    gen_kv(g, "version", "4");
    gen_kv(g, "groupKey", key);
    gen_str(g, "truncatedAlerts");
    yajl_gen_integer(g, 0);
    gen_kv(g, "status", f->status);
    gen_kv(g, "receiver", "aggd");
    gen_str(g, "groupLabels");
    yajl_gen_map_open(g);
    gen_kv(g, "alertname", f->rule);
    yajl_gen_map_close(g);
    gen_str(g, "commonLabels");
    gen_labels(g, f);
    gen_str(g, "commonAnnotations");
    gen_annotations(g, f, summary);
    gen_kv(g, "externalURL", f->link != NULL ? f->link : "");
    gen_str(g, "alerts");
    yajl_gen_array_open(g);
    yajl_gen_map_open(g);
    gen_kv(g, "status", f->status);
    gen_str(g, "labels");
    gen_labels(g, f);
    gen_str(g, "annotations");
    gen_annotations(g, f, summary);
    gen_kv(g, "startsAt", f->starts_at);
    gen_kv(g, "endsAt", resolved && f->ends_at != NULL ? f->ends_at : ZERO_TIME);
    gen_kv(g, "generatorURL", f->link != NULL ? f->link : "");
    gen_kv(g, "fingerprint", fp);
    yajl_gen_map_close(g);
    yajl_gen_array_close(g);
    gen_str(g, "alert_id");
    gen_num(g, f->alert_id);
    gen_kv(g, "rule", f->rule);
    gen_kv(g, "metric", f->metric);
    gen_str(g, "metric_value");
    gen_num(g, f->value);
    gen_str(g, "threshold");
    gen_num(g, f->threshold);
    gen_kv(g, "operator", f->op);
    gen_str(g, "escalation_level");
    if (f->level != NULL)
        gen_num(g, f->level);
    else
        yajl_gen_integer(g, 0);
    gen_kv(g, "notice", f->notice);
    if (f->context != NULL) {
        gen_str(g, "context");
        gen_tree(g, f->context);
    }
    yajl_gen_map_close(g);
}

int rl_render_webhook(const char *facts, size_t len, struct agg_buf *out, struct agg_err *err)
{
    struct facts f;
    struct agg_buf summary;
    yajl_gen g;
    int rc = facts_parse(facts, len, &f, err);

    if (rc != AGG_OK)
        return rc;
    agg_buf_init(&summary);
    if (put_summary(&summary, &f) != AGG_OK) {
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto out_clear;
    }
    g = gen_new(err);
    if (g == NULL) {
        rc = AGG_ENOMEM;
        goto out_clear;
    }
    gen_webhook(g, &f, summary.data);
    rc = gen_finish(g, out, err);

out_clear:
    agg_buf_clear(&summary);
    facts_clear(&f);
    return rc;
}

/* ---- Slack ----------------------------------------------------------------------- */

/* Appends <s> with Slack's three control characters escaped, cut to <max> bytes. */
static int slack_escape(struct agg_buf *b, const char *s, size_t max)
{
    size_t n = utf8_cut(s, strlen(s), max);
    int rc = AGG_OK;

    for (size_t i = 0; i < n && rc == AGG_OK; i++) {
        switch (s[i]) {
        case '&':
            rc = agg_buf_append(b, "&amp;", 5);
            break;
        case '<':
            rc = agg_buf_append(b, "&lt;", 4);
            break;
        case '>':
            rc = agg_buf_append(b, "&gt;", 4);
            break;
        default:
            rc = agg_buf_putc(b, s[i]);
        }
    }
    return rc;
}

/* Emits a mrkdwn "*<title>*\n<escaped text>" field; <scratch> is reused. */
static int slack_field(yajl_gen g, struct agg_buf *scratch, const char *title, const char *text)
{
    int rc;

    agg_buf_reset(scratch);
    rc = agg_buf_printf(scratch, "*%s*\n", title);
    if (rc == AGG_OK)
        rc = slack_escape(scratch, text, SLACK_FIELD_MAX);
    if (rc != AGG_OK)
        return rc;
    yajl_gen_map_open(g);
    gen_kv(g, "type", "mrkdwn");
    gen_kv(g, "text", scratch->data);
    yajl_gen_map_close(g);
    return AGG_OK;
}

static void slack_text_block(yajl_gen g, const char *type, const char *kind, const char *text)
{
    yajl_gen_map_open(g);
    gen_kv(g, "type", type);
    gen_str(g, "text");
    yajl_gen_map_open(g);
    gen_kv(g, "type", kind);
    gen_kv(g, "text", text);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
}

static int slack_fields(yajl_gen g, const struct facts *f, struct agg_buf *s)
{
    char cond[160] = "-";
    int rc;

    if (f->value != NULL)
        snprintf(cond, sizeof(cond), "%s", num_text(f->value));
    if (f->value != NULL && f->threshold != NULL)
        snprintf(cond, sizeof(cond), "%s %s %s", num_text(f->value),
                 f->op != NULL ? op_symbol(f->op) : "vs", num_text(f->threshold));
    yajl_gen_map_open(g);
    gen_kv(g, "type", "section");
    gen_str(g, "fields");
    yajl_gen_array_open(g);
    if ((rc = slack_field(g, s, "Severity", f->severity)) != AGG_OK ||
        (rc = slack_field(g, s, "Rule", f->rule)) != AGG_OK ||
        (rc = slack_field(g, s, "Value", cond)) != AGG_OK ||
        (rc = slack_field(g, s, "Metric", f->metric != NULL ? f->metric : "-")) != AGG_OK)
        return rc;
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    return AGG_OK;
}

static int gen_slack(yajl_gen g, const struct facts *f, struct agg_buf *s)
{
    struct agg_buf head, sum;
    int rc;

    agg_buf_init(&head);
    agg_buf_init(&sum);
    /* header: plain text, no escaping, at most 150 characters */
    if ((rc = put_headline(&head, f)) != AGG_OK || (rc = put_summary(&sum, f)) != AGG_OK)
        goto out;
    head.data[utf8_cut(head.data, head.len, SLACK_HEADER_MAX)] = '\0';
    /* fallback text for notifications: "[FIRING] critical: <escaped summary>" */
    agg_buf_reset(s);
    if ((rc = agg_buf_printf(s, "[%s] %s: ", notice_label(f), f->severity)) != AGG_OK ||
        (rc = slack_escape(s, sum.data, SLACK_TEXT_MAX)) != AGG_OK)
        goto out;
    yajl_gen_map_open(g);
    gen_kv(g, "text", s->data);
    gen_str(g, "blocks");
    yajl_gen_array_open(g);
    slack_text_block(g, "header", "plain_text", head.data);
    if ((rc = slack_fields(g, f, s)) != AGG_OK)
        goto out;
    if (f->message != NULL) {
        agg_buf_reset(s);
        if ((rc = slack_escape(s, f->message, SLACK_TEXT_MAX)) != AGG_OK)
            goto out;
        if (s->len > 0)
            slack_text_block(g, "section", "mrkdwn", s->data);
    }
    agg_buf_reset(s);
    rc = agg_buf_printf(s, "alert %s · started %s · escalation level %s", num_text(f->alert_id),
                        f->starts_at, f->level != NULL ? num_text(f->level) : "0");
    if (rc == AGG_OK && f->ends_at != NULL && strcmp(f->status, "resolved") == 0)
        rc = agg_buf_printf(s, " · ended %s", f->ends_at);
    if (rc != AGG_OK)
        goto out;
    yajl_gen_map_open(g);
    gen_kv(g, "type", "context");
    gen_str(g, "elements");
    yajl_gen_array_open(g);
    yajl_gen_map_open(g);
    gen_kv(g, "type", "mrkdwn");
    gen_kv(g, "text", s->data);
    yajl_gen_map_close(g);
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    if (f->link != NULL) {
        yajl_gen_map_open(g);
        gen_kv(g, "type", "actions");
        gen_str(g, "elements");
        yajl_gen_array_open(g);
        yajl_gen_map_open(g);
        gen_kv(g, "type", "button");
        gen_str(g, "text");
        yajl_gen_map_open(g);
        gen_kv(g, "type", "plain_text");
        gen_kv(g, "text", "Open");
        yajl_gen_map_close(g);
        gen_kv(g, "url", f->link);
        yajl_gen_map_close(g);
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);

out:
    agg_buf_clear(&head);
    agg_buf_clear(&sum);
    return rc;
}

int rl_render_slack(const char *facts, size_t len, struct agg_buf *out, struct agg_err *err)
{
    struct facts f;
    struct agg_buf scratch;
    yajl_gen g;
    int rc = facts_parse(facts, len, &f, err);

    if (rc != AGG_OK)
        return rc;
    agg_buf_init(&scratch);
    g = gen_new(err);
    if (g == NULL) {
        rc = AGG_ENOMEM;
        goto out_clear;
    }
    if (gen_slack(g, &f, &scratch) != AGG_OK) {
        yajl_gen_free(g);
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto out_clear;
    }
    rc = gen_finish(g, out, err);

out_clear:
    agg_buf_clear(&scratch);
    facts_clear(&f);
    return rc;
}

/* ---- email ----------------------------------------------------------------------- */

static bool is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static int check_addr(const char *what, const char *a, struct agg_err *err)
{
    size_t n = a != NULL ? strlen(a) : 0;

    if (n == 0 || n > ADDR_MAX)
        return agg_err_set(err, AGG_EINVAL, "email %s address is empty or too long", what);
    for (size_t i = 0; i < n; i++) {
        if (is_ctl((unsigned char)a[i]))
            return agg_err_set(err, AGG_EINVAL, "email %s address holds a control character", what);
    }
    return AGG_OK;
}

static int check_id(const char *what, const char *id, struct agg_err *err)
{
    size_t n = id != NULL ? strlen(id) : 0;

    if (n == 0 || n > ID_MAX ||
        strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789-_.+=") != n)
        return agg_err_set(err, AGG_EINVAL, "email %s must be 1 to %d letters, digits or \"-_.+=\"",
                           what, ID_MAX);
    return AGG_OK;
}

/* Appends <s>[<n>] (UTF-8, no control characters) as RFC 2047 "B" encoded words of at
 * most 45 input bytes each (60 base64 characters), folded onto continuation lines. */
static int put_encoded_words(struct agg_buf *b, const char *s, size_t n)
{
    char word[sodium_base64_ENCODED_LEN(45, sodium_base64_VARIANT_ORIGINAL)];
    int rc = AGG_OK;

    for (size_t at = 0; at < n && rc == AGG_OK;) {
        size_t take = utf8_cut(s + at, n - at, 45);

        sodium_bin2base64(word, sizeof(word), (const unsigned char *)s + at, take,
                          sodium_base64_VARIANT_ORIGINAL);
        rc = agg_buf_printf(b, "%s=?UTF-8?B?%s?=", at > 0 ? "\r\n " : "", word);
        at += take;
    }
    return rc;
}

static int put_subject(struct agg_buf *b, const struct facts *f)
{
    struct agg_buf raw;
    bool ascii = true;
    size_t n;
    int rc;

    agg_buf_init(&raw);
    rc = agg_buf_printf(&raw, "[aggd] ");
    if (rc == AGG_OK)
        rc = put_headline(&raw, f);
    if (rc == AGG_OK && f->level != NULL && strcmp(f->notice, "escalation") == 0)
        rc = agg_buf_printf(&raw, " (level %s)", num_text(f->level));
    if (rc != AGG_OK)
        goto out;
    n = utf8_cut(raw.data, raw.len, SUBJECT_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)raw.data[i];

        if (is_ctl(c)) /* no CR/LF: nothing from the facts may start a header */
            raw.data[i] = ' ';
        ascii = ascii && c < 0x80;
    }
    rc = agg_buf_printf(b, "Subject: ");
    if (rc == AGG_OK)
        rc = ascii ? agg_buf_append(b, raw.data, n) : put_encoded_words(b, raw.data, n);
    if (rc == AGG_OK)
        rc = agg_buf_printf(b, "\r\n");

out:
    agg_buf_clear(&raw);
    return rc;
}

/* RFC 5322 date of now, in UTC with English names whatever the locale. */
static int put_date(struct agg_buf *b)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    if (gmtime_r(&now, &tm) == NULL)
        return AGG_ERR;
    return agg_buf_printf(b, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday],
                          tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                          tm.tm_sec);
}

/* Appends body text: LF becomes CRLF, CR and other control characters (TAB aside)
 * become nothing or a space, and lines are broken before MAIL_LINE_MAX bytes. */
static int put_body_text(struct agg_buf *b, const char *s)
{
    size_t col = 0;
    int rc = AGG_OK;

    for (size_t i = b->len; i > 0 && b->data[i - 1] != '\n'; i--)
        col++;
    for (; *s != '\0' && rc == AGG_OK; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '\n') {
            rc = agg_buf_append(b, "\r\n", 2);
            col = 0;
            continue;
        }
        if (c == '\r')
            continue;
        if (col >= MAIL_LINE_MAX && (c & 0xC0) != 0x80) {
            rc = agg_buf_append(b, "\r\n", 2);
            col = 0;
        }
        if (rc == AGG_OK)
            rc = agg_buf_putc(b, (is_ctl(c) && c != '\t') ? ' ' : (char)c);
        col++;
    }
    return rc;
}

static int put_fact_line(struct agg_buf *b, const char *label, const char *value)
{
    int rc;

    if (value == NULL)
        return AGG_OK;
    rc = agg_buf_printf(b, "%-12s", label);
    if (rc == AGG_OK)
        rc = put_body_text(b, value);
    if (rc == AGG_OK)
        rc = agg_buf_append(b, "\r\n", 2);
    return rc;
}

static int put_context(struct agg_buf *b, const struct facts *f)
{
    const unsigned char *text;
    size_t n;
    yajl_gen g;
    int rc;

    if (f->context == NULL)
        return AGG_OK;
    g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return AGG_ENOMEM;
    yajl_gen_config(g, yajl_gen_beautify, 1);
    yajl_gen_config(g, yajl_gen_indent_string, "  ");
    gen_tree(g, f->context);
    rc = yajl_gen_get_buf(g, &text, &n) == yajl_gen_status_ok ? AGG_OK : AGG_ERR;
    if (rc == AGG_OK)
        rc = agg_buf_printf(b, "\r\nContext:\r\n");
    if (rc == AGG_OK)
        rc = put_body_text(b, (const char *)text);
    yajl_gen_free(g);
    return rc;
}

static int put_body(struct agg_buf *b, const struct facts *f, const char *headline)
{
    char cond[160] = "";
    int rc;

    if (f->threshold != NULL)
        snprintf(cond, sizeof(cond), "%s %s", f->op != NULL ? f->op : "threshold",
                 num_text(f->threshold));
    rc = put_body_text(b, headline);
    if (rc == AGG_OK)
        rc = agg_buf_append(b, "\r\n\r\n", 4);
    if (rc == AGG_OK && f->message != NULL) {
        rc = put_body_text(b, f->message);
        if (rc == AGG_OK)
            rc = agg_buf_append(b, "\r\n\r\n", 4);
    }
    if (rc == AGG_OK)
        rc = agg_buf_printf(b, "%-12s%s\r\n%-12s%s\r\n%-12s%s\r\n", "Status:", f->status,
                            "Alert:", num_text(f->alert_id), "Rule id:", num_text(f->rule_id));
    if (rc == AGG_OK)
        rc = put_fact_line(b, "Rule:", f->rule);
    if (rc == AGG_OK)
        rc = put_fact_line(b, "Metric:", f->metric);
    if (rc == AGG_OK)
        rc = put_fact_line(b, "Value:", num_text(f->value));
    if (rc == AGG_OK)
        rc = put_fact_line(b, "Condition:", cond[0] != '\0' ? cond : NULL);
    if (rc == AGG_OK)
        rc = put_fact_line(b, "Severity:", f->severity);
    if (rc == AGG_OK)
        rc = put_fact_line(b, "Escalation:", f->level != NULL ? num_text(f->level) : "0");
    if (rc == AGG_OK)
        rc = put_fact_line(b, "Started:", f->starts_at);
    if (rc == AGG_OK)
        rc = put_fact_line(b, "Ended:", f->ends_at);
    if (rc == AGG_OK)
        rc = put_fact_line(b, "Link:", f->link);
    if (rc == AGG_OK)
        rc = put_context(b, f);
    return rc;
}

static int put_headers(struct agg_buf *b, const struct facts *f, const char *from, const char *to,
                       const char *message_id, const char *thread_id)
{
    int rc = agg_buf_printf(b, "From: %s\r\nTo: %s\r\n", from, to);

    if (rc == AGG_OK)
        rc = put_subject(b, f);
    if (rc == AGG_OK)
        rc = put_date(b);
    if (rc == AGG_OK)
        rc = agg_buf_printf(b, "Message-ID: <%s@aggd>\r\n", message_id);
    if (rc == AGG_OK && thread_id != NULL)
        rc = agg_buf_printf(b, "In-Reply-To: <%s@aggd>\r\nReferences: <%s@aggd>\r\n", thread_id,
                            thread_id);
    if (rc == AGG_OK)
        rc = agg_buf_printf(b, "MIME-Version: 1.0\r\n"
                               "Content-Type: text/plain; charset=utf-8\r\n"
                               "Content-Transfer-Encoding: 8bit\r\n"
                               "Auto-Submitted: auto-generated\r\n"
                               "\r\n");
    return rc;
}

int rl_render_email(const char *facts, size_t len, const char *from, const char *to,
                    const char *message_id, const char *thread_id, struct agg_buf *out,
                    struct agg_err *err)
{
    struct facts f;
    struct agg_buf headline;
    int rc;

    if ((rc = check_addr("sender", from, err)) != AGG_OK ||
        (rc = check_addr("recipient", to, err)) != AGG_OK ||
        (rc = check_id("message id", message_id, err)) != AGG_OK ||
        (thread_id != NULL && (rc = check_id("thread id", thread_id, err)) != AGG_OK))
        return rc;
    rc = facts_parse(facts, len, &f, err);
    if (rc != AGG_OK)
        return rc;
    agg_buf_init(&headline);
    rc = put_headline(&headline, &f);
    if (rc == AGG_OK)
        rc = put_headers(out, &f, from, to, message_id, thread_id);
    if (rc == AGG_OK)
        rc = put_body(out, &f, headline.data);
    if (rc != AGG_OK)
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
    agg_buf_clear(&headline);
    facts_clear(&f);
    return rc;
}
