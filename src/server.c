/*
 * src/server.c — the daemon: event loop, signals, health and metrics routes.
 *
 * Place: see src/server.h; DESIGN.md "Data flow" begins at the listeners made here.
 * Threads: the event-loop thread.
 * Ownership: the struct server owns everything it creates; torn down in reverse.
 * Traps: /readyz answers from the monitor's last probe, never by querying on the
 *        loop thread. A database whose schema version differs from this binary's
 *        stops the daemon: writing into an unknown schema is worse than not running.
 */
#include "src/server.h"

#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <yajl/yajl_gen.h>

#include "core/alloc.h"
#include "core/http.h"
#include "core/log.h"
#include "core/tls.h"
#include "core/metrics.h"
#include "src/sdnotify.h"
#include "src/sockets.h"
#include "core/version.h"
#include "api/api.h"
#include "api/session.h"
#include "src/filejobs.h"
#include "src/http_ingest.h"
#include "src/listen.h"
#include "store/pipeline.h"
#include "core/time.h"
#include "rules/engine.h"
#include "store/jobs.h"
#include "store/monitor.h"
#include "store/maint.h"
#include "store/pool.h"
#include "store/spool.h"

struct server {
    struct agg_config *cfg; /* a reload changes the keys that may change live */
    struct agg_sockets sockets; /* passed by systemd, until the listeners take them */
    const struct agg_serve_opts *opts;
    struct event_base *base;
    struct agg_http *http;
    size_t max_conns; /* listen.max_connections below the descriptor limit */
    struct agg_metrics *metrics;
    struct st_monitor *monitor;
    struct st_pool *pool;
    struct st_spool *spool;
    struct st_pipeline *pipeline;
    struct agg_tls *tls; /* listen.syslog_tls and listen.https; NULL: both off */
    struct agg_listener *listeners[4];
    /* For each listener: its address resolved at start (getaddrinfo may block, so not
     * from the loop, where start_listeners() runs) and the socket systemd passed for
     * it; both handed over, or freed by server_clear(). */
    struct addrinfo *listen_ai[4];
    int listen_fd[4]; /* -1: none */
    struct st_jobs *jobs;
    struct api_sessions *sessions;
    struct agg_http_ingest *ingest_http;
    struct api *api;
    struct rl_engine *engine;
    struct st_maint *maint; /* partition maintenance on a timer */
    struct agg_filejobs *filejobs; /* file processing jobs, on their own thread */
    struct event *sig_term, *sig_int, *sig_hup;
    _Atomic int64_t *db_up;
    _Atomic int64_t *schema_version;
    _Atomic int64_t *http_ready_fail;
    struct agg_err fatal; /* set when the loop stops for a reason other than a signal */
};

static void on_healthz(struct evhttp_request *req, const struct agg_http_match *m, void *arg)
{
    (void)m;
    (void)arg;
    agg_http_reply_json(req, 200, "{\"status\":\"ok\"}");
}

static void gen_str(yajl_gen g, const char *s)
{
    yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

static void on_readyz(struct evhttp_request *req, const struct agg_http_match *m, void *arg)
{
    struct server *s = arg;
    bool up = st_monitor_is_up(s->monitor);
    int version = st_monitor_schema_version(s->monitor);
    bool schema_ok = version == s->opts->schema_version;
    char ingest_why[256] = "";
    bool ready;

    if (s->pipeline != NULL)
        st_pipeline_problem(s->pipeline, ingest_why, sizeof(ingest_why));
    ready = up && schema_ok && ingest_why[0] == '\0';
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *out;
    size_t len;

    (void)m;
    if (g == NULL) {
        agg_http_reply_json(req, 503, "{\"status\":\"not ready\"}");
        return;
    }
    yajl_gen_map_open(g);
    gen_str(g, "status");
    gen_str(g, ready ? "ready" : "not ready");
    gen_str(g, "database");
    yajl_gen_map_open(g);
    gen_str(g, "up");
    yajl_gen_bool(g, up);
    gen_str(g, "schema_version");
    yajl_gen_integer(g, version);
    gen_str(g, "expected_schema_version");
    yajl_gen_integer(g, s->opts->schema_version);
    yajl_gen_map_close(g);
    if (!ready) {
        char why[320];

        if (!up)
            snprintf(why, sizeof(why), "database: %s", st_monitor_reason(s->monitor));
        else if (ingest_why[0] != '\0')
            snprintf(why, sizeof(why), "ingest: %s", ingest_why);
        else
            snprintf(why, sizeof(why), "database schema version %d, expected %d", version,
                     s->opts->schema_version);
        gen_str(g, "reason");
        gen_str(g, why);
        agg_metric_inc(s->http_ready_fail, 1);
    }
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &out, &len);
    if (!ready)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    agg_http_reply_json(req, ready ? 200 : 503, (const char *)out);
    yajl_gen_free(g);
}

static void on_metrics(struct evhttp_request *req, const struct agg_http_match *m, void *arg)
{
    struct server *s = arg;
    struct evbuffer *buf = evbuffer_new();

    (void)m;
    if (buf == NULL || agg_metrics_render(s->metrics, buf) != AGG_OK) {
        if (buf != NULL)
            evbuffer_free(buf);
        agg_http_reply_error(req, 503, "unavailable", "out of memory", NULL);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
}

static void on_db_change(void *arg, bool up, int version, const char *reason)
{
    struct server *s = arg;

    agg_metric_set(s->db_up, up);
    agg_metric_set(s->schema_version, version);
    if (!up) {
        AGG_LOG_WARN("db", "PostgreSQL is not reachable: %s", reason);
        return;
    }
    if (version != s->opts->schema_version) {
        agg_err_set(&s->fatal, AGG_EINVAL,
                    "database schema is at version %d but this aggd needs %d: %s", version,
                    s->opts->schema_version,
                    version < s->opts->schema_version
                        ? "run `aggd migrate up` or start with --migrate"
                        : "upgrade aggd");
        event_base_loopbreak(s->base);
        return;
    }
    AGG_LOG_INFO("db", "PostgreSQL is reachable, schema version %d", version);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    struct agg_err err = {0};

    (void)what;
    AGG_LOG_INFO("server", "received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    if (agg_sd_notify(s->opts->notify_socket, "STOPPING=1", &err) != AGG_OK)
        AGG_LOG_WARN("server", "%s", err.msg);
    event_base_loopexit(s->base, NULL);
}

static size_t connection_cap(const struct agg_config *cfg);
static struct agg_http_limits http_limits(const struct server *s);

/* After a reload: the limits the modules copied at start, from the changed config. */
static void apply_limits(struct server *s)
{
    s->max_conns = connection_cap(s->cfg);
    if (s->http != NULL) {
        const struct agg_http_limits limits = http_limits(s);

        agg_http_set_limits(s->http, &limits);
    }
    agg_http_ingest_set_max_body(s->ingest_http, s->http, s->cfg->ingest.max_body_bytes);
    for (size_t i = 0; i < sizeof(s->listeners) / sizeof(s->listeners[0]); i++)
        agg_listener_set_limits(s->listeners[i], s->max_conns,
                                s->cfg->listen.idle_timeout_seconds);
}

struct reload_report {
    char applied[512], restart[512];
};

static void note_change(void *arg, const char *key, bool applied)
{
    struct reload_report *r = arg;
    char *list = applied ? r->applied : r->restart;
    size_t used = strlen(list), size = sizeof(r->applied);

    snprintf(list + used, size - used, "%s%s", used > 0 ? ", " : "", key);
}

static void reload_tls(struct server *s);

/* SIGHUP: builds the configuration again from the same file, environment and --set;
 * a bad file is refused whole. Applies what may change while running and names what
 * needs a restart. */
static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    struct agg_err err = {0};
    struct reload_report r = {{0}, {0}};
    struct agg_config *next;
    enum agg_log_level level;
    int64_t interval_ms = s->cfg->alerts.eval_interval_ms;
    int64_t notify_timeout_ms = s->cfg->notify.webhook_timeout_ms;

    (void)sig;
    (void)what;
    if (s->opts->reload == NULL) {
        AGG_LOG_WARN("server", "SIGHUP: no configuration to reload from; ignoring");
        return;
    }
    if (s->opts->notify_socket != NULL)
        agg_sd_notify(s->opts->notify_socket, "RELOADING=1", NULL);
    next = s->opts->reload(s->opts->reload_arg, &err);
    if (next == NULL) {
        AGG_LOG_ERR("server", "configuration reload refused, the running one stays: %s",
                    err.msg);
    } else {
        agg_config_reload(s->cfg, next, note_change, &r);
        agg_config_free(next);
        if (agg_log_level_parse(s->cfg->log.level, &level))
            agg_log_set_level(level);
        if (s->cfg->alerts.eval_interval_ms != interval_ms)
            rl_engine_set_interval(s->engine, s->cfg->alerts.eval_interval_ms);
        if (s->cfg->notify.webhook_timeout_ms != notify_timeout_ms)
            rl_engine_set_notify_timeout(s->engine, s->cfg->notify.webhook_timeout_ms);
        apply_limits(s);
        reload_tls(s);
        if (r.applied[0] == '\0' && r.restart[0] == '\0')
            AGG_LOG_INFO("server", "configuration reloaded: nothing changed");
        if (r.applied[0] != '\0')
            AGG_LOG_INFO("server", "configuration reloaded: applied %s", r.applied);
        if (r.restart[0] != '\0')
            AGG_LOG_WARN("server", "configuration reloaded: changed but needing a restart: %s",
                         r.restart);
    }
    if (s->opts->notify_socket != NULL)
        agg_sd_notify(s->opts->notify_socket, "READY=1", NULL);
}

static int register_metrics(struct server *s, struct agg_err *err)
{
    char labels[128];
    _Atomic int64_t *info;

    snprintf(labels, sizeof(labels), "version=\"%s\",commit=\"%s\"", AGG_VERSION,
             AGG_GIT_COMMIT);
    info = agg_metrics_add(s->metrics, AGG_METRIC_GAUGE, "aggd_build_info", labels,
                           "Build of the running aggd.");
    s->db_up = agg_metrics_add(s->metrics, AGG_METRIC_GAUGE, "aggd_database_up", NULL,
                               "1 when the last PostgreSQL probe succeeded.");
    s->schema_version = agg_metrics_add(s->metrics, AGG_METRIC_GAUGE, "aggd_schema_version",
                                        NULL, "Schema version seen in the database.");
    s->http_ready_fail = agg_metrics_add(s->metrics, AGG_METRIC_COUNTER,
                                         "aggd_readyz_not_ready_total", NULL,
                                         "Readiness checks answered not ready.");
    if (info == NULL || s->db_up == NULL || s->schema_version == NULL ||
        s->http_ready_fail == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    agg_metric_set(info, 1);
    agg_metric_set(s->schema_version, -1);
    return AGG_OK;
}

/* Descriptors kept for all but client connections: the database pool (on top of
 * this), spool and archive files, listeners, the journal. */
#define FD_RESERVE 64

/* listen.max_connections, lowered so that one listener's connections leave room below
 * the descriptor limit for everything else. */
static size_t connection_cap(const struct agg_config *cfg)
{
    int64_t cap = cfg->listen.max_connections;
    int64_t room = cap;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        room = (int64_t)rl.rlim_cur - FD_RESERVE - cfg->database.pool_size -
               cfg->database.pool_overflow;
    if (room < 1)
        room = 1;
    if (room < cap) {
        AGG_LOG_WARN("server",
                     "listen.max_connections lowered from %lld to %lld: the limit on open "
                     "files is %lld",
                     (long long)cap, (long long)room, (long long)rl.rlim_cur);
        cap = room;
    }
    return (size_t)cap;
}

/* Before the loop runs: taking the systemd socket and evhttp's bind resolve
 * listen.http with getaddrinfo, which may block. */
static struct agg_http_limits http_limits(const struct server *s)
{
    return (struct agg_http_limits){
        .header_timeout_ms = s->cfg->listen.http_header_timeout_ms,
        .body_timeout_ms = s->cfg->listen.http_body_timeout_ms,
        .max_connections = s->max_conns,
        .inflight_body_bytes = (size_t)s->cfg->listen.http_inflight_body_bytes,
    };
}

static int start_http(struct server *s, struct agg_err *err)
{
    const struct agg_http_limits limits = http_limits(s);

    const char *plain = s->cfg->listen.http, *tls = s->cfg->listen.https;

    if (plain[0] == '\0' && tls[0] == '\0')
        return AGG_OK;
    s->http = agg_http_new(s->base, plain,
                           plain[0] != '\0' ? agg_sockets_take(&s->sockets, plain, SOCK_STREAM)
                                            : -1,
                           &limits, err);
    if (s->http == NULL)
        return err != NULL ? err->code : AGG_ERR;
    if (tls[0] != '\0' &&
        agg_http_listen_tls(s->http, tls, agg_sockets_take(&s->sockets, tls, SOCK_STREAM),
                            s->tls, err) != AGG_OK)
        return err != NULL ? err->code : AGG_ERR;
    if (agg_http_route(s->http, EVHTTP_REQ_GET, "/healthz", on_healthz, s) != AGG_OK ||
        agg_http_route(s->http, EVHTTP_REQ_GET, "/readyz", on_readyz, s) != AGG_OK ||
        agg_http_route(s->http, EVHTTP_REQ_GET, "/metrics", on_metrics, s) != AGG_OK)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    if (plain[0] != '\0')
        AGG_LOG_INFO("server", "HTTP listening on %s", plain);
    if (tls[0] != '\0')
        AGG_LOG_INFO("server", "HTTPS listening on %s", tls);
    return AGG_OK;
}

/* The TLS context of listen.syslog_tls and listen.https, when either is on. */
static int start_tls(struct server *s, struct agg_err *err)
{
    if (s->cfg->listen.syslog_tls[0] == '\0' && s->cfg->listen.https[0] == '\0')
        return AGG_OK;
    s->tls = agg_tls_new(&s->cfg->tls, err);
    return s->tls != NULL ? AGG_OK : AGG_EINVAL;
}

/* SIGHUP: a new context when tls.* or the files changed; the old one stays on error. */
static void reload_tls(struct server *s)
{
    struct agg_err err = {0};
    bool changed;

    if (s->tls == NULL)
        return;
    if (agg_tls_reload(s->tls, &s->cfg->tls, &changed, &err) != AGG_OK)
        AGG_LOG_ERR("server", "TLS certificate reload refused, the running one stays: %s",
                    err.msg);
    else if (changed)
        AGG_LOG_INFO("server", "TLS certificate reloaded from \"%s\"", s->cfg->tls.cert_file);
}

static double pool_in_use(void *arg)
{
    struct st_pool_stats st;

    st_pool_stats(arg, &st);
    return st.in_use;
}

static double pool_idle(void *arg)
{
    struct st_pool_stats st;

    st_pool_stats(arg, &st);
    return st.idle;
}

static int open_spool(struct server *s, struct agg_err *err)
{
    const struct agg_config *cfg = s->cfg;
    struct st_spool_opts opts = {.dir = cfg->spool.dir,
                                 .max_bytes = cfg->spool.max_bytes,
                                 .segment_bytes = cfg->spool.segment_bytes,
                                 .fsync = cfg->spool.fsync};
    struct st_spool_report rep = {0};

    s->spool = st_spool_open(s->base, &opts, &rep, err);
    if (s->spool == NULL)
        return AGG_ERR;
    AGG_LOG_INFO("spool", "%s: %d segments, %llu records, positions %llu..%llu",
                 cfg->spool.dir, rep.segments, (unsigned long long)rep.records,
                 (unsigned long long)rep.start, (unsigned long long)rep.end);
    if (rep.damaged > 0 || rep.cut_bytes > 0)
        AGG_LOG_WARN("spool", "recovered from damage: %llu bytes of a torn tail cut, %llu "
                              "damaged bytes skipped: %s",
                     (unsigned long long)rep.cut_bytes, (unsigned long long)rep.skipped_bytes,
                     rep.detail);
    return AGG_OK;
}

/* The ingest listeners, in the order of server.listeners. */
static const struct {
    enum agg_listen_kind kind;
    int socktype;
    const char *what;
} listen_kinds[] = {
    {AGG_LISTEN_SYSLOG_UDP, SOCK_DGRAM, "syslog over UDP"},
    {AGG_LISTEN_SYSLOG_TCP, SOCK_STREAM, "syslog over TCP"},
    {AGG_LISTEN_JSON_TCP, SOCK_STREAM, "JSON lines over TCP"},
    {AGG_LISTEN_SYSLOG_TLS, SOCK_STREAM, "syslog over TLS"},
};

static const char *listen_addr(const struct agg_config *cfg, size_t i)
{
    const char *addr[] = {cfg->listen.syslog_udp, cfg->listen.syslog_tcp, cfg->listen.json_tcp,
                          cfg->listen.syslog_tls};

    return addr[i];
}

/* Before the loop runs: takes the systemd socket of each listen.* address or resolves
 * it, so that start_listeners() has nothing left that blocks; closes the passed sockets
 * no key asked for. */
static int prepare_listeners(struct server *s, struct agg_err *err)
{
    for (size_t i = 0; i < sizeof(listen_kinds) / sizeof(listen_kinds[0]); i++) {
        const char *addr = listen_addr(s->cfg, i);

        if (addr[0] == '\0')
            continue;
        s->listen_fd[i] = agg_sockets_take(&s->sockets, addr, listen_kinds[i].socktype);
        if (s->listen_fd[i] < 0 &&
            agg_sockets_resolve(addr, listen_kinds[i].socktype, &s->listen_ai[i], err) != AGG_OK)
            return AGG_EINVAL;
    }
    agg_sockets_clear(&s->sockets); /* what no listen.* key asked for */
    return AGG_OK;
}

/* Frees what prepare_listeners() left and no listener took. */
static void clear_listen_addrs(struct server *s)
{
    for (size_t i = 0; i < sizeof(s->listen_ai) / sizeof(s->listen_ai[0]); i++) {
        if (s->listen_ai[i] != NULL)
            freeaddrinfo(s->listen_ai[i]);
        if (s->listen_fd[i] >= 0)
            close(s->listen_fd[i]);
        s->listen_ai[i] = NULL;
        s->listen_fd[i] = -1;
    }
}

/* The listeners, once the spool's old records are queued again (from the loop, unless
 * the spool had nothing to replay). */
static void start_listeners(void *arg)
{
    struct server *s = arg;
    const struct agg_config *cfg = s->cfg;
    const struct agg_listener_opts opts = {
        .max_message_bytes = cfg->ingest.max_message_bytes,
        .max_connections = (int64_t)s->max_conns,
        .idle_timeout_seconds = cfg->listen.idle_timeout_seconds,
        .syslog_3164_timezone = cfg->listen.syslog_3164_timezone,
        .udp_rcvbuf = cfg->listen.udp_rcvbuf,
        .tls = s->tls,
    };
    struct agg_err err = {0};

    for (size_t i = 0; i < sizeof(listen_kinds) / sizeof(listen_kinds[0]); i++) {
        const char *addr = listen_addr(s->cfg, i);
        int fd = s->listen_fd[i];

        if (addr[0] == '\0')
            continue;
        s->listen_fd[i] = -1; /* the listener owns it, even on error */
        s->listeners[i] = agg_listener_new(s->base, listen_kinds[i].kind, addr,
                                           s->listen_ai[i], fd, &opts, s->pipeline,
                                           s->metrics, &err);
        if (s->listeners[i] == NULL) {
            agg_err_set(&s->fatal, err.code, "%s", err.msg);
            event_base_loopbreak(s->base);
            break;
        }
        AGG_LOG_INFO("server", "%s listening on %s", listen_kinds[i].what, addr);
    }
    clear_listen_addrs(s);
}

/* The spool, the pool, the pipeline with its writers, the job runner; the listeners
 * follow once the spool is replayed. */
static int start_ingest(struct server *s, struct agg_err *err)
{
    const struct agg_config *cfg = s->cfg;
    const struct st_pipeline_opts pipeline_opts = {
        .batch = cfg->batch,
        .writer = cfg->writer,
        .accept_past_months = cfg->partitions.accept_past_months,
    };
    const struct agg_filejobs_opts filejobs_opts = {
        .uploads_dir = cfg->uploads.dir,
        .accept_past_months = cfg->partitions.accept_past_months,
        .max_event_bytes = cfg->ingest.max_message_bytes,
        .syslog_3164_timezone = cfg->listen.syslog_3164_timezone,
    };
    const struct rl_engine_opts engine_opts = {
        .database_url = cfg->database.url,
        .eval_interval_ms = cfg->alerts.eval_interval_ms,
        .notify = &cfg->notify,
    };

    if (open_spool(s, err) != AGG_OK)
        return AGG_ERR;
    s->pool = st_pool_new(cfg->database.url, (int)cfg->database.pool_size,
                          (int)cfg->database.pool_overflow, (int)cfg->database.recycle_seconds,
                          err);
    if (s->pool == NULL ||
        agg_metrics_add_fn(s->metrics, "aggd_pool_connections", "state=\"in_use\"",
                           "PostgreSQL connections of the pool.", pool_in_use, s->pool) != AGG_OK ||
        agg_metrics_add_fn(s->metrics, "aggd_pool_connections", "state=\"idle\"",
                           "PostgreSQL connections of the pool.", pool_idle, s->pool) != AGG_OK)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    s->pipeline = st_pipeline_new(s->base, &pipeline_opts, s->pool, s->spool, s->metrics, err);
    if (s->pipeline == NULL)
        return AGG_ERR;
    s->jobs = st_jobs_new(s->base, s->pool, 2, err);
    if (s->jobs == NULL)
        return AGG_ERR;
    s->sessions = api_sessions_new(s->jobs, err);
    if (s->sessions == NULL)
        return AGG_ENOMEM;
    if (s->http != NULL) {
        struct api_options api_opts = {.token_ttl_days = (int)cfg->auth.token_ttl_days,
                                       .secrets_key_file = cfg->secrets.key_file,
                                       .uploads_dir = cfg->uploads.dir,
                                       .uploads_max_bytes = cfg->uploads.max_bytes};

        s->ingest_http = agg_http_ingest_new(s->http, &cfg->ingest, s->pipeline, s->sessions, err);
        if (s->ingest_http == NULL)
            return AGG_ERR;
        s->api = api_new(s->base, s->http, &api_opts, s->pool, s->sessions, s->pipeline, err);
        if (s->api == NULL)
            return AGG_ERR;
        if (cfg->ingest.http_auth == AGG_HTTP_AUTH_NONE &&
            strncmp(cfg->listen.http, "127.", 4) != 0 && strncmp(cfg->listen.http, "[::1]", 5) != 0 &&
            strncmp(cfg->listen.http, "localhost:", 10) != 0)
            AGG_LOG_WARN("server", "ingest.http_auth = none on %s: anyone who reaches it can "
                                   "write logs", cfg->listen.http);
    }
    s->engine = rl_engine_new(s->base, &engine_opts, s->pool, s->pipeline, s->metrics, err);
    if (s->engine == NULL)
        return AGG_ERR;
    s->filejobs = agg_filejobs_new(s->base, s->pool, &filejobs_opts, err);
    if (s->filejobs == NULL)
        return AGG_ERR;
    if (prepare_listeners(s, err) != AGG_OK)
        return AGG_EINVAL;
    st_pipeline_replay(s->pipeline, start_listeners, s);
    return AGG_OK;
}

/* Stops taking events, lets the writers land what was taken, and frees ingest. The
 * order matters: pending token checks may still ingest (jobs first), pending spool
 * syncs answer HTTP requests and may wait on the pipeline (spool before pipeline),
 * and the pipeline's last waiters answer through the HTTP layer (pipeline before
 * it). */
static void stop_ingest(struct server *s)
{
    for (size_t i = 0; i < sizeof(s->listeners) / sizeof(s->listeners[0]); i++) {
        agg_listener_free(s->listeners[i]); /* delivers what connections had read */
        s->listeners[i] = NULL;
    }
    agg_filejobs_free(s->filejobs); /* a job in progress resumes at the next start */
    s->filejobs = NULL;
    api_free(s->api); /* before the pipeline it taps and the sessions it uses */
    s->api = NULL;
    agg_http_ingest_stop(s->ingest_http); /* answers requests still waiting for room */
    rl_engine_free(s->engine); /* untaps the pipeline; its queries finish first */
    s->engine = NULL;
    st_jobs_free(s->jobs);
    s->jobs = NULL;
    st_pipeline_shutdown(s->pipeline);
    st_spool_free(s->spool);
    s->spool = NULL;
    st_pipeline_free(s->pipeline);
    s->pipeline = NULL;
    agg_http_ingest_free(s->ingest_http);
    s->ingest_http = NULL;
    api_sessions_free(s->sessions);
    s->sessions = NULL;
}


static int start_signals(struct server *s, struct agg_err *err)
{
    s->sig_term = evsignal_new(s->base, SIGTERM, on_stop_signal, s);
    s->sig_int = evsignal_new(s->base, SIGINT, on_stop_signal, s);
    s->sig_hup = evsignal_new(s->base, SIGHUP, on_hup, s);
    if (s->sig_term == NULL || s->sig_int == NULL || s->sig_hup == NULL ||
        evsignal_add(s->sig_term, NULL) != 0 || evsignal_add(s->sig_int, NULL) != 0 ||
        evsignal_add(s->sig_hup, NULL) != 0)
        return agg_err_set(err, AGG_ERR, "could not install signal handlers");
    return AGG_OK;
}

static int start_maint(struct server *s, struct agg_err *err)
{
    s->maint = st_maint_new(s->base, s->jobs, s->metrics, &s->cfg->partitions, &s->cfg->archive,
                            err);
    return s->maint != NULL ? AGG_OK : AGG_ENOMEM;
}

static void server_clear(struct server *s)
{
    stop_ingest(s);
    clear_listen_addrs(s);
    st_maint_free(s->maint); /* after stop_ingest freed the job threads */
    s->maint = NULL;
    st_pool_free(s->pool);
    st_monitor_free(s->monitor);
    agg_http_free(s->http);
    agg_tls_free(s->tls); /* after the listeners that borrow it */
    if (s->sig_term != NULL)
        event_free(s->sig_term);
    if (s->sig_int != NULL)
        event_free(s->sig_int);
    if (s->sig_hup != NULL)
        event_free(s->sig_hup);
    agg_metrics_free(s->metrics);
    if (s->base != NULL)
        event_base_free(s->base);
}

int agg_server_run(struct agg_config *cfg, const struct agg_serve_opts *opts,
                   struct agg_err *err)
{
    struct server s = {.cfg = cfg, .opts = opts, .listen_fd = {-1, -1, -1, -1}};
    int rc;

    signal(SIGPIPE, SIG_IGN);
    if (agg_sockets_init(&s.sockets, opts->listen_pid, opts->listen_fds, getpid(), err) !=
        AGG_OK) {
        rc = AGG_EINVAL;
        goto out;
    }
    /* writer and job threads wake the loop with event_active() */
    if (evthread_use_pthreads() != 0) {
        rc = agg_err_set(err, AGG_ERR, "could not enable libevent threading");
        goto out;
    }
    s.base = event_base_new();
    if (s.base == NULL) {
        rc = agg_err_set(err, AGG_ERR, "could not create the event loop");
        goto out;
    }
    s.metrics = agg_metrics_new(err);
    if (s.metrics == NULL || register_metrics(&s, err) != AGG_OK) {
        rc = AGG_ENOMEM;
        goto out;
    }
    s.max_conns = connection_cap(cfg);
    agg_log_route_libevent();
    if ((rc = start_signals(&s, err)) != AGG_OK || (rc = start_tls(&s, err)) != AGG_OK ||
        (rc = start_http(&s, err)) != AGG_OK ||
        (rc = start_ingest(&s, err)) != AGG_OK || (rc = start_maint(&s, err)) != AGG_OK)
        goto out;
    s.monitor = st_monitor_new(s.base, NULL, cfg->database.url, opts->health_interval_ms, 5000,
                               on_db_change, &s, err);
    if (s.monitor == NULL) {
        rc = AGG_ENOMEM;
        goto out;
    }
    if (agg_sd_notify(opts->notify_socket, "READY=1\nSTATUS=serving", err) != AGG_OK)
        AGG_LOG_WARN("server", "%s", err->msg);
    AGG_LOG_INFO("server", "aggd %s ready", AGG_VERSION);
    if (event_base_dispatch(s.base) < 0) {
        rc = agg_err_set(err, AGG_ERR, "event loop failed");
        goto out;
    }
    rc = AGG_OK;
    if (s.fatal.code != AGG_OK) {
        rc = agg_err_set(err, s.fatal.code, "%s", s.fatal.msg);
        agg_sd_notify(opts->notify_socket, "STOPPING=1", NULL);
    }

out:
    agg_sockets_clear(&s.sockets);
    server_clear(&s);
    return rc;
}
