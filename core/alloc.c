/*
 * core/alloc.c — allocation wrappers with failure injection.
 *
 * Place: see core/alloc.h.
 * Threads: any; the global counters are atomics, the _here ones thread-local.
 * Traps: the hook is a mutable global on purpose (tests only); it costs one relaxed
 *        atomic load per allocation when off.
 */
#include "core/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

static atomic_long fail_after = -1; /* < 0: never fail */
static atomic_long ok_count;
static _Thread_local long here_fail_after = -1; /* agg_alloc_fail_after_here */
static _Thread_local long here_ok_count;

static int should_fail(void)
{
    long left = atomic_load_explicit(&fail_after, memory_order_relaxed);

    if (here_fail_after >= 0) {
        if (here_fail_after == 0)
            return 1;
        here_fail_after--;
        here_ok_count++;
        return 0;
    }

    if (left < 0) {
        atomic_fetch_add_explicit(&ok_count, 1, memory_order_relaxed);
        return 0;
    }
    if (left == 0)
        return 1;
    atomic_fetch_sub_explicit(&fail_after, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&ok_count, 1, memory_order_relaxed);
    return 0;
}

long agg_alloc_fail_after(long n)
{
    long done = atomic_exchange(&ok_count, 0);

    atomic_store(&fail_after, n < 0 ? -1 : n);
    return done;
}

long agg_alloc_fail_after_here(long n)
{
    long done = here_ok_count;

    here_ok_count = 0;
    here_fail_after = n < 0 ? -1 : n;
    return done;
}

void *agg_malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n == 0 ? 1 : n);
}

void *agg_calloc(size_t count, size_t size)
{
    return should_fail() ? NULL : calloc(count == 0 ? 1 : count, size == 0 ? 1 : size);
}

void *agg_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n == 0 ? 1 : n);
}

char *agg_strndup(const char *s, size_t n)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = agg_malloc(n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *agg_strdup(const char *s)
{
    return s == NULL ? NULL : agg_strndup(s, strlen(s));
}

int agg_grow(void **p, size_t size, size_t *cap, size_t need)
{
    size_t n = *cap ? *cap : 16;
    void *q;

    if (need <= *cap)
        return AGG_OK;
    while (n < need)
        n *= 2;
    q = agg_realloc(*p, n * size);
    if (q == NULL)
        return AGG_ENOMEM;
    *p = q;
    *cap = n;
    return AGG_OK;
}
