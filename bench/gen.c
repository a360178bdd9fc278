/*
 * bench/gen.c — the benchmark's deterministic events and their wire forms.
 *
 * Place: benchmark tools (aggd_loadgen, aggd_parsebench); not part of the daemon.
 * Threads: pure; buffers belong to the caller's thread.
 * Ownership: see bench/gen.h.
 * Traps: the generator runs on the same (2-core) machine as aggd and PostgreSQL in
 *        bench/run.sh: it must stay cheap, hence the hand-rolled formatting. The
 *        tables and draws below fix what every benchmark measures: changing one
 *        changes every figure (say so with the results).
 * Not here: the loadgen's COPY rows (bench/loadgen.c).
 */
#include "bench/gen.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- growable byte buffer ------------------------------------------------ */

void gen_die_oom(void)
{
    fputs("bench: out of memory\n", stderr);
    exit(1);
}

void gen_buf_reserve(struct gen_buf *b, size_t more)
{
    size_t need = b->len + more + 1, cap = b->cap ? b->cap : 256;
    char *p;

    if (need <= b->cap)
        return;
    while (cap < need)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL)
        gen_die_oom();
    b->p = p;
    b->cap = cap;
}

void gen_buf_add(struct gen_buf *b, const char *s, size_t n)
{
    gen_buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void gen_buf_adds(struct gen_buf *b, const char *s)
{
    gen_buf_add(b, s, strlen(s));
}

void gen_buf_addc(struct gen_buf *b, char c)
{
    gen_buf_reserve(b, 1);
    b->p[b->len++] = c;
}

void gen_buf_addu(struct gen_buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    gen_buf_add(b, tmp + i, sizeof(tmp) - i);
}

void gen_buf_addf(struct gen_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (b->p == NULL || (size_t)n >= b->cap - b->len) {
        gen_buf_reserve(b, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void gen_buf_free(struct gen_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- escaping ------------------------------------------------------------ */

/* JSON string body: quote, backslash and control characters escaped. */
static void esc_json(struct gen_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const char *end = s + n;

    gen_buf_reserve(b, n + 16);
    while (s < end) {
        const char *run = s;

        while (s < end && *s != '"' && *s != '\\' && (unsigned char)*s >= 0x20)
            s++;
        gen_buf_add(b, run, (size_t)(s - run));
        if (s == end)
            break;
        switch (*s) {
        case '"':
            gen_buf_add(b, "\\\"", 2);
            break;
        case '\\':
            gen_buf_add(b, "\\\\", 2);
            break;
        case '\n':
            gen_buf_add(b, "\\n", 2);
            break;
        case '\t':
            gen_buf_add(b, "\\t", 2);
            break;
        case '\r':
            gen_buf_add(b, "\\r", 2);
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[(unsigned char)*s >> 4], hex[*s & 15]};

            gen_buf_add(b, u, sizeof(u));
        }
        }
        s++;
    }
}

void gen_json_str(struct gen_buf *b, const char *s, size_t n)
{
    gen_buf_addc(b, '"');
    esc_json(b, s, n);
    gen_buf_addc(b, '"');
}

void gen_json_key(struct gen_buf *b, bool *first, const char *key)
{
    if (!*first)
        gen_buf_addc(b, ',');
    *first = false;
    gen_buf_addc(b, '"');
    gen_buf_adds(b, key);
    gen_buf_add(b, "\":", 2);
}

/* RFC 5424 PARAM-VALUE: '"', '\' and ']' escaped with a backslash. */
static void esc_sd(struct gen_buf *b, const char *s, size_t n)
{
    const char *end = s + n;

    gen_buf_reserve(b, n + 8);
    while (s < end) {
        const char *run = s;

        while (s < end && *s != '"' && *s != '\\' && *s != ']')
            s++;
        gen_buf_add(b, run, (size_t)(s - run));
        if (s == end)
            break;
        gen_buf_addc(b, '\\');
        gen_buf_addc(b, *s++);
    }
}

/* Appends the current UTC time with µs: ISO 8601 "…T…Z" when <iso>, else the COPY
 * form "YYYY-MM-DD HH:MM:SS.ffffff" (timestamp without time zone). */
void gen_clock_add(struct gen_buf *b, struct gen_clock *c, bool iso)
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
    gen_buf_add(b, c->head, 10);
    gen_buf_addc(b, iso ? 'T' : ' ');
    gen_buf_add(b, c->head + 11, 8);
    us = ts.tv_nsec / 1000;
    tail[0] = '.';
    for (int i = 6; i >= 1; i--) {
        tail[i] = (char)('0' + us % 10);
        us /= 10;
    }
    tail[7] = 'Z';
    gen_buf_add(b, tail, iso ? 8 : 7);
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

const char *const gen_level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};
const int gen_level_severity[] = {7, 6, 4, 3, 2};

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

static void add_pad(struct rng *r, struct gen_buf *b)
{
    gen_buf_addc(b, ' ');
    gen_buf_adds(b, PICK(r, pad_keys));
    gen_buf_addc(b, '=');
    if (rng_below(r, 2) == 0)
        gen_buf_adds(b, PICK(r, pad_words));
    else
        gen_buf_addu(b, rng_below(r, 100000));
}

static void gen_message(struct rng *r, struct gen_event *e)
{
    struct gen_buf *m = &e->msg;
    uint32_t u1 = rng_below(r, 241), u2 = rng_below(r, 241);
    uint32_t target = 60 + (u1 < u2 ? u1 : u2); /* 60-300 bytes, mostly short */
    const char *res = PICK(r, resources);
    size_t base;

    m->len = 0;
    switch (rng_below(r, 16)) {
    case 0:
        gen_buf_addf(m, "user \"%s\" logged in from %u.%u.%u.%u using password+totp",
                     PICK(r, users), 10u, rng_below(r, 255), rng_below(r, 255), rng_below(r, 255));
        break;
    case 1:
        gen_buf_addf(m, "processed batch %u of %u for tenant %s in %u ms", rng_below(r, 500), 500u,
                     PICK(r, tenants), rng_below(r, 4000));
        break;
    case 2:
        gen_buf_addf(m, "cache %s for key \"%s:%u\"; loading from upstream", PICK(r, caches), res,
                     rng_below(r, 1000000));
        break;
    case 3:
        gen_buf_addf(m, "connection pool stats: %u active, %u idle, %u waiting (max wait %u ms)",
                     rng_below(r, 40), rng_below(r, 20), rng_below(r, 8), rng_below(r, 900));
        break;
    case 4:
        gen_buf_addf(m, "%s /api/v1/%s/%u completed with status %u in %u ms", PICK(r, methods), res,
                     rng_below(r, 99999), rng_below(r, 10) < 8 ? 200u : 404u, rng_below(r, 2500));
        break;
    case 5:
        gen_buf_addf(m, "query on %s took %u ms (rows=%u, plan=%s)", PICK(r, tables),
                     rng_below(r, 3000), rng_below(r, 50000),
                     rng_below(r, 2) ? "Index Scan" : "Seq Scan");
        break;
    case 6:
        gen_buf_addf(m, "scheduled job '%s-%s' started, next run at +%us", PICK(r, tenants), res,
                     rng_below(r, 3600));
        break;
    case 7:
        gen_buf_addf(m, "sent notification to %s@example.com (template=%s_v%u)", PICK(r, users),
                     res, rng_below(r, 5));
        break;
    case 8:
        gen_buf_addf(m, "retrying upstream call to payments-api after %u ms (attempt %u/5)",
                     rng_below(r, 2000), 1 + rng_below(r, 5));
        break;
    case 9:
        gen_buf_addf(m, "uploaded C:\\exports\\%s\\%s_%u.csv (%u bytes)", PICK(r, tenants), res,
                     rng_below(r, 9999), rng_below(r, 50000000));
        break;
    case 10:
        gen_buf_addf(m, "pipeline run %u step \"%s\" finished: %u records in, %u out",
                     rng_below(r, 100000), PICK(r, functions), rng_below(r, 90000),
                     rng_below(r, 90000));
        break;
    case 11:
        gen_buf_addf(m, "token refreshed for session %08x; expires in %u s", (unsigned)rng_next(r),
                     rng_below(r, 86400));
        break;
    case 12:
        gen_buf_addf(m, "slow request detected:\tpath=/api/v1/%s\tthreshold=500ms", res);
        break;
    case 13:
        gen_buf_addf(m, "GC pause %u.%03u ms, heap %u MB → %u MB", rng_below(r, 200),
                     rng_below(r, 1000), 200 + rng_below(r, 800), 100 + rng_below(r, 300));
        break;
    case 14:
        gen_buf_addf(m,
                     "validation failed for %s: field 'email' must match [^@]+@[^@]+ (got \"%s\")",
                     res, PICK(r, users));
        break;
    default:
        gen_buf_addf(m, "health check of %s on %s: %s", PICK(r, services), PICK(r, hosts),
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

static void gen_stack(struct rng *r, struct gen_event *e)
{
    uint32_t target = 500 + rng_below(r, 1001);
    bool java = rng_below(r, 2) == 0;
    struct gen_buf *s = &e->stack;

    s->len = 0;
    e->exc_msg.len = 0;
    gen_buf_adds(&e->exc_msg, PICK(r, exc_msgs));
    if (java) {
        e->exc_type = PICK(r, exc_java);
        gen_buf_addf(s, "%s: %.*s\n", e->exc_type, (int)e->exc_msg.len, e->exc_msg.p);
        while (s->len < target)
            gen_buf_addf(s, "\tat com.example.%s.%s(%s.java:%u)\n", PICK(r, resources),
                         PICK(r, functions), PICK(r, resources), 1 + rng_below(r, 900));
        gen_buf_addf(s, "\t... %u more", rng_below(r, 40));
    } else {
        e->exc_type = PICK(r, exc_py);
        gen_buf_adds(s, "Traceback (most recent call last):\n");
        while (s->len + 60 < target)
            gen_buf_addf(s, "  File \"/srv/app/%s/%s.py\", line %u, in %s\n    %s\n",
                         PICK(r, resources), PICK(r, functions), 1 + rng_below(r, 1500),
                         PICK(r, functions), PICK(r, code_lines));
        gen_buf_addf(s, "%s: %.*s", e->exc_type, (int)e->exc_msg.len, e->exc_msg.p);
    }
}

/* Event <n> of run <seed>: a pure function of both. */
void gen_event_make(uint64_t seed, uint64_t n, struct gen_event *e)
{
    struct rng r = {seed * 0x100000001B3ULL ^ (n * 0x9E3779B97F4A7C15ULL) ^ 0x5DEECE66DULL};
    uint32_t lv = rng_below(&r, 1000);
    uint32_t svc;

    rng_next(&r);
    e->n = n;
    e->level = lv < 700   ? GEN_LV_INFO
               : lv < 850 ? GEN_LV_DEBUG
               : lv < 950 ? GEN_LV_WARNING
               : lv < 990 ? GEN_LV_ERROR
                          : GEN_LV_CRITICAL;
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
    e->has_exc = e->level >= GEN_LV_ERROR && rng_below(&r, 100) < 40;
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

void gen_event_free(struct gen_event *e)
{
    gen_buf_free(&e->msg);
    gen_buf_free(&e->exc_msg);
    gen_buf_free(&e->stack);
}

/* ---- encoders ------------------------------------------------------------ */

static void sd_param(struct gen_buf *b, const char *name, const char *v, size_t n)
{
    gen_buf_addc(b, ' ');
    gen_buf_adds(b, name);
    gen_buf_add(b, "=\"", 2);
    esc_sd(b, v, n);
    gen_buf_addc(b, '"');
}

static void sd_params(struct gen_buf *b, const char *name, const char *v)
{
    sd_param(b, name, v, strlen(v));
}

static void sd_paramu(struct gen_buf *b, const char *name, uint64_t v)
{
    gen_buf_addc(b, ' ');
    gen_buf_adds(b, name);
    gen_buf_add(b, "=\"", 2);
    gen_buf_addu(b, v);
    gen_buf_addc(b, '"');
}

void gen_syslog5424(struct gen_buf *tmp, const struct gen_event *e, struct gen_clock *c)
{
    gen_buf_addc(tmp, '<');
    gen_buf_addu(tmp, 16 * 8 + (uint64_t)gen_level_severity[e->level]); /* local0 */
    gen_buf_add(tmp, ">1 ", 3);
    gen_clock_add(tmp, c, true);
    gen_buf_addc(tmp, ' ');
    gen_buf_adds(tmp, e->host);
    gen_buf_addc(tmp, ' ');
    gen_buf_adds(tmp, e->logger);
    gen_buf_addc(tmp, ' ');
    gen_buf_addu(tmp, (uint64_t)e->procid);
    gen_buf_add(tmp, " - [req@32473", 13);
    sd_params(tmp, "correlation_id", e->corr);
    if (e->has_req) {
        sd_params(tmp, "request_id", e->request_id);
        sd_params(tmp, "request_method", e->method);
        sd_params(tmp, "request_path", e->path);
        sd_params(tmp, "request_ip", e->ip);
        sd_paramu(tmp, "duration_ms", (uint64_t)e->duration_ms);
    }
    gen_buf_addc(tmp, ']');
    if (e->has_src || e->has_mem) {
        gen_buf_add(tmp, "[src@32473", 10);
        if (e->has_src) {
            sd_params(tmp, "module", e->module);
            sd_params(tmp, "function_name", e->function);
            sd_paramu(tmp, "line_number", (uint64_t)e->line);
        }
        if (e->has_mem)
            sd_params(tmp, "memory_usage_mb", e->mem);
        gen_buf_addc(tmp, ']');
    }
    if (e->has_exc) {
        gen_buf_add(tmp, "[exception@32473", 16);
        sd_params(tmp, "exception_type", e->exc_type);
        sd_param(tmp, "exception_message", e->exc_msg.p, e->exc_msg.len);
        sd_param(tmp, "stack_trace", e->stack.p, e->stack.len);
        gen_buf_addc(tmp, ']');
    }
    if (e->has_extra) {
        gen_buf_add(tmp, "[meta@32473", 11);
        sd_params(tmp, "env", e->env);
        sd_params(tmp, "region", e->region);
        sd_params(tmp, "tenant", e->tenant);
        sd_params(tmp, "cache", e->cache);
        sd_paramu(tmp, "retry", (uint64_t)e->retry);
        gen_buf_addc(tmp, ']');
    }
    gen_buf_addc(tmp, ' ');
    gen_buf_add(tmp, e->msg.p, e->msg.len);
}

void gen_enc_syslog(struct gen_buf *out, struct gen_buf *tmp, const struct gen_event *e,
                    struct gen_clock *c)
{
    tmp->len = 0;
    gen_syslog5424(tmp, e, c);
    gen_buf_addu(out, tmp->len);
    gen_buf_addc(out, ' ');
    gen_buf_add(out, tmp->p, tmp->len);
}

/* The unknown (extra_data) fields of the JSON form, without braces. */
void gen_json_extra(struct gen_buf *b, const struct gen_event *e, bool *first)
{
    gen_json_key(b, first, "host");
    gen_json_str(b, e->host, strlen(e->host));
    gen_json_key(b, first, "env");
    gen_json_str(b, e->env, strlen(e->env));
    gen_json_key(b, first, "region");
    gen_json_str(b, e->region, strlen(e->region));
    gen_json_key(b, first, "attrs");
    gen_buf_add(b, "{\"tenant\":", 10);
    gen_json_str(b, e->tenant, strlen(e->tenant));
    gen_buf_add(b, ",\"cache\":", 9);
    gen_json_str(b, e->cache, strlen(e->cache));
    gen_buf_add(b, ",\"retry\":", 9);
    gen_buf_addu(b, (uint64_t)e->retry);
    gen_buf_add(b, ",\"tags\":[\"bench\",\"loadgen\"]}", 28);
}

void gen_json_kv(struct gen_buf *b, bool *first, const char *key, const char *v, size_t n)
{
    gen_json_key(b, first, key);
    gen_json_str(b, v, n);
}

void gen_json_kvs(struct gen_buf *b, bool *first, const char *key, const char *v)
{
    gen_json_kv(b, first, key, v, strlen(v));
}

/* One NDJSON line with the system_logs column names. */
void gen_enc_json(struct gen_buf *b, const struct gen_event *e, struct gen_clock *c)
{
    bool first = true;

    gen_buf_addc(b, '{');
    gen_json_key(b, &first, "timestamp");
    gen_buf_addc(b, '"');
    gen_clock_add(b, c, true);
    gen_buf_addc(b, '"');
    gen_json_kvs(b, &first, "level", gen_level_names[e->level]);
    gen_json_kvs(b, &first, "logger_name", e->logger);
    gen_json_kv(b, &first, "message", e->msg.p, e->msg.len);
    gen_json_kvs(b, &first, "correlation_id", e->corr);
    if (e->has_src) {
        gen_json_kvs(b, &first, "module", e->module);
        gen_json_kvs(b, &first, "function_name", e->function);
        gen_json_key(b, &first, "line_number");
        gen_buf_addu(b, (uint64_t)e->line);
    }
    if (e->has_req) {
        gen_json_kvs(b, &first, "request_id", e->request_id);
        gen_json_kvs(b, &first, "request_method", e->method);
        gen_json_kvs(b, &first, "request_path", e->path);
        gen_json_kvs(b, &first, "request_ip", e->ip);
        gen_json_key(b, &first, "duration_ms");
        gen_buf_addu(b, (uint64_t)e->duration_ms);
    }
    if (e->has_mem) {
        gen_json_key(b, &first, "memory_usage_mb");
        gen_buf_adds(b, e->mem);
    }
    if (e->has_exc) {
        gen_json_kvs(b, &first, "exception_type", e->exc_type);
        gen_json_kv(b, &first, "exception_message", e->exc_msg.p, e->exc_msg.len);
        gen_json_kv(b, &first, "stack_trace", e->stack.p, e->stack.len);
    }
    if (e->has_extra)
        gen_json_extra(b, e, &first);
    gen_buf_add(b, "}\n", 2);
}
/* ---- RFC 3164 and OTLP/HTTP JSON ------------------------------------------------ */

void gen_syslog3164(struct gen_buf *b, const struct gen_event *e)
{
    struct timespec ts;
    struct tm tm;
    char when[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%b %e %H:%M:%S", &tm);
    gen_buf_addc(b, '<');
    gen_buf_addu(b, 16 * 8 + (uint64_t)gen_level_severity[e->level]); /* local0 */
    gen_buf_addc(b, '>');
    gen_buf_adds(b, when);
    gen_buf_addc(b, ' ');
    gen_buf_adds(b, e->host);
    gen_buf_addc(b, ' ');
    gen_buf_adds(b, e->logger);
    gen_buf_addc(b, '[');
    gen_buf_addu(b, (uint64_t)e->procid);
    gen_buf_add(b, "]: ", 3);
    gen_buf_add(b, e->msg.p, e->msg.len);
}

/* {"key":"<key>","value":{"<type>":<value as given>}} */
static void otlp_attr(struct gen_buf *b, bool *first, const char *key, const char *type,
                      const char *v, size_t n, bool quote)
{
    if (!*first)
        gen_buf_addc(b, ',');
    *first = false;
    gen_buf_add(b, "{\"key\":", 7);
    gen_json_str(b, key, strlen(key));
    gen_buf_add(b, ",\"value\":{\"", 11);
    gen_buf_adds(b, type);
    gen_buf_add(b, "\":", 2);
    if (quote)
        gen_json_str(b, v, n);
    else
        gen_buf_add(b, v, n);
    gen_buf_add(b, "}}", 2);
}

static void otlp_str(struct gen_buf *b, bool *first, const char *key, const char *v)
{
    otlp_attr(b, first, key, "stringValue", v, strlen(v), true);
}

/* int64 AnyValues are JSON strings in OTLP/JSON (proto3 mapping) */
static void otlp_int(struct gen_buf *b, bool *first, const char *key, int v)
{
    char s[16];

    snprintf(s, sizeof(s), "%d", v);
    otlp_attr(b, first, key, "intValue", s, strlen(s), true);
}

void gen_enc_otlp(struct gen_buf *b, const struct gen_event *e)
{
    static const int sevnum[] = {5, 9, 13, 17, 21}; /* DEBUG INFO WARN ERROR FATAL */
    struct timespec ts;
    bool first = true;

    clock_gettime(CLOCK_REALTIME, &ts);
    gen_buf_add(b, "{\"resource\":{\"attributes\":[", 27);
    otlp_str(b, &first, "service.name", e->logger);
    otlp_str(b, &first, "host.name", e->host);
    gen_buf_add(b, "]},\"scopeLogs\":[{\"scope\":{\"name\":", 33);
    gen_json_str(b, e->logger, strlen(e->logger)); /* the logger: logger_name */
    gen_buf_add(b, "},\"logRecords\":[{", 17);
    gen_buf_add(b, "\"timeUnixNano\":\"", 16);
    gen_buf_addu(b, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    gen_buf_add(b, "\",\"severityNumber\":", 19);
    gen_buf_addu(b, (uint64_t)sevnum[e->level]);
    gen_buf_add(b, ",\"severityText\":\"", 17);
    gen_buf_adds(b, gen_level_names[e->level]);
    gen_buf_add(b, "\",\"body\":{\"stringValue\":", 24);
    gen_json_str(b, e->msg.p, e->msg.len);
    gen_buf_add(b, "},\"attributes\":[", 16);
    first = true;
    otlp_str(b, &first, "correlation_id", e->corr);
    if (e->has_src) {
        otlp_str(b, &first, "code.namespace", e->module);
        otlp_str(b, &first, "code.function", e->function);
        otlp_int(b, &first, "code.lineno", e->line);
    }
    if (e->has_req) {
        otlp_str(b, &first, "request_id", e->request_id);
        otlp_str(b, &first, "http.request.method", e->method);
        otlp_str(b, &first, "url.path", e->path);
        otlp_str(b, &first, "client.address", e->ip);
        otlp_int(b, &first, "duration_ms", e->duration_ms);
    }
    if (e->has_mem)
        otlp_attr(b, &first, "memory_usage_mb", "doubleValue", e->mem, strlen(e->mem), false);
    if (e->has_exc) {
        otlp_str(b, &first, "exception.type", e->exc_type);
        otlp_attr(b, &first, "exception.message", "stringValue", e->exc_msg.p, e->exc_msg.len,
                  true);
        otlp_attr(b, &first, "exception.stacktrace", "stringValue", e->stack.p, e->stack.len, true);
    }
    if (e->has_extra) {
        otlp_str(b, &first, "env", e->env);
        otlp_str(b, &first, "region", e->region);
        otlp_str(b, &first, "tenant", e->tenant);
        otlp_str(b, &first, "cache", e->cache);
        otlp_int(b, &first, "retry", e->retry);
    }
    gen_buf_add(b, "]}]}]}", 6);
}
