/*
 * tests/test_api_mappings.c — field lookup in the two schema shapes schema mappings
 * accept. The 422s run against PostgreSQL: tests/integration/test_api_catalog.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "api/mappings.h"
#include "core/json.h"

static yajl_val parse(const char *text)
{
    char why[160];
    yajl_val v = NULL;

    assert_int_equal(agg_json_parse(text, strlen(text), 32, &v, why, sizeof(why)), 0);
    return v;
}

static void test_mappings_json_schema_fields_nest_with_dots(void **state)
{
    yajl_val s = parse("{\"type\":\"object\",\"properties\":{"
                       "\"user\":{\"type\":\"object\",\"properties\":{\"mail\":{}}},"
                       "\"tags\":{\"type\":\"array\",\"items\":{\"properties\":{\"k\":{}}}},"
                       "\"a.b\":{}}}");

    (void)state;
    assert_true(api_mapping_has_field(s, "user"));
    assert_true(api_mapping_has_field(s, "user.mail"));
    assert_true(api_mapping_has_field(s, "tags.k"));
    assert_true(api_mapping_has_field(s, "a.b"));
    assert_false(api_mapping_has_field(s, "user.phone"));
    assert_false(api_mapping_has_field(s, "user.mail.x"));
    assert_false(api_mapping_has_field(s, "use"));
    assert_false(api_mapping_has_field(s, "user."));
    assert_false(api_mapping_has_field(s, "mail"));
    assert_false(api_mapping_has_field(s, ""));
    yajl_tree_free(s);
}

static void test_mappings_field_lists_nest_with_dots(void **state)
{
    yajl_val s = parse("{\"fields\":[{\"name\":\"email\",\"type\":\"string\"},"
                       "{\"name\":\"meta\",\"fields\":[{\"name\":\"tag\"}]},"
                       "{\"name\":\"event.time\"}]}");

    (void)state;
    assert_true(api_mapping_has_field(s, "email"));
    assert_true(api_mapping_has_field(s, "meta.tag"));
    assert_true(api_mapping_has_field(s, "event.time"));
    assert_false(api_mapping_has_field(s, "event"));
    assert_false(api_mapping_has_field(s, "meta.other"));
    assert_false(api_mapping_has_field(s, "emails"));
    yajl_tree_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mappings_json_schema_fields_nest_with_dots),
        cmocka_unit_test(test_mappings_field_lists_nest_with_dots),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
