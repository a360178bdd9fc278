/*
 * rules/sign.h — Standard Webhooks signatures (HMAC-SHA256) and endpoint secrets.
 *
 * Place: the notification dispatcher signs each webhook body before posting it;
 *        the API makes a secret for an endpoint created without one.
 * Threads: pure; callable from any thread (libsodium is initialised on first use).
 * Ownership: keeps no pointer into its arguments.
 * Not here: the webhook body (rules/render.h), the HTTP request (rules/httpc.h).
 */
#ifndef AGGD_RULES_SIGN_H
#define AGGD_RULES_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* "v1," + base64 of 32 bytes + NUL. */
#define RL_SIGN_SIZE 48
/* "whsec_" + base64 of 24 bytes + NUL. */
#define RL_SIGN_SECRET_SIZE 39

/* Writes the webhook-signature header value "v1,<base64 HMAC-SHA256>" of
 * "<msg_id>.<timestamp_s>.<body>" into <out> (<size> bytes, RL_SIGN_SIZE is enough).
 * <secret> is "whsec_<base64 key>" or the bare base64 key (standard alphabet, padded).
 * AGG_EINVAL when the secret is not such (or its key is empty or over 256 bytes) or
 * <msg_id> is empty; AGG_EFULL when <out> is too small. The message never quotes the secret. */
int rl_sign_webhook(const char *secret, const char *msg_id, int64_t timestamp_s, const char *body,
                    size_t len, char *out, size_t size, struct agg_err *err);

/* Writes a fresh secret "whsec_" + base64 of 24 random bytes into <out> (<size> bytes,
 * RL_SIGN_SECRET_SIZE is enough). AGG_OK, AGG_EFULL when <out> is too small, AGG_ERR
 * when libsodium cannot start. */
int rl_sign_secret_new(char *out, size_t size);

#endif
