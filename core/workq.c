/*
 * core/workq.c — threads working on a queue, results back on the event loop.
 *
 * Place: see core/workq.h.
 * Threads: one mutex guards the queue, the done list and the stop state; the loop
 *          is woken by event_active() on a libevent event, which is thread-safe
 *          once evthread_use_pthreads() is in force.
 */
#include "core/workq.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "core/alloc.h"
#include "core/time.h"

struct agg_workq {
    const struct agg_workq_ops *ops;
    void *arg;
    pthread_t *threads;
    int nthreads, started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct agg_work *qhead, *qtail;
    struct agg_work *dhead, *dtail;
    _Atomic size_t queued;
    size_t inflight; /* loop thread */
    bool stopping;
    int64_t deadline_us;
    struct event *done_ev;
};

static void push(struct agg_work **head, struct agg_work **tail, struct agg_work *w)
{
    w->next = NULL;
    if (*tail != NULL)
        (*tail)->next = w;
    else
        *head = w;
    *tail = w;
}

static void *thread_main(void *arg)
{
    struct agg_workq *q = arg;
    void *state = q->ops->thread_init != NULL ? q->ops->thread_init(q->arg) : NULL;

    for (;;) {
        struct agg_work *w;

        pthread_mutex_lock(&q->lock);
        while (q->qhead == NULL && !q->stopping)
            pthread_cond_wait(&q->cond, &q->lock);
        w = q->qhead;
        if (w != NULL) {
            q->qhead = w->next;
            if (q->qhead == NULL)
                q->qtail = NULL;
            atomic_fetch_sub(&q->queued, 1);
        }
        pthread_mutex_unlock(&q->lock);
        if (w == NULL)
            break;
        q->ops->work(q->arg, state, w);
        pthread_mutex_lock(&q->lock);
        push(&q->dhead, &q->dtail, w);
        pthread_mutex_unlock(&q->lock);
        event_active(q->done_ev, EV_READ, 0);
    }
    if (q->ops->thread_fini != NULL)
        q->ops->thread_fini(q->arg, state);
    return NULL;
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct agg_workq *q = arg;
    struct agg_work *list;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&q->lock);
    list = q->dhead;
    q->dhead = q->dtail = NULL;
    pthread_mutex_unlock(&q->lock);
    while (list != NULL) {
        struct agg_work *w = list;

        list = w->next;
        w->next = NULL;
        q->inflight--;
        q->ops->done(q->arg, w);
    }
}

struct agg_workq *agg_workq_new(struct event_base *base, int threads,
                                const struct agg_workq_ops *ops, void *arg, struct agg_err *err)
{
    struct agg_workq *q = agg_calloc(1, sizeof(*q));

    if (q == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    q->ops = ops;
    q->arg = arg;
    q->nthreads = threads;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->threads = agg_calloc((size_t)threads, sizeof(*q->threads));
    q->done_ev = event_new(base, -1, 0, on_done, q);
    if (q->threads == NULL || q->done_ev == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    for (; q->started < threads; q->started++) {
        if (pthread_create(&q->threads[q->started], NULL, thread_main, q) != 0) {
            agg_err_set(err, AGG_ERR, "could not start a worker thread");
            goto fail;
        }
    }
    return q;

fail:
    agg_workq_free(q);
    return NULL;
}

void agg_workq_submit(struct agg_workq *q, struct agg_work *item)
{
    q->inflight++;
    pthread_mutex_lock(&q->lock);
    push(&q->qhead, &q->qtail, item);
    atomic_fetch_add(&q->queued, 1);
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

size_t agg_workq_inflight(const struct agg_workq *q)
{
    return q->inflight;
}

size_t agg_workq_queued(const struct agg_workq *q)
{
    return atomic_load(&((struct agg_workq *)q)->queued);
}

bool agg_workq_expired(struct agg_workq *q)
{
    bool expired;

    pthread_mutex_lock(&q->lock);
    expired = q->stopping && agg_time_mono_us() >= q->deadline_us;
    pthread_mutex_unlock(&q->lock);
    return expired;
}

bool agg_workq_sleep(struct agg_workq *q, int ms)
{
    struct timespec until;
    bool expired;

    pthread_mutex_lock(&q->lock);
    if (q->stopping) { /* never sleep past the stop deadline */
        int64_t left_ms = (q->deadline_us - agg_time_mono_us()) / 1000;

        ms = left_ms < ms ? (int)(left_ms > 0 ? left_ms : 0) : ms;
    }
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    if (ms > 0)
        pthread_cond_timedwait(&q->cond, &q->lock, &until);
    expired = q->stopping && agg_time_mono_us() >= q->deadline_us;
    pthread_mutex_unlock(&q->lock);
    return !expired;
}

void agg_workq_stop(struct agg_workq *q, int grace_ms)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    if (!q->stopping) {
        q->stopping = true;
        q->deadline_us = agg_time_mono_us() + (int64_t)grace_ms * 1000;
    }
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    for (int i = 0; i < q->started; i++)
        pthread_join(q->threads[i], NULL);
    q->started = 0;
    if (q->done_ev != NULL)
        on_done(-1, 0, q);
}

void agg_workq_free(struct agg_workq *q)
{
    if (q == NULL)
        return;
    agg_workq_stop(q, 0);
    if (q->done_ev != NULL)
        event_free(q->done_ev);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q->threads);
    free(q);
}

/* The length of the list at <head>, or SIZE_MAX when <tail> is not its last item. */
static size_t list_length(const struct agg_work *head, const struct agg_work *tail)
{
    const struct agg_work *last = NULL;
    size_t n = 0;

    for (const struct agg_work *w = head; w != NULL; w = w->next) {
        last = w;
        n++;
    }
    return last == tail ? n : SIZE_MAX;
}

int agg_workq_check(const struct agg_workq *q, struct agg_err *err)
{
    struct agg_workq *m = (struct agg_workq *)q; /* the lock, not the state */
    size_t queued, done;
    int rc = AGG_OK;

    pthread_mutex_lock(&m->lock);
    queued = list_length(q->qhead, q->qtail);
    done = list_length(q->dhead, q->dtail);
    if (queued == SIZE_MAX || done == SIZE_MAX)
        rc = agg_err_set(err, AGG_ERR, "a list's tail is not its last item");
    else if (queued != atomic_load(&m->queued))
        rc = agg_err_set(err, AGG_ERR, "%zu items queued, the count says %zu", queued,
                         atomic_load(&m->queued));
    else if (queued + done > q->inflight)
        rc = agg_err_set(err, AGG_ERR, "%zu queued + %zu done but %zu in flight", queued, done,
                         q->inflight);
    else if (q->started < 0 || q->started > q->nthreads)
        rc = agg_err_set(err, AGG_ERR, "%d of %d threads started", q->started, q->nthreads);
    else if (q->stopping && q->started == 0 && queued != 0)
        rc = agg_err_set(err, AGG_ERR, "stopped with %zu items never worked on", queued);
    pthread_mutex_unlock(&m->lock);
    return rc;
}
