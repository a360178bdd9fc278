/*
 * ingest/decompress.h — request-body decompression (Content-Encoding) with a hard
 *                       output bound.
 *
 * Place: HTTP body -> [decompress] -> json decoders.
 * Threads: pure; callable from any thread (state lives on the stack and in <out>).
 * Ownership: appends to a caller-owned buffer; keeps no pointer into the input.
 * Traps: the bound is enforced while inflating, so a decompression bomb costs at
 *        most <max_out> bytes (plus zstd's window, capped near max_out) and the time
 *        to produce them.
 */
#ifndef AGGD_INGEST_DECOMPRESS_H
#define AGGD_INGEST_DECOMPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

enum ing_encoding {
    ING_ENCODING_IDENTITY = 0,
    ING_ENCODING_GZIP,
    ING_ENCODING_ZSTD,
};

/* Parses a Content-Encoding header value, case-insensitive, surrounding blanks
 * ignored: NULL, "" or "identity" -> identity; "gzip", "x-gzip"; "zstd". False for
 * anything else, including lists of codings ("gzip, zstd"): the HTTP layer answers
 * 415. <header> is borrowed for the call. */
bool ing_encoding_parse(const char *header, enum ing_encoding *out);

/* The canonical name of <enc> ("identity", "gzip", "zstd"). */
const char *ing_encoding_name(enum ing_encoding enc);

/* Decompresses <in>[<len>] and appends the result to <out>, producing at most
 * <max_out> bytes. gzip: one or more concatenated members, nothing after the last;
 * zstd: one or more frames (skippable frames allowed). Empty input gives empty
 * output in every encoding.
 * Returns AGG_OK; AGG_EFULL when the output would exceed <max_out> (found as early as
 * possible: a zstd frame declaring a larger size fails before any inflating) — the
 * HTTP layer answers 413; AGG_EINVAL + <err> for corrupt or truncated input or
 * trailing garbage (400); AGG_ENOMEM. On any error <out> is left as it was.
 * Borrows <in> and <out> for the call. */
int ing_decompress(enum ing_encoding enc, const char *in, size_t len, size_t max_out,
                   struct agg_buf *out, struct agg_err *err);

#endif
