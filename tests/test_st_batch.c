/*
 * tests/test_st_batch.c — the batch container: rewriting rows in place (the writer's
 * user_id vetting), with an allocation-failure sweep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "store/batch.h"

static const char *const rows[] = {"a\t1\n", "bb\t22\n", "ccc\t333\n", "d\t4\n"};
#define NROWS 4

static struct st_batch *filled(void)
{
    struct st_batch *b = st_batch_new();

    assert_non_null(b);
    for (int i = 0; i < NROWS; i++)
        assert_int_equal(st_batch_add_copy(b, rows[i], strlen(rows[i]), 24000,
                                           AGG_TRANSPORT_HTTP, "peer", 0, "raw", 3),
                         AGG_OK);
    return b;
}

/* Row 1 doubles its text, row 2 becomes one byte shorter, the others stay. */
static int change(void *arg, size_t i, const char *row, size_t len, struct agg_buf *out)
{
    int rc;

    (void)arg;
    if (i == 1) {
        rc = agg_buf_append(out, row, len - 1);
        return rc == AGG_OK ? agg_buf_append(out, row, len) : rc;
    }
    if (i == 2) {
        rc = agg_buf_append(out, row, len - 2);
        return rc == AGG_OK ? agg_buf_putc(out, '\n') : rc;
    }
    return agg_buf_append(out, row, len);
}

static void expect_rows(const struct st_batch *b, const char *const want[NROWS])
{
    size_t len, total = 0;

    for (int i = 0; i < NROWS; i++) {
        const char *row = st_batch_row(b, (size_t)i, &len);

        assert_int_equal(len, strlen(want[i]));
        assert_memory_equal(row, want[i], len);
        total += len;
    }
    assert_int_equal(total, b->copy.len);
}

static void test_batch_rewrite_changes_rows_and_keeps_neighbours(void **state)
{
    static const char *const want[NROWS] = {"a\t1\n", "bb\t22bb\t22\n", "ccc\t33\n",
                                            "d\t4\n"};
    struct st_batch *b = filled();
    struct agg_buf scratch;

    (void)state;
    agg_buf_init(&scratch);
    assert_int_equal(st_batch_rewrite(b, 1, 3, change, NULL, &scratch), AGG_OK);
    expect_rows(b, want);
    /* an empty range changes nothing */
    assert_int_equal(st_batch_rewrite(b, 2, 2, change, NULL, &scratch), AGG_OK);
    expect_rows(b, want);
    agg_buf_clear(&scratch);
    st_batch_free(b);
}

static void test_batch_rewrite_of_every_row(void **state)
{
    static const char *const want[NROWS] = {"a\t1\n", "bb\t22bb\t22\n", "ccc\t33\n",
                                            "d\t4\n"};
    struct st_batch *b = filled();
    struct agg_buf scratch;
    size_t len;
    const char *all;

    (void)state;
    agg_buf_init(&scratch);
    assert_int_equal(st_batch_rewrite(b, 0, NROWS, change, NULL, &scratch), AGG_OK);
    expect_rows(b, want);
    all = st_batch_range(b, 0, NROWS, &len);
    assert_int_equal(len, strlen("a\t1\nbb\t22bb\t22\nccc\t33\nd\t4\n"));
    assert_memory_equal(all, "a\t1\nbb\t22bb\t22\nccc\t33\nd\t4\n", len);
    agg_buf_clear(&scratch);
    st_batch_free(b);
}

static void test_batch_rewrite_out_of_memory_leaves_the_batch_as_it_was(void **state)
{
    static const char *const want[NROWS] = {"a\t1\n", "bb\t22bb\t22\n", "ccc\t33\n",
                                            "d\t4\n"};
    bool done = false;

    (void)state;
    for (long n = 0; !done && n < 100; n++) {
        struct st_batch *b = filled();
        struct agg_buf scratch;
        int rc;

        agg_buf_init(&scratch);
        agg_alloc_fail_after(n);
        rc = st_batch_rewrite(b, 1, 3, change, NULL, &scratch);
        agg_alloc_fail_after(-1);
        if (rc == AGG_OK) {
            expect_rows(b, want);
            done = true;
        } else {
            assert_int_equal(rc, AGG_ENOMEM);
            expect_rows(b, rows);
        }
        agg_buf_clear(&scratch);
        st_batch_free(b);
    }
    assert_true(done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_rewrite_changes_rows_and_keeps_neighbours),
        cmocka_unit_test(test_batch_rewrite_of_every_row),
        cmocka_unit_test(test_batch_rewrite_out_of_memory_leaves_the_batch_as_it_was),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
