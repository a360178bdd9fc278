/*
 * core/record.h — one event on its way to a system_logs row.
 *
 * Place: parsers/decoders -> [record] -> sink (batcher: COPY encoding) -> writer.
 * Threads: pure; records are built and consumed on one thread.
 * Ownership: a record only borrows: every string points into the input or a
 *            decoder's scratch buffer, valid for the duration of one sink call.
 * Not here: COPY encoding (store/copy.c), timestamp range policy (the batcher).
 */
#ifndef AGGD_CORE_RECORD_H
#define AGGD_CORE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/time.h"
#include "core/err.h"

enum agg_level {
    AGG_LEVEL_DEBUG = 0,
    AGG_LEVEL_INFO,
    AGG_LEVEL_WARNING,
    AGG_LEVEL_ERROR,
    AGG_LEVEL_CRITICAL,
};

enum agg_transport {
    AGG_TRANSPORT_SYSLOG_UDP = 0,
    AGG_TRANSPORT_SYSLOG_TCP,
    AGG_TRANSPORT_JSON_TCP,
    AGG_TRANSPORT_HTTP,
    AGG_TRANSPORT_COUNT,
};

/* The system_logs columns a producer can set. Text columns first, so they index
 * agg_record.str[]; then the typed ones. */
enum agg_field {
    AGG_F_MESSAGE = 0,
    AGG_F_LOGGER_NAME,
    AGG_F_MODULE,
    AGG_F_FUNCTION_NAME,
    AGG_F_CORRELATION_ID,
    AGG_F_REQUEST_ID,
    AGG_F_REQUEST_METHOD,
    AGG_F_REQUEST_PATH,
    AGG_F_REQUEST_IP,
    AGG_F_EXCEPTION_TYPE,
    AGG_F_EXCEPTION_MESSAGE,
    AGG_F_STACK_TRACE,
    AGG_F_STR_COUNT,
    AGG_F_LINE_NUMBER = AGG_F_STR_COUNT,
    AGG_F_USER_ID,
    AGG_F_DURATION_MS,
    AGG_F_MEMORY_USAGE_MB,
    AGG_F_LEVEL,
    AGG_F_CREATED_AT,
    AGG_F_COUNT,
};

/* A borrowed byte string; p == NULL means absent (SQL NULL). Bytes may be any
 * (invalid UTF-8, NUL): the COPY encoder repairs them. */
struct agg_str {
    const char *p;
    size_t len;
};

struct agg_record {
    int64_t created_us; /* AGG_TIME_NONE: use the receive time */
    enum agg_level level;
    bool has_level;
    struct agg_str str[AGG_F_STR_COUNT];
    bool has_line_number, has_user_id, has_duration_ms, has_memory_usage_mb;
    int32_t line_number;
    int32_t user_id;
    int32_t duration_ms;
    double memory_usage_mb;
    /* A user_id that is not an INTEGER ("u-123", a UUID, 2147483648), as sent: the
     * column stays NULL and store/copy.c adds it to extra_data as "user_id". */
    struct agg_str user_id_orig;
    bool user_id_orig_is_string; /* a JSON string; else a JSON literal (number, boolean) */
    struct agg_str extra; /* a JSON object's text for extra_data, or absent */
    struct agg_str raw;   /* the event as received, for ingest_rejects */
};

/* Where decoders deliver events. <rec> and all it points to are borrowed for the
 * call. emit returns AGG_OK, or AGG_EFULL when no more events can be taken now
 * (the decoder stops and returns AGG_EFULL). reject gets events that could not be
 * decoded: their <index> in the request or stream, the reason, the raw bytes. */
struct agg_sink {
    int (*emit)(void *arg, const struct agg_record *rec);
    void (*reject)(void *arg, size_t index, const char *why, const char *raw, size_t rawlen);
    void *arg;
};

/* Every field absent, level unset, created_us AGG_TIME_NONE. */
void agg_record_init(struct agg_record *rec);

/* The field named by the system_logs column <name>[<len>] (exact, lower case), or -1.
 * Used for syslog SD parameters. */
int agg_field_by_column(const char *name, size_t len);

/* As agg_field_by_column, plus the JSON aliases (docs/json-mapping.md): timestamp,
 * time, @timestamp -> created_at; msg -> message; severity, levelname -> level;
 * name, logger -> logger_name; stack, exc_info, exception -> stack_trace. */
int agg_field_by_json_key(const char *name, size_t len);

/* The column name of <field>. */
const char *agg_field_name(int field);

/* Largest number of characters the column of text <field> holds (VARCHAR(n)); 0 for
 * unbounded text. */
size_t agg_field_max_chars(int field);

/* Sets <field> from text: text columns take it as is; integer columns a decimal
 * integer in range ("12.0" allowed; duration_ms rounds fractions); memory_usage_mb
 * a number; level a level name (agg_level_parse) or a syslog severity digit 0-7;
 * created_at an ISO 8601 timestamp or epoch seconds/milliseconds/micro/nanoseconds.
 * user_id never fails: text that is not an INTEGER is kept as user_id_orig (a
 * string; <p> must then live as long as the record). Numbers may be subnormal or
 * underflow to 0; a finite number beyond a double is out of range.
 * AGG_EINVAL + <err> naming the field on a bad value. */
int agg_record_set_text(struct agg_record *rec, int field, const char *p, size_t len,
                        struct agg_err *err);

/* Sets <field> from a JSON number (<text> is its literal). Text columns refuse
 * numbers; level takes a syslog severity 0-7; user_id keeps a number that is not
 * an INTEGER as user_id_orig (a JSON literal if jsonb can hold it, else a string;
 * <text> must live as long as the record). AGG_EINVAL naming the field. */
int agg_record_set_number(struct agg_record *rec, int field, const char *text, size_t len,
                          struct agg_err *err);

/* Keeps <p>[<len>] as the original of a user_id that is not an INTEGER: the column
 * becomes NULL. <is_string>: a JSON string; else a JSON literal, written as is when
 * it is true, false or a JSON number jsonb can hold, else kept as a string.
 * Borrows <p> for the record's life. */
void agg_record_keep_user_id(struct agg_record *rec, const char *p, size_t len, bool is_string);

/* Fills exception_type and exception_message, each only when absent, from the
 * stack_trace: the exception line of a Python traceback ("ValueError: bad", after
 * the last "  File" frame) or the text before the frames of a V8 (Node.js) stack
 * ("TypeError: x is not a function" before "    at" lines) or a Java one ("\tat"
 * lines). Nothing when stack_trace is in none of these shapes, or when a present
 * exception_type differs from the derived one. The strings point into stack_trace. */
void agg_record_derive_exception(struct agg_record *rec);

/* Whether PostgreSQL's numeric (jsonb numbers) takes the JSON number <s>[<n>]:
 * exponent within +-1000, at most 16383 digits after the point once scaled, at
 * most 131072 before it. */
bool agg_jsonb_number_ok(const char *s, size_t n);

/* Parses a level name, case-insensitive: trace/debug -> DEBUG; info, information,
 * informational, notice -> INFO; warn, warning -> WARNING; err, error -> ERROR;
 * crit, critical, fatal, alert, emerg, emergency, panic -> CRITICAL. */
bool agg_level_parse(const char *p, size_t len, enum agg_level *out);

/* DESIGN.md: 0-2 CRITICAL, 3 ERROR, 4 WARNING, 5-6 INFO, 7 DEBUG. */
enum agg_level agg_level_from_syslog(int severity);

/* OTLP severityNumber 1-24: TRACE/DEBUG -> DEBUG, INFO, WARN, ERROR, FATAL ->
 * CRITICAL; 0 (unspecified) or out of range -> INFO. */
enum agg_level agg_level_from_otlp(int number);

/* "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL". */
const char *agg_level_name(enum agg_level level);

/* Epoch number (seconds, ms, µs or ns chosen by magnitude) to microseconds. */
bool agg_time_from_epoch(double v, int64_t *us);

#endif
