/*
 * bench/parsebench.c — aggd_parsebench: parse-only microbenchmark. Each decoder of
 *                      the daemon (RFC 5424, RFC 3164, NDJSON, OTLP/HTTP JSON) takes
 *                      a corpus of the loadgen's events and each event is encoded
 *                      to its COPY row, single thread, no network, no database.
 *
 * Place: benchmark tool (bench/run.sh runs it first); links aggd_core.
 * Threads: one (main).
 * Ownership: main owns the corpus and the decoder.
 * Traps: the corpus is built before the clock starts, so the generator's cost is
 *        not measured. The path measured is the daemon's own from bytes to COPY
 *        row: syslog through agg_listen_syslog_decode (parse, record mapping, the
 *        JSON-in-MSG check), JSON through ing_json_decode_ndjson / _document, then
 *        st_pipeline_stamp and st_copy_encode for every record. Not measured:
 *        framing, HTTP parsing, the spool append, batching, the writers. CPU time
 *        is the thread's own (CLOCK_THREAD_CPUTIME_ID): events/s per core.
 * Not here: the events (bench/gen.c), the end-to-end benchmark (bench/run.sh).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/gen.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/record.h"
#include "core/time.h"
#include "ingest/json.h"
#include "src/listen.h"
#include "store/copy.h"
#include "store/pipeline.h"

#define AIM_EVENTS_PER_S 400000.0   /* issue 15: per core, RFC 5424 and NDJSON */
#define MAX_EVENT_BYTES  65536      /* ingest.max_message_bytes' default */
#define NDJSON_BATCH     1000       /* events per body, as the loadgen's http default */
#define OTLP_BATCH       100        /* logRecords per OTLP/HTTP JSON document */
#define COPY_FLUSH_BYTES (4u << 20) /* the COPY buffer is emptied past this (a batch) */

enum format {
    FMT_RFC5424 = 0,
    FMT_RFC3164,
    FMT_NDJSON,
    FMT_OTLP,
    FMT_COUNT,
};

static const char *const format_names[FMT_COUNT] = {"rfc5424", "rfc3164", "ndjson", "otlp-json"};

/* The events of one format, laid out as the daemon receives them: one unit is a
 * syslog message, an NDJSON body or an OTLP document. */
struct corpus {
    struct gen_buf bytes;
    size_t *off;  /* unit i is bytes.p[off[i] .. off[i + 1]) */
    size_t units; /* off has units + 1 entries */
    uint64_t events;
};

/* What the sink does with each record: stamp and encode it, as the pipeline does. */
struct encoder {
    struct agg_buf copy;
    struct st_copy_scratch scratch;
    int64_t now_us, window_low_us;
    uint64_t rows, rejects;
    bool show; /* print the first row to stderr */
    int rc;
};

static void die(const char *what)
{
    fprintf(stderr, "aggd_parsebench: %s\n", what);
    exit(1);
}

static double clock_s(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int enc_emit(void *arg, const struct agg_record *rec)
{
    struct encoder *x = arg;
    int64_t original, created;
    size_t mark;

    created = st_pipeline_stamp(rec->created_us, x->now_us, x->window_low_us, &original);
    /* binary: the format the writers send; --show prints the first row as text */
    if (st_copy_encode(&x->copy, ST_COPY_BINARY, rec, created, original, &x->scratch) != AGG_OK) {
        x->rc = AGG_ENOMEM;
        return AGG_ENOMEM;
    }
    mark = x->copy.len;
    if (x->show && x->rows == 0) {
        if (st_copy_encode(&x->copy, ST_COPY_TEXT, rec, created, original, &x->scratch) !=
            AGG_OK) {
            x->rc = AGG_ENOMEM;
            return AGG_ENOMEM;
        }
        fwrite(x->copy.data + mark, 1, x->copy.len - mark, stderr);
        x->copy.len = mark;
    }
    x->rows++;
    if (x->copy.len >= COPY_FLUSH_BYTES)
        agg_buf_reset(&x->copy);
    return AGG_OK;
}

static void enc_reject(void *arg, size_t index, const char *why, const char *raw, size_t rawlen)
{
    struct encoder *x = arg;

    (void)index;
    (void)raw;
    (void)rawlen;
    if (x->rejects++ == 0)
        fprintf(stderr, "aggd_parsebench: first reject: %s\n", why);
}

static void corpus_mark(struct corpus *c, size_t *cap)
{
    if (c->units + 2 > *cap) {
        size_t *p;

        *cap = *cap ? *cap * 2 : 1024;
        p = realloc(c->off, *cap * sizeof(*p));
        if (p == NULL)
            die("out of memory");
        c->off = p;
    }
    c->off[++c->units] = c->bytes.len;
}

/* Events [0, <count>) of <seed> in format <fmt>. */
static void corpus_build(struct corpus *c, enum format fmt, uint64_t seed, uint64_t count)
{
    struct gen_event e = {0};
    struct gen_clock clk = {0};
    size_t cap = 0;
    uint64_t in_unit = 0;

    memset(c, 0, sizeof(*c));
    corpus_mark(c, &cap); /* off[1] = 0 ... */
    c->units = 0;         /* ... shifted to off[0] below */
    c->off[0] = 0;
    for (uint64_t n = 0; n < count; n++) {
        gen_event_make(seed, n, &e);
        switch (fmt) {
        case FMT_RFC5424:
            gen_syslog5424(&c->bytes, &e, &clk);
            corpus_mark(c, &cap);
            break;
        case FMT_RFC3164:
            gen_syslog3164(&c->bytes, &e);
            corpus_mark(c, &cap);
            break;
        case FMT_NDJSON:
            gen_enc_json(&c->bytes, &e, &clk);
            if (++in_unit == NDJSON_BATCH || n + 1 == count) {
                corpus_mark(c, &cap);
                in_unit = 0;
            }
            break;
        case FMT_OTLP:
            gen_buf_adds(&c->bytes, in_unit == 0 ? "{\"resourceLogs\":[" : ",");
            gen_enc_otlp(&c->bytes, &e);
            if (++in_unit == OTLP_BATCH || n + 1 == count) {
                gen_buf_add(&c->bytes, "]}", 2);
                corpus_mark(c, &cap);
                in_unit = 0;
            }
            break;
        default:
            die("unknown format");
        }
    }
    c->events = count;
    gen_event_free(&e);
}

static void corpus_free(struct corpus *c)
{
    gen_buf_free(&c->bytes);
    free(c->off);
}

/* Decodes and encodes the whole corpus once. */
static int run_once(enum format fmt, const struct corpus *c, struct ing_json *json,
                    struct agg_buf *scratch, struct agg_buf *merged, struct encoder *x)
{
    struct agg_sink sink = {enc_emit, enc_reject, x};
    struct ing_json_stats stats;
    struct agg_err err = {0};

    for (size_t i = 0; i < c->units && x->rc == AGG_OK; i++) {
        const char *p = c->bytes.p + c->off[i];
        size_t n = c->off[i + 1] - c->off[i];
        int rc = AGG_OK;

        switch (fmt) {
        case FMT_RFC5424:
        case FMT_RFC3164:
            rc = agg_listen_syslog_decode(json, NULL, scratch, merged, p, n, x->now_us, &sink);
            break;
        case FMT_NDJSON:
            rc = ing_json_decode_ndjson(json, p, n, &sink, &stats, &err);
            break;
        case FMT_OTLP:
            rc = ing_json_decode_document(json, p, n, &sink, &stats, &err);
            break;
        default:
            rc = AGG_EINVAL;
        }
        if (rc != AGG_OK) {
            fprintf(stderr, "aggd_parsebench: %s unit %zu: %s\n", format_names[fmt], i,
                    err.msg[0] ? err.msg : "decoder error");
            return rc;
        }
    }
    return x->rc;
}

struct result {
    double cpu_s, wall_s;
    uint64_t rows, rejects;
    size_t bytes;
};

/* The best (least CPU) of <reps> passes over <c>. */
static int bench_format(enum format fmt, const struct corpus *c, int reps, bool show,
                        struct result *best)
{
    struct agg_err err = {0};
    struct ing_json *json = ing_json_new(MAX_EVENT_BYTES, &err);
    struct agg_buf scratch, merged;
    struct encoder x;
    int rc = AGG_OK;

    if (json == NULL) {
        fprintf(stderr, "aggd_parsebench: %s\n", err.msg);
        return AGG_ERR;
    }
    agg_buf_init(&scratch);
    agg_buf_init(&merged);
    memset(&x, 0, sizeof(x));
    agg_buf_init(&x.copy);
    st_copy_scratch_init(&x.scratch);
    x.now_us = agg_time_now_us();
    x.window_low_us = st_pipeline_window_low(x.now_us, 1);
    x.show = show;
    best->cpu_s = -1;
    /* one pass untimed: buffers grown, caches warm, as in a running daemon */
    for (int r = -1; r < reps && rc == AGG_OK; r++) {
        double c0, w0, cpu, wall;

        x.rows = x.rejects = 0;
        agg_buf_reset(&x.copy);
        c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        w0 = clock_s(CLOCK_MONOTONIC);
        rc = run_once(fmt, c, json, &scratch, &merged, &x);
        x.show = false;
        cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
        wall = clock_s(CLOCK_MONOTONIC) - w0;
        if (r >= 0 && (best->cpu_s < 0 || cpu < best->cpu_s)) {
            best->cpu_s = cpu;
            best->wall_s = wall;
        }
        best->rows = x.rows;
        best->rejects = x.rejects;
    }
    best->bytes = c->bytes.len;
    st_copy_scratch_clear(&x.scratch);
    agg_buf_clear(&x.copy);
    agg_buf_clear(&merged);
    agg_buf_clear(&scratch);
    ing_json_free(json);
    return rc;
}

static void usage(FILE *f)
{
    fputs("usage: aggd_parsebench [--count N] [--reps R] [--seed S] [--format F]... [--show]\n"
          "  N events per format (default 200000), best of R timed passes (default 3)\n"
          "  after one untimed pass; F: rfc5424, rfc3164, ndjson, otlp-json (default all);\n"
          "  --show prints each format's first COPY row to stderr\n",
          f);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v == 0 || s[0] == '-')
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    uint64_t count = 200000, reps = 3, seed = 1;
    bool want[FMT_COUNT] = {false}, any = false, show = false;
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool found = false;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--show") == 0) {
            show = true;
            continue;
        }
        if (v == NULL) {
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--count") == 0) {
            found = parse_u64(v, &count);
        } else if (strcmp(a, "--reps") == 0) {
            found = parse_u64(v, &reps) && reps <= 1000;
        } else if (strcmp(a, "--seed") == 0) {
            found = parse_u64(v, &seed);
        } else if (strcmp(a, "--format") == 0) {
            for (int f = 0; f < FMT_COUNT; f++) {
                if (strcmp(v, format_names[f]) == 0) {
                    want[f] = found = any = true;
                }
            }
        }
        if (!found) {
            fprintf(stderr, "aggd_parsebench: bad argument %s \"%s\"\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    printf("parse-only: %" PRIu64 " events per format, seed %" PRIu64 ", best of %" PRIu64
           " passes, one thread\n\n",
           count, seed, reps);
    printf("%-10s %9s %8s %11s %9s %9s %7s\n", "decoder", "events", "MiB", "events/s", "ns/event",
           "vs 400k", "rejects");
    printf("%-10s %9s %8s %11s %9s %9s %7s\n", "----------", "---------", "--------", "-----------",
           "---------", "---------", "-------");
    for (int f = 0; f < FMT_COUNT; f++) {
        struct corpus c;
        struct result r;

        if (any && !want[f])
            continue;
        corpus_build(&c, (enum format)f, seed, count);
        if (bench_format((enum format)f, &c, (int)reps, show, &r) != AGG_OK) {
            printf("%-10s %9" PRIu64 " FAILED\n", format_names[f], count);
            rc = 1;
        } else {
            double rate = r.cpu_s > 0 ? (double)r.rows / r.cpu_s : 0;

            printf("%-10s %9" PRIu64 " %8.1f %11.0f %9.0f %9.2f %7" PRIu64 "\n", format_names[f],
                   r.rows, (double)r.bytes / 1048576.0, rate,
                   r.rows ? r.cpu_s * 1e9 / (double)r.rows : 0, rate / AIM_EVENTS_PER_S, r.rejects);
            if (r.rows != count || r.rejects != 0)
                rc = 1; /* every event must become a row: else the figure means nothing */
        }
        corpus_free(&c);
    }
    printf("\nevents/s: rows encoded per CPU-second of this thread (per core); vs 400k: over "
           "issue 15's aim\n(RFC 5424 and NDJSON). Bytes in, decoder, COPY row out: no "
           "framing, HTTP, spool or database.\n");
    return rc;
}
