/*
 * ingest/json_int.h — the JSON decoder's internals, shared by ingest/json.c (NDJSON,
 *                     JSON documents, the document tree) and ingest/otlp.c (OTLP/HTTP
 *                     JSON logs walked on that tree).
 *
 * Place: included only by ingest/json.c, ingest/otlp.c and their tests.
 * Threads: as ingest/json.h: a decoder belongs to one thread at a time.
 * Ownership: everything here belongs to the struct ing_json it is reached from;
 *            node strings point into the input of the call in progress or into
 *            j->strs, valid until the call returns.
 * Traps: the functions below work inside a decode call (call_begin() in json.c
 *        set j->in, j->sink and j->stats); strings from yajl are kept only as
 *        copies (json.c, "Traps"). ING_JSON_N_ALIASES must match json.c's alias
 *        table (a static assertion there checks it).
 * Not here: the public contract (ingest/json.h, ingest/otlp.h).
 */
#ifndef AGGD_INGEST_JSON_INT_H
#define AGGD_INGEST_JSON_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "ingest/json.h"
#include "core/buf.h"
#include "core/json.h"

/* Entries of json_aliases (json.c): keys that are not column names. */
#define ING_JSON_N_ALIASES 13

/* ---- decoder state ------------------------------------------------------------- */

enum tok { T_NULL = 0, T_FALSE, T_TRUE, T_NUMBER, T_STRING, T_MAP, T_ARRAY };

enum vkind { V_NONE = 0, V_FIELD, V_EXTRA, V_PENDING };

enum pmode { P_LINE = 0, P_DOC, P_SCAN, P_TREE };

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
    struct held held[ING_JSON_N_ALIASES];
    unsigned err_mask; /* bit per error object seen */
    int err_cur;       /* the error object being read, or -1 */
    int err_member;    /* its member whose value comes next, or -1 */
    size_t err_member_start;
    struct errobj errs[N_ERROBJ];
    char why[256];
    struct agg_record rec;
};

/* One value of a document built as a tree (ing_json_tree_build). Strings are offsets into the
 * input, or into <strs> when flagged (yajl had to decode them). Links are node indexes; 0, the
 * root, is never a child, so 0 means none. */
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
    int field;             /* -1: an error object key only */
    unsigned char flags;   /* KF_*; 0 for a column name */
    unsigned char slot;    /* the json_aliases entry */
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
    yajl_gen gb; /* OTLP (otlp.c): message from a non-string body; resource and scope */
    struct gen_out ox, orw, ob;
    yajl_gen_status gen_status; /* first generator error of an OTLP composition */
    struct agg_buf extra, raw, body, tmp, strs, res, scope;
    struct agg_buf fix; /* the input with its unpaired surrogate escapes replaced */
    struct keyname keys[AGG_F_COUNT + ING_JSON_N_ALIASES];
    size_t n_keys;
    struct keyname *keys_by_len[KEY_LEN_MAX];

    /* the NDJSON / TCP line parser, kept between lines and calls while it is between
     * values (yajl_allow_multiple_values); replaced after a bad line */
    yajl_handle lh;
    const char *line_raw; /* the line as received (j->in may be its repaired copy) */
    size_t line_end;      /* where the line's object ended */
    bool line_extra;      /* a second value started on the line */

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

    /* the document tree (ing_json_tree_build) */
    struct jnode *nodes;
    size_t n_nodes, cap_nodes;
    uint32_t tstack[ING_JSON_MAX_DEPTH + 1], tlast[ING_JSON_MAX_DEPTH + 1];
    uint32_t tkey_off, tkey_len;
    bool tkey_strs;

    /* OTLP (otlp.c): the scope being walked, and why its resource or scope rejects
     * each of its records ("" when they do not) */
    const char *scope_name;
    size_t scope_name_len;
    char ctx_why[128];
};

/* ---- the event in progress (json.c) ----------------------------------------------- */

/* Starts event <index>: j->ev cleared, its record empty. */
void ing_json_event_reset(struct ing_json *j, size_t index);

/* Marks the current event bad, the reason printf-style; the first reason wins. */
void ing_json_event_bad(struct ing_json *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Marks the current event bad for being over max_event_bytes (counted apart). */
void ing_json_event_too_large(struct ing_json *j);

/* Hands event <index> to sink->reject with <why> and its raw bytes <raw>[<rawlen>]
 * (NULL: none; cut to max_event_bytes), and counts it. */
void ing_json_reject(struct ing_json *j, size_t index, const char *why, const char *raw,
                     size_t rawlen);

/* Hands <rec> to sink->emit and counts it when taken: what emit returned. */
int ing_json_emit(struct ing_json *j, const struct agg_record *rec);

/* <rc> (AGG_ENOMEM, or an error emit returned), which stops the call, with its
 * reason in <err>: <rc>. */
int ing_json_stop_error(int rc, struct agg_err *err);

/* "a string", "an object", …: what a value of type <t> is, for reasons. */
const char *ing_json_tok_name(enum tok t);

/* ---- generators (json.c) --------------------------------------------------------- */

/* String <s>[<n>] into <g>; <clean>: made valid UTF-8 without NUL first (extra_data
 * goes to jsonb, which refuses \u0000). Out of memory sets j->oom. */
yajl_gen_status ing_json_gen_str(struct ing_json *j, yajl_gen g, const char *s, size_t n,
                                 bool clean);

/* A value of type <t> into <g>: a scalar (<s>[<n>] for numbers and strings), or the
 * opening of an object or array; <clean> as for ing_json_gen_str, and a number jsonb
 * cannot hold is kept as a string. */
yajl_gen_status ing_json_gen_tok(struct ing_json *j, yajl_gen g, enum tok t, const char *s,
                                 size_t n, bool clean);

/* ---- the document tree (json.c) ----------------------------------------------------- */

/* Builds <body>[<len>], a document the scan found to be JSON, into j->nodes: node 0
 * the top-level value, strings left in <body> or copied into j->strs. AGG_OK, or
 * AGG_ENOMEM / AGG_EINVAL + <err>. The tree is valid until the call returns. */
int ing_json_tree_build(struct ing_json *j, const char *body, size_t len, struct agg_err *err);

/* The last member of object <map> named <camel> or <snake> (NULL: only <camel>;
 * proto3 JSON accepts both), or 0. */
uint32_t ing_json_member(const struct ing_json *j, uint32_t map, const char *camel,
                         const char *snake);

/* Node <v> as JSON into <g>, verbatim (<clean>: strings and numbers made jsonb-safe);
 * the first generator error is kept in j->gen_status, and nothing more is written
 * once there is one. */
void ing_json_tree_emit(struct ing_json *j, yajl_gen g, uint32_t v, bool clean);

/* Node accessors: 0 is "no node" (ntype -1, nabsent true). */
static inline int ntype(const struct ing_json *j, uint32_t v)
{
    return v == 0 ? -1 : j->nodes[v].type;
}

static inline bool nabsent(const struct ing_json *j, uint32_t v)
{
    return v == 0 || j->nodes[v].type == T_NULL;
}

static inline const char *nval(const struct ing_json *j, uint32_t v, size_t *n)
{
    const struct jnode *nd = &j->nodes[v];

    *n = nd->val_len;
    return (nd->flags & NF_VAL_STRS ? j->strs.data : j->in) + nd->val_off;
}

static inline const char *nkey(const struct ing_json *j, uint32_t v, size_t *n)
{
    const struct jnode *nd = &j->nodes[v];

    *n = nd->key_len;
    return (nd->flags & NF_KEY_STRS ? j->strs.data : j->in) + nd->key_off;
}

static inline bool key_is(const struct ing_json *j, uint32_t c, const char *k)
{
    size_t n, kn;
    const char *s;

    if (k == NULL)
        return false;
    s = nkey(j, c, &n);
    kn = strlen(k);
    return n == kn && memcmp(s, k, n) == 0;
}

static inline void gst(struct ing_json *j, yajl_gen_status st)
{
    if (st != yajl_gen_status_ok && j->gen_status == yajl_gen_status_ok)
        j->gen_status = st;
}

/* ---- OTLP (otlp.c) --------------------------------------------------------------- */

/* Decodes <body>[<len>], a document the scan found to be JSON with a top-level
 * "resourceLogs" (or "resource_logs"), as OTLP/HTTP JSON logs: each logRecord, in
 * document order, to the sink of the call in progress (ing_json_decode_document). A
 * body whose containers have the wrong shape: AGG_EINVAL + <err> naming the path,
 * before any record reaches the sink. AGG_OK, or what stops the call + <err>. */
int ing_otlp_decode_json(struct ing_json *j, const char *body, size_t len, struct agg_err *err);

#endif
