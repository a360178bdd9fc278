/*
 * rules/dispatch.c — claim, send, record.
 *
 * Place: see rules/dispatch.h.
 * Threads: see rules/dispatch.h.
 * Traps: the webhook timestamp is taken per attempt (receivers reject stale ones);
 *        the webhook-id stays the row's message id across attempts.
 *        Each claim is a batch with its own job: claims go on while earlier batches'
 *        sends are in flight (a receiver that hangs until the timeout must not hold
 *        back the rows queued after its claim), one claim at a time, up to
 *        INFLIGHT_MAX claimed rows. A batch is freed by the job_done that does not
 *        hand it to sends (empty, failed, claimed during a stop), or by its
 *        recording's (or the stop's release) job_done.
 *        A stop cancels the sends, records the attempts that have an outcome and hands
 *        the others back (pending), so that a restart or another daemon sends them at
 *        once; only a crash leaves rows 'sending', until their lease ends.
 */
#include "rules/dispatch.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/buf.h"
#include "core/time.h"
#include "rules/httpc.h"
#include "rules/outbox.h"
#include "rules/render.h"
#include "rules/sign.h"
#include "rules/smtp.h"
#include "core/alloc.h"
#include "core/log.h"

#define CLAIM_LIMIT 32
/* Claimed rows not yet recorded, across batches: bounds the connections in flight. */
#define INFLIGHT_MAX (4 * CLAIM_LIMIT)
#define CHANNELS 3

enum phase {
    PHASE_CLAIMING = 0,
    PHASE_SENDING,
    PHASE_RECORDING,
    PHASE_RELEASING, /* the stop's: record what has an outcome, hand back the rest */
};

struct batch;

struct attempt {
    struct batch *b;
    struct rl_outbox_row *row;
    struct rl_outbox_outcome o;
    bool settled; /* o is the outcome */
};

/* One claim's rows, from the claim until their recording (or the stop's release). */
struct batch {
    struct st_job job; /* first: the queue link */
    struct rl_dispatch *d;
    struct batch *prev, *next; /* d->batches, once claimed rows are being sent */
    enum phase phase;
    int limit;                  /* the claim's */
    int64_t lease_us;           /* the claim's (a reload may change d's meanwhile) */
    int64_t skip[INFLIGHT_MAX]; /* the claim's: ids of the rows in flight, never reclaimed */
    size_t nskip;
    struct rl_outbox_row *rows;
    size_t nrows;
    struct attempt *attempts;
    size_t outstanding;
    int released;
    int rc;
    struct agg_err err;
};

struct rl_dispatch {
    struct event_base *base;
    const struct agg_notify_opts *opts;
    struct st_jobs *jobs;
    struct rl_httpc *http;
    struct rl_smtp *smtp;
    struct event *timer;
    bool claiming; /* a claim's job is queued or running */
    bool kicked;   /* claim again once the claim in flight is done, or room is made */
    bool stopping;
    atomic_bool halting; /* stopping, as the job thread sees it */
    int64_t lease_us;
    int released; /* rows the stop handed back */
    struct batch *batches;
    size_t inflight; /* rows of d->batches */
    _Atomic int64_t *counts[CHANNELS][RL_DELIVERY_COUNT];
};

static const char *const channel_names[CHANNELS] = {"webhook", "slack", "email"};

static int channel_index(const char *channel)
{
    for (int i = 0; i < CHANNELS; i++) {
        if (strcmp(channel, channel_names[i]) == 0)
            return i;
    }
    return -1;
}

static void batch_free(struct batch *b)
{
    rl_outbox_rows_free(b->rows, b->nrows);
    free(b->attempts);
    free(b);
}

static void batch_link(struct rl_dispatch *d, struct batch *b)
{
    b->prev = NULL;
    b->next = d->batches;
    if (d->batches != NULL)
        d->batches->prev = b;
    d->batches = b;
    d->inflight += b->nrows;
}

/* Unlinks <b> from the batches being sent and frees it. */
static void batch_end(struct rl_dispatch *d, struct batch *b)
{
    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        d->batches = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
    d->inflight -= b->nrows;
    batch_free(b);
}

/* ---- the job: claim, record a batch, or release it at a stop ---- */

static void keep_error(struct batch *b, const struct agg_err *err)
{
    b->rc = err->code;
    b->err = *err; /* that row stays 'sending' until its lease ends */
}

/* Hands back the claimed rows that have no outcome, records those that have one. */
static void settle_batch(struct batch *b, PGconn *conn, int64_t now)
{
    b->released = 0;
    for (size_t i = 0; i < b->nrows; i++) {
        const struct attempt *a = b->attempts != NULL ? &b->attempts[i] : NULL;
        struct agg_err err = {0};
        bool released = false;
        int rc = a != NULL && a->settled
                     ? rl_outbox_record(conn, a->row, &a->o, now, &err)
                     : rl_outbox_release(conn, &b->rows[i], now, &released, &err);

        if (rc != AGG_OK)
            keep_error(b, &err);
        b->released += released;
    }
}

static void job_work(struct st_job *job, PGconn *conn, const struct agg_err *cerr)
{
    struct batch *b = (struct batch *)job;
    struct rl_dispatch *d = b->d;
    int64_t now = agg_time_now_us();

    b->released = 0;
    if (st_job_no_conn(conn, cerr, &b->rc, &b->err))
        return;
    b->rc = AGG_OK;
    if (b->phase == PHASE_CLAIMING) {
        if (atomic_load(&d->halting))
            return;
        b->rc = rl_outbox_claim(conn, now, b->lease_us, b->limit, b->skip, b->nskip, &b->rows,
                                &b->nrows, &b->err);
        if (atomic_load(&d->halting)) /* nobody will send them */
            settle_batch(b, conn, now);
    } else {
        settle_batch(b, conn, now);
    }
    job->conn_broken = b->rc == AGG_EDB;
}

static void job_done(struct st_job *job);
static void start_sends(struct rl_dispatch *d, struct batch *b);

/* Claims due rows in a new batch, unless a claim is in flight or INFLIGHT_MAX rows
 * are: then once that claim is done or a recording makes room. Our own rows in flight
 * are left alone even once their lease ended: their sends end within the timeout. */
static void claim(struct rl_dispatch *d)
{
    struct batch *b;
    size_t room;

    if (d->stopping)
        return;
    if (d->claiming || d->inflight >= INFLIGHT_MAX) {
        d->kicked = true;
        return;
    }
    b = agg_calloc(1, sizeof(*b));
    if (b == NULL) {
        AGG_LOG_WARN("notify", "out of memory claiming notifications; the next poll tries again");
        return;
    }
    d->kicked = false;
    d->claiming = true;
    b->d = d;
    b->job.fn = job_work;
    b->job.done = job_done;
    b->phase = PHASE_CLAIMING;
    room = INFLIGHT_MAX - d->inflight;
    b->limit = room < CLAIM_LIMIT ? (int)room : CLAIM_LIMIT;
    b->lease_us = d->lease_us;
    for (const struct batch *o = d->batches; o != NULL; o = o->next) {
        for (size_t i = 0; i < o->nrows; i++)
            b->skip[b->nskip++] = o->rows[i].id;
    }
    st_jobs_run(d->jobs, &b->job);
}

static void job_done(struct st_job *job)
{
    struct batch *b = (struct batch *)job;
    struct rl_dispatch *d = b->d;

    if (b->rc != AGG_OK)
        AGG_LOG_WARN("notify", "notification outbox: %s", b->err.msg);
    d->released += b->released;
    if (b->phase != PHASE_CLAIMING) {
        batch_end(d, b); /* recorded or released */
    } else {
        d->claiming = false;
        d->kicked = d->kicked || b->nrows == (size_t)b->limit; /* more may be due */
        if (b->nrows > 0 && !d->stopping) {
            batch_link(d, b);
            start_sends(d, b); /* the batch is the sends' until its record's job_done */
        } else {
            batch_free(b); /* empty, failed or claimed during a stop: nobody sends it */
        }
    }
    if (d->kicked)
        claim(d);
}

static void submit(struct batch *b, enum phase phase)
{
    b->phase = phase;
    st_jobs_run(b->d->jobs, &b->job);
}

/* ---- sending ---- */

static void count(struct rl_dispatch *d, const struct attempt *a)
{
    int c = channel_index(a->row->channel);

    if (c >= 0)
        agg_metric_inc(d->counts[c][a->o.delivery], 1);
}

/* One attempt has its outcome: the batch is recorded once every attempt has one. */
static void settle(struct attempt *a)
{
    struct batch *b = a->b;
    struct rl_dispatch *d = b->d;

    a->settled = true;
    if (a->o.delivery == RL_DELIVERY_RETRY)
        a->o.next_attempt_us = agg_time_now_us() + rl_outbox_backoff_us(a->row->attempts,
                                                                         randombytes_random());
    if (a->o.delivery == RL_DELIVERY_FAILED)
        AGG_LOG_WARN("notify", "notification %s (%s, alert %d) failed: %s", a->row->message_id,
                     a->row->channel, a->row->alert_id, a->o.detail);
    count(d, a);
    if (--b->outstanding == 0 && !d->stopping)
        submit(b, PHASE_RECORDING);
}

static void fail_now(struct attempt *a, bool final, const struct agg_err *err)
{
    a->o.delivery = final || a->row->attempts >= a->b->d->opts->max_attempts
                        ? RL_DELIVERY_FAILED
                        : RL_DELIVERY_RETRY;
    snprintf(a->o.detail, sizeof(a->o.detail), "%.200s", err->msg);
    settle(a);
}

static void on_http(void *arg, const struct rl_http_result *res)
{
    struct attempt *a = arg;

    if (a->b->d->stopping)
        return;
    a->o.status = res->status;
    a->o.delivery =
        rl_outbox_classify_http(res->status, a->row->attempts,
                                (int)a->b->d->opts->max_attempts, &a->o.disable_endpoint);
    snprintf(a->o.detail, sizeof(a->o.detail), "%s", res->detail);
    settle(a);
}

static void on_smtp(void *arg, const struct rl_smtp_result *res)
{
    struct attempt *a = arg;

    if (a->b->d->stopping)
        return;
    a->o.status = res->code;
    a->o.delivery = rl_outbox_classify_smtp(res->ok, res->code, a->row->attempts,
                                            (int)a->b->d->opts->max_attempts);
    snprintf(a->o.detail, sizeof(a->o.detail), "%s", res->detail);
    settle(a);
}

/* The Standard Webhooks headers into <lines> (NULL-terminated). */
static int webhook_headers(const struct rl_outbox_row *row, const struct agg_buf *body,
                           char lines[3][96], const char *hdrs[4], struct agg_err *err)
{
    int64_t ts = agg_time_now_us() / AGG_US_PER_SEC;
    char sig[RL_SIGN_SIZE];
    int n = 0;

    snprintf(lines[0], sizeof(lines[0]), "webhook-id: %s", row->message_id);
    snprintf(lines[1], sizeof(lines[1]), "webhook-timestamp: %" PRId64, ts);
    hdrs[n++] = lines[0];
    hdrs[n++] = lines[1];
    if (row->secret != NULL && row->secret[0] != '\0') {
        if (rl_sign_webhook(row->secret, row->message_id, ts, body->data, body->len, sig,
                            sizeof(sig), err) != AGG_OK)
            return AGG_EINVAL;
        snprintf(lines[2], sizeof(lines[2]), "webhook-signature: %s", sig);
        hdrs[n++] = lines[2];
    }
    hdrs[n] = NULL;
    return AGG_OK;
}

/* Renders and starts <a>'s send; AGG_OK when a callback will follow. <final> tells
 * whether a failure can never succeed (bad facts, bad secret, bad address). */
static int send_one(struct attempt *a, struct agg_buf *body, bool *final, struct agg_err *err)
{
    const struct rl_dispatch *d = a->b->d;
    const struct rl_outbox_row *row = a->row;
    const char *payload = row->payload;
    size_t plen = strlen(payload);
    char lines[3][96];
    const char *hdrs[4] = {NULL};
    int rc;

    *final = true;
    if (strcmp(row->channel, "email") == 0) {
        const char *rcpt[1] = {row->target};

        if (rl_render_email(payload, plen, d->opts->from, row->target, row->message_id,
                            row->thread_id, body, err) != AGG_OK)
            return AGG_EINVAL;
        *final = false;
        return rl_smtp_send(d->smtp, d->opts->from, rcpt, 1, body->data, body->len, on_smtp,
                            a, err);
    }
    rc = strcmp(row->channel, "slack") == 0 ? rl_render_slack(payload, plen, body, err)
                                            : rl_render_webhook(payload, plen, body, err);
    if (rc != AGG_OK)
        return rc;
    if (strcmp(row->channel, "webhook") == 0 &&
        webhook_headers(row, body, lines, hdrs, err) != AGG_OK)
        return AGG_EINVAL;
    rc = rl_httpc_post(d->http, row->target, hdrs, body->data, body->len, on_http, a, err);
    *final = rc == AGG_EINVAL; /* a bad URL stays bad */
    return rc;
}

static void start_sends(struct rl_dispatch *d, struct batch *b)
{
    struct agg_buf body;

    b->attempts = agg_calloc(b->nrows, sizeof(*b->attempts));
    if (b->attempts == NULL) {
        AGG_LOG_WARN("notify",
                     "out of memory sending %zu notifications; they stay "
                     "claimed until their lease ends",
                     b->nrows);
        batch_end(d, b);
        return;
    }
    b->phase = PHASE_SENDING;
    b->outstanding = b->nrows + 1; /* held until every send started */
    agg_buf_init(&body);
    for (size_t i = 0; i < b->nrows; i++) {
        struct attempt *a = &b->attempts[i];
        struct agg_err err = {0};
        bool final;

        a->b = b;
        a->row = &b->rows[i];
        agg_buf_reset(&body);
        if (send_one(a, &body, &final, &err) != AGG_OK)
            fail_now(a, final, &err);
    }
    agg_buf_clear(&body);
    if (--b->outstanding == 0)
        submit(b, PHASE_RECORDING);
}

/* ---- timer, lifecycle ---- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    claim(arg);
}

void rl_dispatch_kick(struct rl_dispatch *d)
{
    if (d != NULL)
        claim(d);
}

static int add_metrics(struct rl_dispatch *d, struct agg_metrics *m)
{
    char labels[64];

    for (int c = 0; c < CHANNELS; c++) {
        for (int r = 0; r < RL_DELIVERY_COUNT; r++) {
            snprintf(labels, sizeof(labels), "channel=\"%s\",result=\"%s\"", channel_names[c],
                     rl_delivery_name((enum rl_delivery)r));
            d->counts[c][r] = agg_metrics_add(m, AGG_METRIC_COUNTER,
                                              "aggd_notification_attempts_total", labels,
                                              "Notification attempts by channel and result.");
            if (d->counts[c][r] == NULL)
                return AGG_ENOMEM;
        }
    }
    return AGG_OK;
}

void rl_dispatch_set_timeout(struct rl_dispatch *d, int64_t timeout_ms)
{
    if (d == NULL)
        return;
    d->lease_us = rl_outbox_lease_us(timeout_ms); /* claims from now on */
    rl_httpc_set_timeout(d->http, (int)timeout_ms);
    rl_smtp_set_timeout(d->smtp, (int)timeout_ms);
}

struct rl_dispatch *rl_dispatch_new(struct event_base *base, const struct agg_notify_opts *opts,
                                    struct st_jobs *jobs, struct agg_metrics *metrics,
                                    int poll_ms, struct agg_err *err)
{
    struct rl_dispatch *d = agg_calloc(1, sizeof(*d));
    struct timeval tv = {poll_ms / 1000, (poll_ms % 1000) * 1000};

    if (d == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    d->base = base;
    d->opts = opts;
    d->jobs = jobs;
    d->lease_us = rl_outbox_lease_us(opts->webhook_timeout_ms); /* SMTP's too */
    d->http = rl_httpc_new(base, opts->ca_file, (int)opts->webhook_timeout_ms, err);
    if (d->http == NULL)
        goto fail;
    d->smtp = rl_smtp_new(base, opts->smtp_url, opts->ca_file,
                          (int)opts->webhook_timeout_ms, err);
    if (d->smtp == NULL)
        goto fail;
    d->timer = event_new(base, -1, EV_PERSIST, on_timer, d);
    if (d->timer == NULL || add_metrics(d, metrics) != AGG_OK ||
        event_add(d->timer, &tv) != 0) {
        agg_err_set(err, AGG_ENOMEM, "could not start the notification dispatcher");
        goto fail;
    }
    claim(d);
    return d;

fail:
    rl_dispatch_stop(d);
    rl_dispatch_free(d);
    return NULL;
}

void rl_dispatch_stop(struct rl_dispatch *d)
{
    if (d == NULL || d->stopping)
        return;
    d->stopping = true;
    atomic_store(&d->halting, true);
    if (d->timer != NULL)
        event_del(d->timer);
    rl_httpc_free(d->http); /* cancelled callbacks see stopping and record nothing */
    rl_smtp_free(d->smtp);
    d->http = NULL;
    d->smtp = NULL;
    for (struct batch *b = d->batches; b != NULL; b = b->next) {
        if (b->phase == PHASE_SENDING) /* runs before st_jobs_free() returns */
            submit(b, PHASE_RELEASING);
    }
}

void rl_dispatch_free(struct rl_dispatch *d)
{
    if (d == NULL)
        return;
    rl_dispatch_stop(d);
    if (d->released > 0)
        AGG_LOG_INFO("notify", "%d notifications in flight at the stop are pending again",
                     d->released);
    if (d->timer != NULL)
        event_free(d->timer);
    while (d->batches != NULL) /* none once <jobs> handed every job back */
        batch_end(d, d->batches);
    free(d);
}
