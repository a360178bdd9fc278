/*
 * api/catalog.h — the shared catalogue: pipeline templates (and pipelines made from
 *                 them) and transformation functions (and the count of their uses).
 *
 * Place: api/routes.c routes these; api/resource.c runs their tables; the
 *        transformations' hooks (api/resources.c) count function uses through here.
 * Threads: prepare_* on the loop thread; the rest on job threads.
 * Ownership: tables are static; nothing here outlives the request.
 */
#ifndef AGGD_API_CATALOG_H
#define AGGD_API_CATALOG_H

#include <stdbool.h>

#include <libpq-fe.h>

#include "api/resource.h"

/* Tags a template or function carries at most. */
#define API_CATALOG_TAGS_MAX 32

/* pipeline_templates and transformation_functions: readable when public, built-in,
 * the caller's, or by an admin; writable when the caller's and not built-in, or by an
 * admin. Hard delete. */
extern const struct api_resource api_res_templates, api_res_functions;

/* Create / update of a template or function: the generic validation, then 403 (field
 * is_builtin) when a caller below admin sets is_builtin true. Loop thread. */
bool api_catalog_prepare_create(struct api_req *r);
bool api_catalog_prepare_update(struct api_req *r);

/* POST pipeline-templates/{id}/instantiate: a pipeline owned by the caller, made of the
 * template's template_config whose top-level keys the body's replace, validated as
 * POST pipelines is; the template's use_count + 1 in the same transaction. Replies 201
 * with the pipeline; 404 when the caller cannot see the template; 422 naming the
 * pipeline field the template got wrong. Job thread. */
void api_catalog_instantiate_work(struct api_req *r, PGconn *conn);

/* Hooks of transformations (before_create / before_update, in their transaction):
 * a config.function naming a transformation function the caller may read — new, or
 * changed by the update — adds one to its use_count; any other config.function is 422
 * with field "config.function". Job thread. */
bool api_catalog_count_on_create(struct api_req *r, PGconn *conn);
bool api_catalog_count_on_update(struct api_req *r, PGconn *conn);

#endif
