/*
 * tests/test_rl_httpc.c — the HTTP POST client: URL and header checks, a loopback
 * server in the same event loop that records the request and answers a scripted
 * response, refused connections, timeouts, cancellation.
 *
 * Traps: loopback only; HTTPS is exercised by hand (see docs/notifications.md).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>

#include "core/buf.h"
#include "rules/httpc.h"

struct server {
    struct evconnlistener *listener;
    struct bufferevent *bev;
    const char *response; /* sent once the request is complete; NULL: stay silent */
    struct agg_buf request;
    int port;
};

struct outcome {
    int calls;
    struct rl_http_result r;
};

static void srv_read(struct bufferevent *bev, void *arg)
{
    struct server *sv = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    const char *end, *cl;

    agg_buf_append(&sv->request, evbuffer_pullup(in, -1), n);
    evbuffer_drain(in, n);
    end = strstr(sv->request.data, "\r\n\r\n");
    cl = strstr(sv->request.data, "Content-Length: ");
    if (end == NULL || cl == NULL ||
        sv->request.len < (size_t)(end + 4 - sv->request.data) + strtoul(cl + 16, NULL, 10))
        return;
    if (sv->response != NULL)
        evbuffer_add(bufferevent_get_output(bev), sv->response, strlen(sv->response));
}

static void srv_event(struct bufferevent *bev, short what, void *arg)
{
    struct server *sv = arg;

    (void)what;
    bufferevent_free(bev);
    sv->bev = NULL;
}

static void srv_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                       void *arg)
{
    struct server *sv = arg;

    (void)sa;
    (void)len;
    sv->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(sv->bev, srv_read, NULL, srv_event, sv);
    bufferevent_enable(sv->bev, EV_READ | EV_WRITE);
}

static void srv_start(struct server *sv, struct event_base *base, const char *response)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof(sin);

    memset(sv, 0, sizeof(*sv));
    sv->response = response;
    agg_buf_init(&sv->request);
    sv->listener = evconnlistener_new_bind(base, srv_accept, sv, LEV_OPT_CLOSE_ON_FREE, 8,
                                           (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(sv->listener);
    assert_int_equal(
        getsockname(evconnlistener_get_fd(sv->listener), (struct sockaddr *)&sin, &slen), 0);
    sv->port = ntohs(sin.sin_port);
}

/* Idempotent; also fine on a zeroed, never started server. */
static void srv_stop(struct server *sv)
{
    if (sv->bev != NULL)
        bufferevent_free(sv->bev);
    if (sv->listener != NULL)
        evconnlistener_free(sv->listener);
    sv->bev = NULL;
    sv->listener = NULL;
    agg_buf_clear(&sv->request);
}

static void on_done(void *arg, const struct rl_http_result *r)
{
    struct outcome *o = arg;

    o->calls++;
    o->r = *r;
}

static double now_s(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* POSTs <body> to <path_query> on the server's port and waits for the callback. */
static void run_post(struct server *sv, struct event_base *base, int timeout_ms,
                     const char *path_query, const char *const *headers, const char *body,
                     struct outcome *o)
{
    char url[256];
    struct agg_err err = {0};
    struct rl_httpc *c = rl_httpc_new(base, NULL, timeout_ms, &err);

    assert_non_null(c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", sv->port, path_query);
    memset(o, 0, sizeof(*o));
    assert_int_equal(rl_httpc_post(c, url, headers, body, strlen(body), on_done, o, &err), AGG_OK);
    assert_int_equal(o->calls, 0);
    while (o->calls == 0)
        event_base_loop(base, EVLOOP_ONCE);
    rl_httpc_free(c);
    assert_int_equal(o->calls, 1);
}

/* Per test: a loop, its server, the outcome of the last post. */
struct hx {
    struct event_base *base;
    struct server sv;
    struct outcome o;
};

static int hx_setup(void **state)
{
    struct hx *x = calloc(1, sizeof(*x));

    if (x == NULL || (x->base = event_base_new()) == NULL) {
        free(x);
        return -1;
    }
    *state = x;
    return 0;
}

static int hx_teardown(void **state)
{
    struct hx *x = *state;

    srv_stop(&x->sv);
    event_base_free(x->base);
    free(x);
    return 0;
}

/* A fresh server answering <response> (closed at once when <closed>), then a POST of
 * "{}" to <path> on it. */
static void post_to(struct hx *x, const char *response, bool closed, int timeout_ms,
                    const char *path)
{
    srv_stop(&x->sv);
    srv_start(&x->sv, x->base, response);
    if (closed) {
        evconnlistener_free(x->sv.listener);
        x->sv.listener = NULL;
    }
    run_post(&x->sv, x->base, timeout_ms, path, NULL, "{}", &x->o);
}

static void test_httpc_posts_json_with_headers_and_reads_status(void **state)
{
    const char *headers[] = {"webhook-id: msg_1", "webhook-signature: v1,abc=", NULL};
    struct event_base *base = event_base_new();
    struct server sv;
    struct outcome o;

    (void)state;
    srv_start(&sv, base, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    run_post(&sv, base, 5000, "/hook/T000/B000/XXXX?token=s3cret", headers, "{\"a\":1}", &o);
    assert_int_equal(o.r.status, 503);
    assert_string_equal(o.r.detail, "HTTP 503 Service Unavailable");
    assert_memory_equal(sv.request.data, "POST /hook/T000/B000/XXXX?token=s3cret HTTP/1.1\r\n", 49);
    assert_non_null(strstr(sv.request.data, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(sv.request.data, "\r\nUser-Agent: aggd/"));
    assert_non_null(strstr(sv.request.data, "\r\nwebhook-id: msg_1\r\n"));
    assert_non_null(strstr(sv.request.data, "\r\nwebhook-signature: v1,abc=\r\n"));
    assert_non_null(strstr(sv.request.data, "\r\nContent-Length: 7\r\n\r\n{\"a\":1}"));
    {
        char host[64];

        snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", sv.port);
        assert_non_null(strstr(sv.request.data, host));
    }
    srv_stop(&sv);
    event_base_free(base);
}

static void test_httpc_skips_interim_responses(void **state)
{
    struct hx *x = *state;

    post_to(x, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", false, 5000, "/");
    assert_int_equal(x->o.r.status, 204);
    post_to(x, "SSH-2.0-OpenSSH\r\n", false, 5000, "/");
    assert_int_equal(x->o.r.status, 0);
    assert_non_null(strstr(x->o.r.detail, "not an HTTP response"));
}

static void test_httpc_refused_connection_gives_status_0_promptly(void **state)
{
    struct hx *x = *state;
    double t0 = now_s();

    post_to(x, NULL, true, 5000, "/secret-path?k=v");
    assert_int_equal(x->o.r.status, 0);
    assert_non_null(strstr(x->o.r.detail, "http://127.0.0.1:"));
    assert_non_null(strstr(x->o.r.detail, "refused"));
    assert_null(strstr(x->o.r.detail, "secret-path"));
    assert_true(now_s() - t0 < 2.0);
}

static void test_httpc_silent_server_times_out(void **state)
{
    struct hx *x = *state;
    double t0 = now_s();

    post_to(x, NULL, false, 200, "/");
    assert_int_equal(x->o.r.status, 0);
    assert_non_null(strstr(x->o.r.detail, "timed out after 200 ms"));
    assert_true(now_s() - t0 >= 0.19 && now_s() - t0 < 3.0);
}

static void test_httpc_free_cancels_requests_once(void **state)
{
    struct event_base *base = event_base_new();
    struct server sv;
    struct outcome a = {0}, b = {0};
    struct rl_httpc *c = rl_httpc_new(base, NULL, 5000, NULL);
    char url[64];

    (void)state;
    assert_non_null(c);
    srv_start(&sv, base, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", sv.port);
    assert_int_equal(rl_httpc_post(c, url, NULL, "{}", 2, on_done, &a, NULL), AGG_OK);
    assert_int_equal(rl_httpc_post(c, url, NULL, "{}", 2, on_done, &b, NULL), AGG_OK);
    for (int i = 0; i < 5; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    rl_httpc_free(c);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(a.r.status, 0);
    assert_string_equal(a.r.detail, "cancelled");
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(a.calls + b.calls, 2);
    srv_stop(&sv);
    event_base_free(base);
}

static void test_httpc_rejects_bad_urls_and_headers_without_leaking(void **state)
{
    static const char *const bad_urls[] = {
        "ftp://example.org/x",   "http:///path",     "https://user:pw@example.org/",
        "http://example.org:0/", "not a url at all", "//example.org/x",
    };
    const char *bad_headers[][2] = {
        {"X-Token: a\r\nX-Injected: 1", NULL}, {"NoColon", NULL}, {"Host: evil.example", NULL},
        {"content-length: 5", NULL},           {": value", NULL},
    };
    struct event_base *base = event_base_new();
    struct rl_httpc *c = rl_httpc_new(base, NULL, 1000, NULL);
    struct outcome o = {0};
    struct agg_err err = {0};

    (void)state;
    assert_non_null(c);
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        assert_int_equal(rl_httpc_post(c, bad_urls[i], NULL, "{}", 2, on_done, &o, &err),
                         AGG_EINVAL);
        assert_null(strstr(err.msg, "pw"));
    }
    for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
        assert_int_equal(rl_httpc_post(c, "http://127.0.0.1:9/hook?key=s3cret", bad_headers[i],
                                       "{}", 2, on_done, &o, &err),
                         AGG_EINVAL);
        assert_null(strstr(err.msg, "s3cret"));
        assert_null(strstr(err.msg, "Injected"));
    }
    rl_httpc_free(c);
    assert_int_equal(o.calls, 0);
    assert_null(rl_httpc_new(base, "/nonexistent/ca.pem", 1000, &err));
    assert_non_null(strstr(err.msg, "CA file"));
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_httpc_posts_json_with_headers_and_reads_status),
        cmocka_unit_test_setup_teardown(test_httpc_skips_interim_responses, hx_setup, hx_teardown),
        cmocka_unit_test_setup_teardown(test_httpc_refused_connection_gives_status_0_promptly,
                                        hx_setup, hx_teardown),
        cmocka_unit_test_setup_teardown(test_httpc_silent_server_times_out, hx_setup, hx_teardown),
        cmocka_unit_test(test_httpc_free_cancels_requests_once),
        cmocka_unit_test(test_httpc_rejects_bad_urls_and_headers_without_leaking),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
