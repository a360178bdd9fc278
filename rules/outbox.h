/*
 * rules/outbox.h — the notification outbox (alert_notifications): claiming due rows,
 * recording each attempt, and the retry policy.
 *
 * Place: rules/alerts.c and rules/escalate.c queue rows; the dispatcher
 *        (rules/dispatch.c) claims, sends and records them. DESIGN.md, Rules.
 * Threads: the rl_outbox_* queries are blocking libpq (job threads); the policy
 *          functions are pure.
 * Ownership: claimed rows are the caller's: rl_outbox_rows_free().
 * Traps: a claimed row is in status 'sending' until its attempt is recorded; rows a
 *        crash left there go back to 'pending' at start (rl_outbox_requeue). A row
 *        once 'delivered' is never claimed again: each notice is sent at least once
 *        and, barring a crash between a receiver's 2xx and the record, exactly once.
 * Not here: rendering and signing (rules/render.h, rules/sign.h).
 */
#ifndef AGGD_RULES_OUTBOX_H
#define AGGD_RULES_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "src/err.h"

/* Longest message_id (varchar(64)) and channel (varchar(20)), with the NUL. */
#define RL_OUTBOX_ID_MAX 65
#define RL_OUTBOX_CHANNEL_MAX 21

struct rl_outbox_row {
    int64_t id;
    int alert_id;
    int64_t alert_created_us;
    int endpoint_id; /* 0: none (the rule owner's address) */
    int attempts;    /* including the one claimed */
    char message_id[RL_OUTBOX_ID_MAX];
    char channel[RL_OUTBOX_CHANNEL_MAX];
    char *target;    /* URL or address */
    char *payload;   /* the facts (JSON) */
    char *secret;    /* the endpoint's signing secret, NULL when none */
    char *thread_id; /* email: the alert's first message id to this address, NULL if this is it */
};

/* Claims up to <limit> pending rows due at <now_us> (FOR UPDATE SKIP LOCKED: several
 * daemons may share the outbox), marking them 'sending' and counting the attempt.
 * Caller owns *<rows> (*<n> of them): rl_outbox_rows_free(); *<rows> is NULL when
 * nothing was claimed or on error (a half-read claim frees what it read). */
int rl_outbox_claim(PGconn *conn, int64_t now_us, int limit, struct rl_outbox_row **rows,
                    size_t *n, struct agg_err *err);

void rl_outbox_rows_free(struct rl_outbox_row *rows, size_t n);

/* Puts rows left 'sending' back to 'pending' (at start: a crash interrupted them).
 * *<n> (may be NULL) gets how many. */
int rl_outbox_requeue(PGconn *conn, int *n, struct agg_err *err);

enum rl_delivery {
    RL_DELIVERY_DELIVERED = 0,
    RL_DELIVERY_RETRY,
    RL_DELIVERY_FAILED,
};
#define RL_DELIVERY_COUNT 3

/* One attempt's outcome, as recorded. */
struct rl_outbox_outcome {
    enum rl_delivery delivery;
    int status;              /* HTTP status or SMTP reply code, 0: none (network error) */
    bool disable_endpoint;   /* 410 Gone */
    int64_t next_attempt_us; /* for RL_DELIVERY_RETRY */
    char detail[256];
};

/* Records <o> for <row> at <now_us> in one transaction: the row's status, next attempt
 * and last result; the attempt appended to the alert's notifications_sent (channel,
 * target redacted, at, result, status); the endpoint disabled on 410. */
int rl_outbox_record(PGconn *conn, const struct rl_outbox_row *row,
                     const struct rl_outbox_outcome *o, int64_t now_us, struct agg_err *err);

/* The outcome of an HTTP attempt (<status> 0: network error or timeout) that was the
 * row's <attempts>th of at most <max_attempts>: 2xx delivered; 5xx, 429 and network
 * errors retried while attempts remain; other statuses final, 410 also disabling the
 * endpoint. */
enum rl_delivery rl_outbox_classify_http(int status, int attempts, int max_attempts,
                                         bool *disable_endpoint);

/* The outcome of an SMTP attempt: accepted delivered; a 5xx reply final; 4xx and
 * connection failures (<code> 0) retried while attempts remain. */
enum rl_delivery rl_outbox_classify_smtp(bool ok, int code, int attempts, int max_attempts);

/* Delay before retry number <attempts> + 1: 1 s doubling per attempt, capped at one
 * hour, with "equal jitter" (half fixed, half scaled by <random> / 2^32). */
int64_t rl_outbox_backoff_us(int attempts, uint32_t random);

/* <target> as it may be shown: URLs (webhook, slack) cut to scheme://host[:port] since
 * their path is often the secret; email addresses as they are. Always NUL-terminated. */
void rl_outbox_redact(const char *channel, const char *target, char *out, size_t size);

/* "delivered", "retry", "failed". */
const char *rl_delivery_name(enum rl_delivery d);

#endif
