/*
 * tests/test_agg_sdnotify.c — the sd_notify datagram reaches a unix socket as sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "src/sdnotify.h"

/* Binds a datagram socket at <path> ('@' = abstract); returns the fd. */
static int bind_dgram(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

    assert_true(fd >= 0);
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    assert_int_equal(bind(fd, (struct sockaddr *)&sa,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
                     0);
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char buf[256] = {0};
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

    assert_int_equal(n, (ssize_t)strlen(want));
    assert_string_equal(buf, want);
}

static void test_sdnotify_sends_state_to_path_socket(void **state)
{
    char path[64];
    struct agg_err err = {0};
    int fd;

    (void)state;
    snprintf(path, sizeof(path), "/tmp/aggd-notify-%d", (int)getpid());
    unlink(path);
    fd = bind_dgram(path);
    assert_int_equal(agg_sd_notify(path, "READY=1\nSTATUS=serving", &err), AGG_OK);
    expect_datagram(fd, "READY=1\nSTATUS=serving");
    assert_int_equal(agg_sd_notify(path, "STOPPING=1", &err), AGG_OK);
    expect_datagram(fd, "STOPPING=1");
    close(fd);
    unlink(path);
}

static void test_sdnotify_sends_to_abstract_socket(void **state)
{
    char path[64];
    struct agg_err err = {0};
    int fd;

    (void)state;
    snprintf(path, sizeof(path), "@aggd-notify-test-%d", (int)getpid());
    fd = bind_dgram(path);
    assert_int_equal(agg_sd_notify(path, "READY=1", &err), AGG_OK);
    expect_datagram(fd, "READY=1");
    close(fd);
}

static void test_sdnotify_without_socket_does_nothing(void **state)
{
    (void)state;
    assert_int_equal(agg_sd_notify(NULL, "READY=1", NULL), AGG_OK);
    assert_int_equal(agg_sd_notify("", "READY=1", NULL), AGG_OK);
}

static void test_sdnotify_rejects_relative_and_dead_sockets(void **state)
{
    struct agg_err err = {0};

    (void)state;
    assert_int_equal(agg_sd_notify("relative/sock", "READY=1", &err), AGG_EINVAL);
    assert_non_null(strstr(err.msg, "relative/sock"));
    assert_int_equal(agg_sd_notify("/nonexistent/dir/sock", "READY=1", &err), AGG_ERR);
    assert_non_null(strstr(err.msg, "/nonexistent/dir/sock"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sdnotify_sends_state_to_path_socket),
        cmocka_unit_test(test_sdnotify_sends_to_abstract_socket),
        cmocka_unit_test(test_sdnotify_without_socket_does_nothing),
        cmocka_unit_test(test_sdnotify_rejects_relative_and_dead_sockets),
    };

    return cmocka_run_group_tests_name("agg_sdnotify", tests, NULL, NULL);
}
