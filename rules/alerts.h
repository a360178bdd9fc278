/*
 * rules/alerts.h — the database side of alerts: rules and their persisted state, the
 * transactions of the lifecycle (fire, follow the value, auto-resolve), the manual
 * actions the API calls (acknowledge, resolve, close), and outbox rows.
 *
 * Place: rules/engine.c runs these on job threads; api/ calls the manual actions;
 *        rules/escalate.c queues its notices here. DESIGN.md, Rules; docs/alerts.md.
 * Threads: blocking libpq on the caller's thread (a job thread or the CLI), never the
 *          event loop. A connection is left idle (outside a transaction) on return.
 * Ownership: borrows the connection for the call; results are the caller's.
 * Traps: an alert is "open" while its status is active or acknowledged. Every state
 *        change and the notices it causes commit in one transaction. alerts is
 *        partitioned: (id, created_at) is the key, the month's partition is created
 *        on demand before the insert. Times are microseconds since the Unix epoch, UTC.
 * Not here: the state machine (rules/lifecycle.h), when to escalate
 *           (rules/escalate.h), sending (rules/dispatch.h).
 */
#ifndef AGGD_RULES_ALERTS_H
#define AGGD_RULES_ALERTS_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "rules/lifecycle.h"
#include "core/err.h"

/* Room for alert_rules text columns (varchar(255) may take 4 bytes a character). */
#define RL_RULE_NAME_MAX 1024
#define RL_RULE_METRIC_MAX 404
#define RL_RULE_WORD_MAX 84

/* An active rule as loaded, with its persisted state (state ok and no alert when
 * alert_rule_state has no row for it). */
struct rl_rule_row {
    int id;
    char name[RL_RULE_NAME_MAX];
    char metric[RL_RULE_METRIC_MAX];
    char op[RL_RULE_WORD_MAX];
    char severity[RL_RULE_WORD_MAX];
    double threshold;
    int64_t for_us;
    int64_t keep_firing_us;
    struct rl_lifecycle life;
    int alert_id; /* 0: no open alert */
    int64_t alert_created_us;
};

/* Every active rule with its state, ordered by id, into *<out> (*<n> rows).
 * Caller owns *<out>: free(). */
int rl_alerts_load_rules(PGconn *conn, struct rl_rule_row **out, size_t *n,
                         struct agg_err *err);

/* The open alert of a rule, as a firing transaction leaves it. */
struct rl_alert_ref {
    int id;
    int64_t created_us;
    bool adopted; /* an open alert already existed: nothing inserted, nothing sent */
};

/* What a firing needs besides the rule: the value, the message, and the context
 * (a JSON object text: the window's figures). */
struct rl_fire {
    int rule_id;
    int64_t now_us;
    double value;
    const char *message;
    const char *context_json; /* NULL: {} */
};

/* Opens the rule's alert (status active, level 0, the rule's escalation policy
 * snapshotted into context.escalation_policy), queues a firing notice for every target
 * of the rule's channels and records the rule state firing, in one transaction. When
 * the rule already has an open alert, adopts it instead (never a second one).
 * AGG_ENOTFOUND when the rule is gone or inactive. */
int rl_alerts_fire(PGconn *conn, const struct rl_fire *f, struct rl_alert_ref *out,
                   struct agg_err *err);

/* Sets the open alert's metric_value to <value>. *<open> becomes false when the alert
 * is no longer open (resolved or closed by hand, or gone): the rule must forget it. */
int rl_alerts_follow(PGconn *conn, int alert_id, int64_t alert_created_us, double value,
                     bool *open, struct agg_err *err);

/* Resolves the alert (resolution_type auto, resolved_at <now_us>, metric_value <value>)
 * and queues a resolved notice to every target notified for it, and records the rule
 * state ok, in one transaction. An alert no longer open is left as it is (no notice). */
int rl_alerts_resolve_auto(PGconn *conn, int rule_id, int alert_id, int64_t alert_created_us,
                           double value, int64_t now_us, struct agg_err *err);

/* context.resolved_reason of an alert resolved because its rule was deactivated. */
#define RL_RESOLVED_DEACTIVATED "rule deactivated"

/* For every rule no longer active (is_active false) whose state is not ok: resolves
 * its open alert as rl_alerts_resolve_auto() does, keeping metric_value and setting
 * context.resolved_reason, and records the state ok, in one transaction. A deleted
 * rule needs nothing: its state cascades away, and alerts keep a rule from deletion.
 * *<retired> (may be NULL) gets the number of alerts resolved. */
int rl_alerts_retire_inactive(PGconn *conn, int64_t now_us, int *retired, struct agg_err *err);

/* Records the rule's state (upsert of alert_rule_state): <life>, the open alert
 * (<alert_id> 0: none), and the last value and evaluation time (<has_value> false:
 * NULL value). */
int rl_alerts_save_state(PGconn *conn, int rule_id, const struct rl_lifecycle *life,
                         int alert_id, int64_t alert_created_us, bool has_value, double value,
                         int64_t now_us, struct agg_err *err);

/* Manual actions (the API's alerts/{id}/acknowledge|resolve|close), by <user_id> (0:
 * nobody, e.g. the CLI) at <now_us>. AGG_ENOTFOUND when no alert has <alert_id>,
 * AGG_EINVAL (the message says why) when its status does not allow the action. */

/* active → acknowledged: escalation stops. Acknowledging an acknowledged alert is
 * AGG_OK and changes nothing. */
int rl_alerts_acknowledge(PGconn *conn, int alert_id, int user_id, int64_t now_us,
                          struct agg_err *err);

/* active|acknowledged → resolved (resolution_type manual), resolved notices to everyone
 * notified, and the rule's state back to ok, so that its next breach opens a new alert. */
int rl_alerts_resolve(PGconn *conn, int alert_id, int user_id, int64_t now_us,
                      struct agg_err *err);

/* resolved → closed; only resolved alerts close. */
int rl_alerts_close(PGconn *conn, int alert_id, int user_id, int64_t now_us,
                    struct agg_err *err);

/* Outbox notices (alert_notifications rows, status pending, due at <now_us>) of kind
 * <notice> ("firing", "escalation", "repeat", "resolved") for an alert, with its facts
 * as payload (docs/notifications.md). */
enum rl_targets {
    RL_TARGETS_RULE = 0, /* the rule's notification_channels */
    RL_TARGETS_CHANNELS, /* <channels_json>: a JSON array of channel strings */
    RL_TARGETS_NOTIFIED, /* every target the alert was notified at before */
};

/* Queues the notices inside the caller's transaction; *<queued> (may be NULL) gets
 * the number of rows. */
int rl_alerts_queue(PGconn *conn, int alert_id, int64_t alert_created_us, const char *notice,
                    enum rl_targets targets, const char *channels_json, int64_t now_us,
                    int *queued, struct agg_err *err);

/* Runs "BEGIN", leaves the transaction open on AGG_OK. */
int rl_alerts_begin(PGconn *conn, struct agg_err *err);
/* Commits when <rc> is AGG_OK, else rolls back; returns <rc> or the COMMIT's error. */
int rl_alerts_end(PGconn *conn, int rc, struct agg_err *err);

/* SQL fragments for microsecond parameters and columns, shared with escalate and
 * dispatch: the timestamp of bigint parameter <p> ("$3"), and a timestamp column's
 * microseconds. */
#define RL_SQL_TS(p) "('epoch'::timestamp + " p "::bigint * interval '1 microsecond')"
#define RL_SQL_US(c) "(extract(epoch FROM " c ") * 1000000)::bigint"

/* Formats <v> for a bigint parameter into <buf> (24 bytes). */
const char *rl_alerts_i64(int64_t v, char buf[24]);

#endif
