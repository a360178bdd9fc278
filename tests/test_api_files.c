/*
 * tests/test_api_files.c — the pure parts of file uploads: the path rule, chunk
 * arithmetic, the declaration's checks, file types, Range and Content-Disposition.
 * No network, no database: the routes are covered by
 * tests/integration/test_api_files.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/files.h"
#include "api/files_int.h"
#include "api/uploads.h"
#include "core/alloc.h"

static const struct api_route create_route = {EVHTTP_REQ_POST, "/api/v1/files", API_ROLE_EDITOR,
                                              API_R_BODY, &api_res_files, NULL, NULL, NULL, 0};

/* Runs the declaration's checks on <json>; returns the status (0: accepted) and copies
 * the field at fault into <field>. */
static int declare(const char *json, char field[64])
{
    struct api_req *r = calloc(1, sizeof(*r));
    char why[128];
    int status;

    assert_non_null(r);
    r->route = &create_route;
    agg_buf_init(&r->sql);
    agg_buf_init(&r->out);
    r->body_text = strdup(json);
    r->body = yajl_tree_parse(json, why, sizeof(why));
    assert_non_null(r->body);
    status = api_files_prepare_create(r) ? 0 : r->status;
    memcpy(field, r->efield, 64);
    yajl_tree_free(r->body);
    free(r->body_text);
    api_sql_reset(r);
    agg_buf_clear(&r->sql);
    agg_buf_clear(&r->out);
    free(r);
    return status;
}

static void test_files_path_rule_and_names(void **state)
{
    char buf[64];

    (void)state;
    assert_true(api_upload_path("/var/up", 42, API_UPLOAD_PART, buf, sizeof(buf)));
    assert_string_equal(buf, "/var/up/42.part");
    assert_false(api_upload_path("/var/up", 42, API_UPLOAD_DATA, buf, 12));
    assert_int_equal(api_upload_id_of("42.data"), 42);
    assert_int_equal(api_upload_id_of("7.part"), 7);
    assert_int_equal(api_upload_id_of("042.data"), 0);
    assert_int_equal(api_upload_id_of("42.data.tmp"), 0);
    assert_int_equal(api_upload_id_of(".data"), 0);
    assert_int_equal(api_upload_id_of("x42.data"), 0);
    assert_int_equal(api_upload_id_of("99999999999.data"), 0);
}

static void test_files_chunks_are_equal_but_the_last(void **state)
{
    (void)state;
    assert_int_equal(api_files_chunk_size(10, 4), 3);
    assert_int_equal(api_files_chunk_len(10, 4, 0), 3);
    assert_int_equal(api_files_chunk_len(10, 4, 3), 1);
    assert_int_equal(api_files_chunk_len(50LL << 20, 25, 24), 2LL << 20);
    assert_int_equal(api_files_chunk_len(0, 1, 0), 0);
    assert_int_equal(api_files_chunk_len(5, 1, 0), 5);
}

static void test_files_declaration_names_the_field_at_fault(void **state)
{
    char field[64];

    (void)state;
    assert_int_equal(declare("{\"filename\":\"a.csv\",\"file_size\":10,\"total_chunks\":4}",
                             field), 0);
    assert_int_equal(declare("{\"filename\":\"a/b\",\"file_size\":1}", field), 422);
    assert_string_equal(field, "filename");
    assert_int_equal(declare("{\"file_size\":1,\"filename\":\"a\\u0000b\"}", field), 422);
    assert_string_equal(field, "filename");
    assert_int_equal(declare("{\"filename\":\"a\",\"file_size\":1,\"metadata\":{\"k\":["
                             "\"\\u0000\"]}}", field), 422);
    assert_string_equal(field, "metadata");
    /* an escaped backslash before "u0000" is no NUL */
    assert_int_equal(declare("{\"filename\":\"a\",\"file_size\":1,\"metadata\":{\"k\":"
                             "\"\\\\u0000\"}}", field), 0);
    assert_int_equal(declare("{\"filename\":\"a\",\"file_size\":17825792}", field), 422);
    assert_string_equal(field, "total_chunks");
    assert_int_equal(declare("{\"filename\":\"a\",\"file_size\":17825792,\"total_chunks\":2}",
                             field), 0);
    assert_int_equal(declare("{\"filename\":\"a\",\"file_size\":10,\"total_chunks\":6}", field),
                     422);
    assert_int_equal(declare("{\"filename\":\"a\",\"file_size\":0,\"total_chunks\":2}", field),
                     422);
    assert_int_equal(declare("{\"filename\":\"a\",\"file_size\":1,\"file_hash\":\"ab\"}", field),
                     422);
    assert_string_equal(field, "file_hash");
    assert_int_equal(declare("{\"filename\":\"a\",\"file_size\":1,\"mime_type\":\"text\"}",
                             field), 422);
    assert_int_equal(declare("{\"filename\":\"a\",\"file_size\":1,"
                             "\"expires_at\":\"2000-01-01T00:00:00Z\"}", field), 422);
    assert_string_equal(field, "expires_at");
    assert_int_equal(declare("{\"filename\":\"a\",\"file_size\":1,"
                             "\"expires_at\":\"2999-01-01T00:00:00Z\"}", field), 0);
    assert_int_equal(declare("{\"filename\":\"a\",\"file_size\":1,\"status\":\"uploaded\"}",
                             field), 400);
}

static void test_files_type_from_extension_then_mime(void **state)
{
    (void)state;
    assert_string_equal(api_files_type_of("a.CSV", NULL), "csv");
    assert_string_equal(api_files_type_of("a.jsonl", "text/csv"), "ndjson");
    assert_string_equal(api_files_type_of("dump", "text/csv; charset=utf-8"), "csv");
    assert_string_equal(api_files_type_of("dump", "text/csvx"), "binary");
    assert_string_equal(api_files_type_of("x.tar.gz", NULL), "gzip");
    assert_string_equal(api_files_type_of("noext", NULL), "binary");
}

static void test_files_single_ranges_only(void **state)
{
    struct api_files_range rg;
    long long off, len;

    (void)state;
    api_files_parse_range("bytes=10-19", &rg);
    assert_true(rg.ranged);
    assert_true(api_files_pick_range(&rg, 100, &off, &len));
    assert_int_equal(off, 10);
    assert_int_equal(len, 10);
    api_files_parse_range("bytes=90-", &rg);
    assert_true(api_files_pick_range(&rg, 100, &off, &len));
    assert_int_equal(len, 10);
    api_files_parse_range("bytes=90-500", &rg);
    assert_true(api_files_pick_range(&rg, 100, &off, &len));
    assert_int_equal(len, 10);
    api_files_parse_range("bytes=-30", &rg);
    assert_true(api_files_pick_range(&rg, 100, &off, &len));
    assert_int_equal(off, 70);
    assert_int_equal(len, 30);
    api_files_parse_range("bytes=-300", &rg);
    assert_true(api_files_pick_range(&rg, 100, &off, &len));
    assert_int_equal(off, 0);
    assert_int_equal(len, 100);
    api_files_parse_range("bytes=100-", &rg);
    assert_false(api_files_pick_range(&rg, 100, &off, &len));
    api_files_parse_range("bytes=-0", &rg);
    assert_false(api_files_pick_range(&rg, 100, &off, &len));
    /* ignored: the whole file */
    static const char *const whole[] = {NULL,         "bytes=1-2,5-6", "items=1-2", "bytes=5-1",
                                        "bytes=-",    "bytes=x-1",     "bytes=1-2x",
                                        "bytes=99999999999999999999-"};
    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++) {
        api_files_parse_range(whole[i], &rg);
        assert_false(rg.ranged);
        assert_true(api_files_pick_range(&rg, 100, &off, &len));
        assert_int_equal(off, 0);
        assert_int_equal(len, 100);
    }
}

static void test_files_disposition_is_safely_quoted(void **state)
{
    struct agg_buf b;

    (void)state;
    agg_buf_init(&b);
    assert_int_equal(api_files_disposition(&b, "plain.csv"), AGG_OK);
    assert_string_equal(b.data, "attachment; filename=\"plain.csv\"; filename*=UTF-8''plain.csv");
    agg_buf_reset(&b);
    assert_int_equal(api_files_disposition(&b, "a\"b\\c d\xc3\xa9;.txt"), AGG_OK);
    assert_string_equal(b.data, "attachment; filename=\"a_b_c d__;.txt\"; "
                                "filename*=UTF-8''a%22b%5Cc%20d%C3%A9%3B.txt");
    agg_buf_clear(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_path_rule_and_names),
        cmocka_unit_test(test_files_chunks_are_equal_but_the_last),
        cmocka_unit_test(test_files_declaration_names_the_field_at_fault),
        cmocka_unit_test(test_files_type_from_extension_then_mime),
        cmocka_unit_test(test_files_single_ranges_only),
        cmocka_unit_test(test_files_disposition_is_safely_quoted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
