/*
 * api/connectors.h — /api/v1/connectors: the connectors table, with the secrets in a
 *                    connector's config sealed at rest and answered as "***".
 *
 * Place: api/routes.c -> [connectors: secret leaves checked on the loop, sealed and
 *        merged on the job] -> api/resource.c -> PostgreSQL.
 * Threads: prepare_* on the loop thread; the resource's hooks on job threads.
 * Ownership: r->ctx is the API's key (struct api_secrets, api/secret.h), borrowed.
 * Not here: the cipher and the key file (api/secret.c); masking answers is SQL
 *           (aggd_mask_secrets, schema/0007_catalog.up.sql).
 */
#ifndef AGGD_API_CONNECTORS_H
#define AGGD_API_CONNECTORS_H

#include <stdbool.h>

#include "api/req.h"

/* Whether an object key names a secret: lower-cased, with '-' read as '_', it equals
 * or ends with password, passwd, passphrase, secret, token, api_key, apikey,
 * private_key, access_key, secret_key, client_secret or credentials. Pure. */
bool api_connector_is_secret_name(const char *key);

/* POST / PATCH connectors: the generic validation, then every secret leaf of config
 * must be a string or null (422 naming its path, e.g. config.auth.password). */
bool api_connector_prepare_create(struct api_req *r);
bool api_connector_prepare_update(struct api_req *r);

extern const struct api_resource api_res_connectors;

#endif
