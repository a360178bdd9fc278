/*
 * api/files.c — resumable file uploads (see api/files.h).
 *
 * Place: see api/files.h.
 * Threads: see api/files.h. File I/O (pwrite, fdatasync, hashing, rename) runs on job
 *          threads only; the loop thread only hands an open descriptor to libevent.
 * Ownership: a download's descriptor travels in r->data from the work to the done
 *            callback, which gives it to libevent or closes it.
 * Traps: chunks are written without the row lock (they touch disjoint ranges); only
 *        recording them takes it, so two last chunks cannot both finalize. The quota
 *        check and the INSERT run under a per-owner advisory lock.
 */
#include "api/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <sodium.h>

#include "api/files_int.h"
#include "api/uploads.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/log.h"
#include "core/time.h"

#define PATH_CAP 4096
#define HASH_BUF_BYTES (1024 * 1024)
/* Rows one maintenance pass expires at most (the next pass takes the rest). */
#define EXPIRE_BATCH "1000"
#define PASS_STATEMENT_TIMEOUT_MS 30000
/* pg_advisory_xact_lock(<this>, owner): one quota check per owner at a time. */
#define QUOTA_LOCK_KEY "1718185281"

struct api_files {
    char dir[PATH_CAP];
    int64_t max_bytes;
    struct st_jobs *jobs; /* the maintenance pass */
    struct event *timer;
    struct st_job pass;
    bool busy;       /* the pass is queued or running */
    bool first;      /* the next pass is the start-up one */
    time_t start_s;  /* files older than this and without a row are a crash's leftovers */
    struct agg_log_limit log;
};

/* A download on its way from the job to the loop (r->data). */
struct download {
    int fd;            /* -1: nothing to send */
    struct api_files_range range;
    long long size;    /* the file's */
    long long offset, length; /* what is sent */
    char mime[128];
    char filename[1024];
};

static const char *const statuses[] = {"uploading", "uploaded", "processing", "completed",
                                       "failed", NULL};

/* ---- declaring: field checks (pure) ---- */

static int check_filename(yajl_val v, struct agg_err *err)
{
    const char *s = YAJL_GET_STRING(v);

    if (s[0] == '\0' || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return agg_err_set(err, AGG_EINVAL, "filename must be a plain file name");
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '/' || *p == '\\' || *p < 0x20 || *p == 0x7f)
            return agg_err_set(err, AGG_EINVAL,
                               "filename must be a plain file name (no '/', '\\' or control "
                               "characters)");
    }
    return AGG_OK;
}

/* "type/subtype" and parameters in printable ASCII: it becomes a Content-Type header. */
static int check_mime(yajl_val v, struct agg_err *err)
{
    const char *s = YAJL_GET_STRING(v);
    const char *slash = strchr(s, '/');

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p < 0x20 || *p > 0x7e)
            return agg_err_set(err, AGG_EINVAL, "mime_type must be printable ASCII");
    }
    if (slash == NULL || slash == s || slash[1] == '\0' || s[0] == ' ')
        return agg_err_set(err, AGG_EINVAL, "mime_type must look like type/subtype");
    return AGG_OK;
}

static int check_hash(yajl_val v, struct agg_err *err)
{
    const char *s = YAJL_GET_STRING(v);

    if (strlen(s) != 64 || strspn(s, "0123456789abcdef") != 64)
        return agg_err_set(err, AGG_EINVAL, "file_hash must be 64 lower-case hex digits "
                                            "(SHA-256)");
    return AGG_OK;
}

static int check_future(yajl_val v, struct agg_err *err)
{
    const char *s = YAJL_GET_STRING(v);
    int64_t us;

    if (!agg_time_parse_iso8601(s, strlen(s), &us))
        return agg_err_set(err, AGG_EINVAL, "expires_at must be an ISO 8601 time");
    if (us <= agg_time_now_us())
        return agg_err_set(err, AGG_EINVAL, "expires_at must be in the future");
    return AGG_OK;
}

#define RO(name, type) API_FIELD_RO(name, type)

static const struct api_field file_fields[] = {
    RO("id", API_T_INT),
    {"filename", API_T_STRING, API_F_CREATE | API_F_REQUIRED, 255, NULL, 0, 0, check_filename,
     NULL},
    RO("file_path", API_T_STRING),
    {"file_type", API_T_STRING, API_F_CREATE | API_F_NULLABLE | API_F_FILTER, 50, NULL, 0, 0,
     NULL, NULL},
    {"file_size", API_T_INT, API_F_CREATE | API_F_REQUIRED, 0, NULL, 0, INT64_C(1) << 53, NULL,
     NULL},
    {"mime_type", API_T_STRING, API_F_CREATE | API_F_NULLABLE, 100, NULL, 0, 0, check_mime, NULL},
    {"file_hash", API_T_STRING, API_F_CREATE | API_F_NULLABLE, 64, NULL, 0, 0, check_hash, NULL},
    {"status", API_T_STRING, API_F_FILTER, 50, statuses, 0, 0, NULL, NULL},
    RO("upload_progress", API_T_INT),
    {"total_chunks", API_T_INT, API_F_CREATE, 0, NULL, 1, 1000000, NULL, NULL},
    RO("uploaded_chunks", API_T_INT),
    {"metadata", API_T_OBJECT, API_F_CREATE | API_F_NULLABLE, 0, NULL, 0, 0, NULL, NULL},
    {"is_temporary", API_T_BOOL, API_F_CREATE, 0, NULL, 0, 0, NULL, NULL},
    /* input text; output through extra_out (a UTC time with its Z) */
    {"expires_at", API_T_STRING, API_F_CREATE | API_F_NULLABLE | API_F_HIDDEN, 64, NULL, 0, 0,
     check_future, NULL},
    RO("owner_id", API_T_INT),
    {"pipeline_id", API_T_INT, API_F_CREATE | API_F_NULLABLE | API_F_FILTER, 0, NULL, 1, INT32_MAX,
     NULL, NULL},
    API_FIELD_TIME("created_at"),
    API_FIELD_TIME("updated_at"),
    API_FIELDS_END,
};

/* Owners see and change their own files; admins every file. */
static int own_scope(struct api_req *r, bool write)
{
    (void)write;
    return api_res_scope_user(r, "owner_id = ", "");
}

const struct api_resource api_res_files = {
    .what = "file", .table = "file_uploads", .fields = file_fields,
    .extra_out = "'expires_at', to_char(expires_at, " API_ISO_FMT ")", .owned = true,
    .scope = own_scope,
};

/* ---- chunk arithmetic (contract with the jobs: api/files.h) ---- */

long long api_files_chunk_size(long long file_size, long long total)
{
    return (file_size + total - 1) / total;
}

long long api_files_chunk_len(long long file_size, long long total, long long n)
{
    long long c = api_files_chunk_size(file_size, total);

    return n < total - 1 ? c : file_size - c * (total - 1);
}

const char *api_files_type_of(const char *filename, const char *mime)
{
    static const char *const by_ext[][2] = {
        {"csv", "csv"},     {"tsv", "tsv"},   {"json", "json"},     {"ndjson", "ndjson"},
        {"jsonl", "ndjson"}, {"log", "log"},  {"syslog", "syslog"}, {"txt", "txt"},
        {"xml", "xml"},     {"gz", "gzip"},   {"zst", "zstd"},
    };
    static const char *const by_mime[][2] = {
        {"text/csv", "csv"},
        {"text/tab-separated-values", "tsv"},
        {"application/json", "json"},
        {"application/x-ndjson", "ndjson"},
        {"application/jsonl", "ndjson"},
        {"text/plain", "txt"},
        {"application/xml", "xml"},
        {"text/xml", "xml"},
        {"application/gzip", "gzip"},
        {"application/zstd", "zstd"},
    };
    const char *dot = strrchr(filename, '.');

    for (size_t i = 0; dot != NULL && i < sizeof(by_ext) / sizeof(by_ext[0]); i++) {
        if (strcasecmp(dot + 1, by_ext[i][0]) == 0)
            return by_ext[i][1];
    }
    for (size_t i = 0; mime != NULL && i < sizeof(by_mime) / sizeof(by_mime[0]); i++) {
        size_t n = strlen(by_mime[i][0]);

        if (strncasecmp(mime, by_mime[i][0], n) == 0 && (mime[n] == '\0' || mime[n] == ';'))
            return by_mime[i][1];
    }
    return "binary";
}

static const char *body_string(struct api_req *r, const char *name)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(r->body, path, yajl_t_string);

    return v != NULL ? YAJL_GET_STRING(v) : NULL;
}

static long long body_int(struct api_req *r, const char *name, long long dflt)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(r->body, path, yajl_t_number);

    return v != NULL && YAJL_IS_INTEGER(v) ? YAJL_GET_INTEGER(v) : dflt;
}

bool api_files_nul_field(const char *json, char *key, size_t cap)
{
    const char *start = NULL;
    int depth = 0;
    bool in_string = false, want_key = false;

    key[0] = '\0';
    for (const char *s = json; *s != '\0'; s++) {
        if (in_string) {
            if (*s == '\\' && strncmp(s + 1, "u0000", 5) == 0)
                return true;
            if (*s == '\\' && s[1] != '\0')
                s++;
            else if (*s == '"') {
                in_string = false;
                if (start != NULL)
                    snprintf(key, cap, "%.*s", (int)(s - start), start);
                start = NULL;
            }
        } else if (*s == '"') {
            in_string = true;
            if (depth == 1 && want_key)
                start = s + 1, want_key = false;
        } else if (*s == '{' || *s == '[') {
            want_key = ++depth == 1;
        } else if (*s == '}' || *s == ']') {
            depth--;
        } else if (*s == ',' && depth == 1) {
            want_key = true;
        }
    }
    return false;
}

bool api_files_prepare_create(struct api_req *r)
{
    long long size, total;
    char key[64];

    if (api_files_nul_field(r->body_text, key, sizeof(key)))
        return api_fail(r, 422, "invalid_value", key, "%s must not contain NUL (\\u0000)", key);
    if (!api_res_validate(r, &api_res_files, true))
        return false;
    size = body_int(r, "file_size", 0);
    total = body_int(r, "total_chunks", 1);
    if (api_files_chunk_size(size, total) > API_FILES_MAX_CHUNK)
        return api_fail(r, 422, "out_of_range", "total_chunks",
                        "chunks would be over %d bytes: declare more of them",
                        API_FILES_MAX_CHUNK);
    if ((size == 0 && total != 1) ||
        (size > 0 && api_files_chunk_size(size, total) * (total - 1) >= size))
        return api_fail(r, 422, "out_of_range", "total_chunks",
                        "%lld bytes cannot be cut into %lld chunks of ceil(file_size / "
                        "total_chunks) bytes",
                        size, total);
    return true;
}

/* ---- disk helpers (job threads) ---- */

static bool path_of(struct api_req *r, const struct api_files *f, int id, const char *suffix,
                    char *buf)
{
    if (api_upload_path(f->dir, id, suffix, buf, PATH_CAP))
        return true;
    return api_fail(r, 500, "internal", NULL, "uploads.dir is too long");
}

/* Sets the reply for a failed file operation <what> (errno <e>) on <path>. */
static bool disk_fail(struct api_req *r, const char *what, const char *path, int e)
{
    if (e == ENOSPC || e == EDQUOT)
        return api_fail(r, 507, "insufficient_storage", NULL,
                        "the uploads directory is out of space");
    AGG_LOG_ERR("api", "could not %s \"%s\": %s", what, path, strerror(e));
    return api_fail(r, 500, "internal", NULL, "could not %s the file", what);
}

static int pwrite_all(int fd, const char *p, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Creates "<id>.part" of <size> bytes, allocated now (ENOSPC shows here, not mid-upload). */
static bool make_part(struct api_req *r, const struct api_files *f, int id, long long size)
{
    char path[PATH_CAP];
    struct agg_err err = {0};
    int fd, e;

    if (!path_of(r, f, id, API_UPLOAD_PART, path))
        return false;
    if (agg_file_mkdirs(f->dir, &err) != AGG_OK) {
        AGG_LOG_ERR("api", "%s", err.msg);
        return api_fail(r, 500, "internal", NULL, "cannot create the uploads directory");
    }
    /* a row is new: a file of its id is a crash's leftover */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return disk_fail(r, "create", path, errno);
    e = size > 0 ? posix_fallocate(fd, 0, (off_t)size) : 0;
    if (e == 0 && fsync(fd) != 0)
        e = errno;
    close(fd);
    if (e == 0 && agg_file_fsync_dir(path, &err) != AGG_OK)
        e = EIO;
    if (e != 0) {
        unlink(path);
        return disk_fail(r, "allocate", path, e);
    }
    return true;
}

static void remove_files(const struct api_files *f, int id)
{
    char path[PATH_CAP];

    if (api_upload_path(f->dir, id, API_UPLOAD_PART, path, sizeof(path)))
        unlink(path);
    if (api_upload_path(f->dir, id, API_UPLOAD_DATA, path, sizeof(path)))
        unlink(path);
}

/* ---- POST files ---- */

static char *itoa16(long long v, char buf[24])
{
    snprintf(buf, 24, "%lld", v);
    return buf;
}

/* The row's JSON as the reply <status> (in the caller's transaction, if any). */
static void reply_file(struct api_req *r, PGconn *conn, int id, int status)
{
    char a[24];
    int rc;

    api_sql_reset(r);
    rc = agg_buf_printf(&r->sql, "SELECT ");
    if (rc == AGG_OK)
        rc = api_res_json_expr(&r->sql, &api_res_files);
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, " FROM file_uploads WHERE id = ");
    if (rc == AGG_OK)
        rc = api_param(r, itoa16(id, a));
    api_run_row(r, conn, rc, status, "file");
}

/* The quota and the disk allow <size> more bytes for the caller; false with the reply. */
static bool room_for(struct api_req *r, PGconn *conn, const struct api_files *f,
                     long long size)
{
    char uid[24];
    const char *p[1] = {itoa16(r->who.user_id, uid)};
    struct statvfs vfs;
    struct agg_err err = {0};
    PGresult *q;
    long long used;

    q = api_exec(r, conn, "SELECT pg_advisory_xact_lock(" QUOTA_LOCK_KEY ", $1::int)", 1, p,
                 PGRES_TUPLES_OK);
    PQclear(q);
    if (q == NULL)
        return false;
    q = api_exec(r, conn, "SELECT coalesce(sum(file_size), 0) FROM file_uploads"
                          " WHERE owner_id = $1", 1, p, PGRES_TUPLES_OK);
    if (q == NULL)
        return false;
    used = strtoll(PQgetvalue(q, 0, 0), NULL, 10);
    PQclear(q);
    if (size > f->max_bytes - used)
        return api_fail(r, 413, "quota_exceeded", "file_size",
                        "your files take %lld of %lld bytes (uploads.max_bytes); this one needs "
                        "%lld more",
                        used, (long long)f->max_bytes, size);
    if (agg_file_mkdirs(f->dir, &err) != AGG_OK || statvfs(f->dir, &vfs) != 0) {
        AGG_LOG_ERR("api", "cannot use uploads.dir \"%s\": %s", f->dir,
                    err.msg[0] != '\0' ? err.msg : strerror(errno));
        return api_fail(r, 500, "internal", NULL, "cannot use the uploads directory");
    }
    if ((unsigned long long)size > (unsigned long long)vfs.f_bavail * vfs.f_frsize)
        return api_fail(r, 507, "insufficient_storage", "file_size",
                        "the uploads directory has no room for %lld bytes", size);
    return true;
}

static const char insert_sql[] =
    "INSERT INTO file_uploads (filename, file_path, file_type, file_size, mime_type, file_hash,"
    " status, total_chunks, uploaded_chunks, upload_progress, metadata, is_temporary,"
    " expires_at, owner_id, pipeline_id)"
    " SELECT b.filename, '', coalesce(b.file_type, $2), b.file_size, b.mime_type, b.file_hash,"
    " 'uploading', coalesce(b.total_chunks, 1), 0, 0, b.metadata, coalesce(b.is_temporary, true),"
    " CASE WHEN $3::timestamp IS NOT NULL THEN $3::timestamp"
    "      WHEN coalesce(b.is_temporary, true)"
    "      THEN (now() AT TIME ZONE 'UTC') + make_interval(secs => $5) END,"
    " $4::int, b.pipeline_id"
    " FROM jsonb_populate_record(NULL::file_uploads, $1::jsonb) b RETURNING id";

void api_files_create_work(struct api_req *r, PGconn *conn)
{
    struct api_files *f = r->ctx;
    const char *when = body_string(r, "expires_at"), *name = body_string(r, "filename");
    long long size = body_int(r, "file_size", 0);
    char uid[24], ttl[24], expires[32], path[32], idtext[24];
    const char *p[5] = {r->body_text, api_files_type_of(name != NULL ? name : "",
                                                  body_string(r, "mime_type")),
                        NULL, itoa16(r->who.user_id, uid), itoa16(API_FILES_TEMP_TTL_S, ttl)};
    const char *u[2] = {path, idtext};
    int64_t us;
    PGresult *q;
    int id;

    if (when != NULL && agg_time_parse_iso8601(when, strlen(when), &us)) {
        agg_time_format(us, expires);
        p[2] = expires;
    }
    if (!api_begin(r, conn))
        return;
    if (!room_for(r, conn, f, size))
        goto out_rollback;
    q = api_exec(r, conn, insert_sql, 5, p, PGRES_TUPLES_OK);
    if (q == NULL)
        goto out_rollback;
    id = (int)strtol(PQgetvalue(q, 0, 0), NULL, 10);
    PQclear(q);
    snprintf(path, sizeof(path), "%d" API_UPLOAD_DATA, id);
    itoa16(id, idtext);
    q = api_exec(r, conn, "UPDATE file_uploads SET file_path = $1 WHERE id = $2::int", 2, u,
                 PGRES_COMMAND_OK);
    PQclear(q);
    if (q == NULL || !make_part(r, f, id, size))
        goto out_rollback;
    reply_file(r, conn, id, 201);
    if (r->status == 201 && api_commit(r, conn))
        return;
    remove_files(f, id);

out_rollback:
    api_rollback(conn);
}

/* ---- PUT files/{id}/chunks/{n} ---- */

/* What a chunk needs to know of its file. */
struct upload {
    long long size, total;
    char status[51];
    char hash[65];
};

/* Reads file {id} within the caller's scope (<lock>: FOR UPDATE). false with the reply:
 * 404 when the caller cannot see it. */
static bool load_upload(struct api_req *r, PGconn *conn, bool lock, struct upload *u)
{
    char a[24];
    PGresult *q;
    int rc;

    api_sql_reset(r);
    rc = agg_buf_printf(&r->sql, "SELECT file_size, coalesce(total_chunks, 1), status,"
                                 " coalesce(file_hash, '') FROM file_uploads WHERE id = ");
    if (rc == AGG_OK)
        rc = api_param(r, itoa16(r->ids[0], a));
    if (rc == AGG_OK)
        rc = own_scope(r, true);
    if (rc == AGG_OK && lock)
        rc = agg_buf_printf(&r->sql, " FOR UPDATE");
    q = api_query_built(r, conn, rc, PGRES_TUPLES_OK);
    if (q == NULL)
        return false;
    if (PQntuples(q) == 0) {
        PQclear(q);
        return api_fail(r, 404, "not_found", NULL, "no such file");
    }
    u->size = strtoll(PQgetvalue(q, 0, 0), NULL, 10);
    u->total = strtoll(PQgetvalue(q, 0, 1), NULL, 10);
    snprintf(u->status, sizeof(u->status), "%s", PQgetvalue(q, 0, 2));
    snprintf(u->hash, sizeof(u->hash), "%s", PQgetvalue(q, 0, 3));
    PQclear(q);
    if (strcmp(u->status, "uploading") != 0)
        return api_fail(r, 409, "not_uploading", "status", "the file is %s, not uploading",
                        u->status);
    return true;
}

/* Writes the body as chunk <n> of <u> into "<id>.part" and makes it durable. */
static bool write_chunk(struct api_req *r, const struct api_files *f, const struct upload *u,
                        int n)
{
    char path[PATH_CAP];
    int fd, e = 0;

    if (!path_of(r, f, r->ids[0], API_UPLOAD_PART, path))
        return false;
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return api_fail(r, 409, "not_uploading", "status", "the upload is being completed");
    if (fd < 0)
        return disk_fail(r, "open", path, errno);
    if (pwrite_all(fd, r->body_text, r->body_len,
                   (off_t)(api_files_chunk_size(u->size, u->total) * n)) != 0 ||
        fdatasync(fd) != 0)
        e = errno;
    close(fd);
    return e == 0 || disk_fail(r, "write", path, e);
}

/* SHA-256 of the file open at <fd> into <hex>; errno-style code. */
static int hash_file(int fd, char hex[65])
{
    crypto_hash_sha256_state st;
    unsigned char digest[crypto_hash_sha256_BYTES];
    unsigned char *buf = agg_malloc(HASH_BUF_BYTES);
    off_t off = 0;

    if (buf == NULL)
        return ENOMEM;
    crypto_hash_sha256_init(&st);
    for (;;) {
        ssize_t n = pread(fd, buf, HASH_BUF_BYTES, off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;

            free(buf);
            return e;
        }
        if (n == 0)
            break;
        crypto_hash_sha256_update(&st, buf, (unsigned long long)n);
        off += n;
    }
    free(buf);
    crypto_hash_sha256_final(&st, digest);
    sodium_bin2hex(hex, 65, digest, sizeof(digest));
    return 0;
}

/* Every chunk is in (row locked): hash, check, publish "<id>.data", mark it uploaded,
 * commit. Returns with the reply set and the transaction ended. */
static void finalize(struct api_req *r, PGconn *conn, const struct api_files *f,
                     const struct upload *u)
{
    char part[PATH_CAP], data[PATH_CAP], hex[65], id[24];
    const char *p[2] = {itoa16(r->ids[0], id), hex};
    struct agg_err err = {0};
    PGresult *q;
    int fd, e;

    if (!path_of(r, f, r->ids[0], API_UPLOAD_PART, part) ||
        !path_of(r, f, r->ids[0], API_UPLOAD_DATA, data))
        goto out_rollback;
    fd = open(part, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        disk_fail(r, "open", part, errno);
        goto out_rollback;
    }
    e = hash_file(fd, hex);
    if (e != 0) {
        close(fd);
        disk_fail(r, "read", part, e);
        goto out_rollback;
    }
    if (u->hash[0] != '\0' && strcmp(u->hash, hex) != 0) {
        /* kept as a failed row (it still counts against the quota until deleted);
         * the bytes are useless */
        close(fd);
        q = api_exec(r, conn, "UPDATE file_uploads SET status = 'failed' WHERE id = $1::int", 1,
                     p, PGRES_COMMAND_OK);
        PQclear(q);
        if (q == NULL || !api_commit(r, conn))
            goto out_rollback;
        unlink(part);
        api_fail(r, 422, "hash_mismatch", "file_hash",
                 "the file's SHA-256 is %s, not the declared file_hash", hex);
        return;
    }
    if (agg_file_publish(fd, part, data, &err) != AGG_OK) {
        AGG_LOG_ERR("api", "%s", err.msg);
        api_fail(r, 500, "internal", NULL, "could not publish the file");
        goto out_rollback;
    }
    q = api_exec(r, conn, "UPDATE file_uploads SET status = 'uploaded', file_hash = $2"
                          " WHERE id = $1::int", 2, p, PGRES_COMMAND_OK);
    PQclear(q);
    if (q != NULL)
        reply_file(r, conn, r->ids[0], 200);
    if (q != NULL && r->status == 200 && api_commit(r, conn))
        return;
    rename(data, part); /* still uploading: the client resends a chunk */

out_rollback:
    api_rollback(conn);
}

static const char record_sql[] =
    "WITH c AS (SELECT count(*)::int AS n FROM file_upload_chunks WHERE file_id = $1::int)"
    " UPDATE file_uploads SET uploaded_chunks = c.n,"
    "   upload_progress = (100::bigint * c.n / coalesce(total_chunks, 1))::int"
    " FROM c WHERE id = $1::int RETURNING uploaded_chunks";

void api_files_chunk_work(struct api_req *r, PGconn *conn)
{
    const struct api_files *f = r->ctx;
    struct upload u;
    char id[24], n[24];
    const char *p[2] = {itoa16(r->ids[0], id), itoa16(r->ids[1], n)};
    long long want;
    PGresult *q;
    bool last;

    if (!load_upload(r, conn, false, &u))
        return;
    if (r->ids[1] >= u.total) {
        api_fail(r, 404, "not_found", "chunk", "no chunk %d: the file has chunks 0..%lld",
                 r->ids[1], u.total - 1);
        return;
    }
    want = api_files_chunk_len(u.size, u.total, r->ids[1]);
    if ((long long)r->body_len != want) {
        api_fail(r, 422, "invalid_value", "chunk", "chunk %d must be %lld bytes, not %zu",
                 r->ids[1], want, r->body_len);
        return;
    }
    if (!write_chunk(r, f, &u, r->ids[1]))
        return;
    /* recorded under the row lock: the statement after the lock sees every committed
     * chunk, so exactly one request counts the last one */
    if (!api_begin(r, conn))
        return;
    if (!load_upload(r, conn, true, &u))
        goto out_rollback;
    q = api_exec(r, conn, "INSERT INTO file_upload_chunks (file_id, n) VALUES ($1::int, $2::int)"
                          " ON CONFLICT DO NOTHING", 2, p, PGRES_COMMAND_OK);
    PQclear(q);
    if (q == NULL)
        goto out_rollback;
    q = api_exec(r, conn, record_sql, 1, p, PGRES_TUPLES_OK);
    if (q == NULL)
        goto out_rollback;
    last = PQntuples(q) == 1 && strtoll(PQgetvalue(q, 0, 0), NULL, 10) == u.total;
    PQclear(q);
    if (last) {
        finalize(r, conn, f, &u);
        return;
    }
    reply_file(r, conn, r->ids[0], 200);
    if (r->status == 200 && api_commit(r, conn))
        return;

out_rollback:
    api_rollback(conn);
}

/* ---- GET files/{id}/content ---- */

void api_files_parse_range(const char *h, struct api_files_range *out)
{
    long long a = -1, b = -1;
    char *end;

    out->ranged = false;
    if (h == NULL || strncmp(h, "bytes=", 6) != 0 || strchr(h, ',') != NULL)
        return;
    h += 6;
    if (*h >= '0' && *h <= '9') {
        a = strtoll(h, &end, 10);
        h = end;
    }
    if (*h++ != '-')
        return;
    if (*h >= '0' && *h <= '9') {
        b = strtoll(h, &end, 10);
        h = end;
    }
    if (*h != '\0' || (a < 0 && b < 0) || (a >= 0 && b >= 0 && b < a) || a == LLONG_MAX ||
        b == LLONG_MAX)
        return;
    out->ranged = true;
    out->first = a;
    out->last = b;
}

bool api_files_prepare_content(struct api_req *r)
{
    struct download *d = agg_calloc(1, sizeof(*d));

    if (d == NULL)
        return api_fail(r, 503, "unavailable", NULL, "out of memory");
    d->fd = -1;
    r->data = d;
    api_files_parse_range(evhttp_find_header(evhttp_request_get_input_headers(r->req), "Range"),
                          &d->range);
    return true;
}

bool api_files_pick_range(const struct api_files_range *rg, long long size, long long *offset,
                          long long *length)
{
    *offset = 0;
    *length = size;
    if (!rg->ranged)
        return true;
    if (rg->first < 0) { /* the last n bytes */
        *length = rg->last < size ? rg->last : size;
        *offset = size - *length;
        return *length > 0;
    }
    if (rg->first >= size)
        return false;
    *offset = rg->first;
    *length = (rg->last < 0 || rg->last >= size ? size - 1 : rg->last) - rg->first + 1;
    return true;
}

void api_files_content_work(struct api_req *r, PGconn *conn)
{
    const struct api_files *f = r->ctx;
    struct download *d = r->data;
    char a[24], path[PATH_CAP];
    struct stat st;
    PGresult *q;
    int rc;

    api_sql_reset(r);
    rc = agg_buf_printf(&r->sql, "SELECT status, coalesce(mime_type, ''), filename"
                                 " FROM file_uploads WHERE id = ");
    if (rc == AGG_OK)
        rc = api_param(r, itoa16(r->ids[0], a));
    if (rc == AGG_OK)
        rc = own_scope(r, false);
    q = api_query_built(r, conn, rc, PGRES_TUPLES_OK);
    if (q == NULL)
        return;
    if (PQntuples(q) == 0) {
        PQclear(q);
        api_fail(r, 404, "not_found", NULL, "no such file");
        return;
    }
    if (strcmp(PQgetvalue(q, 0, 0), "uploading") == 0) {
        api_fail(r, 409, "not_uploaded", "status", "the file is still uploading");
        PQclear(q);
        return;
    }
    snprintf(d->mime, sizeof(d->mime), "%s", PQgetvalue(q, 0, 1));
    snprintf(d->filename, sizeof(d->filename), "%s", PQgetvalue(q, 0, 2));
    PQclear(q);
    if (!path_of(r, f, r->ids[0], API_UPLOAD_DATA, path))
        return;
    d->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (d->fd < 0 && errno == ENOENT) {
        api_fail(r, 409, "no_content", "status", "the file has no content (its upload failed)");
        return;
    }
    if (d->fd < 0 || fstat(d->fd, &st) != 0) {
        disk_fail(r, "open", path, errno);
        return;
    }
    d->size = st.st_size;
    if (!api_files_pick_range(&d->range, d->size, &d->offset, &d->length)) {
        api_fail(r, 416, "range_not_satisfiable", NULL, "the file has %lld bytes", d->size);
        return;
    }
    r->status = d->range.ranged ? 206 : 200;
}

int api_files_disposition(struct agg_buf *b, const char *name)
{
    static const char keep[] = "!#$&+-.^_`|~";
    int rc = agg_buf_printf(b, "attachment; filename=\"");

    for (const unsigned char *p = (const unsigned char *)name; rc == AGG_OK && *p != '\0'; p++)
        rc = agg_buf_putc(b, (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\') ? '_'
                                                                                    : (char)*p);
    if (rc == AGG_OK)
        rc = agg_buf_printf(b, "\"; filename*=UTF-8''");
    for (const unsigned char *p = (const unsigned char *)name; rc == AGG_OK && *p != '\0'; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr(keep, *p) != NULL)
            rc = agg_buf_putc(b, (char)*p);
        else
            rc = agg_buf_printf(b, "%%%02X", *p);
    }
    return rc == AGG_OK ? agg_buf_putc(b, '\0') : rc;
}

/* Sends the file's bytes from the loop; libevent reads them as the socket drains. */
static void send_file(struct api_req *r, struct download *d)
{
    struct evhttp_request *req = r->req;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
    struct evbuffer *body = evbuffer_new();
    struct evbuffer_file_segment *seg = NULL;
    struct agg_buf cd;
    char range[96];

    agg_buf_init(&cd);
    if (d->length > 0)
        seg = evbuffer_file_segment_new(d->fd, 0, d->size, EVBUF_FS_CLOSE_ON_FREE);
    if (seg != NULL || d->length == 0) {
        if (seg == NULL)
            close(d->fd);
        d->fd = -1; /* the segment's now */
    }
    if (body == NULL || d->fd >= 0 || api_files_disposition(&cd, d->filename) != AGG_OK ||
        (seg != NULL && evbuffer_add_file_segment(body, seg, d->offset, d->length) != 0)) {
        api_fail(r, 503, "unavailable", NULL, "out of memory");
        goto out;
    }
    if (evcon != NULL)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    evhttp_add_header(hdr, "Content-Type", d->mime[0] != '\0' ? d->mime
                                                              : "application/octet-stream");
    evhttp_add_header(hdr, "Content-Disposition", cd.data);
    evhttp_add_header(hdr, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(hdr, "Cache-Control", "no-store");
    evhttp_add_header(hdr, "Accept-Ranges", "bytes");
    if (r->status == 206) {
        snprintf(range, sizeof(range), "bytes %lld-%lld/%lld", d->offset,
                 d->offset + d->length - 1, d->size);
        evhttp_add_header(hdr, "Content-Range", range);
    }
    evhttp_send_reply(req, r->status, r->status == 206 ? "Partial Content" : "OK", body);
    r->req = NULL; /* answered: api_finish() only frees */

out:
    if (seg != NULL)
        evbuffer_file_segment_free(seg);
    if (body != NULL)
        evbuffer_free(body);
    agg_buf_clear(&cd);
}

void api_files_content_done(struct api_req *r)
{
    struct download *d = r->data;
    char range[48];

    if (d == NULL)
        return;
    if (r->req != NULL && r->status == 416) {
        snprintf(range, sizeof(range), "bytes */%lld", d->size);
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Range", range);
    }
    if (d->fd >= 0 && r->req != NULL && (r->status == 200 || r->status == 206))
        send_file(r, d);
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
}

/* ---- DELETE files/{id} ---- */

void api_files_delete_work(struct api_req *r, PGconn *conn)
{
    const struct api_files *f = r->ctx;
    char a[24];
    const char *p[1] = {itoa16(r->ids[0], a)};
    PGresult *q;
    int rc;
    bool busy;

    if (!api_begin(r, conn))
        return;
    api_sql_reset(r);
    rc = agg_buf_printf(&r->sql, "SELECT 1 FROM file_uploads WHERE id = ");
    if (rc == AGG_OK)
        rc = api_param(r, a);
    if (rc == AGG_OK)
        rc = own_scope(r, true);
    if (rc == AGG_OK)
        rc = agg_buf_printf(&r->sql, " FOR UPDATE");
    q = api_query_built(r, conn, rc, PGRES_TUPLES_OK);
    if (q == NULL)
        goto out_rollback;
    rc = PQntuples(q);
    PQclear(q);
    if (rc == 0) {
        api_fail(r, 404, "not_found", NULL, "no such file");
        goto out_rollback;
    }
    q = api_exec(r, conn, "SELECT 1 FROM file_processing_jobs WHERE file_id = $1::int"
                          " AND status IN ('pending', 'running') LIMIT 1", 1, p,
                 PGRES_TUPLES_OK);
    if (q == NULL)
        goto out_rollback;
    busy = PQntuples(q) > 0;
    PQclear(q);
    if (busy) {
        api_fail(r, 409, "busy", NULL, "a processing job of this file is pending or running");
        goto out_rollback;
    }
    q = api_exec(r, conn, "DELETE FROM file_uploads WHERE id = $1::int", 1, p,
                 PGRES_COMMAND_OK);
    PQclear(q);
    if (q == NULL || !api_commit(r, conn))
        goto out_rollback;
    remove_files(f, r->ids[0]);
    r->status = 204;
    return;

out_rollback:
    api_rollback(conn);
}

/* ---- the maintenance pass (its own job thread) ---- */

/* Deletes expired temporary files: rows first (committed), then their bytes. A crash
 * between leaves files without a row, removed by the next start. Files with a pending
 * or running job wait for a later pass. */
static void expire(struct api_files *f, PGconn *conn)
{
    static const char sql[] =
        "DELETE FROM file_uploads WHERE id IN ("
        " SELECT id FROM file_uploads u WHERE is_temporary"
        "   AND expires_at < (now() AT TIME ZONE 'UTC')"
        "   AND NOT EXISTS (SELECT 1 FROM file_processing_jobs j WHERE j.file_id = u.id"
        "                   AND j.status IN ('pending', 'running'))"
        "   ORDER BY id LIMIT " EXPIRE_BATCH " FOR UPDATE SKIP LOCKED) RETURNING id";
    PGresult *q = PQexec(conn, sql);
    int n;

    if (PQresultStatus(q) != PGRES_TUPLES_OK) {
        AGG_LOG_LIMITED(&f->log, AGG_LOG_LEVEL_WARN, "api", "could not expire uploads: %s",
                        PQresultErrorMessage(q));
        f->pass.conn_broken = PQstatus(conn) != CONNECTION_OK;
        PQclear(q);
        return;
    }
    n = PQntuples(q);
    for (int i = 0; i < n; i++)
        remove_files(f, (int)strtol(PQgetvalue(q, i, 0), NULL, 10));
    if (n > 0)
        AGG_LOG_INFO("api", "expired %d temporary upload%s", n, n == 1 ? "" : "s");
    PQclear(q);
}

/* The start-up pass: "<id>.part|.data" files a crash left behind. No row: removed
 * (only files older than this process, so an upload declared meanwhile is safe). An
 * "uploading" row with "<id>.data": the last chunk's commit did not happen; renamed
 * back so the upload resumes. */
static void sweep(struct api_files *f, PGconn *conn)
{
    DIR *dir = opendir(f->dir);
    struct dirent *e;

    if (dir == NULL)
        return;
    while ((e = readdir(dir)) != NULL) {
        int id = api_upload_id_of(e->d_name);
        char path[PATH_CAP], part[PATH_CAP], idtext[24];
        const char *p[1] = {itoa16(id, idtext)};
        struct stat st;
        PGresult *q;

        if (id == 0 ||
            snprintf(path, sizeof(path), "%s/%s", f->dir, e->d_name) >= (int)sizeof(path) ||
            stat(path, &st) != 0 || st.st_mtime >= f->start_s)
            continue;
        q = PQexecParams(conn, "SELECT status FROM file_uploads WHERE id = $1::int", 1, NULL, p,
                         NULL, NULL, 0);
        if (PQresultStatus(q) != PGRES_TUPLES_OK) {
            PQclear(q);
            break;
        }
        if (PQntuples(q) == 0) {
            AGG_LOG_INFO("api", "removing \"%s\": no file_uploads row has id %d", path, id);
            unlink(path);
        } else if (strcmp(PQgetvalue(q, 0, 0), "uploading") == 0 &&
                   strstr(e->d_name, API_UPLOAD_DATA) != NULL &&
                   api_upload_path(f->dir, id, API_UPLOAD_PART, part, sizeof(part)) &&
                   access(part, F_OK) != 0) {
            AGG_LOG_INFO("api", "upload %d was not completed: \"%s\" back to \"%s\"", id, path,
                         part);
            rename(path, part);
        }
        PQclear(q);
    }
    closedir(dir);
}

static void pass_work(struct st_job *job, PGconn *conn, const struct agg_err *cerr)
{
    struct api_files *f = (struct api_files *)((char *)job - offsetof(struct api_files, pass));

    if (conn == NULL) {
        AGG_LOG_LIMITED(&f->log, AGG_LOG_LEVEL_WARN, "api", "cannot expire uploads now: %s",
                        cerr != NULL ? cerr->msg : "no database");
        return;
    }
    expire(f, conn);
    if (f->first)
        sweep(f, conn);
    f->first = false;
}

static void pass_done(struct st_job *job)
{
    struct api_files *f = (struct api_files *)((char *)job - offsetof(struct api_files, pass));

    f->busy = false;
}

static void start_pass(struct api_files *f)
{
    if (f->busy)
        return;
    f->busy = true;
    f->pass.fn = pass_work;
    f->pass.done = pass_done;
    st_jobs_run(f->jobs, &f->pass);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_pass(arg);
}

struct api_files *api_files_new(struct event_base *base, struct st_pool *pool, const char *dir,
                                int64_t max_bytes, struct agg_err *err)
{
    struct api_files *f = agg_calloc(1, sizeof(*f));
    struct timeval tv = {API_FILES_PASS_S, 0};
    struct agg_err mkerr = {0};

    if (f == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    if (snprintf(f->dir, sizeof(f->dir), "%s", dir) >= (int)sizeof(f->dir) - 32) {
        agg_err_set(err, AGG_EINVAL, "uploads.dir \"%s\" is too long", dir);
        goto fail;
    }
    if (agg_file_mkdirs(f->dir, &mkerr) != AGG_OK) /* declaring files will say so */
        AGG_LOG_WARN("api", "uploads are not possible now: %s", mkerr.msg);
    f->max_bytes = max_bytes;
    f->first = true;
    f->start_s = time(NULL);
    f->jobs = st_jobs_new(base, pool, 1, err);
    if (f->jobs == NULL)
        goto fail;
    st_jobs_set_statement_timeout(f->jobs, PASS_STATEMENT_TIMEOUT_MS); /* shutdown waits */
    f->timer = event_new(base, -1, EV_PERSIST, on_timer, f);
    if (f->timer == NULL || event_add(f->timer, &tv) != 0) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    start_pass(f);
    return f;

fail:
    api_files_free(f);
    return NULL;
}

void api_files_free(struct api_files *f)
{
    if (f == NULL)
        return;
    if (f->timer != NULL)
        event_free(f->timer);
    st_jobs_free(f->jobs);
    free(f);
}
