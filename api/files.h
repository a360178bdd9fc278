/*
 * api/files.h — resumable file uploads under /api/v1/files: declare, chunks, content,
 *               delete, per-user quota, and the expiry of temporary files.
 *
 * Place: routes (api/routes.c) -> [files: rows in file_uploads, bytes in uploads.dir
 *        (api/uploads.h)] -> PostgreSQL and the disk, on job threads.
 * Threads: prepare/done on the loop thread; *_work on API job threads; the maintenance
 *          pass on its own job thread, timed from the loop.
 * Ownership: the router owns the state (api_files_new/api_files_free) and lends it to
 *            each request as r->ctx.
 * Traps: a chunk's bytes are fdatasync'd before its row is written, and the last chunk
 *        renames "<id>.part" to "<id>.data" before the transaction that says "uploaded"
 *        commits: a crash between leaves "<id>.data" under an "uploading" row, which the
 *        start-up pass renames back (the client resends that chunk).
 * Not here: the path rule (api/uploads.h); processing jobs of a file (api/jobs).
 */
#ifndef AGGD_API_FILES_H
#define AGGD_API_FILES_H

#include <stdint.h>

#include <event2/event.h>

#include "api/req.h"
#include "api/resource.h"
#include "store/pool.h"

/* The largest chunk of an upload (also the raw body limit of its route). */
#define API_FILES_MAX_CHUNK API_MAX_RAW_BYTES
/* Seconds between maintenance passes (expiry), the first one at start. */
#define API_FILES_PASS_S 60
/* Lifetime of a temporary file declared without expires_at. */
#define API_FILES_TEMP_TTL_S (24 * 3600)

struct api_files;

/* The uploads of <dir> (copied; created when missing, a failure only logged) with a quota of <max_bytes> per
 * user; runs the maintenance pass now (also removing files a crash left without a row)
 * and every API_FILES_PASS_S on a job thread with connections of <pool> (borrowed until
 * api_files_free()). Caller owns the result. NULL + <err> on failure. Loop thread. */
struct api_files *api_files_new(struct event_base *base, struct st_pool *pool, const char *dir,
                                int64_t max_bytes, struct agg_err *err);

/* Stops the timer, lets a running pass end, frees. Accepts NULL. Loop thread. */
void api_files_free(struct api_files *f);

/* The file_uploads resource (lists and reads: the owner's files, all for admins). */
extern const struct api_resource api_res_files;

/* POST files: validates the declaration (cross-field rules too). */
bool api_files_prepare_create(struct api_req *r);
/* ... and creates the row and the preallocated "<id>.part" under the quota. */
void api_files_create_work(struct api_req *r, PGconn *conn);

/* PUT files/{id}/chunks/{n}: writes chunk n; the last one checks and publishes. */
void api_files_chunk_work(struct api_req *r, PGconn *conn);

/* GET files/{id}/content: prepare reads Range, work opens the file, done streams it. */
bool api_files_prepare_content(struct api_req *r);
void api_files_content_work(struct api_req *r, PGconn *conn);
void api_files_content_done(struct api_req *r);

/* DELETE files/{id}: the row, its chunk rows and its bytes; 409 while a job runs. */
void api_files_delete_work(struct api_req *r, PGconn *conn);

#endif
