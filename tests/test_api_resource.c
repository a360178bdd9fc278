/*
 * tests/test_api_resource.c — the API's body validation, SQL text from the field
 * tables, paging parameters and the login rate limiter, on requests built by hand.
 * No network, no database: the routes themselves are covered by
 * tests/integration/test_api*.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/login.h"
#include "api/req.h"
#include "api/resource.h"
#include "core/alloc.h"

static const struct api_route create_route = {EVHTTP_REQ_POST, "/t", API_ROLE_VIEWER, 0, NULL,
                                              NULL, NULL, NULL, 0};

/* A request whose body is <json>; free with free_req(). */
static struct api_req *req_with(const char *json)
{
    struct api_req *r = calloc(1, sizeof(*r));
    char why[128];

    assert_non_null(r);
    r->route = &create_route;
    r->query.tqh_first = NULL;
    r->query.tqh_last = &r->query.tqh_first;
    agg_buf_init(&r->sql);
    agg_buf_init(&r->out);
    r->body_text = strdup(json);
    r->body = yajl_tree_parse(json, why, sizeof(why));
    assert_non_null(r->body);
    return r;
}

static void free_req(struct api_req *r)
{
    yajl_tree_free(r->body);
    free(r->body_text);
    api_sql_reset(r);
    evhttp_clear_headers(&r->query);
    agg_buf_clear(&r->sql);
    agg_buf_clear(&r->out);
    free(r->data);
    free(r);
}

/* Validates <json> against <res>; returns the HTTP status (0 when valid) and leaves the
 * field at fault in <field>. */
static int validate(const struct api_resource *res, const char *json, bool create,
                    char field[64])
{
    struct api_req *r = req_with(json);
    int status = api_res_validate(r, res, create) ? 0 : r->status;

    snprintf(field, 64, "%s", r->efield);
    free_req(r);
    return status;
}

static const char pipeline_ok[] =
    "{\"name\":\"p\",\"source_config\":{},\"destination_config\":{\"a\":[1]}}";

static void test_resource_accepts_a_valid_pipeline(void **state)
{
    struct api_req *r = req_with(pipeline_ok);

    (void)state;
    assert_true(api_res_validate(r, &api_res_pipelines, true));
    assert_int_equal(r->status, 0);
    assert_true(r->present & (UINT64_C(1) << api_res_field(&api_res_pipelines, "name", 4)));
    assert_false(r->present & (UINT64_C(1) << api_res_field(&api_res_pipelines, "schedule", 8)));
    free_req(r);
}

static void test_resource_names_the_field_at_fault(void **state)
{
    static const struct {
        const char *json;
        bool create;
        int status;
        const char *field;
    } cases[] = {
        {"{\"name\":\"p\",\"bogus\":1}", false, 400, "bogus"},
        {"{\"id\":4}", false, 400, "id"},
        {"{\"owner_id\":4}", false, 400, "owner_id"},
        {"{\"name\":7}", false, 422, "name"},
        {"{\"name\":null}", false, 422, "name"},
        {"{\"name\":\"\"}", false, 422, "name"},
        {"{\"description\":null}", false, 0, ""},
        {"{\"source_config\":[]}", false, 422, "source_config"},
        {"{\"is_active\":0}", false, 422, "is_active"},
        {"{\"name\":\"p\",\"source_config\":{}}", true, 422, "destination_config"},
        {"{\"schedule\":\"x\"}", false, 0, ""},
    };
    char field[64];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = validate(&api_res_pipelines, cases[i].json, cases[i].create, field);

        if (got != cases[i].status || strcmp(field, cases[i].field) != 0)
            fail_msg("%s: got %d \"%s\", want %d \"%s\"", cases[i].json, got, field,
                     cases[i].status, cases[i].field);
    }
}

static void test_resource_counts_characters_not_bytes(void **state)
{
    /* "é" is two bytes: 255 of them fit varchar(255), 256 do not */
    char json[1200], field[64];
    size_t n = (size_t)snprintf(json, sizeof(json), "{\"name\":\"");

    (void)state;
    for (int i = 0; i < 255; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, "\xc3\xa9");
    snprintf(json + n, sizeof(json) - n, "\"}");
    assert_int_equal(validate(&api_res_pipelines, json, false, field), 0);
    snprintf(json + n, sizeof(json) - n, "\xc3\xa9\"}");
    assert_int_equal(validate(&api_res_pipelines, json, false, field), 422);
    assert_string_equal(field, "name");
}

static void test_resource_checks_enums_ranges_and_custom_rules(void **state)
{
    char field[64];

    (void)state;
    assert_int_equal(validate(&api_res_users, "{\"role\":\"root\"}", false, field), 422);
    assert_string_equal(field, "role");
    assert_int_equal(validate(&api_res_users, "{\"role\":\"editor\"}", false, field), 0);
    assert_int_equal(validate(&api_res_users, "{\"email\":\"no-at-sign\"}", false, field), 422);
    assert_string_equal(field, "email");
    assert_int_equal(validate(&api_res_runs, "{\"records_processed\":-1}", false, field), 422);
    assert_int_equal(validate(&api_res_runs, "{\"records_processed\":2.5}", false, field), 422);
    assert_int_equal(validate(&api_res_runs, "{\"status\":\"running\"}", true, field), 400);
    assert_int_equal(validate(&api_res_policies,
                              "{\"levels\":[{\"after_minutes\":5,\"channels\":[]}]}", false,
                              field),
                     422);
    assert_string_equal(field, "levels");
    assert_int_equal(validate(&api_res_endpoints, "{\"secret\":\"whsec_c2hvcnQ=\"}", false, field),
                     422);
    assert_int_equal(validate(&api_res_endpoints,
                              "{\"secret\":\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}", false,
                              field),
                     0);
    assert_int_equal(validate(&api_res_rules, "{\"metric\":\"count{level>=ERROR}[5m]\"}", false,
                              field),
                     0);
    assert_int_equal(validate(&api_res_rules, "{\"metric\":\"count[5x]\"}", false, field), 422);
    assert_string_equal(field, "metric");
    assert_int_equal(validate(&api_res_rules, "{\"notification_channels\":[\"slack:\"]}", false,
                              field),
                     422);
    assert_int_equal(validate(&api_res_rules,
                              "{\"notification_channels\":[\"slack:ops\",\"email\"]}", false,
                              field),
                     0);
}

static void test_resource_output_never_holds_secrets(void **state)
{
    struct agg_buf sql;

    (void)state;
    agg_buf_init(&sql);
    assert_int_equal(api_res_json_expr(&sql, &api_res_users), AGG_OK);
    assert_null(strstr(sql.data, "password"));
    assert_non_null(strstr(sql.data, "'email', email"));
    agg_buf_reset(&sql);
    assert_int_equal(api_res_json_expr(&sql, &api_res_endpoints), AGG_OK);
    assert_null(strstr(sql.data, "'secret'"));
    assert_non_null(strstr(sql.data, "'has_secret'"));
    agg_buf_clear(&sql);
}

static void test_resource_columns_are_the_present_writable_ones(void **state)
{
    struct api_req *r = req_with("{\"schedule\":\"x\",\"name\":\"n\"}");
    struct agg_buf cols;

    (void)state;
    agg_buf_init(&cols);
    assert_true(api_res_validate(r, &api_res_pipelines, false));
    assert_int_equal(api_res_columns(&cols, &api_res_pipelines, r->present, false), 2);
    assert_string_equal(cols.data, "name, schedule");
    agg_buf_reset(&cols);
    assert_int_equal(api_res_columns(&cols, &api_res_pipelines, 0, true), 8);
    assert_null(strstr(cols.data, "owner_id"));
    agg_buf_clear(&cols);
    free_req(r);
}

static void test_resource_sql_text_survives_allocation_failures(void **state)
{
    (void)state;
    for (long n = 0;; n++) {
        struct agg_buf sql;
        int rc;

        agg_buf_init(&sql);
        agg_alloc_fail_after(n);
        rc = api_res_json_expr(&sql, &api_res_alerts);
        agg_alloc_fail_after(-1);
        agg_buf_clear(&sql);
        if (rc == AGG_OK)
            break;
        assert_int_equal(rc, AGG_ENOMEM);
        assert_true(n < 100);
    }
}

static void test_page_parses_limit_and_cursor(void **state)
{
    struct api_req *r = req_with("{}");
    char cursor[64];

    (void)state;
    api_cursor_encode("12345", cursor, sizeof(cursor));
    assert_int_equal(evhttp_parse_query_str("limit=7", &r->query), 0);
    assert_true(api_page_parse(r));
    assert_int_equal(r->page.limit, 7);
    assert_false(r->page.has_cursor);
    evhttp_clear_headers(&r->query);
    assert_int_equal(evhttp_parse_query_str("cursor=", &r->query), 0);
    assert_false(api_page_parse(r));
    assert_string_equal(r->efield, "cursor");
    evhttp_clear_headers(&r->query);
    {
        char q[96];

        snprintf(q, sizeof(q), "cursor=%s", cursor);
        assert_int_equal(evhttp_parse_query_str(q, &r->query), 0);
    }
    assert_true(api_page_parse(r));
    assert_int_equal(r->page.limit, API_LIMIT_DEFAULT);
    assert_string_equal(r->page.cursor, "12345");
    free_req(r);
    for (int i = 0; i < 3; i++) {
        static const char *const bad[] = {"limit=0", "limit=501", "limit=5x"};

        r = req_with("{}");
        assert_int_equal(evhttp_parse_query_str(bad[i], &r->query), 0);
        assert_false(api_page_parse(r));
        assert_int_equal(r->status, 400);
        assert_string_equal(r->efield, "limit");
        free_req(r);
    }
}

static void test_login_limits_failures_per_email_and_address(void **state)
{
    struct api_login *login;
    struct agg_err err = {0};

    (void)state;
    login = api_login_new(NULL, 30, &err);
    assert_non_null(login);
    for (int i = 0; i < 5; i++) {
        struct api_req *r = req_with("{\"email\":\"A@example.com\",\"password\":\"x\"}");

        r->ctx = login;
        snprintf(r->peer_ip, sizeof(r->peer_ip), "10.0.0.1");
        assert_true(api_login_prepare(r));
        ((struct api_login_attempt *)r->data)->failed = true;
        api_login_done(r);
        free_req(r);
    }
    {
        /* the same address (any case of the email), then the same email elsewhere */
        static const char *const who[][2] = {
            {"{\"email\":\"a@example.com\",\"password\":\"x\"}", "10.0.0.9"},
            {"{\"email\":\"b@example.com\",\"password\":\"x\"}", "10.0.0.1"},
            {"{\"email\":\"b@example.com\",\"password\":\"x\"}", "10.0.0.9"},
        };
        static const bool limited[] = {true, true, false};

        for (int i = 0; i < 3; i++) {
            struct api_req *r = req_with(who[i][0]);

            r->ctx = login;
            snprintf(r->peer_ip, sizeof(r->peer_ip), "%s", who[i][1]);
            assert_int_equal(api_login_prepare(r), !limited[i]);
            if (limited[i]) {
                assert_int_equal(r->status, 429);
                assert_true(r->retry_after_s > 0 && r->retry_after_s <= 15 * 60 + 1);
            }
            free_req(r);
        }
    }
    api_login_free(login);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resource_accepts_a_valid_pipeline),
        cmocka_unit_test(test_resource_names_the_field_at_fault),
        cmocka_unit_test(test_resource_counts_characters_not_bytes),
        cmocka_unit_test(test_resource_checks_enums_ranges_and_custom_rules),
        cmocka_unit_test(test_resource_output_never_holds_secrets),
        cmocka_unit_test(test_resource_columns_are_the_present_writable_ones),
        cmocka_unit_test(test_resource_sql_text_survives_allocation_failures),
        cmocka_unit_test(test_page_parses_limit_and_cursor),
        cmocka_unit_test(test_login_limits_failures_per_email_and_address),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
