/*
 * rules/dispatch.h — the notification dispatcher: claims due outbox rows, renders,
 * signs and sends them (webhook, Slack, email), and records every attempt.
 *
 * Place: outbox (rules/outbox.h) -> [dispatch] -> rules/httpc.h, rules/smtp.h.
 *        Created by the alert engine (rules/engine.c). DESIGN.md, Rules.
 * Threads: the event-loop thread; database work on the given job runner.
 * Ownership: borrows <opts>, <jobs> and <metrics> until rl_dispatch_free().
 * Traps: each claim is a batch: claim → send all → record all; the next claim does not
 *        wait for the sends in flight (a hung receiver holds only its own row, up to
 *        the timeout), one claim at a time, at most 128 rows in flight, and never a
 *        row this dispatcher is still sending, even once its lease ended.
 *        Claimed rows are leased (rules/outbox.h): a shutdown records the attempts
 *        that have an outcome and hands the cancelled ones back to 'pending'; rows a
 *        crash leaves 'sending' are claimed again, by any daemon, once the lease ends.
 * Not here: what a notice says (rules/render.c), which rows exist (rules/alerts.c).
 */
#ifndef AGGD_RULES_DISPATCH_H
#define AGGD_RULES_DISPATCH_H

#include <event2/event.h>

#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"
#include "store/jobs.h"

struct rl_dispatch;

/* A dispatcher configured by the notify.* keys <opts> (borrowed until free), polling
 * the outbox every <poll_ms>. Caller owns the result: rl_dispatch_stop(), then
 * rl_dispatch_free() once <jobs> has handed back every job. */
struct rl_dispatch *rl_dispatch_new(struct event_base *base, const struct agg_notify_opts *opts,
                                    struct st_jobs *jobs, struct agg_metrics *metrics,
                                    int poll_ms, struct agg_err *err);

/* A reload changed notify.webhook_timeout_ms: sends and claims from now on use it. */
void rl_dispatch_set_timeout(struct rl_dispatch *d, int64_t timeout_ms);

/* New rows were queued: claim as soon as the current batch is done. */
void rl_dispatch_kick(struct rl_dispatch *d);

/* Cancels sends in flight; submits one last job, before <jobs> stops, that records
 * the batch's outcomes and hands its cancelled rows back. No job after that. */
void rl_dispatch_stop(struct rl_dispatch *d);

/* NULL is allowed. */
void rl_dispatch_free(struct rl_dispatch *d);

#endif
