/*
 * store/archive.h — archive files of detached partitions: zstd-compressed CSV hashed
 * with SHA-256 on the way, its JSON manifest, and the "YYYY-MM" month argument.
 *
 * Place: store/partitions.c exports and restores through this; no database here
 *        (DESIGN.md, Partitions and archive; docs/partitions.md).
 * Threads: a writer belongs to one thread; the rest is pure or file I/O only.
 * Ownership: see each declaration.
 * Traps: the SHA-256 and the row count are of the *uncompressed* CSV, header included
 *        in the hash, not in the count. Rows are counted as newlines outside double
 *        quotes (PostgreSQL's CSV ends every record with "\n" and quotes any field
 *        holding a newline).
 * Not here: SQL, states (store/partitions.c).
 */
#ifndef AGGD_STORE_ARCHIVE_H
#define AGGD_STORE_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Parses "YYYY-MM" (the whole string) into the month key <month> (core/time.h,
 * AGG_TIME_MONTH). AGG_EINVAL otherwise. */
int st_archive_month_parse(const char *s, int *month);

/* What a pass over an archive's CSV measured. */
struct st_archive_stats {
    uint64_t rows;             /* records after the header */
    uint64_t csv_bytes;        /* uncompressed */
    uint64_t compressed_bytes; /* the .csv.zst file */
    char sha256[65];           /* lower-case hex of the uncompressed CSV */
};

struct st_archive_writer;

/* Creates "<path>.tmp" (and the directories above it) for a compressed CSV that
 * becomes <path> on commit. Caller owns the result: st_archive_writer_commit() or
 * st_archive_writer_free(). NULL + <err> on failure. */
struct st_archive_writer *st_archive_writer_open(const char *path, struct agg_err *err);
/* Hashes, counts and compresses <len> bytes of CSV. */
int st_archive_writer_write(struct st_archive_writer *w, const void *buf, size_t len,
                            struct agg_err *err);
/* Ends the zstd frame, fsyncs, renames to the final path and fsyncs the directory;
 * fills <out>. Frees <w> whatever the outcome (the temp file is removed on failure). */
int st_archive_writer_commit(struct st_archive_writer *w, struct st_archive_stats *out,
                             struct agg_err *err);
/* Abandons a writer: removes the temp file. Accepts NULL. */
void st_archive_writer_free(struct st_archive_writer *w);

/* Receives decompressed CSV; returning non-AGG_OK stops the read with that code. */
typedef int (*st_archive_sink_fn)(void *arg, const void *buf, size_t len, struct agg_err *err);

/* Decompresses <path> (zstd, frame checksum checked), hashing and counting the CSV and
 * handing it to <sink> (NULL: none). Fills <out>. AGG_EINVAL for a corrupt file. */
int st_archive_read(const char *path, st_archive_sink_fn sink, void *arg,
                    struct st_archive_stats *out, struct agg_err *err);

#define ST_ARCHIVE_MAX_COLUMNS 64
#define ST_ARCHIVE_NAME_MAX    64

/* The <YYYY-MM>.manifest.json beside each archive file. */
struct st_archive_manifest {
    char table[ST_ARCHIVE_NAME_MAX];
    int month;
    char columns[ST_ARCHIVE_MAX_COLUMNS][ST_ARCHIVE_NAME_MAX];
    int ncolumns;
    int schema_version;
    uint64_t rows;
    char min_created_at[32]; /* "" when there are no rows */
    char max_created_at[32];
    int64_t min_id; /* meaningful when rows > 0 */
    int64_t max_id;
    char sha256[65];
    uint64_t compressed_bytes;
    char aggd_version[64];
};

/* Writes <m> as JSON to <path> (temp name, fsync, rename, fsync the directory). */
int st_archive_manifest_write(const char *path, const struct st_archive_manifest *m,
                              struct agg_err *err);
/* Reads and checks the manifest at <path> into <m>. AGG_EINVAL when malformed,
 * AGG_ENOTFOUND when missing. */
int st_archive_manifest_read(const char *path, struct st_archive_manifest *m, struct agg_err *err);

/* "<dir>/<table>/<YYYY-MM>.csv.zst" and "<dir>/<table>/<YYYY-MM>.manifest.json" into
 * <out> (<cap> bytes). AGG_EINVAL when it does not fit. */
int st_archive_path(const char *dir, const char *table, int month, bool manifest, char *out,
                    size_t cap, struct agg_err *err);

#endif
