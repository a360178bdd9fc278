/*
 * ingest/http_ingest.h — POST /v1/logs: NDJSON, JSON and OTLP JSON over HTTP.
 *
 * Place: HTTP router -> [http_ingest: auth, media type, decompression, decoding]
 *        -> pipeline.
 * Threads: event-loop thread only.
 * Ownership: borrows the router, pipeline and sessions until freed.
 */
#ifndef AGGD_INGEST_HTTP_INGEST_H
#define AGGD_INGEST_HTTP_INGEST_H

#include "api/session.h"
#include "ingest/pipeline.h"
#include "src/config.h"
#include "src/http.h"

struct ing_http;

/* Registers POST /v1/logs on <http>. <sessions> may be NULL only when
 * ingest.http_auth is none. Caller owns the result: ing_http_free(). */
struct ing_http *ing_http_new(struct agg_http *http, const struct agg_config *cfg,
                              struct ing_pipeline *pipeline, struct api_sessions *sessions,
                              struct agg_err *err);
/* Answers the requests still waiting for room with 503 and takes no more: call before
 * the pipeline shuts down. ing_http_free() does it too. */
void ing_http_stop(struct ing_http *h);
void ing_http_free(struct ing_http *h);

#endif
