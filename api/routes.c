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

#include "api/catalog.h"
#include "api/connectors.h"
#include "api/layouts.h"
#include "api/files.h"
#include "api/filejobs.h"
#include "api/login.h"
#include "api/logs.h"
#include "api/mappings.h"
#include "api/resource.h"

#define GET EVHTTP_REQ_GET
#define POST EVHTTP_REQ_POST
#define PATCH EVHTTP_REQ_PATCH
#define PUT EVHTTP_REQ_PUT
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
#define RAW API_R_RAW

#define NONE API_STATE_NONE
#define LOGIN API_STATE_LOGIN
#define TAIL API_STATE_TAIL
#define SECRETS API_STATE_SECRETS
#define FILES API_STATE_FILES

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

    {GET,    "/api/v1/pipeline-templates", VIEWER, 0, LIST(api_res_templates)},
    {POST,   "/api/v1/pipeline-templates", EDITOR, BODY, &api_res_templates, api_catalog_prepare_create, api_res_create_work, NULL, NONE},
    {GET,    "/api/v1/pipeline-templates/{id}", VIEWER, 0, READ(api_res_templates)},
    {PATCH,  "/api/v1/pipeline-templates/{id}", EDITOR, BODY, &api_res_templates, api_catalog_prepare_update, api_res_update_work, NULL, NONE},
    {DELETE, "/api/v1/pipeline-templates/{id}", EDITOR, 0, REMOVE(api_res_templates)},
    {POST,   "/api/v1/pipeline-templates/{id}/instantiate", EDITOR, BODY, &api_res_templates, NULL, api_catalog_instantiate_work, NULL, NONE},
    {GET,    "/api/v1/transformation-functions", VIEWER, 0, LIST(api_res_functions)},
    {POST,   "/api/v1/transformation-functions", EDITOR, BODY, &api_res_functions, api_catalog_prepare_create, api_res_create_work, NULL, NONE},
    {GET,    "/api/v1/transformation-functions/{id}", VIEWER, 0, READ(api_res_functions)},
    {PATCH,  "/api/v1/transformation-functions/{id}", EDITOR, BODY, &api_res_functions, api_catalog_prepare_update, api_res_update_work, NULL, NONE},
    {DELETE, "/api/v1/transformation-functions/{id}", EDITOR, 0, REMOVE(api_res_functions)},

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

    {GET,    "/api/v1/connectors", VIEWER, 0, LIST(api_res_connectors)},
    {POST,   "/api/v1/connectors", EDITOR, BODY, &api_res_connectors, api_connector_prepare_create, api_res_create_work, NULL, SECRETS},
    {GET,    "/api/v1/connectors/{id}", VIEWER, 0, READ(api_res_connectors)},
    {PATCH,  "/api/v1/connectors/{id}", EDITOR, BODY, &api_res_connectors, api_connector_prepare_update, api_res_update_work, NULL, SECRETS},
    {DELETE, "/api/v1/connectors/{id}", EDITOR, 0, REMOVE(api_res_connectors)},

    {GET,    "/api/v1/schema-mappings", VIEWER, 0, LIST(api_res_mappings)},
    {POST,   "/api/v1/schema-mappings", EDITOR, BODY, &api_res_mappings, api_mapping_prepare_create, api_res_create_work, NULL, NONE},
    {GET,    "/api/v1/schema-mappings/{id}", VIEWER, 0, READ(api_res_mappings)},
    {PATCH,  "/api/v1/schema-mappings/{id}", EDITOR, BODY, UPDATE(api_res_mappings)},
    {DELETE, "/api/v1/schema-mappings/{id}", EDITOR, 0, REMOVE(api_res_mappings)},

    {GET,    "/api/v1/dashboard-layouts", VIEWER, 0, LIST(api_res_layouts)},
    {POST,   "/api/v1/dashboard-layouts", VIEWER, BODY, &api_res_layouts, api_res_prepare_create, api_res_create_work, api_layout_done, NONE},
    {GET,    "/api/v1/dashboard-layouts/{id}", VIEWER, 0, &api_res_layouts, NULL, api_res_get_work, api_layout_done, NONE},
    {PATCH,  "/api/v1/dashboard-layouts/{id}", VIEWER, BODY, &api_res_layouts, api_layout_prepare_update, api_res_update_work, api_layout_done, NONE},
    {DELETE, "/api/v1/dashboard-layouts/{id}", VIEWER, 0, REMOVE(api_res_layouts)},

    {GET,    "/api/v1/alerts", VIEWER, 0, LIST(api_res_alerts)},
    {GET,    "/api/v1/alerts/{id}", VIEWER, 0, READ(api_res_alerts)},
    {POST,   "/api/v1/alerts/{id}/acknowledge", EDITOR, 0, &api_res_alerts, NULL, api_alert_ack_work, NULL, NONE},
    {POST,   "/api/v1/alerts/{id}/resolve", EDITOR, 0, &api_res_alerts, NULL, api_alert_resolve_work, NULL, NONE},
    {POST,   "/api/v1/alerts/{id}/close", EDITOR, 0, &api_res_alerts, NULL, api_alert_close_work, NULL, NONE},

    {GET,    "/api/v1/files", VIEWER, 0, LIST(api_res_files)},
    {POST,   "/api/v1/files", EDITOR, BODY, &api_res_files, api_files_prepare_create, api_files_create_work, NULL, FILES},
    {GET,    "/api/v1/files/{id}", VIEWER, 0, READ(api_res_files)},
    {DELETE, "/api/v1/files/{id}", EDITOR, 0, &api_res_files, NULL, api_files_delete_work, NULL, FILES},
    {PUT,    "/api/v1/files/{id}/chunks/{n}", EDITOR, RAW, &api_res_files, NULL, api_files_chunk_work, NULL, FILES},
    {GET,    "/api/v1/files/{id}/content", VIEWER, 0, &api_res_files, api_files_prepare_content, api_files_content_work, api_files_content_done, FILES},
    {POST,   "/api/v1/files/{id}/jobs", EDITOR, BODY, &api_res_file_jobs, api_filejobs_prepare_create, api_filejobs_create_work, NULL, NONE},
    {GET,    "/api/v1/files/{id}/jobs", VIEWER, 0, &api_res_file_jobs, api_res_prepare_list, api_filejobs_list_work, NULL, NONE},
    {GET,    "/api/v1/jobs/{id}", VIEWER, 0, READ(api_res_jobs)},

    {GET,    "/api/v1/logs", VIEWER, 0, NULL, api_logs_prepare, api_logs_work, NULL, NONE},
    {GET,    "/api/v1/logs/tail", VIEWER, 0, NULL, api_tail_prepare, NULL, NULL, TAIL},
    {GET,    "/api/v1/partitions", ADMIN, 0, NULL, NULL, api_partitions_work, NULL, NONE},

    {0, NULL, API_ROLE_NONE, 0, NULL, NULL, NULL, NULL, NONE},
};
/* clang-format on */
