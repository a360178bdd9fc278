/*
 * store/migrate.h — the embedded schema migrations and their runner.
 *
 * Place: `aggd migrate`, `aggd serve --migrate` and the startup schema check.
 * Threads: blocking libpq; CLI and startup only.
 * Ownership: borrows the connection for the call.
 * Not here: the SQL itself (schema/NNNN_name.{up,down}.sql, embedded by
 *           cmake/embed_schema.cmake).
 */
#ifndef AGGD_STORE_MIGRATE_H
#define AGGD_STORE_MIGRATE_H

#include <stdio.h>

#include <libpq-fe.h>

#include "core/err.h"

struct st_migration {
    int version; /* 1, 2, ... without gaps */
    const char *name;
    const char *up;
    const char *down;
};

/* Generated at build time, in version order. */
extern const struct st_migration st_migrations[];
extern const int st_migrations_count;

/* The version this binary's schema is at when fully migrated. */
int st_migrate_latest(void);

/* The highest applied version in the database (0 when schema_migrations is absent or
 * empty) into <version>. Creates nothing. */
int st_migrate_current(PGconn *conn, int *version, struct agg_err *err);

/* Applies every pending migration, each in its own transaction, under an advisory lock
 * so that concurrent runners apply each migration once. Names what it applied on
 * <progress> (NULL: silent). Refuses a database newer than this binary. */
int st_migrate_up(PGconn *conn, FILE *progress, struct agg_err *err);

/* Reverts the newest <n> applied migrations (fewer if fewer are applied). */
int st_migrate_down(PGconn *conn, int n, FILE *progress, struct agg_err *err);

/* Writes one line per migration (applied with time, or pending) and a summary. */
int st_migrate_status(PGconn *conn, FILE *out, struct agg_err *err);

#endif
