/*
 * src/http_ingest.h — POST /v1/logs: NDJSON, JSON and OTLP JSON over HTTP.
 *
 * Place: HTTP router -> [http_ingest: auth, media type, decompression, decoding]
 *        -> pipeline.
 * Threads: event-loop thread only.
 * Ownership: borrows the router, pipeline and sessions until freed.
 */
#ifndef AGGD_SRC_HTTP_INGEST_H
#define AGGD_SRC_HTTP_INGEST_H

#include "api/session.h"
#include "store/pipeline.h"
#include "core/config.h"
#include "core/http.h"

struct agg_http_ingest;

/* Registers POST /v1/logs on <http>, as the ingest.* keys <opts> (read during the
 * call) say. <sessions> may be NULL only when <opts>->http_auth is none. Caller owns
 * the result: agg_http_ingest_free(). */
struct agg_http_ingest *agg_http_ingest_new(struct agg_http *http,
                                            const struct agg_ingest_opts *opts,
                                            struct st_pipeline *pipeline,
                                            struct api_sessions *sessions, struct agg_err *err);
/* Answers the requests still waiting for room with 503 and takes no more: call before
 * the pipeline shuts down. agg_http_ingest_free() does it too. */
void agg_http_ingest_stop(struct agg_http_ingest *h);
void agg_http_ingest_free(struct agg_http_ingest *h);

/* A reload changed ingest.max_body_bytes: requests from now on get the new limit. */
void agg_http_ingest_set_max_body(struct agg_http_ingest *h, struct agg_http *http,
                                  int64_t max_body_bytes);

#endif
