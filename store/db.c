/*
 * store/db.c — blocking libpq helpers.
 *
 * Place: see store/db.h.
 * Threads: any thread that owns the connection; never the event loop.
 * Traps: PostgreSQL messages end in newlines and may span lines; they are folded
 *        into one line before they reach a log.
 */
#include "store/db.h"

#include <string.h>

#include "core/log.h"

/* Array entries before dbname may be overridden by the conninfo (libpq rule). libpq
 * ignores the keepalive and tcp_user_timeout settings on Unix-domain sockets, so they
 * act only where the URL reaches PostgreSQL over TCP: a peer that vanishes or stops
 * acknowledging fails the connection within about a minute instead of the kernel's
 * two hours. */
const char *const st_db_conn_keywords[ST_DB_CONN_NVALUES] = {
    "connect_timeout",           "keepalives",       "keepalives_idle",
    "keepalives_interval",       "keepalives_count", "tcp_user_timeout",
    "fallback_application_name", "dbname",           NULL};

void st_db_conn_values(const char *conninfo, const char *values[ST_DB_CONN_NVALUES])
{
    values[0] = "10"; /* s */
    values[1] = "1";
    values[2] = "30";    /* s idle before the first probe */
    values[3] = "10";    /* s between probes */
    values[4] = "3";     /* probes lost before the connection is dead */
    values[5] = "60000"; /* ms unacknowledged data may wait */
    values[6] = "aggd";
    values[7] = conninfo;
    values[8] = NULL;
}

static void one_line(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '.'))
        s[--n] = '\0';
    for (char *p = s; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    }
}

int st_db_error(PGconn *conn, const PGresult *res, struct agg_err *err)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res != NULL ? PQresultErrorMessage(res) : NULL;

    if (msg == NULL || *msg == '\0')
        msg = conn != NULL ? PQerrorMessage(conn) : "no connection";
    if (msg == NULL || *msg == '\0')
        msg = "unknown error";
    if (state != NULL)
        agg_err_set(err, AGG_EDB, "%s (SQLSTATE %s)", msg, state);
    else
        agg_err_set(err, AGG_EDB, "%s", msg);
    if (err != NULL)
        one_line(err->msg);
    return AGG_EDB;
}

bool st_db_is_sqlstate(const PGresult *res, const char *state)
{
    const char *s = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    return s != NULL && strcmp(s, state) == 0;
}

/* PostgreSQL NOTICEs are for a human at psql, not for our stderr. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    AGG_LOG_DEBUG("db", "%s", message);
}

PGconn *st_db_connect(const char *conninfo, struct agg_err *err)
{
    const char *values[ST_DB_CONN_NVALUES];
    PGconn *conn;

    st_db_conn_values(conninfo, values);
    conn = PQconnectdbParams(st_db_conn_keywords, values, 1);
    if (conn == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        st_db_error(conn, NULL, err);
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, on_notice, NULL);
    if (st_db_exec(conn, "SET TimeZone = 'UTC'", err) != AGG_OK) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

int st_db_query(PGconn *conn, const char *sql, int n, const char *const *params,
                ExecStatusType want, PGresult **out, struct agg_err *err)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);

    if (res == NULL)
        return st_db_error(conn, NULL, err);
    if (PQresultStatus(res) != want) {
        st_db_error(conn, res, err);
        PQclear(res);
        return AGG_EDB;
    }
    if (out != NULL)
        *out = res;
    else
        PQclear(res);
    return AGG_OK;
}

int st_db_exec(PGconn *conn, const char *sql, struct agg_err *err)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rc = AGG_OK;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = st_db_error(conn, res, err);
    PQclear(res);
    return rc;
}
