/*
 * tests/test_api_auth.c — password hashing and verification (Argon2id, legacy bcrypt),
 * token format and token hashing, user field checks. No database: the SQL paths are
 * covered by tests/integration/test_auth_cli.py.
 *
 * Traps: each Argon2id hash or verify costs 256 MiB and about a second, so the cases
 *        share hashes where they can.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "api/auth.h"
#include "core/alloc.h"

/* bcrypt hashes made by implementations other than the libcrypt that verifies them. */

/* `htpasswd -bnBC 10 "" secret` (Debian apache2-utils 2.4.71-1~deb12u1, APR's bcrypt),
 * generated for this test; htpasswd writes the $2y$ prefix. */
static const char htpasswd_2y_secret[] =
    "$2y$10$zdxC0niJ/uBzDtsSLpfzY.vRb81a9SG36M1kWF5AON36TfuLigBDy";
/* The same htpasswd run at cost 4, for a non-ASCII password with a space. */
static const char htpasswd_2y_umlauts[] =
    "$2y$04$mVcsZqXlo6Rd4i8mNLnDMeJ7u4lUSv6YdJdyy5w3OoRMVjPKXi.12";
/* pyca/bcrypt's published test vectors (tests/test_bcrypt.py): "$2b$" hashes. */
static const char pyca_2b_password[] = "Kk4DQuMMfZL9o";
static const char pyca_2b_hash[] = "$2b$04$cVWp4XaNU8a4v1uMRum2SO026BWLIoQMD/TXg5uZV.0P.uO8m3YEm";
static const char pyca_2b_password2[] = "9IeRXmnGxMYbs";
static const char pyca_2b_hash2[] = "$2b$04$pQ7gRO7e6wx/936oXhNjrOUNOHL1D0h1N2IDbJZYs.1ppzSof6SPy";
/* Openwall crypt_blowfish's wrapper.c test vector: a "$2a$" hash of "U*U". */
static const char openwall_2a_hash[] =
    "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";

static void test_auth_argon2id_hash_verifies_only_its_password(void **state)
{
    char hash[API_AUTH_PWHASH_SIZE];
    struct agg_err err = {0};
    bool rehash = true;

    (void)state;
    assert_int_equal(api_auth_hash_password("correct horse", hash, &err), AGG_OK);
    assert_memory_equal(hash, "$argon2id$", 10);
    assert_true(strlen(hash) < sizeof(hash));
    assert_true(api_auth_verify_password(hash, "correct horse", &rehash));
    assert_false(rehash); /* made with today's parameters */
    rehash = true;
    assert_false(api_auth_verify_password(hash, "correct horsf", &rehash));
    assert_false(rehash);
    assert_false(api_auth_verify_password(hash, "", NULL));
    assert_false(api_auth_verify_password(hash, NULL, NULL));
}

static void test_auth_argon2id_hashes_are_salted(void **state)
{
    char a[API_AUTH_PWHASH_SIZE], b[API_AUTH_PWHASH_SIZE];

    (void)state;
    assert_int_equal(api_auth_hash_password("same", a, NULL), AGG_OK);
    assert_int_equal(api_auth_hash_password("same", b, NULL), AGG_OK);
    assert_string_not_equal(a, b);
}

static void test_auth_hash_refuses_empty_and_overlong_passwords(void **state)
{
    char hash[API_AUTH_PWHASH_SIZE];
    char longpw[API_AUTH_PASSWORD_MAX + 2];
    struct agg_err err = {0};

    (void)state;
    assert_int_equal(api_auth_hash_password("", hash, &err), AGG_EINVAL);
    assert_non_null(strstr(err.msg, "empty"));
    assert_string_equal(hash, "");
    assert_int_equal(api_auth_hash_password(NULL, hash, &err), AGG_EINVAL);
    memset(longpw, 'x', sizeof(longpw) - 1);
    longpw[sizeof(longpw) - 1] = '\0';
    assert_int_equal(api_auth_hash_password(longpw, hash, &err), AGG_EINVAL);
    assert_non_null(strstr(err.msg, "longer"));
}

/* An Argon2id hash with weaker parameters than today's (libsodium's INTERACTIVE
 * limits, as an older aggd or another tool might have used) still verifies, and asks
 * to be replaced. */
static void test_auth_argon2id_with_old_parameters_needs_rehash(void **state)
{
    char hash[API_AUTH_PWHASH_SIZE];
    bool rehash = false;

    (void)state;
    assert_true(sodium_init() >= 0);
    assert_int_equal(crypto_pwhash_str(hash, "old", 3, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                       crypto_pwhash_MEMLIMIT_INTERACTIVE),
                     0);
    assert_true(api_auth_verify_password(hash, "old", &rehash));
    assert_true(rehash);
}

static void test_auth_bcrypt_from_htpasswd_verifies_and_needs_rehash(void **state)
{
    bool rehash = false;

    (void)state;
    assert_true(api_auth_verify_password(htpasswd_2y_secret, "secret", &rehash));
    assert_true(rehash);
    rehash = true;
    assert_false(api_auth_verify_password(htpasswd_2y_secret, "Secret", &rehash));
    assert_false(rehash);
    assert_false(api_auth_verify_password(htpasswd_2y_secret, "", &rehash));
    assert_true(api_auth_verify_password(htpasswd_2y_umlauts, "p\xc3\xa4ssw\xc3\xb6rd long", NULL));
}

static void test_auth_bcrypt_2b_and_2a_vectors_verify(void **state)
{
    bool rehash = false;

    (void)state;
    assert_true(api_auth_verify_password(pyca_2b_hash, pyca_2b_password, &rehash));
    assert_true(rehash);
    assert_true(api_auth_verify_password(pyca_2b_hash2, pyca_2b_password2, NULL));
    assert_false(api_auth_verify_password(pyca_2b_hash, pyca_2b_password2, NULL));
    assert_true(api_auth_verify_password(openwall_2a_hash, "U*U", NULL));
    assert_false(api_auth_verify_password(openwall_2a_hash, "U*U*", NULL));
}

static void test_auth_bcrypt_verify_survives_allocation_failure(void **state)
{
    (void)state;
    agg_alloc_fail_after(0);
    assert_false(api_auth_verify_password(pyca_2b_hash, pyca_2b_password, NULL));
    agg_alloc_fail_after(-1);
    assert_true(api_auth_verify_password(pyca_2b_hash, pyca_2b_password, NULL));
}

static void test_auth_unknown_or_damaged_hashes_never_verify(void **state)
{
    char damaged[sizeof(pyca_2b_hash)];
    bool rehash = true;

    (void)state;
    assert_false(api_auth_verify_password("secret", "secret", &rehash));
    assert_false(rehash);
    assert_false(api_auth_verify_password("", "secret", NULL));
    assert_false(api_auth_verify_password(NULL, "secret", NULL));
    assert_false(api_auth_verify_password("$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", "secret", NULL));
    assert_false(api_auth_verify_password("$argon2i$v=19$m=4096,t=3,p=1$xx$yy", "x", NULL));
    assert_false(api_auth_verify_password("$argon2id$garbage", "secret", NULL));
    assert_false(api_auth_verify_password("$2b$04$short", pyca_2b_password, NULL));
    memcpy(damaged, pyca_2b_hash, sizeof(damaged));
    damaged[40] = damaged[40] == 'm' ? 'n' : 'm';
    assert_false(api_auth_verify_password(damaged, pyca_2b_password, NULL));
}

static bool is_base64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static void test_auth_token_new_has_prefix_length_and_alphabet(void **state)
{
    char a[API_AUTH_TOKEN_SIZE], b[API_AUTH_TOKEN_SIZE];

    (void)state;
    assert_int_equal(api_auth_token_new(a, NULL), AGG_OK);
    assert_int_equal(api_auth_token_new(b, NULL), AGG_OK);
    assert_int_equal(strlen(a), API_AUTH_TOKEN_LEN);
    assert_int_equal(strlen(a), 5 + 43); /* 32 bytes in base64 without padding */
    assert_memory_equal(a, "aggd_", 5);
    for (size_t i = 5; i < API_AUTH_TOKEN_LEN; i++)
        assert_true(is_base64url(a[i]));
    assert_string_not_equal(a, b);
    /* the shape refused without asking PostgreSQL */
    assert_true(api_auth_is_token_shaped(a));
    assert_false(api_auth_is_token_shaped(NULL));
    assert_false(api_auth_is_token_shaped(""));
    a[API_AUTH_TOKEN_LEN - 1] = '\0';
    assert_false(api_auth_is_token_shaped(a)); /* one short */
    b[0] = 'A';
    assert_false(api_auth_is_token_shaped(b)); /* not the prefix */
}

static void test_auth_token_hash_is_lowercase_hex_sha256(void **state)
{
    char hex[API_AUTH_TOKEN_HASH_SIZE];

    (void)state;
    /* FIPS 180-2, appendix B.1 */
    api_auth_token_hash("abc", hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    api_auth_token_hash("", hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_auth_check_user_rejects_bad_fields(void **state)
{
    char longname[300];
    struct agg_err err = {0};

    (void)state;
    assert_int_equal(api_auth_check_user("a@example.com", "admin", NULL, &err), AGG_OK);
    assert_int_equal(api_auth_check_user("a@example.com", "viewer", "A. Name", &err), AGG_OK);
    assert_int_equal(api_auth_check_user("", "admin", NULL, &err), AGG_EINVAL);
    assert_int_equal(api_auth_check_user("nobody", "admin", NULL, &err), AGG_EINVAL);
    assert_non_null(strstr(err.msg, "user@domain"));
    assert_int_equal(api_auth_check_user("@example.com", "admin", NULL, &err), AGG_EINVAL);
    assert_int_equal(api_auth_check_user("a@", "admin", NULL, &err), AGG_EINVAL);
    assert_int_equal(api_auth_check_user("a b@example.com", "admin", NULL, &err), AGG_EINVAL);
    assert_int_equal(api_auth_check_user("a\n@example.com", "admin", NULL, &err), AGG_EINVAL);
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(api_auth_check_user("a@example.com", "root", NULL, &err), AGG_EINVAL);
    assert_non_null(strstr(err.msg, "role"));
    assert_int_equal(api_auth_check_user("a@example.com", NULL, NULL, &err), AGG_EINVAL);
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(api_auth_check_user("a@example.com", "editor", longname, &err), AGG_EINVAL);
    assert_non_null(strstr(err.msg, "full name"));
    longname[250] = '@';
    assert_int_equal(api_auth_check_user(longname, "editor", NULL, &err), AGG_EINVAL);
}

/* varchar(255) counts characters: 255 two-byte characters make a valid name, 256 not. */
static void test_auth_check_user_counts_name_in_characters(void **state)
{
    char name[2 * 256 + 1];
    struct agg_err err = {0};

    (void)state;
    for (size_t i = 0; i < 256; i++)
        memcpy(name + 2 * i, "\xc3\xa9", 2);
    name[2 * 255] = '\0';
    assert_int_equal(api_auth_check_user("a@example.com", "editor", name, &err), AGG_OK);
    name[2 * 255] = '\xc3';
    name[2 * 256] = '\0';
    assert_int_equal(api_auth_check_user("a@example.com", "editor", name, &err), AGG_EINVAL);
}

static void test_auth_roles_and_scopes_are_closed_sets(void **state)
{
    (void)state;
    assert_true(api_auth_is_role("admin"));
    assert_true(api_auth_is_role("editor"));
    assert_true(api_auth_is_role("viewer"));
    assert_false(api_auth_is_role("Admin"));
    assert_false(api_auth_is_role(""));
    assert_false(api_auth_is_role(NULL));
    assert_true(api_auth_is_scope("ingest"));
    assert_true(api_auth_is_scope("api"));
    assert_false(api_auth_is_scope("admin"));
    assert_false(api_auth_is_scope(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_argon2id_hash_verifies_only_its_password),
        cmocka_unit_test(test_auth_argon2id_hashes_are_salted),
        cmocka_unit_test(test_auth_hash_refuses_empty_and_overlong_passwords),
        cmocka_unit_test(test_auth_argon2id_with_old_parameters_needs_rehash),
        cmocka_unit_test(test_auth_bcrypt_from_htpasswd_verifies_and_needs_rehash),
        cmocka_unit_test(test_auth_bcrypt_2b_and_2a_vectors_verify),
        cmocka_unit_test(test_auth_bcrypt_verify_survives_allocation_failure),
        cmocka_unit_test(test_auth_unknown_or_damaged_hashes_never_verify),
        cmocka_unit_test(test_auth_token_new_has_prefix_length_and_alphabet),
        cmocka_unit_test(test_auth_token_hash_is_lowercase_hex_sha256),
        cmocka_unit_test(test_auth_check_user_rejects_bad_fields),
        cmocka_unit_test(test_auth_check_user_counts_name_in_characters),
        cmocka_unit_test(test_auth_roles_and_scopes_are_closed_sets),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
