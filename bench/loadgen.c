/*
 * bench/loadgen.c — aggd_loadgen: deterministic log events over syslog TCP or HTTP
 *                   NDJSON, or as COPY rows for the psql baseline.
 *
 * Place: benchmark driver (bench/run.sh); not part of the daemon.
 * Threads: main thread parses the command line; the syslog-tcp and http modes run
 *          one worker thread per connection, each with its own generator and
 *          buffers; the only shared state is the http batch counter (atomic) and
 *          the per-batch ack times (one slot per batch, written by the worker that
 *          took the batch, read by main after the joins).
 * Ownership: every buffer belongs to one worker (or to main in copy mode).
 * Traps: event n is a pure function of (seed, n), so every mode and every run with
 *        the same seed produces the same rows whatever the connection count; only
 *        the timestamp (the send time, UTC µs) differs. correlation_id is
 *        "lg-<seed>-<n>" so a run can be checked for loss and duplicates.
 *        The generator runs on the same (2-core) machine as aggd and PostgreSQL:
 *        it must stay cheap, hence the hand-rolled formatting.
 * Not here: starting PostgreSQL or aggd, measuring commit time (bench/run.sh).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS          256
#define SYSLOG_FLUSH_BYTES (256 * 1024)  /* one write() per this much framed syslog */
#define HTTP_MAX_RESPONSE  (1024 * 1024) /* larger answers are a protocol error */
#define HTTP_MAX_RETRIES   100           /* 503s in a row for one batch before giving up */

enum mode {
    MODE_SYSLOG_TCP = 0,
    MODE_HTTP,
    MODE_COPY,
};

enum shape {
    SHAPE_JSON = 0, /* extra_data as aggd stores an HTTP/JSON event */
    SHAPE_SYSLOG,   /* extra_data as aggd stores an RFC 5424 event */
};

struct options {
    enum mode mode;
    enum shape shape;
    uint64_t count;
    const char *host;
    const char *port;
    double rate; /* events per second, all connections together; 0: unpaced */
    int conns;
    uint64_t seed;
    uint64_t batch;
    const char *out;
    double retry_after_s; /* http: pause after a 503; < 0: the server's Retry-After */
};

/* ---- growable byte buffer ------------------------------------------------ */

struct buf {
    char *p;
    size_t len, cap;
};

static void die_oom(void)
{
    fputs("aggd_loadgen: out of memory\n", stderr);
    exit(1);
}

static void buf_reserve(struct buf *b, size_t more)
{
    size_t need = b->len + more + 1, cap = b->cap ? b->cap : 256;
    char *p;

    if (need <= b->cap)
        return;
    while (cap < need)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL)
        die_oom();
    b->p = p;
    b->cap = cap;
}

static void buf_add(struct buf *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void buf_adds(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_addc(struct buf *b, char c)
{
    buf_reserve(b, 1);
    b->p[b->len++] = c;
}

static void buf_addu(struct buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    buf_add(b, tmp + i, sizeof(tmp) - i);
}

__attribute__((format(printf, 2, 3))) static void buf_addf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (b->p == NULL || (size_t)n >= b->cap - b->len) {
        buf_reserve(b, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

static void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- escaping ------------------------------------------------------------ */

/* JSON string body: quote, backslash and control characters escaped. */
static void esc_json(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const char *end = s + n;

    buf_reserve(b, n + 16);
    while (s < end) {
        const char *run = s;

        while (s < end && *s != '"' && *s != '\\' && (unsigned char)*s >= 0x20)
            s++;
        buf_add(b, run, (size_t)(s - run));
        if (s == end)
            break;
        switch (*s) {
        case '"':
            buf_add(b, "\\\"", 2);
            break;
        case '\\':
            buf_add(b, "\\\\", 2);
            break;
        case '\n':
            buf_add(b, "\\n", 2);
            break;
        case '\t':
            buf_add(b, "\\t", 2);
            break;
        case '\r':
            buf_add(b, "\\r", 2);
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[(unsigned char)*s >> 4], hex[*s & 15]};

            buf_add(b, u, sizeof(u));
        }
        }
        s++;
    }
}

static void json_str(struct buf *b, const char *s, size_t n)
{
    buf_addc(b, '"');
    esc_json(b, s, n);
    buf_addc(b, '"');
}

static void json_key(struct buf *b, bool *first, const char *key)
{
    if (!*first)
        buf_addc(b, ',');
    *first = false;
    buf_addc(b, '"');
    buf_adds(b, key);
    buf_add(b, "\":", 2);
}

/* RFC 5424 PARAM-VALUE: '"', '\' and ']' escaped with a backslash. */
static void esc_sd(struct buf *b, const char *s, size_t n)
{
    const char *end = s + n;

    buf_reserve(b, n + 8);
    while (s < end) {
        const char *run = s;

        while (s < end && *s != '"' && *s != '\\' && *s != ']')
            s++;
        buf_add(b, run, (size_t)(s - run));
        if (s == end)
            break;
        buf_addc(b, '\\');
        buf_addc(b, *s++);
    }
}

/* PostgreSQL COPY text field: backslash, tab, LF and CR escaped. */
static void esc_copy(struct buf *b, const char *s, size_t n)
{
    const char *end = s + n;

    buf_reserve(b, n + 16);
    while (s < end) {
        const char *run = s;

        while (s < end && *s != '\\' && *s != '\t' && *s != '\n' && *s != '\r')
            s++;
        buf_add(b, run, (size_t)(s - run));
        if (s == end)
            break;
        buf_addc(b, '\\');
        buf_addc(b, *s == '\\' ? '\\' : *s == '\t' ? 't' : *s == '\n' ? 'n' : 'r');
        s++;
    }
}

/* ---- time ---------------------------------------------------------------- */

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts;

    if (s <= 0)
        return;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Formats wall-clock timestamps; caches the seconds part. */
struct clock_fmt {
    time_t sec;
    char head[24]; /* "YYYY-MM-DDTHH:MM:SS" */
};

/* Appends the current UTC time with µs: ISO 8601 "…T…Z" when <iso>, else the COPY
 * form "YYYY-MM-DD HH:MM:SS.ffffff" (timestamp without time zone). */
static void add_now(struct buf *b, struct clock_fmt *c, bool iso)
{
    struct timespec ts;
    char tail[8];
    long us;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != c->sec || c->head[0] == '\0') {
        struct tm tm;

        gmtime_r(&ts.tv_sec, &tm);
        strftime(c->head, sizeof(c->head), "%Y-%m-%dT%H:%M:%S", &tm);
        c->sec = ts.tv_sec;
    }
    buf_add(b, c->head, 10);
    buf_addc(b, iso ? 'T' : ' ');
    buf_add(b, c->head + 11, 8);
    us = ts.tv_nsec / 1000;
    tail[0] = '.';
    for (int i = 6; i >= 1; i--) {
        tail[i] = (char)('0' + us % 10);
        us /= 10;
    }
    tail[7] = 'Z';
    buf_add(b, tail, iso ? 8 : 7);
}

/* ---- deterministic event generation ------------------------------------- */

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static uint32_t rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

#define PICK(r, arr) ((arr)[rng_below((r), (uint32_t)(sizeof(arr) / sizeof((arr)[0])))])

enum level { LV_DEBUG = 0, LV_INFO, LV_WARNING, LV_ERROR, LV_CRITICAL };

static const char *const level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};
static const int level_severity[] = {7, 6, 4, 3, 2};

static const char *const services[] = {
    "api-gateway",    "auth-service", "billing",           "checkout",       "inventory",
    "notification",   "search",       "user-service",      "payment-worker", "scheduler",
    "report-builder", "etl-runner",   "pipeline-exec",     "email-sender",   "webhook-dispatch",
    "cache-warmer",   "audit-log",    "metrics-collector", "file-uploader",  "session-manager",
};
static const char *const hosts[] = {"web-01", "web-02",     "web-03",  "web-04",
                                    "api-01", "api-02",     "wrk-01",  "wrk-02",
                                    "wrk-03", "db-proxy-1", "batch-1", "edge-eu-1"};
static const char *const modules[] = {
    "app.api.handlers", "app.billing.invoice", "app.auth.tokens",    "app.db.pool",
    "app.search.index", "app.pipeline.runner", "app.notify.email",   "app.cache.redis",
    "app.storage.s3",   "app.users.profile",   "app.orders.service", "app.jobs.scheduler",
};
static const char *const functions[] = {
    "handle_request", "create_invoice", "refresh_token", "acquire",    "reindex",
    "run_step",       "send",           "get_or_load",   "put_object", "update_profile",
    "place_order",    "tick",           "validate",      "serialize",  "flush",
};
static const char *const users[] = {"alice", "bob",  "carol", "dave",    "erin", "frank", "grace",
                                    "heidi", "ivan", "judy",  "mallory", "zoë",  "josé",  "søren"};
static const char *const tenants[] = {"acme",  "globex", "initech", "umbrella",
                                      "hooli", "stark",  "wayne",   "tyrell"};
static const char *const methods[] = {"GET",  "GET",  "GET",  "GET", "GET",    "GET",
                                      "POST", "POST", "POST", "PUT", "DELETE", "PATCH"};
static const char *const resources[] = {"orders",   "users",    "invoices", "pipelines", "reports",
                                        "sessions", "products", "alerts",   "files",     "events"};
static const char *const tables[] = {"orders",      "users",    "invoices",  "pipeline_runs",
                                     "system_logs", "sessions", "line_items"};
static const char *const envs[] = {"prod", "prod", "prod", "staging", "canary"};
static const char *const regions[] = {"eu-west-1", "eu-central-1", "us-east-1", "us-west-2",
                                      "ap-southeast-1"};
static const char *const caches[] = {"hit", "miss", "stale", "bypass"};
static const char *const pad_keys[] = {"tenant", "shard", "attempt", "queue",  "region",
                                       "span",   "node",  "trace",   "bytes",  "rows",
                                       "status", "phase", "worker",  "lag_ms", "pool"};
static const char *const pad_words[] = {"ok",      "pending", "retrying", "done",      "primary",
                                        "replica", "warm",    "cold",     "fast-path", "slow-path",
                                        "batch",   "stream",  "default",  "fallback"};
static const char *const exc_py[] = {"ValueError",
                                     "KeyError",
                                     "TimeoutError",
                                     "ConnectionResetError",
                                     "psycopg2.OperationalError",
                                     "PermissionError",
                                     "RuntimeError"};
static const char *const exc_java[] = {
    "java.lang.NullPointerException", "java.io.IOException", "java.lang.IllegalStateException",
    "java.util.concurrent.TimeoutException", "org.postgresql.util.PSQLException"};
static const char *const exc_msgs[] = {
    "connection to server at \"10.0.3.17\", port 5432 failed: timeout expired",
    "'customer_id' not found in payload",
    "read timed out after 30000 ms",
    "Connection reset by peer",
    "invalid literal for int() with base 10: 'N/A'",
    "deadlock detected while waiting for ShareLock on transaction 884213",
    "pool exhausted: 40 of 40 connections in use",
    "cannot serialize object of type Decimal",
};
static const char *const code_lines[] = {
    "result = self.gateway.charge(amount, currency=currency)",
    "row = cursor.fetchone()",
    "return self._session.request(method, url, timeout=self.timeout)",
    "payload = json.loads(body)",
    "customer = payload[\"customer_id\"]",
    "conn = self.pool.getconn(key)",
    "self._handle(event)",
    "value = int(fields[3])",
};

struct event {
    uint64_t n;
    enum level level;
    const char *logger;
    const char *host;
    int procid;
    bool has_src;
    const char *module, *function;
    int line;
    char corr[48];
    bool has_req;
    char request_id[40];
    const char *method;
    char path[96];
    char ip[20];
    int duration_ms;
    bool has_mem;
    char mem[16];
    bool has_exc;
    const char *exc_type;
    bool has_extra;
    const char *env, *region, *tenant, *cache;
    int retry;
    struct buf msg, exc_msg, stack;
};

static void add_pad(struct rng *r, struct buf *b)
{
    buf_addc(b, ' ');
    buf_adds(b, PICK(r, pad_keys));
    buf_addc(b, '=');
    if (rng_below(r, 2) == 0)
        buf_adds(b, PICK(r, pad_words));
    else
        buf_addu(b, rng_below(r, 100000));
}

static void gen_message(struct rng *r, struct event *e)
{
    struct buf *m = &e->msg;
    uint32_t u1 = rng_below(r, 241), u2 = rng_below(r, 241);
    uint32_t target = 60 + (u1 < u2 ? u1 : u2); /* 60-300 bytes, mostly short */
    const char *res = PICK(r, resources);
    size_t base;

    m->len = 0;
    switch (rng_below(r, 16)) {
    case 0:
        buf_addf(m, "user \"%s\" logged in from %u.%u.%u.%u using password+totp", PICK(r, users),
                 10u, rng_below(r, 255), rng_below(r, 255), rng_below(r, 255));
        break;
    case 1:
        buf_addf(m, "processed batch %u of %u for tenant %s in %u ms", rng_below(r, 500), 500u,
                 PICK(r, tenants), rng_below(r, 4000));
        break;
    case 2:
        buf_addf(m, "cache %s for key \"%s:%u\"; loading from upstream", PICK(r, caches), res,
                 rng_below(r, 1000000));
        break;
    case 3:
        buf_addf(m, "connection pool stats: %u active, %u idle, %u waiting (max wait %u ms)",
                 rng_below(r, 40), rng_below(r, 20), rng_below(r, 8), rng_below(r, 900));
        break;
    case 4:
        buf_addf(m, "%s /api/v1/%s/%u completed with status %u in %u ms", PICK(r, methods), res,
                 rng_below(r, 99999), rng_below(r, 10) < 8 ? 200u : 404u, rng_below(r, 2500));
        break;
    case 5:
        buf_addf(m, "query on %s took %u ms (rows=%u, plan=%s)", PICK(r, tables),
                 rng_below(r, 3000), rng_below(r, 50000),
                 rng_below(r, 2) ? "Index Scan" : "Seq Scan");
        break;
    case 6:
        buf_addf(m, "scheduled job '%s-%s' started, next run at +%us", PICK(r, tenants), res,
                 rng_below(r, 3600));
        break;
    case 7:
        buf_addf(m, "sent notification to %s@example.com (template=%s_v%u)", PICK(r, users), res,
                 rng_below(r, 5));
        break;
    case 8:
        buf_addf(m, "retrying upstream call to payments-api after %u ms (attempt %u/5)",
                 rng_below(r, 2000), 1 + rng_below(r, 5));
        break;
    case 9:
        buf_addf(m, "uploaded C:\\exports\\%s\\%s_%u.csv (%u bytes)", PICK(r, tenants), res,
                 rng_below(r, 9999), rng_below(r, 50000000));
        break;
    case 10:
        buf_addf(m, "pipeline run %u step \"%s\" finished: %u records in, %u out",
                 rng_below(r, 100000), PICK(r, functions), rng_below(r, 90000),
                 rng_below(r, 90000));
        break;
    case 11:
        buf_addf(m, "token refreshed for session %08x; expires in %u s", (unsigned)rng_next(r),
                 rng_below(r, 86400));
        break;
    case 12:
        buf_addf(m, "slow request detected:\tpath=/api/v1/%s\tthreshold=500ms", res);
        break;
    case 13:
        buf_addf(m, "GC pause %u.%03u ms, heap %u MB → %u MB", rng_below(r, 200),
                 rng_below(r, 1000), 200 + rng_below(r, 800), 100 + rng_below(r, 300));
        break;
    case 14:
        buf_addf(m, "validation failed for %s: field 'email' must match [^@]+@[^@]+ (got \"%s\")",
                 res, PICK(r, users));
        break;
    default:
        buf_addf(m, "health check of %s on %s: %s", PICK(r, services), PICK(r, hosts),
                 rng_below(r, 20) ? "healthy" : "degraded");
        break;
    }
    base = m->len;
    while (m->len < target)
        add_pad(r, m);
    /* the padding is ASCII, so cutting inside it keeps valid UTF-8 */
    if (m->len > target && base < target)
        m->len = target;
    if (m->p[m->len - 1] == ' ')
        m->p[m->len - 1] = '.';
}

static void gen_stack(struct rng *r, struct event *e)
{
    uint32_t target = 500 + rng_below(r, 1001);
    bool java = rng_below(r, 2) == 0;
    struct buf *s = &e->stack;

    s->len = 0;
    e->exc_msg.len = 0;
    buf_adds(&e->exc_msg, PICK(r, exc_msgs));
    if (java) {
        e->exc_type = PICK(r, exc_java);
        buf_addf(s, "%s: %.*s\n", e->exc_type, (int)e->exc_msg.len, e->exc_msg.p);
        while (s->len < target)
            buf_addf(s, "\tat com.example.%s.%s(%s.java:%u)\n", PICK(r, resources),
                     PICK(r, functions), PICK(r, resources), 1 + rng_below(r, 900));
        buf_addf(s, "\t... %u more", rng_below(r, 40));
    } else {
        e->exc_type = PICK(r, exc_py);
        buf_adds(s, "Traceback (most recent call last):\n");
        while (s->len + 60 < target)
            buf_addf(s, "  File \"/srv/app/%s/%s.py\", line %u, in %s\n    %s\n",
                     PICK(r, resources), PICK(r, functions), 1 + rng_below(r, 1500),
                     PICK(r, functions), PICK(r, code_lines));
        buf_addf(s, "%s: %.*s", e->exc_type, (int)e->exc_msg.len, e->exc_msg.p);
    }
}

/* Event <n> of run <seed>: a pure function of both. */
static void gen_event(uint64_t seed, uint64_t n, struct event *e)
{
    struct rng r = {seed * 0x100000001B3ULL ^ (n * 0x9E3779B97F4A7C15ULL) ^ 0x5DEECE66DULL};
    uint32_t lv = rng_below(&r, 1000);
    uint32_t svc;

    rng_next(&r);
    e->n = n;
    e->level = lv < 700   ? LV_INFO
               : lv < 850 ? LV_DEBUG
               : lv < 950 ? LV_WARNING
               : lv < 990 ? LV_ERROR
                          : LV_CRITICAL;
    svc = rng_below(&r, (uint32_t)(sizeof(services) / sizeof(services[0])));
    e->logger = services[svc];
    e->procid = 1000 + (int)svc * 37;
    e->host = PICK(&r, hosts);
    snprintf(e->corr, sizeof(e->corr), "lg-%" PRIu64 "-%" PRIu64, seed, n);

    e->has_src = rng_below(&r, 100) < 60;
    if (e->has_src) {
        e->module = PICK(&r, modules);
        e->function = PICK(&r, functions);
        e->line = 1 + (int)rng_below(&r, 2000);
    }
    e->has_req = rng_below(&r, 100) < 30;
    if (e->has_req) {
        uint64_t a = rng_next(&r), b = rng_next(&r);

        snprintf(e->request_id, sizeof(e->request_id), "%08x-%04x-4%03x-%04x-%012" PRIx64,
                 (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xFFFF, (unsigned)a & 0xFFF,
                 0x8000 | ((unsigned)(b >> 48) & 0x3FFF), (uint64_t)(b & 0xFFFFFFFFFFFFULL));
        e->method = PICK(&r, methods);
        if (rng_below(&r, 3) == 0)
            snprintf(e->path, sizeof(e->path), "/api/v1/%s", PICK(&r, resources));
        else
            snprintf(e->path, sizeof(e->path), "/api/v1/%s/%u/%s", PICK(&r, resources),
                     rng_below(&r, 1000000), PICK(&r, resources));
        snprintf(e->ip, sizeof(e->ip), "10.%u.%u.%u", rng_below(&r, 256), rng_below(&r, 256),
                 1 + rng_below(&r, 254));
        /* mostly fast, a long tail */
        e->duration_ms = (int)(rng_below(&r, 10) < 8 ? rng_below(&r, 120) : rng_below(&r, 8000));
    }
    e->has_mem = rng_below(&r, 100) < 20;
    if (e->has_mem)
        snprintf(e->mem, sizeof(e->mem), "%u.%u", 50 + rng_below(&r, 2000), rng_below(&r, 10));
    /* ~2 % of all events: 40 % of ERROR and CRITICAL ones */
    e->has_exc = e->level >= LV_ERROR && rng_below(&r, 100) < 40;
    if (e->has_exc)
        gen_stack(&r, e);
    e->has_extra = rng_below(&r, 100) < 25;
    if (e->has_extra) {
        e->env = PICK(&r, envs);
        e->region = PICK(&r, regions);
        e->tenant = PICK(&r, tenants);
        e->cache = PICK(&r, caches);
        e->retry = (int)rng_below(&r, 4);
    }
    gen_message(&r, e);
}

static void event_free(struct event *e)
{
    buf_free(&e->msg);
    buf_free(&e->exc_msg);
    buf_free(&e->stack);
}

/* ---- encoders ------------------------------------------------------------ */

static void sd_param(struct buf *b, const char *name, const char *v, size_t n)
{
    buf_addc(b, ' ');
    buf_adds(b, name);
    buf_add(b, "=\"", 2);
    esc_sd(b, v, n);
    buf_addc(b, '"');
}

static void sd_params(struct buf *b, const char *name, const char *v)
{
    sd_param(b, name, v, strlen(v));
}

static void sd_paramu(struct buf *b, const char *name, uint64_t v)
{
    buf_addc(b, ' ');
    buf_adds(b, name);
    buf_add(b, "=\"", 2);
    buf_addu(b, v);
    buf_addc(b, '"');
}

/* One RFC 5424 message, framed "LEN SP MSG" (RFC 6587 octet counting). */
static void enc_syslog(struct buf *out, struct buf *tmp, const struct event *e, struct clock_fmt *c)
{
    tmp->len = 0;
    buf_addc(tmp, '<');
    buf_addu(tmp, 16 * 8 + (uint64_t)level_severity[e->level]); /* local0 */
    buf_add(tmp, ">1 ", 3);
    add_now(tmp, c, true);
    buf_addc(tmp, ' ');
    buf_adds(tmp, e->host);
    buf_addc(tmp, ' ');
    buf_adds(tmp, e->logger);
    buf_addc(tmp, ' ');
    buf_addu(tmp, (uint64_t)e->procid);
    buf_add(tmp, " - [req@32473", 13);
    sd_params(tmp, "correlation_id", e->corr);
    if (e->has_req) {
        sd_params(tmp, "request_id", e->request_id);
        sd_params(tmp, "request_method", e->method);
        sd_params(tmp, "request_path", e->path);
        sd_params(tmp, "request_ip", e->ip);
        sd_paramu(tmp, "duration_ms", (uint64_t)e->duration_ms);
    }
    buf_addc(tmp, ']');
    if (e->has_src || e->has_mem) {
        buf_add(tmp, "[src@32473", 10);
        if (e->has_src) {
            sd_params(tmp, "module", e->module);
            sd_params(tmp, "function_name", e->function);
            sd_paramu(tmp, "line_number", (uint64_t)e->line);
        }
        if (e->has_mem)
            sd_params(tmp, "memory_usage_mb", e->mem);
        buf_addc(tmp, ']');
    }
    if (e->has_exc) {
        buf_add(tmp, "[exception@32473", 16);
        sd_params(tmp, "exception_type", e->exc_type);
        sd_param(tmp, "exception_message", e->exc_msg.p, e->exc_msg.len);
        sd_param(tmp, "stack_trace", e->stack.p, e->stack.len);
        buf_addc(tmp, ']');
    }
    if (e->has_extra) {
        buf_add(tmp, "[meta@32473", 11);
        sd_params(tmp, "env", e->env);
        sd_params(tmp, "region", e->region);
        sd_params(tmp, "tenant", e->tenant);
        sd_params(tmp, "cache", e->cache);
        sd_paramu(tmp, "retry", (uint64_t)e->retry);
        buf_addc(tmp, ']');
    }
    buf_addc(tmp, ' ');
    buf_add(tmp, e->msg.p, e->msg.len);

    buf_addu(out, tmp->len);
    buf_addc(out, ' ');
    buf_add(out, tmp->p, tmp->len);
}

/* The unknown (extra_data) fields of the JSON form, without braces. */
static void json_extra_members(struct buf *b, const struct event *e, bool *first)
{
    json_key(b, first, "host");
    json_str(b, e->host, strlen(e->host));
    json_key(b, first, "env");
    json_str(b, e->env, strlen(e->env));
    json_key(b, first, "region");
    json_str(b, e->region, strlen(e->region));
    json_key(b, first, "attrs");
    buf_add(b, "{\"tenant\":", 10);
    json_str(b, e->tenant, strlen(e->tenant));
    buf_add(b, ",\"cache\":", 9);
    json_str(b, e->cache, strlen(e->cache));
    buf_add(b, ",\"retry\":", 9);
    buf_addu(b, (uint64_t)e->retry);
    buf_add(b, ",\"tags\":[\"bench\",\"loadgen\"]}", 28);
}

static void json_kv(struct buf *b, bool *first, const char *key, const char *v, size_t n)
{
    json_key(b, first, key);
    json_str(b, v, n);
}

static void json_kvs(struct buf *b, bool *first, const char *key, const char *v)
{
    json_kv(b, first, key, v, strlen(v));
}

/* One NDJSON line with the system_logs column names. */
static void enc_json(struct buf *b, const struct event *e, struct clock_fmt *c)
{
    bool first = true;

    buf_addc(b, '{');
    json_key(b, &first, "timestamp");
    buf_addc(b, '"');
    add_now(b, c, true);
    buf_addc(b, '"');
    json_kvs(b, &first, "level", level_names[e->level]);
    json_kvs(b, &first, "logger_name", e->logger);
    json_kv(b, &first, "message", e->msg.p, e->msg.len);
    json_kvs(b, &first, "correlation_id", e->corr);
    if (e->has_src) {
        json_kvs(b, &first, "module", e->module);
        json_kvs(b, &first, "function_name", e->function);
        json_key(b, &first, "line_number");
        buf_addu(b, (uint64_t)e->line);
    }
    if (e->has_req) {
        json_kvs(b, &first, "request_id", e->request_id);
        json_kvs(b, &first, "request_method", e->method);
        json_kvs(b, &first, "request_path", e->path);
        json_kvs(b, &first, "request_ip", e->ip);
        json_key(b, &first, "duration_ms");
        buf_addu(b, (uint64_t)e->duration_ms);
    }
    if (e->has_mem) {
        json_key(b, &first, "memory_usage_mb");
        buf_adds(b, e->mem);
    }
    if (e->has_exc) {
        json_kvs(b, &first, "exception_type", e->exc_type);
        json_kv(b, &first, "exception_message", e->exc_msg.p, e->exc_msg.len);
        json_kv(b, &first, "stack_trace", e->stack.p, e->stack.len);
    }
    if (e->has_extra)
        json_extra_members(b, e, &first);
    buf_add(b, "}\n", 2);
}

/* extra_data as aggd builds it from the RFC 5424 form: {"syslog":{…},"sd":{…}}. */
static void syslog_extra(struct buf *b, const struct event *e)
{
    bool first;

    buf_add(b, "{\"syslog\":{\"hostname\":", 22);
    json_str(b, e->host, strlen(e->host));
    buf_add(b, ",\"facility\":16,\"severity\":", 26);
    buf_addu(b, (uint64_t)level_severity[e->level]);
    buf_add(b, ",\"procid\":\"", 11);
    buf_addu(b, (uint64_t)e->procid);
    buf_add(b, "\"},\"sd\":{\"req@32473\":{", 22);
    first = true;
    json_kvs(b, &first, "correlation_id", e->corr);
    if (e->has_req) {
        char d[16];

        snprintf(d, sizeof(d), "%d", e->duration_ms);
        json_kvs(b, &first, "request_id", e->request_id);
        json_kvs(b, &first, "request_method", e->method);
        json_kvs(b, &first, "request_path", e->path);
        json_kvs(b, &first, "request_ip", e->ip);
        json_kvs(b, &first, "duration_ms", d);
    }
    buf_addc(b, '}');
    if (e->has_src || e->has_mem) {
        buf_add(b, ",\"src@32473\":{", 14);
        first = true;
        if (e->has_src) {
            char l[16];

            snprintf(l, sizeof(l), "%d", e->line);
            json_kvs(b, &first, "module", e->module);
            json_kvs(b, &first, "function_name", e->function);
            json_kvs(b, &first, "line_number", l);
        }
        if (e->has_mem)
            json_kvs(b, &first, "memory_usage_mb", e->mem);
        buf_addc(b, '}');
    }
    if (e->has_exc) {
        buf_add(b, ",\"exception@32473\":{", 20);
        first = true;
        json_kvs(b, &first, "exception_type", e->exc_type);
        json_kv(b, &first, "exception_message", e->exc_msg.p, e->exc_msg.len);
        json_kv(b, &first, "stack_trace", e->stack.p, e->stack.len);
        buf_addc(b, '}');
    }
    if (e->has_extra) {
        char rt[8];

        snprintf(rt, sizeof(rt), "%d", e->retry);
        buf_add(b, ",\"meta@32473\":{", 15);
        first = true;
        json_kvs(b, &first, "env", e->env);
        json_kvs(b, &first, "region", e->region);
        json_kvs(b, &first, "tenant", e->tenant);
        json_kvs(b, &first, "cache", e->cache);
        json_kvs(b, &first, "retry", rt);
        buf_addc(b, '}');
    }
    buf_add(b, "}}", 2);
}

static void copy_field(struct buf *b, bool has, const char *v, size_t n)
{
    if (has)
        esc_copy(b, v, n);
    else
        buf_add(b, "\\N", 2);
    buf_addc(b, '\t');
}

static void copy_fields(struct buf *b, bool has, const char *v)
{
    copy_field(b, has, v, has ? strlen(v) : 0);
}

static void copy_int(struct buf *b, bool has, uint64_t v)
{
    if (has)
        buf_addu(b, v);
    else
        buf_add(b, "\\N", 2);
    buf_addc(b, '\t');
}

/* One COPY text row in ST_COPY_COLUMNS order (store/copy.h). */
static void enc_copy(struct buf *b, struct buf *tmp, const struct event *e, enum shape shape,
                     struct clock_fmt *c)
{
    buf_adds(b, level_names[e->level]);
    buf_addc(b, '\t');
    copy_field(b, true, e->msg.p, e->msg.len);
    copy_fields(b, true, e->logger);
    copy_fields(b, e->has_src, e->module);
    copy_fields(b, e->has_src, e->function);
    copy_int(b, e->has_src, (uint64_t)e->line);
    copy_fields(b, true, e->corr);
    copy_int(b, false, 0); /* user_id: a foreign key to users, never set */
    copy_fields(b, e->has_req, e->request_id);
    copy_fields(b, e->has_req, e->method);
    copy_fields(b, e->has_req, e->path);
    copy_fields(b, e->has_req, e->ip);
    copy_int(b, e->has_req, (uint64_t)e->duration_ms);
    copy_fields(b, e->has_mem, e->mem);
    copy_fields(b, e->has_exc, e->exc_type);
    copy_field(b, e->has_exc, e->exc_msg.p, e->exc_msg.len);
    copy_field(b, e->has_exc, e->stack.p, e->stack.len);
    tmp->len = 0;
    if (shape == SHAPE_SYSLOG) {
        syslog_extra(tmp, e);
    } else if (e->has_extra) {
        bool first = true;

        buf_addc(tmp, '{');
        json_extra_members(tmp, e, &first);
        buf_addc(tmp, '}');
    }
    copy_field(b, tmp->len > 0, tmp->p, tmp->len);
    add_now(b, c, false);
    buf_addc(b, '\n');
}

/* ---- pacing -------------------------------------------------------------- */

/* Token bucket: <rate> tokens per second, at most <burst> saved up. */
struct pacer {
    double rate, burst, tokens, last;
};

static void pacer_init(struct pacer *p, double rate, double burst)
{
    p->rate = rate;
    p->burst = burst < 1 ? 1 : burst;
    p->tokens = 0;
    p->last = mono_s();
}

/* Whole tokens available now (UINT64_MAX when unpaced). */
static uint64_t pacer_avail(struct pacer *p)
{
    double now;

    if (p->rate <= 0)
        return UINT64_MAX;
    now = mono_s();
    p->tokens += (now - p->last) * p->rate;
    if (p->tokens > p->burst)
        p->tokens = p->burst;
    p->last = now;
    return (uint64_t)p->tokens;
}

static void pacer_take(struct pacer *p, uint64_t n)
{
    if (p->rate > 0)
        p->tokens -= (double)n;
}

/* Sleeps a small step towards having <n> tokens: 1-2 ms, so that a fast rate is sent
 * in a few writes per millisecond rather than one syscall per event. */
static void pacer_wait(struct pacer *p, uint64_t n)
{
    double need = ((double)n - p->tokens) / p->rate;

    sleep_s(need > 0.002 ? 0.002 : need > 0.001 ? need : 0.001);
}

/* Blocks until <n> tokens are there, then takes them. */
static void pacer_take_blocking(struct pacer *p, uint64_t n)
{
    while (pacer_avail(p) < n)
        pacer_wait(p, n);
    pacer_take(p, n);
}

/* ---- sockets ------------------------------------------------------------- */

static int tcp_connect(const char *host, const char *port, char *why, size_t whylen)
{
    struct addrinfo hints = {0}, *res = NULL, *ai;
    int fd = -1, rc, one = 1, err = 0;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(why, whylen, "could not resolve \"%s\": %s", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(why, whylen, "could not connect to %s:%s: %s", host, port, strerror(err));
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* Writes all of <iov>[<cnt>] (modified). 0, or -1 with errno. */
static int write_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t n = writev(fd, iov, cnt);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (cnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

/* ---- workers ------------------------------------------------------------- */

struct shared {
    const struct options *opt;
    atomic_uint_fast64_t next_batch; /* http: next batch index to send */
    double *ack_s; /* http: per batch, first send -> its 2xx in s; < 0: no 2xx (each
                      slot written by the one worker that took that batch) */
};

struct worker {
    pthread_t thread;
    int id;
    struct shared *sh;
    /* results */
    uint64_t sent;     /* events delivered (syslog: written; http: accepted by a 2xx) */
    uint64_t requests; /* http requests answered */
    uint64_t non2xx;   /* http answers outside 2xx (503s included) */
    uint64_t retries;  /* http 503 resends */
    uint64_t rejected; /* http: events the server answered as rejected */
    char why[256];     /* first fatal error */
};

static void *syslog_worker(void *arg)
{
    struct worker *w = arg;
    const struct options *o = w->sh->opt;
    struct buf out = {0}, tmp = {0};
    struct event e = {0};
    struct clock_fmt c = {0};
    struct pacer pc;
    double rate = o->rate / o->conns;
    uint64_t n = (uint64_t)w->id, in_buf = 0;
    int fd;

    fd = tcp_connect(o->host, o->port, w->why, sizeof(w->why));
    if (fd < 0)
        return NULL;
    pacer_init(&pc, rate, rate * 0.005);
    while (n < o->count) {
        uint64_t avail = pacer_avail(&pc), batch = 0;

        if (avail == 0) {
            pacer_wait(&pc, 1);
            continue;
        }
        while (batch < avail && n < o->count && out.len < SYSLOG_FLUSH_BYTES) {
            gen_event(o->seed, n, &e);
            enc_syslog(&out, &tmp, &e, &c);
            n += (uint64_t)o->conns;
            batch++;
        }
        pacer_take(&pc, batch);
        in_buf += batch;
        /* paced: send what is due now, so the timestamps are send times */
        if (out.len >= SYSLOG_FLUSH_BYTES || n >= o->count || pc.rate > 0) {
            struct iovec iov = {out.p, out.len};

            if (write_all(fd, &iov, 1) != 0) {
                snprintf(w->why, sizeof(w->why), "could not write to %s:%s: %s", o->host, o->port,
                         strerror(errno));
                break;
            }
            w->sent += in_buf;
            in_buf = 0;
            out.len = 0;
        }
    }
    shutdown(fd, SHUT_WR);
    close(fd);
    buf_free(&out);
    buf_free(&tmp);
    event_free(&e);
    return NULL;
}

struct http_resp {
    int status;
    long content_length; /* -1: none */
    bool chunked, close;
    double retry_after_s; /* -1: no Retry-After */
    struct buf body;
};

/* Reads more bytes into <b>. >0 read, 0 EOF, -1 error. */
static ssize_t read_more(int fd, struct buf *b)
{
    ssize_t n;

    buf_reserve(b, 65536);
    do {
        n = read(fd, b->p + b->len, b->cap - b->len - 1);
    } while (n < 0 && errno == EINTR);
    if (n > 0)
        b->len += (size_t)n;
    return n;
}

static bool header_is(const char *line, size_t len, const char *name, const char **value)
{
    size_t n = strlen(name);

    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return false;
    *value = line + n + 1;
    while (**value == ' ' || **value == '\t')
        (*value)++;
    return true;
}

static bool parse_long(const char *s, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || v < 0)
        return false;
    *out = v;
    return true;
}

/* Reads one response from <fd> into <r>, with <in> holding bytes already read
 * (leftovers stay in it). 0, or -1 with a reason in <why>. */
static int http_read_response(int fd, struct buf *in, struct http_resp *r, char *why, size_t whylen)
{
    char *hdr_end = NULL, *line, *eol;
    size_t hdr_len, pos;

    r->status = 0;
    r->content_length = -1;
    r->chunked = r->close = false;
    r->retry_after_s = -1;
    r->body.len = 0;
    for (;;) {
        if (in->len > 0) {
            in->p[in->len] = '\0';
            hdr_end = strstr(in->p, "\r\n\r\n");
            if (hdr_end != NULL)
                break;
        }
        if (in->len > HTTP_MAX_RESPONSE) {
            snprintf(why, whylen, "response header too long");
            return -1;
        }
        if (read_more(fd, in) <= 0) {
            snprintf(why, whylen, "connection closed before the response");
            return -1;
        }
    }
    hdr_len = (size_t)(hdr_end - in->p) + 4;
    if (strncmp(in->p, "HTTP/1.", 7) != 0 || hdr_len < 12) {
        snprintf(why, whylen, "not an HTTP/1.x response");
        return -1;
    }
    {
        long st;

        if (!parse_long(in->p + 9, &st) || st < 100 || st > 599) {
            snprintf(why, whylen, "bad status line");
            return -1;
        }
        r->status = (int)st;
    }
    line = strstr(in->p, "\r\n") + 2;
    while (line < hdr_end) {
        const char *v;
        long num;

        eol = strstr(line, "\r\n");
        if (header_is(line, (size_t)(eol - line), "content-length", &v)) {
            if (!parse_long(v, &num) || num > HTTP_MAX_RESPONSE) {
                snprintf(why, whylen, "bad Content-Length");
                return -1;
            }
            r->content_length = num;
        } else if (header_is(line, (size_t)(eol - line), "transfer-encoding", &v)) {
            r->chunked = strncasecmp(v, "chunked", 7) == 0;
        } else if (header_is(line, (size_t)(eol - line), "connection", &v)) {
            r->close = strncasecmp(v, "close", 5) == 0;
        } else if (header_is(line, (size_t)(eol - line), "retry-after", &v)) {
            if (parse_long(v, &num))
                r->retry_after_s = (double)num;
        }
        line = eol + 2;
    }
    pos = hdr_len;
    if (r->chunked) {
        for (;;) {
            char *crlf, *endp;
            unsigned long size;

            in->p[in->len] = '\0';
            while ((crlf = strstr(in->p + pos, "\r\n")) == NULL) {
                if (read_more(fd, in) <= 0)
                    goto eof;
                in->p[in->len] = '\0';
            }
            errno = 0;
            size = strtoul(in->p + pos, &endp, 16);
            if (errno != 0 || endp == in->p + pos || size > HTTP_MAX_RESPONSE) {
                snprintf(why, whylen, "bad chunk size");
                return -1;
            }
            pos = (size_t)(crlf - in->p) + 2;
            while (in->len < pos + size + 2) {
                if (read_more(fd, in) <= 0)
                    goto eof;
            }
            if (size == 0) {
                /* no trailers expected: the last chunk is "0\r\n\r\n" */
                pos += 2;
                break;
            }
            buf_add(&r->body, in->p + pos, size);
            pos += size + 2;
        }
    } else if (r->content_length >= 0) {
        while (in->len < pos + (size_t)r->content_length) {
            if (read_more(fd, in) <= 0)
                goto eof;
        }
        buf_add(&r->body, in->p + pos, (size_t)r->content_length);
        pos += (size_t)r->content_length;
    } else {
        /* body until EOF */
        while (read_more(fd, in) > 0) {
        }
        buf_add(&r->body, in->p + pos, in->len - pos);
        pos = in->len;
        r->close = true;
    }
    memmove(in->p, in->p + pos, in->len - pos);
    in->len -= pos;
    buf_reserve(&r->body, 0);
    r->body.p[r->body.len] = '\0';
    return 0;

eof:
    snprintf(why, whylen, "connection closed inside the response body");
    return -1;
}

/* "rejected":N in a 2xx answer; 0 when absent. */
static uint64_t rejected_in(const struct buf *body)
{
    const char *p = body->p ? strstr(body->p, "\"rejected\":") : NULL;
    long v;

    if (p == NULL || !parse_long(p + 11, &v))
        return 0;
    return (uint64_t)v;
}

/* Length of the first line of <body>, at most 150 bytes: enough for an error. */
static size_t body_line(const struct buf *body)
{
    size_t n = 0;

    while (body->p != NULL && n < body->len && n < 150 && body->p[n] != '\n' && body->p[n] != '\r')
        n++;
    return n;
}

static void *http_worker(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    const struct options *o = sh->opt;
    uint64_t nbatches = (o->count + o->batch - 1) / o->batch;
    struct buf body = {0}, hdr = {0}, in = {0};
    struct http_resp r = {0};
    struct event e = {0};
    struct clock_fmt c = {0};
    struct pacer pc;
    double rate = o->rate / o->conns;
    int fd = -1;

    pacer_init(&pc, rate, (double)o->batch);
    for (;;) {
        uint64_t b = atomic_fetch_add(&sh->next_batch, 1), first, last;
        int attempts = 0;
        double t_send = -1;

        if (b >= nbatches)
            break;
        first = b * o->batch;
        last = first + o->batch < o->count ? first + o->batch : o->count;
        pacer_take_blocking(&pc, last - first);
        body.len = 0;
        for (uint64_t n = first; n < last; n++) {
            gen_event(o->seed, n, &e);
            enc_json(&body, &e, &c);
        }
        hdr.len = 0;
        buf_addf(&hdr,
                 "POST /v1/logs HTTP/1.1\r\nHost: %s:%s\r\n"
                 "Content-Type: application/x-ndjson\r\nContent-Length: %zu\r\n\r\n",
                 o->host, o->port, body.len);
        for (;;) {
            struct iovec iov[2] = {{hdr.p, hdr.len}, {body.p, body.len}};
            char why[200];

            if (fd < 0) {
                in.len = 0;
                fd = tcp_connect(o->host, o->port, w->why, sizeof(w->why));
                if (fd < 0)
                    goto fatal;
            }
            /* ack latency runs from the first send of the batch: a resend after a
             * 503 (and its pause) is part of what the client waits */
            if (t_send < 0)
                t_send = mono_s();
            if (write_all(fd, iov, 2) != 0)
                snprintf(why, sizeof(why), "%s", strerror(errno));
            else if (http_read_response(fd, &in, &r, why, sizeof(why)) == 0)
                why[0] = '\0';
            if (why[0] != '\0') {
                /* a keep-alive connection the server closed: one fresh try */
                close(fd);
                fd = -1;
                if (++attempts > 2) {
                    snprintf(w->why, sizeof(w->why), "http request failed: %s", why);
                    goto fatal;
                }
                continue;
            }
            w->requests++;
            if (r.close) {
                close(fd);
                fd = -1;
            }
            if (r.status == 503 && ++attempts <= HTTP_MAX_RETRIES) {
                w->non2xx++;
                w->retries++;
                /* no Retry-After: 1 s; "0": a short pause, not a busy loop */
                if (o->retry_after_s >= 0)
                    sleep_s(o->retry_after_s);
                else
                    sleep_s(r.retry_after_s < 0   ? 1.0
                            : r.retry_after_s > 0 ? r.retry_after_s
                                                  : 0.01);
                continue;
            }
            if (r.status < 200 || r.status > 299) {
                w->non2xx++;
                if (w->why[0] == '\0')
                    snprintf(w->why, sizeof(w->why), "HTTP %d: %.*s", r.status,
                             (int)body_line(&r.body), r.body.p ? r.body.p : "");
            } else {
                uint64_t rej = rejected_in(&r.body);

                sh->ack_s[b] = mono_s() - t_send;

                w->rejected += rej;
                w->sent += last - first - rej;
                if (rej > 0 && w->why[0] == '\0')
                    snprintf(w->why, sizeof(w->why), "HTTP %d: %.*s", r.status,
                             (int)body_line(&r.body), r.body.p);
            }
            break;
        }
    }
    goto out;

fatal:
    /* this worker stops; the others take the remaining batches, this one is lost */
out:
    if (fd >= 0)
        close(fd);
    buf_free(&body);
    buf_free(&hdr);
    buf_free(&in);
    buf_free(&r.body);
    event_free(&e);
    return NULL;
}

/* ---- modes --------------------------------------------------------------- */

static int run_copy(const struct options *o, double *secs, uint64_t *sent)
{
    struct buf b = {0}, tmp = {0};
    struct event e = {0};
    struct clock_fmt c = {0};
    FILE *f = stdout;
    double t0 = mono_s();
    int rc = 0;

    if (o->out != NULL && strcmp(o->out, "-") != 0) {
        f = fopen(o->out, "w");
        if (f == NULL) {
            fprintf(stderr, "aggd_loadgen: could not open \"%s\": %s\n", o->out, strerror(errno));
            return 1;
        }
    }
    for (uint64_t n = 0; n < o->count; n++) {
        gen_event(o->seed, n, &e);
        enc_copy(&b, &tmp, &e, o->shape, &c);
        if (b.len >= (1u << 20) || n + 1 == o->count) {
            if (fwrite(b.p, 1, b.len, f) != b.len) {
                fprintf(stderr, "aggd_loadgen: could not write \"%s\": %s\n", o->out ? o->out : "-",
                        strerror(errno));
                rc = 1;
                break;
            }
            b.len = 0;
        }
        *sent = n + 1;
    }
    if (f != stdout) {
        if (fclose(f) != 0 && rc == 0) {
            fprintf(stderr, "aggd_loadgen: could not write \"%s\": %s\n", o->out, strerror(errno));
            rc = 1;
        }
    } else if (fflush(f) != 0) {
        rc = 1;
    }
    *secs = mono_s() - t0;
    buf_free(&b);
    buf_free(&tmp);
    event_free(&e);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* The <q> quantile of sorted <v>[<n>], <n> > 0: nearest rank. */
static double percentile(const double *v, size_t n, double q)
{
    double x = (double)n * q;
    size_t rank = (size_t)x; /* ceil(n q), 1-based */

    if ((double)rank < x)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

/* User + system CPU seconds of this process so far, all threads. */
static double cpu_s(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static const char *mode_name(enum mode m)
{
    return m == MODE_SYSLOG_TCP ? "syslog-tcp" : m == MODE_HTTP ? "http" : "copy";
}

static int run_net(const struct options *o)
{
    struct shared sh = {.opt = o};
    struct worker *w = calloc((size_t)o->conns, sizeof(*w));
    uint64_t sent = 0, errors, requests = 0, non2xx = 0, retries = 0, rejected = 0;
    uint64_t nbatches = o->mode == MODE_HTTP ? (o->count + o->batch - 1) / o->batch : 0;
    double t0, secs, ack[3] = {0, 0, 0};
    size_t nack = 0;
    int started = 0;

    if (w == NULL)
        die_oom();
    if (nbatches > 0) {
        sh.ack_s = malloc((size_t)nbatches * sizeof(*sh.ack_s));
        if (sh.ack_s == NULL)
            die_oom();
        for (uint64_t i = 0; i < nbatches; i++)
            sh.ack_s[i] = -1;
    }
    atomic_init(&sh.next_batch, 0);
    t0 = mono_s();
    for (int i = 0; i < o->conns; i++) {
        w[i].id = i;
        w[i].sh = &sh;
        if (pthread_create(&w[i].thread, NULL, o->mode == MODE_HTTP ? http_worker : syslog_worker,
                           &w[i]) != 0) {
            fprintf(stderr, "aggd_loadgen: could not start thread %d\n", i);
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(w[i].thread, NULL);
    secs = mono_s() - t0;
    for (int i = 0; i < started; i++) {
        sent += w[i].sent;
        requests += w[i].requests;
        non2xx += w[i].non2xx;
        retries += w[i].retries;
        rejected += w[i].rejected;
        if (w[i].why[0] != '\0')
            fprintf(stderr, "aggd_loadgen: connection %d: %s\n", i, w[i].why);
    }
    /* every event not delivered counts: refused, rejected, or never sent */
    errors = o->count - sent;
    if (nbatches > 0) {
        /* ack latency over the batches that got a 2xx (nearest rank) */
        for (uint64_t i = 0; i < nbatches; i++)
            if (sh.ack_s[i] >= 0)
                sh.ack_s[nack++] = sh.ack_s[i];
        if (nack > 0) {
            qsort(sh.ack_s, nack, sizeof(*sh.ack_s), cmp_double);
            ack[0] = percentile(sh.ack_s, nack, 0.50);
            ack[1] = percentile(sh.ack_s, nack, 0.99);
            ack[2] = sh.ack_s[nack - 1];
        }
    }
    if (o->mode == MODE_HTTP)
        printf("mode=%s events=%" PRIu64 " sent=%" PRIu64 " seconds=%.3f events_per_s=%.0f "
               "errors=%" PRIu64 " conns=%d batch=%" PRIu64 " requests=%" PRIu64 " non2xx=%" PRIu64
               " retries_503=%" PRIu64 " rejected=%" PRIu64 " acks=%zu ack_p50_ms=%.2f"
               " ack_p99_ms=%.2f ack_max_ms=%.2f cpu_s=%.2f\n",
               mode_name(o->mode), o->count, sent, secs, secs > 0 ? (double)sent / secs : 0, errors,
               o->conns, o->batch, requests, non2xx, retries, rejected, nack, ack[0] * 1e3,
               ack[1] * 1e3, ack[2] * 1e3, cpu_s());
    else
        printf("mode=%s events=%" PRIu64 " sent=%" PRIu64 " seconds=%.3f events_per_s=%.0f "
               "errors=%" PRIu64 " conns=%d cpu_s=%.2f\n",
               mode_name(o->mode), o->count, sent, secs, secs > 0 ? (double)sent / secs : 0, errors,
               o->conns, cpu_s());
    free(sh.ack_s);
    free(w);
    return started == 0 || sent == 0 ? 1 : 0;
}

/* ---- command line -------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: aggd_loadgen --mode syslog-tcp|http|copy --count N [--host H] [--port P]\n"
          "                    [--rate EVENTS_PER_S] [--conns C] [--seed S] [--batch B]\n"
          "                    [--out FILE] [--shape json|syslog]\n"
          "  syslog-tcp  RFC 5424, octet-counted, over C TCP connections (default port 5514)\n"
          "  http        POST /v1/logs application/x-ndjson, B events per request\n"
          "              (default port 8080, B 1000)\n"
          "  copy        the same events as COPY text rows in aggd's column order to FILE\n"
          "              (default stdout); --shape chooses which extra_data aggd would\n"
          "              store: json (as from http, default) or syslog\n"
          "  --rate 0 (default) sends as fast as possible; C defaults to 4, S to 1\n"
          "  --retry-after-ms MS  http: pause MS after a 503 instead of the server's\n"
          "                       Retry-After (a what-if for experiments)\n",
          f);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL || *s == '\0' || *s == '-')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool parse_rate(const char *s, double *out)
{
    char *end;
    double v;

    if (s == NULL || *s == '\0')
        return false;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !(v >= 0))
        return false;
    *out = v;
    return true;
}

static int bad_arg(const char *name, const char *value)
{
    fprintf(stderr, "aggd_loadgen: bad value for %s: \"%s\"\n", name, value ? value : "");
    return 2;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    bool have_mode = false, have_count = false;
    uint64_t v;

    *o = (struct options){
        .host = "127.0.0.1", .conns = 4, .seed = 1, .batch = 1000, .retry_after_s = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0 || val == NULL) {
            fprintf(stderr, "aggd_loadgen: unexpected argument \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--mode") == 0) {
            if (strcmp(val, "syslog-tcp") == 0)
                o->mode = MODE_SYSLOG_TCP;
            else if (strcmp(val, "http") == 0)
                o->mode = MODE_HTTP;
            else if (strcmp(val, "copy") == 0)
                o->mode = MODE_COPY;
            else
                return bad_arg(a, val);
            have_mode = true;
        } else if (strcmp(a, "--count") == 0) {
            if (!parse_u64(val, &o->count) || o->count == 0)
                return bad_arg(a, val);
            have_count = true;
        } else if (strcmp(a, "--host") == 0) {
            o->host = val;
        } else if (strcmp(a, "--port") == 0) {
            if (!parse_u64(val, &v) || v == 0 || v > 65535)
                return bad_arg(a, val);
            o->port = val;
        } else if (strcmp(a, "--rate") == 0) {
            if (!parse_rate(val, &o->rate))
                return bad_arg(a, val);
        } else if (strcmp(a, "--conns") == 0) {
            if (!parse_u64(val, &v) || v == 0 || v > MAX_CONNS)
                return bad_arg(a, val);
            o->conns = (int)v;
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_u64(val, &o->seed))
                return bad_arg(a, val);
        } else if (strcmp(a, "--batch") == 0) {
            if (!parse_u64(val, &o->batch) || o->batch == 0 || o->batch > 10000000)
                return bad_arg(a, val);
        } else if (strcmp(a, "--retry-after-ms") == 0) {
            if (!parse_rate(val, &o->retry_after_s))
                return bad_arg(a, val);
            o->retry_after_s /= 1000;
        } else if (strcmp(a, "--out") == 0) {
            o->out = val;
        } else if (strcmp(a, "--shape") == 0) {
            if (strcmp(val, "json") == 0)
                o->shape = SHAPE_JSON;
            else if (strcmp(val, "syslog") == 0)
                o->shape = SHAPE_SYSLOG;
            else
                return bad_arg(a, val);
        } else {
            fprintf(stderr, "aggd_loadgen: unknown option \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!have_mode || !have_count) {
        fprintf(stderr, "aggd_loadgen: --mode and --count are required\n");
        usage(stderr);
        return 2;
    }
    if (o->port == NULL)
        o->port = o->mode == MODE_HTTP ? "8080" : "5514";
    if ((uint64_t)o->conns > o->count)
        o->conns = (int)o->count;
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    int rc = parse_args(argc, argv, &o);

    if (rc != 0)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    if (o.mode == MODE_COPY) {
        double secs = 0;
        uint64_t sent = 0;

        rc = run_copy(&o, &secs, &sent);
        /* the summary goes to stderr when the rows go to stdout */
        fprintf(o.out == NULL || strcmp(o.out, "-") == 0 ? stderr : stdout,
                "mode=copy events=%" PRIu64 " sent=%" PRIu64 " seconds=%.3f "
                "events_per_s=%.0f errors=%" PRIu64 " shape=%s\n",
                o.count, sent, secs, secs > 0 ? (double)sent / secs : 0, o.count - sent,
                o.shape == SHAPE_SYSLOG ? "syslog" : "json");
        return rc;
    }
    return run_net(&o);
}
