/*
 * store/monitor.c — non-blocking PostgreSQL health probe.
 *
 * Place: see store/monitor.h.
 * Threads: event-loop thread only.
 * Ownership: the monitor owns its PGconn and events.
 * Traps: the socket of a connecting PGconn may change between PQconnectPoll calls
 *        (several hosts, SSL retry), so the I/O event is rebuilt for every wait.
 *        The connection stays open between probes; a failed probe drops it.
 *        libpq resolves a host name synchronously inside PQconnectStart, so a single
 *        host name is resolved here first (evdns) and handed to libpq as hostaddr;
 *        host stays set for TLS and .pgpass. A host list is left to libpq.
 *        A cancelled lookup calls back later, from the loop, with EVUTIL_EAI_CANCEL:
 *        on_resolved must not touch the monitor then (it may be freed).
 */
#include "store/monitor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/util.h>
#include <libpq-fe.h>

#include "core/alloc.h"
#include "store/db.h"

enum phase {
    PHASE_IDLE = 0,
    PHASE_RESOLVING,
    PHASE_CONNECTING,
    PHASE_QUERYING,
};

struct st_monitor {
    struct event_base *base;
    char *conninfo;
    char *host; /* a host name to resolve before connecting, or NULL */
    char hostaddr[64];
    struct evdns_base *dns;
    bool own_dns;
    struct evdns_getaddrinfo_request *dns_req;
    PGconn *conn;
    struct event *io;
    struct event *timer;
    enum phase phase;
    int interval_ms;
    int timeout_ms;
    bool up;
    int version;
    char reason[256];
    st_monitor_cb cb;
    void *arg;
};

static const char version_sql[] = "SELECT coalesce(max(version), 0) FROM schema_migrations";

static void on_io(evutil_socket_t fd, short what, void *arg);

static void ms_to_tv(int ms, struct timeval *tv)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

static void schedule(struct st_monitor *m, int ms)
{
    struct timeval tv;

    ms_to_tv(ms, &tv);
    evtimer_add(m->timer, &tv);
}

static void report(struct st_monitor *m, bool up, int version, const char *reason)
{
    bool changed = up != m->up || version != m->version || strcmp(reason, m->reason) != 0;

    m->up = up;
    m->version = version;
    snprintf(m->reason, sizeof(m->reason), "%.*s", (int)sizeof(m->reason) - 1, reason);
    if (changed && m->cb != NULL)
        m->cb(m->arg, up, version, m->reason);
}

static void finish(struct st_monitor *m)
{
    if (m->io != NULL) {
        event_free(m->io);
        m->io = NULL;
    }
    m->phase = PHASE_IDLE;
    schedule(m, m->interval_ms);
}

static void fail(struct st_monitor *m, const char *why)
{
    struct agg_err err = {0};

    if (why == NULL) {
        st_db_error(m->conn, NULL, &err);
        why = err.msg;
    }
    if (m->conn != NULL) {
        PQfinish(m->conn);
        m->conn = NULL;
    }
    report(m, false, m->version, why);
    finish(m);
}

/* Waits for <conn>'s socket to become readable or writable, bounded by timeout_ms. */
static void wait_io(struct st_monitor *m, bool write)
{
    struct timeval tv;
    int fd = PQsocket(m->conn);

    if (m->io != NULL) {
        event_free(m->io);
        m->io = NULL;
    }
    if (fd < 0) {
        fail(m, NULL);
        return;
    }
    m->io = event_new(m->base, fd, write ? EV_WRITE : EV_READ, on_io, m);
    if (m->io == NULL) {
        fail(m, "out of memory");
        return;
    }
    ms_to_tv(m->timeout_ms, &tv);
    event_add(m->io, &tv);
}

static void send_query(struct st_monitor *m)
{
    m->phase = PHASE_QUERYING;
    if (PQsendQuery(m->conn, version_sql) != 1) {
        fail(m, NULL);
        return;
    }
    /* The query is tiny; if it did not fit the socket buffer, wait to write more. */
    wait_io(m, PQflush(m->conn) == 1);
}

static void read_result(struct st_monitor *m)
{
    PGresult *res;
    int version = m->version;
    bool ok = true;
    struct agg_err err = {0};

    if (PQflush(m->conn) == 1) {
        wait_io(m, true);
        return;
    }
    if (PQconsumeInput(m->conn) != 1) {
        fail(m, NULL);
        return;
    }
    if (PQisBusy(m->conn)) {
        wait_io(m, false);
        return;
    }
    while ((res = PQgetResult(m->conn)) != NULL) {
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
            version = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
        else if (st_db_is_sqlstate(res, "42P01"))
            version = 0; /* never migrated */
        else if (ok) {
            ok = false;
            st_db_error(m->conn, res, &err);
        }
        PQclear(res);
    }
    if (!ok) {
        fail(m, err.msg);
        return;
    }
    report(m, true, version, "");
    finish(m);
}

static void connect_step(struct st_monitor *m)
{
    switch (PQconnectPoll(m->conn)) {
    case PGRES_POLLING_READING:
        wait_io(m, false);
        break;
    case PGRES_POLLING_WRITING:
        wait_io(m, true);
        break;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(m->conn, 1) != 0) {
            fail(m, NULL);
            break;
        }
        send_query(m);
        break;
    default:
        fail(m, NULL);
        break;
    }
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct st_monitor *m = arg;

    (void)fd;
    if (what & EV_TIMEOUT) {
        char why[64];

        snprintf(why, sizeof(why), "no answer within %d ms", m->timeout_ms);
        fail(m, why);
        return;
    }
    if (m->phase == PHASE_CONNECTING)
        connect_step(m);
    else if (m->phase == PHASE_QUERYING)
        read_result(m);
}

/* Starts a connection; <hostaddr> (NULL: none) overrides the conninfo's. */
static void start_connect(struct st_monitor *m, const char *hostaddr)
{
    const char *keys[ST_DB_CONN_NVALUES + 1], *values[ST_DB_CONN_NVALUES + 1];
    const char *base_values[ST_DB_CONN_NVALUES];
    size_t n = 0;

    st_db_conn_values(m->conninfo, base_values);
    for (; st_db_conn_keywords[n] != NULL; n++) {
        keys[n] = st_db_conn_keywords[n];
        values[n] = base_values[n];
    }
    if (hostaddr != NULL) { /* after dbname: it overrides the expanded conninfo */
        keys[n] = "hostaddr";
        values[n++] = hostaddr;
    }
    keys[n] = NULL;
    values[n] = NULL;
    m->conn = PQconnectStartParams(keys, values, 1);
    if (m->conn == NULL) {
        fail(m, "out of memory");
        return;
    }
    if (PQstatus(m->conn) == CONNECTION_BAD) {
        fail(m, NULL);
        return;
    }
    m->phase = PHASE_CONNECTING;
    wait_io(m, true); /* libpq: behave as if PQconnectPoll said WRITING */
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct st_monitor *m = arg;
    char why[320];
    const void *addr = NULL;

    if (result == EVUTIL_EAI_CANCEL) { /* st_monitor_free or the timeout: m is done */
        if (res != NULL)
            evutil_freeaddrinfo(res);
        return;
    }
    m->dns_req = NULL;
    evtimer_del(m->timer);
    if (result == 0 && res != NULL)
        addr = res->ai_family == AF_INET6
                   ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                   : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    if (addr == NULL ||
        evutil_inet_ntop(res->ai_family, addr, m->hostaddr, sizeof(m->hostaddr)) == NULL) {
        snprintf(why, sizeof(why), "cannot resolve \"%s\": %s", m->host,
                 result != 0 ? evutil_gai_strerror(result) : "no address");
        if (res != NULL)
            evutil_freeaddrinfo(res);
        fail(m, why);
        return;
    }
    evutil_freeaddrinfo(res);
    start_connect(m, m->hostaddr);
}

static void resolve(struct st_monitor *m)
{
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct evdns_getaddrinfo_request *req;

    if (m->dns == NULL) {
        m->dns = evdns_base_new(m->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        m->own_dns = true;
        if (m->dns == NULL) {
            fail(m, "cannot start the resolver");
            return;
        }
    }
    m->phase = PHASE_RESOLVING;
    schedule(m, m->timeout_ms); /* the timer bounds the lookup */
    req = evdns_getaddrinfo(m->dns, m->host, NULL, &hints, on_resolved, m);
    if (m->phase == PHASE_RESOLVING) /* not answered at once */
        m->dns_req = req;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct st_monitor *m = arg;

    (void)fd;
    (void)what;
    if (m->phase == PHASE_RESOLVING) {
        char why[64];

        if (m->dns_req != NULL)
            evdns_getaddrinfo_cancel(m->dns_req);
        m->dns_req = NULL;
        snprintf(why, sizeof(why), "no answer within %d ms", m->timeout_ms);
        fail(m, why);
        return;
    }
    if (m->conn != NULL) {
        send_query(m);
        return;
    }
    if (m->host != NULL)
        resolve(m);
    else
        start_connect(m, NULL);
}

/* The single host name of <conninfo> that libpq would resolve itself, or NULL. */
static char *name_to_resolve(const char *conninfo)
{
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    const char *host = NULL, *hostaddr = NULL;
    unsigned char bin[16];
    char *out = NULL;

    if (opts == NULL)
        return NULL; /* libpq will say what is wrong with it */
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
    }
    if (host != NULL && host[0] != '\0' && host[0] != '/' && host[0] != '@' &&
        strchr(host, ',') == NULL && (hostaddr == NULL || hostaddr[0] == '\0') &&
        evutil_inet_pton(AF_INET, host, bin) != 1 && evutil_inet_pton(AF_INET6, host, bin) != 1)
        out = agg_strdup(host);
    PQconninfoFree(opts);
    return out;
}

struct st_monitor *st_monitor_new(struct event_base *base, struct evdns_base *dns,
                                  const char *conninfo, int interval_ms, int timeout_ms,
                                  st_monitor_cb cb, void *arg, struct agg_err *err)
{
    struct st_monitor *m = agg_calloc(1, sizeof(*m));

    if (m == NULL)
        goto oom;
    m->base = base;
    m->interval_ms = interval_ms;
    m->timeout_ms = timeout_ms;
    m->version = -1;
    m->cb = cb;
    m->arg = arg;
    snprintf(m->reason, sizeof(m->reason), "not probed yet");
    m->dns = dns;
    m->conninfo = agg_strdup(conninfo);
    m->host = m->conninfo != NULL ? name_to_resolve(conninfo) : NULL;
    m->timer = evtimer_new(base, on_timer, m);
    if (m->conninfo == NULL || m->timer == NULL)
        goto oom;
    schedule(m, 0);
    return m;

oom:
    agg_err_set(err, AGG_ENOMEM, "out of memory");
    st_monitor_free(m);
    return NULL;
}

void st_monitor_free(struct st_monitor *m)
{
    if (m == NULL)
        return;
    if (m->dns_req != NULL)
        evdns_getaddrinfo_cancel(m->dns_req);
    if (m->own_dns && m->dns != NULL)
        evdns_base_free(m->dns, 0);
    if (m->io != NULL)
        event_free(m->io);
    if (m->timer != NULL)
        event_free(m->timer);
    if (m->conn != NULL)
        PQfinish(m->conn);
    free(m->conninfo);
    free(m->host);
    free(m);
}

bool st_monitor_is_up(const struct st_monitor *m)
{
    return m->up;
}

int st_monitor_schema_version(const struct st_monitor *m)
{
    return m->version;
}

const char *st_monitor_reason(const struct st_monitor *m)
{
    return m->reason;
}
