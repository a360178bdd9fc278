/*
 * tests/test_agg_buf.c — core/buf.c: decimal formatting without printf.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"

/* agg_fmt_u64 writes what printf's %" PRIu64 " writes, at every digit count. */
static void test_fmt_u64_is_printfs_decimal(void **state)
{
    uint64_t v = 0;

    (void)state;
    for (int i = 0; i <= 20; i++) {
        uint64_t cases[3] = {v, v - (v > 0), v + 1};

        for (int k = 0; k < 3; k++) {
            char want[32], got[20];
            size_t n = agg_fmt_u64(got, cases[k]);

            snprintf(want, sizeof(want), "%" PRIu64, cases[k]);
            assert_int_equal(n, strlen(want));
            assert_memory_equal(got, want, n);
        }
        v = i == 0 ? 1 : v * 10;
    }
}

static void test_put_u64_appends(void **state)
{
    struct agg_buf b;

    (void)state;
    agg_buf_init(&b);
    assert_int_equal(agg_buf_append(&b, "n=", 2), AGG_OK);
    assert_int_equal(agg_buf_put_u64(&b, UINT64_MAX), AGG_OK);
    assert_string_equal(b.data, "n=18446744073709551615");
    agg_buf_clear(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmt_u64_is_printfs_decimal),
        cmocka_unit_test(test_put_u64_appends),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
