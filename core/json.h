/*
 * core/json.h — yajl that survives running out of memory: a block pool lent to yajl,
 *               filled before each parse, and a tree parse on top of it.
 *
 * Place: ingest/json.c (the streaming decoders) and api/req.c (request bodies) parse
 *        through here; nothing above the bottom layer talks to yajl's allocator.
 * Threads: a pool belongs to one thread at a time; agg_json_parse() is pure.
 * Ownership: the pool owns its free blocks; yajl holds the lent ones until it frees
 *            them. A tree from agg_json_parse() is the caller's: yajl_tree_free().
 * Traps: yajl 2.1 does not check its allocations (it writes through NULL), so what
 *        it asks for must never fail: reserve enough before each parse (two big
 *        blocks of 2 * input + 4 KiB for its lexer and string-decoding buffers, eight
 *        of 1 KiB for its structs and its state stack, which a depth of at most 512
 *        keeps under 1 KiB). When the reserve falls short, the pool counts a miss
 *        and falls back to malloc outside the failure-injection hook. The tree's
 *        own nodes come from agg_malloc: a failure there cancels the parse cleanly.
 */
#ifndef AGGD_CORE_JSON_H
#define AGGD_CORE_JSON_H

#include <stddef.h>

#include <yajl/yajl_common.h>
#include <yajl/yajl_tree.h>

/* Size of the pool's small blocks. */
#define AGG_JSON_SMALL_CAP 1024

struct agg_json_blk; /* a block: header, then the bytes lent */

/* Blocks lent to yajl; zero-initialised is empty. Plain data so that a decoder can hold
 * one by value; touch it through the functions below only. */
struct agg_json_pool {
    struct agg_json_blk *free; /* blocks ready to lend */
    size_t lent;               /* blocks yajl holds */
    size_t misses;             /* requests the reserve could not serve */
};

/* Makes sure the free list holds two blocks of at least <big_cap> bytes and eight
 * small ones: all one live parser over <big_cap> / 2 bytes can ask for. Bigger free
 * blocks that are too small go. AGG_OK, or AGG_ENOMEM. */
int agg_json_pool_reserve(struct agg_json_pool *pl, size_t big_cap);

/* Frees the free blocks larger than <keep> bytes (0: all of them). */
void agg_json_pool_trim(struct agg_json_pool *pl, size_t keep);

/* The allocation functions that lend from <pl> (borrowed while yajl uses them). */
yajl_alloc_funcs agg_json_pool_funcs(struct agg_json_pool *pl);

/* Parses <text>[<len>] (comments allowed, as yajl_tree_parse) into *<out>, a tree of
 * the same shape yajl_tree_parse() builds; the caller owns it: yajl_tree_free().
 * Returns AGG_OK; AGG_EINVAL when it is not JSON, or nested deeper than <max_depth>
 * (at most 512), with yajl's message (or the depth's) in <why>[<why_size>];
 * AGG_ENOMEM when memory ran out. *<out> is NULL on failure. Any thread. */
int agg_json_parse(const char *text, size_t len, int max_depth, yajl_val *out, char *why,
                   size_t why_size);

#endif
