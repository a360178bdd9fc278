/*
 * rules/render.h — notification bodies (webhook, Slack, email) from a notice's facts.
 *
 * Place: the dispatcher reads a row's `payload` (the facts, JSON text; see
 *        docs/notifications.md) from the outbox and renders the body of its channel.
 * Threads: pure; callable from any thread.
 * Ownership: appends to a caller-owned struct agg_buf; keeps no pointer into the facts.
 * Not here: signing (rules/sign.h), delivery (rules/httpc.h, rules/smtp.h).
 */
#ifndef AGGD_RULES_RENDER_H
#define AGGD_RULES_RENDER_H

#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/* Appends the Alertmanager-webhook-v4-shaped JSON body of the facts <facts>[<len>] to
 * <out>. AGG_EINVAL naming the field when the facts are not valid (not JSON, a required
 * field missing or of the wrong type), AGG_ENOMEM. On error <out> may hold a partial
 * body: reset it before reuse. */
int rl_render_webhook(const char *facts, size_t len, struct agg_buf *out, struct agg_err *err);

/* Appends a Slack incoming-webhook JSON body ("text" plus "blocks": severity, rule,
 * value against threshold, message, link) to <out>. Errors as rl_render_webhook. */
int rl_render_slack(const char *facts, size_t len, struct agg_buf *out, struct agg_err *err);

/* Appends a complete RFC 5322 message (CRLF line ends, 8bit UTF-8 plain text) to <out>:
 * From <from>, To <to> (addresses, no CR/LF or other control characters), Subject
 * "[aggd] FIRING <severity>: <rule>" (RESOLVED ...), Date (now), Message-ID
 * "<<message_id>@aggd>", and when <thread_id> is not NULL (follow-ups: the alert's
 * first message id) In-Reply-To and References "<<thread_id>@aggd>". Ids are letters,
 * digits and "-_.+=". Text from the facts cannot inject headers: control characters
 * become spaces and non-ASCII subjects are RFC 2047 encoded. Errors as
 * rl_render_webhook, and AGG_EINVAL for a bad address or id. */
int rl_render_email(const char *facts, size_t len, const char *from, const char *to,
                    const char *message_id, const char *thread_id, struct agg_buf *out,
                    struct agg_err *err);

#endif
