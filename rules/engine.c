/*
 * rules/engine.c — rules, evaluation, lifecycle jobs, escalation timer.
 *
 * Place: see rules/engine.h.
 * Threads: see rules/engine.h.
 * Traps: rules are objects that outlive a reload while their job runs (removed, then
 *        freed by the job's done callback). An invalid expression is logged once per
 *        text and the rule skipped. The metric value follows at most every
 *        FOLLOW_MIN_MS when it changes, every FOLLOW_MAX_MS otherwise; the same query
 *        tells a rule that its alert was resolved by hand.
 */
#include "rules/engine.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/time.h"
#include "rules/aggs.h"
#include "rules/alerts.h"
#include "rules/dispatch.h"
#include "rules/escalate.h"
#include "rules/expr.h"
#include "rules/lifecycle.h"
#include "rules/listen.h"
#include "core/alloc.h"
#include "core/log.h"
#include "store/jobs.h"

#define RELOAD_MS 30000
#define ESCALATE_MS 15000
#define DISPATCH_POLL_MS 500
#define LISTEN_RETRY_MS 5000
#define FOLLOW_MIN_US INT64_C(1000000)
#define FOLLOW_MAX_US INT64_C(10000000)
#define SEVERITIES 4

static const char *const severities[SEVERITIES] = {"low", "medium", "high", "critical"};

enum job_kind {
    JOB_PERSIST = 0,
    JOB_FIRE,
    JOB_RESOLVE,
    JOB_FOLLOW,
};

struct rule {
    struct st_job job; /* first: the queue link */
    struct rl_engine *e;
    struct rl_rule_row def; /* def.life, def.alert_* are the state the database has */
    struct rl_expr expr;
    enum rl_op op;
    bool valid;
    bool busy, removed;
    int64_t followed_us;
    double followed_value;
    /* the job in flight */
    enum job_kind kind;
    struct rl_lifecycle next;
    bool has_value;
    double value;
    int64_t now_us;
    char message[RL_RULE_NAME_MAX + RL_RULE_METRIC_MAX + RL_RULE_WORD_MAX + 96];
    char context[512];
    int rc;
    struct agg_err err;
    struct rl_alert_ref ref;
    bool open;
};

struct task { /* reload or escalation: one at a time each */
    struct st_job job; /* first */
    struct rl_engine *e;
    bool running, again;
    int rc;
    struct agg_err err;
    struct rl_rule_row *rows;
    size_t nrows;
    int retired, retire_rc; /* the reload's retiring of deactivated rules */
    struct agg_err retire_err;
    struct rl_escalate_result esc;
};

struct rl_engine {
    struct event_base *base;
    struct st_pipeline *pipeline;
    bool tapped, stopping;
    struct st_jobs *jobs;
    struct rl_aggs *aggs;
    struct rl_dispatch *dispatch;
    struct rl_listen *listen;
    struct rule **rules; /* sorted by id */
    size_t nrules, cap;
    struct event *eval_timer, *reload_timer, *escalate_timer;
    struct task reload, escalate;
    _Atomic int64_t *evaluations, *failures, *active_rules, *invalid_rules;
    _Atomic int64_t *by_state[RL_STATE_COUNT][SEVERITIES];
};

/* ---- ingest tap ---- */

static void on_event(void *arg, const struct agg_record *rec, int64_t created_us)
{
    struct rl_engine *e = arg;
    struct timeval tv;

    (void)created_us; /* windows run on the receive clock, like the evaluator */
    if (rl_aggs_count(e->aggs) == 0)
        return;
    /* the loop's cached clock: one clock read per loop pass, not per event */
    if (event_base_gettimeofday_cached(e->base, &tv) != 0)
        return;
    rl_aggs_add(e->aggs, rec, (int64_t)tv.tv_sec * 1000000 + tv.tv_usec);
}

/* ---- per-rule jobs ---- */

static void rule_work(struct st_job *job, PGconn *conn, const struct agg_err *cerr)
{
    struct rule *r = (struct rule *)job;
    const struct rl_rule_row *d = &r->def;
    struct rl_fire f = {d->id, r->now_us, r->value, r->message, r->context};

    if (st_job_no_conn(conn, cerr, &r->rc, &r->err))
        return;
    switch (r->kind) {
    case JOB_PERSIST:
        r->rc = rl_alerts_save_state(conn, d->id, &r->next, d->alert_id, d->alert_created_us,
                                     r->has_value, r->value, r->now_us, &r->err);
        break;
    case JOB_FIRE:
        r->rc = rl_alerts_fire(conn, &f, &r->ref, &r->err);
        break;
    case JOB_RESOLVE:
        r->rc = rl_alerts_resolve_auto(conn, d->id, d->alert_id, d->alert_created_us, r->value,
                                       r->now_us, &r->err);
        break;
    case JOB_FOLLOW:
        r->rc = rl_alerts_follow(conn, d->alert_id, d->alert_created_us, r->value, &r->open,
                                 &r->err);
        break;
    }
    job->conn_broken = r->rc == AGG_EDB && PQstatus(conn) != CONNECTION_OK;
}

static void rule_free(struct rule *r)
{
    free(r);
}

/* The database has what the job did: the rule's state follows. */
static void rule_apply(struct rule *r)
{
    struct rl_rule_row *d = &r->def;

    switch (r->kind) {
    case JOB_PERSIST:
        d->life = r->next;
        break;
    case JOB_FIRE:
        d->life = r->next;
        d->alert_id = r->ref.id;
        d->alert_created_us = r->ref.created_us;
        r->followed_us = r->now_us;
        r->followed_value = r->value;
        if (!r->ref.adopted)
            AGG_LOG_INFO("rules", "rule %d \"%s\" fires: alert %d", d->id, d->name, r->ref.id);
        rl_dispatch_kick(r->e->dispatch);
        break;
    case JOB_RESOLVE:
        AGG_LOG_INFO("rules", "rule %d \"%s\" cleared: alert %d resolved", d->id, d->name,
                     d->alert_id);
        d->life = r->next;
        d->alert_id = 0;
        d->alert_created_us = 0;
        rl_dispatch_kick(r->e->dispatch);
        break;
    case JOB_FOLLOW:
        r->followed_us = r->now_us;
        r->followed_value = r->value;
        if (!r->open) { /* resolved or closed by hand: the next breach opens a new alert */
            d->life = (struct rl_lifecycle){RL_STATE_OK, r->now_us};
            d->alert_id = 0;
            d->alert_created_us = 0;
        }
        break;
    }
}

static void rule_done(struct st_job *job)
{
    struct rule *r = (struct rule *)job;

    r->busy = false;
    if (r->removed) {
        rule_free(r);
        return;
    }
    if (r->rc == AGG_OK) {
        rule_apply(r);
        return;
    }
    agg_metric_inc(r->e->failures, 1);
    if (r->rc == AGG_ENOTFOUND)
        return; /* deleted meanwhile: the next reload drops it */
    AGG_LOG_WARN("rules", "rule %d \"%s\": could not record %s: %s", r->def.id, r->def.name,
                 r->kind == JOB_FOLLOW ? "the alert's value" : "a state change", r->err.msg);
}

static void rule_submit(struct rule *r, enum job_kind kind)
{
    r->kind = kind;
    r->busy = true;
    st_jobs_run(r->e->jobs, &r->job);
}

/* ---- evaluation ---- */

static void describe(struct rule *r, const struct rl_window_figures *fig)
{
    char value[40];

    snprintf(value, sizeof(value), "%.6g", r->value);
    snprintf(r->message, sizeof(r->message), "rule \"%s\": %s = %s (%s %.6g)", r->def.name,
             r->def.metric, value, r->def.op, r->def.threshold);
    snprintf(r->context, sizeof(r->context),
             "{\"window_s\":%d,\"total\":%" PRIu64 ",\"matched\":%" PRIu64
             ",\"valued\":%" PRIu64 ",\"value\":%s,\"threshold\":%.17g}",
             fig->window_s, fig->total, fig->matched, fig->valued,
             isfinite(r->value) ? value : "null", r->def.threshold);
}

static bool follow_due(const struct rule *r, int64_t now_us)
{
    int64_t since = now_us - r->followed_us;

    if (!r->has_value || !rl_state_has_alert(r->def.life.state) || r->def.alert_id == 0)
        return false;
    return since >= FOLLOW_MAX_US || (since >= FOLLOW_MIN_US && r->value != r->followed_value);
}

static void evaluate(struct rule *r, int64_t now_us)
{
    struct rl_lifecycle_rule lr = {r->def.for_us, r->def.keep_firing_us};
    struct rl_window_figures fig = {0};
    bool breach;
    enum rl_action action;

    r->now_us = now_us;
    r->has_value = rl_aggs_value(r->e->aggs, r->def.id, now_us, &r->value, &fig);
    breach = r->has_value && rl_op_holds(r->op, r->value, r->def.threshold);
    action = rl_lifecycle_step(&r->def.life, &lr, breach, now_us, &r->next);
    switch (action) {
    case RL_ACTION_NONE:
        if (follow_due(r, now_us))
            rule_submit(r, JOB_FOLLOW);
        return;
    case RL_ACTION_PERSIST:
        rule_submit(r, JOB_PERSIST);
        return;
    case RL_ACTION_FIRE:
        describe(r, &fig);
        rule_submit(r, JOB_FIRE);
        return;
    case RL_ACTION_RESOLVE:
        if (r->def.alert_id == 0) { /* nothing open (resolved by hand): just the state */
            rule_submit(r, JOB_PERSIST);
            return;
        }
        if (!r->has_value)
            r->value = r->followed_value;
        rule_submit(r, JOB_RESOLVE);
        return;
    }
}

static int severity_index(const char *s)
{
    for (int i = 0; i < SEVERITIES; i++) {
        if (strcmp(s, severities[i]) == 0)
            return i;
    }
    return -1;
}

static void update_gauges(struct rl_engine *e)
{
    int64_t n[RL_STATE_COUNT][SEVERITIES] = {{0}};
    int64_t valid = 0;

    for (size_t i = 0; i < e->nrules; i++) {
        const struct rule *r = e->rules[i];
        int s = severity_index(r->def.severity);

        valid += r->valid;
        if (s >= 0 && (unsigned)r->def.life.state < RL_STATE_COUNT)
            n[r->def.life.state][s]++;
    }
    for (int st = 0; st < RL_STATE_COUNT; st++) {
        for (int s = 0; s < SEVERITIES; s++)
            agg_metric_set(e->by_state[st][s], n[st][s]);
    }
    agg_metric_set(e->active_rules, valid);
    agg_metric_set(e->invalid_rules, (int64_t)e->nrules - valid);
}

static void on_eval(evutil_socket_t fd, short what, void *arg)
{
    struct rl_engine *e = arg;
    int64_t now = agg_time_now_us();

    (void)fd;
    (void)what;
    for (size_t i = 0; i < e->nrules; i++) {
        struct rule *r = e->rules[i];

        if (!r->valid || r->busy)
            continue;
        evaluate(r, now);
        agg_metric_inc(e->evaluations, 1);
    }
    update_gauges(e);
}

/* ---- reload ---- */

static void reload_work(struct st_job *job, PGconn *conn, const struct agg_err *cerr)
{
    struct task *t = (struct task *)job;

    t->retired = 0;
    t->retire_rc = AGG_OK;
    if (st_job_no_conn(conn, cerr, &t->rc, &t->err))
        return;
    /* first, so that a rule deactivated while firing leaves no alert open */
    t->retire_rc = rl_alerts_retire_inactive(conn, agg_time_now_us(), &t->retired, &t->retire_err);
    t->rc = rl_alerts_load_rules(conn, &t->rows, &t->nrows, &t->err);
    job->conn_broken =
        (t->rc == AGG_EDB || t->retire_rc == AGG_EDB) && PQstatus(conn) != CONNECTION_OK;
}

/* Compiles <r>'s expression and operator; logs what is wrong once per text. */
static void compile(struct rule *r, bool changed)
{
    struct agg_err err = {0};
    size_t pos = 0;

    r->valid = false;
    if (rl_expr_compile(r->def.metric, &r->expr, &pos, &err) != AGG_OK) {
        if (changed)
            AGG_LOG_WARN("rules", "rule %d \"%s\" skipped: metric \"%s\" %s", r->def.id,
                         r->def.name, r->def.metric, err.msg);
        return;
    }
    if (!rl_expr_operator_parse(r->def.op, &r->op)) {
        if (changed)
            AGG_LOG_WARN("rules", "rule %d \"%s\" skipped: unknown operator \"%s\"",
                         r->def.id, r->def.name, r->def.op);
        return;
    }
    r->valid = true;
}

static struct rule *find_rule(struct rl_engine *e, int id)
{
    size_t lo = 0, hi = e->nrules;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (e->rules[mid]->def.id == id)
            return e->rules[mid];
        if (e->rules[mid]->def.id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* An existing rule takes the row's definition and keeps the state it has in memory;
 * a new one starts from the persisted state. */
static struct rule *merge_row(struct rl_engine *e, const struct rl_rule_row *row)
{
    struct rule *r = find_rule(e, row->id);
    bool changed;

    if (r == NULL) {
        r = agg_calloc(1, sizeof(*r));
        if (r == NULL)
            return NULL;
        r->e = e;
        r->job.fn = rule_work;
        r->job.done = rule_done;
        r->def = *row;
        compile(r, true);
        return r;
    }
    changed = strcmp(r->def.metric, row->metric) != 0 || strcmp(r->def.op, row->op) != 0;
    memcpy(r->def.name, row->name, sizeof(r->def.name));
    memcpy(r->def.metric, row->metric, sizeof(r->def.metric));
    memcpy(r->def.op, row->op, sizeof(r->def.op));
    memcpy(r->def.severity, row->severity, sizeof(r->def.severity));
    r->def.threshold = row->threshold;
    r->def.for_us = row->for_us;
    r->def.keep_firing_us = row->keep_firing_us;
    if (changed)
        compile(r, true);
    return r;
}

static int set_aggs(struct rl_engine *e, struct rule **rules, size_t n, struct agg_err *err)
{
    struct rl_rule_def *defs = agg_calloc(n > 0 ? n : 1, sizeof(*defs));
    size_t k = 0;
    int rc;

    if (defs == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (rules[i]->valid)
            defs[k++] = (struct rl_rule_def){rules[i]->def.id, &rules[i]->expr};
    }
    rc = rl_aggs_set(e->aggs, defs, k, agg_time_now_us(), err);
    free(defs);
    return rc;
}

static int merge(struct rl_engine *e, const struct rl_rule_row *rows, size_t n,
                 struct agg_err *err)
{
    struct rule **next = agg_calloc(n > 0 ? n : 1, sizeof(*next));
    size_t k;

    if (next == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    for (k = 0; k < n; k++) {
        next[k] = merge_row(e, &rows[k]);
        if (next[k] == NULL)
            break;
    }
    if (k < n || set_aggs(e, next, n, err) != AGG_OK) {
        for (size_t i = 0; i < k; i++) { /* new rules only: the old set stays */
            if (find_rule(e, next[i]->def.id) != next[i])
                rule_free(next[i]);
        }
        free(next);
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < e->nrules; i++) {
        struct rule *old = e->rules[i];
        bool kept = false;

        for (size_t j = 0; j < n && !kept; j++)
            kept = next[j] == old;
        if (kept)
            continue;
        if (old->busy)
            old->removed = true; /* freed by its done callback */
        else
            rule_free(old);
    }
    free(e->rules);
    e->rules = next;
    e->nrules = n;
    return AGG_OK;
}

static void task_submit(struct task *t)
{
    if (t->e->stopping)
        return;
    if (t->running) {
        t->again = true;
        return;
    }
    t->running = true;
    t->again = false;
    st_jobs_run(t->e->jobs, &t->job);
}

static void reload_done(struct st_job *job)
{
    struct task *t = (struct task *)job;
    struct rl_engine *e = t->e;
    struct agg_err err = {0};

    t->running = false;
    if (t->retire_rc != AGG_OK)
        AGG_LOG_WARN("rules", "could not resolve the alerts of deactivated rules: %s",
                     t->retire_err.msg);
    if (t->retired > 0) {
        AGG_LOG_INFO("rules", "%d alerts resolved: their rules were deactivated", t->retired);
        rl_dispatch_kick(e->dispatch);
    }
    if (t->rc != AGG_OK) {
        AGG_LOG_WARN("rules", "could not load alert rules: %s", t->err.msg);
    } else if (!e->stopping) {
        if (merge(e, t->rows, t->nrows, &err) != AGG_OK)
            AGG_LOG_WARN("rules", "could not apply the alert rules: %s", err.msg);
        else
            AGG_LOG_DEBUG("rules", "%zu alert rules loaded", t->nrows);
        update_gauges(e);
    }
    free(t->rows);
    t->rows = NULL;
    t->nrows = 0;
    if (t->again)
        task_submit(t);
}

static void on_reload(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    task_submit(&((struct rl_engine *)arg)->reload);
}

static void on_rules_changed(void *arg)
{
    task_submit(&((struct rl_engine *)arg)->reload);
}

/* ---- escalation ---- */

static void escalate_work(struct st_job *job, PGconn *conn, const struct agg_err *cerr)
{
    struct task *t = (struct task *)job;

    if (st_job_no_conn(conn, cerr, &t->rc, &t->err))
        return;
    t->rc = rl_escalate_pass(conn, agg_time_now_us(), &t->esc, &t->err);
}

static void escalate_done(struct st_job *job)
{
    struct task *t = (struct task *)job;

    t->running = false;
    if (t->rc != AGG_OK)
        AGG_LOG_WARN("rules", "escalation pass failed: %s", t->err.msg);
    else if (t->esc.notices > 0)
        rl_dispatch_kick(t->e->dispatch);
}

static void on_escalate(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    task_submit(&((struct rl_engine *)arg)->escalate);
}

/* ---- lifecycle ---- */

static struct event *every(struct rl_engine *e, int64_t ms, event_callback_fn fn)
{
    struct event *ev = event_new(e->base, -1, EV_PERSIST, fn, e);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    if (ev != NULL && event_add(ev, &tv) != 0) {
        event_free(ev);
        return NULL;
    }
    return ev;
}

void rl_engine_set_notify_timeout(struct rl_engine *e, int64_t timeout_ms)
{
    if (e != NULL)
        rl_dispatch_set_timeout(e->dispatch, timeout_ms);
}

void rl_engine_set_interval(struct rl_engine *e, int64_t eval_interval_ms)
{
    struct timeval tv = {(time_t)(eval_interval_ms / 1000),
                         (suseconds_t)(eval_interval_ms % 1000) * 1000};

    if (e != NULL && e->eval_timer != NULL)
        event_add(e->eval_timer, &tv); /* re-arms a persistent timer with the new period */
}

static int add_metrics(struct rl_engine *e, struct agg_metrics *m)
{
    char labels[64];

    e->evaluations = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_rule_evaluations_total", NULL,
                                     "Rule evaluations.");
    e->failures = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_rule_db_failures_total", NULL,
                                  "Alert state changes PostgreSQL refused (retried).");
    e->active_rules = agg_metrics_add(m, AGG_METRIC_GAUGE, "aggd_rules", "status=\"active\"",
                                      "Alert rules loaded, by status.");
    e->invalid_rules = agg_metrics_add(m, AGG_METRIC_GAUGE, "aggd_rules", "status=\"invalid\"",
                                       "Alert rules loaded, by status.");
    if (e->evaluations == NULL || e->failures == NULL || e->active_rules == NULL ||
        e->invalid_rules == NULL)
        return AGG_ENOMEM;
    for (int st = 0; st < RL_STATE_COUNT; st++) {
        for (int s = 0; s < SEVERITIES; s++) {
            snprintf(labels, sizeof(labels), "state=\"%s\",severity=\"%s\"",
                     rl_state_name((enum rl_state)st), severities[s]);
            e->by_state[st][s] = agg_metrics_add(m, AGG_METRIC_GAUGE, "aggd_alert_rules_by_state",
                                                 labels, "Alert rules by state and severity.");
            if (e->by_state[st][s] == NULL)
                return AGG_ENOMEM;
        }
    }
    return AGG_OK;
}

static double aggs_memory(void *arg)
{
    return (double)rl_aggs_memory(arg);
}

static void task_init(struct task *t, struct rl_engine *e, st_job_work_fn fn, st_job_done_fn done)
{
    t->e = e;
    t->job.fn = fn;
    t->job.done = done;
}

struct rl_engine *rl_engine_new(struct event_base *base, const struct rl_engine_opts *opts,
                                struct st_pool *pool, struct st_pipeline *pipeline,
                                struct agg_metrics *metrics, struct agg_err *err)
{
    struct rl_engine *e = agg_calloc(1, sizeof(*e));

    if (e == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    e->base = base;
    e->pipeline = pipeline;
    task_init(&e->reload, e, reload_work, reload_done);
    task_init(&e->escalate, e, escalate_work, escalate_done);
    e->aggs = rl_aggs_new();
    e->jobs = st_jobs_new(base, pool, 1, err);
    if (e->aggs == NULL || e->jobs == NULL)
        goto fail;
    e->dispatch = rl_dispatch_new(base, opts->notify, e->jobs, metrics, DISPATCH_POLL_MS, err);
    if (e->dispatch == NULL)
        goto fail;
    e->listen = rl_listen_new(base, opts->database_url, "aggd_rules", LISTEN_RETRY_MS,
                              on_rules_changed, e, err);
    if (e->listen == NULL)
        goto fail;
    e->eval_timer = every(e, opts->eval_interval_ms, on_eval);
    e->reload_timer = every(e, RELOAD_MS, on_reload);
    e->escalate_timer = every(e, ESCALATE_MS, on_escalate);
    if (e->eval_timer == NULL || e->reload_timer == NULL || e->escalate_timer == NULL ||
        add_metrics(e, metrics) != AGG_OK ||
        agg_metrics_add_fn(metrics, "aggd_rule_aggregates_bytes", NULL,
                           "Memory held by the rules' streaming aggregates.", aggs_memory,
                           e->aggs) != AGG_OK ||
        st_pipeline_tap(pipeline, on_event, e) != AGG_OK) {
        agg_err_set(err, AGG_ENOMEM, "could not start the alert engine");
        goto fail;
    }
    e->tapped = true;
    task_submit(&e->reload); /* the listener's first LISTEN reloads again: harmless */
    task_submit(&e->escalate);
    return e;

fail:
    rl_engine_free(e);
    return NULL;
}

void rl_engine_free(struct rl_engine *e)
{
    if (e == NULL)
        return;
    e->stopping = true;
    if (e->tapped)
        st_pipeline_untap(e->pipeline, on_event, e);
    struct event *timers[3] = {e->eval_timer, e->reload_timer, e->escalate_timer};

    for (int i = 0; i < 3; i++) {
        if (timers[i] != NULL)
            event_free(timers[i]);
    }
    rl_listen_free(e->listen);
    rl_dispatch_stop(e->dispatch);
    st_jobs_free(e->jobs); /* every done callback runs; none submits again */
    rl_dispatch_free(e->dispatch);
    for (size_t i = 0; i < e->nrules; i++)
        rule_free(e->rules[i]);
    free(e->rules);
    free(e->reload.rows);
    rl_aggs_free(e->aggs);
    free(e);
}
