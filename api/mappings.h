/*
 * api/mappings.h — /api/v1/schema-mappings: field mappings checked against the
 *                  source and destination schemas they join.
 *
 * Place: api/routes.c -> [mappings: shapes and fields checked] -> api/resource.c -> PG.
 * Threads: prepare on the loop thread; the update hook on job threads.
 * Not here: the accepted shapes are described in docs/catalog.md.
 */
#ifndef AGGD_API_MAPPINGS_H
#define AGGD_API_MAPPINGS_H

#include <stdbool.h>

#include <yajl/yajl_tree.h>

#include "api/req.h"

/* Whether the schema <schema> (a JSON Schema object with "properties", or an object
 * with "fields": [{"name": …}, …]) has the field <name>; dots address nested
 * properties and fields ("user.mail"), "items" of arrays included. Pure. */
bool api_mapping_has_field(yajl_val schema, const char *name);

/* POST schema-mappings: the generic validation, then every mapped field must exist. */
bool api_mapping_prepare_create(struct api_req *r);

extern const struct api_resource api_res_mappings;

#endif
