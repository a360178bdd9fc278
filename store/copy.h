/*
 * store/copy.h — one record as one row of PostgreSQL COPY, binary (what the writer
 *                sends) or text (the format of spool records of older builds).
 *
 * Place: record -> [copy] -> batch -> writer (COPY system_logs (...) FROM STDIN
 *        (FORMAT binary)).
 * Threads: pure; the scratch buffers belong to the caller's thread.
 * Ownership: appends to caller-owned buffers; keeps no pointer into the record.
 * Traps: PostgreSQL text and jsonb accept neither NUL nor invalid UTF-8 (binary input
 *        checks them too), so both become U+FFFD; VARCHAR(n) counts characters, so
 *        truncation cuts at a character boundary and names the column in
 *        extra_data.truncated. Binary values are the types' send formats: a column
 *        whose type changes in schema/ must change here (st_copy_is_tuple checks the
 *        fixed sizes).
 */
#ifndef AGGD_STORE_COPY_H
#define AGGD_STORE_COPY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/record.h"

/* The column list of every COPY, in row order. */
#define ST_COPY_COLUMNS                                                                        \
    "level, message, logger_name, module, function_name, line_number, correlation_id, "       \
    "user_id, request_id, request_method, request_path, request_ip, duration_ms, "             \
    "memory_usage_mb, exception_type, exception_message, stack_trace, extra_data, created_at"

/* Columns of ST_COPY_COLUMNS, and the positions the writer reads back. */
#define ST_COPY_NCOLS          19
#define ST_COPY_COL_USER_ID    7
#define ST_COPY_COL_EXTRA_DATA 17

/* Binary COPY framing: the signature, flags and header extension (19 bytes) before the
 * first tuple, the field count -1 (2 bytes) after the last. */
#define ST_COPY_HEADER_LEN  19
#define ST_COPY_TRAILER_LEN 2
extern const char st_copy_header[ST_COPY_HEADER_LEN];
extern const char st_copy_trailer[ST_COPY_TRAILER_LEN];

enum st_copy_format {
    ST_COPY_BINARY = 0, /* one tuple: int16 field count, per field int32 length + value */
    ST_COPY_TEXT,       /* one line: tab-separated escaped fields, '\n' */
};

struct st_copy_scratch {
    struct agg_buf repair; /* UTF-8 repair of one field */
    struct agg_buf extra;  /* extra_data with aggd's additions */
};

void st_copy_scratch_init(struct st_copy_scratch *s);
void st_copy_scratch_clear(struct st_copy_scratch *s);

/* Appends <rec> as one row in <format> to <out>. <created_us> is the timestamp to store
 * (the caller applies the receive-time and accept-window policy); <original_us>, unless
 * AGG_TIME_NONE, is kept as extra_data.original_timestamp. Both formats carry the same
 * values. AGG_ENOMEM leaves <out> as it was. */
int st_copy_encode(struct agg_buf *out, enum st_copy_format format, const struct agg_record *rec,
                   int64_t created_us, int64_t original_us, struct st_copy_scratch *scratch);

/* True when <p>[<len>] is exactly one binary tuple of ST_COPY_COLUMNS: 19 fields whose
 * lengths add up to <len>, integers 4 bytes, floats and timestamps 8, jsonb version 1. */
bool st_copy_is_tuple(const char *p, size_t len);

/* Field <col> of the valid tuple <p> (st_copy_is_tuple): its length, -1 for NULL, and
 * in *<off> the offset of its value (after its length word). */
int32_t st_copy_field(const char *p, int col, size_t *off);

/* The integer column <col> of the valid tuple <p> into *<v>; false when it is NULL. */
bool st_copy_field_int4(const char *p, int col, int32_t *v);

/* Appends to <out> the binary tuple of the COPY text row <row>[<len>] (one line with its
 * '\n', as st_copy_encode's text wrote it): the replay of spool records of builds that
 * spooled text. AGG_EINVAL, <out> as it was, for anything else. */
int st_copy_text_to_binary(struct agg_buf *out, const char *row, size_t len);

#endif
