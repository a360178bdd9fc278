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
 * Not here: the events and their wire forms (bench/gen.c, shared with
 *           aggd_parsebench); starting PostgreSQL or aggd, measuring commit time
 *           (bench/run.sh).
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

#include "bench/gen.h"

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

/* ---- COPY rows ------------------------------------------------------------ */

/* PostgreSQL COPY text field: backslash, tab, LF and CR escaped. */
static void esc_copy(struct gen_buf *b, const char *s, size_t n)
{
    const char *end = s + n;

    gen_buf_reserve(b, n + 16);
    while (s < end) {
        const char *run = s;

        while (s < end && *s != '\\' && *s != '\t' && *s != '\n' && *s != '\r')
            s++;
        gen_buf_add(b, run, (size_t)(s - run));
        if (s == end)
            break;
        gen_buf_addc(b, '\\');
        gen_buf_addc(b, *s == '\\' ? '\\' : *s == '\t' ? 't' : *s == '\n' ? 'n' : 'r');
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

/* extra_data as aggd builds it from the RFC 5424 form: {"syslog":{…},"sd":{…}}. */
static void syslog_extra(struct gen_buf *b, const struct gen_event *e)
{
    bool first;

    gen_buf_add(b, "{\"syslog\":{\"hostname\":", 22);
    gen_json_str(b, e->host, strlen(e->host));
    gen_buf_add(b, ",\"facility\":16,\"severity\":", 26);
    gen_buf_addu(b, (uint64_t)gen_level_severity[e->level]);
    gen_buf_add(b, ",\"procid\":\"", 11);
    gen_buf_addu(b, (uint64_t)e->procid);
    gen_buf_add(b, "\"},\"sd\":{\"req@32473\":{", 22);
    first = true;
    gen_json_kvs(b, &first, "correlation_id", e->corr);
    if (e->has_req) {
        char d[16];

        snprintf(d, sizeof(d), "%d", e->duration_ms);
        gen_json_kvs(b, &first, "request_id", e->request_id);
        gen_json_kvs(b, &first, "request_method", e->method);
        gen_json_kvs(b, &first, "request_path", e->path);
        gen_json_kvs(b, &first, "request_ip", e->ip);
        gen_json_kvs(b, &first, "duration_ms", d);
    }
    gen_buf_addc(b, '}');
    if (e->has_src || e->has_mem) {
        gen_buf_add(b, ",\"src@32473\":{", 14);
        first = true;
        if (e->has_src) {
            char l[16];

            snprintf(l, sizeof(l), "%d", e->line);
            gen_json_kvs(b, &first, "module", e->module);
            gen_json_kvs(b, &first, "function_name", e->function);
            gen_json_kvs(b, &first, "line_number", l);
        }
        if (e->has_mem)
            gen_json_kvs(b, &first, "memory_usage_mb", e->mem);
        gen_buf_addc(b, '}');
    }
    if (e->has_exc) {
        gen_buf_add(b, ",\"exception@32473\":{", 20);
        first = true;
        gen_json_kvs(b, &first, "exception_type", e->exc_type);
        gen_json_kv(b, &first, "exception_message", e->exc_msg.p, e->exc_msg.len);
        gen_json_kv(b, &first, "stack_trace", e->stack.p, e->stack.len);
        gen_buf_addc(b, '}');
    }
    if (e->has_extra) {
        char rt[8];

        snprintf(rt, sizeof(rt), "%d", e->retry);
        gen_buf_add(b, ",\"meta@32473\":{", 15);
        first = true;
        gen_json_kvs(b, &first, "env", e->env);
        gen_json_kvs(b, &first, "region", e->region);
        gen_json_kvs(b, &first, "tenant", e->tenant);
        gen_json_kvs(b, &first, "cache", e->cache);
        gen_json_kvs(b, &first, "retry", rt);
        gen_buf_addc(b, '}');
    }
    gen_buf_add(b, "}}", 2);
}

static void copy_field(struct gen_buf *b, bool has, const char *v, size_t n)
{
    if (has)
        esc_copy(b, v, n);
    else
        gen_buf_add(b, "\\N", 2);
    gen_buf_addc(b, '\t');
}

static void copy_fields(struct gen_buf *b, bool has, const char *v)
{
    copy_field(b, has, v, has ? strlen(v) : 0);
}

static void copy_int(struct gen_buf *b, bool has, uint64_t v)
{
    if (has)
        gen_buf_addu(b, v);
    else
        gen_buf_add(b, "\\N", 2);
    gen_buf_addc(b, '\t');
}

/* One COPY text row in ST_COPY_COLUMNS order (store/copy.h). */
static void enc_copy(struct gen_buf *b, struct gen_buf *tmp, const struct gen_event *e,
                     enum shape shape, struct gen_clock *c)
{
    gen_buf_adds(b, gen_level_names[e->level]);
    gen_buf_addc(b, '\t');
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

        gen_buf_addc(tmp, '{');
        gen_json_extra(tmp, e, &first);
        gen_buf_addc(tmp, '}');
    }
    copy_field(b, tmp->len > 0, tmp->p, tmp->len);
    gen_clock_add(b, c, false);
    gen_buf_addc(b, '\n');
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
    struct gen_buf out = {0}, tmp = {0};
    struct gen_event e = {0};
    struct gen_clock c = {0};
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
            gen_event_make(o->seed, n, &e);
            gen_enc_syslog(&out, &tmp, &e, &c);
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
    gen_buf_free(&out);
    gen_buf_free(&tmp);
    gen_event_free(&e);
    return NULL;
}

struct http_resp {
    int status;
    long content_length; /* -1: none */
    bool chunked, close;
    double retry_after_s; /* -1: no Retry-After */
    struct gen_buf body;
};

/* Reads more bytes into <b>. >0 read, 0 EOF, -1 error. */
static ssize_t read_more(int fd, struct gen_buf *b)
{
    ssize_t n;

    gen_buf_reserve(b, 65536);
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
static int http_read_response(int fd, struct gen_buf *in, struct http_resp *r, char *why,
                              size_t whylen)
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
            gen_buf_add(&r->body, in->p + pos, size);
            pos += size + 2;
        }
    } else if (r->content_length >= 0) {
        while (in->len < pos + (size_t)r->content_length) {
            if (read_more(fd, in) <= 0)
                goto eof;
        }
        gen_buf_add(&r->body, in->p + pos, (size_t)r->content_length);
        pos += (size_t)r->content_length;
    } else {
        /* body until EOF */
        while (read_more(fd, in) > 0) {
        }
        gen_buf_add(&r->body, in->p + pos, in->len - pos);
        pos = in->len;
        r->close = true;
    }
    memmove(in->p, in->p + pos, in->len - pos);
    in->len -= pos;
    gen_buf_reserve(&r->body, 0);
    r->body.p[r->body.len] = '\0';
    return 0;

eof:
    snprintf(why, whylen, "connection closed inside the response body");
    return -1;
}

/* "rejected":N in a 2xx answer; 0 when absent. */
static uint64_t rejected_in(const struct gen_buf *body)
{
    const char *p = body->p ? strstr(body->p, "\"rejected\":") : NULL;
    long v;

    if (p == NULL || !parse_long(p + 11, &v))
        return 0;
    return (uint64_t)v;
}

/* Length of the first line of <body>, at most 150 bytes: enough for an error. */
static size_t body_line(const struct gen_buf *body)
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
    struct gen_buf body = {0}, hdr = {0}, in = {0};
    struct http_resp r = {0};
    struct gen_event e = {0};
    struct gen_clock c = {0};
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
            gen_event_make(o->seed, n, &e);
            gen_enc_json(&body, &e, &c);
        }
        hdr.len = 0;
        gen_buf_addf(&hdr,
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
    gen_buf_free(&body);
    gen_buf_free(&hdr);
    gen_buf_free(&in);
    gen_buf_free(&r.body);
    gen_event_free(&e);
    return NULL;
}

/* ---- modes --------------------------------------------------------------- */

static int run_copy(const struct options *o, double *secs, uint64_t *sent)
{
    struct gen_buf b = {0}, tmp = {0};
    struct gen_event e = {0};
    struct gen_clock c = {0};
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
        gen_event_make(o->seed, n, &e);
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
    gen_buf_free(&b);
    gen_buf_free(&tmp);
    gen_event_free(&e);
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
        gen_die_oom();
    if (nbatches > 0) {
        sh.ack_s = malloc((size_t)nbatches * sizeof(*sh.ack_s));
        if (sh.ack_s == NULL)
            gen_die_oom();
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
