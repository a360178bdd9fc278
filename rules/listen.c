/*
 * rules/listen.c — non-blocking LISTEN.
 *
 * Place: see rules/listen.h.
 * Threads: event-loop thread only.
 * Traps: the socket of a connecting PGconn may change between PQconnectPoll calls,
 *        so the I/O event is rebuilt for every wait (as in store/monitor.c).
 */
#include "rules/listen.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/alloc.h"
#include "core/log.h"
#include "store/db.h"

#define CONNECT_TIMEOUT_MS 10000

enum phase {
    PHASE_DOWN = 0,
    PHASE_CONNECTING,
    PHASE_LISTENING, /* LISTEN sent, waiting for its result */
    PHASE_WAITING,   /* idle, reading notifications */
};

struct rl_listen {
    struct event_base *base;
    char *conninfo;
    char *sql;
    PGconn *conn;
    struct event *io;
    struct event *timer;
    enum phase phase;
    int retry_ms;
    bool was_up;
    rl_listen_cb cb;
    void *arg;
};

static void on_io(evutil_socket_t fd, short what, void *arg);

static void after_ms(struct event *ev, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(ev, &tv);
}

static void drop(struct rl_listen *l, const char *why)
{
    struct agg_err err = {0};

    if (why == NULL) {
        st_db_error(l->conn, NULL, &err);
        why = err.msg;
    }
    if (l->was_up || l->phase != PHASE_CONNECTING)
        AGG_LOG_WARN("rules", "rule change notifications stopped: %s; retrying", why);
    l->was_up = false;
    if (l->io != NULL) {
        event_free(l->io);
        l->io = NULL;
    }
    PQfinish(l->conn);
    l->conn = NULL;
    l->phase = PHASE_DOWN;
    after_ms(l->timer, l->retry_ms);
}

static void wait_io(struct rl_listen *l, bool write, bool bounded)
{
    struct timeval tv = {CONNECT_TIMEOUT_MS / 1000, 0};
    int fd = PQsocket(l->conn);

    if (l->io != NULL) {
        event_free(l->io);
        l->io = NULL;
    }
    if (fd < 0) {
        drop(l, NULL);
        return;
    }
    l->io = event_new(l->base, fd, write ? EV_WRITE : EV_READ, on_io, l);
    if (l->io == NULL) {
        drop(l, "out of memory");
        return;
    }
    event_add(l->io, bounded ? &tv : NULL);
}

static void connect_step(struct rl_listen *l)
{
    switch (PQconnectPoll(l->conn)) {
    case PGRES_POLLING_READING:
        wait_io(l, false, true);
        return;
    case PGRES_POLLING_WRITING:
        wait_io(l, true, true);
        return;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(l->conn, 1) != 0 || PQsendQuery(l->conn, l->sql) != 1) {
            drop(l, NULL);
            return;
        }
        l->phase = PHASE_LISTENING;
        wait_io(l, PQflush(l->conn) == 1, true);
        return;
    default:
        drop(l, NULL);
        return;
    }
}

/* Reads what arrived: the LISTEN's result, then notifications. */
static void read_input(struct rl_listen *l)
{
    PGresult *res;
    PGnotify *n;
    bool notified = false;

    if (PQflush(l->conn) == 1) {
        wait_io(l, true, true);
        return;
    }
    if (PQconsumeInput(l->conn) != 1) {
        drop(l, NULL);
        return;
    }
    if (l->phase == PHASE_LISTENING) {
        if (PQisBusy(l->conn)) {
            wait_io(l, false, true);
            return;
        }
        while ((res = PQgetResult(l->conn)) != NULL) {
            bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;

            PQclear(res);
            if (!ok) {
                drop(l, NULL);
                return;
            }
        }
        l->phase = PHASE_WAITING;
        l->was_up = true;
        notified = true; /* whatever changed while we were not listening */
    }
    while ((n = PQnotifies(l->conn)) != NULL) {
        notified = true;
        PQfreemem(n);
    }
    wait_io(l, false, false);
    if (notified && l->io != NULL)
        l->cb(l->arg);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct rl_listen *l = arg;

    (void)fd;
    if (what & EV_TIMEOUT) {
        drop(l, "PostgreSQL did not answer in time");
        return;
    }
    if (l->phase == PHASE_CONNECTING)
        connect_step(l);
    else
        read_input(l);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct rl_listen *l = arg;
    const char *values[ST_DB_CONN_NVALUES];

    (void)fd;
    (void)what;
    st_db_conn_values(l->conninfo, values);
    l->conn = PQconnectStartParams(st_db_conn_keywords, values, 1);
    if (l->conn == NULL || PQstatus(l->conn) == CONNECTION_BAD) {
        drop(l, l->conn == NULL ? "out of memory" : NULL);
        return;
    }
    l->phase = PHASE_CONNECTING;
    wait_io(l, true, true); /* libpq: behave as if PQconnectPoll said WRITING */
}

struct rl_listen *rl_listen_new(struct event_base *base, const char *conninfo,
                                const char *channel, int retry_ms, rl_listen_cb cb, void *arg,
                                struct agg_err *err)
{
    struct rl_listen *l = agg_calloc(1, sizeof(*l));
    size_t n = strlen(channel) + sizeof("LISTEN ");

    if (l == NULL)
        goto oom;
    l->base = base;
    l->retry_ms = retry_ms;
    l->cb = cb;
    l->arg = arg;
    l->conninfo = agg_strdup(conninfo);
    l->sql = agg_malloc(n);
    l->timer = evtimer_new(base, on_timer, l);
    if (l->conninfo == NULL || l->sql == NULL || l->timer == NULL)
        goto oom;
    snprintf(l->sql, n, "LISTEN %s", channel); /* a constant identifier of ours */
    after_ms(l->timer, 0);
    return l;

oom:
    agg_err_set(err, AGG_ENOMEM, "out of memory");
    rl_listen_free(l);
    return NULL;
}

void rl_listen_free(struct rl_listen *l)
{
    if (l == NULL)
        return;
    if (l->io != NULL)
        event_free(l->io);
    if (l->timer != NULL)
        event_free(l->timer);
    PQfinish(l->conn);
    free(l->conninfo);
    free(l->sql);
    free(l);
}
