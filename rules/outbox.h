/*
 * rules/outbox.h — the notification outbox (alert_notifications): claiming due rows,
 * recording each attempt, and the retry policy.
 *
 * Place: rules/alerts.c and rules/escalate.c queue rows; the dispatcher
 *        (rules/dispatch.c) claims, sends and records them. DESIGN.md, Rules.
 * Threads: the rl_outbox_* queries are blocking libpq (job threads); the policy
 *          functions are pure.
 * Ownership: claimed rows are the caller's: rl_outbox_rows_free().
 * Traps: a claimed row is in status 'sending' under a lease: next_attempt_at holds
 *        its end, after which any daemon may claim it again (its claimer died or
 *        stalled); a stop hands its unsent rows back (rl_outbox_release). Recording
 *        and releasing are fenced by the attempt count, so a daemon whose lease was
 *        taken over changes nothing. A row once 'delivered' is never claimed again:
 *        each notice is sent at least once and, barring a crash between a receiver's
 *        2xx and the record, exactly once.
 * Not here: rendering and signing (rules/render.h, rules/sign.h).
 */
#ifndef AGGD_RULES_OUTBOX_H
#define AGGD_RULES_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "core/err.h"

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

/* How long a claim holds its rows: a few times <send_timeout_ms> (the webhook and SMTP
 * timeout; each send of a batch is bounded by it) plus a margin for the recording and
 * for clock differences between daemons. */
int64_t rl_outbox_lease_us(int64_t send_timeout_ms);

/* Claims up to <limit> rows due at <now_us> (FOR UPDATE SKIP LOCKED: several daemons
 * may share the outbox): pending rows whose next attempt is due and 'sending' rows
 * whose lease has ended, but none of the <nskip> ids in <skip> (the caller's own sends
 * still in flight, whatever their lease says). Marks them 'sending' with a lease until
 * <now_us> + <lease_us> and counts the attempt. Caller owns *<rows> (*<n> of them):
 * rl_outbox_rows_free(); *<rows> is NULL when nothing was claimed or on error (a
 * half-read claim frees what it read; its rows wait for their lease to end). */
int rl_outbox_claim(PGconn *conn, int64_t now_us, int64_t lease_us, int limit,
                    const int64_t *skip, size_t nskip, struct rl_outbox_row **rows, size_t *n,
                    struct agg_err *err);

void rl_outbox_rows_free(struct rl_outbox_row *rows, size_t n);

/* Hands back a claimed <row> that was not sent (a stop): pending, due at <now_us>.
 * *<released> is false when the row is no longer this claim's (another daemon took
 * it over after the lease ended, or it was recorded). */
int rl_outbox_release(PGconn *conn, const struct rl_outbox_row *row, int64_t now_us, bool *released,
                      struct agg_err *err);

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
 * target redacted, at, result, status); the endpoint disabled on 410. The row keeps
 * its status when it is no longer this claim's (the attempt is still appended). */
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
