/*
 * ingest/json.c — NDJSON, JSON document and OTLP/HTTP JSON decoding with yajl's
 *                 streaming parser.
 *
 * Place: see ingest/json.h; the mapping is docs/json-mapping.md.
 * Threads: one decoder per thread; no shared state.
 * Ownership: the decoder owns three yajl generators, its scratch buffers and one
 *            line parser; a document gets parsers of its own, from the same memory.
 * Traps: yajl 2.1 does not check its allocations (it writes through NULL). So all
 *        its memory comes from a pool (core/json.h) that is filled *before* each
 *        parse, sized from the input length; ING_JSON_MAX_DEPTH keeps yajl's state
 *        stack within a small block, and the pool never fails inside yajl.
 *        ing_json_check() tells whether that sizing ever fell short. Making a yajl
 *        parser costs about as much as parsing a 200-byte line, so NDJSON and TCP
 *        lines share one parser that accepts several values
 *        (yajl_allow_multiple_values): each line is fed with the CR/LF after it, so
 *        no token stays half-read, and the parser is replaced only after a bad line,
 *        when it may be mid-value.
 *        Strings from yajl point into the input, or into its decode buffer, which
 *        the next escaped string overwrites: keep those only as copies.
 *        A document is scanned once before decoding so that a syntax error late in
 *        the body cannot follow events already handed to the sink.
 *        OTLP objects may list their members in any order (scopeLogs before
 *        resource, value before key), so an OTLP document is first built into a
 *        flat node array (one reusable buffer) and then walked.
 *        yajl_gen_number() prints its text verbatim: it is how pre-built JSON
 *        (the resource and scope objects) is spliced into extra_data.
 *        A column's own key beats its aliases in any key order, so alias values are
 *        held (stable copies) until the event ends and only then set or sent to
 *        extra_data; error objects (err, error) stream into extra_data as they come
 *        and the members that filled a column are cut out of its finished text.
 *        yajl 2.1 mis-decodes unpaired surrogate escapes; surrogates_fix() rewrites
 *        them as \ufffd (same length) in a copy of the input before parsing.
 * Not here: HTTP status mapping, decompression, COPY encoding (store/copy.c).
 */
#include "ingest/json.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/json.h"

#define MAX_EVENT_BYTES_LIMIT ((size_t)1 << 30)

/* ---- decoder state ------------------------------------------------------------- */

enum tok { T_NULL = 0, T_FALSE, T_TRUE, T_NUMBER, T_STRING, T_MAP, T_ARRAY };

enum vkind { V_NONE = 0, V_FIELD, V_EXTRA, V_PENDING };

enum pmode { P_LINE = 0, P_DOC, P_SCAN, P_TREE };

/* Keys that are not column names (docs/json-mapping.md, "Aliases"). An alias's value
 * is held until the event ends: a column given by its own name wins over its
 * aliases whatever the order, and the first alias of this table (per column) over
 * the others; every value that fills no column goes to extra_data. */
#define KF_ALIAS  1 /* a string (or number, unless KF_SOFT) held for its column */
#define KF_SOFT   2 /* a value that does not fit goes to extra_data, never rejects */
#define KF_ERROBJ 4 /* an object value is an error object */
static const struct {
    const char *name;
    unsigned char flags;
} json_aliases[] = {
    {"msg", KF_ALIAS},
    {"timestamp", KF_ALIAS},
    {"time", KF_ALIAS},
    {"@timestamp", KF_ALIAS},
    {"severity", KF_ALIAS},
    {"levelname", KF_ALIAS | KF_SOFT},
    {"name", KF_ALIAS | KF_SOFT},
    {"logger", KF_ALIAS | KF_SOFT},
    {"stack", KF_ALIAS | KF_SOFT},
    {"exc_info", KF_ALIAS | KF_SOFT},
    {"err", KF_ERROBJ},
    {"error", KF_ERROBJ},
    {"exception", KF_ALIAS | KF_SOFT | KF_ERROBJ},
};
#define N_ALIASES (sizeof(json_aliases) / sizeof(json_aliases[0]))
_Static_assert(N_ALIASES <= 32 && AGG_F_COUNT <= 32, "the event's bit masks are 32 bits");

/* Members of an error object that fill a column, in order of preference. */
enum errm { EM_TYPE = 0, EM_NAME, EM_MESSAGE, EM_STACK, EM_STACK_TRACE, EM_TRACEBACK, EM_COUNT };
#define N_ERROBJ 3 /* err, error, exception: in this order of preference */

struct held {
    enum tok t;
    const char *s; /* stable: in the input or in j->strs */
    size_t n;
    bool in_extra; /* a wrong type, streamed to extra_data already */
};

/* An error object in j->extra: its member's range, and the string members that
 * may fill a column (a used one is cut out of extra_data when the event ends). */
struct errobj {
    size_t start, end;
    unsigned set, used; /* bit per enum errm */
    struct {
        size_t start, end;
        const char *s;
        size_t n;
    } m[EM_COUNT];
};

struct event {
    size_t index;
    bool bad;
    bool too_large; /* why[] says it is over max_event_bytes */
    bool extra_open;
    bool done; /* line mode: complete, emitted once the parse has succeeded */
    enum vkind vk;
    int field;
    const struct keyname *pending; /* V_PENDING: the alias whose value decides */
    uint32_t explicit_set;         /* bit per field set under its own name */
    uint32_t held_mask;            /* bit per json_aliases entry held */
    struct held held[N_ALIASES];
    unsigned err_mask; /* bit per error object seen */
    int err_cur;       /* the error object being read, or -1 */
    int err_member;    /* its member whose value comes next, or -1 */
    size_t err_member_start;
    struct errobj errs[N_ERROBJ];
    char why[256];
    struct agg_record rec;
};

/* One value of an OTLP document. Strings are offsets into the input, or into <strs>
 * when flagged (yajl had to decode them). Links are node indexes; 0, the root, is
 * never a child, so 0 means none. */
struct jnode {
    uint32_t key_off, key_len, val_off, val_len;
    uint32_t first, next;
    unsigned char type;
    unsigned char flags;
};
#define NF_KEY_STRS 1
#define NF_VAL_STRS 2

struct gen_out {
    struct ing_json *j;
    struct agg_buf *buf;
};

/* JSON keys that name a column, chained by length. */
#define KEY_LEN_MAX 24
struct keyname {
    const char *name;
    size_t len;
    int field;            /* -1: an error object key only */
    unsigned char flags;  /* KF_*; 0 for a column name */
    unsigned char slot;   /* the json_aliases entry */
    unsigned char errslot; /* KF_ERROBJ: the error object, in order of preference */
    struct keyname *next;
};

struct ing_json {
    size_t max_event_bytes;
    size_t big_keep; /* big pool blocks up to this size stay between calls */
    struct agg_json_pool pool;
    yajl_alloc_funcs afs;
    yajl_gen gx; /* extra_data */
    yajl_gen gr; /* raw re-serialization */
    yajl_gen gb; /* OTLP: message from a non-string body; resource and scope */
    struct gen_out ox, orw, ob;
    yajl_gen_status gen_status; /* first generator error of an OTLP composition */
    struct agg_buf extra, raw, body, tmp, strs, res, scope;
    struct agg_buf fix; /* the input with its unpaired surrogate escapes replaced */
    struct keyname keys[AGG_F_COUNT + N_ALIASES];
    size_t n_keys;
    struct keyname *keys_by_len[KEY_LEN_MAX];

    /* the NDJSON / TCP line parser, kept between lines and calls while it is between
     * values (yajl_allow_multiple_values); replaced after a bad line */
    yajl_handle lh;
    const char *line_raw; /* the line as received (j->in may be its repaired copy) */
    size_t line_end;      /* where the line's object ended */
    bool line_extra; /* a second value started on the line */

    /* the call in progress */
    enum pmode mode;
    const char *in;
    size_t in_len;
    const struct agg_sink *sink;
    struct ing_json_stats *stats;
    struct ing_json_stats line_stats;
    bool oom;
    int status; /* an error that stops the call: from emit, or AGG_ENOMEM */
    int depth;
    int elem_level; /* depth of events: 0, or 1 inside a top-level array */
    bool in_elem, elem_is_event, raw_lost;
    size_t next_index;
    struct event ev;

    /* scan */
    bool scan_otlp, scan_deep;
    int scan_top;

    /* OTLP tree */
    struct jnode *nodes;
    size_t n_nodes, cap_nodes;
    uint32_t tstack[ING_JSON_MAX_DEPTH + 1], tlast[ING_JSON_MAX_DEPTH + 1];
    uint32_t tkey_off, tkey_len;
    bool tkey_strs;
    const char *scope_name;
    size_t scope_name_len;
    char ctx_why[128];
};

static bool keep_going(const struct ing_json *j)
{
    return !j->oom && j->status == AGG_OK && !(j->mode == P_LINE && j->ev.bad);
}

static void gen_print(void *ctx, const char *s, size_t n)
{
    struct gen_out *o = ctx;
    struct agg_buf *b = o->buf;

    if (b->cap - b->len > n) { /* the common case, inline */
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
    } else if (agg_buf_append(b, s, n) != AGG_OK) {
        o->j->oom = true;
    }
}

static void set_bad(struct ing_json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Marks the current event bad; the first reason wins. */
static void set_bad(struct ing_json *j, const char *fmt, ...)
{
    va_list ap;

    if (j->ev.bad)
        return;
    j->ev.bad = true;
    va_start(ap, fmt);
    vsnprintf(j->ev.why, sizeof(j->ev.why), fmt, ap);
    va_end(ap);
}

/* Marks the current event bad for being over max_event_bytes (counted apart). */
static void set_too_large(struct ing_json *j)
{
    if (!j->ev.bad)
        j->ev.too_large = true;
    set_bad(j, "event larger than %zu bytes", j->max_event_bytes);
}

static bool in_input(const struct ing_json *j, const char *s, size_t n)
{
    uintptr_t a = (uintptr_t)s, lo = (uintptr_t)j->in;

    return a >= lo && a - lo <= j->in_len && n <= j->in_len - (a - lo);
}

static void ev_reset(struct ing_json *j, size_t index)
{
    struct event *ev = &j->ev;

    ev->index = index;
    ev->bad = false;
    ev->too_large = false;
    ev->extra_open = false;
    ev->done = false;
    ev->vk = V_NONE;
    ev->pending = NULL;
    ev->explicit_set = 0;
    ev->held_mask = 0;
    ev->err_mask = 0;
    ev->err_cur = -1;
    ev->err_member = -1;
    ev->why[0] = '\0';
    agg_record_init(&ev->rec);
}

static void do_reject(struct ing_json *j, size_t index, const char *why, const char *raw,
                      size_t rawlen)
{
    if (raw == NULL)
        raw = "";
    if (rawlen > j->max_event_bytes)
        rawlen = j->max_event_bytes;
    if (j->sink->reject != NULL)
        j->sink->reject(j->sink->arg, index, why, raw, rawlen);
    j->stats->rejected++;
    if (why == j->ev.why && j->ev.too_large)
        j->stats->oversized++;
}

static int do_emit(struct ing_json *j, const struct agg_record *rec)
{
    int rc = j->sink->emit(j->sink->arg, rec);

    if (rc == AGG_OK)
        j->stats->accepted++;
    return rc;
}

/* ---- generators ------------------------------------------------------------------ */

/* A string into <g>; <clean>: made valid UTF-8 without NUL first (extra_data goes to
 * jsonb, which refuses \u0000). */
static yajl_gen_status gen_str(struct ing_json *j, yajl_gen g, const char *s, size_t n, bool clean)
{
    if (clean && !agg_utf8_is_clean(s, n)) {
        agg_buf_reset(&j->tmp);
        if (agg_utf8_repair(&j->tmp, s, n) != AGG_OK) {
            j->oom = true;
            return yajl_gen_status_ok;
        }
        s = j->tmp.data;
        n = j->tmp.len;
    }
    return yajl_gen_string(g, (const unsigned char *)s, n);
}

/* A number literal into <g>; <clean>: one jsonb cannot hold is kept as a string. */
static yajl_gen_status gen_num(struct ing_json *j, yajl_gen g, const char *s, size_t n, bool clean)
{
    if (clean && !agg_jsonb_number_ok(s, n))
        return gen_str(j, g, s, n, false);
    return yajl_gen_number(g, s, n);
}

static yajl_gen_status gen_tok(struct ing_json *j, yajl_gen g, enum tok t, const char *s, size_t n,
                               bool clean)
{
    switch (t) {
    case T_NULL:
        return yajl_gen_null(g);
    case T_FALSE:
    case T_TRUE:
        return yajl_gen_bool(g, t == T_TRUE);
    case T_NUMBER:
        return gen_num(j, g, s, n, clean);
    case T_STRING:
        return gen_str(j, g, s, n, clean);
    case T_MAP:
        return yajl_gen_map_open(g);
    default:
        return yajl_gen_array_open(g);
    }
}

/* Points gb's output at <b>, empty. */
static void gb_target(struct ing_json *j, struct agg_buf *b)
{
    yajl_gen_reset(j->gb, NULL);
    j->ob.buf = b;
    agg_buf_reset(b);
}

/* ---- plain JSON events (NDJSON lines, documents) ------------------------------ */

static const struct keyname *key_find(const struct ing_json *j, const char *s, size_t n)
{
    if (n >= KEY_LEN_MAX)
        return NULL;
    for (const struct keyname *k = j->keys_by_len[n]; k != NULL; k = k->next) {
        if (k->name[0] == s[0] && memcmp(k->name, s, n) == 0)
            return k;
    }
    return NULL;
}

static const char *tok_name(enum tok t)
{
    static const char *const names[] = {"null",     "a boolean", "a boolean", "a number",
                                        "a string", "an object", "an array"};

    return names[t];
}

static const char *field_wants(int f)
{
    if (f < AGG_F_STR_COUNT)
        return "a string";
    if (f == AGG_F_LEVEL)
        return "a level name or a syslog severity";
    if (f == AGG_F_CREATED_AT)
        return "a timestamp string or an epoch number";
    return "a number";
}

static bool in_strs(const struct ing_json *j, const char *s, size_t n)
{
    uintptr_t a = (uintptr_t)s, lo = (uintptr_t)j->strs.data;

    return lo != 0 && a >= lo && a - lo <= j->strs.len && n <= j->strs.len - (a - lo);
}

/* <s>[<n>] from yajl where it stays put until the event ends: in place when it is in
 * the input (or was copied already), else copied (yajl's decode buffer is reused by
 * the next escaped string) into <strs>, whose capacity was made to hold a whole
 * event, so the copies never move. NULL, the event bad, if it would not fit. */
static const char *stable(struct ing_json *j, const char *s, size_t n)
{
    char *p;

    if (n == 0)
        return "";
    if (in_input(j, s, n) || in_strs(j, s, n))
        return s;
    if (j->strs.cap - j->strs.len <= n) {
        /* cannot happen: the raw size check comes first */
        set_too_large(j);
        return NULL;
    }
    p = j->strs.data + j->strs.len;
    memcpy(p, s, n);
    j->strs.len += n;
    return p;
}

static void text_set(struct ing_json *j, int f, const char *s, size_t n)
{
    s = stable(j, s, n);
    if (s != NULL)
        j->ev.rec.str[f] = (struct agg_str){s, n};
}

static void field_clear(struct ing_json *j, int f)
{
    struct agg_record *rec = &j->ev.rec;

    switch (f) {
    case AGG_F_LINE_NUMBER:
        rec->has_line_number = false;
        break;
    case AGG_F_USER_ID:
        rec->has_user_id = false;
        rec->user_id_orig = (struct agg_str){NULL, 0};
        break;
    case AGG_F_DURATION_MS:
        rec->has_duration_ms = false;
        break;
    case AGG_F_MEMORY_USAGE_MB:
        rec->has_memory_usage_mb = false;
        break;
    case AGG_F_LEVEL:
        rec->level = AGG_LEVEL_INFO;
        rec->has_level = false;
        break;
    case AGG_F_CREATED_AT:
        rec->created_us = AGG_TIME_NONE;
        break;
    default:
        rec->str[f] = (struct agg_str){NULL, 0};
        break;
    }
}

/* pino/bunyan numeric levels: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal. */
static bool bunyan_level(const char *s, size_t n, enum agg_level *out)
{
    static const enum agg_level levels[] = {AGG_LEVEL_DEBUG,   AGG_LEVEL_DEBUG, AGG_LEVEL_INFO,
                                            AGG_LEVEL_WARNING, AGG_LEVEL_ERROR, AGG_LEVEL_CRITICAL};

    if (n != 2 || s[1] != '0' || s[0] < '1' || s[0] > '6')
        return false;
    *out = levels[s[0] - '1'];
    return true;
}

/* Sets column <f> from scalar <t>. False, the reason in <e>, when it does not fit. */
static bool field_set(struct ing_json *j, int f, enum tok t, const char *s, size_t n,
                      struct agg_err *e)
{
    struct agg_record *rec = &j->ev.rec;

    switch (t) {
    case T_NULL:
        field_clear(j, f);
        return true;
    case T_STRING:
    case T_NUMBER:
        if (f < AGG_F_STR_COUNT) {
            text_set(j, f, s, n); /* a number in a text column: its literal */
            return true;
        }
        if (t == T_NUMBER && f == AGG_F_LEVEL && bunyan_level(s, n, &rec->level)) {
            rec->has_level = true;
            return true;
        }
        /* a user_id that is not an INTEGER is kept as it came, for extra_data */
        if (f == AGG_F_USER_ID && (s = stable(j, s, n)) == NULL)
            return true; /* the event is bad already */
        return (t == T_STRING ? agg_record_set_text(rec, f, s, n, e)
                              : agg_record_set_number(rec, f, s, n, e)) == AGG_OK;
    case T_TRUE:
    case T_FALSE:
        if (f == AGG_F_USER_ID) {
            agg_record_keep_user_id(rec, t == T_TRUE ? "true" : "false", t == T_TRUE ? 4 : 5,
                                    false);
            return true;
        }
        break;
    default:
        break;
    }
    agg_err_set(e, AGG_EINVAL, "%s must be %s, not %s", agg_field_name(f), field_wants(f),
                tok_name(t));
    return false;
}

static void extra_put(struct ing_json *j, enum tok t, const char *s, size_t n)
{
    if (gen_tok(j, j->gx, t, s, n, true) != yajl_gen_status_ok)
        set_bad(j, "could not re-encode the value for extra_data");
}

/* Member name <k>[<n>] into extra_data, opened if need be; *<start> (unless NULL):
 * where the member begins (at the comma before it, if any). */
static void extra_key(struct ing_json *j, const char *k, size_t n, size_t *start)
{
    struct event *ev = &j->ev;

    if (!ev->extra_open) {
        ev->extra_open = true;
        if (yajl_gen_map_open(j->gx) != yajl_gen_status_ok)
            set_bad(j, "could not re-encode extra_data");
    }
    if (start != NULL)
        *start = j->extra.len;
    extra_put(j, T_STRING, k, n);
}

/* The value of a column's own key. */
static void field_value(struct ing_json *j, enum tok t, const char *s, size_t n)
{
    struct event *ev = &j->ev;
    int f = ev->field;
    struct agg_err e; /* written only on failure */

    if (f == AGG_F_USER_ID && t >= T_MAP) {
        /* an application's user id of any shape is kept, as extra_data.user_id */
        field_clear(j, f);
        extra_key(j, "user_id", 7, NULL);
        ev->vk = V_EXTRA;
        extra_put(j, t, s, n);
        return;
    }
    if (!field_set(j, f, t, s, n, &e)) {
        set_bad(j, "%s", e.msg);
        return;
    }
    if (t == T_NULL)
        ev->explicit_set &= ~(UINT32_C(1) << f);
    else
        ev->explicit_set |= UINT32_C(1) << f;
}

/* ---- error objects: pino/bunyan err, ECS error, an exception object -------------- */

static const char *const errm_names[EM_COUNT] = {
    [EM_TYPE] = "type",   [EM_NAME] = "name",          [EM_MESSAGE] = "message",
    [EM_STACK] = "stack", [EM_STACK_TRACE] = "stack_trace", [EM_TRACEBACK] = "traceback",
};

static int errm_find(const char *s, size_t n)
{
    for (int m = 0; m < EM_COUNT; m++) {
        if (strlen(errm_names[m]) == n && memcmp(errm_names[m], s, n) == 0)
            return m;
    }
    return -1;
}

/* Top-level key <k> opens an error object: it goes to extra_data as it is, its
 * members noted as they pass. The last object under one key counts (as in jsonb). */
static void errobj_begin(struct ing_json *j, const struct keyname *k)
{
    struct event *ev = &j->ev;
    struct errobj *o = &ev->errs[k->errslot];

    if (k->flags & KF_ALIAS)
        ev->held_mask &= ~(UINT32_C(1) << k->slot); /* the key's last value counts */
    extra_key(j, k->name, k->len, &o->start);
    o->end = o->start;
    o->set = o->used = 0;
    ev->err_mask |= 1u << k->errslot;
    ev->err_cur = k->errslot;
    ev->err_member = -1;
    ev->vk = V_EXTRA;
    extra_put(j, T_MAP, NULL, 0);
}

/* A value directly inside the error object being read. */
static void errobj_value(struct ing_json *j, enum tok t, const char *s, size_t n)
{
    struct event *ev = &j->ev;
    struct errobj *o = &ev->errs[ev->err_cur];
    int m = ev->err_member;

    ev->err_member = -1;
    if (m < 0 || t != T_STRING) {
        extra_put(j, t, s, n);
        return;
    }
    s = stable(j, s, n);
    if (s == NULL)
        return;
    o->m[m].start = ev->err_member_start;
    o->m[m].s = s;
    o->m[m].n = n;
    extra_put(j, t, s, n);
    o->m[m].end = j->extra.len;
    o->set |= 1u << m;
}

/* Columns still empty after the event's own keys and aliases, from the error
 * objects (err, then error, then exception; within one, in enum errm order). */
static void errobjs_fill(struct ing_json *j)
{
    static const struct {
        int field;
        enum errm first, last;
    } fills[] = {
        {AGG_F_EXCEPTION_TYPE, EM_TYPE, EM_NAME},
        {AGG_F_EXCEPTION_MESSAGE, EM_MESSAGE, EM_MESSAGE},
        {AGG_F_STACK_TRACE, EM_STACK, EM_TRACEBACK},
    };
    struct event *ev = &j->ev;

    for (size_t i = 0; i < sizeof(fills) / sizeof(fills[0]); i++) {
        struct agg_str *col = &ev->rec.str[fills[i].field];

        for (int k = 0; k < N_ERROBJ && col->p == NULL; k++) {
            struct errobj *o = &ev->errs[k];

            if (!(ev->err_mask & (1u << k)))
                continue;
            for (int m = fills[i].first; m <= (int)fills[i].last && col->p == NULL; m++) {
                if (o->set & (1u << m)) {
                    *col = (struct agg_str){o->m[m].s, o->m[m].n};
                    o->used |= 1u << m;
                }
            }
        }
    }
}

/* Removes from the compact JSON object text in <b> the member that spans [<a>,<e>)
 * (<a> may be at the comma before it) with one comma next to it: the bytes removed. */
static size_t cut_member(struct agg_buf *b, size_t a, size_t e)
{
    if (b->data[a] == ',')
        a++;
    if (b->data[a - 1] == ',')
        a--;
    else if (e < b->len && b->data[e] == ',')
        e++;
    memmove(b->data + a, b->data + e, b->len - e + 1); /* with the NUL */
    b->len -= e - a;
    return e - a;
}

/* Cuts the error object members that filled a column out of the finished
 * extra_data text, and an object left empty; from the end of the text backwards,
 * so that the offsets still to use stay right. */
static void errobjs_cut(struct ing_json *j)
{
    struct event *ev = &j->ev;
    unsigned objs = 0;

    for (int k = 0; k < N_ERROBJ; k++) {
        if ((ev->err_mask & (1u << k)) && ev->errs[k].used != 0)
            objs |= 1u << k;
    }
    while (objs != 0) {
        struct errobj *o = NULL;
        size_t removed = 0;
        int pick = -1;

        for (int k = 0; k < N_ERROBJ; k++) {
            if ((objs & (1u << k)) && (o == NULL || ev->errs[k].start > o->start)) {
                o = &ev->errs[k];
                pick = k;
            }
        }
        objs &= ~(1u << pick);
        while (o->used != 0) {
            int last = -1;

            for (int m = 0; m < EM_COUNT; m++) {
                if ((o->used & (1u << m)) && (last < 0 || o->m[m].start > o->m[last].start))
                    last = m;
            }
            o->used &= ~(1u << last);
            removed += cut_member(&j->extra, o->m[last].start, o->m[last].end);
        }
        if (memcmp(j->extra.data + o->end - removed - 2, "{}", 2) == 0)
            cut_member(&j->extra, o->start, o->end - removed);
    }
}

/* ---- aliases --------------------------------------------------------------------- */

/* The value of an alias or error-object key (V_PENDING): held, an error object, or
 * to extra_data. */
static void pending_value(struct ing_json *j, enum tok t, const char *s, size_t n)
{
    struct event *ev = &j->ev;
    const struct keyname *k = ev->pending;
    uint32_t bit = UINT32_C(1) << k->slot;

    if ((k->flags & KF_ERROBJ) && t == T_MAP) {
        errobj_begin(j, k);
        return;
    }
    if (k->flags & KF_ERROBJ)
        ev->err_mask &= ~(1u << k->errslot); /* the key's last value is no object */
    if (k->flags & KF_ALIAS) {
        struct held *h = &ev->held[k->slot];

        ev->held_mask &= ~bit;
        if (t == T_NULL)
            return;
        if (t == T_STRING || (t == T_NUMBER && !(k->flags & KF_SOFT))) {
            s = stable(j, s, n);
            if (s == NULL)
                return;
            *h = (struct held){t, s, n, false};
            ev->held_mask |= bit;
            return;
        }
        if (!(k->flags & KF_SOFT)) {
            /* a wrong type: rejects the event if it is the value the column gets */
            *h = (struct held){t, NULL, 0, true};
            ev->held_mask |= bit;
        }
    }
    extra_key(j, k->name, k->len, NULL);
    ev->vk = V_EXTRA;
    extra_put(j, t, s, n);
}

/* Fills the columns from the held alias values, unless given under their own name:
 * the first alias of json_aliases wins; the others go to extra_data. */
static void aliases_resolve(struct ing_json *j)
{
    struct event *ev = &j->ev;
    uint32_t filled = ev->explicit_set;
    struct agg_err e;

    for (size_t i = 0; i < N_ALIASES; i++) {
        const struct keyname *k = &j->keys[AGG_F_COUNT + i];
        const struct held *h = &ev->held[i];
        uint32_t fbit;

        if (!(ev->held_mask & (UINT32_C(1) << i)))
            continue;
        fbit = UINT32_C(1) << k->field;
        if (!(filled & fbit)) {
            if (h->in_extra) {
                set_bad(j, "%s must be %s, not %s", agg_field_name(k->field),
                        field_wants(k->field), tok_name(h->t));
                return;
            }
            if (field_set(j, k->field, h->t, h->s, h->n, &e)) {
                filled |= fbit;
                continue;
            }
            if (!(k->flags & KF_SOFT)) {
                set_bad(j, "%s", e.msg);
                return;
            }
        }
        if (!h->in_extra) {
            extra_key(j, k->name, k->len, NULL);
            extra_put(j, h->t, h->s, h->n);
        }
    }
}

static void raw_check(struct ing_json *j, yajl_gen_status st)
{
    if (st == yajl_gen_status_ok && j->raw.len <= j->max_event_bytes)
        return;
    j->raw_lost = true;
    if (!j->elem_is_event)
        return;
    if (st != yajl_gen_status_ok)
        set_bad(j, "event nested deeper than %d levels", ING_JSON_MAX_EVENT_DEPTH);
    else
        set_too_large(j);
}

static void elem_begin(struct ing_json *j, enum tok t)
{
    j->in_elem = true;
    j->elem_is_event = t == T_MAP;
    ev_reset(j, j->next_index++);
    if (j->mode == P_DOC) {
        yajl_gen_reset(j->gr, NULL);
        agg_buf_reset(&j->raw);
        j->raw_lost = false;
    }
    if (j->elem_is_event) {
        yajl_gen_reset(j->gx, NULL);
        agg_buf_reset(&j->extra);
        agg_buf_reset(&j->strs);
    }
}

static void event_finish(struct ing_json *j)
{
    struct event *ev = &j->ev;
    struct agg_record *rec = &ev->rec;
    const char *raw = j->mode == P_LINE ? j->line_raw : j->raw.data;
    size_t rawlen = j->mode == P_LINE ? j->in_len : j->raw.len;
    int rc;

    if (!ev->bad && ev->held_mask != 0)
        aliases_resolve(j);
    if (!ev->bad && ev->err_mask != 0)
        errobjs_fill(j);
    if (!ev->bad && ev->extra_open && yajl_gen_map_close(j->gx) != yajl_gen_status_ok)
        set_bad(j, "could not re-encode extra_data");
    if (j->oom)
        return;
    if (ev->bad) {
        do_reject(j, ev->index, ev->why, raw, rawlen);
        return;
    }
    if (ev->err_mask != 0)
        errobjs_cut(j);
    agg_record_derive_exception(rec);
    if (rec->str[AGG_F_MESSAGE].p == NULL)
        rec->str[AGG_F_MESSAGE] = (struct agg_str){"", 0}; /* NOT NULL column */
    if (ev->extra_open && j->extra.len > 2) /* "{}": every member filled a column */
        rec->extra = (struct agg_str){j->extra.data, j->extra.len};
    rec->raw = (struct agg_str){raw, rawlen};
    rc = do_emit(j, rec);
    if (rc != AGG_OK)
        j->status = rc;
}

static void elem_end(struct ing_json *j)
{
    j->in_elem = false;
    if (!j->elem_is_event) {
        do_reject(j, j->ev.index, "event is not a JSON object", j->raw.data, j->raw.len);
        return;
    }
    if (j->mode == P_LINE) {
        j->ev.done = true; /* emitted once the parser has seen the whole line */
        j->line_end = yajl_get_bytes_consumed(j->lh);
    } else
        event_finish(j);
}

/* A value inside the event (not the event's own object), at depth <d>. */
static void event_value(struct ing_json *j, int d, enum tok t, const char *s, size_t n)
{
    struct event *ev = &j->ev;

    if (d == j->elem_level + 1) {
        if (ev->vk == V_FIELD)
            field_value(j, t, s, n);
        else if (ev->vk == V_PENDING)
            pending_value(j, t, s, n);
        else if (ev->vk == V_EXTRA)
            extra_put(j, t, s, n);
        if (t < T_MAP)
            ev->vk = V_NONE;
    } else if (ev->vk == V_EXTRA) {
        if (ev->err_cur >= 0 && d == j->elem_level + 2)
            errobj_value(j, t, s, n);
        else
            extra_put(j, t, s, n);
    }
}

static int s_value(void *ctx, enum tok t, const char *s, size_t n)
{
    struct ing_json *j = ctx;
    int d = j->depth;

    if (!j->in_elem) {
        if (j->mode == P_LINE && j->ev.done) {
            j->line_extra = true; /* a second value on the line */
            return 0;
        }
        if (j->mode == P_DOC && d == 0 && t == T_ARRAY) {
            j->elem_level = 1; /* a top-level array: its elements are the events */
            j->depth = 1;
            return 1;
        }
        elem_begin(j, t);
        if (j->mode == P_LINE && t != T_MAP) {
            set_bad(j, "event is not a JSON object");
            return 0;
        }
    }
    if (j->mode == P_DOC && !j->raw_lost)
        raw_check(j, gen_tok(j, j->gr, t, s, n, false));
    if (j->elem_is_event && d > j->elem_level && !j->ev.bad)
        event_value(j, d, t, s, n);
    if (t >= T_MAP) {
        if (j->elem_is_event && d + 1 - j->elem_level > ING_JSON_MAX_EVENT_DEPTH)
            set_bad(j, "event nested deeper than %d levels", ING_JSON_MAX_EVENT_DEPTH);
        if (d + 1 >= ING_JSON_MAX_DEPTH) {
            /* only reachable in a line: documents were scanned */
            set_bad(j, "nested deeper than %d levels", ING_JSON_MAX_DEPTH);
            return 0;
        }
        j->depth = d + 1;
    } else if (d == j->elem_level) {
        elem_end(j);
    }
    return keep_going(j);
}

static int s_key(void *ctx, const unsigned char *key, size_t n)
{
    struct ing_json *j = ctx;
    struct event *ev = &j->ev;
    const char *s = (const char *)key;

    if (j->mode == P_DOC && !j->raw_lost)
        raw_check(j, yajl_gen_string(j->gr, key, n));
    if (j->elem_is_event && !ev->bad) {
        if (j->depth == j->elem_level + 1) {
            const struct keyname *k = key_find(j, s, n);

            if (k == NULL) {
                ev->vk = V_EXTRA;
                extra_key(j, s, n, NULL);
            } else if (k->flags == 0) {
                ev->vk = V_FIELD;
                ev->field = k->field;
            } else {
                ev->vk = V_PENDING;
                ev->pending = k;
            }
        } else if (ev->vk == V_EXTRA) {
            if (ev->err_cur >= 0 && j->depth == j->elem_level + 2) {
                ev->err_member = errm_find(s, n);
                ev->err_member_start = j->extra.len;
            }
            extra_put(j, T_STRING, s, n);
        }
    }
    return keep_going(j);
}

static int s_close(void *ctx, enum tok t)
{
    struct ing_json *j = ctx;
    struct event *ev = &j->ev;
    int d = --j->depth;

    if (!j->in_elem)
        return keep_going(j); /* the top-level array */
    if (j->mode == P_DOC && !j->raw_lost)
        raw_check(j, t == T_MAP ? yajl_gen_map_close(j->gr) : yajl_gen_array_close(j->gr));
    if (j->elem_is_event && !ev->bad && d > j->elem_level) {
        if (ev->vk == V_EXTRA && (t == T_MAP ? yajl_gen_map_close(j->gx)
                                             : yajl_gen_array_close(j->gx)) != yajl_gen_status_ok)
            set_bad(j, "could not re-encode extra_data");
        if (d == j->elem_level + 1) {
            ev->vk = V_NONE;
            if (ev->err_cur >= 0) {
                ev->errs[ev->err_cur].end = j->extra.len;
                ev->err_cur = -1;
            }
        }
    }
    if (d == j->elem_level)
        elem_end(j);
    return keep_going(j);
}

static int s_null(void *ctx)
{
    return s_value(ctx, T_NULL, NULL, 0);
}

static int s_bool(void *ctx, int b)
{
    return s_value(ctx, b ? T_TRUE : T_FALSE, NULL, 0);
}

static int s_number(void *ctx, const char *s, size_t n)
{
    return s_value(ctx, T_NUMBER, s, n);
}

static int s_string(void *ctx, const unsigned char *s, size_t n)
{
    return s_value(ctx, T_STRING, (const char *)s, n);
}

static int s_start_map(void *ctx)
{
    return s_value(ctx, T_MAP, NULL, 0);
}

static int s_start_array(void *ctx)
{
    return s_value(ctx, T_ARRAY, NULL, 0);
}

static int s_end_map(void *ctx)
{
    return s_close(ctx, T_MAP);
}

static int s_end_array(void *ctx)
{
    return s_close(ctx, T_ARRAY);
}

static const yajl_callbacks stream_cbs = {
    .yajl_null = s_null,
    .yajl_boolean = s_bool,
    .yajl_number = s_number,
    .yajl_string = s_string,
    .yajl_start_map = s_start_map,
    .yajl_map_key = s_key,
    .yajl_end_map = s_end_map,
    .yajl_start_array = s_start_array,
    .yajl_end_array = s_end_array,
};

/* ---- the document scan ------------------------------------------------------------ */

static int c_open(struct ing_json *j, int type)
{
    if (j->depth == 0)
        j->scan_top = type;
    if (++j->depth >= ING_JSON_MAX_DEPTH) {
        j->scan_deep = true;
        return 0;
    }
    return 1;
}

static int c_start_map(void *ctx)
{
    return c_open(ctx, T_MAP);
}

static int c_start_array(void *ctx)
{
    return c_open(ctx, T_ARRAY);
}

static int c_close(void *ctx)
{
    ((struct ing_json *)ctx)->depth--;
    return 1;
}

static int c_key(void *ctx, const unsigned char *s, size_t n)
{
    struct ing_json *j = ctx;

    if (j->depth == 1 && j->scan_top == T_MAP &&
        ((n == 12 && memcmp(s, "resourceLogs", 12) == 0) ||
         (n == 13 && memcmp(s, "resource_logs", 13) == 0)))
        j->scan_otlp = true;
    return 1;
}

static const yajl_callbacks scan_cbs = {
    .yajl_start_map = c_start_map,
    .yajl_map_key = c_key,
    .yajl_end_map = c_close,
    .yajl_start_array = c_start_array,
    .yajl_end_array = c_close,
};

/* yajl's message for the error in <h>, without its trailing newline, into <out>. */
static void yajl_message(yajl_handle h, char *out, size_t size)
{
    unsigned char *msg = yajl_get_error(h, 0, NULL, 0);
    size_t n;

    snprintf(out, size, "%s", msg != NULL ? (const char *)msg : "parse error");
    if (msg != NULL)
        yajl_free_error(h, msg);
    n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ' || out[n - 1] == '.'))
        out[--n] = '\0';
}

/* Parses <in>[<len>] with <cbs>: the parse status; *<offset> where it stopped. */
static yajl_status run_parser(struct ing_json *j, const yajl_callbacks *cbs, const char *in,
                              size_t len, size_t *offset, char *msg, size_t msg_size)
{
    yajl_handle h = yajl_alloc(cbs, &j->afs, j);
    yajl_status st;

    if (h == NULL) { /* only with bad arguments: the pool does not fail */
        snprintf(msg, msg_size, "could not start the JSON parser");
        return yajl_status_error;
    }
    st = yajl_parse(h, (const unsigned char *)in, len);
    *offset = yajl_get_bytes_consumed(h);
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
        *offset = len;
    }
    if (st == yajl_status_error && msg != NULL)
        yajl_message(h, msg, msg_size);
    yajl_free(h);
    return st;
}

static void call_begin(struct ing_json *j, enum pmode mode, const char *in, size_t len,
                       const struct agg_sink *sink, struct ing_json_stats *stats)
{
    j->mode = mode;
    j->in = in;
    j->in_len = len;
    j->sink = sink;
    j->stats = stats != NULL ? stats : &j->line_stats;
    j->stats->accepted = 0;
    j->stats->rejected = 0;
    j->stats->oversized = 0;
    j->oom = false;
    j->status = AGG_OK;
    j->depth = 0;
    j->elem_level = 0;
    j->in_elem = false;
    j->elem_is_event = false;
    j->raw_lost = false;
    j->next_index = 0;
    j->ev.bad = false;
    j->ev.too_large = false;
}

/* ---- unpaired surrogates ------------------------------------------------------------ */

/* The code unit of the \uXXXX escape at <p>, or -1 when there is none before <end>. */
static long u_escape(const char *p, const char *end)
{
    long v = 0;

    if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
        return -1;
    for (int i = 2; i < 6; i++) {
        char c = p[i];

        if (c >= '0' && c <= '9')
            v = v * 16 + (c - '0');
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            v = v * 16 + ((c | 0x20) - 'a' + 10);
        else
            return -1;
    }
    return v;
}

/* yajl 2.1 joins a high surrogate escape with whatever \u escape follows it
 * ("\ud800\u0041" became U+10041, the A lost), turns one followed by anything else
 * into '?', and passes a lone low surrogate through as invalid UTF-8. So each
 * unpaired surrogate escape of <in>[<len>] is rewritten as \ufffd, in a copy made
 * (into j->fix) only when there is one; same length, so offsets do not move. Only
 * backslashes are looked at: the common input costs one memchr. The input to parse,
 * or NULL when out of memory. */
static const char *surrogates_fix(struct ing_json *j, const char *in, size_t len)
{
    const char *p = in, *end = in + len;
    char *w = NULL;

    while (p < end && (p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
        long u = u_escape(p, end), lo;

        if (u < 0xD800 || u > 0xDFFF) {
            p += 2; /* past the escaped character, which may be a backslash */
            continue;
        }
        lo = u <= 0xDBFF ? u_escape(p + 6, end) : -1;
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            p += 12; /* a pair, which yajl decodes right */
            continue;
        }
        if (w == NULL) {
            agg_buf_reset(&j->fix);
            if (agg_buf_append(&j->fix, in, len) != AGG_OK)
                return NULL;
            w = j->fix.data;
        }
        memcpy(w + (p - in) + 2, "fffd", 4);
        p += 6;
    }
    return w != NULL ? w : in;
}

/* ---- lines ------------------------------------------------------------------------ */

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    }
    return true;
}

/* Room in <strs> for the copied strings of one whole event (see text_set). */
static int strs_ready(struct ing_json *j)
{
    agg_buf_reset(&j->strs);
    return agg_buf_reserve(&j->strs, j->max_event_bytes + 1);
}

static void line_parser_drop(struct ing_json *j)
{
    if (j->lh != NULL) {
        yajl_free(j->lh);
        j->lh = NULL;
    }
}

/* Decodes one non-blank line <line>[<n>] (without its line end) as event <index>;
 * <term>: the input goes on with the line's CR/LF, so the parser may read <n> + 1
 * bytes. AGG_OK emitted, AGG_EINVAL rejected (the reason in j->ev.why), or the error
 * that stops the call. */
static int line_decode(struct ing_json *j, const char *line, size_t n, bool term, size_t index)
{
    yajl_status st;
    size_t offset = 0;
    char msg[160];
    const char *in;

    j->mode = P_LINE;
    j->in = line;
    j->line_raw = line;
    j->in_len = n;
    j->depth = 0;
    j->elem_level = 0;
    j->in_elem = false;
    j->elem_is_event = false;
    j->next_index = index;
    j->line_extra = false;
    ev_reset(j, index);
    if (n > j->max_event_bytes) {
        set_too_large(j);
        do_reject(j, index, j->ev.why, line, n);
        return AGG_EINVAL;
    }
    if (strs_ready(j) != AGG_OK)
        return AGG_ENOMEM;
    in = surrogates_fix(j, line, n + (term ? 1 : 0));
    if (in == NULL)
        return AGG_ENOMEM;
    j->in = in;
    if (j->lh == NULL) {
        if (agg_json_pool_reserve(&j->pool, j->big_keep) != AGG_OK)
            return AGG_ENOMEM;
        j->lh = yajl_alloc(&stream_cbs, &j->afs, j);
        if (j->lh == NULL)
            return AGG_ENOMEM;
        yajl_config(j->lh, yajl_allow_multiple_values, 1);
    }
    /* Whitespace after the line ends its last token, so nothing is left half-read
     * for the next line. */
    st = yajl_parse(j->lh, (const unsigned char *)in, n + (term ? 1 : 0));
    offset = yajl_get_bytes_consumed(j->lh);
    if (st == yajl_status_ok && !term)
        st = yajl_parse(j->lh, (const unsigned char *)" ", 1);
    if (j->oom) {
        line_parser_drop(j);
        return AGG_ENOMEM;
    }
    if (st == yajl_status_ok && j->ev.done && !j->ev.bad && !j->line_extra &&
        is_blank(in + j->line_end, n - j->line_end)) {
        event_finish(j); /* the parser is between values: it stays */
        if (j->oom)
            return AGG_ENOMEM;
        return j->status;
    }
    if (!j->ev.bad) {
        if (st == yajl_status_error)
            yajl_message(j->lh, msg, sizeof(msg));
        else if (j->ev.done)
            snprintf(msg, sizeof(msg), "trailing garbage");
        else
            snprintf(msg, sizeof(msg), "premature end of line");
        if (st != yajl_status_error)
            offset = j->ev.done ? j->line_end : n;
        set_bad(j, "invalid JSON at byte %zu: %s", offset > n ? n : offset, msg);
    }
    line_parser_drop(j); /* mid-value or in error: start afresh */
    do_reject(j, index, j->ev.why, line, n);
    return AGG_EINVAL;
}

static int stop_error(int rc, struct agg_err *err)
{
    if (rc == AGG_ENOMEM)
        return agg_err_set(err, rc, "out of memory");
    if (rc == AGG_EFULL)
        return agg_err_set(err, rc, "the sink is full");
    return agg_err_set(err, rc, "the sink refused an event: %s", agg_err_name(rc));
}

int ing_json_decode_ndjson(struct ing_json *j, const char *body, size_t len,
                           const struct agg_sink *sink, struct ing_json_stats *stats,
                           struct agg_err *err)
{
    const char *p = body, *end = body + len;
    size_t index = 0;

    call_begin(j, P_LINE, body, len, sink, stats);
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl != NULL ? nl : end) - p);

        while (n > 0 && p[n - 1] == '\r')
            n--;
        if (!is_blank(p, n)) {
            int rc = line_decode(j, p, n, nl != NULL, index++);

            if (rc != AGG_OK && rc != AGG_EINVAL)
                return stop_error(rc, err);
        }
        p = nl != NULL ? nl + 1 : end;
    }
    return AGG_OK;
}

int ing_json_decode_line(struct ing_json *j, const char *line, size_t len, size_t index,
                         const struct agg_sink *sink, struct agg_err *err)
{
    size_t n = len;
    int rc;

    call_begin(j, P_LINE, line, len, sink, NULL);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (is_blank(line, n))
        return AGG_OK;
    rc = line_decode(j, line, n, n < len, index);
    if (rc == AGG_EINVAL)
        return agg_err_set(err, rc, "%s", j->ev.why);
    if (rc != AGG_OK)
        return stop_error(rc, err);
    return AGG_OK;
}

/* ---- OTLP: the node tree ------------------------------------------------------- */

static int nodes_grow(struct ing_json *j)
{
    size_t cap = j->cap_nodes ? j->cap_nodes * 2 : 256;
    struct jnode *p;

    if (cap > UINT32_MAX)
        return AGG_ENOMEM;
    p = agg_realloc(j->nodes, cap * sizeof(*p));
    if (p == NULL)
        return AGG_ENOMEM;
    j->nodes = p;
    j->cap_nodes = cap;
    return AGG_OK;
}

/* Where string <s>[<n>] lives, as an offset; copied into <strs> unless it is in the
 * input. False when out of memory. */
static bool t_ref(struct ing_json *j, const char *s, size_t n, uint32_t *off, bool *in_strs)
{
    if (in_input(j, s, n)) {
        *off = (uint32_t)(s - j->in);
        *in_strs = false;
        return true;
    }
    if (j->strs.len > UINT32_MAX - n)
        return false;
    *off = (uint32_t)j->strs.len;
    *in_strs = true;
    return agg_buf_append(&j->strs, s, n) == AGG_OK;
}

static int t_value(void *ctx, enum tok t, const char *s, size_t n)
{
    struct ing_json *j = ctx;
    int d = j->depth;
    uint32_t idx;
    struct jnode *nd;
    bool strs = false;

    if (d >= ING_JSON_MAX_DEPTH || (j->n_nodes == j->cap_nodes && nodes_grow(j) != AGG_OK)) {
        j->oom = true;
        return 0;
    }
    idx = (uint32_t)j->n_nodes++;
    nd = &j->nodes[idx];
    memset(nd, 0, sizeof(*nd));
    nd->type = (unsigned char)t;
    if (t == T_STRING || t == T_NUMBER) {
        if (!t_ref(j, s, n, &nd->val_off, &strs)) {
            j->oom = true;
            return 0;
        }
        nd->val_len = (uint32_t)n;
        nd->flags |= strs ? NF_VAL_STRS : 0;
    }
    if (d > 0) {
        uint32_t parent = j->tstack[d - 1];

        if (j->nodes[parent].type == T_MAP) {
            nd->key_off = j->tkey_off;
            nd->key_len = j->tkey_len;
            nd->flags |= j->tkey_strs ? NF_KEY_STRS : 0;
        }
        if (j->tlast[d - 1] == 0)
            j->nodes[parent].first = idx;
        else
            j->nodes[j->tlast[d - 1]].next = idx;
        j->tlast[d - 1] = idx;
    }
    if (t >= T_MAP) {
        j->tstack[d] = idx;
        j->tlast[d] = 0;
        j->depth = d + 1;
    }
    return 1;
}

static int t_key(void *ctx, const unsigned char *s, size_t n)
{
    struct ing_json *j = ctx;

    if (!t_ref(j, (const char *)s, n, &j->tkey_off, &j->tkey_strs)) {
        j->oom = true;
        return 0;
    }
    j->tkey_len = (uint32_t)n;
    return 1;
}

static int t_close(void *ctx)
{
    ((struct ing_json *)ctx)->depth--;
    return 1;
}

static int t_null(void *ctx)
{
    return t_value(ctx, T_NULL, NULL, 0);
}

static int t_bool(void *ctx, int b)
{
    return t_value(ctx, b ? T_TRUE : T_FALSE, NULL, 0);
}

static int t_number(void *ctx, const char *s, size_t n)
{
    return t_value(ctx, T_NUMBER, s, n);
}

static int t_string(void *ctx, const unsigned char *s, size_t n)
{
    return t_value(ctx, T_STRING, (const char *)s, n);
}

static int t_start_map(void *ctx)
{
    return t_value(ctx, T_MAP, NULL, 0);
}

static int t_start_array(void *ctx)
{
    return t_value(ctx, T_ARRAY, NULL, 0);
}

static const yajl_callbacks tree_cbs = {
    .yajl_null = t_null,
    .yajl_boolean = t_bool,
    .yajl_number = t_number,
    .yajl_string = t_string,
    .yajl_start_map = t_start_map,
    .yajl_map_key = t_key,
    .yajl_end_map = t_close,
    .yajl_start_array = t_start_array,
    .yajl_end_array = t_close,
};

static int ntype(const struct ing_json *j, uint32_t v)
{
    return v == 0 ? -1 : j->nodes[v].type;
}

static bool nabsent(const struct ing_json *j, uint32_t v)
{
    return v == 0 || j->nodes[v].type == T_NULL;
}

static const char *nval(const struct ing_json *j, uint32_t v, size_t *n)
{
    const struct jnode *nd = &j->nodes[v];

    *n = nd->val_len;
    return (nd->flags & NF_VAL_STRS ? j->strs.data : j->in) + nd->val_off;
}

static const char *nkey(const struct ing_json *j, uint32_t v, size_t *n)
{
    const struct jnode *nd = &j->nodes[v];

    *n = nd->key_len;
    return (nd->flags & NF_KEY_STRS ? j->strs.data : j->in) + nd->key_off;
}

static bool key_is(const struct ing_json *j, uint32_t c, const char *k)
{
    size_t n, kn;
    const char *s;

    if (k == NULL)
        return false;
    s = nkey(j, c, &n);
    kn = strlen(k);
    return n == kn && memcmp(s, k, n) == 0;
}

/* The last member of object <map> named <camel> or <snake> (proto3 JSON accepts
 * both), or 0. */
static uint32_t member(const struct ing_json *j, uint32_t map, const char *camel, const char *snake)
{
    uint32_t found = 0;

    if (j->nodes[map].type != T_MAP)
        return 0;
    for (uint32_t c = j->nodes[map].first; c != 0; c = j->nodes[c].next) {
        if (key_is(j, c, camel) || key_is(j, c, snake))
            found = c;
    }
    return found;
}

static void gst(struct ing_json *j, yajl_gen_status st)
{
    if (st != yajl_gen_status_ok && j->gen_status == yajl_gen_status_ok)
        j->gen_status = st;
}

/* Node <v> as JSON into <g>, verbatim (<clean>: strings and numbers made jsonb-safe). */
static void tree_emit(struct ing_json *j, yajl_gen g, uint32_t v, bool clean)
{
    const struct jnode *nd = &j->nodes[v];
    const char *s;
    size_t n;

    if (j->gen_status != yajl_gen_status_ok || j->oom)
        return;
    switch (nd->type) {
    case T_STRING:
    case T_NUMBER:
        s = nval(j, v, &n);
        gst(j, gen_tok(j, g, nd->type, s, n, clean));
        return;
    case T_MAP:
    case T_ARRAY:
        gst(j, gen_tok(j, g, nd->type, NULL, 0, clean));
        for (uint32_t c = nd->first; c != 0; c = j->nodes[c].next) {
            if (nd->type == T_MAP) {
                s = nkey(j, c, &n);
                gst(j, gen_str(j, g, s, n, clean));
            }
            tree_emit(j, g, c, clean);
        }
        gst(j, nd->type == T_MAP ? yajl_gen_map_close(g) : yajl_gen_array_close(g));
        return;
    default:
        gst(j, gen_tok(j, g, nd->type, NULL, 0, clean));
        return;
    }
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
            gst(j, is_int_literal(s, n) ? yajl_gen_number(g, s, n) : gen_str(j, g, s, n, true));
            return;
        }
        break;
    case AK_ARRAY:
        gst(j, yajl_gen_array_open(g));
        p = member(j, p, "values", NULL);
        if (ntype(j, p) == T_ARRAY) {
            for (uint32_t c = j->nodes[p].first; c != 0; c = j->nodes[c].next)
                any_emit(j, g, c);
        }
        gst(j, yajl_gen_array_close(g));
        return;
    case AK_KVLIST:
        gst(j, yajl_gen_map_open(g));
        kvlist_members(j, g, member(j, p, "values", NULL));
        gst(j, yajl_gen_map_close(g));
        return;
    default:
        break;
    }
    tree_emit(j, g, p, true);
}

/* The members of KeyValue array <arr> as "key": value pairs of an open object. */
static void kvlist_members(struct ing_json *j, yajl_gen g, uint32_t arr)
{
    if (ntype(j, arr) != T_ARRAY)
        return;
    for (uint32_t kv = j->nodes[arr].first; kv != 0; kv = j->nodes[kv].next) {
        uint32_t k = member(j, kv, "key", NULL), v = member(j, kv, "value", NULL);
        const char *s;
        size_t n;

        if (ntype(j, k) != T_STRING)
            continue; /* not a KeyValue */
        s = nval(j, k, &n);
        gst(j, gen_str(j, g, s, n, true));
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
    uint32_t attrs = res != 0 ? member(j, res, "attributes", NULL) : 0;

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
        name = member(j, scope, "name", NULL);
        version = member(j, scope, "version", NULL);
        attrs = member(j, scope, "attributes", NULL);
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
        gst(j, gen_str(j, j->gb, s, n, true));
    }
    if (version != 0) {
        gst(j, yajl_gen_string(j->gb, (const unsigned char *)"version", 7));
        s = nval(j, version, &n);
        gst(j, gen_str(j, j->gb, s, n, true));
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

/* Fills the column named by attribute <key> from AnyValue <v> when it fits; an
 * attribute never rejects an event (it stays in extra_data either way). */
static void attr_column(struct ing_json *j, uint32_t key, uint32_t v)
{
    struct agg_record *rec = &j->ev.rec;
    enum anykind kind;
    const char *s;
    size_t n;
    int f;
    uint32_t p;

    s = nval(j, key, &n);
    f = attr_field(s, n);
    if (f < 0 || v == 0)
        return;
    p = any_value(j, v, &kind);
    if (p == 0 || (ntype(j, p) != T_STRING && ntype(j, p) != T_NUMBER))
        return;
    if (kind != AK_STRING && kind != AK_INT && kind != AK_DOUBLE && kind != AK_NONE)
        return;
    s = nval(j, p, &n);
    if (f < AGG_F_STR_COUNT)
        rec->str[f] = (struct agg_str){s, n};
    else if (ntype(j, p) == T_NUMBER || (kind == AK_INT && is_int_literal(s, n)))
        (void)agg_record_set_number(rec, f, s, n, NULL); /* an int64 sent as a string too */
    else
        (void)agg_record_set_text(rec, f, s, n, NULL);
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
        set_bad(j, "%s: \"%.*s\" is not a count of nanoseconds", name, (int)(n > 40 ? 40 : n), s);
        return false;
    }
    set_bad(j, "%s must be a string or a number, not %s", name, tok_name(j->nodes[v].type));
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

/* A level from OTLP severityText: a level name, with an OTel digit suffix allowed. */
static bool severity_text_level(const char *s, size_t n, enum agg_level *out)
{
    if (agg_level_parse(s, n, out))
        return true;
    return n > 1 && s[n - 1] >= '1' && s[n - 1] <= '4' && agg_level_parse(s, n - 1, out);
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
        set_bad(j, "%s must be a string, not %s", name, tok_name(j->nodes[v].type));
        return NULL;
    }
    return nval(j, v, n);
}

static void gen_key(struct ing_json *j, yajl_gen g, const char *k)
{
    gst(j, yajl_gen_string(g, (const unsigned char *)k, strlen(k)));
}

/* Fills j->ev.rec from logRecord <lr> (an object). */
static void otlp_fill(struct ing_json *j, uint32_t lr)
{
    struct agg_record *rec = &j->ev.rec;
    uint32_t m[LR_COUNT] = {0};
    uint64_t t_ns, o_ns;
    const char *trace, *span, *evname, *stext = NULL;
    size_t trace_n, span_n, evname_n, stext_n = 0;
    bool stext_used = false;
    int sevnum = 0;
    yajl_gen gx = j->gx;

    for (uint32_t c = j->nodes[lr].first; c != 0; c = j->nodes[c].next) {
        enum lr_key k = lr_key_of(j, c);

        if (k != LR_OTHER)
            m[k] = c;
    }
    if (!nabsent(j, m[LR_ATTRS]) && ntype(j, m[LR_ATTRS]) != T_ARRAY) {
        set_bad(j, "attributes must be an array, not %s", tok_name(j->nodes[m[LR_ATTRS]].type));
        return;
    }
    /* columns from attributes first, so that the record's own fields win */
    if (has_members(j, m[LR_ATTRS])) {
        for (uint32_t kv = j->nodes[m[LR_ATTRS]].first; kv != 0; kv = j->nodes[kv].next) {
            uint32_t k = member(j, kv, "key", NULL);

            if (ntype(j, k) == T_STRING)
                attr_column(j, k, member(j, kv, "value", NULL));
        }
    }
    if (rec->str[AGG_F_LOGGER_NAME].p == NULL && j->scope_name != NULL)
        rec->str[AGG_F_LOGGER_NAME] = (struct agg_str){j->scope_name, j->scope_name_len};
    agg_record_derive_exception(rec); /* exception.stacktrace without exception.type */

    if (!otlp_nanos(j, m[LR_TIME], "timeUnixNano", &t_ns) ||
        !otlp_nanos(j, m[LR_OBSERVED], "observedTimeUnixNano", &o_ns))
        return;
    if (t_ns == 0)
        t_ns = o_ns;
    if (t_ns != 0)
        rec->created_us = (int64_t)(t_ns / 1000);

    if (!nabsent(j, m[LR_SEVNUM])) {
        const char *s;
        size_t n;
        double v;
        char buf[32];

        s = nval(j, m[LR_SEVNUM], &n);
        if (ntype(j, m[LR_SEVNUM]) == T_STRING) {
            sevnum = severity_from_name(s, n);
        } else if (ntype(j, m[LR_SEVNUM]) == T_NUMBER && n < sizeof(buf)) {
            memcpy(buf, s, n);
            buf[n] = '\0';
            v = strtod(buf, NULL);
            /* out of 1-24 is SEVERITY_NUMBER_UNSPECIFIED */
            sevnum = v != floor(v) ? -1 : v >= 1 && v <= 24 ? (int)v : 0;
        } else {
            sevnum = -1;
        }
        if (sevnum < 0) {
            set_bad(j, "severityNumber: not an OTLP severity number");
            return;
        }
    }
    stext = otlp_string(j, m[LR_SEVTEXT], "severityText", &stext_n);
    if (sevnum >= 1) {
        rec->level = agg_level_from_otlp(sevnum);
        rec->has_level = true;
        stext_used = stext != NULL && severity_text_level(stext, stext_n, &(enum agg_level){0});
    } else if (stext != NULL && severity_text_level(stext, stext_n, &rec->level)) {
        rec->has_level = true;
        stext_used = true;
    }

    if (!nabsent(j, m[LR_BODY])) {
        enum anykind kind;
        uint32_t p = any_value(j, m[LR_BODY], &kind);

        if (p != 0 && ntype(j, p) == T_STRING &&
            (kind == AK_STRING || kind == AK_BYTES || kind == AK_NONE)) {
            const char *s;
            size_t n;

            s = nval(j, p, &n);
            rec->str[AGG_F_MESSAGE] = (struct agg_str){s, n};
        } else if (p != 0) {
            gb_target(j, &j->body);
            j->gen_status = yajl_gen_status_ok;
            any_emit(j, j->gb, m[LR_BODY]);
            if (j->gen_status != yajl_gen_status_ok) {
                set_bad(j, "body nested too deep");
                return;
            }
            rec->str[AGG_F_MESSAGE] = (struct agg_str){j->body.data, j->body.len};
        }
    }
    if (rec->str[AGG_F_MESSAGE].p == NULL)
        rec->str[AGG_F_MESSAGE] = (struct agg_str){"", 0};

    trace = otlp_string(j, m[LR_TRACE], "traceId", &trace_n);
    span = otlp_string(j, m[LR_SPAN], "spanId", &span_n);
    evname = otlp_string(j, m[LR_EVNAME], "eventName", &evname_n);
    if (j->ev.bad)
        return;
    if (trace != NULL && trace_n > 0)
        rec->str[AGG_F_CORRELATION_ID] = (struct agg_str){trace, trace_n};
    if (!nabsent(j, m[LR_FLAGS]) && ntype(j, m[LR_FLAGS]) != T_NUMBER &&
        ntype(j, m[LR_FLAGS]) != T_STRING) {
        set_bad(j, "flags must be a number, not %s", tok_name(j->nodes[m[LR_FLAGS]].type));
        return;
    }

    /* extra_data */
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
    if (span != NULL && span_n > 0) {
        gen_key(j, gx, "span_id");
        gst(j, gen_str(j, gx, span, span_n, true));
    }
    if (!nabsent(j, m[LR_FLAGS])) {
        size_t n;
        const char *s = nval(j, m[LR_FLAGS], &n);

        if (!(n == 1 && s[0] == '0')) {
            gen_key(j, gx, "flags");
            tree_emit(j, gx, m[LR_FLAGS], true);
        }
    }
    if (evname != NULL && evname_n > 0) {
        gen_key(j, gx, "event_name");
        gst(j, gen_str(j, gx, evname, evname_n, true));
    }
    if (stext != NULL && stext_n > 0 && !stext_used) {
        gen_key(j, gx, "severity_text");
        gst(j, gen_str(j, gx, stext, stext_n, true));
    }
    for (uint32_t c = j->nodes[lr].first; c != 0; c = j->nodes[c].next) {
        const char *s;
        size_t n;

        if (lr_key_of(j, c) != LR_OTHER)
            continue;
        s = nkey(j, c, &n);
        gst(j, gen_str(j, gx, s, n, true));
        tree_emit(j, gx, c, true);
    }
    gst(j, yajl_gen_map_close(gx));
    if (j->gen_status != yajl_gen_status_ok) {
        set_bad(j, "attributes nested too deep");
        return;
    }
    if (j->extra.len > 2)
        rec->extra = (struct agg_str){j->extra.data, j->extra.len};
}

static int otlp_event(struct ing_json *j, uint32_t lr, size_t index)
{
    struct event *ev = &j->ev;
    int rc;

    ev_reset(j, index);
    yajl_gen_reset(j->gr, NULL);
    agg_buf_reset(&j->raw);
    j->gen_status = yajl_gen_status_ok;
    tree_emit(j, j->gr, lr, false);
    if (j->oom)
        return AGG_ENOMEM;
    if (j->nodes[lr].type != T_MAP)
        set_bad(j, "logRecord is not a JSON object");
    else if (j->gen_status != yajl_gen_status_ok)
        set_bad(j, "event nested deeper than %d levels", ING_JSON_MAX_EVENT_DEPTH);
    else if (j->raw.len > j->max_event_bytes)
        set_too_large(j);
    else if (j->ctx_why[0] != '\0')
        set_bad(j, "%s", j->ctx_why);
    if (!ev->bad)
        otlp_fill(j, lr);
    if (j->oom)
        return AGG_ENOMEM;
    if (ev->bad) {
        do_reject(j, index, ev->why, j->raw.data, j->raw.len);
        return AGG_OK;
    }
    ev->rec.raw = (struct agg_str){j->raw.data, j->raw.len};
    rc = do_emit(j, &ev->rec);
    return rc;
}

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
        res = member(j, rl, "resource", NULL);
        if (!nabsent(j, res) && ntype(j, res) != T_MAP)
            return agg_err_set(err, AGG_EINVAL,
                               "not an OTLP logs document: resourceLogs[%zu].resource must be an "
                               "object",
                               ri);
        sls = member(j, rl, "scopeLogs", "scope_logs");
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
            scope = member(j, sl, "scope", NULL);
            lrs = member(j, sl, "logRecords", "log_records");
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

static int otlp_decode(struct ing_json *j, const char *body, size_t len, struct agg_err *err)
{
    yajl_status st;
    size_t offset = 0, index = 0;
    uint32_t rls;
    int rc;

    j->mode = P_TREE;
    j->depth = 0;
    j->n_nodes = 0;
    agg_buf_reset(&j->strs);
    st = run_parser(j, &tree_cbs, body, len, &offset, NULL, 0);
    if (j->oom || j->n_nodes == 0)
        return stop_error(AGG_ENOMEM, err);
    if (st != yajl_status_ok) /* the scan passed: cannot happen */
        return agg_err_set(err, AGG_EINVAL, "body is not JSON at byte %zu", offset);
    rls = member(j, 0, "resourceLogs", "resource_logs");
    rc = otlp_check(j, rls, err);
    if (rc != AGG_OK || nabsent(j, rls))
        return rc;
    for (uint32_t rl = j->nodes[rls].first; rl != 0; rl = j->nodes[rl].next) {
        uint32_t sls = member(j, rl, "scopeLogs", "scope_logs");

        j->ctx_why[0] = '\0';
        build_resource(j, member(j, rl, "resource", NULL));
        if (nabsent(j, sls))
            continue;
        for (uint32_t sl = j->nodes[sls].first; sl != 0; sl = j->nodes[sl].next) {
            uint32_t lrs = member(j, sl, "logRecords", "log_records");
            char saved[sizeof(j->ctx_why)];

            memcpy(saved, j->ctx_why, sizeof(saved));
            build_scope(j, member(j, sl, "scope", NULL));
            if (j->oom)
                return stop_error(AGG_ENOMEM, err);
            if (!nabsent(j, lrs)) {
                for (uint32_t lr = j->nodes[lrs].first; lr != 0; lr = j->nodes[lr].next) {
                    rc = otlp_event(j, lr, index++);
                    if (rc != AGG_OK)
                        return stop_error(rc, err);
                }
            }
            memcpy(j->ctx_why, saved, sizeof(saved));
        }
    }
    return AGG_OK;
}

/* ---- documents ------------------------------------------------------------------ */

int ing_json_decode_document(struct ing_json *j, const char *body, size_t len,
                             const struct agg_sink *sink, struct ing_json_stats *stats,
                             struct agg_err *err)
{
    yajl_status st;
    size_t offset = 0;
    char msg[160];
    int rc;

    call_begin(j, P_SCAN, body, len, sink, stats);
    line_parser_drop(j); /* its memory is what the document's parsers need */
    if (len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0) {
        body += 3;
        len -= 3;
        j->in = body;
        j->in_len = len;
    }
    if (len > UINT32_MAX - 1)
        return agg_err_set(err, AGG_EINVAL, "body larger than 4 GiB");
    body = surrogates_fix(j, body, len);
    if (body == NULL) {
        rc = stop_error(AGG_ENOMEM, err);
        goto out;
    }
    j->in = body;
    if (agg_json_pool_reserve(&j->pool,
                              len * 2 + 4096 > j->big_keep ? len * 2 + 4096 : j->big_keep) !=
        AGG_OK)
        return stop_error(AGG_ENOMEM, err);

    /* the scan: syntax, depth, and what kind of document this is */
    j->scan_otlp = false;
    j->scan_deep = false;
    j->scan_top = -1;
    msg[0] = '\0';
    st = run_parser(j, &scan_cbs, body, len, &offset, msg, sizeof(msg));
    j->depth = 0;
    if (st != yajl_status_ok) {
        if (j->scan_deep)
            rc = agg_err_set(err, AGG_EINVAL, "body nested deeper than %d levels at byte %zu",
                             ING_JSON_MAX_DEPTH, offset);
        else if (is_blank(body, len))
            rc = agg_err_set(err, AGG_EINVAL, "body is empty");
        else
            rc = agg_err_set(err, AGG_EINVAL, "body is not JSON: %s at byte %zu",
                             msg[0] != '\0' ? msg : "parse error", offset);
        goto out;
    }

    if (j->scan_otlp) {
        rc = otlp_decode(j, body, len, err);
        goto out;
    }
    j->mode = P_DOC;
    if (strs_ready(j) != AGG_OK) {
        rc = stop_error(AGG_ENOMEM, err);
        goto out;
    }
    st = run_parser(j, &stream_cbs, body, len, &offset, NULL, 0);
    if (j->oom)
        rc = stop_error(AGG_ENOMEM, err);
    else if (j->status != AGG_OK)
        rc = stop_error(j->status, err);
    else if (st != yajl_status_ok) /* the scan passed: cannot happen */
        rc = agg_err_set(err, AGG_EINVAL, "body is not JSON at byte %zu", offset);
    else
        rc = AGG_OK;

out:
    /* what a big body needed is not kept */
    agg_json_pool_trim(&j->pool, j->big_keep);
    if (j->cap_nodes * sizeof(struct jnode) > j->big_keep) {
        free(j->nodes);
        j->nodes = NULL;
        j->cap_nodes = 0;
    }
    if (j->strs.cap > j->big_keep)
        agg_buf_clear(&j->strs);
    if (j->fix.cap > j->big_keep)
        agg_buf_clear(&j->fix);
    return rc;
}

/* ---- life cycle ------------------------------------------------------------------ */

static yajl_gen gen_new(struct ing_json *j, struct gen_out *o, struct agg_buf *b)
{
    yajl_gen g = yajl_gen_alloc(&j->afs);

    if (g == NULL)
        return NULL;
    o->j = j;
    o->buf = b;
    yajl_gen_config(g, yajl_gen_print_callback, gen_print, o);
    return g;
}

struct ing_json *ing_json_new(size_t max_event_bytes, struct agg_err *err)
{
    struct ing_json *j;
    unsigned char errslot = 0;

    if (max_event_bytes == 0 || max_event_bytes > MAX_EVENT_BYTES_LIMIT) {
        agg_err_set(err, AGG_EINVAL, "event size limit %zu is out of range (1 to %zu)",
                    max_event_bytes, MAX_EVENT_BYTES_LIMIT);
        return NULL;
    }
    j = agg_calloc(1, sizeof(*j));
    if (j == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    j->max_event_bytes = max_event_bytes;
    j->big_keep = 2 * max_event_bytes + 4096;
    j->afs = agg_json_pool_funcs(&j->pool);
    agg_buf_init(&j->extra);
    agg_buf_init(&j->raw);
    agg_buf_init(&j->body);
    agg_buf_init(&j->tmp);
    agg_buf_init(&j->strs);
    agg_buf_init(&j->res);
    agg_buf_init(&j->scope);
    agg_buf_init(&j->fix);
    for (int f = 0; f < AGG_F_COUNT; f++) {
        const char *name = agg_field_name(f);

        j->keys[j->n_keys++] = (struct keyname){name, strlen(name), f, 0, 0, 0, NULL};
    }
    for (size_t i = 0; i < N_ALIASES; i++) {
        const char *name = json_aliases[i].name;
        size_t n = strlen(name);
        unsigned char flags = json_aliases[i].flags;

        j->keys[j->n_keys++] = (struct keyname){
            name, n, agg_field_by_json_key(name, n), flags, (unsigned char)i,
            (unsigned char)(flags & KF_ERROBJ ? errslot++ : 0), NULL};
    }
    for (size_t i = 0; i < j->n_keys; i++) {
        struct keyname *k = &j->keys[i];

        if (k->len > 0 && k->len < KEY_LEN_MAX) {
            k->next = j->keys_by_len[k->len];
            j->keys_by_len[k->len] = k;
        }
    }
    assert(errslot == N_ERROBJ);
    if (agg_json_pool_reserve(&j->pool, j->big_keep) != AGG_OK)
        goto fail;
    /* the generators come out of the reserve, which cannot fail */
    j->gx = gen_new(j, &j->ox, &j->extra);
    j->gr = gen_new(j, &j->orw, &j->raw);
    j->gb = gen_new(j, &j->ob, &j->body);
    if (j->gx == NULL || j->gr == NULL || j->gb == NULL)
        goto fail;
    return j;

fail:
    agg_err_set(err, AGG_ENOMEM, "out of memory");
    ing_json_free(j);
    return NULL;
}

void ing_json_free(struct ing_json *j)
{
    if (j == NULL)
        return;
    line_parser_drop(j);
    if (j->gx != NULL)
        yajl_gen_free(j->gx);
    if (j->gr != NULL)
        yajl_gen_free(j->gr);
    if (j->gb != NULL)
        yajl_gen_free(j->gb);
    agg_json_pool_trim(&j->pool, 0);
    agg_buf_clear(&j->extra);
    agg_buf_clear(&j->raw);
    agg_buf_clear(&j->body);
    agg_buf_clear(&j->tmp);
    agg_buf_clear(&j->strs);
    agg_buf_clear(&j->res);
    agg_buf_clear(&j->scope);
    agg_buf_clear(&j->fix);
    free(j->nodes);
    free(j);
}

bool ing_json_check(const struct ing_json *j)
{
    size_t gens = (j->gx != NULL) + (j->gr != NULL) + (j->gb != NULL);

    if (j->pool.misses != 0)
        return false;
    /* an idle line parser holds at most its handle, lexer, stack and two buffers
     * (struct and data each) */
    if (j->lh != NULL)
        return j->pool.lent > gens && j->pool.lent <= gens + 7;
    return j->pool.lent == gens;
}

/* ---- one object over a base record (JSON in a syslog MSG) ------------------------ */

struct over {
    const struct agg_record *base;
    struct agg_buf *extra;
    const struct agg_sink *sink;
    bool rejected;
    char why[256];
};

/* <o>->base's extra_data object merged after the event's own <ev>: "{ev members,
 * base members}", into <o>->extra. */
static int over_extra(struct over *o, struct agg_str ev, struct agg_str *out)
{
    struct agg_str b = o->base->extra;
    bool b_empty = b.p == NULL || b.len < 2 || (b.len == 2 && b.p[0] == '{');

    if (ev.p == NULL || b_empty) {
        *out = ev.p != NULL ? ev : b;
        return AGG_OK;
    }
    /* both are objects written by yajl: "{...}" */
    agg_buf_reset(o->extra);
    if (agg_buf_append(o->extra, ev.p, ev.len - 1) != AGG_OK ||
        agg_buf_putc(o->extra, ',') != AGG_OK ||
        agg_buf_append(o->extra, b.p + 1, b.len - 1) != AGG_OK)
        return AGG_ENOMEM;
    *out = (struct agg_str){o->extra->data, o->extra->len};
    return AGG_OK;
}

/* An integer column the event left unset takes the base's value. */
static void keep_int(bool *has, int32_t *v, bool base_has, int32_t base_v)
{
    if (!*has && base_has) {
        *has = true;
        *v = base_v;
    }
}

static int over_emit(void *arg, const struct agg_record *rec)
{
    struct over *o = arg;
    const struct agg_record *b = o->base;
    struct agg_record r = *rec;

    for (int f = 0; f < AGG_F_STR_COUNT; f++) {
        if (f != AGG_F_MESSAGE && r.str[f].p == NULL)
            r.str[f] = b->str[f];
    }
    keep_int(&r.has_line_number, &r.line_number, b->has_line_number, b->line_number);
    keep_int(&r.has_user_id, &r.user_id, b->has_user_id, b->user_id);
    keep_int(&r.has_duration_ms, &r.duration_ms, b->has_duration_ms, b->duration_ms);
    if (!r.has_memory_usage_mb && b->has_memory_usage_mb) {
        r.has_memory_usage_mb = true;
        r.memory_usage_mb = b->memory_usage_mb;
    }
    if (!r.has_level) {
        r.has_level = b->has_level;
        r.level = b->level;
    }
    if (r.created_us == AGG_TIME_NONE)
        r.created_us = b->created_us;
    if (over_extra(o, rec->extra, &r.extra) != AGG_OK)
        return AGG_ENOMEM;
    r.raw = b->raw;
    return o->sink->emit(o->sink->arg, &r);
}

static void over_reject(void *arg, size_t index, const char *why, const char *raw, size_t rawlen)
{
    struct over *o = arg;

    (void)index;
    (void)raw;
    (void)rawlen;
    o->rejected = true;
    snprintf(o->why, sizeof(o->why), "%s", why);
}

int ing_json_decode_over(struct ing_json *j, const char *obj, size_t len,
                         const struct agg_record *base, struct agg_buf *extra_out,
                         const struct agg_sink *sink, struct agg_err *err)
{
    struct over o = {base, extra_out, sink, false, ""};
    const struct agg_sink inner = {over_emit, over_reject, &o};
    int rc;

    call_begin(j, P_LINE, obj, len, &inner, NULL);
    if (is_blank(obj, len))
        return agg_err_set(err, AGG_EINVAL, "no JSON object");
    rc = line_decode(j, obj, len, false, 0);
    if (rc == AGG_EINVAL || o.rejected)
        return agg_err_set(err, AGG_EINVAL, "%s", o.why[0] != '\0' ? o.why : "not a JSON object");
    if (rc != AGG_OK)
        return stop_error(rc, err);
    return AGG_OK;
}
