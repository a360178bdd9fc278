/*
 * rules/dispatch.c — claim, send, record.
 *
 * Place: see rules/dispatch.h.
 * Threads: see rules/dispatch.h.
 * Traps: the webhook timestamp is taken per attempt (receivers reject stale ones);
 *        the webhook-id stays the row's message id across attempts.
 *        A claimed batch (d->rows, even an empty one) is freed by the job_done that
 *        does not hand it to sends, by the recording's (or the stop's release) job_done,
 *        or by rl_dispatch_free: a claim never overwrites a live batch.
 *        A stop cancels the sends, records the attempts that have an outcome and hands
 *        the others back (pending), so that a restart or another daemon sends them at
 *        once; only a crash leaves rows 'sending', until their lease ends.
 */
#include "rules/dispatch.h"

#include <assert.h>
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
#define CHANNELS 3

enum phase {
    PHASE_IDLE = 0,
    PHASE_CLAIMING,
    PHASE_SENDING,
    PHASE_RECORDING,
    PHASE_RELEASING, /* the stop's: record what has an outcome, hand back the rest */
};

struct attempt {
    struct rl_dispatch *d;
    struct rl_outbox_row *row;
    struct rl_outbox_outcome o;
    bool settled; /* o is the outcome */
};

struct rl_dispatch {
    struct st_job job; /* first: the queue link */
    struct event_base *base;
    const struct agg_notify_opts *opts;
    struct st_jobs *jobs;
    struct rl_httpc *http;
    struct rl_smtp *smtp;
    struct event *timer;
    enum phase phase;
    bool kicked;    /* claim again right after this batch */
    bool stopping;
    atomic_bool halting; /* stopping, as the job thread sees it */
    int64_t lease_us;
    int released;
    struct rl_outbox_row *rows;
    size_t nrows;
    struct attempt *attempts;
    size_t outstanding;
    int rc;
    struct agg_err err;
    _Atomic int64_t *counts[CHANNELS][RL_DELIVERY_COUNT];
};

static const char *const channel_names[CHANNELS] = {"webhook", "slack", "email"};

static void submit(struct rl_dispatch *d, enum phase phase);

static int channel_index(const char *channel)
{
    for (int i = 0; i < CHANNELS; i++) {
        if (strcmp(channel, channel_names[i]) == 0)
            return i;
    }
    return -1;
}

static void batch_free(struct rl_dispatch *d)
{
    rl_outbox_rows_free(d->rows, d->nrows);
    free(d->attempts);
    d->rows = NULL;
    d->attempts = NULL;
    d->nrows = 0;
}

/* ---- the job: claim, record a batch, or release it at a stop ---- */

static void keep_error(struct rl_dispatch *d, const struct agg_err *err)
{
    d->rc = err->code;
    d->err = *err; /* that row stays 'sending' until its lease ends */
}

/* Hands back the claimed rows that have no outcome, records those that have one. */
static void settle_batch(struct rl_dispatch *d, PGconn *conn, int64_t now)
{
    d->released = 0;
    for (size_t i = 0; i < d->nrows; i++) {
        const struct attempt *a = d->attempts != NULL ? &d->attempts[i] : NULL;
        struct agg_err err = {0};
        bool released = false;
        int rc = a != NULL && a->settled
                     ? rl_outbox_record(conn, a->row, &a->o, now, &err)
                     : rl_outbox_release(conn, &d->rows[i], now, &released, &err);

        if (rc != AGG_OK)
            keep_error(d, &err);
        d->released += released;
    }
}

static void job_work(struct st_job *job, PGconn *conn, const struct agg_err *cerr)
{
    struct rl_dispatch *d = (struct rl_dispatch *)job;
    int64_t now = agg_time_now_us();

    d->released = 0;
    if (st_job_no_conn(conn, cerr, &d->rc, &d->err))
        return;
    d->rc = AGG_OK;
    if (d->phase == PHASE_CLAIMING) {
        assert(d->rows == NULL); /* the previous batch was freed by its job_done */
        if (atomic_load(&d->halting))
            return;
        d->rc = rl_outbox_claim(conn, now, d->lease_us, CLAIM_LIMIT, &d->rows, &d->nrows, &d->err);
        if (atomic_load(&d->halting)) /* nobody will send them */
            settle_batch(d, conn, now);
    } else {
        settle_batch(d, conn, now);
    }
    job->conn_broken = d->rc == AGG_EDB;
}

static void start_sends(struct rl_dispatch *d);

static void job_done(struct st_job *job)
{
    struct rl_dispatch *d = (struct rl_dispatch *)job;
    enum phase was = d->phase;

    d->phase = PHASE_IDLE;
    if (d->rc != AGG_OK)
        AGG_LOG_WARN("notify", "notification outbox: %s", d->err.msg);
    if (d->stopping && d->released > 0)
        AGG_LOG_INFO("notify", "%d notifications in flight at the stop are pending again",
                     d->released);
    if (was == PHASE_CLAIMING && d->nrows > 0 && !d->stopping) {
        start_sends(d); /* the batch is the sends' until its record's job_done */
        return;
    }
    if (was == PHASE_RECORDING)
        d->kicked = d->kicked || d->nrows == CLAIM_LIMIT;
    batch_free(d); /* recorded, released, empty or failed: nobody sends it */
    if (d->kicked && !d->stopping) {
        d->kicked = false;
        submit(d, PHASE_CLAIMING);
    }
}

static void submit(struct rl_dispatch *d, enum phase phase)
{
    if (d->stopping)
        return;
    d->phase = phase;
    st_jobs_run(d->jobs, &d->job);
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
    struct rl_dispatch *d = a->d;

    a->settled = true;
    if (a->o.delivery == RL_DELIVERY_RETRY)
        a->o.next_attempt_us = agg_time_now_us() + rl_outbox_backoff_us(a->row->attempts,
                                                                         randombytes_random());
    if (a->o.delivery == RL_DELIVERY_FAILED)
        AGG_LOG_WARN("notify", "notification %s (%s, alert %d) failed: %s", a->row->message_id,
                     a->row->channel, a->row->alert_id, a->o.detail);
    count(d, a);
    if (--d->outstanding == 0 && !d->stopping)
        submit(d, PHASE_RECORDING);
}

static void fail_now(struct attempt *a, bool final, const struct agg_err *err)
{
    a->o.delivery = final || a->row->attempts >= a->d->opts->max_attempts
                        ? RL_DELIVERY_FAILED
                        : RL_DELIVERY_RETRY;
    snprintf(a->o.detail, sizeof(a->o.detail), "%.200s", err->msg);
    settle(a);
}

static void on_http(void *arg, const struct rl_http_result *res)
{
    struct attempt *a = arg;

    if (a->d->stopping)
        return;
    a->o.status = res->status;
    a->o.delivery = rl_outbox_classify_http(res->status, a->row->attempts,
                                            (int)a->d->opts->max_attempts,
                                            &a->o.disable_endpoint);
    snprintf(a->o.detail, sizeof(a->o.detail), "%s", res->detail);
    settle(a);
}

static void on_smtp(void *arg, const struct rl_smtp_result *res)
{
    struct attempt *a = arg;

    if (a->d->stopping)
        return;
    a->o.status = res->code;
    a->o.delivery = rl_outbox_classify_smtp(res->ok, res->code, a->row->attempts,
                                            (int)a->d->opts->max_attempts);
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
    const struct rl_outbox_row *row = a->row;
    const char *payload = row->payload;
    size_t plen = strlen(payload);
    char lines[3][96];
    const char *hdrs[4] = {NULL};
    int rc;

    *final = true;
    if (strcmp(row->channel, "email") == 0) {
        const char *rcpt[1] = {row->target};

        if (rl_render_email(payload, plen, a->d->opts->from, row->target,
                            row->message_id, row->thread_id, body, err) != AGG_OK)
            return AGG_EINVAL;
        *final = false;
        return rl_smtp_send(a->d->smtp, a->d->opts->from, rcpt, 1, body->data,
                            body->len, on_smtp, a, err);
    }
    rc = strcmp(row->channel, "slack") == 0 ? rl_render_slack(payload, plen, body, err)
                                            : rl_render_webhook(payload, plen, body, err);
    if (rc != AGG_OK)
        return rc;
    if (strcmp(row->channel, "webhook") == 0 &&
        webhook_headers(row, body, lines, hdrs, err) != AGG_OK)
        return AGG_EINVAL;
    rc = rl_httpc_post(a->d->http, row->target, hdrs, body->data, body->len, on_http, a, err);
    *final = rc == AGG_EINVAL; /* a bad URL stays bad */
    return rc;
}

static void start_sends(struct rl_dispatch *d)
{
    struct agg_buf body;

    d->attempts = agg_calloc(d->nrows, sizeof(*d->attempts));
    if (d->attempts == NULL) {
        AGG_LOG_WARN("notify",
                     "out of memory sending %zu notifications; they stay "
                     "claimed until their lease ends",
                     d->nrows);
        batch_free(d);
        return;
    }
    d->phase = PHASE_SENDING;
    d->outstanding = d->nrows + 1; /* held until every send started */
    agg_buf_init(&body);
    for (size_t i = 0; i < d->nrows; i++) {
        struct attempt *a = &d->attempts[i];
        struct agg_err err = {0};
        bool final;

        a->d = d;
        a->row = &d->rows[i];
        agg_buf_reset(&body);
        if (send_one(a, &body, &final, &err) != AGG_OK)
            fail_now(a, final, &err);
    }
    agg_buf_clear(&body);
    if (--d->outstanding == 0)
        submit(d, PHASE_RECORDING);
}

/* ---- timer, lifecycle ---- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct rl_dispatch *d = arg;

    (void)fd;
    (void)what;
    if (d->phase != PHASE_IDLE) {
        d->kicked = true;
        return;
    }
    submit(d, PHASE_CLAIMING);
}

void rl_dispatch_kick(struct rl_dispatch *d)
{
    if (d == NULL || d->stopping)
        return;
    if (d->phase != PHASE_IDLE)
        d->kicked = true;
    else
        submit(d, PHASE_CLAIMING);
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
    d->job.fn = job_work;
    d->job.done = job_done;
    d->lease_us = rl_outbox_lease_us(opts->webhook_timeout_ms); /* SMTP's too */
    d->http = rl_httpc_new(base, opts->ca_file, (int)opts->webhook_timeout_ms, err);
    if (d->http == NULL)
        goto fail;
    d->smtp = rl_smtp_new(base, opts->smtp_url, opts->ca_file, (int)opts->webhook_timeout_ms,
                          err);
    if (d->smtp == NULL)
        goto fail;
    d->timer = event_new(base, -1, EV_PERSIST, on_timer, d);
    if (d->timer == NULL || add_metrics(d, metrics) != AGG_OK ||
        event_add(d->timer, &tv) != 0) {
        agg_err_set(err, AGG_ENOMEM, "could not start the notification dispatcher");
        goto fail;
    }
    submit(d, PHASE_CLAIMING);
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
    if (d->phase == PHASE_SENDING) { /* runs before st_jobs_free() returns */
        d->phase = PHASE_RELEASING;
        st_jobs_run(d->jobs, &d->job);
    }
}

void rl_dispatch_free(struct rl_dispatch *d)
{
    if (d == NULL)
        return;
    rl_dispatch_stop(d);
    if (d->timer != NULL)
        event_free(d->timer);
    batch_free(d);
    free(d);
}
