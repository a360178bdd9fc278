/*
 * api/files_int.h — the pure parts of api/files.c, for its unit test
 *                   (tests/test_api_files.c) only.
 *
 * Threads: pure; any thread.
 */
#ifndef AGGD_API_FILES_INT_H
#define AGGD_API_FILES_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

/* ceil(<file_size> / <total>): every chunk's size but the last's. */
long long api_files_chunk_size(long long file_size, long long total);

/* Bytes of chunk <n> (0-based) of a file of <file_size> in <total> chunks. */
long long api_files_chunk_len(long long file_size, long long total, long long n);

/* The file type from the name's extension, else the MIME type (may be NULL), else
 * "binary": csv, tsv, json, ndjson (.ndjson, .jsonl), log, syslog, txt, xml, gzip,
 * zstd. Static text. */
const char *api_files_type_of(const char *filename, const char *mime);

/* The top-level key of the object <json> whose value holds an escaped NUL ("\u0000":
 * yajl decodes it, and C strings end there) into <key>[<cap>]; false when none does. */
bool api_files_nul_field(const char *json, char *key, size_t cap);

/* A Range header's single byte range. */
struct api_files_range {
    bool ranged;     /* "bytes=a-b", "bytes=a-" or "bytes=-n" */
    long long first; /* first byte; -1: the last <last> bytes */
    long long last;  /* last byte; -1: to the end */
};

/* Reads header value <h> (may be NULL) into <out>; anything else (several ranges,
 * other units, garbage) leaves it unranged: the whole file is sent, as RFC 9110
 * allows. */
void api_files_parse_range(const char *h, struct api_files_range *out);

/* The bytes of a file of <size> to send for <rg>: *<offset>, *<length>. false when the
 * range is unsatisfiable (416). */
bool api_files_pick_range(const struct api_files_range *rg, long long size, long long *offset,
                          long long *length);

/* Appends the NUL-terminated Content-Disposition of <filename> (UTF-8) to <b>:
 * attachment; filename="<ASCII, with '"', '\\' and non-ASCII as '_'>";
 * filename*=UTF-8''<percent-encoded>. AGG_OK or AGG_ENOMEM. */
int api_files_disposition(struct agg_buf *b, const char *filename);

#endif
