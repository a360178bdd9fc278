/*
 * api/auth.c — passwords (Argon2id, legacy bcrypt), tokens, and the users and
 * api_tokens rows behind them.
 *
 * Place: see api/auth.h; DESIGN.md "Schema" (Passwords, Tokens).
 * Threads: pure helpers run anywhere; functions taking a PGconn block (CLI and worker
 *          threads only). sodium_init() is thread-safe and idempotent, so every entry
 *          point that needs libsodium calls it instead of relying on main().
 * Ownership: no pointer into the arguments is kept; secrets in our own buffers (raw
 *            token bytes, password hashes, crypt_r state) are wiped before return.
 * Traps: crypto_pwhash_str() at the MODERATE limits takes 256 MiB and about a second;
 *        a verify costs the same (the limits travel in the hash), so logins must not
 *        run on the event loop and their concurrency must stay small.
 *        struct crypt_data is ~32 KiB: it lives on the heap, never on a worker stack.
 *        users.email is varchar(255) in characters, but struct api_principal holds 255
 *        bytes: new emails are limited to 255 bytes, and an older, longer one makes
 *        the token lookup fail with AGG_EDB rather than truncate an identity.
 * Not here: HTTP handlers, role checks, token revocation (api/ route modules).
 */
#include "api/auth.h"

#include <assert.h>
#include <crypt.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/alloc.h"
#include "store/db.h"

_Static_assert(API_AUTH_PWHASH_SIZE == crypto_pwhash_STRBYTES,
               "API_AUTH_PWHASH_SIZE must equal crypto_pwhash_STRBYTES");
_Static_assert(sizeof(API_AUTH_TOKEN_PREFIX) - 1 +
                       sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING) ==
                   API_AUTH_TOKEN_SIZE,
               "API_AUTH_TOKEN_SIZE must hold the prefix and 32 bytes in base64url");
_Static_assert(API_AUTH_TOKEN_HASH_SIZE == crypto_hash_sha256_BYTES * 2 + 1,
               "API_AUTH_TOKEN_HASH_SIZE must hold a hex SHA-256");

#define TOKEN_RANDOM_BYTES 32
#define PREFIX_LEN         (sizeof(API_AUTH_TOKEN_PREFIX) - 1)
#define NAME_MAX_CHARS     255
#define EMAIL_MAX_BYTES    255
#define TTL_DAYS_MAX       3650

#define STR_(x) #x
#define STR(x)  STR_(x)

/* timestamps are `timestamp without time zone` holding UTC (docs/schema.md), so every
 * "now" is written out explicitly rather than trusting the session's TimeZone. */
#define NOW_UTC      "(now() AT TIME ZONE 'UTC')"
#define ISO_UTC(col) "to_char(" col ", 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static int sodium_ready(struct agg_err *err)
{
    if (sodium_init() < 0)
        return agg_err_set(err, AGG_ERR, "cannot initialise libsodium");
    return AGG_OK;
}

/* Copies at most 64 bytes of <s> into <buf> with control characters as '?', so that
 * a value echoed in an error message keeps it on one line. */
static const char *printable(const char *s, char *buf, size_t size)
{
    size_t i = 0;

    for (; s[i] != '\0' && i + 1 < size && i < 64; i++) {
        unsigned char c = (unsigned char)s[i];

        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    buf[i] = '\0';
    return buf;
}

/* UTF-8 characters in <s>: bytes that do not continue a sequence. PostgreSQL counts
 * varchar(n) in characters, and rejects invalid UTF-8 itself. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool has_control(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    }
    return false;
}

static bool parse_int(const char *s, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < INT_MIN || v > INT_MAX)
        return false;
    *out = (int)v;
    return true;
}

/* Copies the NUL-terminated <s> into <out> (<size> bytes); false when it does not fit. */
static bool copy_str(char *out, size_t size, const char *s)
{
    size_t n = strlen(s);

    if (n >= size)
        return false;
    memcpy(out, s, n + 1);
    return true;
}

bool api_auth_is_role(const char *role)
{
    return role != NULL && (strcmp(role, "admin") == 0 || strcmp(role, "editor") == 0 ||
                            strcmp(role, "viewer") == 0);
}

bool api_auth_is_scope(const char *scope)
{
    return scope != NULL && (strcmp(scope, "ingest") == 0 || strcmp(scope, "api") == 0);
}

static int check_email(const char *email, struct agg_err *err)
{
    const char *at;
    char shown[80];

    if (email == NULL || *email == '\0')
        return agg_err_set(err, AGG_EINVAL, "email is empty");
    if (strlen(email) > EMAIL_MAX_BYTES)
        return agg_err_set(err, AGG_EINVAL, "email is longer than %d bytes", EMAIL_MAX_BYTES);
    for (const char *p = email; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return agg_err_set(err, AGG_EINVAL,
                               "email \"%s\" contains a space or a control character",
                               printable(email, shown, sizeof(shown)));
    }
    at = strrchr(email, '@');
    if (at == NULL || at == email || at[1] == '\0')
        return agg_err_set(err, AGG_EINVAL, "email \"%s\" is not of the form user@domain", email);
    return AGG_OK;
}

/* Full names and token names: NULL allowed, at most 255 characters, one line. */
static int check_name(const char *what, const char *name, struct agg_err *err)
{
    if (name == NULL)
        return AGG_OK;
    if (utf8_chars(name) > NAME_MAX_CHARS)
        return agg_err_set(err, AGG_EINVAL, "%s is longer than %d characters", what,
                           NAME_MAX_CHARS);
    if (has_control(name))
        return agg_err_set(err, AGG_EINVAL, "%s contains a control character", what);
    return AGG_OK;
}

int api_auth_check_user(const char *email, const char *role, const char *full_name,
                        struct agg_err *err)
{
    char shown[80];
    int rc = check_email(email, err);

    if (rc != AGG_OK)
        return rc;
    if (!api_auth_is_role(role))
        return agg_err_set(err, AGG_EINVAL, "role \"%s\" is not admin, editor or viewer",
                           role != NULL ? printable(role, shown, sizeof(shown)) : "");
    return check_name("full name", full_name, err);
}

/* Passwords */

static int check_password(const char *password, struct agg_err *err)
{
    if (password == NULL || *password == '\0')
        return agg_err_set(err, AGG_EINVAL, "password is empty");
    if (strlen(password) > API_AUTH_PASSWORD_MAX)
        return agg_err_set(err, AGG_EINVAL, "password is longer than %d bytes",
                           API_AUTH_PASSWORD_MAX);
    return AGG_OK;
}

int api_auth_hash_password(const char *password, char out[API_AUTH_PWHASH_SIZE],
                           struct agg_err *err)
{
    int rc;

    out[0] = '\0';
    rc = check_password(password, err);
    if (rc != AGG_OK)
        return rc;
    rc = sodium_ready(err);
    if (rc != AGG_OK)
        return rc;
    /* crypto_pwhash_str() fails only when it cannot allocate its work area. */
    if (crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_MODERATE,
                          crypto_pwhash_MEMLIMIT_MODERATE) != 0) {
        out[0] = '\0';
        return agg_err_set(err, AGG_ENOMEM,
                           "could not hash password: out of memory (Argon2id needs %zu MiB)",
                           (size_t)crypto_pwhash_MEMLIMIT_MODERATE >> 20);
    }
    return AGG_OK;
}

static bool is_bcrypt(const char *hash)
{
    return strncmp(hash, "$2b$", 4) == 0 || strncmp(hash, "$2a$", 4) == 0 ||
           strncmp(hash, "$2y$", 4) == 0;
}

/* crypt_r() re-derives the whole hash string from the salt and cost in <stored>; the
 * two strings are then compared in constant time. A failure gives NULL or a "*0"/"*1"
 * token, whose length differs from any bcrypt hash. */
static bool verify_bcrypt(const char *stored, const char *password)
{
    struct crypt_data *cd = agg_calloc(1, sizeof(*cd));
    size_t n = strlen(stored);
    const char *got;
    bool ok = false;

    if (cd == NULL)
        return false;
    got = crypt_r(password, stored, cd);
    if (got != NULL && strlen(got) == n)
        ok = sodium_memcmp(got, stored, n) == 0;
    sodium_memzero(cd, sizeof(*cd));
    free(cd);
    return ok;
}

bool api_auth_verify_password(const char *stored_hash, const char *password, bool *needs_rehash)
{
    bool ok = false;

    if (needs_rehash != NULL)
        *needs_rehash = false;
    if (stored_hash == NULL || password == NULL || *password == '\0')
        return false;
    if (strncmp(stored_hash, "$argon2id$", 10) == 0) {
        /* libsodium reads its argument as a crypto_pwhash_STRBYTES array */
        if (strnlen(stored_hash, API_AUTH_PWHASH_SIZE) >= API_AUTH_PWHASH_SIZE || sodium_init() < 0)
            return false;
        ok = crypto_pwhash_str_verify(stored_hash, password, strlen(password)) == 0;
        if (ok && needs_rehash != NULL)
            *needs_rehash =
                crypto_pwhash_str_needs_rehash(stored_hash, crypto_pwhash_OPSLIMIT_MODERATE,
                                               crypto_pwhash_MEMLIMIT_MODERATE) != 0;
    } else if (is_bcrypt(stored_hash)) {
        ok = verify_bcrypt(stored_hash, password);
        if (ok && needs_rehash != NULL)
            *needs_rehash = true;
    }
    return ok;
}

/* Tokens */

int api_auth_token_new(char out[API_AUTH_TOKEN_SIZE], struct agg_err *err)
{
    unsigned char raw[TOKEN_RANDOM_BYTES];
    int rc;

    out[0] = '\0';
    rc = sodium_ready(err);
    if (rc != AGG_OK)
        return rc;
    randombytes_buf(raw, sizeof(raw));
    memcpy(out, API_AUTH_TOKEN_PREFIX, PREFIX_LEN);
    sodium_bin2base64(out + PREFIX_LEN, API_AUTH_TOKEN_SIZE - PREFIX_LEN, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
    return AGG_OK;
}

bool api_auth_is_token_shaped(const char *token)
{
    return token != NULL && strlen(token) == API_AUTH_TOKEN_LEN &&
           strncmp(token, API_AUTH_TOKEN_PREFIX, PREFIX_LEN) == 0;
}

void api_auth_token_hash(const char *token, char hex[API_AUTH_TOKEN_HASH_SIZE])
{
    unsigned char digest[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(digest, (const unsigned char *)token, strlen(token));
    sodium_bin2hex(hex, API_AUTH_TOKEN_HASH_SIZE, digest, sizeof(digest));
}

/* The token is never compared: its SHA-256 is, by PostgreSQL's btree on token_hash.
 * That comparison's timing can at most tell how many leading hex digits of
 * SHA-256(guess) match some stored hash, which brings an attacker no closer to a
 * 256-bit token whose hash matches, so an index lookup is constant-time enough. */
/* clang-format off */
static const char lookup_sql[] =
    "SELECT t.id, t.user_id, u.email, u.role,"
    "       t.revoked_at IS NOT NULL,"
    "       t.expires_at IS NOT NULL AND t.expires_at <= " NOW_UTC ","
    "       coalesce($2 = ANY (t.scopes), false),"
    "       coalesce(u.is_active, true),"
    "       t.last_used_at IS NULL OR t.last_used_at < " NOW_UTC
    "           - interval '" STR(API_AUTH_LAST_USED_SLACK_S) " seconds',"
    "       " ISO_UTC("t.expires_at") ","
    "       coalesce(extract(epoch FROM t.expires_at)::bigint, 0)"
    "  FROM api_tokens t JOIN users u ON u.id = t.user_id"
    " WHERE t.token_hash = $1";
/* clang-format on */

/* Repeats the age test so that concurrent requests with one token write once. */
/* clang-format off */
static const char touch_sql[] =
    "UPDATE api_tokens SET last_used_at = " NOW_UTC
    " WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < " NOW_UTC
    "     - interval '" STR(API_AUTH_LAST_USED_SLACK_S) " seconds')";
/* clang-format on */

static bool is_true(const PGresult *res, int col)
{
    return !PQgetisnull(res, 0, col) && strcmp(PQgetvalue(res, 0, col), "t") == 0;
}

/* Checks the row of lookup_sql in <res> and fills <out>. *<touch> tells whether
 * last_used_at is due for a refresh. */
static int check_token_row(const PGresult *res, const char *scope, struct api_principal *out,
                           bool *touch, struct agg_err *err)
{
    char shown[80];
    int id;

    if (PQntuples(res) != 1)
        return agg_err_set(err, AGG_ENOTFOUND, "unknown token");
    if (PQnfields(res) != 11 || !parse_int(PQgetvalue(res, 0, 0), &id) ||
        !parse_int(PQgetvalue(res, 0, 1), &out->user_id))
        return agg_err_set(err, AGG_EDB, "unexpected reply to the token lookup");
    if (is_true(res, 4))
        return agg_err_set(err, AGG_ENOTFOUND, "token %d is revoked", id);
    if (is_true(res, 5))
        return agg_err_set(err, AGG_ENOTFOUND, "token %d expired at %s", id, PQgetvalue(res, 0, 9));
    if (!is_true(res, 6))
        return agg_err_set(err, AGG_ENOTFOUND, "token %d lacks scope \"%s\"", id,
                           printable(scope, shown, sizeof(shown)));
    if (!is_true(res, 7))
        return agg_err_set(err, AGG_ENOTFOUND, "user %d of token %d is not active", out->user_id,
                           id);
    if (!copy_str(out->email, sizeof(out->email), PQgetvalue(res, 0, 2)) ||
        !copy_str(out->role, sizeof(out->role), PQgetvalue(res, 0, 3)))
        return agg_err_set(err, AGG_EDB, "email or role of user %d is too long for aggd",
                           out->user_id);
    out->token_id = id;
    out->token_expires_s = strtoll(PQgetvalue(res, 0, 10), NULL, 10);
    *touch = is_true(res, 8);
    return AGG_OK;
}

int api_auth_lookup_token(PGconn *conn, const char *token, const char *scope,
                          struct api_principal *out, struct agg_err *err)
{
    char hash[API_AUTH_TOKEN_HASH_SIZE], id[16];
    const char *params[2] = {hash, scope};
    bool touch = false;
    PGresult *res;
    int rc;

    assert(conn != NULL && scope != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    /* The format is public; refusing junk early spares PostgreSQL a query. */
    if (!api_auth_is_token_shaped(token))
        return agg_err_set(err, AGG_ENOTFOUND, "malformed token");
    api_auth_token_hash(token, hash);
    rc = st_db_query(conn, lookup_sql, 2, params, PGRES_TUPLES_OK, &res, err);
    if (rc != AGG_OK)
        return rc;
    rc = check_token_row(res, scope, out, &touch, err);
    PQclear(res);
    if (rc != AGG_OK) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    if (!touch)
        return AGG_OK;
    snprintf(id, sizeof(id), "%d", out->token_id);
    params[0] = id;
    rc = st_db_query(conn, touch_sql, 1, params, PGRES_COMMAND_OK, NULL, err);
    if (rc != AGG_OK) {
        agg_err_prefix(err, "could not record the use of token %d", out->token_id);
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

/* Users */

/* clang-format off */
static const char insert_user_sql[] =
    "INSERT INTO users (email, hashed_password, full_name, role, is_active, is_verified,"
    "                   created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, true, false, " NOW_UTC ", " NOW_UTC ")"
    " RETURNING id";
/* clang-format on */

/* The seed's preference defaults are the columns' defaults (schema/0001_platform). */
static const char insert_prefs_sql[] = "INSERT INTO user_preferences (user_id) VALUES ($1)";

/* Runs insert_user_sql; a unique violation on anything but the primary key is the
 * email (the platform's own schema may name that constraint differently). */
static int insert_user(PGconn *conn, const char *const params[4], int *user_id, struct agg_err *err)
{
    PGresult *res = PQexecParams(conn, insert_user_sql, 4, NULL, params, NULL, NULL, 0);
    const char *constraint;
    int rc = AGG_OK;

    if (res == NULL)
        return st_db_error(conn, NULL, err);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
        if (st_db_is_sqlstate(res, "23505") &&
            (constraint == NULL || strcmp(constraint, "users_pkey") != 0))
            rc = agg_err_set(err, AGG_EINVAL, "user \"%s\" already exists", params[0]);
        else
            rc = st_db_error(conn, res, err);
    } else if (PQntuples(res) != 1 || !parse_int(PQgetvalue(res, 0, 0), user_id)) {
        rc = agg_err_set(err, AGG_EDB, "unexpected reply to the user insert");
    }
    PQclear(res);
    return rc;
}

int api_auth_create_user(PGconn *conn, const char *email, const char *role, const char *full_name,
                         const char *password, int *user_id, struct agg_err *err)
{
    char hash[API_AUTH_PWHASH_SIZE], id[16];
    const char *user_params[4] = {email, hash, full_name, role};
    const char *prefs_params[1] = {id};
    PGTransactionStatusType tx;
    int rc, new_id = 0;

    if (full_name != NULL && *full_name == '\0')
        full_name = user_params[2] = NULL; /* an empty name is no name */
    rc = api_auth_check_user(email, role, full_name, err);
    if (rc == AGG_OK)
        rc = check_password(password, err);
    if (rc != AGG_OK)
        return rc;
    tx = PQtransactionStatus(conn);
    if (tx == PQTRANS_UNKNOWN)
        return st_db_error(conn, NULL, err);
    if (tx != PQTRANS_IDLE)
        return agg_err_set(err, AGG_ERR, "cannot create a user inside a transaction");
    rc = api_auth_hash_password(password, hash, err);
    if (rc != AGG_OK)
        return rc;
    rc = st_db_exec(conn, "BEGIN", err);
    if (rc != AGG_OK)
        goto out_wipe;
    rc = insert_user(conn, user_params, &new_id, err);
    if (rc != AGG_OK)
        goto out_rollback;
    snprintf(id, sizeof(id), "%d", new_id);
    rc = st_db_query(conn, insert_prefs_sql, 1, prefs_params, PGRES_COMMAND_OK, NULL, err);
    if (rc != AGG_OK)
        goto out_rollback;
    rc = st_db_exec(conn, "COMMIT", err);
    if (rc != AGG_OK)
        goto out_rollback;
    *user_id = new_id;
    goto out_wipe;

out_rollback:
    st_db_exec(conn, "ROLLBACK", NULL); /* the first error is the one that counts */
out_wipe:
    sodium_memzero(hash, sizeof(hash));
    return rc;
}

/* Tokens in the database */

static const char find_user_sql[] =
    "SELECT id, coalesce(is_active, true) FROM users WHERE email = $1";

/* clang-format off */
static const char insert_token_sql[] =
    "INSERT INTO api_tokens (user_id, name, token_hash, scopes, expires_at, created_at)"
    " VALUES ($1, $2, $3, ARRAY[$4::varchar(20)],"
    "         " NOW_UTC " + make_interval(days => $5::int), " NOW_UTC ")"
    " RETURNING id, " ISO_UTC("expires_at");
/* clang-format on */

static int check_token_args(const char *email, const char *scope, int ttl_days, const char *name,
                            struct agg_err *err)
{
    char shown[80];

    if (email == NULL || *email == '\0')
        return agg_err_set(err, AGG_EINVAL, "email is empty");
    if (!api_auth_is_scope(scope))
        return agg_err_set(err, AGG_EINVAL, "scope \"%s\" is not ingest or api",
                           scope != NULL ? printable(scope, shown, sizeof(shown)) : "");
    if (ttl_days < 1 || ttl_days > TTL_DAYS_MAX)
        return agg_err_set(err, AGG_EINVAL, "token lifetime of %d days is not in 1..%d", ttl_days,
                           TTL_DAYS_MAX);
    return check_name("token name", name, err);
}

/* Sets *<user_id> to the id of the active user <email>. */
static int find_active_user(PGconn *conn, const char *email, int *user_id, struct agg_err *err)
{
    const char *params[1] = {email};
    char shown[80];
    PGresult *res;
    int rc = st_db_query(conn, find_user_sql, 1, params, PGRES_TUPLES_OK, &res, err);

    if (rc != AGG_OK)
        return rc;
    if (PQntuples(res) == 0)
        rc = agg_err_set(err, AGG_ENOTFOUND, "no user \"%s\"",
                         printable(email, shown, sizeof(shown)));
    else if (PQnfields(res) != 2 || !parse_int(PQgetvalue(res, 0, 0), user_id))
        rc = agg_err_set(err, AGG_EDB, "unexpected reply to the user lookup");
    else if (!is_true(res, 1))
        rc = agg_err_set(err, AGG_EINVAL, "user \"%s\" is not active",
                         printable(email, shown, sizeof(shown)));
    PQclear(res);
    return rc;
}

int api_auth_create_token(PGconn *conn, const char *email, const char *scope, int ttl_days,
                          const char *name, char token_out[API_AUTH_TOKEN_SIZE],
                          struct api_token_info *info, struct agg_err *err)
{
    char hash[API_AUTH_TOKEN_HASH_SIZE], uid[16], ttl[16];
    const char *params[5] = {uid, name, hash, scope, ttl};
    PGresult *res;
    int rc, user_id = 0, token_id = 0;

    token_out[0] = '\0';
    if (name != NULL && *name == '\0')
        name = params[1] = NULL;
    rc = check_token_args(email, scope, ttl_days, name, err);
    if (rc == AGG_OK)
        rc = find_active_user(conn, email, &user_id, err);
    if (rc == AGG_OK)
        rc = api_auth_token_new(token_out, err);
    if (rc != AGG_OK)
        return rc;
    api_auth_token_hash(token_out, hash);
    snprintf(uid, sizeof(uid), "%d", user_id);
    snprintf(ttl, sizeof(ttl), "%d", ttl_days);
    rc = st_db_query(conn, insert_token_sql, 5, params, PGRES_TUPLES_OK, &res, err);
    if (rc != AGG_OK)
        goto out_wipe;
    if (PQntuples(res) != 1 || PQnfields(res) != 2 ||
        !parse_int(PQgetvalue(res, 0, 0), &token_id)) {
        rc = agg_err_set(err, AGG_EDB, "unexpected reply to the token insert");
    } else if (info != NULL) {
        info->id = token_id;
        info->user_id = user_id;
        if (!copy_str(info->expires_at, sizeof(info->expires_at), PQgetvalue(res, 0, 1)))
            info->expires_at[0] = '\0';
    }
    PQclear(res);

out_wipe:
    if (rc != AGG_OK)
        sodium_memzero(token_out, API_AUTH_TOKEN_SIZE);
    return rc;
}
