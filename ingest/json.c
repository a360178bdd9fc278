/*
 * ingest/json.c — NDJSON and JSON document decoding with yajl's streaming parser,
 *                 and the document tree the OTLP/HTTP JSON decoder walks.
 *
 * Place: see ingest/json.h; the mapping is docs/json-mapping.md. An OTLP document
 *        is handed to ingest/otlp.c once the scan has recognised it.
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
 *        A column's own key beats its aliases in any key order, so alias values are
 *        held (stable copies) until the event ends and only then set or sent to
 *        extra_data; error objects (err, error) stream into extra_data as they come
 *        and the members that filled a column are cut out of its finished text.
 *        yajl 2.1 mis-decodes unpaired surrogate escapes; surrogates_fix() rewrites
 *        them as \ufffd (same length) in a copy of the input before parsing.
 * Not here: OTLP (ingest/otlp.c), HTTP status mapping, decompression, COPY encoding
 *           (store/copy.c).
 */
#include "ingest/json.h"

#include <assert.h>
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
#include "ingest/json_int.h"

#define MAX_EVENT_BYTES_LIMIT ((size_t)1 << 30)

/* ---- decoder state ------------------------------------------------------------- */

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
#define N_ALIASES ING_JSON_N_ALIASES
_Static_assert(sizeof(json_aliases) / sizeof(json_aliases[0]) == N_ALIASES,
               "ING_JSON_N_ALIASES counts json_aliases");
_Static_assert(N_ALIASES <= 32 && AGG_F_COUNT <= 32, "the event's bit masks are 32 bits");

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

void ing_json_event_bad(struct ing_json *j, const char *fmt, ...)
{
    va_list ap;

    if (j->ev.bad)
        return;
    j->ev.bad = true;
    va_start(ap, fmt);
    vsnprintf(j->ev.why, sizeof(j->ev.why), fmt, ap);
    va_end(ap);
}

void ing_json_event_too_large(struct ing_json *j)
{
    if (!j->ev.bad)
        j->ev.too_large = true;
    ing_json_event_bad(j, "event larger than %zu bytes", j->max_event_bytes);
}

static bool in_input(const struct ing_json *j, const char *s, size_t n)
{
    uintptr_t a = (uintptr_t)s, lo = (uintptr_t)j->in;

    return a >= lo && a - lo <= j->in_len && n <= j->in_len - (a - lo);
}

void ing_json_event_reset(struct ing_json *j, size_t index)
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

void ing_json_reject(struct ing_json *j, size_t index, const char *why, const char *raw,
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

int ing_json_emit(struct ing_json *j, const struct agg_record *rec)
{
    int rc = j->sink->emit(j->sink->arg, rec);

    if (rc == AGG_OK)
        j->stats->accepted++;
    return rc;
}

/* ---- generators ------------------------------------------------------------------ */

yajl_gen_status ing_json_gen_str(struct ing_json *j, yajl_gen g, const char *s, size_t n,
                                 bool clean)
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
        return ing_json_gen_str(j, g, s, n, false);
    return yajl_gen_number(g, s, n);
}

yajl_gen_status ing_json_gen_tok(struct ing_json *j, yajl_gen g, enum tok t, const char *s,
                                 size_t n, bool clean)
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
        return ing_json_gen_str(j, g, s, n, clean);
    case T_MAP:
        return yajl_gen_map_open(g);
    default:
        return yajl_gen_array_open(g);
    }
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

const char *ing_json_tok_name(enum tok t)
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
        ing_json_event_too_large(j);
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
                ing_json_tok_name(t));
    return false;
}

static void extra_put(struct ing_json *j, enum tok t, const char *s, size_t n)
{
    if (ing_json_gen_tok(j, j->gx, t, s, n, true) != yajl_gen_status_ok)
        ing_json_event_bad(j, "could not re-encode the value for extra_data");
}

/* Member name <k>[<n>] into extra_data, opened if need be; *<start> (unless NULL):
 * where the member begins (at the comma before it, if any). */
static void extra_key(struct ing_json *j, const char *k, size_t n, size_t *start)
{
    struct event *ev = &j->ev;

    if (!ev->extra_open) {
        ev->extra_open = true;
        if (yajl_gen_map_open(j->gx) != yajl_gen_status_ok)
            ing_json_event_bad(j, "could not re-encode extra_data");
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
        ing_json_event_bad(j, "%s", e.msg);
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
                ing_json_event_bad(j, "%s must be %s, not %s", agg_field_name(k->field),
                                   field_wants(k->field), ing_json_tok_name(h->t));
                return;
            }
            if (field_set(j, k->field, h->t, h->s, h->n, &e)) {
                filled |= fbit;
                continue;
            }
            if (!(k->flags & KF_SOFT)) {
                ing_json_event_bad(j, "%s", e.msg);
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
        ing_json_event_bad(j, "event nested deeper than %d levels", ING_JSON_MAX_EVENT_DEPTH);
    else
        ing_json_event_too_large(j);
}

static void elem_begin(struct ing_json *j, enum tok t)
{
    j->in_elem = true;
    j->elem_is_event = t == T_MAP;
    ing_json_event_reset(j, j->next_index++);
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
        ing_json_event_bad(j, "could not re-encode extra_data");
    if (j->oom)
        return;
    if (ev->bad) {
        ing_json_reject(j, ev->index, ev->why, raw, rawlen);
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
    rc = ing_json_emit(j, rec);
    if (rc != AGG_OK)
        j->status = rc;
}

static void elem_end(struct ing_json *j)
{
    j->in_elem = false;
    if (!j->elem_is_event) {
        ing_json_reject(j, j->ev.index, "event is not a JSON object", j->raw.data, j->raw.len);
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
            ing_json_event_bad(j, "event is not a JSON object");
            return 0;
        }
    }
    if (j->mode == P_DOC && !j->raw_lost)
        raw_check(j, ing_json_gen_tok(j, j->gr, t, s, n, false));
    if (j->elem_is_event && d > j->elem_level && !j->ev.bad)
        event_value(j, d, t, s, n);
    if (t >= T_MAP) {
        if (j->elem_is_event && d + 1 - j->elem_level > ING_JSON_MAX_EVENT_DEPTH)
            ing_json_event_bad(j, "event nested deeper than %d levels", ING_JSON_MAX_EVENT_DEPTH);
        if (d + 1 >= ING_JSON_MAX_DEPTH) {
            /* only reachable in a line: documents were scanned */
            ing_json_event_bad(j, "nested deeper than %d levels", ING_JSON_MAX_DEPTH);
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
            ing_json_event_bad(j, "could not re-encode extra_data");
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
    ing_json_event_reset(j, index);
    if (n > j->max_event_bytes) {
        ing_json_event_too_large(j);
        ing_json_reject(j, index, j->ev.why, line, n);
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
        ing_json_event_bad(j, "invalid JSON at byte %zu: %s", offset > n ? n : offset, msg);
    }
    line_parser_drop(j); /* mid-value or in error: start afresh */
    ing_json_reject(j, index, j->ev.why, line, n);
    return AGG_EINVAL;
}

int ing_json_stop_error(int rc, struct agg_err *err)
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
                return ing_json_stop_error(rc, err);
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
        return ing_json_stop_error(rc, err);
    return AGG_OK;
}

/* ---- the document tree ------------------------------------------------------------ */

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

int ing_json_tree_build(struct ing_json *j, const char *body, size_t len, struct agg_err *err)
{
    yajl_status st;
    size_t offset = 0;

    j->mode = P_TREE;
    j->depth = 0;
    j->n_nodes = 0;
    agg_buf_reset(&j->strs);
    st = run_parser(j, &tree_cbs, body, len, &offset, NULL, 0);
    if (j->oom || j->n_nodes == 0)
        return ing_json_stop_error(AGG_ENOMEM, err);
    if (st != yajl_status_ok) /* the scan passed: cannot happen */
        return agg_err_set(err, AGG_EINVAL, "body is not JSON at byte %zu", offset);
    return AGG_OK;
}

uint32_t ing_json_member(const struct ing_json *j, uint32_t map, const char *camel,
                         const char *snake)
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

void ing_json_tree_emit(struct ing_json *j, yajl_gen g, uint32_t v, bool clean)
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
        gst(j, ing_json_gen_tok(j, g, nd->type, s, n, clean));
        return;
    case T_MAP:
    case T_ARRAY:
        gst(j, ing_json_gen_tok(j, g, nd->type, NULL, 0, clean));
        for (uint32_t c = nd->first; c != 0; c = j->nodes[c].next) {
            if (nd->type == T_MAP) {
                s = nkey(j, c, &n);
                gst(j, ing_json_gen_str(j, g, s, n, clean));
            }
            ing_json_tree_emit(j, g, c, clean);
        }
        gst(j, nd->type == T_MAP ? yajl_gen_map_close(g) : yajl_gen_array_close(g));
        return;
    default:
        gst(j, ing_json_gen_tok(j, g, nd->type, NULL, 0, clean));
        return;
    }
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
        rc = ing_json_stop_error(AGG_ENOMEM, err);
        goto out;
    }
    j->in = body;
    if (agg_json_pool_reserve(&j->pool,
                              len * 2 + 4096 > j->big_keep ? len * 2 + 4096 : j->big_keep) !=
        AGG_OK)
        return ing_json_stop_error(AGG_ENOMEM, err);

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
        rc = ing_otlp_decode_json(j, body, len, err);
        goto out;
    }
    j->mode = P_DOC;
    if (strs_ready(j) != AGG_OK) {
        rc = ing_json_stop_error(AGG_ENOMEM, err);
        goto out;
    }
    st = run_parser(j, &stream_cbs, body, len, &offset, NULL, 0);
    if (j->oom)
        rc = ing_json_stop_error(AGG_ENOMEM, err);
    else if (j->status != AGG_OK)
        rc = ing_json_stop_error(j->status, err);
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
        return ing_json_stop_error(rc, err);
    return AGG_OK;
}
