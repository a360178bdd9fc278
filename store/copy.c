/*
 * store/copy.c — COPY text-format encoding of records.
 *
 * Place: see store/copy.h.
 * Threads: pure.
 * Traps: the escape loop copies runs of plain bytes with one memcpy; it is the
 *        hottest loop of the ingest path after the parsers.
 */
#include "store/copy.h"

#include <stdio.h>

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

int st_copy_escape(struct agg_buf *out, const char *p, size_t len)
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

/* Appends one text field: NULL as \N, repaired, truncated to <max_chars> (0: no
 * limit), escaped. Sets *<truncated> when it cut. */
static int put_field(struct agg_buf *out, struct agg_str s, size_t max_chars,
                     struct st_copy_scratch *scratch, bool *truncated)
{
    const char *p = s.p;
    size_t len = s.len;

    if (p == NULL)
        return agg_buf_append(out, "\\N", 2);
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
    return st_copy_escape(out, p, len);
}

static int put_int(struct agg_buf *out, bool has, long long v)
{
    char num[24];
    int n;

    if (!has)
        return agg_buf_append(out, "\\N", 2);
    n = snprintf(num, sizeof(num), "%lld", v);
    return agg_buf_append(out, num, (size_t)n);
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

/* Row order of ST_COPY_COLUMNS; COL_EXTRA stands for extra_data. */
enum { COL_EXTRA = AGG_F_COUNT };
static const int columns[] = {
    AGG_F_LEVEL,          AGG_F_MESSAGE,        AGG_F_LOGGER_NAME,       AGG_F_MODULE,
    AGG_F_FUNCTION_NAME,  AGG_F_LINE_NUMBER,    AGG_F_CORRELATION_ID,    AGG_F_USER_ID,
    AGG_F_REQUEST_ID,     AGG_F_REQUEST_METHOD, AGG_F_REQUEST_PATH,      AGG_F_REQUEST_IP,
    AGG_F_DURATION_MS,    AGG_F_MEMORY_USAGE_MB, AGG_F_EXCEPTION_TYPE,   AGG_F_EXCEPTION_MESSAGE,
    AGG_F_STACK_TRACE,    COL_EXTRA,            AGG_F_CREATED_AT,
};

static int put_column(struct agg_buf *out, const struct agg_record *rec, int col,
                      int64_t created_us, int64_t original_us, bool *truncated,
                      struct st_copy_scratch *scratch)
{
    const char *level;
    struct agg_str extra;
    char ts[32];
    bool ignored = false;

    switch (col) {
    case AGG_F_LEVEL:
        level = agg_level_name(rec->has_level ? rec->level : AGG_LEVEL_INFO);
        return agg_buf_append(out, level, strlen(level));
    case AGG_F_MESSAGE: /* NOT NULL: an absent message is stored empty */
        return put_field(out, rec->str[col].p != NULL ? rec->str[col] : (struct agg_str){"", 0},
                         0, scratch, &ignored);
    case AGG_F_LINE_NUMBER:
        return put_int(out, rec->has_line_number, rec->line_number);
    case AGG_F_USER_ID:
        return put_int(out, rec->has_user_id, rec->user_id);
    case AGG_F_DURATION_MS:
        return put_int(out, rec->has_duration_ms, rec->duration_ms);
    case AGG_F_MEMORY_USAGE_MB:
        return rec->has_memory_usage_mb ? agg_buf_printf(out, "%.17g", rec->memory_usage_mb)
                                        : agg_buf_append(out, "\\N", 2);
    case COL_EXTRA:
        /* Built after every text column, so truncated[] is complete. */
        if (build_extra(rec, original_us, truncated, scratch, &extra) != AGG_OK)
            return AGG_ENOMEM;
        /* Repaired all the same: a spliced object must never bring a NUL to jsonb. */
        return put_field(out, extra, 0, scratch, &ignored);
    case AGG_F_CREATED_AT:
        return agg_buf_append(out, ts, agg_time_format(created_us, ts));
    default:
        return put_field(out, rec->str[col], agg_field_max_chars(col), scratch, &truncated[col]);
    }
}

int st_copy_encode(struct agg_buf *out, const struct agg_record *rec, int64_t created_us,
                   int64_t original_us, struct st_copy_scratch *scratch)
{
    bool truncated[AGG_F_STR_COUNT] = {false};
    size_t start = out->len;

    for (size_t i = 0; i < sizeof(columns) / sizeof(columns[0]); i++) {
        if ((i > 0 && agg_buf_putc(out, '\t') != AGG_OK) ||
            put_column(out, rec, columns[i], created_us, original_us, truncated, scratch) !=
                AGG_OK)
            goto oom;
    }
    if (agg_buf_putc(out, '\n') != AGG_OK)
        goto oom;
    return AGG_OK;

oom:
    out->len = start;
    if (out->data != NULL)
        out->data[start] = '\0';
    return AGG_ENOMEM;
}
