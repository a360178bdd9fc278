/*
 * store/migrate.c — applies and reverts the embedded schema migrations.
 *
 * Place: see store/migrate.h.
 * Threads: blocking libpq on the caller's thread.
 * Traps: the advisory lock is session-level and taken before schema_migrations is
 *        read, so a second runner waits and then finds nothing to do. A migration
 *        file must not contain BEGIN/COMMIT: the runner wraps it with its record.
 */
#include "store/migrate.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "store/db.h"

static const char create_table_sql[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY,"
    " name varchar(255) NOT NULL,"
    " applied_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'))";

static int advisory(PGconn *conn, const char *fn, struct agg_err *err)
{
    char key[32], sql[64];
    const char *params[1] = {key};

    snprintf(key, sizeof(key), "%lld", (long long)ST_LOCK_MIGRATE);
    snprintf(sql, sizeof(sql), "SELECT %s($1::bigint)", fn);
    return st_db_query(conn, sql, 1, params, PGRES_TUPLES_OK, NULL, err);
}

int st_migrate_latest(void)
{
    return st_migrations_count > 0 ? st_migrations[st_migrations_count - 1].version : 0;
}

/* Applied versions, ascending, into a caller-freed array. */
static int applied_versions(PGconn *conn, int **out, int *count, struct agg_err *err)
{
    PGresult *res;
    int n, *v;

    if (st_db_query(conn, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL,
                    PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    n = PQntuples(res);
    v = agg_calloc((size_t)n + 1, sizeof(*v));
    if (v == NULL) {
        PQclear(res);
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++)
        v[i] = (int)strtol(PQgetvalue(res, i, 0), NULL, 10);
    PQclear(res);
    *out = v;
    *count = n;
    return AGG_OK;
}

static bool contains(const int *v, int n, int version)
{
    for (int i = 0; i < n; i++) {
        if (v[i] == version)
            return true;
    }
    return false;
}

int st_migrate_current(PGconn *conn, int *version, struct agg_err *err)
{
    PGresult *res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM schema_migrations");

    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
        *version = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        return AGG_OK;
    }
    if (st_db_is_sqlstate(res, "42P01")) { /* undefined_table: never migrated */
        *version = 0;
        PQclear(res);
        return AGG_OK;
    }
    st_db_error(conn, res, err);
    PQclear(res);
    return AGG_EDB;
}

static int lock(PGconn *conn, struct agg_err *err)
{
    if (advisory(conn, "pg_advisory_lock", err) != AGG_OK)
        return AGG_EDB;
    if (st_db_exec(conn, create_table_sql, err) != AGG_OK) {
        advisory(conn, "pg_advisory_unlock", NULL);
        return AGG_EDB;
    }
    return AGG_OK;
}

/* Runs <sql> and the bookkeeping statement <book>($1 = version, $2 = name) in one
 * transaction. */
static int run_one(PGconn *conn, const struct st_migration *m, const char *sql, const char *book,
                   struct agg_err *err)
{
    char ver[16];
    const char *params[2] = {ver, m->name};

    snprintf(ver, sizeof(ver), "%d", m->version);
    if (st_db_exec(conn, "BEGIN", err) != AGG_OK)
        return AGG_EDB;
    if (st_db_exec(conn, sql, err) != AGG_OK ||
        st_db_query(conn, book, book[0] == 'I' ? 2 : 1, params, PGRES_COMMAND_OK, NULL, err) !=
            AGG_OK ||
        st_db_exec(conn, "COMMIT", err) != AGG_OK) {
        st_db_exec(conn, "ROLLBACK", NULL);
        agg_err_prefix(err, "migration %04d_%s", m->version, m->name);
        return AGG_EDB;
    }
    return AGG_OK;
}

int st_migrate_up(PGconn *conn, FILE *progress, struct agg_err *err)
{
    int *applied = NULL, napplied = 0, done = 0;
    int rc;

    if (lock(conn, err) != AGG_OK)
        return AGG_EDB;
    rc = applied_versions(conn, &applied, &napplied, err);
    if (rc == AGG_OK && napplied > 0 && applied[napplied - 1] > st_migrate_latest())
        rc = agg_err_set(err, AGG_EINVAL,
                         "database schema version %d is newer than this aggd (%d): upgrade aggd",
                         applied[napplied - 1], st_migrate_latest());
    for (int i = 0; rc == AGG_OK && i < st_migrations_count; i++) {
        const struct st_migration *m = &st_migrations[i];

        if (contains(applied, napplied, m->version))
            continue;
        rc = run_one(conn, m, m->up, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                     err);
        if (rc == AGG_OK && progress != NULL)
            fprintf(progress, "applied %04d_%s\n", m->version, m->name);
        done += rc == AGG_OK;
    }
    if (rc == AGG_OK && progress != NULL && done == 0)
        fprintf(progress, "schema is up to date (version %d)\n", st_migrate_latest());
    free(applied);
    advisory(conn, "pg_advisory_unlock", NULL);
    return rc;
}

int st_migrate_down(PGconn *conn, int n, FILE *progress, struct agg_err *err)
{
    int *applied = NULL, napplied = 0;
    int rc;

    if (n < 0)
        return agg_err_set(err, AGG_EINVAL, "cannot revert a negative number of migrations");
    if (lock(conn, err) != AGG_OK)
        return AGG_EDB;
    rc = applied_versions(conn, &applied, &napplied, err);
    for (int i = napplied - 1; rc == AGG_OK && i >= 0 && i >= napplied - n; i--) {
        const struct st_migration *m = NULL;

        for (int j = 0; j < st_migrations_count; j++) {
            if (st_migrations[j].version == applied[i])
                m = &st_migrations[j];
        }
        if (m == NULL) {
            rc = agg_err_set(err, AGG_EINVAL,
                             "cannot revert version %d: this aggd does not know it", applied[i]);
            break;
        }
        rc = run_one(conn, m, m->down, "DELETE FROM schema_migrations WHERE version = $1", err);
        if (rc == AGG_OK && progress != NULL)
            fprintf(progress, "reverted %04d_%s\n", m->version, m->name);
    }
    free(applied);
    advisory(conn, "pg_advisory_unlock", NULL);
    return rc;
}

int st_migrate_status(PGconn *conn, FILE *out, struct agg_err *err)
{
    PGresult *res = NULL;
    int current = 0, napplied;

    if (st_migrate_current(conn, &current, err) != AGG_OK)
        return AGG_EDB;
    if (current > 0 &&
        st_db_query(conn,
                    "SELECT version, name, to_char(applied_at, 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                    " FROM schema_migrations ORDER BY version",
                    0, NULL, PGRES_TUPLES_OK, &res, err) != AGG_OK)
        return AGG_EDB;
    napplied = res != NULL ? PQntuples(res) : 0;
    for (int i = 0; i < st_migrations_count; i++) {
        const struct st_migration *m = &st_migrations[i];
        const char *when = NULL;

        for (int r = 0; r < napplied; r++) {
            if ((int)strtol(PQgetvalue(res, r, 0), NULL, 10) == m->version)
                when = PQgetvalue(res, r, 2);
        }
        fprintf(out, "%04d_%-24s %s%s\n", m->version, m->name, when != NULL ? "applied " : "pending",
                when != NULL ? when : "");
    }
    for (int r = 0; r < napplied; r++) {
        int v = (int)strtol(PQgetvalue(res, r, 0), NULL, 10);

        if (v > st_migrate_latest())
            fprintf(out, "%04d_%-24s applied, unknown to this aggd\n", v, PQgetvalue(res, r, 1));
    }
    fprintf(out, "database at version %d, this aggd at %d: %s\n", current, st_migrate_latest(),
            current == st_migrate_latest() ? "up to date"
            : current < st_migrate_latest() ? "run `aggd migrate up`"
                                             : "database is newer than this aggd");
    PQclear(res);
    return AGG_OK;
}
