/*
 * store/copy.h — one record as one row of PostgreSQL COPY text format.
 *
 * Place: record -> [copy] -> batch -> writer (COPY system_logs (...) FROM STDIN).
 * Threads: pure; the scratch buffers belong to the caller's thread.
 * Ownership: appends to caller-owned buffers; keeps no pointer into the record.
 * Traps: PostgreSQL text and jsonb accept neither NUL nor invalid UTF-8, so both
 *        become U+FFFD; VARCHAR(n) counts characters, so truncation cuts at a
 *        character boundary and names the column in extra_data.truncated.
 */
#ifndef AGGD_STORE_COPY_H
#define AGGD_STORE_COPY_H

#include <stdint.h>

#include "core/buf.h"
#include "core/record.h"

/* The column list of every COPY, in row order. */
#define ST_COPY_COLUMNS                                                                        \
    "level, message, logger_name, module, function_name, line_number, correlation_id, "       \
    "user_id, request_id, request_method, request_path, request_ip, duration_ms, "             \
    "memory_usage_mb, exception_type, exception_message, stack_trace, extra_data, created_at"

struct st_copy_scratch {
    struct agg_buf repair; /* UTF-8 repair of one field */
    struct agg_buf extra;  /* extra_data with aggd's additions */
};

void st_copy_scratch_init(struct st_copy_scratch *s);
void st_copy_scratch_clear(struct st_copy_scratch *s);

/* Appends <rec> as one COPY text row (ending in '\n') to <out>. <created_us> is the
 * timestamp to store (the caller applies the receive-time and accept-window policy);
 * <original_us>, unless AGG_TIME_NONE, is kept as extra_data.original_timestamp.
 * AGG_ENOMEM leaves <out> as it was. */
int st_copy_encode(struct agg_buf *out, const struct agg_record *rec, int64_t created_us,
                   int64_t original_us, struct st_copy_scratch *scratch);

/* Appends <p>[<len>] escaped for a COPY text field (backslash, tab, LF, CR). */
int st_copy_escape(struct agg_buf *out, const char *p, size_t len);

#endif
