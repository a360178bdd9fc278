/*
 * api/auth.h — passwords, API/ingest tokens, and the users and tokens behind them.
 *
 * Place: used by the `aggd user` / `aggd token` subcommands (src/cli_auth.c) and by the
 *        HTTP layer's authentication (login, Bearer tokens); DESIGN.md "Schema"
 *        (Passwords, Tokens) and "Command line".
 * Threads: the pure functions run on any thread; the ones taking a PGconn block and
 *          belong on the CLI or worker threads, never on the event loop. Password
 *          hashing and verification are deliberately slow (Argon2id, 256 MiB, ~1 s).
 * Ownership: nothing returned is heap-allocated; outputs go into caller buffers.
 * Not here: HTTP handlers and role checks (api/ route modules), the schema
 *           (schema/0001_platform.up.sql users, schema/0004_auth.up.sql api_tokens).
 */
#ifndef AGGD_API_AUTH_H
#define AGGD_API_AUTH_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "core/err.h"

/* Size of a password hash string with its NUL: equals libsodium's crypto_pwhash_STRBYTES
 * (checked at compile time in auth.c), so callers need not include <sodium.h>. */
#define API_AUTH_PWHASH_SIZE 128
/* Longest password accepted for a new hash, in bytes. */
#define API_AUTH_PASSWORD_MAX 1024
/* A token is "aggd_" + base64url (no padding) of 32 random bytes: 5 + 43 characters. */
#define API_AUTH_TOKEN_PREFIX "aggd_"
#define API_AUTH_TOKEN_LEN    48
#define API_AUTH_TOKEN_SIZE   (API_AUTH_TOKEN_LEN + 1)
/* Lower-case hex SHA-256 of a token, with its NUL (api_tokens.token_hash). */
#define API_AUTH_TOKEN_HASH_SIZE 65
/* Refresh api_tokens.last_used_at at most this often per token. */
#define API_AUTH_LAST_USED_SLACK_S 60

/* Who a valid token speaks for. Plain data. */
struct api_principal {
    int user_id;
    char email[256];
    char role[51];
    int token_id;
    long long token_expires_s; /* the token's expires_at, Unix seconds; 0: never */
};

/* What api_auth_create_token() stored, besides the token itself. Plain data. */
struct api_token_info {
    int id;
    int user_id;
    char expires_at[32]; /* ISO 8601 UTC, "2025-07-01T12:00:00Z" */
};

/* True for the roles of users.role: "admin", "editor", "viewer". */
bool api_auth_is_role(const char *role);

/* True for the token scopes: "ingest" (POST /v1/logs) and "api" (/api/v1). */
bool api_auth_is_scope(const char *scope);

/* Checks the fields of a new user without touching the database: <email> non-empty,
 * with an '@' that is neither first nor last, at most 255 bytes, no spaces or control
 * characters; <role> per api_auth_is_role(); <full_name> (NULL allowed) at most 255
 * characters. AGG_OK or AGG_EINVAL + <err> naming the field. */
int api_auth_check_user(const char *email, const char *role, const char *full_name,
                        struct agg_err *err);

/* Hashes <password> (1..API_AUTH_PASSWORD_MAX bytes) with Argon2id at libsodium's
 * MODERATE limits into <out> (NUL-terminated "$argon2id$..." string). AGG_OK, or
 * AGG_EINVAL for an empty or too long password, AGG_ENOMEM when the 256 MiB work area
 * cannot be had, AGG_ERR when libsodium cannot start. */
int api_auth_hash_password(const char *password, char out[API_AUTH_PWHASH_SIZE],
                           struct agg_err *err);

/* True when <password> matches <stored_hash>: "$argon2id$" (libsodium) or bcrypt
 * "$2b$" / "$2a$" / "$2y$" (the platform's hashes, through libcrypt). Empty or NULL
 * passwords, NULL or unknown hashes never match. When it matches and <needs_rehash> is
 * not NULL, sets *<needs_rehash> when the hash should be replaced by a fresh
 * api_auth_hash_password() (always for bcrypt; for Argon2id when its parameters differ
 * from today's); otherwise sets it false. */
bool api_auth_verify_password(const char *stored_hash, const char *password, bool *needs_rehash);

/* Makes a new random token ("aggd_" + 43 base64url characters) in <out>. AGG_OK, or
 * AGG_ERR + <err> when libsodium cannot start. */
int api_auth_token_new(char out[API_AUTH_TOKEN_SIZE], struct agg_err *err);

/* True when <token> has the shape of a token ("aggd_" and 43 more characters), so
 * that junk is refused without asking PostgreSQL. */
bool api_auth_is_token_shaped(const char *token);

/* Writes the lower-case hex SHA-256 of the NUL-terminated <token> into <hex>. */
void api_auth_token_hash(const char *token, char hex[API_AUTH_TOKEN_HASH_SIZE]);

/* Finds the api_tokens row of <token> and checks that it is neither revoked nor expired,
 * that <scope> is one of its scopes and that its user is active (a NULL is_active counts
 * as active). Then fills <out> and, when last_used_at is older than
 * API_AUTH_LAST_USED_SLACK_S, sets it to now. Returns AGG_OK; AGG_ENOTFOUND for a
 * malformed, unknown, revoked, expired or wrong-scope token or an inactive user — one
 * answer for all, the precise reason in <err> for the log only; AGG_EDB when PostgreSQL
 * fails. <conn> must not be in a failed transaction; blocking. */
int api_auth_lookup_token(PGconn *conn, const char *token, const char *scope,
                          struct api_principal *out, struct agg_err *err);

/* Creates a user (users row: Argon2id hash of <password>, is_active true, is_verified
 * false, timestamps now UTC; plus a user_preferences row with the seed's defaults) in
 * one transaction, and sets *<user_id>. <full_name> may be NULL. Fields are checked as
 * by api_auth_check_user(), <password> as by api_auth_hash_password(). AGG_OK;
 * AGG_EINVAL for bad fields or an email already taken ("user \"x\" already exists");
 * AGG_ENOMEM; AGG_EDB. <conn> must be idle (not inside a transaction); blocking. */
int api_auth_create_user(PGconn *conn, const char *email, const char *role, const char *full_name,
                         const char *password, int *user_id, struct agg_err *err);

/* Creates a token for the active user <email> with the one scope <scope> ("ingest" or
 * "api"), expiring <ttl_days> (1..3650) days from now, named <name> (NULL allowed, at
 * most 255 characters). Only its SHA-256 is stored; the token itself goes to
 * <token_out> and is never retrievable again. <info> (NULL allowed) receives the row's
 * id, user and expiry. AGG_OK; AGG_EINVAL for bad arguments or an inactive user;
 * AGG_ENOTFOUND for an unknown email; AGG_EDB. Blocking. */
int api_auth_create_token(PGconn *conn, const char *email, const char *scope, int ttl_days,
                          const char *name, char token_out[API_AUTH_TOKEN_SIZE],
                          struct api_token_info *info, struct agg_err *err);

#endif
