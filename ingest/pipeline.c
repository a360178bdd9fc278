/*
 * ingest/pipeline.c — timestamp policy, batching and backpressure on the loop.
 *
 * Place: see ingest/pipeline.h.
 * Threads: event-loop thread only.
 * Traps: DESIGN.md "Timestamps": no event is refused for its timestamp; one outside
 *        [first day of (this month - accept_past_months), now + 1 day] is stored at
 *        its receive time with the original in extra_data.original_timestamp, so a
 *        bogus date never creates a partition far away.
 */
#include "ingest/pipeline.h"

#include <stdio.h>
#include <stdlib.h>

#include "src/alloc.h"
#include "src/log.h"
#include "store/copy.h"
#include "store/writer.h"

#define BATCH_MAX_BYTES (16 * 1024 * 1024)
#define SPARE_BATCHES 2
#define MAX_DRAIN 4

struct ing_pipeline {
    struct event_base *base;
    struct st_writer *writer;
    struct st_batch *open;
    struct st_batch *spare[SPARE_BATCHES];
    int nspare;
    struct event *timer;
    bool timer_armed;
    bool flush_wanted; /* close the open batch as soon as a writer slot frees */
    bool was_full;
    int64_t max_rows, max_ms;
    size_t max_inflight;
    int64_t accept_past_months;
    uint64_t next_seq;
    int64_t window_sec; /* the second the window below was computed for */
    int64_t window_lo_us;
    struct st_copy_scratch scratch;
    struct {
        void (*fn)(void *arg);
        void *arg;
    } drain[MAX_DRAIN];
    /* Batches land out of order with several writers: waiters wait until every
     * batch up to theirs is back. */
    uint64_t landed_upto;  /* every seq < landed_upto is back */
    uint64_t *back;        /* seqs >= landed_upto already back */
    size_t nback, cap_back;
    bool lost;             /* a batch came back not landed (stopping) */
    struct waiter {
        uint64_t seq; /* wait until landed_upto > seq */
        ing_pipeline_wait_fn fn;
        void *arg;
    } *waiters;
    size_t nwaiters, cap_waiters;
    int ndrain;
    _Atomic int64_t *counts[ING_TRANSPORT_COUNT][ING_COUNT_KINDS];
    _Atomic int64_t *accepted[ING_TRANSPORT_COUNT];
    _Atomic int64_t *out_of_window;
};

static const char *const transport_labels[ING_TRANSPORT_COUNT] = {
    "transport=\"syslog_udp\"", "transport=\"syslog_tcp\"", "transport=\"json_tcp\"",
    "transport=\"http\""};

static const struct {
    const char *name;
    const char *help;
} count_metrics[ING_COUNT_KINDS] = {
    [ING_COUNT_RECEIVED] = {"aggd_events_received_total", "Events received."},
    [ING_COUNT_REJECTED] = {"aggd_events_rejected_total",
                            "Events that could not be parsed or decoded."},
    [ING_COUNT_DROPPED] = {"aggd_events_dropped_total",
                           "Events dropped under backpressure (UDP)."},
    [ING_COUNT_BYTES] = {"aggd_bytes_received_total", "Bytes received."},
    [ING_COUNT_OVERSIZED] = {"aggd_frames_oversized_total",
                             "Frames over ingest.max_message_bytes, cut off."},
};

static bool open_at_limit(const struct ing_pipeline *p)
{
    return p->open != NULL && ((int64_t)(p->open->nrows + p->open->nrejects) >= p->max_rows ||
                               p->open->copy.len >= BATCH_MAX_BYTES);
}

bool ing_pipeline_is_full(const struct ing_pipeline *p)
{
    return open_at_limit(p) && st_writer_inflight(p->writer) >= p->max_inflight;
}

/* Hands the open batch to the writers if a slot is free; else remembers to. */
static void submit_open(struct ing_pipeline *p)
{
    if (p->open == NULL || st_batch_is_empty(p->open)) {
        p->flush_wanted = false;
        return;
    }
    if (st_writer_inflight(p->writer) >= p->max_inflight) {
        p->flush_wanted = true;
        return;
    }
    if (p->timer_armed) {
        evtimer_del(p->timer);
        p->timer_armed = false;
    }
    st_writer_submit(p->writer, p->open);
    p->open = NULL;
    p->flush_wanted = false;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct ing_pipeline *p = arg;

    (void)fd;
    (void)what;
    p->timer_armed = false;
    submit_open(p);
}

/* Notes that batch <seq> is back and answers the waiters this completes. */
static void note_back(struct ing_pipeline *p, uint64_t seq)
{
    bool moved = true;
    size_t kept = 0;

    if (p->nback == p->cap_back) {
        size_t cap = p->cap_back ? p->cap_back * 2 : 16;
        uint64_t *back = agg_realloc(p->back, cap * sizeof(*back));

        if (back == NULL) { /* cannot track: keep waiters waiting rather than lie */
            AGG_LOG_ERR("pipeline", "out of memory tracking batch %llu", (unsigned long long)seq);
            return;
        }
        p->back = back;
        p->cap_back = cap;
    }
    p->back[p->nback++] = seq;
    while (moved) {
        moved = false;
        for (size_t i = 0; i < p->nback; i++) {
            if (p->back[i] == p->landed_upto) {
                p->landed_upto++;
                p->back[i] = p->back[--p->nback];
                moved = true;
                break;
            }
        }
    }
    for (size_t i = 0; i < p->nwaiters; i++) {
        struct waiter w = p->waiters[i];

        if (w.seq < p->landed_upto)
            w.fn(w.arg, !p->lost);
        else
            p->waiters[kept++] = w;
    }
    p->nwaiters = kept;
}

static void on_batch_done(void *arg, struct st_batch *b)
{
    struct ing_pipeline *p = arg;

    p->lost = p->lost || !b->done;
    note_back(p, b->seq);
    if (!b->done)
        AGG_LOG_ERR("pipeline", "stopped with %zu rows not written", b->nrows - b->progress);
    if (p->nspare < SPARE_BATCHES && b->copy.cap <= 2 * BATCH_MAX_BYTES) {
        st_batch_reset(b);
        p->spare[p->nspare++] = b;
    } else {
        st_batch_free(b);
    }
    if (p->flush_wanted || open_at_limit(p))
        submit_open(p);
    if (p->was_full && !ing_pipeline_is_full(p)) {
        p->was_full = false;
        for (int i = 0; i < p->ndrain; i++)
            p->drain[i].fn(p->drain[i].arg);
    }
}

static int64_t window_low(struct ing_pipeline *p, int64_t now_us)
{
    int64_t sec = now_us / ING_US_PER_SEC;

    if (sec != p->window_sec) {
        int month = st_batch_month_of(now_us) - (int)p->accept_past_months;
        int64_t y = month / 12;
        unsigned m = (unsigned)(month % 12) + 1;

        p->window_lo_us = ing_days_from_civil(y, m, 1) * 86400 * ING_US_PER_SEC;
        p->window_sec = sec;
    }
    return p->window_lo_us;
}

/* Makes sure there is an open batch, and starts its batch.max_ms clock. */
static int open_batch(struct ing_pipeline *p, int64_t now_us)
{
    if (p->open == NULL) {
        p->open = p->nspare > 0 ? p->spare[--p->nspare] : st_batch_new();
        if (p->open == NULL)
            return AGG_ENOMEM;
        p->open->seq = p->next_seq++;
    }
    if (st_batch_is_empty(p->open) && !p->timer_armed) {
        struct timeval tv = {p->max_ms / 1000, (p->max_ms % 1000) * 1000};

        p->open->opened_us = now_us;
        evtimer_add(p->timer, &tv);
        p->timer_armed = true;
    }
    return AGG_OK;
}

static void after_add(struct ing_pipeline *p)
{
    if (open_at_limit(p)) {
        submit_open(p);
        if (ing_pipeline_is_full(p))
            p->was_full = true;
    }
}

int ing_pipeline_add(struct ing_pipeline *p, const struct ing_record *rec,
                     enum ing_transport transport, const char *peer, int64_t received_us)
{
    int64_t created = rec->created_us, original = ING_TIME_NONE;

    if (created == ING_TIME_NONE) {
        created = received_us;
    } else if (created < window_low(p, received_us) ||
               created > received_us + 86400 * ING_US_PER_SEC) {
        original = created;
        created = received_us;
        agg_metric_inc(p->out_of_window, 1);
    }
    if (open_batch(p, received_us) != AGG_OK ||
        st_batch_add(p->open, rec, created, original, transport, peer, received_us,
                     &p->scratch) != AGG_OK)
        return AGG_ENOMEM;
    agg_metric_inc(p->accepted[transport], 1);
    after_add(p);
    return AGG_OK;
}

int ing_pipeline_reject(struct ing_pipeline *p, enum ing_transport transport, const char *peer,
                        int64_t received_us, const char *why, const char *raw, size_t len)
{
    agg_metric_inc(p->counts[transport][ING_COUNT_REJECTED], 1);
    if (open_batch(p, received_us) != AGG_OK ||
        st_batch_add_reject(p->open, transport, peer, received_us, why, raw, len) != AGG_OK)
        return AGG_ENOMEM;
    after_add(p);
    return AGG_OK;
}

void ing_pipeline_count(struct ing_pipeline *p, enum ing_transport transport,
                        enum ing_count kind, int64_t n)
{
    agg_metric_inc(p->counts[transport][kind], n);
}

int ing_pipeline_on_drain(struct ing_pipeline *p, void (*fn)(void *arg), void *arg)
{
    if (p->ndrain == MAX_DRAIN)
        return AGG_EFULL;
    p->drain[p->ndrain].fn = fn;
    p->drain[p->ndrain].arg = arg;
    p->ndrain++;
    return AGG_OK;
}

int ing_pipeline_wait(struct ing_pipeline *p, ing_pipeline_wait_fn fn, void *arg)
{
    bool open = p->open != NULL && !st_batch_is_empty(p->open);
    uint64_t seq = open ? p->open->seq : p->next_seq - 1;

    if (p->next_seq == 0 || seq < p->landed_upto) {
        fn(arg, !p->lost); /* nothing pending: landed already */
        return AGG_OK;
    }
    if (p->nwaiters == p->cap_waiters) {
        size_t cap = p->cap_waiters ? p->cap_waiters * 2 : 16;
        struct waiter *w = agg_realloc(p->waiters, cap * sizeof(*w));

        if (w == NULL)
            return AGG_ENOMEM;
        p->waiters = w;
        p->cap_waiters = cap;
    }
    p->waiters[p->nwaiters++] = (struct waiter){seq, fn, arg};
    if (open)
        submit_open(p);
    return AGG_OK;
}

static int register_metrics(struct ing_pipeline *p, struct agg_metrics *m)
{
    for (int k = 0; k < ING_COUNT_KINDS; k++) {
        for (int t = 0; t < ING_TRANSPORT_COUNT; t++) {
            p->counts[t][k] = agg_metrics_add(m, AGG_METRIC_COUNTER, count_metrics[k].name,
                                              transport_labels[t], count_metrics[k].help);
            if (p->counts[t][k] == NULL)
                return AGG_ENOMEM;
        }
    }
    for (int t = 0; t < ING_TRANSPORT_COUNT; t++) {
        p->accepted[t] = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_events_accepted_total",
                                         transport_labels[t],
                                         "Events accepted into a batch.");
        if (p->accepted[t] == NULL)
            return AGG_ENOMEM;
    }
    p->out_of_window = agg_metrics_add(
        m, AGG_METRIC_COUNTER, "aggd_events_out_of_window_total", NULL,
        "Events stored at their receive time because their timestamp was out of range.");
    return p->out_of_window != NULL ? AGG_OK : AGG_ENOMEM;
}

struct ing_pipeline *ing_pipeline_new(struct event_base *base, const struct agg_config *cfg,
                                      struct st_pool *pool, struct agg_metrics *metrics,
                                      struct agg_err *err)
{
    struct ing_pipeline *p = agg_calloc(1, sizeof(*p));
    struct st_writer_opts wopts = {.threads = (int)cfg->writer.threads, .grace_ms = 5000};

    if (p == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    p->base = base;
    p->max_rows = cfg->batch.max_rows;
    p->max_ms = cfg->batch.max_ms;
    p->max_inflight = (size_t)cfg->writer.threads * 2;
    p->accept_past_months = cfg->partitions.accept_past_months;
    p->window_sec = -1;
    st_copy_scratch_init(&p->scratch);
    p->timer = evtimer_new(base, on_timer, p);
    if (p->timer == NULL || register_metrics(p, metrics) != AGG_OK) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    p->writer = st_writer_new(base, pool, &wopts, metrics, on_batch_done, p, err);
    if (p->writer == NULL)
        goto fail;
    return p;

fail:
    ing_pipeline_free(p);
    return NULL;
}

void ing_pipeline_shutdown(struct ing_pipeline *p)
{
    if (p == NULL || p->writer == NULL)
        return;
    if (p->open != NULL && !st_batch_is_empty(p->open)) {
        st_writer_submit(p->writer, p->open); /* past the slot limit: we are stopping */
        p->open = NULL;
    }
    st_writer_stop(p->writer);
}

void ing_pipeline_free(struct ing_pipeline *p)
{
    if (p == NULL)
        return;
    ing_pipeline_shutdown(p);
    st_writer_free(p->writer);
    if (p->timer != NULL)
        event_free(p->timer);
    st_batch_free(p->open);
    for (int i = 0; i < p->nspare; i++)
        st_batch_free(p->spare[i]);
    st_copy_scratch_clear(&p->scratch);
    for (size_t i = 0; i < p->nwaiters; i++) /* never answered: the writers are gone */
        p->waiters[i].fn(p->waiters[i].arg, false);
    free(p->waiters);
    free(p->back);
    free(p);
}
