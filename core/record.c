/*
 * core/record.c — field names, typed setters and level mapping for records.
 *
 * Place: see core/record.h.
 * Threads: pure.
 * Traps: epoch numbers are read by magnitude: below 1e11 seconds, below 1e14
 *        milliseconds, below 1e17 microseconds, else nanoseconds.
 */
#include "core/record.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    size_t max_chars;
} fields[AGG_F_COUNT] = {
    [AGG_F_MESSAGE] = {"message", 0},
    [AGG_F_LOGGER_NAME] = {"logger_name", 255},
    [AGG_F_MODULE] = {"module", 255},
    [AGG_F_FUNCTION_NAME] = {"function_name", 255},
    [AGG_F_CORRELATION_ID] = {"correlation_id", 100},
    [AGG_F_REQUEST_ID] = {"request_id", 100},
    [AGG_F_REQUEST_METHOD] = {"request_method", 10},
    [AGG_F_REQUEST_PATH] = {"request_path", 500},
    [AGG_F_REQUEST_IP] = {"request_ip", 45},
    [AGG_F_EXCEPTION_TYPE] = {"exception_type", 255},
    [AGG_F_EXCEPTION_MESSAGE] = {"exception_message", 0},
    [AGG_F_STACK_TRACE] = {"stack_trace", 0},
    [AGG_F_LINE_NUMBER] = {"line_number", 0},
    [AGG_F_USER_ID] = {"user_id", 0},
    [AGG_F_DURATION_MS] = {"duration_ms", 0},
    [AGG_F_MEMORY_USAGE_MB] = {"memory_usage_mb", 0},
    [AGG_F_LEVEL] = {"level", 0},
    [AGG_F_CREATED_AT] = {"created_at", 0},
};

void agg_record_init(struct agg_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->created_us = AGG_TIME_NONE;
    rec->level = AGG_LEVEL_INFO;
}

static bool name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(name, want, len) == 0;
}

int agg_field_by_column(const char *name, size_t len)
{
    for (int i = 0; i < AGG_F_COUNT; i++) {
        if (name_is(name, len, fields[i].name))
            return i;
    }
    return -1;
}

int agg_field_by_json_key(const char *name, size_t len)
{
    int f = agg_field_by_column(name, len);

    if (f >= 0)
        return f;
    if (name_is(name, len, "timestamp") || name_is(name, len, "time") ||
        name_is(name, len, "@timestamp"))
        return AGG_F_CREATED_AT;
    if (name_is(name, len, "msg"))
        return AGG_F_MESSAGE;
    if (name_is(name, len, "severity") || name_is(name, len, "levelname"))
        return AGG_F_LEVEL;
    if (name_is(name, len, "name") || name_is(name, len, "logger"))
        return AGG_F_LOGGER_NAME;
    if (name_is(name, len, "stack") || name_is(name, len, "exc_info") ||
        name_is(name, len, "exception"))
        return AGG_F_STACK_TRACE;
    return -1;
}

const char *agg_field_name(int field)
{
    return field >= 0 && field < AGG_F_COUNT ? fields[field].name : "?";
}

size_t agg_field_max_chars(int field)
{
    return field >= 0 && field < AGG_F_STR_COUNT ? fields[field].max_chars : 0;
}

bool agg_level_parse(const char *p, size_t len, enum agg_level *out)
{
    static const struct {
        const char *name;
        enum agg_level level;
    } names[] = {
        {"debug", AGG_LEVEL_DEBUG},       {"trace", AGG_LEVEL_DEBUG},
        {"info", AGG_LEVEL_INFO},         {"information", AGG_LEVEL_INFO},
        {"informational", AGG_LEVEL_INFO}, {"notice", AGG_LEVEL_INFO},
        {"warn", AGG_LEVEL_WARNING},      {"warning", AGG_LEVEL_WARNING},
        {"err", AGG_LEVEL_ERROR},         {"error", AGG_LEVEL_ERROR},
        {"crit", AGG_LEVEL_CRITICAL},     {"critical", AGG_LEVEL_CRITICAL},
        {"fatal", AGG_LEVEL_CRITICAL},    {"alert", AGG_LEVEL_CRITICAL},
        {"emerg", AGG_LEVEL_CRITICAL},    {"emergency", AGG_LEVEL_CRITICAL},
        {"panic", AGG_LEVEL_CRITICAL},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i].name) == len && strncasecmp(p, names[i].name, len) == 0) {
            *out = names[i].level;
            return true;
        }
    }
    return false;
}

enum agg_level agg_level_from_syslog(int severity)
{
    if (severity <= 2)
        return AGG_LEVEL_CRITICAL;
    if (severity == 3)
        return AGG_LEVEL_ERROR;
    if (severity == 4)
        return AGG_LEVEL_WARNING;
    if (severity <= 6)
        return AGG_LEVEL_INFO;
    return AGG_LEVEL_DEBUG;
}

enum agg_level agg_level_from_otlp(int number)
{
    if (number >= 1 && number <= 8)
        return AGG_LEVEL_DEBUG;
    if (number >= 13 && number <= 16)
        return AGG_LEVEL_WARNING;
    if (number >= 17 && number <= 20)
        return AGG_LEVEL_ERROR;
    if (number >= 21 && number <= 24)
        return AGG_LEVEL_CRITICAL;
    return AGG_LEVEL_INFO;
}

const char *agg_level_name(enum agg_level level)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};

    return (unsigned)level < 5 ? names[level] : "INFO";
}

bool agg_time_from_epoch(double v, int64_t *us)
{
    double a = fabs(v);

    if (!isfinite(v))
        return false;
    if (a < 1e11)
        v *= 1e6;
    else if (a < 1e14)
        v *= 1e3;
    else if (a >= 1e17)
        v /= 1e3;
    /* 0001-01-01 .. 9999-12-31, the range the COPY encoder can print */
    if (v < -62135596800e6 || v > 253402300799e6)
        return false;
    *us = (int64_t)llround(v);
    return true;
}

enum num { NUM_OK = 0, NUM_BAD, NUM_HUGE };

/* Parses the whole of <p>[<len>] as a finite number. A subnormal result, or one
 * that underflows to 0 (5e-324, 1e-400), is a number; NUM_HUGE: beyond a double. */
static enum num parse_double(const char *p, size_t len, double *out)
{
    char buf[64], *end;

    if (len == 0 || len >= sizeof(buf) || isspace((unsigned char)p[0]))
        return NUM_BAD;
    memcpy(buf, p, len);
    buf[len] = '\0';
    errno = 0;
    *out = strtod(buf, &end);
    if (*end != '\0')
        return NUM_BAD;
    if (!isfinite(*out)) /* overflow gives +-HUGE_VAL and ERANGE; "inf", "nan" no ERANGE */
        return errno == ERANGE ? NUM_HUGE : NUM_BAD;
    /* ERANGE with a finite result is underflow: the nearest double (subnormal or 0) */
    return NUM_OK;
}

/* Whether <s>[<n>] is a JSON number literal (RFC 8259 grammar). */
static bool json_number_syntax(const char *s, size_t n)
{
    size_t i = 0, d;

    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == '0') {
        i++;
    } else {
        for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            ;
        if (i == d || s[d] == '0')
            return false;
    }
    if (i < n && s[i] == '.') {
        for (d = ++i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            ;
        if (i == d)
            return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            ;
        if (i == d)
            return false;
    }
    return i == n;
}

void agg_record_keep_user_id(struct agg_record *rec, const char *p, size_t len, bool is_string)
{
    /* written verbatim into extra_data: only what jsonb takes stays a literal */
    if (!is_string && !(len == 4 && memcmp(p, "true", 4) == 0) &&
        !(len == 5 && memcmp(p, "false", 5) == 0) &&
        !(json_number_syntax(p, len) && agg_jsonb_number_ok(p, len)))
        is_string = true;
    rec->has_user_id = false;
    rec->user_id_orig = (struct agg_str){p, len};
    rec->user_id_orig_is_string = is_string;
}

bool agg_jsonb_number_ok(const char *s, size_t n)
{
    size_t i = 0, int_digits = 0, frac_digits = 0;
    long exp = 0;
    bool neg_exp = false;

    if (i < n && s[i] == '-')
        i++;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
        int_digits++;
    }
    if (i < n && s[i] == '.') {
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            frac_digits++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            neg_exp = s[i++] == '-';
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            exp = exp * 10 + (s[i] - '0');
            if (exp > 1000)
                return false;
        }
        if (neg_exp)
            exp = -exp;
    }
    if ((long)frac_digits - exp > 16383)
        return false;
    return (long)int_digits + exp <= 131072;
}

static int set_typed(struct agg_record *rec, int field, const char *p, size_t len, bool from_text,
                     struct agg_err *err)
{
    enum num parsed;
    double v;

    if (field == AGG_F_LEVEL) {
        if (len == 1 && p[0] >= '0' && p[0] <= '7')
            rec->level = agg_level_from_syslog(p[0] - '0');
        else if (!from_text || !agg_level_parse(p, len, &rec->level))
            return agg_err_set(err, AGG_EINVAL, "level: \"%.*s\" is not a log level",
                               (int)(len > 40 ? 40 : len), p);
        rec->has_level = true;
        return AGG_OK;
    }
    if (field == AGG_F_CREATED_AT) {
        if (from_text && agg_time_parse_iso8601(p, len, &rec->created_us))
            return AGG_OK;
        if (parse_double(p, len, &v) == NUM_OK && agg_time_from_epoch(v, &rec->created_us))
            return AGG_OK;
        return agg_err_set(err, AGG_EINVAL, "%s: \"%.*s\" is not a timestamp",
                           agg_field_name(field), (int)(len > 40 ? 40 : len), p);
    }
    parsed = parse_double(p, len, &v);
    if (field == AGG_F_USER_ID &&
        (parsed != NUM_OK || v != floor(v) || v < INT32_MIN || v > INT32_MAX)) {
        /* an application's own id: never a reason to refuse the event */
        agg_record_keep_user_id(rec, p, len, from_text);
        return AGG_OK;
    }
    if (parsed == NUM_HUGE)
        return agg_err_set(err, AGG_EINVAL, "%s: %.*s is out of range", agg_field_name(field),
                           (int)(len > 40 ? 40 : len), p);
    if (parsed != NUM_OK)
        return agg_err_set(err, AGG_EINVAL, "%s: \"%.*s\" is not a number",
                           agg_field_name(field), (int)(len > 40 ? 40 : len), p);
    if (field == AGG_F_MEMORY_USAGE_MB) {
        rec->memory_usage_mb = v;
        rec->has_memory_usage_mb = true;
        return AGG_OK;
    }
    if (field == AGG_F_DURATION_MS)
        v = round(v);
    if (v != floor(v))
        return agg_err_set(err, AGG_EINVAL, "%s: %.*s is not an integer", agg_field_name(field),
                           (int)(len > 40 ? 40 : len), p);
    if (v < INT32_MIN || v > INT32_MAX)
        return agg_err_set(err, AGG_EINVAL, "%s: %.*s is out of range", agg_field_name(field),
                           (int)(len > 40 ? 40 : len), p);
    switch (field) {
    case AGG_F_LINE_NUMBER:
        rec->line_number = (int32_t)v;
        rec->has_line_number = true;
        break;
    case AGG_F_USER_ID:
        rec->user_id = (int32_t)v;
        rec->has_user_id = true;
        rec->user_id_orig = (struct agg_str){NULL, 0};
        break;
    default:
        rec->duration_ms = (int32_t)v;
        rec->has_duration_ms = true;
        break;
    }
    return AGG_OK;
}

int agg_record_set_text(struct agg_record *rec, int field, const char *p, size_t len,
                        struct agg_err *err)
{
    if (field < 0 || field >= AGG_F_COUNT)
        return agg_err_set(err, AGG_EINVAL, "unknown field");
    if (field < AGG_F_STR_COUNT) {
        rec->str[field].p = p;
        rec->str[field].len = len;
        return AGG_OK;
    }
    return set_typed(rec, field, p, len, true, err);
}

int agg_record_set_number(struct agg_record *rec, int field, const char *text, size_t len,
                          struct agg_err *err)
{
    if (field < 0 || field >= AGG_F_COUNT)
        return agg_err_set(err, AGG_EINVAL, "unknown field");
    if (field < AGG_F_STR_COUNT)
        return agg_err_set(err, AGG_EINVAL, "%s must be a string, not a number",
                           agg_field_name(field));
    if (field == AGG_F_LEVEL) {
        double v;

        if (parse_double(text, len, &v) != NUM_OK || v != floor(v) || v < 0 || v > 7)
            return agg_err_set(err, AGG_EINVAL,
                               "level: %.*s is not a syslog severity (0-7) or a level name",
                               (int)(len > 40 ? 40 : len), text);
        rec->level = agg_level_from_syslog((int)v);
        rec->has_level = true;
        return AGG_OK;
    }
    return set_typed(rec, field, text, len, false, err);
}

/* ---- exception type and message from a stack trace ---------------------------- */

static bool type_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '$' || c == '.';
}

/* Whether <p>[<n>] reads "<Type>: <message>" or "<Type>" (Node.js also writes
 * "<Type> [<code>]: <message>"): the type into *<type>, the message, when there is
 * a non-blank one, into *<msg>. */
static bool exception_header(const char *p, size_t n, struct agg_str *type, struct agg_str *msg)
{
    size_t i = 0;

    while (n > 0 && isspace((unsigned char)p[n - 1]))
        n--;
    if (n == 0 || !(isalpha((unsigned char)p[0]) || p[0] == '_' || p[0] == '$'))
        return false;
    while (i < n && type_char(p[i]))
        i++;
    if (p[i - 1] == '.')
        return false;
    *type = (struct agg_str){p, i};
    *msg = (struct agg_str){NULL, 0};
    if (i + 1 < n && p[i] == ' ' && p[i + 1] == '[') {
        const char *close = memchr(p + i, ']', n - i);

        if (close == NULL || memchr(p + i, '\n', (size_t)(close - (p + i))) != NULL)
            return false;
        i = (size_t)(close - p) + 1;
    }
    if (i == n)
        return true;
    if (p[i] != ':')
        return false;
    for (i++; i < n && (p[i] == ' ' || p[i] == '\t'); i++)
        ;
    if (n > i)
        *msg = (struct agg_str){p + i, n - i};
    return true;
}

/* The exception part of Python traceback <p>[<n>]: from the first unindented line
 * after the last "  File" frame to the end. */
static bool python_exception(const char *p, size_t n, struct agg_str *out)
{
    static const char head[] = "Traceback (most recent call last):";
    static const char frame[] = "\n  File \"";
    const char *end = p + n, *last = NULL, *q;

    while (p < end && isspace((unsigned char)*p))
        p++;
    if ((size_t)(end - p) < sizeof(head) - 1 || memcmp(p, head, sizeof(head) - 1) != 0)
        return false;
    for (q = p; (q = memmem(q, (size_t)(end - q), frame, sizeof(frame) - 1)) != NULL; q++)
        last = q;
    if (last == NULL)
        return false;
    /* the frame's own line, then its indented source and caret lines */
    for (q = last + 1; q < end;) {
        const char *nl = memchr(q, '\n', (size_t)(end - q));

        if (q != last + 1 && *q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            *out = (struct agg_str){q, (size_t)(end - q)};
            return true;
        }
        if (nl == NULL)
            break;
        q = nl + 1;
    }
    return false;
}

/* The header of V8 stack <p>[<n>]: the text before the first "\n    at " frame
 * (or a Java one, "\n\tat "). */
static bool frames_header(const char *p, size_t n, struct agg_str *out)
{
    const char *at = memmem(p, n, "\n    at ", 8);
    const char *java = memmem(p, at != NULL ? (size_t)(at - p) : n, "\n\tat ", 5);

    if (java != NULL)
        at = java;
    if (at == NULL || at == p || isspace((unsigned char)p[0]))
        return false;
    *out = (struct agg_str){p, (size_t)(at - p)};
    return true;
}

void agg_record_derive_exception(struct agg_record *rec)
{
    struct agg_str st = rec->str[AGG_F_STACK_TRACE], *type = &rec->str[AGG_F_EXCEPTION_TYPE],
                   *msg = &rec->str[AGG_F_EXCEPTION_MESSAGE], head, t, m;

    if (st.p == NULL || (type->p != NULL && msg->p != NULL))
        return;
    if (!python_exception(st.p, st.len, &head) && !frames_header(st.p, st.len, &head))
        return;
    if (!exception_header(head.p, head.len, &t, &m))
        return;
    if (type->p != NULL && (type->len != t.len || memcmp(type->p, t.p, t.len) != 0))
        return; /* the message would be another exception's */
    *type = t;
    if (msg->p == NULL && m.p != NULL)
        *msg = m;
}
