/*
 * api/login.h — POST auth/login and auth/logout: the handlers and their limiter state.
 *
 * Place: api/api.c binds these to their routes -> [login] -> api/auth.c.
 * Threads: prepare and done on the loop thread, work on the hashing threads.
 * Ownership: the router owns the state (api_login_new/api_login_free) and lends it to
 *            each login and logout request as r->ctx.
 */
#ifndef AGGD_API_LOGIN_H
#define AGGD_API_LOGIN_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "api/req.h"

/* A login's r->data: what prepare counted and the work found, for done to settle. */
struct api_login_attempt {
    char email_key[300]; /* "email:<lower-cased address>" */
    char ip_key[80];     /* "ip:<client address>" */
    char net_key[80];    /* "net:<its /24 or /64>" */
    char pair_key[320];  /* "pair:<email> <client address>" */
    bool trusted;        /* the pair logged in lately: counted on pair_key only */
    bool charged;        /* counted by prepare, not settled yet */
    bool failed;         /* wrong email or password: the count stays */
};

struct api_login; /* opaque: the failure limiter and the dummy hash */

/* Login state: tokens last <token_ttl_days> (clamped to 1..3650); logout forgets the
 * token in <sessions>, borrowed until api_login_free().
 * Caller owns the result: api_login_free(). NULL + <err> on failure. */
struct api_login *api_login_new(struct api_sessions *sessions, int token_ttl_days,
                                struct agg_err *err);
/* Accepts NULL. */
void api_login_free(struct api_login *l);

/* The login route's handlers; r->ctx is the struct api_login. */
bool api_login_prepare(struct api_req *r);
void api_login_work(struct api_req *r, PGconn *conn);
void api_login_done(struct api_req *r);

/* The logout route's handlers; r->ctx is the struct api_login. */
void api_logout_work(struct api_req *r, PGconn *conn);
void api_logout_done(struct api_req *r);

#endif
