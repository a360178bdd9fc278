/*
 * rules/escalate.h — escalation of open, unacknowledged alerts along the policy they
 * opened with, then repeat notices spaced by the rule's cooldown_minutes.
 *
 * Place: `aggd alerts escalate --now` (src/cli_alerts.c) and the serve timer
 *        (rules/engine.c) run passes; DESIGN.md, Rules; docs/alerts.md.
 * Threads: rl_escalate_next is pure; rl_escalate_pass is blocking libpq (job thread
 *          or CLI).
 * Ownership: borrows the connection for the call.
 * Traps: each level's after_minutes counts from the alert's previous notice
 *        (last_escalated_at, or created_at before the first escalation), so one pass
 *        moves an alert at most one step, and a late pass never sends a burst.
 *        The policy is the snapshot in alerts.context.escalation_policy, taken when
 *        the alert opened, not the policy as it is now.
 * Not here: the outbox rows' content (rules/alerts.c), sending (rules/dispatch.c).
 */
#ifndef AGGD_RULES_ESCALATE_H
#define AGGD_RULES_ESCALATE_H

#include <stdint.h>

#include <libpq-fe.h>

#include "core/err.h"

enum rl_escalation {
    RL_ESCALATION_NONE = 0, /* nothing due yet, or nothing left to send */
    RL_ESCALATION_LEVEL,    /* notify a level's channels, escalation_level + 1 */
    RL_ESCALATION_REPEAT,   /* levels spent: repeat to the rule's channels */
};

/* One alert as the pass sees it. */
struct rl_escalation_in {
    int level;            /* alerts.escalation_level: levels notified so far */
    int nlevels;          /* levels of the policy snapshot (0: no policy) */
    int repeat_count;     /* times the policy loops after its first run */
    double after_minutes; /* of level (level % nlevels), when nlevels > 0 */
    int cooldown_minutes; /* the rule's; <= 0: no repeat notices */
    int64_t base_us;      /* last_escalated_at, else created_at */
};

/* What is due at <now_us> for <in>; *<index> gets the policy level to notify for
 * RL_ESCALATION_LEVEL. */
enum rl_escalation rl_escalate_next(const struct rl_escalation_in *in, int64_t now_us,
                                    int *index);

struct rl_escalate_result {
    int escalated; /* alerts moved one level */
    int repeated;  /* alerts that got a repeat notice */
    int notices;   /* outbox rows queued */
};

/* One pass at <now_us>: every active, unacknowledged alert that is due (picked with
 * FOR UPDATE SKIP LOCKED, so concurrent passes share the work) gets its notices queued
 * and its level bumped and last_escalated_at stamped, all in one transaction. */
int rl_escalate_pass(PGconn *conn, int64_t now_us, struct rl_escalate_result *res,
                     struct agg_err *err);

#endif
