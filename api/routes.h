/*
 * api/routes.h — the router's route table (api/routes.c) and the handler states its
 *                routes are bound to.
 *
 * Place: included by api/api.c and api/routes.c only.
 * Threads: constant data.
 */
#ifndef AGGD_API_ROUTES_H
#define AGGD_API_ROUTES_H

#include "api/req.h"

/* Which state the router lends a route's requests as r->ctx (route->state). */
enum api_state {
    API_STATE_NONE = 0,
    API_STATE_LOGIN, /* struct api_login (api/login.h) */
    API_STATE_TAIL,  /* struct api_tail (api/logs.h); NULL without a pipeline */
    API_STATE_SECRETS, /* struct api_secrets (api/secret.h): the key of secrets at rest */
    API_STATE_FILES, /* struct api_files (api/files.h) */
    API_STATE_COUNT,
};

/* Every /api/v1 route, ended by a NULL pattern. */
extern const struct api_route api_routes[];

#endif
