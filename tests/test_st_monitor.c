/*
 * tests/test_st_monitor.c — the health probe resolves a database host name without
 * blocking the loop: through a DNS server played by this test (on loopback, answering
 * or silent), while a ticker on the same loop keeps running.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "store/monitor.h"

struct fake_dns {
    int fd;
    bool answer; /* false: never answers */
    int queries;
};

/* Answers an A query with 127.0.0.1 and any other type with no records. */
static void on_query(evutil_socket_t fd, short what, void *arg)
{
    struct fake_dns *d = arg;
    unsigned char q[512], r[600];
    struct sockaddr_storage from;
    socklen_t flen = sizeof(from);
    ssize_t n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &flen);
    size_t end = 12, len;
    int qtype;
    static const unsigned char a_record[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4,
                                             127,  0,    0, 1};

    (void)what;
    if (n < 12)
        return;
    d->queries++;
    if (!d->answer)
        return;
    while (end < (size_t)n && q[end] != 0)
        end += (size_t)q[end] + 1;
    end += 5; /* the root label, QTYPE, QCLASS */
    if (end > (size_t)n)
        return;
    qtype = q[end - 4] << 8 | q[end - 3];
    memcpy(r, q, end);
    r[2] = 0x81; /* QR, RD */
    r[3] = 0x80; /* RA, NOERROR */
    r[4] = 0, r[5] = 1;
    r[6] = 0, r[7] = qtype == 1;
    memset(r + 8, 0, 4);
    len = end;
    if (qtype == 1) {
        memcpy(r + len, a_record, sizeof(a_record));
        len += sizeof(a_record);
    }
    sendto(fd, r, len, 0, (struct sockaddr *)&from, flen);
}

struct probe {
    struct event_base *base;
    bool reported;
    bool up;
    char reason[512];
    int ticks;
    struct event *ticker;
};

static void on_report(void *arg, bool up, int version, const char *reason)
{
    struct probe *p = arg;

    (void)version;
    p->reported = true;
    p->up = up;
    snprintf(p->reason, sizeof(p->reason), "%s", reason);
    event_base_loopbreak(p->base);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct probe *p = arg;

    (void)fd;
    (void)what;
    p->ticks++;
}

/* Runs one probe of <conninfo> through the fake DNS server; fills <p>. */
static void run_probe(const char *conninfo, bool answer, int timeout_ms, struct probe *p,
                      int *queries)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof(sa);
    struct fake_dns d = {.answer = answer};
    struct timeval tick = {0, 10 * 1000}, limit = {15, 0};
    struct evdns_base *dns;
    struct event *ev;
    struct st_monitor *m;
    char ns[64];
    struct agg_err err = {0};

    memset(p, 0, sizeof(*p));
    p->base = event_base_new();
    assert_non_null(p->base);
    d.fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(d.fd >= 0);
    assert_int_equal(bind(d.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(d.fd, (struct sockaddr *)&sa, &slen), 0);
    ev = event_new(p->base, d.fd, EV_READ | EV_PERSIST, on_query, &d);
    assert_non_null(ev);
    event_add(ev, NULL);
    dns = evdns_base_new(p->base, 0);
    assert_non_null(dns);
    snprintf(ns, sizeof(ns), "127.0.0.1:%d", ntohs(sa.sin_port));
    assert_int_equal(evdns_base_nameserver_ip_add(dns, ns), 0);
    p->ticker = event_new(p->base, -1, EV_PERSIST, on_tick, p);
    event_add(p->ticker, &tick);

    m = st_monitor_new(p->base, dns, conninfo, 60000, timeout_ms, on_report, p, &err);
    assert_non_null(m);
    event_base_loopexit(p->base, &limit);
    event_base_dispatch(p->base);

    st_monitor_free(m);
    /* a cancelled lookup ends in a deferred callback: let it run */
    event_base_loop(p->base, EVLOOP_NONBLOCK);
    evdns_base_free(dns, 0);
    event_free(p->ticker);
    event_free(ev);
    close(d.fd);
    event_base_free(p->base);
    *queries = d.queries;
}

static void test_monitor_connects_to_the_address_its_resolver_gives(void **state)
{
    struct probe p;
    int queries;

    (void)state;
    /* db.test exists only in the fake DNS server: libpq's own lookup cannot find it */
    run_probe("host=db.test port=1 dbname=x connect_timeout=5", true, 5000, &p, &queries);
    assert_true(p.reported);
    assert_false(p.up);
    assert_true(queries >= 1);
    /* libpq names the address it was handed: the fake server's answer */
    if (strstr(p.reason, "\"127.0.0.1\"") == NULL)
        fail_msg("reason: %s", p.reason);
}

static void test_monitor_silent_resolver_times_out_while_the_loop_runs(void **state)
{
    struct probe p;
    int queries;

    (void)state;
    run_probe("host=db.test port=1 dbname=x", false, 500, &p, &queries);
    assert_true(p.reported);
    assert_false(p.up);
    assert_true(queries >= 1);
    assert_string_equal(p.reason, "no answer within 500 ms");
    /* 10 ms ticks through a 500 ms wait: the loop was never blocked */
    assert_true(p.ticks >= 20);
}

static void test_monitor_addresses_and_sockets_skip_the_resolver(void **state)
{
    struct probe p;
    int queries;

    (void)state;
    run_probe("host=127.0.0.1 port=1 dbname=x", false, 5000, &p, &queries);
    assert_true(p.reported);
    assert_int_equal(queries, 0);
    assert_non_null(strstr(p.reason, "127.0.0.1"));
    run_probe("host=/nonexistent-dir dbname=x", false, 5000, &p, &queries);
    assert_true(p.reported);
    assert_int_equal(queries, 0);
    assert_non_null(strstr(p.reason, "/nonexistent-dir"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monitor_connects_to_the_address_its_resolver_gives),
        cmocka_unit_test(test_monitor_silent_resolver_times_out_while_the_loop_runs),
        cmocka_unit_test(test_monitor_addresses_and_sockets_skip_the_resolver),
    };

    return cmocka_run_group_tests_name("st_monitor", tests, NULL, NULL);
}
