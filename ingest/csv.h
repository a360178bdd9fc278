/*
 * ingest/csv.h — an RFC 4180 CSV record reader: one record (one or more physical lines
 *                when quoted fields hold line ends) at a time, with where it ends.
 *
 * Place: uploaded file -> [csv] -> fields -> (src/filejobs.c) JSON object -> json decoder.
 * Threads: pure; a struct ing_csv belongs to one thread at a time.
 * Ownership: the reader owns the unescaped text of the last record; its fields point
 *            into it, valid until the next call or ing_csv_clear().
 * Traps: a record ends at LF or CRLF outside quotes; a lone CR is data. A quote in the
 *        middle of an unquoted field and text after a closing quote are errors, as
 *        RFC 4180 says; the reader then skips to the end of that physical line so the
 *        next call starts on a fresh one.
 */
#ifndef AGGD_INGEST_CSV_H
#define AGGD_INGEST_CSV_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/* More fields than this in one record is an error (bounds the offsets kept). */
#define ING_CSV_MAX_FIELDS 4096

struct ing_csv {
    struct agg_buf text; /* the fields, unescaped, each followed by a NUL */
    size_t *off;         /* field i starts at text.data + off[i] */
    size_t *len;         /* ... and has len[i] bytes */
    size_t nfields, cap;
    size_t lines; /* physical lines the last record spanned */
};

void ing_csv_init(struct ing_csv *c);
void ing_csv_clear(struct ing_csv *c);

/* Reads the record starting at <p>[<len>] (the rest of the input: a record is never
 * cut). *<used> gets the bytes it took, its line end included. AGG_OK: the record's
 * fields are in <c>; AGG_EINVAL + <err> (the reason): a malformed record, *<used>
 * says where the next one may start; AGG_ENOMEM. <len> must be > 0. */
int ing_csv_read(struct ing_csv *c, const char *p, size_t len, size_t *used, struct agg_err *err);

/* Field <i> of the last record read (i < c->nfields). */
static inline const char *ing_csv_field(const struct ing_csv *c, size_t i, size_t *len)
{
    *len = c->len[i];
    return c->text.data + c->off[i];
}

#endif
