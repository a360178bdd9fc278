/*
 * api/api.c — the router: binds every route of api/routes.c to the request framework
 *             (api/req.c) with the state its handlers need.
 *
 * Place: see api/api.h. Calls go one way: api.c -> handlers (login, logs, resource)
 *        -> req.c; no handler calls in here.
 * Threads: loop thread.
 * Ownership: owns the framework's shared part, the handlers' states and one binding
 *            per route; requests borrow them until api_free().
 */
#include "api/api.h"

#include <stdlib.h>

#include "api/files.h"
#include "api/login.h"
#include "api/logs.h"
#include "api/req.h"
#include "api/routes.h"
#include "api/secret.h"
#include "core/alloc.h"

/* What the HTTP router hands back for one route. */
struct api_binding {
    struct api *api;
    const struct api_route *route;
};

struct api {
    struct api_req_env *env;
    void *states[API_STATE_COUNT]; /* by enum api_state; [API_STATE_NONE] stays NULL */
    struct api_binding *bindings;  /* one per route */
};

static void on_request(struct evhttp_request *req, const struct agg_http_match *m, void *arg)
{
    const struct api_binding *b = arg;

    api_req_start(b->api->env, b->route, b->api->states[b->route->state], req, m);
}

static void on_gate(void *arg, const struct agg_http_head *head, struct agg_http_pending *p)
{
    const struct api_binding *b = arg;

    api_req_gate(b->api->env, b->route, head, p);
}

static const struct agg_http_gate gate = {API_MAX_BODY_BYTES, on_gate};
static const struct agg_http_gate raw_gate = {API_MAX_RAW_BYTES, on_gate};

struct api *api_new(struct event_base *base, struct agg_http *http, const struct api_options *opts,
                    struct st_pool *pool, struct api_sessions *sessions,
                    struct st_pipeline *pipeline, struct agg_err *err)
{
    struct api *a = agg_calloc(1, sizeof(*a));
    size_t n = 0;

    if (a == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    while (api_routes[n].pattern != NULL)
        n++;
    a->bindings = agg_calloc(n, sizeof(*a->bindings));
    if (a->bindings == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    a->env = api_req_env_new(base, pool, sessions, err);
    if (a->env == NULL)
        goto fail;
    a->states[API_STATE_LOGIN] = api_login_new(sessions, opts->token_ttl_days, err);
    if (a->states[API_STATE_LOGIN] == NULL)
        goto fail;
    if (opts->secrets_key_file != NULL &&
        (a->states[API_STATE_SECRETS] = api_secrets_load(opts->secrets_key_file, err)) == NULL)
        goto fail;
    if (pipeline != NULL && (a->states[API_STATE_TAIL] = api_tail_new(base, pipeline, err)) == NULL)
        goto fail;
    a->states[API_STATE_FILES] =
        api_files_new(base, pool, opts->uploads_dir, opts->uploads_max_bytes, err);
    if (a->states[API_STATE_FILES] == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        a->bindings[i] = (struct api_binding){a, &api_routes[i]};
        if (agg_http_route_gated(http, api_routes[i].method, api_routes[i].pattern, on_request,
                                 &a->bindings[i],
                                 (api_routes[i].flags & API_R_RAW) ? &raw_gate : &gate) !=
            AGG_OK) {
            agg_err_set(err, AGG_ENOMEM, "out of memory");
            goto fail;
        }
    }
    return a;

fail:
    api_free(a);
    return NULL;
}

void api_free(struct api *a)
{
    if (a == NULL)
        return;
    api_tail_free(a->states[API_STATE_TAIL]);
    api_files_free(a->states[API_STATE_FILES]);
    api_req_env_free(a->env);
    api_login_free(a->states[API_STATE_LOGIN]);
    api_secrets_free(a->states[API_STATE_SECRETS]);
    free(a->bindings);
    free(a);
}
