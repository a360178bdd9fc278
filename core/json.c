/*
 * core/json.c — the block pool lent to yajl, and the tree parse built on it.
 *
 * Place: see core/json.h.
 * Threads: a pool is one thread's; the tree parse keeps its state on the stack.
 * Ownership: blocks go pool -> yajl -> pool; tree nodes are agg_malloc'd and linked
 *            into the tree as soon as they exist, so a failed parse frees them all
 *            with the tree.
 * Traps: the tree must stay what yajl_tree_parse() builds, since callers read it with
 *        yajl_tree_get() and free it with yajl_tree_free(): numbers keep their text
 *        in u.number.r and get YAJL_NUMBER_INT_VALID as yajl's own integer parser
 *        would give it (LLONG_MIN is out of range there).
 * Not here: the ingest decoders (ingest/json.c).
 */
#include "core/json.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "core/alloc.h"
#include "core/err.h"

/* ---- the pool ---- */

#define POOL_SMALL 8
#define POOL_BIG   2

struct agg_json_blk {
    union {
        struct {
            struct agg_json_blk *next;
            size_t cap;
        } h;
        max_align_t align;
    };
};

static void pool_push(struct agg_json_pool *pl, struct agg_json_blk *b)
{
    b->h.next = pl->free;
    pl->free = b;
}

static int pool_add(struct agg_json_pool *pl, size_t cap)
{
    struct agg_json_blk *b = agg_malloc(sizeof(*b) + cap);

    if (b == NULL)
        return AGG_ENOMEM;
    b->h.cap = cap;
    pool_push(pl, b);
    return AGG_OK;
}

int agg_json_pool_reserve(struct agg_json_pool *pl, size_t big_cap)
{
    size_t small = 0, big = 0;
    struct agg_json_blk **pp = &pl->free;

    while (*pp != NULL) {
        struct agg_json_blk *b = *pp;

        if (b->h.cap >= big_cap) {
            big++;
        } else if (b->h.cap > AGG_JSON_SMALL_CAP) {
            *pp = b->h.next; /* an outgrown big block */
            free(b);
            continue;
        } else {
            small++;
        }
        pp = &b->h.next;
    }
    for (; big < POOL_BIG; big++) {
        if (pool_add(pl, big_cap) != AGG_OK)
            return AGG_ENOMEM;
    }
    for (; small < POOL_SMALL; small++) {
        if (pool_add(pl, AGG_JSON_SMALL_CAP) != AGG_OK)
            return AGG_ENOMEM;
    }
    return AGG_OK;
}

void agg_json_pool_trim(struct agg_json_pool *pl, size_t keep)
{
    struct agg_json_blk **pp = &pl->free;

    while (*pp != NULL) {
        struct agg_json_blk *b = *pp;

        if (b->h.cap > keep) {
            *pp = b->h.next;
            free(b);
        } else {
            pp = &b->h.next;
        }
    }
}

static void *pool_take(struct agg_json_pool *pl, size_t n)
{
    struct agg_json_blk **best = NULL, *b;

    for (struct agg_json_blk **pp = &pl->free; *pp != NULL; pp = &(*pp)->h.next) {
        size_t cap = (*pp)->h.cap;

        if (cap >= n && (best == NULL || cap < (*best)->h.cap)) {
            best = pp;
            if (cap == AGG_JSON_SMALL_CAP || cap == n)
                break;
        }
    }
    if (best != NULL) {
        b = *best;
        *best = b->h.next;
    } else {
        /* The reserve fell short (pl->misses tells). yajl cannot take NULL, so this
         * bypasses the failure-injection hook. */
        pl->misses++;
        b = malloc(sizeof(*b) + (n > AGG_JSON_SMALL_CAP ? n : AGG_JSON_SMALL_CAP));
        if (b == NULL)
            abort(); /* yajl would write through NULL */
        b->h.cap = n > AGG_JSON_SMALL_CAP ? n : AGG_JSON_SMALL_CAP;
    }
    pl->lent++;
    return b + 1;
}

static void pool_give(struct agg_json_pool *pl, void *p)
{
    if (p == NULL)
        return;
    pool_push(pl, (struct agg_json_blk *)p - 1);
    pl->lent--;
}

static void *ya_malloc(void *ctx, size_t n)
{
    return pool_take(ctx, n);
}

static void *ya_realloc(void *ctx, void *p, size_t n)
{
    struct agg_json_blk *b;
    void *q;

    if (p == NULL)
        return pool_take(ctx, n);
    b = (struct agg_json_blk *)p - 1;
    if (b->h.cap >= n)
        return p;
    q = pool_take(ctx, n);
    memcpy(q, p, b->h.cap);
    pool_give(ctx, p);
    return q;
}

static void ya_free(void *ctx, void *p)
{
    pool_give(ctx, p);
}

yajl_alloc_funcs agg_json_pool_funcs(struct agg_json_pool *pl)
{
    return (yajl_alloc_funcs){ya_malloc, ya_realloc, ya_free, pl};
}

/* ---- the tree ---- */

/* An open array or object, with the capacity of its arrays. */
struct open {
    yajl_val v;
    size_t cap_keys, cap_values;
};

struct tree {
    yajl_val root;
    struct open *stack;
    size_t depth, cap;
    int max_depth;
    char *key; /* the object member whose value comes next */
    bool oom, deep;
};

static yajl_val node_new(struct tree *t, yajl_type type)
{
    yajl_val v = agg_calloc(1, sizeof(*v));

    if (v == NULL)
        t->oom = true;
    else
        v->type = type;
    return v;
}

/* Links <v> into the tree: the root, the next element, or the pending key's value.
 * On failure frees <v> and returns 0 (cancels the parse). */
static int attach(struct tree *t, yajl_val v)
{
    struct open *top;

    if (v == NULL)
        return 0;
    if (t->depth == 0) {
        t->root = v;
        return 1;
    }
    top = &t->stack[t->depth - 1];
    if (YAJL_IS_ARRAY(top->v)) {
        struct yajl_val_s *a = top->v;

        if (agg_grow((void **)&a->u.array.values, sizeof(yajl_val), &top->cap_values,
                     a->u.array.len + 1) != AGG_OK)
            goto fail;
        a->u.array.values[a->u.array.len++] = v;
        return 1;
    }
    {
        struct yajl_val_s *o = top->v;

        if (agg_grow((void **)&o->u.object.keys, sizeof(char *), &top->cap_keys,
                     o->u.object.len + 1) != AGG_OK ||
            agg_grow((void **)&o->u.object.values, sizeof(yajl_val), &top->cap_values,
                     o->u.object.len + 1) != AGG_OK)
            goto fail;
        o->u.object.keys[o->u.object.len] = t->key;
        o->u.object.values[o->u.object.len++] = v;
        t->key = NULL;
        return 1;
    }

fail:
    t->oom = true;
    yajl_tree_free(v);
    return 0;
}

static int open_container(struct tree *t, yajl_type type)
{
    yajl_val v;

    if (t->depth >= (size_t)t->max_depth) {
        t->deep = true;
        return 0;
    }
    if (agg_grow((void **)&t->stack, sizeof(*t->stack), &t->cap, t->depth + 1) != AGG_OK) {
        t->oom = true;
        return 0;
    }
    v = node_new(t, type);
    if (!attach(t, v))
        return 0;
    t->stack[t->depth++] = (struct open){v, 0, 0};
    return 1;
}

static int close_container(void *ctx)
{
    struct tree *t = ctx;

    t->depth--;
    return 1;
}

static int on_null(void *ctx)
{
    return attach(ctx, node_new(ctx, yajl_t_null));
}

static int on_bool(void *ctx, int b)
{
    return attach(ctx, node_new(ctx, b ? yajl_t_true : yajl_t_false));
}

/* yajl's own integer parser (yajl_parse_integer, not exported): ERANGE on overflow. */
static long long parse_integer(const char *s, size_t n, bool *ok)
{
    const long long max_mul = LLONG_MAX / 10;
    long long v = 0;
    int sign = 1;
    const char *p = s, *end = s + n;

    *ok = true;
    if (*p == '-') {
        p++;
        sign = -1;
    }
    if (*p == '+')
        p++;
    while (p < end) {
        if (v > max_mul || LLONG_MAX - v * 10 < (*p - '0') || *p < '0' || *p > '9') {
            *ok = false;
            return sign == 1 ? LLONG_MAX : LLONG_MIN;
        }
        v = v * 10 + (*p++ - '0');
    }
    return sign * v;
}

static int on_number(void *ctx, const char *s, size_t n)
{
    struct tree *t = ctx;
    yajl_val v = node_new(t, yajl_t_number);
    char *end;
    bool ok;

    if (v == NULL)
        return 0;
    v->u.number.r = agg_strndup(s, n);
    if (v->u.number.r == NULL) {
        t->oom = true;
        free(v);
        return 0;
    }
    v->u.number.i = parse_integer(v->u.number.r, n, &ok);
    if (ok)
        v->u.number.flags |= YAJL_NUMBER_INT_VALID;
    errno = 0;
    v->u.number.d = strtod(v->u.number.r, &end);
    if (errno == 0 && *end == '\0')
        v->u.number.flags |= YAJL_NUMBER_DOUBLE_VALID;
    return attach(t, v);
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    struct tree *t = ctx;
    yajl_val v = node_new(t, yajl_t_string);

    if (v == NULL)
        return 0;
    v->u.string = agg_strndup((const char *)s, n);
    if (v->u.string == NULL) {
        t->oom = true;
        free(v);
        return 0;
    }
    return attach(t, v);
}

static int on_key(void *ctx, const unsigned char *s, size_t n)
{
    struct tree *t = ctx;

    free(t->key);
    t->key = agg_strndup((const char *)s, n);
    if (t->key == NULL)
        t->oom = true;
    return t->key != NULL;
}

static int on_start_map(void *ctx)
{
    return open_container(ctx, yajl_t_object);
}

static int on_start_array(void *ctx)
{
    return open_container(ctx, yajl_t_array);
}

/* null, boolean, integer, double, number, string, start map, key, end map, start
 * array, end array: integers and doubles come as number text, as yajl_tree has them */
static const yajl_callbacks tree_cbs = {
    on_null,        on_bool,         NULL,
    NULL,           on_number,       on_string,
    on_start_map,   on_key,          close_container,
    on_start_array, close_container,
};

int agg_json_parse(const char *text, size_t len, int max_depth, yajl_val *out, char *why,
                   size_t why_size)
{
    struct agg_json_pool pl = {0};
    yajl_alloc_funcs afs = agg_json_pool_funcs(&pl);
    struct tree t = {.max_depth = max_depth};
    yajl_handle h;
    yajl_status st;
    int rc = AGG_OK;

    *out = NULL;
    if (why_size > 0)
        why[0] = '\0';
    if (agg_json_pool_reserve(&pl, len * 2 + 4096) != AGG_OK) {
        rc = AGG_ENOMEM;
        goto out;
    }
    h = yajl_alloc(&tree_cbs, &afs, &t);
    if (h == NULL) { /* only with bad arguments: the pool does not fail */
        rc = AGG_ENOMEM;
        goto out;
    }
    yajl_config(h, yajl_allow_comments, 1);
    /* completed even after an error, as yajl_tree_parse() does: the message's excerpt
     * comes out the same */
    yajl_parse(h, (const unsigned char *)text, len);
    st = yajl_complete_parse(h);
    if (t.oom) {
        rc = AGG_ENOMEM;
    } else if (t.deep) {
        rc = AGG_EINVAL;
        snprintf(why, why_size, "nested deeper than %d levels", max_depth);
    } else if (st != yajl_status_ok) {
        unsigned char *msg = yajl_get_error(h, 1, (const unsigned char *)text, len);

        rc = AGG_EINVAL;
        snprintf(why, why_size, "%s", msg != NULL ? (const char *)msg : "parse error");
        yajl_free_error(h, msg);
    }
    yajl_free(h);

out:
    free(t.key);
    free(t.stack);
    if (rc == AGG_OK)
        *out = t.root;
    else
        yajl_tree_free(t.root);
    agg_json_pool_trim(&pl, 0);
    return rc;
}
