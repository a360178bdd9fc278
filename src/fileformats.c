/*
 * src/fileformats.c — validation and conversion jobs: is a file well-formed CSV, JSON,
 *                     NDJSON or syslog; CSV, a JSON array or NDJSON into a new file.
 *
 * Place: called by the runner (src/filejobs.c) for one claimed job.
 * Threads: the runner's thread.
 * Ownership: the job's mapped file is borrowed; an output file is written through
 *            core/file.h (temp, fsync, rename) and recorded by fj_finish().
 */
#include "src/filejobs_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/json.h"
#include "ingest/syslog.h"
#include "src/listen.h"
#include "store/db.h"

/* ---- validation ---- */

struct tally {
    uint64_t records, valid, invalid;
    int nerrors;
    struct {
        int64_t at; /* line (or element index for JSON); -1: the whole document */
        char message[200];
    } errors[MAX_ERRORS];
    bool by_index;
};

static void tally_bad(struct tally *t, int64_t at, const char *message)
{
    t->invalid++;
    if (t->nerrors == MAX_ERRORS)
        return;
    t->errors[t->nerrors].at = at;
    /* the first bytes of a long message (the precision keeps gcc's truncation check quiet) */
    snprintf(t->errors[t->nerrors].message, sizeof(t->errors[0].message), "%.*s",
             (int)sizeof(t->errors[0].message) - 1, message);
    t->nerrors++;
}

static int count_emit(void *arg, const struct agg_record *rec)
{
    struct tally *t = arg;

    (void)rec;
    t->records++;
    t->valid++;
    return AGG_OK;
}

static void count_reject(void *arg, size_t index, const char *why, const char *raw, size_t len)
{
    struct tally *t = arg;

    (void)raw;
    (void)len;
    t->records++;
    tally_bad(t, (int64_t)index, why);
}

/* The validation's result as JSON text into <out>. */
static int tally_json(const struct job *j, const struct tally *t, struct agg_buf *out)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    size_t len;
    int rc;

    if (g == NULL)
        return AGG_ENOMEM;
    yajl_gen_map_open(g);
    yajl_gen_string(g, (const unsigned char *)"format", 6);
    yajl_gen_string(g, (const unsigned char *)j->format, strlen(j->format));
#define KEY(k) yajl_gen_string(g, (const unsigned char *)(k), strlen(k))
    KEY("records");
    yajl_gen_integer(g, (long long)t->records);
    KEY("valid");
    yajl_gen_integer(g, (long long)t->valid);
    KEY("invalid");
    yajl_gen_integer(g, (long long)t->invalid);
    KEY("well_formed");
    yajl_gen_bool(g, t->invalid == 0);
    KEY("errors");
    yajl_gen_array_open(g);
    for (int i = 0; i < t->nerrors; i++) {
        yajl_gen_map_open(g);
        if (t->errors[i].at >= 0) {
            KEY(t->by_index ? "index" : "line");
            yajl_gen_integer(g, (long long)t->errors[i].at);
        }
        KEY("message");
        KEY(t->errors[i].message);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
#undef KEY
    yajl_gen_map_close(g);
    rc = yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok ? agg_buf_append(out, buf, len)
                                                               : AGG_ENOMEM;
    yajl_gen_free(g);
    return rc;
}

static int validate_lines(struct job *j, struct tally *t, bool syslog)
{
    struct agg_sink sink = {count_emit, count_reject, t};
    uint64_t line = 0;
    size_t len;

    for (size_t at = 0, next; at < j->size; at = next) {
        struct agg_err err = {0};
        struct ing_syslog_msg msg;

        next = fj_next_line(j, at, &len);
        line++;
        if (fj_stopping(j, line) || fj_note_progress(j, at, j->size) != AGG_OK)
            return j->err.code;
        if (fj_is_blank(j->data + at, len))
            continue;
        if (!syslog) { /* count_emit and count_reject count it, the line as index */
            ing_json_decode_line(j->f->json, j->data + at, len, (size_t)line, &sink, &err);
            continue;
        }
        t->records++;
        /* live ingest takes a line without PRI as RFC 3164 user.notice; a file that
         * claims to be syslog is not well formed with one */
        if (ing_syslog_parse(j->data + at, len, agg_time_now_us(), j->f->zone, &msg, &err) !=
            AGG_OK)
            tally_bad(t, (int64_t)line, err.msg);
        else if (msg.pri_assumed)
            tally_bad(t, (int64_t)line, "no valid PRI: neither RFC 5424 nor RFC 3164");
        else
            t->valid++;
    }
    return AGG_OK;
}

static int validate_csv(struct job *j, struct tally *t)
{
    struct agg_filejobs *f = j->f;
    struct agg_buf header;
    size_t nheader = 0, used;
    uint64_t line = 1;
    size_t at;

    at = fj_csv_header(j, &header, &nheader);
    if (at != 0)
        agg_buf_clear(&header);
    if (at == 0) {
        if (j->err.code == AGG_ENOMEM)
            return AGG_ENOMEM;
        tally_bad(t, 1, j->err.msg);
        return AGG_OK;
    }
    line += f->csv.lines - 1;
    for (; at < j->size; at += used) {
        struct agg_err err = {0};
        int rc;

        line++;
        if (fj_stopping(j, line) || fj_note_progress(j, at, j->size) != AGG_OK)
            return j->err.code;
        rc = ing_csv_read(&f->csv, j->data + at, j->size - at, &used, &err);
        if (rc == AGG_ENOMEM)
            return agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
        if (rc == AGG_OK && f->csv.nfields == 1 && f->csv.len[0] == 0 &&
            fj_is_blank(j->data + at, used - (j->data[at + used - 1] == '\n')))
            continue; /* a blank line */
        t->records++;
        if (rc != AGG_OK) {
            tally_bad(t, (int64_t)line, err.msg);
        } else if (f->csv.nfields != nheader) {
            char why[96];

            snprintf(why, sizeof(why), "%zu fields where the header has %zu", f->csv.nfields,
                     nheader);
            tally_bad(t, (int64_t)line, why);
        } else {
            t->valid++;
        }
        if (rc == AGG_OK)
            line += f->csv.lines - 1;
    }
    return AGG_OK;
}

int fj_run_validation(struct job *j, struct agg_buf *result)
{
    struct tally t = {0};
    int rc;

    if (strcmp(j->format, "json") == 0) {
        struct agg_sink sink = {count_emit, count_reject, &t};
        struct ing_json_stats stats;
        struct agg_err err = {0};

        t.by_index = true;
        rc = ing_json_decode_document(j->f->json, j->data, j->size, &sink, &stats, &err);
        if (rc == AGG_EINVAL) {
            t.records = 1;
            tally_bad(&t, -1, err.msg);
        } else if (rc != AGG_OK) {
            return agg_err_set(&j->err, rc, "%s", err.msg);
        }
    } else if (strcmp(j->format, "csv") == 0) {
        if ((rc = validate_csv(j, &t)) != AGG_OK)
            return rc;
    } else if ((rc = validate_lines(j, &t, strcmp(j->format, "syslog") == 0)) != AGG_OK) {
        return rc;
    }
    return tally_json(j, &t, result) == AGG_OK ? AGG_OK
                                               : agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
}

/* ---- conversion to NDJSON ---- */

struct output {
    int fd;
    char tmp[PATH_MAX + 8];
    crypto_hash_sha256_state sha;
    uint64_t bytes, records;
    struct agg_buf buf;
};

static int out_flush(struct job *j, struct output *o)
{
    crypto_hash_sha256_update(&o->sha, (const unsigned char *)o->buf.data, o->buf.len);
    o->bytes += o->buf.len;
    if (agg_file_write_all(o->fd, o->buf.data, o->buf.len, o->tmp, &j->err) != AGG_OK)
        return AGG_EINVAL;
    agg_buf_reset(&o->buf);
    return AGG_OK;
}

/* One NDJSON line (<p>[<len>] and a LF) to the output. */
static int out_line(struct job *j, struct output *o, const char *p, size_t len)
{
    o->records++;
    if (agg_buf_append(&o->buf, p, len) != AGG_OK || agg_buf_putc(&o->buf, '\n') != AGG_OK)
        return agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
    return o->buf.len >= 1024 * 1024 ? out_flush(j, o) : AGG_OK;
}

static int gen_tree(yajl_gen g, yajl_val v)
{
    yajl_gen_status st = yajl_gen_status_ok;

    if (YAJL_IS_OBJECT(v)) {
        st = yajl_gen_map_open(g);
        for (size_t i = 0; st == yajl_gen_status_ok && i < v->u.object.len; i++) {
            const char *k = v->u.object.keys[i];

            st = yajl_gen_string(g, (const unsigned char *)k, strlen(k));
            if (st == yajl_gen_status_ok && gen_tree(g, v->u.object.values[i]) != AGG_OK)
                return AGG_ENOMEM;
        }
        if (st == yajl_gen_status_ok)
            st = yajl_gen_map_close(g);
    } else if (YAJL_IS_ARRAY(v)) {
        st = yajl_gen_array_open(g);
        for (size_t i = 0; st == yajl_gen_status_ok && i < v->u.array.len; i++) {
            if (gen_tree(g, v->u.array.values[i]) != AGG_OK)
                return AGG_ENOMEM;
        }
        if (st == yajl_gen_status_ok)
            st = yajl_gen_array_close(g);
    } else if (YAJL_IS_STRING(v)) {
        const char *text = v->u.string;

        st = yajl_gen_string(g, (const unsigned char *)text, strlen(text));
    } else if (YAJL_IS_NUMBER(v)) {
        st = yajl_gen_number(g, YAJL_GET_NUMBER(v), strlen(YAJL_GET_NUMBER(v)));
    } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        st = yajl_gen_bool(g, YAJL_IS_TRUE(v));
    } else {
        st = yajl_gen_null(g);
    }
    return st == yajl_gen_status_ok ? AGG_OK : AGG_ENOMEM;
}

static int convert_json(struct job *j, struct output *o, struct tally *t)
{
    yajl_val root = NULL;
    char why[256];
    int rc = agg_json_parse(j->data, j->size, 512, &root, why, sizeof(why));
    size_t n;

    if (rc == AGG_EINVAL)
        return agg_err_set(&j->err, AGG_EINVAL, "the file is not JSON: %s", why);
    if (rc != AGG_OK)
        return agg_err_set(&j->err, rc, "out of memory");
    if (!YAJL_IS_ARRAY(root) && !YAJL_IS_OBJECT(root)) {
        yajl_tree_free(root);
        return agg_err_set(&j->err, AGG_EINVAL, "the document is neither an object nor an array");
    }
    n = YAJL_IS_ARRAY(root) ? root->u.array.len : 1;
    for (size_t i = 0; rc == AGG_OK && i < n; i++) {
        yajl_val v = YAJL_IS_ARRAY(root) ? root->u.array.values[i] : root;
        yajl_gen g = yajl_gen_alloc(NULL);
        const unsigned char *buf;
        size_t len;

        t->records++;
        if (g == NULL) {
            rc = agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
            break;
        }
        if (gen_tree(g, v) != AGG_OK || yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
            rc = agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
        else
            rc = out_line(j, o, (const char *)buf, len);
        t->valid += rc == AGG_OK;
        yajl_gen_free(g);
    }
    yajl_tree_free(root);
    return rc;
}

static int convert_csv(struct job *j, struct output *o, struct tally *t)
{
    struct agg_filejobs *f = j->f;
    struct agg_buf header;
    size_t nheader = 0, used, at;
    uint64_t line = 1;
    int rc = AGG_OK;

    at = fj_csv_header(j, &header, &nheader);
    if (at == 0)
        return j->err.code;
    line += f->csv.lines - 1;
    for (; rc == AGG_OK && at < j->size; at += used) {
        struct agg_err err = {0};

        line++;
        if (fj_stopping(j, line) || fj_note_progress(j, at, j->size) != AGG_OK) {
            rc = j->err.code;
            break;
        }
        rc = ing_csv_read(&f->csv, j->data + at, j->size - at, &used, &err);
        if (rc == AGG_ENOMEM)
            break;
        if (rc == AGG_OK && f->csv.nfields == 1 && f->csv.len[0] == 0) {
            line += f->csv.lines - 1;
            continue;
        }
        t->records++;
        if (rc != AGG_OK) {
            tally_bad(t, (int64_t)line, err.msg);
            rc = AGG_OK;
            continue;
        }
        if (f->csv.nfields != nheader) {
            tally_bad(t, (int64_t)line, "the row's field count differs from the header's");
        } else {
            t->valid++;
            rc = fj_csv_row_json(f, &header, nheader, false);
            if (rc == AGG_OK)
                rc = out_line(j, o, f->line.data, f->line.len);
        }
        line += f->csv.lines - 1;
    }
    agg_buf_clear(&header);
    if (rc == AGG_ENOMEM)
        agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
    return rc;
}

/* Appends <p>[<len>] as one CSV field (RFC 4180: quoted when it holds a comma, a
 * quote, CR or LF, quotes doubled), after a comma unless <first>. */
static int put_csv_field(struct agg_buf *out, const char *p, size_t len, bool first)
{
    bool quote = memchr(p, ',', len) != NULL || memchr(p, '"', len) != NULL ||
                 memchr(p, '\r', len) != NULL || memchr(p, '\n', len) != NULL;
    int rc = first ? AGG_OK : agg_buf_putc(out, ',');

    if (rc != AGG_OK || !quote)
        return rc == AGG_OK ? agg_buf_append(out, p, len) : rc;
    rc = agg_buf_putc(out, '"');
    for (size_t i = 0; rc == AGG_OK && i < len; i++)
        rc = p[i] == '"' ? agg_buf_append(out, "\"\"", 2) : agg_buf_putc(out, p[i]);
    return rc == AGG_OK ? agg_buf_putc(out, '"') : rc;
}

/* The CSV cell of JSON value <v> (NULL: the member is missing): strings as they are,
 * numbers and booleans as written, null and missing empty, objects and arrays as JSON. */
static int put_csv_cell(struct agg_buf *out, yajl_val v, bool first)
{
    const unsigned char *buf;
    size_t len;
    yajl_gen g;
    int rc;

    if (v == NULL || YAJL_IS_NULL(v))
        return put_csv_field(out, "", 0, first);
    if (YAJL_IS_STRING(v))
        return put_csv_field(out, v->u.string, strlen(v->u.string), first);
    if (YAJL_IS_NUMBER(v))
        return put_csv_field(out, YAJL_GET_NUMBER(v), strlen(YAJL_GET_NUMBER(v)), first);
    if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))
        return put_csv_field(out, YAJL_IS_TRUE(v) ? "true" : "false", YAJL_IS_TRUE(v) ? 4 : 5,
                             first);
    g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return AGG_ENOMEM;
    rc = gen_tree(g, v);
    if (rc == AGG_OK && yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
        rc = AGG_ENOMEM;
    if (rc == AGG_OK)
        rc = put_csv_field(out, (const char *)buf, len, first);
    yajl_gen_free(g);
    return rc;
}

/* The header of an NDJSON file's CSV: every member name, in order of first sight. */
struct columns {
    struct agg_buf names; /* each followed by a NUL */
    size_t n;
};

#define MAX_COLUMNS 1024

static int add_columns(struct job *j, struct columns *c, yajl_val obj)
{
    for (size_t i = 0; i < obj->u.object.len; i++) {
        const char *k = obj->u.object.keys[i];
        size_t at = 0, m;
        bool seen = false;

        for (m = 0; m < c->n && !seen; m++) {
            seen = strcmp(c->names.data + at, k) == 0;
            at += strlen(c->names.data + at) + 1;
        }
        if (seen)
            continue;
        if (c->n == MAX_COLUMNS)
            return agg_err_set(&j->err, AGG_EINVAL, "more than %d distinct members", MAX_COLUMNS);
        if (agg_buf_append(&c->names, k, strlen(k) + 1) != AGG_OK)
            return agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
        c->n++;
    }
    return AGG_OK;
}

/* NDJSON to CSV in two passes: the columns, then the rows. */
static int convert_ndjson(struct job *j, struct output *o, struct tally *t)
{
    struct columns c = {.n = 0};
    struct agg_buf row;
    int rc = AGG_OK;

    agg_buf_init(&c.names);
    agg_buf_init(&row);
    for (int pass = 0; rc == AGG_OK && pass < 2; pass++) {
        uint64_t line = 0;
        size_t len, at = 0;

        if (pass == 1) { /* the header row */
            for (size_t i = 0, k = 0; rc == AGG_OK && i < c.n; i++) {
                const char *name = c.names.data + k;

                k += strlen(name) + 1;
                rc = put_csv_field(&row, name, strlen(name), i == 0);
            }
            if (rc == AGG_OK && agg_buf_putc(&row, '\r') == AGG_OK)
                rc = out_line(j, o, row.data, row.len);
            o->records = 0;
        }
        for (size_t next; rc == AGG_OK && at < j->size; at = next) {
            yajl_val v = NULL;
            char why[128];

            next = fj_next_line(j, at, &len);
            line++;
            if (fj_stopping(j, line) ||
                fj_note_progress(j, (uint64_t)pass * j->size + at, 2 * (uint64_t)j->size) != AGG_OK) {
                rc = j->err.code;
                break;
            }
            if (fj_is_blank(j->data + at, len))
                continue;
            rc = agg_json_parse(j->data + at, len, ING_JSON_MAX_EVENT_DEPTH, &v, why, sizeof(why));
            if (rc == AGG_OK && !YAJL_IS_OBJECT(v)) {
                rc = AGG_EINVAL;
                snprintf(why, sizeof(why), "not a JSON object");
            }
            if (rc == AGG_EINVAL) {
                if (pass == 1) {
                    t->records++;
                    tally_bad(t, (int64_t)line, why);
                }
                rc = AGG_OK;
            } else if (rc == AGG_OK && pass == 0) {
                rc = add_columns(j, &c, v);
            } else if (rc == AGG_OK) {
                agg_buf_reset(&row);
                t->records++;
                t->valid++;
                for (size_t i = 0, k = 0; rc == AGG_OK && i < c.n; i++) {
                    const char *path[2] = {c.names.data + k, NULL};

                    k += strlen(path[0]) + 1;
                    rc = put_csv_cell(&row, yajl_tree_get(v, path, yajl_t_any), i == 0);
                }
                if (rc == AGG_OK && agg_buf_putc(&row, '\r') == AGG_OK)
                    rc = out_line(j, o, row.data, row.len);
            }
            yajl_tree_free(v);
        }
    }
    agg_buf_clear(&c.names);
    agg_buf_clear(&row);
    if (rc == AGG_ENOMEM)
        agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
    return rc;
}

/* The output's name: the source's with its extension replaced by the target's. */
static void output_name(const struct job *j, char *out, size_t size)
{
    const char *dot = strrchr(j->filename, '.');
    int stem =
        dot != NULL && dot != j->filename ? (int)(dot - j->filename) : (int)strlen(j->filename);

    if (stem > 240)
        stem = 240;
    snprintf(out, size, "%.*s.%s", stem, j->filename, j->target);
}

int fj_run_conversion(struct job *j, struct agg_buf *result, char *output_id)
{
    static const char next_id[] = "SELECT nextval(pg_get_serial_sequence('file_uploads', 'id'))";
    static const char insert_sql[] =
        "INSERT INTO file_uploads (id, filename, file_path, file_type, file_size, mime_type,"
        " file_hash, status, upload_progress, total_chunks, uploaded_chunks, is_temporary,"
        " expires_at, owner_id)"
        " SELECT $1, $2, $3, $7, $4, $8, $5, 'uploaded', 100, 1, 1,"
        " is_temporary, expires_at, owner_id FROM file_uploads WHERE id = $6";
    struct output o = {.fd = -1};
    struct tally t = {0};
    unsigned char digest[crypto_hash_sha256_BYTES];
    char path[PATH_MAX], name[64], hash[crypto_hash_sha256_BYTES * 2 + 1], size[24];
    char filename[256];
    PGresult *res;
    int rc;

    rc = st_db_query(j->conn, next_id, 0, NULL, PGRES_TUPLES_OK, &res, &j->err);
    if (rc != AGG_OK)
        return rc;
    snprintf(output_id, 16, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    snprintf(name, sizeof(name), "%s.data", output_id);
    if (snprintf(path, sizeof(path), "%s/%s", j->f->dir, name) >= (int)sizeof(path))
        return agg_err_set(&j->err, AGG_EINVAL, "uploads.dir is too long");
    o.fd = agg_file_open_tmp(path, o.tmp, sizeof(o.tmp), &j->err);
    if (o.fd < 0)
        return AGG_EINVAL;
    agg_buf_init(&o.buf);
    crypto_hash_sha256_init(&o.sha);
    if (strcmp(j->format, "csv") == 0)
        rc = convert_csv(j, &o, &t);
    else if (strcmp(j->format, "json") == 0)
        rc = convert_json(j, &o, &t);
    else
        rc = convert_ndjson(j, &o, &t);
    if (rc == AGG_OK)
        rc = out_flush(j, &o);
    if (rc == AGG_OK) {
        rc = agg_file_publish(o.fd, o.tmp, path, &j->err);
        o.fd = -1;
    }
    if (o.fd >= 0) {
        close(o.fd);
        unlink(o.tmp);
    }
    agg_buf_clear(&o.buf);
    if (rc != AGG_OK)
        return rc;
    crypto_hash_sha256_final(&o.sha, digest);
    sodium_bin2hex(hash, sizeof(hash), digest, sizeof(digest));
    snprintf(size, sizeof(size), "%" PRIu64, o.bytes);
    output_name(j, filename, sizeof(filename));
    {
        bool csv = strcmp(j->target, "csv") == 0;
        const char *p[8] = {output_id,
                            filename,
                            name,
                            size,
                            hash,
                            j->file_id,
                            csv ? "csv" : "ndjson",
                            csv ? "text/csv" : "application/x-ndjson"};

        if (tally_json(j, &t, result) != AGG_OK)
            return agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
        /* the target, records written, and the row in one transaction with the end */
        if (result->len > 0)
            result->len--; /* reopen the object */
        if (agg_buf_printf(result,
                           ",\"target\":\"%s\",\"written\":%" PRIu64 ",\"output_file_id\":%s}",
                           j->target, o.records, output_id) != AGG_OK)
            return agg_err_set(&j->err, AGG_ENOMEM, "out of memory");
        rc = fj_finish(j, "completed", NULL, result->data, insert_sql, 8, p, output_id);
        j->finished = rc == AGG_OK;
        return rc;
    }
}
