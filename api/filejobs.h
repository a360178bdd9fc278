/*
 * api/filejobs.h — file processing jobs over the API: POST/GET files/{id}/jobs,
 *                  GET jobs/{id}. The jobs themselves run in src/filejobs.c.
 *
 * Place: api/routes.c -> [filejobs: body check on the loop, SQL on a job thread] -> PG.
 * Threads: prepare on the loop thread; *_work on the API's job threads.
 * Ownership: nothing beyond the request.
 * Traps: a file is visible to its owner and admins only, and its jobs with it: every
 *        route answers 404 for a file the caller may not see. The runner reads
 *        result_data.options, written here once at creation.
 */
#ifndef AGGD_API_FILEJOBS_H
#define AGGD_API_FILEJOBS_H

#include <stdbool.h>

#include "api/resource.h"

/* The jobs of one file (routes files/{id}/jobs) and all jobs (jobs/{id}). */
extern const struct api_resource api_res_file_jobs, api_res_jobs;

/* POST files/{id}/jobs: checks {"job_type", "options"} (loop thread), then makes the
 * pending job (job thread): 404 unseen file, 409 while it uploads, 422 for a format
 * or conversion the file cannot have. 201 with the job. */
bool api_filejobs_prepare_create(struct api_req *r);
void api_filejobs_create_work(struct api_req *r, PGconn *conn);

/* GET files/{id}/jobs: 404 for an unseen file, else the keyset list. */
void api_filejobs_list_work(struct api_req *r, PGconn *conn);

#endif
