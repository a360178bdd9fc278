/*
 * api/routes.c — every /api/v1 route: method, path, least role, and its handlers.
 *
 * Place: api/api.c registers this table and binds each route to its state (api/routes.h);
 *        docs/openapi.yaml must list the same routes
 *        (scripts/check-openapi.py compares them, and the server's answers, in CI).
 * Threads: constant data.
 * Traps: keep one route per line as written: the check script reads this file.
 */
#include "api/routes.h"

#include "api/filejobs.h"
#include "api/login.h"
#include "api/logs.h"
#include "api/resource.h"

#define GET EVHTTP_REQ_GET
#define POST EVHTTP_REQ_POST
#define PATCH EVHTTP_REQ_PATCH
#define DELETE EVHTTP_REQ_DELETE

#define VIEWER API_ROLE_VIEWER
#define EDITOR API_ROLE_EDITOR
#define ADMIN API_ROLE_ADMIN

/* The generic handlers of a table-driven resource */
#define LIST(res) &res, api_res_prepare_list, api_res_list_work, NULL, NONE
#define READ(res) &res, NULL, api_res_get_work, NULL, NONE
#define CREATE(res) &res, api_res_prepare_create, api_res_create_work, NULL, NONE
#define UPDATE(res) &res, api_res_prepare_update, api_res_update_work, NULL, NONE
#define REMOVE(res) &res, NULL, api_res_delete_work, NULL, NONE

#define BODY API_R_BODY
#define SELF API_R_SELF
#define SLOW API_R_SLOW

#define NONE API_STATE_NONE
#define LOGIN API_STATE_LOGIN
#define TAIL API_STATE_TAIL

/* clang-format off */
const struct api_route api_routes[] = {
    {POST,   "/api/v1/auth/login", API_ROLE_NONE, BODY | SLOW, NULL, api_login_prepare, api_login_work, api_login_done, LOGIN},
    {POST,   "/api/v1/auth/logout", VIEWER, 0, NULL, NULL, api_logout_work, api_logout_done, LOGIN},

    {GET,    "/api/v1/users", ADMIN, 0, LIST(api_res_users)},
    {POST,   "/api/v1/users", ADMIN, BODY | SLOW, CREATE(api_res_users)},
    {GET,    "/api/v1/users/{id}", ADMIN, SELF, READ(api_res_users)},
    {PATCH,  "/api/v1/users/{id}", ADMIN, BODY, UPDATE(api_res_users)},
    {DELETE, "/api/v1/users/{id}", ADMIN, 0, REMOVE(api_res_users)},
    {GET,    "/api/v1/users/{id}/preferences", VIEWER, SELF, &api_res_preferences, NULL, api_prefs_get_work, NULL, NONE},
    {PATCH,  "/api/v1/users/{id}/preferences", VIEWER, SELF | BODY, UPDATE(api_res_preferences)},

    {GET,    "/api/v1/pipelines", VIEWER, 0, LIST(api_res_pipelines)},
    {POST,   "/api/v1/pipelines", EDITOR, BODY, CREATE(api_res_pipelines)},
    {GET,    "/api/v1/pipelines/{id}", VIEWER, 0, READ(api_res_pipelines)},
    {PATCH,  "/api/v1/pipelines/{id}", EDITOR, BODY, UPDATE(api_res_pipelines)},
    {DELETE, "/api/v1/pipelines/{id}", EDITOR, 0, REMOVE(api_res_pipelines)},
    {GET,    "/api/v1/pipelines/{id}/versions", VIEWER, 0, LIST(api_res_versions)},
    {POST,   "/api/v1/pipelines/{id}/versions/{n}/activate", EDITOR, 0, &api_res_versions, NULL, api_activate_work, NULL, NONE},
    {GET,    "/api/v1/pipelines/{id}/runs", VIEWER, 0, LIST(api_res_runs)},
    {POST,   "/api/v1/pipelines/{id}/runs", EDITOR, BODY, CREATE(api_res_runs)},
    {GET,    "/api/v1/pipelines/{id}/runs/{run}", VIEWER, 0, READ(api_res_runs)},
    {PATCH,  "/api/v1/pipelines/{id}/runs/{run}", EDITOR, BODY, UPDATE(api_res_runs)},
    {GET,    "/api/v1/pipelines/{id}/runs/{run}/logs", VIEWER, 0, NULL, api_run_logs_prepare, api_run_logs_work, NULL, NONE},

    {GET,    "/api/v1/transformations", VIEWER, 0, LIST(api_res_transformations)},
    {POST,   "/api/v1/transformations", EDITOR, BODY, CREATE(api_res_transformations)},
    {GET,    "/api/v1/transformations/{id}", VIEWER, 0, READ(api_res_transformations)},
    {PATCH,  "/api/v1/transformations/{id}", EDITOR, BODY, UPDATE(api_res_transformations)},
    {DELETE, "/api/v1/transformations/{id}", EDITOR, 0, REMOVE(api_res_transformations)},

    {GET,    "/api/v1/alert-rules", VIEWER, 0, LIST(api_res_rules)},
    {POST,   "/api/v1/alert-rules", EDITOR, BODY, CREATE(api_res_rules)},
    {GET,    "/api/v1/alert-rules/{id}", VIEWER, 0, READ(api_res_rules)},
    {PATCH,  "/api/v1/alert-rules/{id}", EDITOR, BODY, UPDATE(api_res_rules)},
    {DELETE, "/api/v1/alert-rules/{id}", EDITOR, 0, REMOVE(api_res_rules)},

    {GET,    "/api/v1/escalation-policies", VIEWER, 0, LIST(api_res_policies)},
    {POST,   "/api/v1/escalation-policies", EDITOR, BODY, CREATE(api_res_policies)},
    {GET,    "/api/v1/escalation-policies/{id}", VIEWER, 0, READ(api_res_policies)},
    {PATCH,  "/api/v1/escalation-policies/{id}", EDITOR, BODY, UPDATE(api_res_policies)},
    {DELETE, "/api/v1/escalation-policies/{id}", EDITOR, 0, REMOVE(api_res_policies)},

    {GET,    "/api/v1/notification-endpoints", VIEWER, 0, LIST(api_res_endpoints)},
    {POST,   "/api/v1/notification-endpoints", EDITOR, BODY, CREATE(api_res_endpoints)},
    {GET,    "/api/v1/notification-endpoints/{id}", VIEWER, 0, READ(api_res_endpoints)},
    {PATCH,  "/api/v1/notification-endpoints/{id}", EDITOR, BODY, UPDATE(api_res_endpoints)},
    {DELETE, "/api/v1/notification-endpoints/{id}", EDITOR, 0, REMOVE(api_res_endpoints)},

    {GET,    "/api/v1/alerts", VIEWER, 0, LIST(api_res_alerts)},
    {GET,    "/api/v1/alerts/{id}", VIEWER, 0, READ(api_res_alerts)},
    {POST,   "/api/v1/alerts/{id}/acknowledge", EDITOR, 0, &api_res_alerts, NULL, api_alert_ack_work, NULL, NONE},
    {POST,   "/api/v1/alerts/{id}/resolve", EDITOR, 0, &api_res_alerts, NULL, api_alert_resolve_work, NULL, NONE},
    {POST,   "/api/v1/alerts/{id}/close", EDITOR, 0, &api_res_alerts, NULL, api_alert_close_work, NULL, NONE},

    {POST,   "/api/v1/files/{id}/jobs", EDITOR, BODY, &api_res_file_jobs, api_filejobs_prepare_create, api_filejobs_create_work, NULL, NONE},
    {GET,    "/api/v1/files/{id}/jobs", VIEWER, 0, &api_res_file_jobs, api_res_prepare_list, api_filejobs_list_work, NULL, NONE},
    {GET,    "/api/v1/jobs/{id}", VIEWER, 0, READ(api_res_jobs)},

    {GET,    "/api/v1/logs", VIEWER, 0, NULL, api_logs_prepare, api_logs_work, NULL, NONE},
    {GET,    "/api/v1/logs/tail", VIEWER, 0, NULL, api_tail_prepare, NULL, NULL, TAIL},
    {GET,    "/api/v1/partitions", ADMIN, 0, NULL, NULL, api_partitions_work, NULL, NONE},

    {0, NULL, API_ROLE_NONE, 0, NULL, NULL, NULL, NULL, NONE},
};
/* clang-format on */
