/*
 * ingest/otlp.h — OTLP logs: the mapping of one decoded LogRecord onto a record,
 *                 shared by the OTLP decoders (today OTLP/HTTP JSON, decoded by
 *                 ing_json_decode_document through ingest/otlp.c).
 *
 * Place: an OTLP decoder -> [otlp mapping] -> record -> sink (pipeline); the mapping
 *        is docs/json-mapping.md, "OTLP/HTTP JSON logs".
 * Threads: pure; callable from any thread.
 * Ownership: the record points into the strings it is given; keeps nothing.
 * Traps: a decoder sets the attributes' columns first (ing_otlp_attr_column) and
 *        then the record's own fields (ing_otlp_log_columns), which win.
 * Not here: JSON tokenizing and the OTLP/HTTP JSON walk (ingest/json_int.h,
 *           ingest/otlp.c); extra_data, which each decoder writes from its own input.
 */
#ifndef AGGD_INGEST_OTLP_H
#define AGGD_INGEST_OTLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/record.h"

/* The LogRecord fields that fill columns, already decoded and checked. A string
 * with len 0 is "not given" unless said otherwise. */
struct ing_otlp_log {
    uint64_t time_ns;             /* timeUnixNano; 0: not given */
    uint64_t observed_ns;         /* observedTimeUnixNano; 0: not given */
    int severity_number;          /* 1-24; 0: SEVERITY_NUMBER_UNSPECIFIED */
    struct agg_str severity_text; /* p NULL: not given */
    struct agg_str body;          /* a string body's text, another body re-encoded as
                                   * JSON; p NULL: no body (message "") */
    struct agg_str trace_id;      /* as sent (hex in JSON) */
    struct agg_str scope_name;    /* the InstrumentationScope's name */
};

/* Sets the column that attribute <key>[<key_len>] names — a column's own name except
 * message, level and created_at, or an OpenTelemetry semantic-convention name such as
 * exception.type, code.lineno, enduser.id (docs/json-mapping.md) — from the scalar
 * <val>[<val_len>]: a text column takes it as it is; another column parses it as a
 * number when <is_number> (an int or double AnyValue, even an int64 sent as a
 * string), else as text. Any other key, or a value the column refuses, leaves <rec>
 * as it was: an attribute never rejects a record. <rec> then points into <val>. */
void ing_otlp_attr_column(struct agg_record *rec, const char *key, size_t key_len, const char *val,
                          size_t val_len, bool is_number);

/* Sets <rec>'s columns from <log>, after the attributes' columns: logger_name from
 * the scope when no attribute set it; the exception columns a stack trace implies;
 * created_at from time_ns, else observed_ns (none: left unset); level from
 * severity_number, else from a severity_text that is a level name (an OTel digit
 * suffix allowed: "WARN2"); message from the body ("" without one); correlation_id
 * from trace_id. Returns whether severity_text is a level name, when the decoder
 * leaves it out of extra_data. <rec> then points into <log>'s strings. */
bool ing_otlp_log_columns(struct agg_record *rec, const struct ing_otlp_log *log);

#endif
