/*
 * store/partitions.h — monthly partitions of system_logs and alerts: create ahead,
 * archive past retention (a resumable state machine in partition_archives), list,
 * verify and restore archives.
 *
 * Place: `aggd partitions …` / `aggd archive …` (src/cli_partitions.c) and the serve
 *        maintenance timer (src/server.c) call here; files via store/archive.h.
 *        DESIGN.md, Partitions and archive; docs/partitions.md.
 * Threads: blocking libpq; CLI or a job thread, never the event loop.
 * Ownership: borrows the connection for the call.
 * Traps: DETACH … CONCURRENTLY cannot run in a transaction block: the connection must
 *        not be inside one. Maintenance takes the session advisory lock
 *        ST_LOCK_PARTITIONS with pg_try_advisory_lock and releases it before return.
 * Not here: archive file format (store/archive.c).
 */
#ifndef AGGD_STORE_PARTITIONS_H
#define AGGD_STORE_PARTITIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "core/err.h"

/* The partitioned tables maintenance looks after, NULL-terminated. */
extern const char *const st_partitions_tables[];

struct st_partitions_opts {
    int64_t now_us;       /* the clock: wall clock, or --now */
    int premake_months;   /* months created ahead of the current one */
    int retention_months; /* months kept before the current one */
    const char *archive_dir;
    bool rearchive;          /* archive restored months again */
    int archive_grace_hours; /* not a month noted receiving rows this recently (0: no check) */
    const char *fail_after;  /* tests only: "detached", "exported" or "verified" */
};

struct st_partitions_result {
    bool skipped;            /* another session holds the lock: nothing done */
    int created;             /* partitions created */
    int archived;            /* months that reached "dropped" */
    int failed;              /* months left detached after an error */
    int postponed;           /* months past retention that received rows within the grace */
    uint64_t archived_bytes; /* compressed bytes written by this run */
};

/* One maintenance pass (issue contract 1 and 2): under pg_try_advisory_lock, creates the
 * current month and <premake_months> ahead for every table, then archives and drops every
 * month wholly older than <retention_months>, resuming interrupted archives first.
 * A month noted in partition_activity within <archive_grace_hours> of PostgreSQL's
 * clock (never <now_us>) is not detached: postponed to a later pass. A month archived
 * and then re-created gets its archived rows merged back and is archived again, whole.
 * A month that fails is left detached (state "failed" with the error) and the run goes
 * on; the first such error is in <err> and the result is AGG_ERR. <log> (NULL: the
 * daemon's log) gets one line per action. */
int st_partitions_maintain(PGconn *conn, const struct st_partitions_opts *opts, FILE *log,
                           struct st_partitions_result *res, struct agg_err *err);

/* One partition or archived month of a partitioned table (st_partitions_each). */
struct st_partitions_row {
    const char *table;
    const char *month;         /* "YYYY-MM" */
    const char *where;         /* "attached", or "archived" when only the archive is left */
    const char *archive_state; /* partition_archives.state, NULL when never archived */
    bool has_rows;
    int64_t rows; /* rows in the partition, else the archive's row count */
    bool has_bytes;
    int64_t bytes;     /* the partition's total size, else the archive's compressed size */
    const char *range; /* "<from> .. <to>" of an attached partition, else NULL */
};

/* The column names of struct st_partitions_row, in its order, NULL-terminated: the
 * header of `aggd partitions list` and the keys of GET /api/v1/partitions. */
extern const char *const st_partitions_columns[];

/* Calls <fn>(<arg>, row) for every partition and every archived month of every table,
 * ordered by table and month; the row's strings are valid during the call only. Stops at
 * the first <fn> that returns other than AGG_OK and returns that. AGG_EDB + <err> when
 * the query fails. */
int st_partitions_each(PGconn *conn, int (*fn)(void *arg, const struct st_partitions_row *row),
                       void *arg, struct agg_err *err);

/* Writes one line per partition_archives row: table, month, rows, compressed size,
 * state. */
int st_archive_list(PGconn *conn, FILE *out, struct agg_err *err);

/* Re-reads <table>'s archive of <month> under <dir>, re-hashes and recounts it against
 * its manifest (and the partition_archives row when <conn> is not NULL).
 * AGG_EINVAL on any mismatch, with the detail in <err>. */
int st_archive_verify(PGconn *conn, const char *dir, const char *table, int month,
                      struct agg_err *err);

/* What a restore did. */
struct st_archive_restored {
    uint64_t archived_rows; /* rows in the archive */
    uint64_t added_rows;    /* of those, inserted (fewer when merged) */
    bool merged;            /* the month had been re-created: merged into its partition */
};

/* Loads the archive of <table>'s <month> into a new table and attaches it as the
 * month's partition, in one transaction, checking row count and hash before commit, and
 * marks the month "restored". When the month's partition was re-created since (late
 * rows), merges instead: inserts the archived rows it lacks (same (id, created_at)) and
 * keeps the rest. Fills <out> (NULL: not wanted). Refuses (AGG_EINVAL) a corrupt or
 * mismatching archive, and a month that is not in state "dropped". */
int st_archive_restore(PGconn *conn, const char *dir, const char *table, int month,
                       struct st_archive_restored *out, struct agg_err *err);

/* Gauges for /metrics. */
struct st_partitions_stats {
    int64_t partitions[2];  /* attached partitions of st_partitions_tables[i] */
    int64_t archived_bytes; /* compressed bytes of months in state dropped */
    int64_t failed;         /* months in state failed */
};

/* Counts what struct st_partitions_stats holds. */
int st_partitions_stats(PGconn *conn, struct st_partitions_stats *out, struct agg_err *err);

/* For late data: whether <table>'s <month> (store/archive.h month number) is archived
 * or being archived — a partition_archives row in state detached, exported, verified,
 * dropped or failed; a restored month is not. */
int st_partitions_month_is_archived(PGconn *conn, const char *table, int month, bool *out,
                                    struct agg_err *err);

#endif
