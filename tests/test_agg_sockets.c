/*
 * tests/test_agg_sockets.c — socket activation: which LISTEN_* values are taken.
 * (Matching sockets to addresses is driven end to end in integration/test_serve.py.)
 */
#include "src/sockets.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static void test_sockets_take_nothing_without_both_variables(void **state)
{
    struct agg_sockets set;

    (void)state;
    assert_int_equal(agg_sockets_init(&set, NULL, "2", 42, NULL), AGG_OK);
    assert_int_equal(set.n, 0);
    assert_int_equal(agg_sockets_init(&set, "42", NULL, 42, NULL), AGG_OK);
    assert_int_equal(set.n, 0);
}

static void test_sockets_meant_for_another_process_are_left(void **state)
{
    struct agg_sockets set;

    (void)state;
    assert_int_equal(agg_sockets_init(&set, "41", "2", 42, NULL), AGG_OK);
    assert_int_equal(set.n, 0);
}

static void test_sockets_count_from_descriptor_three(void **state)
{
    struct agg_sockets set;

    (void)state;
    assert_int_equal(agg_sockets_init(&set, "42", "3", 42, NULL), AGG_OK);
    assert_int_equal(set.n, 3);
    assert_int_equal(set.fd[0], AGG_SOCKETS_FIRST_FD);
    assert_int_equal(set.fd[2], AGG_SOCKETS_FIRST_FD + 2);
    /* nothing here is a socket bound to that address */
    assert_int_equal(agg_sockets_take(&set, "127.0.0.1:9", SOCK_STREAM), -1);
    set.n = 0; /* not ours to close in this test */
}

static void test_sockets_refuse_bad_values(void **state)
{
    static const char *const bad[][2] = {
        {"x", "1"}, {"42", "one"}, {"42", "-1"}, {"42", "1 "}, {"", "1"}, {"42", "17"},
        {"42", "99999999999999999999"},
    };
    struct agg_sockets set;
    struct agg_err err = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(agg_sockets_init(&set, bad[i][0], bad[i][1], 42, &err), AGG_EINVAL);
        assert_non_null(strstr(err.msg, "LISTEN_"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sockets_take_nothing_without_both_variables),
        cmocka_unit_test(test_sockets_meant_for_another_process_are_left),
        cmocka_unit_test(test_sockets_count_from_descriptor_three),
        cmocka_unit_test(test_sockets_refuse_bad_values),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
