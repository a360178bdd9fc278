/*
 * api/login.c — POST auth/login and auth/logout: passwords to bearer tokens, with
 * attempts rate-limited per email, client address and network, counted before the
 * hash; logins from an address an email used lately are trusted.
 *
 * Place: api/api.c -> [login: limiter on the loop, verify on a hashing thread]
 *        -> api/auth.c.
 * Threads: the limiter on the loop thread only (prepare and done); the work on the
 *          bounded hashing threads (API_R_SLOW), where the dummy hash is made once
 *          under a mutex.
 * Ownership: the password lives in the request body, wiped when the request is freed.
 * Traps: an unknown email is checked against a dummy Argon2id hash so that it costs
 *        the same second as a wrong password; both answer the same 401. A bcrypt
 *        user's first login costs one more hash (the upgrade). Whatever prepare counts,
 *        done settles — also when the check never ran (503 busy, database down).
 */
#include "api/login.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api/resource.h"
#include "core/time.h"
#include "core/alloc.h"
#include "core/log.h"

#define LIMIT_SLOTS 4096
#define LIMIT_FAILURES 5     /* per email, per address, per known email and address */
#define LIMIT_NET_FAILURES 25 /* per /24 (IPv4) or /64 (IPv6) network */
#define LIMIT_WINDOW_US (15 * 60 * AGG_US_PER_SEC)
#define KNOWN_SLOTS 1024
#define KNOWN_WINDOW_US (30 * 24 * 3600 * AGG_US_PER_SEC)
#define TOKEN_TTL_DAYS_MAX 3650

struct limit {
    char key[320]; /* "email:<address>", "ip:<address>", "net:<prefix>", "pair:<both>" */
    int failures;  /* attempts counted before their check; a success refunds its own */
    int64_t since_us; /* start of the window */
};

struct table {
    struct limit *slots;
    int n;
    int64_t window_us;
};

struct api_login {
    struct api_sessions *sessions; /* logout forgets its token here */
    int token_ttl_days;
    struct limit fail_slots[LIMIT_SLOTS];
    struct limit known_slots[KNOWN_SLOTS]; /* "pair:" keys that logged in lately */
    struct table fails, known;
    struct agg_log_limit limited_log; /* "rate-limited" lines: a flood writes few */
    pthread_mutex_t lock; /* guards dummy */
    char dummy[API_AUTH_PWHASH_SIZE];
};

static const struct api_field login_fields[] = {
    {"email", API_T_STRING, API_F_CREATE | API_F_REQUIRED, 255, NULL, 0, 0, NULL, NULL},
    {"password", API_T_STRING, API_F_CREATE | API_F_REQUIRED | API_F_HIDDEN, 0, NULL, 0, 0, NULL,
     NULL},
    {NULL, 0, 0, 0, NULL, 0, 0, NULL, NULL},
};

static const struct api_resource login_res = {.what = "login", .table = "users",
                                              .fields = login_fields};

struct api_login *api_login_new(struct api_sessions *sessions, int token_ttl_days,
                                struct agg_err *err)
{
    struct api_login *l = agg_calloc(1, sizeof(*l));

    if (l == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    l->sessions = sessions;
    l->token_ttl_days = token_ttl_days < 1                    ? 1
                        : token_ttl_days > TOKEN_TTL_DAYS_MAX ? TOKEN_TTL_DAYS_MAX
                                                              : token_ttl_days;
    l->fails = (struct table){l->fail_slots, LIMIT_SLOTS, LIMIT_WINDOW_US};
    l->known = (struct table){l->known_slots, KNOWN_SLOTS, KNOWN_WINDOW_US};
    pthread_mutex_init(&l->lock, NULL);
    return l;
}

void api_login_free(struct api_login *l)
{
    if (l == NULL)
        return;
    pthread_mutex_destroy(&l->lock);
    free(l);
}

/* The slot of <key> in <t>, or a free or expired one for it when <create>. */
static struct limit *slot(struct table *t, const char *key, int64_t now, bool create)
{
    struct limit *victim = NULL;

    for (int i = 0; i < t->n; i++) {
        struct limit *s = &t->slots[i];
        bool expired = s->key[0] == '\0' || now - s->since_us >= t->window_us;

        if (!expired && strcmp(s->key, key) == 0)
            return s;
        if (expired && victim == NULL)
            victim = s;
    }
    if (!create || t->n <= 0)
        return NULL;
    if (victim == NULL) { /* all busy: the oldest window goes */
        victim = &t->slots[0];
        for (int i = 1; i < t->n; i++) {
            if (t->slots[i].since_us < victim->since_us)
                victim = &t->slots[i];
        }
    }
    snprintf(victim->key, sizeof(victim->key), "%s", key);
    victim->failures = 0;
    victim->since_us = now;
    return victim;
}

/* Seconds until <key> may try again (<limit> attempts counted), 0 when it may now. */
static int blocked_for(struct api_login *l, const char *key, int limit, int64_t now)
{
    struct limit *s = slot(&l->fails, key, now, false);

    if (s == NULL || s->failures < limit)
        return 0;
    return (int)((s->since_us + LIMIT_WINDOW_US - now) / AGG_US_PER_SEC) + 1;
}

/* Counts one attempt against <key> (<by> = 1), or gives it back (<by> = -1). */
static void charge(struct api_login *l, const char *key, int by, int64_t now)
{
    struct limit *s = slot(&l->fails, key, now, by > 0);

    if (s != NULL && s->failures + by >= 0)
        s->failures += by;
}

static void lower(char *s)
{
    for (; *s != '\0'; s++) {
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s + 32);
    }
}

/* "net:<prefix>/24" or "net:<prefix>/64" for the address <ip>; else "net:<ip>". */
static void net_key(const char *ip, char *out, size_t size)
{
    unsigned char a[16];
    char text[INET6_ADDRSTRLEN];

    if (inet_pton(AF_INET, ip, a) == 1) {
        a[3] = 0;
        inet_ntop(AF_INET, a, text, sizeof(text));
        snprintf(out, size, "net:%s/24", text);
    } else if (inet_pton(AF_INET6, ip, a) == 1) {
        memset(a + 8, 0, 8);
        inet_ntop(AF_INET6, a, text, sizeof(text));
        snprintf(out, size, "net:%s/64", text);
    } else {
        snprintf(out, size, "net:%s", ip);
    }
}

static const char *body_str(const struct api_req *r, const char *name)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(r->body, path, yajl_t_string);

    return v != NULL ? YAJL_GET_STRING(v) : NULL;
}

/* Who may try: an email that logged in from this address within KNOWN_WINDOW_US, with
 * fewer than LIMIT_FAILURES failures from here since, is trusted — counted only on its
 * own pair key, and hashed in its own lane — so that guesses from elsewhere never lock
 * out or starve a user at their usual address. Anything else is counted per email,
 * address and network, all before the hash. */
bool api_login_prepare(struct api_req *r)
{
    struct api_login *l = r->ctx;
    struct api_login_attempt *a;
    int64_t now = agg_time_now_us();
    int wait = 0;

    if (!api_res_validate(r, &login_res, true))
        return false;
    a = agg_calloc(1, sizeof(*a));
    if (a == NULL)
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    r->data = a;
    snprintf(a->email_key, sizeof(a->email_key), "email:%s", body_str(r, "email"));
    lower(a->email_key);
    snprintf(a->ip_key, sizeof(a->ip_key), "ip:%s", r->peer_ip);
    net_key(r->peer_ip, a->net_key, sizeof(a->net_key));
    snprintf(a->pair_key, sizeof(a->pair_key), "pair:%s %s", a->email_key + 6, r->peer_ip);
    a->trusted = slot(&l->known, a->pair_key, now, false) != NULL &&
                 blocked_for(l, a->pair_key, LIMIT_FAILURES, now) == 0;
    if (a->trusted) {
        charge(l, a->pair_key, 1, now);
    } else {
        int waits[3] = {blocked_for(l, a->email_key, LIMIT_FAILURES, now),
                        blocked_for(l, a->ip_key, LIMIT_FAILURES, now),
                        blocked_for(l, a->net_key, LIMIT_NET_FAILURES, now)};

        for (int i = 0; i < 3; i++)
            wait = waits[i] > wait ? waits[i] : wait;
        if (wait > 0) {
            r->retry_after_s = wait;
            AGG_LOG_LIMITED(&l->limited_log, AGG_LOG_LEVEL_INFO, "auth",
                            "login attempts from %s rate-limited", r->peer_ip);
            return api_fail(r, 429, "too_many_attempts", NULL,
                            "too many failed logins; retry in %d seconds", wait);
        }
        charge(l, a->email_key, 1, now);
        charge(l, a->ip_key, 1, now);
        charge(l, a->net_key, 1, now);
    }
    a->charged = true;
    r->trusted = a->trusted;
    return true;
}

/* Settles what prepare counted: a wrong email or password keeps it; a success, or a
 * check that did not happen (busy, database down), gives it back. */
void api_login_done(struct api_req *r)
{
    struct api_login_attempt *a = r->data;
    struct api_login *l = r->ctx;
    int64_t now = agg_time_now_us();
    struct limit *s;

    if (a == NULL || !a->charged || a->failed)
        return;
    a->charged = false;
    if (a->trusted) {
        charge(l, a->pair_key, -1, now);
    } else {
        charge(l, a->email_key, -1, now);
        charge(l, a->ip_key, -1, now);
        charge(l, a->net_key, -1, now);
    }
    if (r->status != 200)
        return;
    /* a success through the email's own limit clears it; a trusted one leaves the
     * guesses from elsewhere counted */
    if (!a->trusted && (s = slot(&l->fails, a->email_key, now, false)) != NULL)
        s->failures = 0;
    if ((s = slot(&l->fails, a->pair_key, now, false)) != NULL)
        s->failures = 0;
    if ((s = slot(&l->known, a->pair_key, now, true)) != NULL)
        s->since_us = now; /* known for KNOWN_WINDOW_US from the latest login */
}

/* A hash that no password given to the API matches, made once (about a second). */
static bool dummy_hash(struct api_login *l, char out[API_AUTH_PWHASH_SIZE])
{
    bool ok = true;

    pthread_mutex_lock(&l->lock);
    if (l->dummy[0] == '\0') {
        char pw[33];
        unsigned char raw[16];

        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(pw, sizeof(pw), raw, sizeof(raw));
        ok = api_auth_hash_password(pw, l->dummy, NULL) == AGG_OK;
    }
    memcpy(out, l->dummy, API_AUTH_PWHASH_SIZE);
    pthread_mutex_unlock(&l->lock);
    return ok;
}

/* Replaces a bcrypt (or outdated Argon2id) hash by a fresh one; failure only logs. */
static void upgrade_hash(struct api_req *r, PGconn *conn, const char *id, const char *pw)
{
    char hash[API_AUTH_PWHASH_SIZE];
    const char *p[2] = {hash, id};
    struct agg_err err = {0};
    PGresult *q;

    if (api_auth_hash_password(pw, hash, &err) != AGG_OK) {
        AGG_LOG_WARN("auth", "could not re-hash the password of user %s: %s", id, err.msg);
        return;
    }
    q = PQexecParams(conn, "UPDATE users SET hashed_password = $1 WHERE id = $2", 2, NULL, p,
                     NULL, NULL, 0);
    if (PQresultStatus(q) != PGRES_COMMAND_OK)
        AGG_LOG_WARN("auth", "could not store the new hash of user %s: %s", id,
                     PQresultErrorMessage(q));
    else
        AGG_LOG_INFO("auth", "user %s: password hash upgraded to Argon2id", id);
    PQclear(q);
    sodium_memzero(hash, sizeof(hash));
    (void)r;
}

/* Checks the password; fills <id> with the user's id when it matches an active user. */
static bool verify(struct api_req *r, PGconn *conn, const char *email, const char *pw,
                   char id[16])
{
    const char *p[1] = {email};
    char dummy[API_AUTH_PWHASH_SIZE];
    bool ok, rehash = false;
    PGresult *q = api_exec(r, conn,
                           "SELECT id, hashed_password, coalesce(is_active, true) FROM users"
                           " WHERE email = $1",
                           1, p, PGRES_TUPLES_OK);

    if (q == NULL)
        return false;
    if (PQntuples(q) == 0) {
        PQclear(q);
        if (dummy_hash(r->ctx, dummy))
            api_auth_verify_password(dummy, pw, NULL);
        return api_fail(r, 401, "invalid_credentials", NULL, "wrong email or password");
    }
    ok = api_auth_verify_password(PQgetvalue(q, 0, 1), pw, &rehash) &&
         strcmp(PQgetvalue(q, 0, 2), "t") == 0;
    snprintf(id, 16, "%s", PQgetvalue(q, 0, 0));
    PQclear(q);
    if (!ok)
        return api_fail(r, 401, "invalid_credentials", NULL, "wrong email or password");
    if (rehash)
        upgrade_hash(r, conn, id, pw);
    return true;
}

void api_login_work(struct api_req *r, PGconn *conn)
{
    const struct api_login *l = r->ctx;
    struct api_login_attempt *a = r->data;
    const char *email = body_str(r, "email"), *pw = body_str(r, "password");
    char id[16], token[API_AUTH_TOKEN_SIZE];
    const char *p[1] = {id};
    struct api_token_info info = {0};
    struct agg_err err = {0};
    PGresult *q;

    if (!verify(r, conn, email, pw, id)) {
        a->failed = r->status == 401;
        return;
    }
    if (api_auth_create_token(conn, email, "api", l->token_ttl_days, "login", token, &info,
                              &err) != AGG_OK) {
        AGG_LOG_WARN("auth", "could not create a login token: %s", err.msg);
        api_fail(r, 503, "unavailable", NULL, "cannot create a token now; retry");
        return;
    }
    api_sql_reset(r);
    if (agg_buf_printf(&r->sql, "SELECT ") != AGG_OK ||
        api_res_json_expr(&r->sql, &api_res_users) != AGG_OK ||
        agg_buf_printf(&r->sql, " FROM users WHERE id = $1") != AGG_OK) {
        api_fail(r, 503, "unavailable", NULL, "out of memory");
        goto out;
    }
    q = api_exec(r, conn, r->sql.data, 1, p, PGRES_TUPLES_OK);
    if (q == NULL)
        goto out;
    if (PQntuples(q) == 1 &&
        agg_buf_printf(&r->out, "{\"token\":\"%s\",\"expires_at\":\"%s\",\"user\":%s}", token,
                       info.expires_at, PQgetvalue(q, 0, 0)) == AGG_OK)
        r->status = 200;
    else
        api_fail(r, 503, "unavailable", NULL, "out of memory");
    PQclear(q);

out:
    sodium_memzero(token, sizeof(token));
}

void api_logout_work(struct api_req *r, PGconn *conn)
{
    char id[16];
    const char *p[1] = {id};
    PGresult *q;

    snprintf(id, sizeof(id), "%d", r->who.token_id);
    q = api_exec(r, conn,
                 "UPDATE api_tokens SET revoked_at = now() AT TIME ZONE 'UTC'"
                 " WHERE id = $1 AND revoked_at IS NULL",
                 1, p, PGRES_COMMAND_OK);
    if (q == NULL)
        return;
    PQclear(q);
    r->status = 204;
}

void api_logout_done(struct api_req *r)
{
    const struct api_login *l = r->ctx;

    if (r->req != NULL && r->status == 204)
        api_session_forget(l->sessions,
                           evhttp_find_header(evhttp_request_get_input_headers(r->req),
                                              "Authorization"));
}
