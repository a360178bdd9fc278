/*
 * api/layouts.h — /api/v1/dashboard-layouts: each user's saved dashboards, one default
 *                 per user, shared ones readable by all, versioned with optimistic
 *                 concurrency (If-Match or "version" in the body; replies carry ETag).
 *
 * Place: api/routes.c -> [layouts: scope, default, version] -> api/resource.c -> PG.
 * Threads: prepare and done on the loop thread; the hooks on job threads.
 * Ownership: the expected version travels in r->data (freed with the request).
 * Not here: the version counter and the one-default index are the database's
 *           (schema/0007_catalog.up.sql).
 */
#ifndef AGGD_API_LAYOUTS_H
#define AGGD_API_LAYOUTS_H

#include <stdbool.h>

#include "api/req.h"

/* PATCH: the generic validation, then the If-Match header ("<version>" or *). */
bool api_layout_prepare_update(struct api_req *r);

/* Loop thread, before a reply of one layout: ETag: "<version>". */
void api_layout_done(struct api_req *r);

extern const struct api_resource api_res_layouts;

#endif
