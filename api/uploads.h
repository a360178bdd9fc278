/*
 * api/uploads.h — where an uploaded file's bytes live: "<uploads.dir>/<id><suffix>",
 *                 API_UPLOAD_PART while its chunks arrive, API_UPLOAD_DATA once whole
 *                 (file_uploads.file_path holds "<id>.data", relative to uploads.dir).
 *
 * Place: api/files.c (uploads, downloads, expiry) and the file processing jobs.
 * Threads: pure; any thread.
 */
#ifndef AGGD_API_UPLOADS_H
#define AGGD_API_UPLOADS_H

#include <stdbool.h>
#include <stddef.h>

#define API_UPLOAD_PART ".part"
#define API_UPLOAD_DATA ".data"

/* "<dir>/<id><suffix>" into <buf>[<cap>]. false when it does not fit. */
bool api_upload_path(const char *dir, int id, const char *suffix, char *buf, size_t cap);

/* The id of a directory entry named "<id>.part" or "<id>.data" (digits without a
 * leading zero), or 0 for any other name. */
int api_upload_id_of(const char *name);

#endif
