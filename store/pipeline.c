/*
 * store/pipeline.c — timestamp policy, spooling, batching and backpressure.
 *
 * Place: see store/pipeline.h.
 * Threads: event-loop thread only.
 * Traps: DESIGN.md "Timestamps": no event is refused for its timestamp; one outside
 *        [first day of (this month - accept_past_months), now + 1 day] is stored at
 *        its receive time with the original in extra_data.original_timestamp, so a
 *        bogus date never creates a partition far away.
 *        Batches land out of order with several writers; the FIFO of submitted
 *        batches turns that into "everything up to X landed" for waiters and into
 *        the committed spool prefix that lets old segments go.
 */
#include "store/pipeline.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/log.h"
#include "store/copy.h"
#include "store/writer.h"

#define BATCH_MAX_BYTES (8 * 1024 * 1024)
#define SPARE_BATCHES 2
#define MAX_DRAIN 8
#define MAX_TAPS 4

/* A submitted batch, until it and every batch before it are back. */
struct flight {
    uint64_t seq;
    uint64_t end;      /* spool position after its last record */
    int64_t opened_us; /* when its first event arrived */
    bool back;         /* landed */
};

struct waiter {
    uint64_t from, to; /* answered once the spool records [from, to) have landed */
    size_t refused;    /* of those, rows PostgreSQL refused */
    st_pipeline_wait_fn fn;
    void *arg;
};

struct st_pipeline {
    struct event_base *base;
    struct st_writer *writer;
    struct st_spool *spool;
    char stream[48]; /* checkpoint stream of the spool */
    struct st_batch *open;
    struct st_batch *spare[SPARE_BATCHES];
    int nspare;
    struct event *timer;
    struct event *tick; /* notices a spool that recovered with no batch in flight */
    struct event *readback_timer; /* waits for spilled records to reach the disk */
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
    struct agg_buf record; /* the spool record being written */
    struct {
        void (*fn)(void *arg);
        void *arg;
    } drain[MAX_DRAIN];
    int ndrain;
    struct {
        st_pipeline_tap_fn fn;
        void *arg;
    } taps[MAX_TAPS];
    int ntaps;
    struct flight *flights; /* submitted batches not yet settled, in seq order */
    size_t nflights, cap_flights;
    uint64_t prefix;      /* every spool position below it is committed */
    uint64_t tail;        /* the spool position after the newest record */
    /* Spilled: while the writers are behind, records [spill_from, spill_to) live only
     * in the spool; they are read back, in order, before the open batch goes out. */
    bool spilling;
    uint64_t spill_from, spill_to;
    int64_t spill_since_us;
    struct st_batch *rb; /* the batch being read back into */
    uint64_t rb_limit, rb_next;
    bool lost;            /* a batch came back not landed (stopping) */
    bool stopped;         /* the writers are gone: nothing more is submitted */
    struct waiter *waiters;
    size_t nwaiters, cap_waiters;
    /* replay */
    bool replaying;
    uint64_t replay_from;
    void (*replay_done)(void *arg);
    void *replay_arg;
    _Atomic int64_t *counts[AGG_TRANSPORT_COUNT][ST_COUNT_KINDS];
    _Atomic int64_t *accepted[AGG_TRANSPORT_COUNT];
    _Atomic int64_t *out_of_window, *replayed, *spool_refused, *spilled;
    _Atomic int64_t *user_id_kept; /* a user_id that is not an INTEGER, kept in extra_data */
};

static const char *const transport_labels[AGG_TRANSPORT_COUNT] = {
    "transport=\"syslog_udp\"", "transport=\"syslog_tcp\"", "transport=\"json_tcp\"",
    "transport=\"http\""};

static const struct {
    const char *name;
    const char *help;
} count_metrics[ST_COUNT_KINDS] = {
    [ST_COUNT_RECEIVED] = {"aggd_events_received_total",
                            "Events received: accepted + rejected + dropped."},
    [ST_COUNT_REJECTED] = {"aggd_events_rejected_total",
                            "Events that could not be parsed or decoded, kept in ingest_rejects."},
    [ST_COUNT_DROPPED] = {"aggd_events_dropped_total",
                           "Events received but neither spooled nor kept in ingest_rejects."},
    [ST_COUNT_BYTES] = {"aggd_bytes_received_total",
                         "Bytes read off the wire (HTTP: request bodies before decompression)."},
    [ST_COUNT_OVERSIZED] = {"aggd_frames_oversized_total",
                             "Events over ingest.max_message_bytes, rejected."},
};

static void replay_more(struct st_pipeline *p);
static void read_back(struct st_pipeline *p);

static bool open_at_limit_of(const struct st_pipeline *p, const struct st_batch *b)
{
    return b != NULL && ((int64_t)(b->nrows + b->nrejects) >= p->max_rows ||
                         b->copy.len >= BATCH_MAX_BYTES / 4);
}

static bool open_at_limit(const struct st_pipeline *p)
{
    return open_at_limit_of(p, p->open);
}

static bool writers_busy(const struct st_pipeline *p)
{
    return st_writer_inflight(p->writer) >= p->max_inflight;
}

/* While every writer is busy, the open batch grows past batch.max_rows, up to two
 * batches' worth or BATCH_MAX_BYTES: room for bursts, and memory stays bounded. */
static bool open_overfull(const struct st_pipeline *p)
{
    return p->open != NULL && ((int64_t)(p->open->nrows + p->open->nrejects) >= 2 * p->max_rows ||
                               p->open->copy.len >= BATCH_MAX_BYTES);
}

/* More in memory would be too much: the writers are behind and the open batch is
 * at its largest. */
static bool backlogged(const struct st_pipeline *p)
{
    return open_overfull(p) && writers_busy(p);
}

bool st_pipeline_is_full(const struct st_pipeline *p)
{
    return st_spool_is_full(p->spool);
}

bool st_pipeline_is_spool_full(const struct st_pipeline *p)
{
    return st_spool_is_full(p->spool) && !st_spool_is_behind(p->spool);
}

void st_pipeline_problem(const struct st_pipeline *p, char *why, size_t size)
{
    if (st_spool_is_full(p->spool))
        st_spool_problem(p->spool, why, size);
    else if (p->replaying)
        snprintf(why, size, "replaying the spool");
    else
        why[0] = '\0';
}

bool st_pipeline_accepting(const struct st_pipeline *p)
{
    return !p->replaying;
}

static int push_flight(struct st_pipeline *p, const struct st_batch *b)
{
    if (agg_grow((void **)&p->flights, sizeof(*p->flights), &p->cap_flights,
                 p->nflights + 1) != AGG_OK)
        return AGG_ENOMEM;
    p->flights[p->nflights++] = (struct flight){b->seq, b->end, b->opened_us, false};
    return AGG_OK;
}

/* Hands <b> to the writers, after every batch before it. */
static int submit(struct st_pipeline *p, struct st_batch *b)
{
    if (push_flight(p, b) != AGG_OK)
        return AGG_ENOMEM;
    b->stream = p->stream;
    b->prefix = p->prefix;
    st_writer_submit(p->writer, b);
    return AGG_OK;
}

/* Hands the open batch to the writers if a slot is free and nothing spilled is
 * before it; else remembers to. */
static void submit_open(struct st_pipeline *p)
{
    struct st_batch *b = p->open;

    if (b == NULL || st_batch_is_empty(b) || p->stopped) {
        p->flush_wanted = false;
        return;
    }
    if (p->spilling || writers_busy(p) || submit(p, b) != AGG_OK) {
        p->flush_wanted = true;
        return;
    }
    if (p->timer_armed) {
        evtimer_del(p->timer);
        p->timer_armed = false;
    }
    p->open = NULL;
    p->flush_wanted = false;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct st_pipeline *p = arg;

    (void)fd;
    (void)what;
    p->timer_armed = false;
    submit_open(p);
}

/* Something added is not landed yet. */
static bool pending(const struct st_pipeline *p)
{
    return p->nflights > 0 || p->spilling || (p->open != NULL && !st_batch_is_empty(p->open));
}

/* Answers the waiters whose records have all landed. */
static void answer_waiters(struct st_pipeline *p)
{
    size_t kept = 0;
    bool all = !pending(p);

    for (size_t i = 0; i < p->nwaiters; i++) {
        struct waiter w = p->waiters[i];

        if (all || w.to <= p->prefix)
            w.fn(w.arg, !p->lost, w.refused);
        else
            p->waiters[kept++] = w;
    }
    p->nwaiters = kept;
}

/* Batch <b> has landed: count its refused rows for their waiters, advance what is
 * settled, release the spool, answer the waiters this completes. */
static void note_landed(struct st_pipeline *p, const struct st_batch *b)
{
    size_t settled = 0;

    for (size_t i = 0; b->rejected > 0 && i < b->nrows; i++) {
        for (size_t k = 0; b->rows[i].refused && k < p->nwaiters; k++) {
            if (b->rows[i].pos >= p->waiters[k].from && b->rows[i].pos < p->waiters[k].to)
                p->waiters[k].refused++;
        }
    }
    for (size_t i = 0; i < p->nflights; i++) {
        if (p->flights[i].seq == b->seq)
            p->flights[i].back = true;
    }
    while (settled < p->nflights && p->flights[settled].back) {
        p->prefix = p->flights[settled].end;
        settled++;
    }
    if (settled == 0)
        return;
    memmove(p->flights, p->flights + settled, (p->nflights - settled) * sizeof(*p->flights));
    p->nflights -= settled;
    st_spool_release(p->spool, p->prefix);
    answer_waiters(p);
}

static void drain_if_free(struct st_pipeline *p)
{
    if (p->was_full && !st_pipeline_is_full(p)) {
        p->was_full = false;
        for (int i = 0; i < p->ndrain; i++)
            p->drain[i].fn(p->drain[i].arg);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct st_pipeline *p = arg;

    (void)fd;
    (void)what;
    if (p->replaying)
        return;
    read_back(p); /* after a failed read */
    drain_if_free(p);
}

static void on_batch_done(void *arg, struct st_batch *b)
{
    struct st_pipeline *p = arg;

    if (b->done) {
        note_landed(p, b);
    } else {
        /* stopping: its records stay in the spool for the next start */
        p->lost = true;
        AGG_LOG_WARN("pipeline", "%zu rows left in the spool for the next start",
                     b->nrows - b->progress);
    }
    if (p->nspare < SPARE_BATCHES && b->copy.cap <= 2 * BATCH_MAX_BYTES) {
        st_batch_reset(b);
        p->spare[p->nspare++] = b;
    } else {
        st_batch_free(b);
    }
    if (p->replaying) {
        if (p->flush_wanted || open_at_limit(p))
            submit_open(p);
        replay_more(p);
        return;
    }
    read_back(p);
    if (p->flush_wanted || open_at_limit(p))
        submit_open(p);
    drain_if_free(p);
}

int64_t st_pipeline_window_low(int64_t now_us, int64_t accept_past_months)
{
    return agg_time_month_start_us(agg_time_month_of_us(now_us) - (int)accept_past_months);
}

int64_t st_pipeline_stamp(int64_t created_us, int64_t received_us, int64_t window_low_us,
                          int64_t *original_us)
{
    *original_us = AGG_TIME_NONE;
    if (created_us == AGG_TIME_NONE)
        return received_us;
    if (created_us < window_low_us || created_us > received_us + 86400 * AGG_US_PER_SEC) {
        *original_us = created_us;
        return received_us;
    }
    return created_us;
}

static int64_t window_low(struct st_pipeline *p, int64_t now_us)
{
    int64_t sec = now_us / AGG_US_PER_SEC;

    if (sec != p->window_sec) {
        p->window_lo_us = st_pipeline_window_low(now_us, p->accept_past_months);
        p->window_sec = sec;
    }
    return p->window_lo_us;
}

/* Makes sure there is an open batch, and starts its batch.max_ms clock. */
static int open_batch(struct st_pipeline *p, int64_t now_us)
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

/* Spools the newest row (or reject) of the open batch; undoes it on failure. */
static int spool_last(struct st_pipeline *p, bool reject)
{
    struct st_batch *b = p->open;
    size_t i = reject ? b->nrejects - 1 : b->nrows - 1;
    uint64_t pos, next;
    int rc = st_batch_record(b, i, reject, &p->record);

    if (rc == AGG_OK)
        rc = st_spool_append(p->spool, p->record.data, p->record.len, &pos, &next);
    if (rc != AGG_OK) {
        st_batch_drop_last(b, reject);
        if (rc == AGG_EFULL)
            agg_metric_inc(p->spool_refused, 1);
        return rc;
    }
    st_batch_place_last(b, reject, pos, next);
    p->tail = next;
    return AGG_OK;
}

/* The writers are behind: the open batch leaves memory; its records stay in the spool
 * and are read back when a writer is free. */
static void spill_open(struct st_pipeline *p)
{
    struct st_batch *b = p->open;

    if (!p->spilling) {
        p->spilling = true;
        p->spill_from = b->start;
        p->spill_since_us = b->opened_us;
        AGG_LOG_DEBUG("pipeline", "writers are behind: events wait in the spool");
    }
    p->spill_to = b->end;
    agg_metric_inc(p->spilled, (int64_t)(b->nrows + b->nrejects));
    if (p->timer_armed) {
        evtimer_del(p->timer);
        p->timer_armed = false;
    }
    st_batch_reset(b);
}

static void after_add(struct st_pipeline *p)
{
    if (open_at_limit(p))
        submit_open(p);
    if ((p->spilling && open_at_limit(p)) || backlogged(p))
        spill_open(p);
    if (st_pipeline_is_full(p))
        p->was_full = true;
}

int st_pipeline_add(struct st_pipeline *p, const struct agg_record *rec,
                     enum agg_transport transport, const char *peer, int64_t received_us)
{
    int64_t original, created;
    int rc;

    created = st_pipeline_stamp(rec->created_us, received_us, window_low(p, received_us),
                                &original);
    if (open_batch(p, received_us) != AGG_OK ||
        st_batch_add(p->open, rec, created, original, transport, peer, received_us,
                     &p->scratch) != AGG_OK)
        return AGG_ENOMEM;
    rc = spool_last(p, false);
    if (rc != AGG_OK) {
        p->was_full = true;
        return rc;
    }
    if (original != AGG_TIME_NONE)
        agg_metric_inc(p->out_of_window, 1);
    if (rec->user_id_orig.p != NULL)
        agg_metric_inc(p->user_id_kept, 1);
    agg_metric_inc(p->accepted[transport], 1);
    agg_metric_inc(p->counts[transport][ST_COUNT_RECEIVED], 1);
    for (int i = 0; i < p->ntaps; i++)
        p->taps[i].fn(p->taps[i].arg, rec, created);
    after_add(p);
    return AGG_OK;
}

int st_pipeline_reject(struct st_pipeline *p, enum agg_transport transport, const char *peer,
                        int64_t received_us, const char *why, const char *raw, size_t len)
{
    int rc;

    if (open_batch(p, received_us) != AGG_OK ||
        st_batch_add_reject(p->open, transport, peer, received_us, why, raw, len) != AGG_OK)
        return AGG_ENOMEM;
    rc = spool_last(p, true);
    if (rc != AGG_OK) {
        p->was_full = true;
        return rc;
    }
    agg_metric_inc(p->counts[transport][ST_COUNT_REJECTED], 1);
    agg_metric_inc(p->counts[transport][ST_COUNT_RECEIVED], 1);
    after_add(p);
    return AGG_OK;
}

void st_pipeline_count(struct st_pipeline *p, enum agg_transport transport,
                        enum st_count kind, int64_t n)
{
    agg_metric_inc(p->counts[transport][kind], n);
}

void st_pipeline_dropped(struct st_pipeline *p, enum agg_transport transport, int64_t n)
{
    agg_metric_inc(p->counts[transport][ST_COUNT_DROPPED], n);
    agg_metric_inc(p->counts[transport][ST_COUNT_RECEIVED], n);
}

int st_pipeline_tap(struct st_pipeline *p, st_pipeline_tap_fn fn, void *arg)
{
    if (p->ntaps == MAX_TAPS)
        return AGG_EFULL;
    p->taps[p->ntaps].fn = fn;
    p->taps[p->ntaps].arg = arg;
    p->ntaps++;
    return AGG_OK;
}

void st_pipeline_untap(struct st_pipeline *p, st_pipeline_tap_fn fn, void *arg)
{
    int kept = 0;

    for (int i = 0; i < p->ntaps; i++)
        if (p->taps[i].fn != fn || p->taps[i].arg != arg)
            p->taps[kept++] = p->taps[i];
    p->ntaps = kept;
}

int st_pipeline_on_drain(struct st_pipeline *p, void (*fn)(void *arg), void *arg)
{
    if (p->ndrain == MAX_DRAIN)
        return AGG_EFULL;
    p->drain[p->ndrain].fn = fn;
    p->drain[p->ndrain].arg = arg;
    p->ndrain++;
    return AGG_OK;
}

void st_pipeline_off_drain(struct st_pipeline *p, void (*fn)(void *arg), void *arg)
{
    int kept = 0;

    for (int i = 0; i < p->ndrain; i++) {
        if (p->drain[i].fn != fn || p->drain[i].arg != arg)
            p->drain[kept++] = p->drain[i];
    }
    p->ndrain = kept;
}

uint64_t st_pipeline_tail(const struct st_pipeline *p)
{
    return p->tail;
}

int st_pipeline_wait(struct st_pipeline *p, uint64_t from, st_pipeline_wait_fn fn, void *arg)
{
    if (p->stopped) {
        fn(arg, false, 0); /* it stays in the spool for the next start */
        return AGG_OK;
    }
    if (!pending(p) || p->tail <= p->prefix) {
        fn(arg, !p->lost, 0); /* landed already */
        return AGG_OK;
    }
    if (agg_grow((void **)&p->waiters, sizeof(*p->waiters), &p->cap_waiters,
                 p->nwaiters + 1) != AGG_OK)
        return AGG_ENOMEM;
    p->waiters[p->nwaiters++] = (struct waiter){from, p->tail, 0, fn, arg};
    submit_open(p);
    return AGG_OK;
}

int st_pipeline_sync(struct st_pipeline *p, void (*fn)(void *arg), void *arg)
{
    return st_spool_sync(p->spool, fn, arg);
}

/* ---- replay ------------------------------------------------------------------ */

static int replay_one(void *arg, uint64_t pos, uint64_t next, const void *rec, size_t len)
{
    struct st_pipeline *p = arg;
    int rc;

    if (backlogged(p)) {
        p->replay_from = pos; /* go on from here when writers free up */
        return 1;
    }
    if (open_batch(p, agg_time_now_us()) != AGG_OK)
        return -1;
    p->open->replayed = true;
    rc = st_batch_add_record(p->open, rec, len, pos, next);
    if (rc == AGG_EINVAL) {
        AGG_LOG_WARN("pipeline", "spool record at %llu is not an event; skipped",
                     (unsigned long long)pos);
        return 0;
    }
    if (rc != AGG_OK) {
        p->replay_from = pos;
        return -1;
    }
    p->tail = next;
    agg_metric_inc(p->replayed, 1);
    if (open_at_limit(p))
        submit_open(p);
    return 0;
}

static void replay_more(struct st_pipeline *p)
{
    struct agg_err err = {0};
    uint64_t from = p->replay_from;
    int rc;

    p->replay_from = UINT64_MAX;
    rc = st_spool_read(p->spool, from, replay_one, p, &err);
    if (rc == 1 || (rc < 0 && p->replay_from != UINT64_MAX))
        return; /* paused: more after the next batch lands */
    if (rc < 0)
        AGG_LOG_ERR("pipeline", "could not read the spool: %s", err.msg);
    p->replaying = false;
    submit_open(p);
    AGG_LOG_INFO("pipeline", "spool replay queued");
    p->replay_done(p->replay_arg);
}

void st_pipeline_replay(struct st_pipeline *p, void (*done)(void *arg), void *arg)
{
    p->replaying = true;
    p->replay_done = done;
    p->replay_arg = arg;
    p->replay_from = 0;
    replay_more(p);
}

/* ---- reading spilled records back -------------------------------------------- */

#define READBACK_WAIT_MS 5

static int readback_one(void *arg, uint64_t pos, uint64_t next, const void *rec, size_t len)
{
    struct st_pipeline *p = arg;
    struct st_batch *b = p->rb;
    int rc;

    if (pos >= p->rb_limit || open_at_limit_of(p, b)) {
        p->rb_next = pos;
        return 1;
    }
    rc = st_batch_add_record(b, rec, len, pos, next);
    if (rc == AGG_EINVAL) {
        AGG_LOG_WARN("pipeline", "spool record at %llu is not an event; skipped",
                     (unsigned long long)pos);
    } else if (rc != AGG_OK) {
        return -1;
    } else if (b->opened_us == 0) {
        b->opened_us = b->nrows > 0 ? b->rows[0].received_us : b->rejects[0].received_us;
    }
    p->rb_next = next;
    return 0;
}

static void on_readback_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    read_back(arg);
}

static void end_spill(struct st_pipeline *p)
{
    p->spilling = false;
    AGG_LOG_DEBUG("pipeline", "writers caught up with the spool");
    if (p->flush_wanted || open_at_limit(p))
        submit_open(p);
}

/* While writer slots are free, reads spilled records back from the spool into batches
 * and submits them, in spool order; records not yet on disk are waited for. */
static void read_back(struct st_pipeline *p)
{
    while (p->spilling && !p->stopped && !writers_busy(p)) {
        uint64_t durable = st_spool_durable(p->spool);
        uint64_t limit = durable < p->spill_to ? durable : p->spill_to;
        struct agg_err err = {0};
        struct st_batch *b;
        int rc;

        if (p->spill_from >= p->spill_to) {
            end_spill(p);
            return;
        }
        if (p->spill_from >= limit) {
            struct timeval tv = {0, READBACK_WAIT_MS * 1000};

            if (!evtimer_pending(p->readback_timer, NULL))
                evtimer_add(p->readback_timer, &tv);
            return;
        }
        b = p->nspare > 0 ? p->spare[--p->nspare] : st_batch_new();
        if (b == NULL)
            return; /* the tick tries again */
        b->seq = p->next_seq++;
        p->rb = b;
        p->rb_limit = limit;
        p->rb_next = p->spill_from;
        rc = st_spool_read(p->spool, p->spill_from, readback_one, p, &err);
        p->rb = NULL;
        p->spill_from = p->rb_next;
        if (rc == AGG_OK && limit == p->spill_to)
            p->spill_from = p->spill_to; /* the rest was damage, passed over */
        if (rc < 0 && err.msg[0] != '\0')
            AGG_LOG_ERR("pipeline", "could not read spilled events back: %s", err.msg);
        if (!st_batch_is_empty(b) && submit(p, b) == AGG_OK)
            continue;
        if (!st_batch_is_empty(b))
            p->spill_from = b->start; /* not submitted: read again */
        st_batch_reset(b);
        if (p->nspare < SPARE_BATCHES)
            p->spare[p->nspare++] = b;
        else
            st_batch_free(b);
        if (rc < 0)
            return; /* the tick tries again */
        if (rc == AGG_OK && p->spill_from < p->spill_to) {
            struct timeval tv = {0, READBACK_WAIT_MS * 1000};

            evtimer_add(p->readback_timer, &tv); /* nothing readable yet */
            return;
        }
    }
}

/* ---- setup ------------------------------------------------------------------- */

static double spool_bytes(void *arg)
{
    return (double)st_spool_bytes(arg);
}

static double spool_segments(void *arg)
{
    return (double)st_spool_segments(arg);
}

static double oldest_age(void *arg)
{
    struct st_pipeline *p = arg;
    int64_t oldest = 0;

    if (p->nflights > 0)
        oldest = p->flights[0].opened_us;
    else if (p->spilling)
        oldest = p->spill_since_us;
    else if (p->open != NULL && !st_batch_is_empty(p->open))
        oldest = p->open->opened_us;
    return oldest == 0 ? 0 : (double)(agg_time_now_us() - oldest) / 1e6;
}

static double backlog_bytes(void *arg)
{
    const struct st_pipeline *p = arg;

    return p->spilling ? (double)(p->spill_to - p->spill_from) : 0;
}

static int register_metrics(struct st_pipeline *p, struct agg_metrics *m)
{
    for (int k = 0; k < ST_COUNT_KINDS; k++) {
        for (int t = 0; t < AGG_TRANSPORT_COUNT; t++) {
            p->counts[t][k] = agg_metrics_add(m, AGG_METRIC_COUNTER, count_metrics[k].name,
                                              transport_labels[t], count_metrics[k].help);
            if (p->counts[t][k] == NULL)
                return AGG_ENOMEM;
        }
    }
    for (int t = 0; t < AGG_TRANSPORT_COUNT; t++) {
        p->accepted[t] = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_events_accepted_total",
                                         transport_labels[t],
                                         "Events accepted (spooled and batched).");
        if (p->accepted[t] == NULL)
            return AGG_ENOMEM;
    }
    p->out_of_window = agg_metrics_add(
        m, AGG_METRIC_COUNTER, "aggd_events_out_of_window_total", NULL,
        "Events stored at their receive time because their timestamp was out of range.");
    p->user_id_kept = agg_metrics_add(
        m, AGG_METRIC_COUNTER, "aggd_events_user_id_not_integer_total", NULL,
        "Events whose user_id is not an INTEGER: stored with user_id NULL, the value in "
        "extra_data.user_id.");
    p->replayed = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_spool_replayed_total", NULL,
                                  "Spool records replayed at start.");
    p->spool_refused = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_spool_refused_total", NULL,
                                       "Events refused because the spool was full or failing.");
    p->spilled = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_spool_spilled_total", NULL,
                                 "Events left only in the spool while the writers were behind, "
                                 "read back later.");
    if (p->out_of_window == NULL || p->replayed == NULL || p->spool_refused == NULL ||
        p->spilled == NULL || p->user_id_kept == NULL ||
        agg_metrics_add_fn(m, "aggd_spool_backlog_bytes", NULL,
                           "Spool bytes waiting to be read back for the writers.", backlog_bytes,
                           p) != AGG_OK ||
        agg_metrics_add_fn(m, "aggd_spool_bytes", NULL, "Bytes in the spool.", spool_bytes,
                           p->spool) != AGG_OK ||
        agg_metrics_add_fn(m, "aggd_spool_segments", NULL, "Spool segment files.",
                           spool_segments, p->spool) != AGG_OK ||
        agg_metrics_add_fn(m, "aggd_oldest_uncommitted_seconds", NULL,
                           "Age of the oldest event not yet committed.", oldest_age,
                           p) != AGG_OK)
        return AGG_ENOMEM;
    return AGG_OK;
}

struct st_pipeline *st_pipeline_new(struct event_base *base, const struct st_pipeline_opts *opts,
                                      struct st_pool *pool, struct st_spool *spool,
                                      struct agg_metrics *metrics, struct agg_err *err)
{
    struct st_pipeline *p = agg_calloc(1, sizeof(*p));
    struct st_writer_opts wopts = {.threads = (int)opts->writer.threads,
                                   .grace_ms = (int)opts->writer.grace_seconds * 1000};

    if (p == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    p->base = base;
    p->spool = spool;
    snprintf(p->stream, sizeof(p->stream), "spool-%s", st_spool_id(spool));
    p->max_rows = opts->batch.max_rows;
    p->max_ms = opts->batch.max_ms;
    p->max_inflight = (size_t)opts->writer.threads * 2;
    p->accept_past_months = opts->accept_past_months;
    p->window_sec = -1;
    st_copy_scratch_init(&p->scratch);
    agg_buf_init(&p->record);
    p->timer = evtimer_new(base, on_timer, p);
    p->tick = event_new(base, -1, EV_PERSIST, on_tick, p);
    p->readback_timer = evtimer_new(base, on_readback_timer, p);
    if (p->timer == NULL || p->tick == NULL || p->readback_timer == NULL || event_add(p->tick, &(struct timeval){1, 0}) != 0 ||
        register_metrics(p, metrics) != AGG_OK) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    p->writer = st_writer_new(base, pool, &wopts, metrics, on_batch_done, p, err);
    if (p->writer == NULL)
        goto fail;
    return p;

fail:
    st_pipeline_free(p);
    return NULL;
}

void st_pipeline_shutdown(struct st_pipeline *p)
{
    if (p == NULL || p->writer == NULL || p->stopped)
        return;
    /* past the slot limit: we are stopping; behind spilled records it waits in the
     * spool for the next start like them */
    if (p->open != NULL && !st_batch_is_empty(p->open) && !p->spilling &&
        submit(p, p->open) == AGG_OK)
        p->open = NULL;
    p->stopped = true; /* batches coming back while the writers stop start nothing new */
    st_writer_stop(p->writer);
}

void st_pipeline_free(struct st_pipeline *p)
{
    if (p == NULL)
        return;
    st_pipeline_shutdown(p);
    st_writer_free(p->writer);
    if (p->timer != NULL)
        event_free(p->timer);
    if (p->tick != NULL)
        event_free(p->tick);
    if (p->readback_timer != NULL)
        event_free(p->readback_timer);
    st_batch_free(p->open);
    for (int i = 0; i < p->nspare; i++)
        st_batch_free(p->spare[i]);
    st_copy_scratch_clear(&p->scratch);
    agg_buf_clear(&p->record);
    for (size_t i = 0; i < p->nwaiters; i++) /* never answered: the writers are gone */
        p->waiters[i].fn(p->waiters[i].arg, false, 0);
    free(p->waiters);
    free(p->flights);
    free(p);
}

/* ---- invariants --------------------------------------------------------------- */

static int check_flights(const struct st_pipeline *p, struct agg_err *err)
{
    size_t out = 0;

    for (size_t i = 0; i < p->nflights; i++) {
        const struct flight *f = &p->flights[i];

        /* seqs are unique, not ordered: a spilled open batch keeps its seq while the
         * batches read back before it get new ones */
        for (size_t k = 0; k < i; k++) {
            if (p->flights[k].seq == f->seq)
                return agg_err_set(err, AGG_ERR, "flights %zu and %zu share seq %" PRIu64, k,
                                   i, f->seq);
        }
        if (i > 0 && f->end < f[-1].end)
            return agg_err_set(err, AGG_ERR,
                               "flight %zu (seq %" PRIu64 ", to %" PRIu64 ") after seq %" PRIu64
                               " to %" PRIu64,
                               i, f->seq, f->end, f[-1].seq, f[-1].end);
        if (f->end < p->prefix || f->seq >= p->next_seq)
            return agg_err_set(err, AGG_ERR, "flight %zu ends at %" PRIu64 " before the "
                               "prefix %" PRIu64 " or has seq %" PRIu64 " not yet given",
                               i, f->end, p->prefix, f->seq);
        out += !f->back;
    }
    if (p->nflights > 0 && p->flights[0].back)
        return agg_err_set(err, AGG_ERR, "the oldest flight is back but not settled");
    /* a batch that came back unlanded (stopping) stays a flight */
    if (p->writer != NULL && (p->lost ? out < st_writer_inflight(p->writer)
                                      : out != st_writer_inflight(p->writer)))
        return agg_err_set(err, AGG_ERR, "%zu flights out, the writer holds %zu", out,
                           st_writer_inflight(p->writer));
    return AGG_OK;
}

/* prefix <= spill_from <= spill_to <= open batch <= tail, each after what is in flight. */
static int check_positions(const struct st_pipeline *p, struct agg_err *err)
{
    uint64_t flown = p->nflights > 0 ? p->flights[p->nflights - 1].end : p->prefix;
    const struct st_batch *o = p->open;

    if (p->prefix > p->tail)
        return agg_err_set(err, AGG_ERR, "prefix %" PRIu64 " past the tail %" PRIu64,
                           p->prefix, p->tail);
    if (p->spilling && (p->replaying || p->spill_from < p->prefix ||
                        p->spill_from > p->spill_to || p->spill_to > p->tail ||
                        p->spill_from < flown))
        return agg_err_set(err, AGG_ERR,
                           "spilled [%" PRIu64 ", %" PRIu64 ") outside [%" PRIu64 ", %" PRIu64
                           "] or before a batch in flight (to %" PRIu64 ")",
                           p->spill_from, p->spill_to, p->prefix, p->tail, flown);
    if (o != NULL && !st_batch_is_empty(o) &&
        (o->end > p->tail || o->start < flown || (p->spilling && o->start < p->spill_to)))
        return agg_err_set(err, AGG_ERR,
                           "open batch [%" PRIu64 ", %" PRIu64 ") not after what is in flight "
                           "or spilled, or past the tail %" PRIu64,
                           o->start, o->end, p->tail);
    return AGG_OK;
}

static int check_waiters(const struct st_pipeline *p, struct agg_err *err)
{
    for (size_t i = 0; i < p->nwaiters; i++) {
        const struct waiter *w = &p->waiters[i];

        if (w->fn == NULL || w->to > p->tail || w->to <= p->prefix ||
            (i > 0 && w->to < w[-1].to))
            return agg_err_set(err, AGG_ERR,
                               "waiter %zu for [%" PRIu64 ", %" PRIu64 ") unsorted, answered "
                               "late or past the tail",
                               i, w->from, w->to);
    }
    return AGG_OK;
}

static int check_counts(const struct st_pipeline *p, struct agg_err *err)
{
    for (int t = 0; t < AGG_TRANSPORT_COUNT; t++) {
        int64_t seen = atomic_load(p->counts[t][ST_COUNT_RECEIVED]);
        int64_t fates = atomic_load(p->accepted[t]) +
                        atomic_load(p->counts[t][ST_COUNT_REJECTED]) +
                        atomic_load(p->counts[t][ST_COUNT_DROPPED]);

        if (seen != fates)
            return agg_err_set(err, AGG_ERR,
                               "%s: %" PRId64 " received, %" PRId64 " accepted + rejected + "
                               "dropped",
                               transport_labels[t], seen, fates);
    }
    return AGG_OK;
}

int st_pipeline_check(const struct st_pipeline *p, struct agg_err *err)
{
    if (p->nspare < 0 || p->nspare > SPARE_BATCHES || p->ndrain < 0 || p->ndrain > MAX_DRAIN ||
        p->ntaps < 0 || p->ntaps > MAX_TAPS || p->nflights > p->cap_flights ||
        p->nwaiters > p->cap_waiters || p->rb != NULL)
        return agg_err_set(err, AGG_ERR, "counts past their bounds, or a read-back left over");
    for (int i = 0; i < p->nspare; i++) {
        if (!st_batch_is_empty(p->spare[i]) || p->spare[i]->copy.len != 0 ||
            p->spare[i]->raw.len != 0)
            return agg_err_set(err, AGG_ERR, "spare batch %d is not empty", i);
    }
    if (p->timer_armed != (evtimer_pending(p->timer, NULL) != 0))
        return agg_err_set(err, AGG_ERR, "batch timer armed %d, pending %d", p->timer_armed,
                           evtimer_pending(p->timer, NULL) != 0);
    if (p->open != NULL && st_batch_check(p->open, err) != AGG_OK) {
        agg_err_prefix(err, "open batch");
        return AGG_ERR;
    }
    if (check_flights(p, err) != AGG_OK || check_positions(p, err) != AGG_OK ||
        check_waiters(p, err) != AGG_OK || check_counts(p, err) != AGG_OK)
        return AGG_ERR;
    return AGG_OK;
}
