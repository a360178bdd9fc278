/*
 * ingest/otlp.c — OTLP logs: OTLP/HTTP JSON documents walked on the JSON decoder's
 *                 tree, and the mapping of one decoded LogRecord onto a record.
 *
 * Place: ing_json_decode_document (ingest/json.c) -> [otlp] -> record -> sink; the
 *        mapping is docs/json-mapping.md, "OTLP/HTTP JSON logs".
 * Threads: as ingest/json.h: the decoder's thread; the mapping functions are pure.
 * Ownership: records point into the input, the tree's strings (j->strs) and the
 *            decoder's buffers (body, extra, raw), valid for the one sink call.
 * Traps: OTLP objects may list their members in any order (scopeLogs before
 *        resource, value before key), so the document is first built into a flat
 *        node array (ing_json_tree_build) and then walked.
 *        yajl_gen_number() prints its text verbatim: it is how pre-built JSON (the
 *        resource and scope objects) is spliced into extra_data.
 *        A record's own fields beat its attributes: attributes fill columns first,
 *        then ing_otlp_log_columns() overwrites them.
 *        A resource or scope whose attributes cannot be re-encoded rejects each of
 *        its records (j->ctx_why), not the document.
 * Not here: tokenizing, the tree, the generators, the sink calls (ingest/json.c);
 *           OTLP over protobuf.
 */
#include "ingest/otlp.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>

#include "core/buf.h"
#include "ingest/json_int.h"

/* ---- a decoded LogRecord onto a record (any encoding) ------------------------------ */

/* Log attribute names that also fill a column (besides the column names themselves,
 * except message, level and created_at). OpenTelemetry semantic conventions. */
static int attr_field(const char *s, size_t n)
{
    static const struct {
        const char *key;
        int field;
    } semconv[] = {
        {"code.function", AGG_F_FUNCTION_NAME},
        {"code.function.name", AGG_F_FUNCTION_NAME},
        {"code.lineno", AGG_F_LINE_NUMBER},
        {"code.line.number", AGG_F_LINE_NUMBER},
        {"code.namespace", AGG_F_MODULE},
        {"exception.type", AGG_F_EXCEPTION_TYPE},
        {"exception.message", AGG_F_EXCEPTION_MESSAGE},
        {"exception.stacktrace", AGG_F_STACK_TRACE},
        {"http.request.method", AGG_F_REQUEST_METHOD},
        {"http.method", AGG_F_REQUEST_METHOD},
        {"url.path", AGG_F_REQUEST_PATH},
        {"http.target", AGG_F_REQUEST_PATH},
        {"client.address", AGG_F_REQUEST_IP},
        {"http.client_ip", AGG_F_REQUEST_IP},
        {"user.id", AGG_F_USER_ID},
        {"enduser.id", AGG_F_USER_ID},
    };
    int f = agg_field_by_column(s, n);

    if (f == AGG_F_MESSAGE || f == AGG_F_LEVEL || f == AGG_F_CREATED_AT)
        return -1;
    if (f >= 0)
        return f;
    for (size_t i = 0; i < sizeof(semconv) / sizeof(semconv[0]); i++) {
        if (strlen(semconv[i].key) == n && memcmp(semconv[i].key, s, n) == 0)
            return semconv[i].field;
    }
    return -1;
}

void ing_otlp_attr_column(struct agg_record *rec, const char *key, size_t key_len, const char *val,
                          size_t val_len, bool is_number)
{
    int f = attr_field(key, key_len);

    if (f < 0)
        return;
    if (f < AGG_F_STR_COUNT)
        rec->str[f] = (struct agg_str){val, val_len};
    else if (is_number)
        (void)agg_record_set_number(rec, f, val, val_len, NULL);
    else
        (void)agg_record_set_text(rec, f, val, val_len, NULL);
}

/* A level from OTLP severityText: a level name, with an OTel digit suffix allowed. */
static bool severity_text_level(const char *s, size_t n, enum agg_level *out)
{
    if (agg_level_parse(s, n, out))
        return true;
    return n > 1 && s[n - 1] >= '1' && s[n - 1] <= '4' && agg_level_parse(s, n - 1, out);
}

bool ing_otlp_log_columns(struct agg_record *rec, const struct ing_otlp_log *log)
{
    uint64_t t_ns = log->time_ns != 0 ? log->time_ns : log->observed_ns;
    const struct agg_str *stext = &log->severity_text;
    bool stext_used = false;

    if (rec->str[AGG_F_LOGGER_NAME].p == NULL && log->scope_name.len > 0)
        rec->str[AGG_F_LOGGER_NAME] = log->scope_name;
    agg_record_derive_exception(rec); /* exception.stacktrace without exception.type */
    if (t_ns != 0)
        rec->created_us = (int64_t)(t_ns / 1000);
    if (log->severity_number >= 1) {
        rec->level = agg_level_from_otlp(log->severity_number);
        rec->has_level = true;
        stext_used =
            stext->p != NULL && severity_text_level(stext->p, stext->len, &(enum agg_level){0});
    } else if (stext->p != NULL && severity_text_level(stext->p, stext->len, &rec->level)) {
        rec->has_level = true;
        stext_used = true;
    }
    rec->str[AGG_F_MESSAGE] = log->body.p != NULL ? log->body : (struct agg_str){"", 0};
    if (log->trace_id.len > 0)
        rec->str[AGG_F_CORRELATION_ID] = log->trace_id;
    return stext_used;
}

/* ---- OTLP/HTTP JSON: AnyValue, resource and scope ----------------------------------- */

/* Points gb's output at <b>, empty. */
static void gb_target(struct ing_json *j, struct agg_buf *b)
{
    yajl_gen_reset(j->gb, NULL);
    j->ob.buf = b;
    agg_buf_reset(b);
}

enum anykind { AK_NONE = 0, AK_STRING, AK_BOOL, AK_INT, AK_DOUBLE, AK_ARRAY, AK_KVLIST, AK_BYTES };

/* The payload of AnyValue <v> (its last known member) and its kind; 0 and AK_NONE
 * for an empty AnyValue, <v> itself and AK_NONE when <v> is not an object. */
static uint32_t any_value(const struct ing_json *j, uint32_t v, enum anykind *kind)
{
    static const struct {
        const char *camel, *snake;
        enum anykind kind;
    } kinds[] = {
        {"stringValue", "string_value", AK_STRING}, {"boolValue", "bool_value", AK_BOOL},
        {"intValue", "int_value", AK_INT},          {"doubleValue", "double_value", AK_DOUBLE},
        {"arrayValue", "array_value", AK_ARRAY},    {"kvlistValue", "kvlist_value", AK_KVLIST},
        {"bytesValue", "bytes_value", AK_BYTES},
    };
    uint32_t found = 0;

    *kind = AK_NONE;
    if (ntype(j, v) != T_MAP)
        return v;
    for (uint32_t c = j->nodes[v].first; c != 0; c = j->nodes[c].next) {
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
            if (key_is(j, c, kinds[i].camel) || key_is(j, c, kinds[i].snake)) {
                found = c;
                *kind = kinds[i].kind;
            }
        }
    }
    return found;
}

/* Whether <s>[<n>] is a JSON integer literal (an OTLP int64 sent as a string). */
static bool is_int_literal(const char *s, size_t n)
{
    size_t i = n > 0 && s[0] == '-' ? 1 : 0;

    if (i >= n || (s[i] == '0' && n - i > 1))
        return false;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

static void kvlist_members(struct ing_json *j, yajl_gen g, uint32_t arr);

/* AnyValue <v> as a plain JSON value into <g>. */
static void any_emit(struct ing_json *j, yajl_gen g, uint32_t v)
{
    enum anykind kind;
    uint32_t p = any_value(j, v, &kind);
    const char *s;
    size_t n;

    if (j->gen_status != yajl_gen_status_ok || j->oom)
        return;
    if (p == 0) {
        gst(j, yajl_gen_null(g));
        return;
    }
    switch (kind) {
    case AK_INT:
        if (ntype(j, p) == T_STRING) {
            s = nval(j, p, &n);
            gst(j, is_int_literal(s, n) ? yajl_gen_number(g, s, n)
                                        : ing_json_gen_str(j, g, s, n, true));
            return;
        }
        break;
    case AK_ARRAY:
        gst(j, yajl_gen_array_open(g));
        p = ing_json_member(j, p, "values", NULL);
        if (ntype(j, p) == T_ARRAY) {
            for (uint32_t c = j->nodes[p].first; c != 0; c = j->nodes[c].next)
                any_emit(j, g, c);
        }
        gst(j, yajl_gen_array_close(g));
        return;
    case AK_KVLIST:
        gst(j, yajl_gen_map_open(g));
        kvlist_members(j, g, ing_json_member(j, p, "values", NULL));
        gst(j, yajl_gen_map_close(g));
        return;
    default:
        break;
    }
    ing_json_tree_emit(j, g, p, true);
}

/* The members of KeyValue array <arr> as "key": value pairs of an open object. */
static void kvlist_members(struct ing_json *j, yajl_gen g, uint32_t arr)
{
    if (ntype(j, arr) != T_ARRAY)
        return;
    for (uint32_t kv = j->nodes[arr].first; kv != 0; kv = j->nodes[kv].next) {
        uint32_t k = ing_json_member(j, kv, "key", NULL), v = ing_json_member(j, kv, "value", NULL);
        const char *s;
        size_t n;

        if (ntype(j, k) != T_STRING)
            continue; /* not a KeyValue */
        s = nval(j, k, &n);
        gst(j, ing_json_gen_str(j, g, s, n, true));
        if (v == 0)
            gst(j, yajl_gen_null(g));
        else
            any_emit(j, g, v);
    }
}

static bool has_members(const struct ing_json *j, uint32_t arr)
{
    return ntype(j, arr) == T_ARRAY && j->nodes[arr].first != 0;
}

/* j->res: the flattened attributes of resource <res>, as an object, or empty. */
static void build_resource(struct ing_json *j, uint32_t res)
{
    uint32_t attrs = res != 0 ? ing_json_member(j, res, "attributes", NULL) : 0;

    gb_target(j, &j->res);
    j->gen_status = yajl_gen_status_ok;
    if (!has_members(j, attrs))
        return;
    gst(j, yajl_gen_map_open(j->gb));
    kvlist_members(j, j->gb, attrs);
    gst(j, yajl_gen_map_close(j->gb));
    if (j->gen_status != yajl_gen_status_ok)
        snprintf(j->ctx_why, sizeof(j->ctx_why), "resource attributes nested too deep");
}

/* j->scope: {"name":…, "version":…, "attributes":{…}} of scope <scope>, or empty. */
static void build_scope(struct ing_json *j, uint32_t scope)
{
    uint32_t name = 0, version = 0, attrs = 0;
    const char *s;
    size_t n;

    j->scope_name = NULL;
    j->scope_name_len = 0;
    gb_target(j, &j->scope);
    j->gen_status = yajl_gen_status_ok;
    if (scope != 0 && ntype(j, scope) == T_MAP) {
        name = ing_json_member(j, scope, "name", NULL);
        version = ing_json_member(j, scope, "version", NULL);
        attrs = ing_json_member(j, scope, "attributes", NULL);
    }
    if (ntype(j, name) == T_STRING && j->nodes[name].val_len > 0)
        j->scope_name = nval(j, name, &j->scope_name_len);
    else
        name = 0;
    if (ntype(j, version) != T_STRING || j->nodes[version].val_len == 0)
        version = 0;
    if (!has_members(j, attrs))
        attrs = 0;
    if (name == 0 && version == 0 && attrs == 0)
        return;
    gst(j, yajl_gen_map_open(j->gb));
    if (name != 0) {
        gst(j, yajl_gen_string(j->gb, (const unsigned char *)"name", 4));
        s = nval(j, name, &n);
        gst(j, ing_json_gen_str(j, j->gb, s, n, true));
    }
    if (version != 0) {
        gst(j, yajl_gen_string(j->gb, (const unsigned char *)"version", 7));
        s = nval(j, version, &n);
        gst(j, ing_json_gen_str(j, j->gb, s, n, true));
    }
    if (attrs != 0) {
        gst(j, yajl_gen_string(j->gb, (const unsigned char *)"attributes", 10));
        gst(j, yajl_gen_map_open(j->gb));
        kvlist_members(j, j->gb, attrs);
        gst(j, yajl_gen_map_close(j->gb));
    }
    gst(j, yajl_gen_map_close(j->gb));
    if (j->gen_status != yajl_gen_status_ok)
        snprintf(j->ctx_why, sizeof(j->ctx_why), "scope attributes nested too deep");
}

/* ---- OTLP/HTTP JSON: one logRecord ------------------------------------------------- */

/* Fills the column named by attribute <key> from AnyValue <v> when it is a scalar;
 * an attribute never rejects an event (it stays in extra_data either way). */
static void attr_column(struct ing_json *j, uint32_t key, uint32_t v)
{
    enum anykind kind;
    const char *k, *s;
    size_t kn, n;
    uint32_t p;

    if (v == 0)
        return;
    p = any_value(j, v, &kind);
    if (p == 0 || (ntype(j, p) != T_STRING && ntype(j, p) != T_NUMBER))
        return;
    if (kind != AK_STRING && kind != AK_INT && kind != AK_DOUBLE && kind != AK_NONE)
        return;
    k = nval(j, key, &kn);
    s = nval(j, p, &n);
    /* an int64 sent as a string is a number too */
    ing_otlp_attr_column(&j->ev.rec, k, kn, s, n,
                         ntype(j, p) == T_NUMBER || (kind == AK_INT && is_int_literal(s, n)));
}

/* OTLP fixed64 nanoseconds (a string or a number) at <v>; 0 when absent. */
static bool otlp_nanos(struct ing_json *j, uint32_t v, const char *name, uint64_t *ns)
{
    const char *s;
    size_t n;

    *ns = 0;
    if (nabsent(j, v))
        return true;
    if (ntype(j, v) == T_STRING || ntype(j, v) == T_NUMBER) {
        s = nval(j, v, &n);
        if (n > 0 && n <= 20) {
            uint64_t x = 0;
            size_t i;

            for (i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
                if (x > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
                    break;
                x = x * 10 + (uint64_t)(s[i] - '0');
            }
            if (i == n) {
                *ns = x;
                return true;
            }
        }
        ing_json_event_bad(j, "%s: \"%.*s\" is not a count of nanoseconds", name,
                           (int)(n > 40 ? 40 : n), s);
        return false;
    }
    ing_json_event_bad(j, "%s must be a string or a number, not %s", name,
                       ing_json_tok_name(j->nodes[v].type));
    return false;
}

/* OTLP SeverityNumber from its proto3 JSON enum name ("SEVERITY_NUMBER_WARN2"), or -1. */
static int severity_from_name(const char *s, size_t n)
{
    static const struct {
        const char *name;
        int base;
    } names[] = {{"TRACE", 1}, {"DEBUG", 5},  {"INFO", 9},
                 {"WARN", 13}, {"ERROR", 17}, {"FATAL", 21}};
    const char *prefix = "SEVERITY_NUMBER_";
    size_t pl = strlen(prefix);
    int add = 0;

    if (n < pl || memcmp(s, prefix, pl) != 0)
        return -1;
    s += pl;
    n -= pl;
    if (n == 11 && memcmp(s, "UNSPECIFIED", 11) == 0)
        return 0;
    if (n > 0 && s[n - 1] >= '2' && s[n - 1] <= '4') {
        add = s[n - 1] - '1';
        n--;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i].name) == n && memcmp(names[i].name, s, n) == 0)
            return names[i].base + add;
    }
    return -1;
}

enum lr_key {
    LR_OTHER = 0,
    LR_TIME,
    LR_OBSERVED,
    LR_SEVNUM,
    LR_SEVTEXT,
    LR_BODY,
    LR_ATTRS,
    LR_DROPPED,
    LR_FLAGS,
    LR_TRACE,
    LR_SPAN,
    LR_EVNAME,
    LR_COUNT,
};

static enum lr_key lr_key_of(const struct ing_json *j, uint32_t c)
{
    static const struct {
        const char *camel, *snake;
    } keys[LR_COUNT] = {
        [LR_TIME] = {"timeUnixNano", "time_unix_nano"},
        [LR_OBSERVED] = {"observedTimeUnixNano", "observed_time_unix_nano"},
        [LR_SEVNUM] = {"severityNumber", "severity_number"},
        [LR_SEVTEXT] = {"severityText", "severity_text"},
        [LR_BODY] = {"body", NULL},
        [LR_ATTRS] = {"attributes", NULL},
        [LR_DROPPED] = {"droppedAttributesCount", "dropped_attributes_count"},
        [LR_FLAGS] = {"flags", NULL},
        [LR_TRACE] = {"traceId", "trace_id"},
        [LR_SPAN] = {"spanId", "span_id"},
        [LR_EVNAME] = {"eventName", "event_name"},
    };

    for (int k = LR_TIME; k < LR_COUNT; k++) {
        if (key_is(j, c, keys[k].camel) || key_is(j, c, keys[k].snake))
            return (enum lr_key)k;
    }
    return LR_OTHER;
}

/* A string member <v> (absent or null: NULL); a wrong type rejects the event. */
static const char *otlp_string(struct ing_json *j, uint32_t v, const char *name, size_t *n)
{
    *n = 0;
    if (nabsent(j, v))
        return NULL;
    if (ntype(j, v) != T_STRING) {
        ing_json_event_bad(j, "%s must be a string, not %s", name,
                           ing_json_tok_name(j->nodes[v].type));
        return NULL;
    }
    return nval(j, v, n);
}

static void gen_key(struct ing_json *j, yajl_gen g, const char *k)
{
    gst(j, yajl_gen_string(g, (const unsigned char *)k, strlen(k)));
}

/* SeverityNumber <v>, an enum name or a number, into *<sevnum> (absent: 0); false,
 * the event bad, when it is neither. */
static bool otlp_severity(struct ing_json *j, uint32_t v, int *sevnum)
{
    const char *s;
    size_t n;
    double x;
    char buf[32];

    *sevnum = 0;
    if (nabsent(j, v))
        return true;
    s = nval(j, v, &n);
    if (ntype(j, v) == T_STRING) {
        *sevnum = severity_from_name(s, n);
    } else if (ntype(j, v) == T_NUMBER && n < sizeof(buf)) {
        memcpy(buf, s, n);
        buf[n] = '\0';
        x = strtod(buf, NULL);
        /* out of 1-24 is SEVERITY_NUMBER_UNSPECIFIED */
        *sevnum = x != floor(x) ? -1 : x >= 1 && x <= 24 ? (int)x : 0;
    } else {
        *sevnum = -1;
    }
    if (*sevnum < 0) {
        ing_json_event_bad(j, "severityNumber: not an OTLP severity number");
        return false;
    }
    return true;
}

/* The message from body <v>: a string (or bytes) as it is, another AnyValue as JSON
 * in j->body; p NULL when absent or empty. False, the event bad, when it cannot be
 * re-encoded. */
static bool otlp_body(struct ing_json *j, uint32_t v, struct agg_str *msg)
{
    enum anykind kind;
    uint32_t p;

    *msg = (struct agg_str){NULL, 0};
    if (nabsent(j, v))
        return true;
    p = any_value(j, v, &kind);
    if (p == 0)
        return true;
    if (ntype(j, p) == T_STRING && (kind == AK_STRING || kind == AK_BYTES || kind == AK_NONE)) {
        msg->p = nval(j, p, &msg->len);
        return true;
    }
    gb_target(j, &j->body);
    j->gen_status = yajl_gen_status_ok;
    any_emit(j, j->gb, v);
    if (j->gen_status != yajl_gen_status_ok) {
        ing_json_event_bad(j, "body nested too deep");
        return false;
    }
    *msg = (struct agg_str){j->body.data, j->body.len};
    return true;
}

static void gen_member(struct ing_json *j, yajl_gen g, const char *k, struct agg_str v)
{
    if (v.len == 0)
        return;
    gen_key(j, g, k);
    gst(j, ing_json_gen_str(j, g, v.p, v.len, true));
}

/* extra_data of logRecord <lr>, members <m>, into j->extra: resource, scope,
 * attributes, span_id, flags, event_name, severity_text (<stext>, unless it was
 * read as the level: len 0), then the record's other members as they came. */
static void otlp_extra(struct ing_json *j, uint32_t lr, const uint32_t *m, struct agg_str span,
                       struct agg_str evname, struct agg_str stext)
{
    yajl_gen gx = j->gx;

    yajl_gen_reset(gx, NULL);
    agg_buf_reset(&j->extra);
    j->gen_status = yajl_gen_status_ok;
    gst(j, yajl_gen_map_open(gx));
    if (j->res.len > 0) {
        gen_key(j, gx, "resource");
        gst(j, yajl_gen_number(gx, j->res.data, j->res.len)); /* pre-built JSON */
    }
    if (j->scope.len > 0) {
        gen_key(j, gx, "scope");
        gst(j, yajl_gen_number(gx, j->scope.data, j->scope.len));
    }
    if (has_members(j, m[LR_ATTRS])) {
        gen_key(j, gx, "attributes");
        gst(j, yajl_gen_map_open(gx));
        kvlist_members(j, gx, m[LR_ATTRS]);
        gst(j, yajl_gen_map_close(gx));
    }
    gen_member(j, gx, "span_id", span);
    if (!nabsent(j, m[LR_FLAGS])) {
        size_t n;
        const char *s = nval(j, m[LR_FLAGS], &n);

        if (!(n == 1 && s[0] == '0')) {
            gen_key(j, gx, "flags");
            ing_json_tree_emit(j, gx, m[LR_FLAGS], true);
        }
    }
    gen_member(j, gx, "event_name", evname);
    gen_member(j, gx, "severity_text", stext);
    for (uint32_t c = j->nodes[lr].first; c != 0; c = j->nodes[c].next) {
        const char *s;
        size_t n;

        if (lr_key_of(j, c) != LR_OTHER)
            continue;
        s = nkey(j, c, &n);
        gst(j, ing_json_gen_str(j, gx, s, n, true));
        ing_json_tree_emit(j, gx, c, true);
    }
    gst(j, yajl_gen_map_close(gx));
}

/* Fills j->ev.rec from logRecord <lr> (an object): the record's members are checked
 * in a fixed order, so that the first wrong one names the reason. */
static void otlp_fill(struct ing_json *j, uint32_t lr)
{
    struct agg_record *rec = &j->ev.rec;
    struct ing_otlp_log log = {0};
    uint32_t m[LR_COUNT] = {0};
    struct agg_str span, evname;

    for (uint32_t c = j->nodes[lr].first; c != 0; c = j->nodes[c].next) {
        enum lr_key k = lr_key_of(j, c);

        if (k != LR_OTHER)
            m[k] = c;
    }
    if (!nabsent(j, m[LR_ATTRS]) && ntype(j, m[LR_ATTRS]) != T_ARRAY) {
        ing_json_event_bad(j, "attributes must be an array, not %s",
                           ing_json_tok_name(j->nodes[m[LR_ATTRS]].type));
        return;
    }
    /* columns from attributes first, so that the record's own fields win */
    if (has_members(j, m[LR_ATTRS])) {
        for (uint32_t kv = j->nodes[m[LR_ATTRS]].first; kv != 0; kv = j->nodes[kv].next) {
            uint32_t k = ing_json_member(j, kv, "key", NULL);

            if (ntype(j, k) == T_STRING)
                attr_column(j, k, ing_json_member(j, kv, "value", NULL));
        }
    }
    log.scope_name = (struct agg_str){j->scope_name, j->scope_name_len};
    if (!otlp_nanos(j, m[LR_TIME], "timeUnixNano", &log.time_ns) ||
        !otlp_nanos(j, m[LR_OBSERVED], "observedTimeUnixNano", &log.observed_ns) ||
        !otlp_severity(j, m[LR_SEVNUM], &log.severity_number))
        return;
    log.severity_text.p = otlp_string(j, m[LR_SEVTEXT], "severityText", &log.severity_text.len);
    if (!otlp_body(j, m[LR_BODY], &log.body))
        return;
    log.trace_id.p = otlp_string(j, m[LR_TRACE], "traceId", &log.trace_id.len);
    span.p = otlp_string(j, m[LR_SPAN], "spanId", &span.len);
    evname.p = otlp_string(j, m[LR_EVNAME], "eventName", &evname.len);
    if (j->ev.bad)
        return;
    if (!nabsent(j, m[LR_FLAGS]) && ntype(j, m[LR_FLAGS]) != T_NUMBER &&
        ntype(j, m[LR_FLAGS]) != T_STRING) {
        ing_json_event_bad(j, "flags must be a number, not %s",
                           ing_json_tok_name(j->nodes[m[LR_FLAGS]].type));
        return;
    }
    if (ing_otlp_log_columns(rec, &log))
        log.severity_text.len = 0; /* it is the level */
    otlp_extra(j, lr, m, span, evname, log.severity_text);
    if (j->gen_status != yajl_gen_status_ok) {
        ing_json_event_bad(j, "attributes nested too deep");
        return;
    }
    if (j->extra.len > 2)
        rec->extra = (struct agg_str){j->extra.data, j->extra.len};
}

static int otlp_event(struct ing_json *j, uint32_t lr, size_t index)
{
    struct event *ev = &j->ev;
    int rc;

    ing_json_event_reset(j, index);
    yajl_gen_reset(j->gr, NULL);
    agg_buf_reset(&j->raw);
    j->gen_status = yajl_gen_status_ok;
    ing_json_tree_emit(j, j->gr, lr, false);
    if (j->oom)
        return AGG_ENOMEM;
    if (j->nodes[lr].type != T_MAP)
        ing_json_event_bad(j, "logRecord is not a JSON object");
    else if (j->gen_status != yajl_gen_status_ok)
        ing_json_event_bad(j, "event nested deeper than %d levels", ING_JSON_MAX_EVENT_DEPTH);
    else if (j->raw.len > j->max_event_bytes)
        ing_json_event_too_large(j);
    else if (j->ctx_why[0] != '\0')
        ing_json_event_bad(j, "%s", j->ctx_why);
    if (!ev->bad)
        otlp_fill(j, lr);
    if (j->oom)
        return AGG_ENOMEM;
    if (ev->bad) {
        ing_json_reject(j, index, ev->why, j->raw.data, j->raw.len);
        return AGG_OK;
    }
    ev->rec.raw = (struct agg_str){j->raw.data, j->raw.len};
    rc = ing_json_emit(j, &ev->rec);
    return rc;
}

/* ---- OTLP/HTTP JSON: the document ------------------------------------------------ */

/* Checks the containers of the OTLP document down to the logRecords arrays. */
static int otlp_check(struct ing_json *j, uint32_t rls, struct agg_err *err)
{
    size_t ri = 0;

    if (nabsent(j, rls))
        return AGG_OK;
    if (ntype(j, rls) != T_ARRAY)
        return agg_err_set(err, AGG_EINVAL,
                           "not an OTLP logs document: resourceLogs must be an array");
    for (uint32_t rl = j->nodes[rls].first; rl != 0; rl = j->nodes[rl].next, ri++) {
        uint32_t res, sls;
        size_t si = 0;

        if (ntype(j, rl) != T_MAP)
            return agg_err_set(err, AGG_EINVAL,
                               "not an OTLP logs document: resourceLogs[%zu] must be an object",
                               ri);
        res = ing_json_member(j, rl, "resource", NULL);
        if (!nabsent(j, res) && ntype(j, res) != T_MAP)
            return agg_err_set(err, AGG_EINVAL,
                               "not an OTLP logs document: resourceLogs[%zu].resource must be an "
                               "object",
                               ri);
        sls = ing_json_member(j, rl, "scopeLogs", "scope_logs");
        if (nabsent(j, sls))
            continue;
        if (ntype(j, sls) != T_ARRAY)
            return agg_err_set(err, AGG_EINVAL,
                               "not an OTLP logs document: resourceLogs[%zu].scopeLogs must be an "
                               "array",
                               ri);
        for (uint32_t sl = j->nodes[sls].first; sl != 0; sl = j->nodes[sl].next, si++) {
            uint32_t scope, lrs;

            if (ntype(j, sl) != T_MAP)
                return agg_err_set(err, AGG_EINVAL,
                                   "not an OTLP logs document: resourceLogs[%zu].scopeLogs[%zu] "
                                   "must be an object",
                                   ri, si);
            scope = ing_json_member(j, sl, "scope", NULL);
            lrs = ing_json_member(j, sl, "logRecords", "log_records");
            if (!nabsent(j, scope) && ntype(j, scope) != T_MAP)
                return agg_err_set(err, AGG_EINVAL,
                                   "not an OTLP logs document: resourceLogs[%zu].scopeLogs[%zu]."
                                   "scope must be an object",
                                   ri, si);
            if (!nabsent(j, lrs) && ntype(j, lrs) != T_ARRAY)
                return agg_err_set(err, AGG_EINVAL,
                                   "not an OTLP logs document: resourceLogs[%zu].scopeLogs[%zu]."
                                   "logRecords must be an array",
                                   ri, si);
        }
    }
    return AGG_OK;
}

int ing_otlp_decode_json(struct ing_json *j, const char *body, size_t len, struct agg_err *err)
{
    size_t index = 0;
    uint32_t rls;
    int rc;

    rc = ing_json_tree_build(j, body, len, err);
    if (rc != AGG_OK)
        return rc;
    rls = ing_json_member(j, 0, "resourceLogs", "resource_logs");
    rc = otlp_check(j, rls, err);
    if (rc != AGG_OK || nabsent(j, rls))
        return rc;
    for (uint32_t rl = j->nodes[rls].first; rl != 0; rl = j->nodes[rl].next) {
        uint32_t sls = ing_json_member(j, rl, "scopeLogs", "scope_logs");

        j->ctx_why[0] = '\0';
        build_resource(j, ing_json_member(j, rl, "resource", NULL));
        if (nabsent(j, sls))
            continue;
        for (uint32_t sl = j->nodes[sls].first; sl != 0; sl = j->nodes[sl].next) {
            uint32_t lrs = ing_json_member(j, sl, "logRecords", "log_records");
            char saved[sizeof(j->ctx_why)];

            memcpy(saved, j->ctx_why, sizeof(saved));
            build_scope(j, ing_json_member(j, sl, "scope", NULL));
            if (j->oom)
                return ing_json_stop_error(AGG_ENOMEM, err);
            if (!nabsent(j, lrs)) {
                for (uint32_t lr = j->nodes[lrs].first; lr != 0; lr = j->nodes[lr].next) {
                    rc = otlp_event(j, lr, index++);
                    if (rc != AGG_OK)
                        return ing_json_stop_error(rc, err);
                }
            }
            memcpy(j->ctx_why, saved, sizeof(saved));
        }
    }
    return AGG_OK;
}
