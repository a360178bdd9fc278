/*
 * core/metrics.c — metric registry and Prometheus text exposition.
 *
 * Place: see core/metrics.h.
 * Threads: see core/metrics.h.
 * Traps: series are kept in registration order and grouped by name when rendered,
 *        because the format wants one HELP/TYPE block per metric name.
 */
#include "core/metrics.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"

struct series {
    enum agg_metric_type type;
    char *name;
    char *labels;
    char *help;
    _Atomic int64_t value;
    struct agg_histogram *hist;
    agg_metric_fn fn;
    void *arg;
};

struct agg_metrics {
    struct series **items;
    size_t n, cap;
    double start_time;
};

struct agg_metrics *agg_metrics_new(struct agg_err *err)
{
    struct agg_metrics *m = agg_calloc(1, sizeof(*m));
    struct timespec ts;

    if (m == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    m->start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    return m;
}

static void series_free(struct series *s)
{
    if (s == NULL)
        return;
    free(s->name);
    free(s->labels);
    free(s->help);
    free(s->hist);
    free(s);
}

void agg_metrics_free(struct agg_metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        series_free(m->items[i]);
    free(m->items);
    free(m);
}

static struct series *add(struct agg_metrics *m, enum agg_metric_type type, const char *name,
                          const char *labels, const char *help)
{
    struct series *s;

    if (agg_grow((void **)&m->items, sizeof(*m->items), &m->cap, m->n + 1) != AGG_OK)
        return NULL;
    s = agg_calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->type = type;
    s->name = agg_strdup(name);
    s->labels = agg_strdup(labels != NULL ? labels : "");
    s->help = agg_strdup(help);
    if (s->name == NULL || s->labels == NULL || s->help == NULL) {
        series_free(s);
        return NULL;
    }
    m->items[m->n++] = s;
    return s;
}

_Atomic int64_t *agg_metrics_add(struct agg_metrics *m, enum agg_metric_type type,
                                 const char *name, const char *labels, const char *help)
{
    struct series *s = add(m, type, name, labels, help);

    return s != NULL ? &s->value : NULL;
}

static int add_fn(struct agg_metrics *m, enum agg_metric_type type, const char *name,
                  const char *labels, const char *help, agg_metric_fn fn, void *arg)
{
    struct series *s = add(m, type, name, labels, help);

    if (s == NULL)
        return AGG_ENOMEM;
    s->fn = fn;
    s->arg = arg;
    return AGG_OK;
}

int agg_metrics_add_fn(struct agg_metrics *m, const char *name, const char *labels,
                       const char *help, agg_metric_fn fn, void *arg)
{
    return add_fn(m, AGG_METRIC_GAUGE, name, labels, help, fn, arg);
}

int agg_metrics_add_counter_fn(struct agg_metrics *m, const char *name, const char *labels,
                               const char *help, agg_metric_fn fn, void *arg)
{
    return add_fn(m, AGG_METRIC_COUNTER, name, labels, help, fn, arg);
}

struct agg_histogram *agg_metrics_add_histogram(struct agg_metrics *m, const char *name,
                                                const char *labels, const char *help,
                                                const double *bounds, int n)
{
    struct agg_histogram *h;
    struct series *s;

    if (n < 1 || n > AGG_METRICS_MAX_BUCKETS)
        return NULL;
    for (int i = 1; i < n; i++) {
        if (!(bounds[i] > bounds[i - 1]))
            return NULL;
    }
    h = agg_calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    s = add(m, AGG_METRIC_HISTOGRAM, name, labels, help);
    if (s == NULL) {
        free(h);
        return NULL;
    }
    h->n = n;
    memcpy(h->bounds, bounds, (size_t)n * sizeof(*bounds));
    s->hist = h;
    return h;
}

void agg_histogram_observe(struct agg_histogram *h, double v)
{
    int i = 0;

    while (i < h->n && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_micro, (int64_t)(v * 1e6), memory_order_relaxed);
}

static void render_histogram(struct evbuffer *out, const struct series *s)
{
    const struct agg_histogram *h = s->hist;
    const char *sep = s->labels[0] != '\0' ? "," : "";
    int64_t cum = 0;

    for (int i = 0; i <= h->n; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->n)
            evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%g\"} %lld\n", s->name, s->labels, sep,
                                h->bounds[i], (long long)cum);
        else
            evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %lld\n", s->name, s->labels,
                                sep, (long long)cum);
    }
    evbuffer_add_printf(out, "%s_sum%s%s%s %.6f\n", s->name, sep[0] ? "{" : "", s->labels,
                        sep[0] ? "}" : "",
                        (double)atomic_load_explicit(&h->sum_micro, memory_order_relaxed) / 1e6);
    evbuffer_add_printf(out, "%s_count%s%s%s %lld\n", s->name, sep[0] ? "{" : "", s->labels,
                        sep[0] ? "}" : "",
                        (long long)atomic_load_explicit(&h->count, memory_order_relaxed));
}

static void render_one(struct evbuffer *out, const struct series *s)
{
    const char *open = s->labels[0] != '\0' ? "{" : "";
    const char *close = s->labels[0] != '\0' ? "}" : "";

    if (s->hist != NULL) {
        render_histogram(out, s);
        return;
    }

    if (s->fn != NULL)
        evbuffer_add_printf(out, "%s%s%s%s %.17g\n", s->name, open, s->labels, close,
                            s->fn(s->arg));
    else
        evbuffer_add_printf(out, "%s%s%s%s %lld\n", s->name, open, s->labels, close,
                            (long long)atomic_load_explicit(&s->value, memory_order_relaxed));
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the DIR's own descriptor */
}

static void render_process(struct agg_metrics *m, struct evbuffer *out)
{
    struct rusage ru;
    struct rlimit rl;
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            pages = rss = 0;
        fclose(f);
    }
    getrusage(RUSAGE_SELF, &ru);
    evbuffer_add_printf(out,
                        "# HELP process_cpu_seconds_total User and system CPU time spent.\n"
                        "# TYPE process_cpu_seconds_total counter\n"
                        "process_cpu_seconds_total %.6f\n",
                        (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    evbuffer_add_printf(out,
                        "# HELP process_resident_memory_bytes Resident memory size.\n"
                        "# TYPE process_resident_memory_bytes gauge\n"
                        "process_resident_memory_bytes %ld\n"
                        "# HELP process_virtual_memory_bytes Virtual memory size.\n"
                        "# TYPE process_virtual_memory_bytes gauge\n"
                        "process_virtual_memory_bytes %ld\n",
                        rss * sysconf(_SC_PAGESIZE), pages * sysconf(_SC_PAGESIZE));
    evbuffer_add_printf(out,
                        "# HELP process_start_time_seconds Start time since the epoch.\n"
                        "# TYPE process_start_time_seconds gauge\n"
                        "process_start_time_seconds %.3f\n",
                        m->start_time);
    evbuffer_add_printf(out,
                        "# HELP process_open_fds Open file descriptors.\n"
                        "# TYPE process_open_fds gauge\n"
                        "process_open_fds %d\n",
                        count_fds());
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        evbuffer_add_printf(out,
                            "# HELP process_max_fds Limit on open file descriptors.\n"
                            "# TYPE process_max_fds gauge\n"
                            "process_max_fds %llu\n",
                            (unsigned long long)rl.rlim_cur);
}

int agg_metrics_render(struct agg_metrics *m, struct evbuffer *out)
{
    bool *done = agg_calloc(m->n, sizeof(*done));

    if (done == NULL)
        return AGG_ENOMEM;
    for (size_t i = 0; i < m->n; i++) {
        const struct series *s = m->items[i];

        if (done[i])
            continue;
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", s->name, s->help, s->name,
                            s->type == AGG_METRIC_COUNTER   ? "counter"
                            : s->type == AGG_METRIC_GAUGE ? "gauge"
                                                          : "histogram");
        for (size_t j = i; j < m->n; j++) {
            if (!done[j] && strcmp(m->items[j]->name, s->name) == 0) {
                render_one(out, m->items[j]);
                done[j] = true;
            }
        }
    }
    free(done);
    render_process(m, out);
    return AGG_OK;
}
