/*
 * tests/test_rl_smtp.c — the SMTP client against a scripted fake server on a loopback
 * listener in the same event loop: command sequence, multi-line replies, HELO fallback,
 * AUTH PLAIN, dot-stuffing, refusals, a server closing mid-DATA, STARTTLS that fails,
 * timeouts, cancellation, bad URLs.
 *
 * Traps: the fake server answers one scripted reply per command line; NULL closes the
 *        connection, "" stays silent. Loopback only: no outside network.
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
#include "rules/smtp.h"

#define END ((const char *)1) /* script terminator: replies run out */

struct fake {
    struct event_base *base;
    struct evconnlistener *listener;
    struct bufferevent *bev;
    const char *const *script; /* [0] is the greeting */
    int next;
    bool in_data;
    int close_after_data_bytes; /* > 0: close once this much DATA arrived */
    struct agg_buf transcript;  /* command lines, CRLF-terminated */
    struct agg_buf data;        /* the DATA bytes as on the wire, final dot included */
    int port;
};

struct outcome {
    int calls;
    struct rl_smtp_result r;
};

static void fake_reply(struct fake *f)
{
    const char *reply = f->script[f->next];

    if (reply == END)
        return;
    f->next++;
    if (reply == NULL) {
        bufferevent_free(f->bev);
        f->bev = NULL;
        return;
    }
    if (reply[0] != '\0')
        evbuffer_add_printf(bufferevent_get_output(f->bev), "%s\r\n", reply);
}

static void fake_read(struct bufferevent *bev, void *arg)
{
    struct fake *f = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char *line;
    size_t n;

    while (f->bev != NULL && (line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT)) != NULL) {
        if (f->in_data) {
            agg_buf_append(&f->data, line, n);
            agg_buf_append(&f->data, "\r\n", 2);
            if (f->close_after_data_bytes > 0 && f->data.len >= (size_t)f->close_after_data_bytes) {
                free(line);
                bufferevent_free(f->bev);
                f->bev = NULL;
                return;
            }
            if (strcmp(line, ".") == 0) {
                f->in_data = false;
                fake_reply(f);
            }
        } else {
            agg_buf_append(&f->transcript, line, n);
            agg_buf_append(&f->transcript, "\r\n", 2);
            if (strcmp(line, "DATA") == 0 && f->script[f->next] != END &&
                f->script[f->next] != NULL && strncmp(f->script[f->next], "354", 3) == 0)
                f->in_data = true;
            fake_reply(f);
        }
        free(line);
    }
}

static void fake_event(struct bufferevent *bev, short what, void *arg)
{
    struct fake *f = arg;

    (void)what;
    if (f->bev == bev) {
        bufferevent_free(bev);
        f->bev = NULL;
    }
}

static void fake_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                        int socklen, void *arg)
{
    struct fake *f = arg;

    (void)l;
    (void)sa;
    (void)socklen;
    f->bev = bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(f->bev, fake_read, NULL, fake_event, f);
    bufferevent_enable(f->bev, EV_READ | EV_WRITE);
    fake_reply(f); /* the greeting */
}

static void fake_start(struct fake *f, struct event_base *base, const char *const *script)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in bound;
    socklen_t blen = sizeof(bound);

    memset(f, 0, sizeof(*f));
    f->base = base;
    f->script = script;
    agg_buf_init(&f->transcript);
    agg_buf_init(&f->data);
    f->listener = evconnlistener_new_bind(base, fake_accept, f, LEV_OPT_CLOSE_ON_FREE, 8,
                                          (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(f->listener);
    assert_int_equal(
        getsockname(evconnlistener_get_fd(f->listener), (struct sockaddr *)&bound, &blen), 0);
    f->port = ntohs(bound.sin_port);
}

/* Idempotent; also fine on a zeroed, never started fake. */
static void fake_stop(struct fake *f)
{
    if (f->bev != NULL)
        bufferevent_free(f->bev);
    if (f->listener != NULL)
        evconnlistener_free(f->listener);
    f->bev = NULL;
    f->listener = NULL;
    agg_buf_clear(&f->transcript);
    agg_buf_clear(&f->data);
}

/* Per test: a loop, its fake server, the outcome of the last send. */
struct fx {
    struct event_base *base;
    struct fake f;
    struct outcome o;
};

static int fx_setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));

    if (x == NULL || (x->base = event_base_new()) == NULL) {
        free(x);
        return -1;
    }
    *state = x;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *x = *state;

    fake_stop(&x->f);
    event_base_free(x->base);
    free(x);
    return 0;
}

static void on_done(void *arg, const struct rl_smtp_result *r)
{
    struct outcome *o = arg;

    o->calls++;
    o->r = *r;
}

/* Sends <msg> from a@example.org to <rcpt> through a client for <url_fmt> (with %d for
 * the fake's port) and runs the loop until the callback came and the fake is quiet. */
static void run_send(struct fake *f, struct event_base *base, const char *url_fmt, int timeout_ms,
                     const char *const *rcpt, int nrcpt, const char *msg, struct outcome *o)
{
    char url[128];
    struct agg_err err = {0};
    struct rl_smtp *s;

    snprintf(url, sizeof(url), url_fmt, f->port);
    s = rl_smtp_new(base, url, NULL, timeout_ms, &err);
    assert_non_null(s);
    memset(o, 0, sizeof(*o));
    assert_int_equal(
        rl_smtp_send(s, "a@example.org", rcpt, nrcpt, msg, strlen(msg), on_done, o, &err), AGG_OK);
    assert_int_equal(o->calls, 0); /* never from inside rl_smtp_send */
    while (o->calls == 0)
        event_base_loop(base, EVLOOP_ONCE);
    /* let the fake see the client's close */
    for (int i = 0; i < 20 && f->bev != NULL; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    rl_smtp_free(s);
    assert_int_equal(o->calls, 1);
}

/* Starts a fake answering <script> and sends <msg> to ops@example.org through it. */
static void deliver(struct fx *x, const char *const *script, const char *url_fmt, int timeout_ms,
                    const char *msg)
{
    static const char *const rcpt[] = {"ops@example.org"};

    fake_stop(&x->f);
    fake_start(&x->f, x->base, script);
    run_send(&x->f, x->base, url_fmt, timeout_ms, rcpt, 1, msg, &x->o);
}

static void test_smtp_sends_with_multiline_ehlo_and_dot_stuffing(void **state)
{
    static const char *const script[] = {
        "220 fake.example ESMTP",
        "250-fake.example greets you\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250 HELP",
        "250 2.1.0 ok",
        "250 2.1.5 ok",
        "250 2.1.5 ok",
        "354 go ahead",
        "250 2.0.0 queued as 12345",
        "221 bye",
        END,
    };
    const char *rcpt[] = {"ops@example.org", "dev@example.org"};
    const char msg[] = "Subject: hi\n\n.leading dot\r\n.\nmiddle\r\rlast line";
    struct event_base *base = event_base_new();
    struct fake f;
    struct outcome o;

    (void)state;
    fake_start(&f, base, script);
    run_send(&f, base, "smtp://127.0.0.1:%d", 5000, rcpt, 2, msg, &o);
    assert_true(o.r.ok);
    assert_int_equal(o.r.code, 250);
    assert_non_null(strstr(o.r.detail, "queued as 12345"));
    assert_memory_equal(f.transcript.data, "EHLO ", 5);
    assert_non_null(strstr(f.transcript.data, "\r\nMAIL FROM:<a@example.org>\r\n"
                                              "RCPT TO:<ops@example.org>\r\n"
                                              "RCPT TO:<dev@example.org>\r\n"
                                              "DATA\r\nQUIT\r\n"));
    /* LF, CRLF and a lone CR all end lines; leading dots doubled; final dot added */
    assert_string_equal(f.data.data, "Subject: hi\r\n\r\n..leading dot\r\n..\r\nmiddle\r\n\r\n"
                                     "last line\r\n.\r\n");
    fake_stop(&f);
    event_base_free(base);
}

static void test_smtp_falls_back_to_helo_when_ehlo_is_refused(void **state)
{
    static const char *const script[] = {
        "220 old server", "502 5.5.1 what?", "250 old server", "250 ok", "250 ok",
        "354 go",         "250 ok",          "221 bye",        END,
    };
    struct fx *x = *state;

    deliver(x, script, "smtp://127.0.0.1:%d", 5000, "x\r\n");
    assert_true(x->o.r.ok);
    assert_non_null(strstr(x->f.transcript.data, "\r\nHELO "));
    assert_non_null(strstr(x->f.transcript.data, "\r\nMAIL FROM:<a@example.org>\r\n"));
}

static void test_smtp_authenticates_with_plain_on_loopback(void **state)
{
    static const char *const script[] = {
        "220 fake",
        "250-fake\r\n250-AUTH LOGIN PLAIN\r\n250 8BITMIME",
        "235 2.7.0 ok",
        "250 ok",
        "250 ok",
        "354 go",
        "250 ok",
        "221 bye",
        END,
    };
    struct fx *x = *state;

    /* user "me@x" percent-encoded; password "p\xc3\xa4 ss" */
    deliver(x, script, "smtp://me%%40x:p%%C3%%A4%%20ss@127.0.0.1:%d", 5000, "x");
    assert_true(x->o.r.ok);
    /* python3 -c 'import base64;print(base64.b64encode("\0me@x\0p\xc3\xa4 ss".encode()))' */
    assert_non_null(strstr(x->f.transcript.data, "\r\nAUTH PLAIN AG1lQHgAcMOkIHNz\r\nMAIL FROM:"));
}

static void test_smtp_refuses_credentials_without_auth_plain(void **state)
{
    static const char *const script[] = {"220 fake", "250 fake", "221 bye", END};
    struct fx *x = *state;

    deliver(x, script, "smtp://me:secret@127.0.0.1:%d", 5000, "x");
    assert_false(x->o.r.ok);
    assert_non_null(strstr(x->o.r.detail, "AUTH PLAIN"));
    assert_null(strstr(x->o.r.detail, "secret"));
    assert_null(strstr(x->f.transcript.data, "MAIL FROM"));
}

static void test_smtp_rcpt_550_fails_the_message(void **state)
{
    static const char *const script[] = {
        "220 fake", "250 fake", "250 ok", "550 5.1.1 <ops@example.org>: no such user",
        "221 bye",  END,
    };
    struct fx *x = *state;

    deliver(x, script, "smtp://127.0.0.1:%d", 5000, "x");
    assert_false(x->o.r.ok);
    assert_int_equal(x->o.r.code, 550);
    assert_non_null(strstr(x->o.r.detail, "RCPT TO refused: 550 5.1.1"));
    assert_null(strstr(x->f.transcript.data, "DATA"));
}

static void test_smtp_server_closing_mid_data_fails(void **state)
{
    static const char *const script[] = {"220 fake", "250 fake", "250 ok", "250 ok", "354 go", END};
    const char *rcpt[] = {"ops@example.org"};
    char msg[4096];
    struct event_base *base = event_base_new();
    struct fake f;
    struct outcome o;

    (void)state;
    for (size_t i = 0; i + 1 < sizeof(msg); i++)
        msg[i] = (i % 64 == 63) ? '\n' : 'x';
    msg[sizeof(msg) - 1] = '\0';
    fake_start(&f, base, script);
    f.close_after_data_bytes = 200;
    run_send(&f, base, "smtp://127.0.0.1:%d", 5000, rcpt, 1, msg, &o);
    assert_false(o.r.ok);
    assert_int_equal(o.r.code, 0);
    assert_non_null(strstr(o.r.detail, "during message"));
    fake_stop(&f);
    event_base_free(base);
}

static void test_smtp_failed_starttls_never_falls_back_to_plain(void **state)
{
    /* STARTTLS offered, then refused; and offered, accepted, but no TLS server behind */
    static const char *const refused[] = {"220 fake", "250-fake\r\n250 STARTTLS",
                                          "454 4.7.0 TLS not available", END};
    static const char *const garbage[] = {"220 fake", "250-fake\r\n250 STARTTLS", "220 go ahead",
                                          "250 this is not TLS", END};
    struct fx *x = *state;

    deliver(x, refused, "smtp://127.0.0.1:%d", 5000, "x");
    assert_false(x->o.r.ok);
    assert_int_equal(x->o.r.code, 454);
    assert_non_null(strstr(x->o.r.detail, "STARTTLS refused"));
    assert_null(strstr(x->f.transcript.data, "MAIL FROM"));

    deliver(x, garbage, "smtp://127.0.0.1:%d", 2000, "x");
    assert_false(x->o.r.ok);
    assert_int_equal(x->o.r.code, 0);
    assert_null(strstr(x->f.transcript.data, "MAIL FROM"));
    assert_non_null(strstr(x->f.transcript.data, "STARTTLS\r\n"));
}

static double now_s(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void test_smtp_silent_server_times_out(void **state)
{
    static const char *const script[] = {"", END}; /* accepts, never greets */
    struct fx *x = *state;
    double t0 = now_s();

    deliver(x, script, "smtp://127.0.0.1:%d", 200, "x");
    assert_false(x->o.r.ok);
    assert_int_equal(x->o.r.code, 0);
    assert_non_null(strstr(x->o.r.detail, "timed out after 200 ms during greeting"));
    assert_true(now_s() - t0 >= 0.19);
    assert_true(now_s() - t0 < 3.0);
}

static void test_smtp_refused_connection_fails_promptly(void **state)
{
    static const char *const script[] = {END};
    const char *rcpt[] = {"ops@example.org"};
    struct event_base *base = event_base_new();
    struct fake f;
    struct outcome o;
    double t0 = now_s();

    (void)state;
    fake_start(&f, base, script);
    evconnlistener_free(f.listener); /* the port is closed now */
    f.listener = NULL;
    run_send(&f, base, "smtp://127.0.0.1:%d", 5000, rcpt, 1, "x", &o);
    assert_false(o.r.ok);
    assert_int_equal(o.r.code, 0);
    assert_non_null(strstr(o.r.detail, "smtp://127.0.0.1:"));
    assert_non_null(strstr(o.r.detail, "refused"));
    assert_true(now_s() - t0 < 2.0);
    fake_stop(&f);
    event_base_free(base);
}

static void test_smtp_free_cancels_sessions_once(void **state)
{
    static const char *const script[] = {"", END};
    const char *rcpt[] = {"ops@example.org"};
    struct event_base *base = event_base_new();
    struct fake f;
    struct outcome o = {0};
    char url[64];
    struct rl_smtp *s;

    (void)state;
    fake_start(&f, base, script);
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", f.port);
    s = rl_smtp_new(base, url, NULL, 5000, NULL);
    assert_non_null(s);
    assert_int_equal(rl_smtp_send(s, "a@b", rcpt, 1, "x", 1, on_done, &o, NULL), AGG_OK);
    for (int i = 0; i < 5; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    rl_smtp_free(s);
    assert_int_equal(o.calls, 1);
    assert_false(o.r.ok);
    assert_string_equal(o.r.detail, "cancelled");
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(o.calls, 1);
    fake_stop(&f);
    event_base_free(base);
}

static void test_smtp_rejects_bad_urls_and_arguments(void **state)
{
    static const char *const bad[] = {
        "http://127.0.0.1", "smtp://",       "smtp://h:0", "smtp://h/path",
        "smtp://h?q=1",     "smtp://user@h", "not a url",
    };
    const char *rcpt[] = {"ops@example.org"};
    const char *bad_rcpt[] = {"ops@example.org>\r\nRCPT TO:<x@y"};
    struct event_base *base = event_base_new();
    struct agg_err err = {0};
    struct outcome o = {0};
    struct rl_smtp *s;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(rl_smtp_new(base, bad[i], NULL, 1000, &err));
        assert_int_equal(err.code, AGG_EINVAL);
    }
    assert_null(rl_smtp_new(base, "smtp://me:hunter2@h:99999", NULL, 1000, &err));
    assert_null(strstr(err.msg, "hunter2"));
    assert_null(rl_smtp_new(base, "smtp://h", "/nonexistent/ca.pem", 1000, &err));
    assert_non_null(strstr(err.msg, "CA file"));
    s = rl_smtp_new(base, "smtp://127.0.0.1:1", NULL, 1000, &err);
    assert_non_null(s);
    assert_int_equal(rl_smtp_send(s, "a@b", bad_rcpt, 1, "x", 1, on_done, &o, &err), AGG_EINVAL);
    assert_int_equal(rl_smtp_send(s, "a b@c", rcpt, 1, "x", 1, on_done, &o, &err), AGG_EINVAL);
    assert_int_equal(rl_smtp_send(s, "a@b", rcpt, 0, "x", 1, on_done, &o, &err), AGG_EINVAL);
    rl_smtp_free(s);
    assert_int_equal(o.calls, 0);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smtp_sends_with_multiline_ehlo_and_dot_stuffing),
        cmocka_unit_test_setup_teardown(test_smtp_falls_back_to_helo_when_ehlo_is_refused, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_smtp_authenticates_with_plain_on_loopback, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_smtp_refuses_credentials_without_auth_plain, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_smtp_rcpt_550_fails_the_message, fx_setup,
                                        fx_teardown),
        cmocka_unit_test(test_smtp_server_closing_mid_data_fails),
        cmocka_unit_test_setup_teardown(test_smtp_failed_starttls_never_falls_back_to_plain,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_smtp_silent_server_times_out, fx_setup, fx_teardown),
        cmocka_unit_test(test_smtp_refused_connection_fails_promptly),
        cmocka_unit_test(test_smtp_free_cancels_sessions_once),
        cmocka_unit_test(test_smtp_rejects_bad_urls_and_arguments),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
