/*
 * tests/test_agg_metrics.c — Prometheus exposition of registered series.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/metrics.h"

static char *render(struct agg_metrics *m)
{
    struct evbuffer *buf = evbuffer_new();
    size_t len;
    char *text;

    assert_int_equal(agg_metrics_render(m, buf), AGG_OK);
    len = evbuffer_get_length(buf);
    text = calloc(1, len + 1);
    evbuffer_remove(buf, text, len);
    evbuffer_free(buf);
    return text;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static double half(void *arg)
{
    return *(double *)arg / 2;
}

static void test_metrics_render_groups_series_by_name(void **state)
{
    struct agg_metrics *m = agg_metrics_new(NULL);
    _Atomic int64_t *udp, *tcp, *depth;
    double base = 7;
    char *text;

    (void)state;
    udp = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_events_total", "transport=\"udp\"",
                          "Events.");
    depth = agg_metrics_add(m, AGG_METRIC_GAUGE, "aggd_queue_depth", NULL, "Queue depth.");
    tcp = agg_metrics_add(m, AGG_METRIC_COUNTER, "aggd_events_total", "transport=\"tcp\"",
                          "Events.");
    assert_int_equal(agg_metrics_add_fn(m, "aggd_half", NULL, "Half of seven.", half, &base),
                     AGG_OK);
    assert_int_equal(agg_metrics_add_counter_fn(m, "aggd_read_total", "listener=\"a:1\"",
                                                "Read elsewhere.", half, &base),
                     AGG_OK);
    agg_metric_inc(udp, 3);
    agg_metric_inc(udp, 2);
    agg_metric_inc(tcp, 1);
    agg_metric_set(depth, 42);
    text = render(m);
    assert_int_equal(count(text, "# TYPE aggd_events_total counter\n"), 1);
    assert_int_equal(count(text, "# HELP aggd_events_total Events.\n"), 1);
    /* both series of one name follow its single TYPE line */
    assert_non_null(strstr(text, "# TYPE aggd_events_total counter\n"
                                 "aggd_events_total{transport=\"udp\"} 5\n"
                                 "aggd_events_total{transport=\"tcp\"} 1\n"));
    assert_non_null(strstr(text, "# TYPE aggd_queue_depth gauge\naggd_queue_depth 42\n"));
    assert_non_null(strstr(text, "# TYPE aggd_half gauge\naggd_half 3.5\n"));
    assert_non_null(strstr(text, "# TYPE aggd_read_total counter\n"
                                 "aggd_read_total{listener=\"a:1\"} 3.5\n"));
    assert_non_null(strstr(text, "process_resident_memory_bytes "));
    assert_non_null(strstr(text, "process_open_fds "));
    free(text);
    agg_metrics_free(m);
}

static void test_metrics_histogram_buckets_are_cumulative(void **state)
{
    static const double bounds[] = {0.01, 0.1, 1};
    struct agg_metrics *m = agg_metrics_new(NULL);
    struct agg_histogram *h =
        agg_metrics_add_histogram(m, "aggd_copy_seconds", NULL, "COPY time.", bounds, 3);
    static const double bad[] = {1, 0.5};
    char *text;

    (void)state;
    assert_non_null(h);
    assert_null(agg_metrics_add_histogram(m, "x", NULL, "x", bad, 2));
    agg_histogram_observe(h, 0.005);
    agg_histogram_observe(h, 0.01); /* le is inclusive */
    agg_histogram_observe(h, 0.5);
    agg_histogram_observe(h, 7);
    text = render(m);
    assert_non_null(strstr(text, "# TYPE aggd_copy_seconds histogram\n"
                                 "aggd_copy_seconds_bucket{le=\"0.01\"} 2\n"
                                 "aggd_copy_seconds_bucket{le=\"0.1\"} 2\n"
                                 "aggd_copy_seconds_bucket{le=\"1\"} 3\n"
                                 "aggd_copy_seconds_bucket{le=\"+Inf\"} 4\n"
                                 "aggd_copy_seconds_sum 7.515000\n"
                                 "aggd_copy_seconds_count 4\n"));
    free(text);
    agg_metrics_free(m);
}

/* Registers one series of each kind and renders them; AGG_OK or AGG_ENOMEM, never a
 * half-registered series in the text. */
static int register_and_render(struct agg_metrics **out)
{
    static const double bounds[] = {0.1, 1};
    struct agg_metrics *m = agg_metrics_new(NULL);
    struct evbuffer *buf;
    double seven = 7;
    int rc = AGG_ENOMEM;

    *out = m;
    if (m == NULL || agg_metrics_add(m, AGG_METRIC_COUNTER, "a_total", "x=\"1\"", "A.") == NULL ||
        agg_metrics_add_fn(m, "b_gauge", NULL, "B.", half, &seven) != AGG_OK ||
        agg_metrics_add_histogram(m, "c_seconds", NULL, "C.", bounds, 2) == NULL)
        return AGG_ENOMEM;
    buf = evbuffer_new();
    assert_non_null(buf);
    rc = agg_metrics_render(m, buf);
    if (rc == AGG_OK) {
        size_t len = evbuffer_get_length(buf);
        char *text = calloc(1, len + 1);

        assert_non_null(text);
        evbuffer_remove(buf, text, len);
        assert_non_null(strstr(text, "a_total{x=\"1\"} 0\n"));
        assert_non_null(strstr(text, "b_gauge 3.5\n"));
        assert_non_null(strstr(text, "c_seconds_count 0\n"));
        free(text);
    }
    evbuffer_free(buf);
    return rc;
}

static void test_metrics_registration_survives_allocation_failure(void **state)
{
    bool reached = false;

    (void)state;
    for (long n = 0; !reached && n < 1000; n++) {
        struct agg_metrics *m;
        int rc;

        agg_alloc_fail_after(n);
        rc = register_and_render(&m);
        agg_alloc_fail_after(-1);
        if (rc == AGG_OK)
            reached = true;
        else
            assert_int_equal(rc, AGG_ENOMEM);
        agg_metrics_free(m); /* ASan: nothing of a failed registration leaks */
    }
    assert_true(reached);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_render_groups_series_by_name),
        cmocka_unit_test(test_metrics_histogram_buckets_are_cumulative),
        cmocka_unit_test(test_metrics_registration_survives_allocation_failure),
    };

    return cmocka_run_group_tests_name("agg_metrics", tests, NULL, NULL);
}
