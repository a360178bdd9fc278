/*
 * core/workq.h — a queue of items worked on by threads and handed back to the loop.
 *
 * Place: under the writer (batches) and the job runner (blocking queries).
 * Threads: _submit, _inflight and the done callback on the loop thread; the work
 *          callback on one of the queue's threads.
 * Ownership: an item belongs to the queue from _submit until the done callback.
 */
#ifndef AGGD_CORE_WORKQ_H
#define AGGD_CORE_WORKQ_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "core/err.h"

/* Embedded in every item; the queue links items through it. */
struct agg_work {
    struct agg_work *next;
};

struct agg_workq;

struct agg_workq_ops {
    /* Per-thread state: made on the thread at start, torn down at exit. May be NULL. */
    void *(*thread_init)(void *arg);
    void (*thread_fini)(void *arg, void *state);
    /* Works on <item> on a queue thread. */
    void (*work)(void *arg, void *state, struct agg_work *item);
    /* Hands <item> back on the loop thread. */
    void (*done)(void *arg, struct agg_work *item);
};

/* Starts <threads> threads. <ops> and <arg> are borrowed until _free.
 * evthread_use_pthreads() must have been called before <base> was made.
 * Caller owns the result: agg_workq_free(). */
struct agg_workq *agg_workq_new(struct event_base *base, int threads,
                                const struct agg_workq_ops *ops, void *arg, struct agg_err *err);

/* Queues <item>. Loop thread; never blocks. */
void agg_workq_submit(struct agg_workq *q, struct agg_work *item);

/* Items submitted and not yet handed back. Loop thread. */
size_t agg_workq_inflight(const struct agg_workq *q);

/* Items waiting for a thread. Any thread. */
size_t agg_workq_queued(const struct agg_workq *q);

/* For work callbacks: sleeps <ms> unless the queue is stopping; false when the stop
 * deadline has passed and the work should give up. */
bool agg_workq_sleep(struct agg_workq *q, int ms);

/* For work callbacks: true once the stop deadline has passed. */
bool agg_workq_expired(struct agg_workq *q);

/* Lets threads finish the queue, giving work until <grace_ms> from now (then
 * agg_workq_expired() turns true), joins them and hands back every item. Loop
 * thread. Safe to call twice. */
void agg_workq_stop(struct agg_workq *q, int grace_ms);
void agg_workq_free(struct agg_workq *q);

/* Invariant validator for tests: AGG_OK, or AGG_ERR with what is wrong in <err>
 * (the queue and done lists, their counts, items in flight). Loop thread. */
int agg_workq_check(const struct agg_workq *q, struct agg_err *err);

#endif
