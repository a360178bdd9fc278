/*
 * api/token_cache.c — bounded cache of token verdicts.
 *
 * Place: see api/token_cache.h.
 * Threads: see api/token_cache.h.
 * Ownership: one allocation holds every entry.
 * Traps: a linear scan finds an entry: 1024 entries, compared on a 64-bit prefix of
 *        the hash first, cost about a microsecond, less than a hash table's upkeep.
 *        Entries [0, n) are used; forgetting one moves the last into its place.
 */
#include "api/token_cache.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/alloc.h"

#define US_PER_S INT64_C(1000000)

struct entry {
    uint64_t key; /* the first 8 hex digits of <hash>, as bytes: a quick first compare */
    char hash[API_AUTH_TOKEN_HASH_SIZE];
    char scope[16];
    int status; /* AGG_OK or AGG_ENOTFOUND */
    struct api_principal who;
    int64_t checked_us; /* when PostgreSQL gave this verdict */
    uint64_t used;      /* tick of the last use, for LRU */
};

struct api_token_cache {
    size_t cap, n;
    uint64_t tick;
    bool answered;          /* PostgreSQL answered at least once */
    int64_t last_answer_us; /* when it last did */
    struct entry e[];
};

static uint64_t key_of(const char *hash)
{
    uint64_t k = 0;

    memcpy(&k, hash, strnlen(hash, sizeof(k)));
    return k;
}

struct api_token_cache *api_token_cache_new(size_t capacity, struct agg_err *err)
{
    struct api_token_cache *c = NULL;

    if (capacity > 0 && capacity <= SIZE_MAX / sizeof(struct entry) - 1)
        c = agg_calloc(1, sizeof(*c) + capacity * sizeof(struct entry));
    if (c == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    c->cap = capacity;
    return c;
}

void api_token_cache_free(struct api_token_cache *c)
{
    if (c == NULL)
        return;
    sodium_memzero(c, sizeof(*c) + c->cap * sizeof(struct entry));
    free(c);
}

static struct entry *find(struct api_token_cache *c, const char *hash, const char *scope)
{
    uint64_t key = key_of(hash);

    for (size_t i = 0; i < c->n; i++) {
        struct entry *e = &c->e[i];

        if (e->key == key && strcmp(e->hash, hash) == 0 && strcmp(e->scope, scope) == 0)
            return e;
    }
    return NULL;
}

int api_token_cache_get(struct api_token_cache *c, const char *hash, const char *scope,
                        int64_t now_us, struct api_principal *who)
{
    struct entry *e = find(c, hash, scope);
    int64_t ttl_s;

    if (e == NULL)
        return AGG_EAGAIN;
    ttl_s = e->status == AGG_OK ? API_TOKEN_CACHE_VALID_S : API_TOKEN_CACHE_INVALID_S;
    if (now_us < e->checked_us || now_us - e->checked_us >= ttl_s * US_PER_S)
        return AGG_EAGAIN;
    e->used = ++c->tick;
    if (e->status == AGG_OK)
        *who = e->who;
    return e->status;
}

int api_token_cache_get_stale(struct api_token_cache *c, const char *hash, const char *scope,
                              int64_t now_s, struct api_principal *who)
{
    struct entry *e = find(c, hash, scope);

    if (e == NULL || e->status != AGG_OK || !c->answered ||
        c->last_answer_us - e->checked_us > API_TOKEN_CACHE_STALE_WINDOW_S * US_PER_S ||
        (e->who.token_expires_s != 0 && e->who.token_expires_s <= now_s))
        return AGG_EDB;
    e->used = ++c->tick;
    *who = e->who;
    return AGG_OK;
}

/* The entry a new verdict of <status> goes to, or NULL when it is not to be kept. */
static struct entry *victim(struct api_token_cache *c, int status)
{
    struct entry *lru_invalid = NULL, *lru = NULL;

    if (c->n < c->cap)
        return &c->e[c->n++];
    for (size_t i = 0; i < c->n; i++) {
        struct entry *e = &c->e[i];

        if (lru == NULL || e->used < lru->used)
            lru = e;
        if (e->status != AGG_OK && (lru_invalid == NULL || e->used < lru_invalid->used))
            lru_invalid = e;
    }
    if (lru_invalid != NULL)
        return lru_invalid;
    return status == AGG_OK ? lru : NULL;
}

void api_token_cache_put(struct api_token_cache *c, const char *hash, const char *scope,
                         int status, const struct api_principal *who, int64_t now_us)
{
    struct entry *e;

    if (status != AGG_OK && status != AGG_ENOTFOUND)
        return;
    c->answered = true;
    c->last_answer_us = now_us;
    if (strlen(hash) >= sizeof(e->hash) || strlen(scope) >= sizeof(e->scope))
        return;
    e = find(c, hash, scope);
    if (e == NULL)
        e = victim(c, status);
    if (e == NULL)
        return;
    memset(e, 0, sizeof(*e));
    e->key = key_of(hash);
    memcpy(e->hash, hash, strlen(hash) + 1);
    memcpy(e->scope, scope, strlen(scope) + 1);
    e->status = status;
    if (status == AGG_OK)
        e->who = *who;
    e->checked_us = now_us;
    e->used = ++c->tick;
}

void api_token_cache_forget(struct api_token_cache *c, const char *hash)
{
    uint64_t key = key_of(hash);

    for (size_t i = 0; i < c->n;) {
        if (c->e[i].key == key && strcmp(c->e[i].hash, hash) == 0) {
            c->e[i] = c->e[--c->n];
            sodium_memzero(&c->e[c->n], sizeof(c->e[c->n]));
        } else {
            i++;
        }
    }
}

size_t api_token_cache_count(const struct api_token_cache *c)
{
    return c->n;
}

bool api_token_cache_check(const struct api_token_cache *c)
{
    if (c == NULL || c->n > c->cap)
        return false;
    for (size_t i = 0; i < c->n; i++) {
        const struct entry *e = &c->e[i];

        if ((e->status != AGG_OK && e->status != AGG_ENOTFOUND) ||
            memchr(e->hash, '\0', sizeof(e->hash)) == NULL ||
            memchr(e->scope, '\0', sizeof(e->scope)) == NULL || e->key != key_of(e->hash) ||
            e->used == 0 || e->used > c->tick || (c->answered && e->checked_us > c->last_answer_us))
            return false;
        for (size_t j = i + 1; j < c->n; j++) {
            if (strcmp(e->hash, c->e[j].hash) == 0 && strcmp(e->scope, c->e[j].scope) == 0)
                return false;
        }
    }
    return true;
}
