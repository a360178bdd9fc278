/*
 * tests/test_api_req.c — the request framework's body parsing: what a body must be,
 * and an allocation failure anywhere in the parse answers 503, never crashes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/req.h"
#include "core/alloc.h"

static const struct api_route body_route = {
    EVHTTP_REQ_POST, "/t", API_ROLE_VIEWER, API_R_BODY, NULL, NULL, NULL, NULL, 0};

/* A request as the router makes it, with <len> bytes of <text> as its body. */
static struct api_req *req_with(const char *text, size_t len)
{
    struct api_req *r = calloc(1, sizeof(*r));

    assert_non_null(r);
    r->route = &body_route;
    r->query.tqh_first = NULL;
    r->query.tqh_last = &r->query.tqh_first;
    agg_buf_init(&r->sql);
    agg_buf_init(&r->out);
    r->body_text = malloc(len + 1);
    assert_non_null(r->body_text);
    memcpy(r->body_text, text, len);
    r->body_text[len] = '\0';
    return r;
}

static void free_req(struct api_req *r)
{
    yajl_tree_free(r->body);
    free(r->body_text);
    agg_buf_clear(&r->sql);
    agg_buf_clear(&r->out);
    free(r);
}

/* The status api_req_parse_body() sets for <text> (0 when it took it), and its code. */
static int parse_status(const char *text, size_t len, char code[32])
{
    struct api_req *r = req_with(text, len);
    int status = api_req_parse_body(r, len) ? 0 : r->status;

    snprintf(code, 32, "%s", r->ecode);
    if (status == 0)
        assert_true(YAJL_IS_OBJECT(r->body));
    free_req(r);
    return status;
}

static void test_req_body_must_be_one_json_object(void **state)
{
    static const char *const bad[] = {"{not json", "[1,2]", "\"text\"", "{\"a\":1} trailing",
                                      ("{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]"
                                       "]]]]]]]]]]]]]]]]]}")};
    char code[32];

    (void)state;
    assert_int_equal(parse_status("{\"a\":[1,{\"b\":null}]}", 20, code), 0);
    assert_int_equal(parse_status("/* note */ {}", 13, code), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse_status(bad[i], strlen(bad[i]), code), 400);
        assert_string_equal(code, "bad_json");
    }
    assert_int_equal(parse_status("{\"a\":\"\0\"}", 9, code), 400);
    assert_string_equal(code, "bad_json");
}

static void test_req_body_parse_answers_503_when_memory_runs_out(void **state)
{
    static const char body[] =
        "{\"name\":\"orders\",\"source_config\":{\"kind\":\"s3\",\"n\":[1,2.5,"
        "true,null]},\"description\":\"caf\\u00e9\"}";
    bool done = false;
    long n;

    (void)state;
    for (n = 0; !done; n++) {
        struct api_req *r = req_with(body, sizeof(body) - 1);
        bool ok;

        agg_alloc_fail_after(n);
        ok = api_req_parse_body(r, sizeof(body) - 1);
        agg_alloc_fail_after(-1);
        if (ok) {
            done = true;
            assert_true(YAJL_IS_OBJECT(r->body));
            assert_int_equal(r->body->u.object.len, 3);
        } else {
            assert_int_equal(r->status, 503);
            assert_string_equal(r->ecode, "unavailable");
            assert_null(r->body);
        }
        free_req(r);
    }
    assert_true(n > 10); /* failures reached the pool and the tree's nodes */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_req_body_must_be_one_json_object),
        cmocka_unit_test(test_req_body_parse_answers_503_when_memory_runs_out),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
