/*
 * tests/test_agg_json.c — the tree parse over the pool: the same tree and the same
 * messages as yajl_tree_parse, depth limit, and allocation failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/json.h"

static const char *const documents[] = {
    "{}",
    "[]",
    "{\"a\":1,\"b\":[true,false,null,\"x\"],\"c\":{\"d\":-2.5e3}}",
    ("{\"n\":[0,-0,9223372036854775807,9223372036854775808,-9223372036854775808,"
     "-9223372036854775809,1.5,1e400,-1e-400,123456789012345678901234567890]}"),
    "{\"s\":\"caf\\u00e9 \\\"q\\\" \\n \\ud83d\\ude00\",\"\":\"\",\"k\":\"\\u0000\"}",
    "{\"dup\":1,\"dup\":2}",
    "/* comment */ {\"a\": // line\n 1}",
    "\"text\"",
    "42",
    "[[[[[[[[[[1]]]]]]]]]]",
};

static const char *const broken[] = {
    "{not json", "{\"a\":1} trailing", "[1,2", "{\"a\" 1}", "", "\xff\xfe{}", "{\"a\":\"\x01\"}",
};

static void assert_same(yajl_val a, yajl_val b)
{
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case yajl_t_string:
        assert_string_equal(a->u.string, b->u.string);
        break;
    case yajl_t_number:
        assert_string_equal(a->u.number.r, b->u.number.r);
        assert_int_equal(a->u.number.flags, b->u.number.flags);
        if (a->u.number.flags & YAJL_NUMBER_INT_VALID)
            assert_true(a->u.number.i == b->u.number.i);
        if (a->u.number.flags & YAJL_NUMBER_DOUBLE_VALID)
            assert_memory_equal(&a->u.number.d, &b->u.number.d, sizeof(double));
        break;
    case yajl_t_object:
        assert_int_equal(a->u.object.len, b->u.object.len);
        for (size_t i = 0; i < a->u.object.len; i++) {
            assert_string_equal(a->u.object.keys[i], b->u.object.keys[i]);
            assert_same(a->u.object.values[i], b->u.object.values[i]);
        }
        break;
    case yajl_t_array:
        assert_int_equal(a->u.array.len, b->u.array.len);
        for (size_t i = 0; i < a->u.array.len; i++)
            assert_same(a->u.array.values[i], b->u.array.values[i]);
        break;
    default:
        break;
    }
}

static void test_json_parse_builds_the_tree_yajl_tree_parse_builds(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(documents) / sizeof(documents[0]); i++) {
        char why[160], ywhy[160];
        yajl_val mine = NULL, theirs = yajl_tree_parse(documents[i], ywhy, sizeof(ywhy));

        assert_int_equal(
            agg_json_parse(documents[i], strlen(documents[i]), 32, &mine, why, sizeof(why)),
            AGG_OK);
        assert_same(mine, theirs);
        yajl_tree_free(mine);
        yajl_tree_free(theirs);
    }
}

static void test_json_parse_refuses_what_yajl_refuses_with_its_message(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        char why[160], ywhy[160];
        yajl_val mine = (yajl_val)1, theirs = yajl_tree_parse(broken[i], ywhy, sizeof(ywhy));

        assert_null(theirs);
        assert_int_equal(agg_json_parse(broken[i], strlen(broken[i]), 32, &mine, why, sizeof(why)),
                         AGG_EINVAL);
        assert_null(mine);
        assert_string_equal(why, ywhy);
    }
}

static void test_json_parse_stops_deeper_than_asked(void **state)
{
    char why[160];
    yajl_val v = NULL;

    (void)state;
    assert_int_equal(agg_json_parse("[[[1]]]", 7, 3, &v, why, sizeof(why)), AGG_OK);
    yajl_tree_free(v);
    assert_int_equal(agg_json_parse("{\"a\":[[1]]}", 11, 2, &v, why, sizeof(why)), AGG_EINVAL);
    assert_null(v);
    assert_non_null(strstr(why, "deeper than 2"));
}

static void test_json_parse_survives_allocation_failures(void **state)
{
    const char *doc = documents[3];
    bool done = false;

    (void)state;
    for (long n = 0; !done; n++) {
        char why[160];
        yajl_val v = (yajl_val)1;
        int rc;

        agg_alloc_fail_after(n);
        rc = agg_json_parse(doc, strlen(doc), 32, &v, why, sizeof(why));
        agg_alloc_fail_after(-1);
        if (rc == AGG_OK) {
            done = true;
            assert_non_null(v);
            assert_true(n > 10); /* the pool and the tree's nodes both allocate */
            yajl_tree_free(v);
        } else {
            assert_int_equal(rc, AGG_ENOMEM);
            assert_null(v);
        }
    }
}

static void test_json_pool_lends_from_its_reserve_only(void **state)
{
    struct agg_json_pool pl = {0};
    yajl_alloc_funcs afs = agg_json_pool_funcs(&pl);
    const char *doc = documents[2];
    yajl_handle h;

    (void)state;
    assert_int_equal(agg_json_pool_reserve(&pl, strlen(doc) * 2 + 4096), AGG_OK);
    agg_alloc_fail_after(0); /* yajl must not need the allocator now */
    h = yajl_alloc(NULL, &afs, NULL);
    assert_non_null(h);
    assert_int_equal(yajl_parse(h, (const unsigned char *)doc, strlen(doc)), yajl_status_ok);
    assert_int_equal(yajl_complete_parse(h), yajl_status_ok);
    yajl_free(h);
    agg_alloc_fail_after(-1);
    assert_int_equal(pl.misses, 0);
    assert_int_equal(pl.lent, 0);
    agg_json_pool_trim(&pl, 0);
    assert_null(pl.free);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_parse_builds_the_tree_yajl_tree_parse_builds),
        cmocka_unit_test(test_json_parse_refuses_what_yajl_refuses_with_its_message),
        cmocka_unit_test(test_json_parse_stops_deeper_than_asked),
        cmocka_unit_test(test_json_parse_survives_allocation_failures),
        cmocka_unit_test(test_json_pool_lends_from_its_reserve_only),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
