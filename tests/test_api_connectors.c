/*
 * tests/test_api_connectors.c — which config keys of a connector name secrets. The
 * sealing, masking and PATCH merge run against PostgreSQL:
 * tests/integration/test_api_catalog.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "api/connectors.h"

static void test_connectors_secret_names_end_with_a_secret_word(void **state)
{
    static const char *const secret[] = {
        "password",
        "db_password",
        "PASSWORD",
        "Db-Password",
        "passwd",
        "passphrase",
        "secret",
        "client_secret",
        "token",
        "refresh_token",
        "Refresh-Token",
        "api_key",
        "API-KEY",
        "apikey",
        "myapikey",
        "private_key",
        "ssh-private-key",
        "access_key",
        "AWS_SECRET_ACCESS_KEY",
        "secret_key",
        "credentials",
        "gcp_credentials",
        "x_token",
        NULL,
    };

    (void)state;
    for (size_t i = 0; secret[i] != NULL; i++) {
        if (!api_connector_is_secret_name(secret[i]))
            fail_msg("\"%s\" should name a secret", secret[i]);
    }
}

static void test_connectors_other_names_are_not_secrets(void **state)
{
    static const char *const plain[] = {
        "host",
        "user",
        "username",
        "tokens",
        "tokens_max",
        "secret_santa_enabled",
        "password_policy",
        "key",
        "public_key",
        "api",
        "keys",
        "credential_type",
        "",
        NULL,
    };

    (void)state;
    for (size_t i = 0; plain[i] != NULL; i++) {
        if (api_connector_is_secret_name(plain[i]))
            fail_msg("\"%s\" should not name a secret", plain[i]);
    }
}

static void test_connectors_long_names_are_judged_by_their_end(void **state)
{
    char name[1024];

    (void)state;
    memset(name, 'x', sizeof(name));
    strcpy(name + sizeof(name) - 10, "_password");
    assert_true(api_connector_is_secret_name(name));
    name[sizeof(name) - 2] = 'X';
    name[sizeof(name) - 1] = '\0';
    assert_false(api_connector_is_secret_name(name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connectors_secret_names_end_with_a_secret_word),
        cmocka_unit_test(test_connectors_other_names_are_not_secrets),
        cmocka_unit_test(test_connectors_long_names_are_judged_by_their_end),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
