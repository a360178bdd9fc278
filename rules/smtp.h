/*
 * rules/smtp.h — SMTP client on libevent for email notifications.
 *
 * Place: the notification dispatcher sends messages rendered by rl_render_email().
 * Threads: event-loop thread of <base> only.
 * Ownership: the client owns its sessions; callers borrow nothing past rl_smtp_send().
 * Not here: retries (the dispatcher), the message text (rules/render.h), TLS and
 *           connection plumbing (rules/httpc.h).
 */
#ifndef AGGD_RULES_SMTP_H
#define AGGD_RULES_SMTP_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "core/err.h"

struct rl_smtp; /* opaque */

struct rl_smtp_result {
    int code;         /* last reply code, 0 when the connection failed or timed out */
    bool ok;          /* the server accepted the message (250 after DATA) */
    char detail[256]; /* "smtp://host:25: RCPT TO refused: 550 5.1.1 no such user" */
};

/* Called exactly once per accepted message, on the loop thread, never from inside
 * rl_smtp_send(); the session is already gone, so it may send again or free the client. */
typedef void (*rl_smtp_cb)(void *arg, const struct rl_smtp_result *r);

/* A client for <smtp_url>: "smtp://[user:pass@]host[:port]" (port 25; STARTTLS when the
 * server offers it) or "smtps://..." (implicit TLS, port 465); user and password are
 * percent-decoded. Certificates are verified against <ca_file> (PEM; NULL or "" for the
 * system store). Each message is one connection bounded by <timeout_ms>. Caller owns
 * the result: rl_smtp_free(). NULL + <err> (which never quotes the password). */
struct rl_smtp *rl_smtp_new(struct event_base *base, const char *smtp_url, const char *ca_file,
                            int timeout_ms, struct agg_err *err);

/* Cancels the sessions in flight, calling each callback once with code 0, ok false and
 * detail "cancelled" (callbacks must not send on <s> then: such sends fail), wipes the
 * credentials and frees the client. NULL is allowed. */
void rl_smtp_free(struct rl_smtp *s);

/* Sends <message>[<len>] (an RFC 5322 message; line ends are normalised to CRLF and
 * lines starting with '.' are dot-stuffed here) from <from> to the <nrcpt> addresses of
 * <rcpt> (bare addresses, no <>, no control characters). Sequence: greeting, EHLO (HELO
 * when EHLO is refused), STARTTLS when offered (then EHLO again; a failed STARTTLS or
 * certificate check fails the message, never falls back to plain), AUTH PLAIN when the
 * URL has credentials (refused over an unencrypted connection unless the server is on
 * loopback), MAIL FROM, RCPT TO each (any refusal fails the message), DATA, QUIT.
 * Copies everything it needs. AGG_OK: <cb>(<arg>, ...) follows exactly once.
 * AGG_EINVAL for bad arguments, AGG_ENOMEM, AGG_EAGAIN while the client is being freed,
 * AGG_ERR; errors call no callback. */
int rl_smtp_send(struct rl_smtp *s, const char *from, const char *const *rcpt, int nrcpt,
                 const char *message, size_t len, rl_smtp_cb cb, void *arg, struct agg_err *err);

/* Sends started from now on time out after <timeout_ms> (a reload). */
void rl_smtp_set_timeout(struct rl_smtp *s, int timeout_ms);

#endif
