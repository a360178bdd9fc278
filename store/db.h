/*
 * store/db.h — blocking libpq helpers for the CLI, startup and writer threads.
 *
 * Place: below migrate, partitions, pool; never called on the event-loop thread.
 * Threads: a PGconn belongs to one thread at a time.
 * Ownership: connections returned are the caller's: PQfinish().
 * Not here: the event-loop health probe (store/monitor.c), pooling (store/pool.c).
 */
#ifndef AGGD_STORE_DB_H
#define AGGD_STORE_DB_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "core/err.h"

/* Advisory lock keys (pg_advisory_lock): one per job that must run alone. */
#define ST_LOCK_MIGRATE INT64_C(0x6167676400000001)
#define ST_LOCK_PARTITIONS INT64_C(0x6167676400000002)

/* Opens a session to <conninfo> (libpq conninfo or URI) with a 10 s connect timeout
 * unless <conninfo> sets one, application_name "aggd" unless set, TimeZone UTC.
 * Caller owns the result: PQfinish(). NULL + <err> (AGG_EDB) on failure. */
PGconn *st_db_connect(const char *conninfo, struct agg_err *err);

/* Runs <sql> (no parameters; trusted text only) and expects no error. */
int st_db_exec(PGconn *conn, const char *sql, struct agg_err *err);

/* Runs <sql> with <n> text parameters. Caller owns the result on AGG_OK: PQclear().
 * <want> is PGRES_COMMAND_OK or PGRES_TUPLES_OK. */
int st_db_query(PGconn *conn, const char *sql, int n, const char *const *params,
                ExecStatusType want, PGresult **out, struct agg_err *err);

/* Copies PostgreSQL's message for <res> (or <conn> when <res> is NULL) into <err>,
 * one line, with the SQLSTATE. Returns AGG_EDB. */
int st_db_error(PGconn *conn, const PGresult *res, struct agg_err *err);

/* True when <res> failed with SQLSTATE <state> (five characters). */
bool st_db_is_sqlstate(const PGresult *res, const char *state);

/* The keywords/values st_db_connect() and the async monitor hand to libpq: timeouts
 * (connect, TCP keepalives, tcp_user_timeout) that the conninfo may override, then it. */
#define ST_DB_CONN_NVALUES 9
extern const char *const st_db_conn_keywords[ST_DB_CONN_NVALUES];
void st_db_conn_values(const char *conninfo, const char *values[ST_DB_CONN_NVALUES]);

#endif
