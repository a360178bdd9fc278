/*
 * store/copy.c — COPY encoding of records: binary tuples, and text rows.
 *
 * Place: see store/copy.h.
 * Threads: pure.
 * Traps: what a column holds (NULL policy, repair, truncation, extra_data) is decided
 *        once in put_column; only the put_* leaves know the format. The text escape
 *        loop copies runs of plain bytes with one memcpy. PostgreSQL's binary
 *        timestamp counts microseconds from 2000-01-01, aggd's from 1970-01-01.
 */
#include "store/copy.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/time.h"

/* 2000-01-01 00:00:00 UTC in Unix microseconds: PostgreSQL's epoch. */
#define PG_EPOCH_US INT64_C(946684800000000)

const char st_copy_header[ST_COPY_HEADER_LEN] = "PGCOPY\n\377\r\n"; /* + 8 zero bytes */
const char st_copy_trailer[ST_COPY_TRAILER_LEN] = {(char)0xFF, (char)0xFF};

void st_copy_scratch_init(struct st_copy_scratch *s)
{
    agg_buf_init(&s->repair);
    agg_buf_init(&s->extra);
}

void st_copy_scratch_clear(struct st_copy_scratch *s)
{
    agg_buf_clear(&s->repair);
    agg_buf_clear(&s->extra);
}

/* Appends <p>[<len>] escaped for a COPY text field (backslash, tab, LF, CR). */
static int escape(struct agg_buf *out, const char *p, size_t len)
{
    const char *end = p + len;
    char *w;

    if (agg_buf_reserve(out, len * 2) != AGG_OK)
        return AGG_ENOMEM;
    w = out->data + out->len;
    while (p < end) {
        const char *run = p;

        while (p < end && *p != '\\' && *p != '\t' && *p != '\n' && *p != '\r')
            p++;
        memcpy(w, run, (size_t)(p - run));
        w += p - run;
        if (p == end)
            break;
        *w++ = '\\';
        *w++ = *p == '\\' ? '\\' : *p == '\t' ? 't' : *p == '\n' ? 'n' : 'r';
        p++;
    }
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
    return AGG_OK;
}

/* ---- the leaves: one value in <f>'s format ---- */

static void put_be(char *w, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        w[i] = (char)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_be(const char *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++)
        v = v << 8 | (unsigned char)p[i];
    return v;
}

/* A binary field: its length word then <p>[<len>] (<prefix> first when not 0). */
static int put_binary(struct agg_buf *out, char prefix, const char *p, size_t len)
{
    size_t n = len + (prefix != 0);
    char *w;

    if (n > INT32_MAX)
        return AGG_ENOMEM; /* PostgreSQL's field limit is 1 GB: never this far */
    if (agg_buf_reserve(out, 4 + n) != AGG_OK)
        return AGG_ENOMEM;
    w = out->data + out->len;
    put_be(w, n, 4);
    if (prefix != 0)
        w[4] = prefix;
    if (len > 0)
        memcpy(w + 4 + (prefix != 0), p, len);
    out->len += 4 + n;
    out->data[out->len] = '\0';
    return AGG_OK;
}

static int put_null(struct agg_buf *out, enum st_copy_format f)
{
    return f == ST_COPY_TEXT ? agg_buf_append(out, "\\N", 2)
                             : agg_buf_append(out, "\xFF\xFF\xFF\xFF", 4);
}

/* Bytes of a text, varchar or (with <jsonb>) jsonb column. */
static int put_bytes(struct agg_buf *out, enum st_copy_format f, bool jsonb, const char *p,
                     size_t len)
{
    if (f == ST_COPY_TEXT)
        return escape(out, p, len);
    return put_binary(out, jsonb ? 1 : 0, p, len); /* jsonb send format: version 1, text */
}

static int put_int4(struct agg_buf *out, enum st_copy_format f, bool has, int32_t v)
{
    char w[8];

    if (!has)
        return put_null(out, f);
    if (f == ST_COPY_TEXT)
        return agg_buf_printf(out, "%ld", (long)v);
    put_be(w, 4, 4);
    put_be(w + 4, (uint32_t)v, 4);
    return agg_buf_append(out, w, 8);
}

static int put_int8(struct agg_buf *out, int64_t v)
{
    char w[12];

    put_be(w, 8, 4);
    put_be(w + 4, (uint64_t)v, 8);
    return agg_buf_append(out, w, 12);
}

/* float8: the IEEE 754 bits, so NaN and the infinities pass exactly. */
static int put_float8(struct agg_buf *out, enum st_copy_format f, bool has, double v)
{
    uint64_t bits;

    if (!has)
        return put_null(out, f);
    if (f == ST_COPY_TEXT)
        return agg_buf_printf(out, "%.17g", v);
    memcpy(&bits, &v, sizeof(bits));
    return put_int8(out, (int64_t)bits);
}

static int put_timestamp(struct agg_buf *out, enum st_copy_format f, int64_t us)
{
    char ts[32];

    if (f == ST_COPY_TEXT)
        return agg_buf_append(out, ts, agg_time_format(us, ts));
    return put_int8(out, us - PG_EPOCH_US);
}

/* Byte length of the first <max_chars> UTF-8 characters of valid <p>[<len>]. */
static size_t prefix_chars(const char *p, size_t len, size_t max_chars)
{
    size_t chars = 0;

    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)p[i] & 0xC0) != 0x80 && chars++ == max_chars)
            return i;
    }
    return len;
}

/* Appends one string field: NULL, or repaired and truncated to <max_chars> (0: no
 * limit). Sets *<truncated> when it cut. */
static int put_field(struct agg_buf *out, enum st_copy_format f, bool jsonb, struct agg_str s,
                     size_t max_chars, struct st_copy_scratch *scratch, bool *truncated)
{
    const char *p = s.p;
    size_t len = s.len;

    if (p == NULL)
        return put_null(out, f);
    if (!agg_utf8_is_clean(p, len)) {
        agg_buf_reset(&scratch->repair);
        if (agg_utf8_repair(&scratch->repair, p, len) != AGG_OK)
            return AGG_ENOMEM;
        p = scratch->repair.data;
        len = scratch->repair.len;
    }
    if (max_chars > 0 && len > max_chars) {
        size_t cut = prefix_chars(p, len, max_chars);

        if (cut < len) {
            len = cut;
            *truncated = true;
        }
    }
    return put_bytes(out, f, jsonb, p, len);
}

/* JSON-escapes <s> (ASCII column names, RFC 3339 times) into <b>. */
static int json_string(struct agg_buf *b, const char *s)
{
    return agg_buf_printf(b, "\"%s\"", s);
}

/* <p>[<len>] as a JSON string into <b>. NUL becomes U+FFFD (jsonb refuses \u0000);
 * invalid UTF-8 is left for put_field's repair of the whole object. */
static int json_string_n(struct agg_buf *b, const char *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";

    if (agg_buf_reserve(b, len * 6 + 2) != AGG_OK)
        return AGG_ENOMEM;
    b->data[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        char *w = b->data + b->len;

        if (c == '"' || c == '\\') {
            w[0] = '\\';
            w[1] = (char)c;
            b->len += 2;
        } else if (c == 0) {
            memcpy(w, "\\ufffd", 6);
            b->len += 6;
        } else if (c < 0x20) {
            memcpy(w, "\\u00", 4);
            w[4] = hex[c >> 4];
            w[5] = hex[c & 15];
            b->len += 6;
        } else {
            w[0] = (char)c;
            b->len++;
        }
    }
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
    return AGG_OK;
}

/* Builds extra_data: the record's object with original_timestamp, truncated[] and
 * user_id (the original of a user_id that is not an INTEGER) added when there is
 * something to add. user_id comes last: of duplicate keys jsonb keeps the last. */
static int build_extra(const struct agg_record *rec, int64_t original_us,
                       const bool *truncated, struct st_copy_scratch *scratch,
                       struct agg_str *result)
{
    struct agg_buf *b = &scratch->extra;
    bool any_trunc = false, first = true;
    const char *body = NULL;
    size_t body_len = 0;

    for (int f = 0; f < AGG_F_STR_COUNT; f++)
        any_trunc = any_trunc || truncated[f];
    if (original_us == AGG_TIME_NONE && !any_trunc && rec->user_id_orig.p == NULL) {
        *result = rec->extra;
        return AGG_OK;
    }
    if (rec->extra.p != NULL && rec->extra.len >= 2 && rec->extra.p[0] == '{') {
        /* the inside of the object, if it has any member */
        body = rec->extra.p + 1;
        body_len = rec->extra.len - 1;
        while (body_len > 0 && (body[body_len - 1] == ' ' || body[body_len - 1] == '\n'))
            body_len--;
        if (body_len > 0 && body[body_len - 1] == '}') /* the object's own brace only */
            body_len--;
        while (body_len > 0 && (*body == ' ' || *body == '\n')) {
            body++;
            body_len--;
        }
    }
    agg_buf_reset(b);
    if (agg_buf_putc(b, '{') != AGG_OK)
        return AGG_ENOMEM;
    if (original_us != AGG_TIME_NONE) {
        char ts[40];

        agg_time_format_rfc3339(original_us, ts);
        if (agg_buf_append(b, "\"original_timestamp\":", 21) != AGG_OK ||
            json_string(b, ts) != AGG_OK)
            return AGG_ENOMEM;
        first = false;
    }
    if (any_trunc) {
        if (agg_buf_append(b, first ? "\"truncated\":[" : ",\"truncated\":[",
                           first ? 13 : 14) != AGG_OK)
            return AGG_ENOMEM;
        first = true;
        for (int f = 0; f < AGG_F_STR_COUNT; f++) {
            if (!truncated[f])
                continue;
            if ((!first && agg_buf_putc(b, ',') != AGG_OK) ||
                json_string(b, agg_field_name(f)) != AGG_OK)
                return AGG_ENOMEM;
            first = false;
        }
        if (agg_buf_putc(b, ']') != AGG_OK)
            return AGG_ENOMEM;
    }
    if (body_len > 0 && ((b->len > 1 && agg_buf_putc(b, ',') != AGG_OK) ||
                         agg_buf_append(b, body, body_len) != AGG_OK))
        return AGG_ENOMEM;
    if (rec->user_id_orig.p != NULL) {
        struct agg_str u = rec->user_id_orig;

        if (agg_buf_append(b, b->len > 1 ? ",\"user_id\":" : "\"user_id\":",
                           b->len > 1 ? 11 : 10) != AGG_OK)
            return AGG_ENOMEM;
        /* a literal was checked by agg_record_keep_user_id */
        if (rec->user_id_orig_is_string ? json_string_n(b, u.p, u.len) != AGG_OK
                                        : agg_buf_append(b, u.p, u.len) != AGG_OK)
            return AGG_ENOMEM;
    }
    if (agg_buf_putc(b, '}') != AGG_OK)
        return AGG_ENOMEM;
    result->p = b->data;
    result->len = b->len;
    return AGG_OK;
}

/* ---- the columns ---- */

/* A column's type, which sets its binary send format. */
enum kind { K_TEXT = 0, K_INT4, K_FLOAT8, K_JSONB, K_TIMESTAMP };

/* Row order of ST_COPY_COLUMNS; COL_EXTRA stands for extra_data. */
enum { COL_EXTRA = AGG_F_COUNT };
static const struct {
    int field;
    enum kind kind;
} columns[ST_COPY_NCOLS] = {
    {AGG_F_LEVEL, K_TEXT},           {AGG_F_MESSAGE, K_TEXT},
    {AGG_F_LOGGER_NAME, K_TEXT},     {AGG_F_MODULE, K_TEXT},
    {AGG_F_FUNCTION_NAME, K_TEXT},   {AGG_F_LINE_NUMBER, K_INT4},
    {AGG_F_CORRELATION_ID, K_TEXT},  {AGG_F_USER_ID, K_INT4}, /* ST_COPY_COL_USER_ID */
    {AGG_F_REQUEST_ID, K_TEXT},      {AGG_F_REQUEST_METHOD, K_TEXT},
    {AGG_F_REQUEST_PATH, K_TEXT},    {AGG_F_REQUEST_IP, K_TEXT},
    {AGG_F_DURATION_MS, K_INT4},     {AGG_F_MEMORY_USAGE_MB, K_FLOAT8},
    {AGG_F_EXCEPTION_TYPE, K_TEXT},  {AGG_F_EXCEPTION_MESSAGE, K_TEXT},
    {AGG_F_STACK_TRACE, K_TEXT},     {COL_EXTRA, K_JSONB}, /* ST_COPY_COL_EXTRA_DATA */
    {AGG_F_CREATED_AT, K_TIMESTAMP},
};

static int put_column(struct agg_buf *out, enum st_copy_format f, const struct agg_record *rec,
                      int col, int64_t created_us, int64_t original_us, bool *truncated,
                      struct st_copy_scratch *scratch)
{
    const char *level;
    struct agg_str extra;
    bool ignored = false;

    switch (col) {
    case AGG_F_LEVEL:
        level = agg_level_name(rec->has_level ? rec->level : AGG_LEVEL_INFO);
        return put_bytes(out, f, false, level, strlen(level));
    case AGG_F_MESSAGE: /* NOT NULL: an absent message is stored empty */
        return put_field(out, f, false,
                         rec->str[col].p != NULL ? rec->str[col] : (struct agg_str){"", 0}, 0,
                         scratch, &ignored);
    case AGG_F_LINE_NUMBER:
        return put_int4(out, f, rec->has_line_number, rec->line_number);
    case AGG_F_USER_ID:
        return put_int4(out, f, rec->has_user_id, rec->user_id);
    case AGG_F_DURATION_MS:
        return put_int4(out, f, rec->has_duration_ms, rec->duration_ms);
    case AGG_F_MEMORY_USAGE_MB:
        return put_float8(out, f, rec->has_memory_usage_mb, rec->memory_usage_mb);
    case COL_EXTRA:
        /* Built after every text column, so truncated[] is complete. */
        if (build_extra(rec, original_us, truncated, scratch, &extra) != AGG_OK)
            return AGG_ENOMEM;
        /* Repaired all the same: a spliced object must never bring a NUL to jsonb. */
        return put_field(out, f, true, extra, 0, scratch, &ignored);
    case AGG_F_CREATED_AT:
        return put_timestamp(out, f, created_us);
    default:
        return put_field(out, f, false, rec->str[col], agg_field_max_chars(col), scratch,
                         &truncated[col]);
    }
}

int st_copy_encode(struct agg_buf *out, enum st_copy_format format, const struct agg_record *rec,
                   int64_t created_us, int64_t original_us, struct st_copy_scratch *scratch)
{
    bool truncated[AGG_F_STR_COUNT] = {false};
    size_t start = out->len;

    if (format == ST_COPY_BINARY && agg_buf_append(out, "\0\23", 2) != AGG_OK) /* 19 fields */
        goto oom;
    for (int i = 0; i < ST_COPY_NCOLS; i++) {
        if ((format == ST_COPY_TEXT && i > 0 && agg_buf_putc(out, '\t') != AGG_OK) ||
            put_column(out, format, rec, columns[i].field, created_us, original_us, truncated,
                       scratch) != AGG_OK)
            goto oom;
    }
    if (format == ST_COPY_TEXT && agg_buf_putc(out, '\n') != AGG_OK)
        goto oom;
    return AGG_OK;

oom:
    out->len = start;
    if (out->data != NULL)
        out->data[start] = '\0';
    return AGG_ENOMEM;
}

/* ---- reading tuples ---- */

static int32_t fixed_len(enum kind k)
{
    return k == K_INT4 ? 4 : k == K_FLOAT8 || k == K_TIMESTAMP ? 8 : 0;
}

bool st_copy_is_tuple(const char *p, size_t len)
{
    size_t i = 2;

    if (len < 2 || get_be(p, 2) != ST_COPY_NCOLS)
        return false;
    for (int c = 0; c < ST_COPY_NCOLS; c++) {
        int32_t n;

        if (len - i < 4)
            return false;
        n = (int32_t)(uint32_t)get_be(p + i, 4);
        i += 4;
        if (n == -1)
            continue;
        if (n < 0 || (size_t)n > len - i ||
            (fixed_len(columns[c].kind) != 0 && n != fixed_len(columns[c].kind)) ||
            (columns[c].kind == K_JSONB && (n == 0 || p[i] != 1)))
            return false;
        i += (size_t)n;
    }
    return i == len;
}

int32_t st_copy_field(const char *p, int col, size_t *off)
{
    size_t i = 2;
    int32_t n = -1;

    for (int c = 0; c <= col; c++) {
        n = (int32_t)(uint32_t)get_be(p + i, 4);
        i += 4;
        *off = i;
        if (n > 0)
            i += (size_t)n;
    }
    return n;
}

bool st_copy_field_int4(const char *p, int col, int32_t *v)
{
    size_t off;

    if (st_copy_field(p, col, &off) != 4)
        return false;
    *v = (int32_t)(uint32_t)get_be(p + off, 4);
    return true;
}

/* ---- text rows of older builds ---- */

/* Appends the text field <p>[<len>] (not \N) of <kind> as a binary field. */
static int field_to_binary(struct agg_buf *out, enum kind kind, const char *p, size_t len)
{
    char num[40], *end;
    size_t mark = out->len;
    char *w;
    int64_t us;
    double d;
    long long v;

    if (kind == K_TEXT || kind == K_JSONB) {
        if (put_binary(out, kind == K_JSONB ? 1 : 0, p, len) != AGG_OK)
            return AGG_ENOMEM;
        /* unescape in place: the value only shrinks */
        w = out->data + mark + 4 + (kind == K_JSONB);
        for (size_t i = 0; i < len; i++) {
            char c = p[i];

            if (c == '\\') {
                c = ++i == len ? 'x' : p[i];
                c = c == '\\' ? '\\' : c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : 0;
                if (c == 0)
                    goto invalid; /* no encoder of aggd wrote another escape */
            }
            *w++ = c;
        }
        out->len = (size_t)(w - out->data);
        out->data[out->len] = '\0';
        put_be(out->data + mark, out->len - mark - 4, 4);
        return AGG_OK;
    }
    if (len == 0 || len >= sizeof(num))
        return AGG_EINVAL;
    memcpy(num, p, len);
    num[len] = '\0';
    switch (kind) {
    case K_INT4:
        v = strtoll(num, &end, 10);
        if (*end != '\0' || v < INT32_MIN || v > INT32_MAX)
            return AGG_EINVAL;
        return put_int4(out, ST_COPY_BINARY, true, (int32_t)v);
    case K_FLOAT8:
        d = strtod(num, &end);
        if (*end != '\0')
            return AGG_EINVAL;
        return put_float8(out, ST_COPY_BINARY, true, d);
    default: /* K_TIMESTAMP */
        if (!agg_time_parse_iso8601(num, len, &us))
            return AGG_EINVAL;
        return put_timestamp(out, ST_COPY_BINARY, us);
    }

invalid:
    out->len = mark;
    out->data[mark] = '\0';
    return AGG_EINVAL;
}

int st_copy_text_to_binary(struct agg_buf *out, const char *row, size_t len)
{
    size_t start = out->len, i = 0;
    int rc = AGG_OK;

    if (len == 0 || row[len - 1] != '\n' || memchr(row, '\n', len - 1) != NULL)
        return AGG_EINVAL;
    len--;
    if (agg_buf_append(out, "\0\23", 2) != AGG_OK)
        return AGG_ENOMEM;
    for (int c = 0; rc == AGG_OK && c < ST_COPY_NCOLS; c++) {
        const char *tab = memchr(row + i, '\t', len - i);
        size_t end = tab != NULL ? (size_t)(tab - row) : len;

        if ((tab == NULL) != (c == ST_COPY_NCOLS - 1)) {
            rc = AGG_EINVAL; /* too few or too many fields */
        } else if (end - i == 2 && row[i] == '\\' && row[i + 1] == 'N') {
            rc = put_null(out, ST_COPY_BINARY);
        } else {
            rc = field_to_binary(out, columns[c].kind, row + i, end - i);
        }
        i = end + 1;
    }
    if (rc != AGG_OK) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}
