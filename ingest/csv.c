/*
 * ingest/csv.c — RFC 4180 record reader.
 *
 * Place: see ingest/csv.h.
 * Threads: pure.
 */
#include "ingest/csv.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void ing_csv_init(struct ing_csv *c)
{
    memset(c, 0, sizeof(*c));
    agg_buf_init(&c->text);
}

void ing_csv_clear(struct ing_csv *c)
{
    agg_buf_clear(&c->text);
    free(c->off);
    free(c->len);
    memset(c, 0, sizeof(*c));
}

/* Ends the field that started at text offset <start>. */
static int end_field(struct ing_csv *c, size_t start, struct agg_err *err)
{
    if (c->nfields == ING_CSV_MAX_FIELDS)
        return agg_err_set(err, AGG_EINVAL, "more than %d fields", ING_CSV_MAX_FIELDS);
    if (c->nfields == c->cap) {
        size_t cap = c->cap;

        if (agg_grow((void **)&c->off, sizeof(*c->off), &cap, c->nfields + 1) != AGG_OK)
            return agg_err_set(err, AGG_ENOMEM, "out of memory");
        cap = c->cap;
        if (agg_grow((void **)&c->len, sizeof(*c->len), &cap, c->nfields + 1) != AGG_OK)
            return agg_err_set(err, AGG_ENOMEM, "out of memory");
        c->cap = cap;
    }
    c->off[c->nfields] = start;
    c->len[c->nfields] = c->text.len - start;
    c->nfields++;
    return agg_buf_putc(&c->text, '\0') == AGG_OK ? AGG_OK
                                                  : agg_err_set(err, AGG_ENOMEM, "out of memory");
}

/* The offset just past the line end at or after <i>, or <len>. */
static size_t skip_line(const char *p, size_t len, size_t i)
{
    const char *lf = i < len ? memchr(p + i, '\n', len - i) : NULL;

    return lf != NULL ? (size_t)(lf - p) + 1 : len;
}

/* At a line end (LF or CRLF) at <i>: its length, else 0. */
static size_t line_end(const char *p, size_t len, size_t i)
{
    if (p[i] == '\n')
        return 1;
    if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n')
        return 2;
    return 0;
}

int ing_csv_read(struct ing_csv *c, const char *p, size_t len, size_t *used, struct agg_err *err)
{
    size_t i = 0, start;
    int rc;

    agg_buf_reset(&c->text);
    c->nfields = 0;
    c->lines = 1;
    for (;;) {
        start = c->text.len;
        if (i < len && p[i] == '"') {
            size_t opened = c->lines;

            for (i++;; i++) {
                if (i >= len) {
                    *used = len;
                    return agg_err_set(err, AGG_EINVAL,
                                       "quoted field opened on line %zu of the record is never "
                                       "closed",
                                       opened);
                }
                if (p[i] == '"' && i + 1 < len && p[i + 1] == '"') {
                    i++;
                } else if (p[i] == '"') {
                    i++;
                    break;
                }
                c->lines += p[i] == '\n';
                if (agg_buf_putc(&c->text, p[i]) != AGG_OK)
                    return agg_err_set(err, AGG_ENOMEM, "out of memory");
            }
            if (i < len && p[i] != ',' && line_end(p, len, i) == 0) {
                *used = skip_line(p, len, i);
                return agg_err_set(err, AGG_EINVAL, "text after the closing quote of field %zu",
                                   c->nfields + 1);
            }
        } else {
            size_t j = i;

            while (j < len && p[j] != ',' && line_end(p, len, j) == 0) {
                if (p[j] == '"') {
                    *used = skip_line(p, len, j);
                    return agg_err_set(err, AGG_EINVAL, "quote inside unquoted field %zu",
                                       c->nfields + 1);
                }
                j++;
            }
            if (agg_buf_append(&c->text, p + i, j - i) != AGG_OK)
                return agg_err_set(err, AGG_ENOMEM, "out of memory");
            i = j;
        }
        if ((rc = end_field(c, start, err)) != AGG_OK) {
            *used = skip_line(p, len, i);
            return rc;
        }
        if (i >= len) {
            *used = len;
            return AGG_OK;
        }
        if (p[i] == ',') {
            i++;
            continue;
        }
        *used = i + line_end(p, len, i);
        return AGG_OK;
    }
}
