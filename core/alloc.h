/*
 * core/alloc.h — allocation wrappers with a failure-injection hook for tests.
 *
 * Place: every module allocates through these, so the allocation-failure sweep in
 *        the unit tests (agg_alloc_fail_after) reaches every path.
 * Threads: safe from any thread; the failure counter is atomic.
 * Ownership: as malloc/free.
 */
#ifndef AGGD_CORE_ALLOC_H
#define AGGD_CORE_ALLOC_H

#include <stddef.h>

void *agg_malloc(size_t n);
void *agg_calloc(size_t count, size_t size);
void *agg_realloc(void *p, size_t n);
/* Caller owns the copy of <s> (NULL in, NULL out): free(). */
char *agg_strdup(const char *s);
/* Copy of the <n> bytes at <s>, NUL-terminated. Caller owns it: free(). */
char *agg_strndup(const char *s, size_t n);

/* Grows the array at *<p> (elements of <size> bytes, capacity *<cap>) to hold at least
 * <need> elements, doubling from 16. AGG_OK, or AGG_ENOMEM leaving it untouched. */
int agg_grow(void **p, size_t size, size_t *cap, size_t need);

/* Test hook: the <n>th allocation from now on (0 = the next) and every one after it
 * fails, until agg_alloc_fail_after(-1). Returns how many allocations succeeded
 * since the previous call. */
long agg_alloc_fail_after(long n);

/* The same, counting and failing only the calling thread's allocations: for sweeps
 * over code whose worker threads must keep going (writers, the spool). */
long agg_alloc_fail_after_here(long n);

#endif
