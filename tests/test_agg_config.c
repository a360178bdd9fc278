/*
 * tests/test_agg_config.c — configuration: precedence, parsing, every error path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/config.h"

/* Writes <text> to a fresh temp file; returns its path (static buffer). */
static const char *write_conf(const char *text)
{
    static char path[64];
    FILE *f;
    int fd;

    snprintf(path, sizeof(path), "/tmp/aggd-test-conf-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Builds from <file text> (or NULL), <env> and <sets>; asserts failure and that the
 * message contains every NULL-terminated needle. */
static void expect_error(const char *text, char **env, char **sets, int nsets, ...)
{
    struct agg_err err = {0};
    const char *path = text != NULL ? write_conf(text) : NULL;
    struct agg_config *cfg = agg_config_build(path, env, sets, nsets, &err);
    va_list ap;
    const char *needle;

    if (path != NULL)
        unlink(path);
    assert_null(cfg);
    assert_int_equal(err.code, AGG_EINVAL);
    va_start(ap, nsets);
    while ((needle = va_arg(ap, const char *)) != NULL) {
        if (strstr(err.msg, needle) == NULL)
            fail_msg("error \"%s\" lacks \"%s\"", err.msg, needle);
    }
    va_end(ap);
}

static void test_config_defaults_match_design(void **state)
{
    struct agg_err err = {0};
    struct agg_config *cfg = agg_config_new(&err);

    (void)state;
    assert_non_null(cfg);
    assert_string_equal(cfg->database.url, "postgresql:///dataaggregator");
    assert_int_equal(cfg->database.pool_size, 20);
    assert_int_equal(cfg->database.pool_overflow, 40);
    assert_int_equal(cfg->database.recycle_seconds, 3600);
    assert_string_equal(cfg->listen.syslog_udp, "127.0.0.1:5514");
    assert_string_equal(cfg->listen.syslog_tcp, "127.0.0.1:5514");
    assert_string_equal(cfg->listen.json_tcp, "127.0.0.1:5170");
    assert_string_equal(cfg->listen.http, "127.0.0.1:8080");
    assert_int_equal(cfg->ingest.max_message_bytes, 65536);
    assert_int_equal(cfg->ingest.http_auth, AGG_HTTP_AUTH_TOKEN);
    assert_int_equal(cfg->batch.max_rows, 5000);
    assert_int_equal(cfg->batch.max_ms, 200);
    assert_int_equal(cfg->writer.threads, 2);
    assert_string_equal(cfg->spool.dir, "./var/spool");
    assert_int_equal(cfg->spool.max_bytes, INT64_C(1) << 30);
    assert_int_equal(cfg->spool.fsync, AGG_SPOOL_FSYNC_BATCH);
    assert_int_equal(cfg->partitions.premake_months, 2);
    assert_int_equal(cfg->partitions.retention_months, 3);
    assert_int_equal(cfg->partitions.accept_past_months, 3);
    assert_int_equal(cfg->partitions.archive_grace_hours, 24);
    assert_string_equal(cfg->archive.dir, "./var/archive");
    assert_int_equal(cfg->alerts.eval_interval_ms, 1000);
    assert_string_equal(cfg->notify.smtp_url, "smtp://127.0.0.1:25");
    assert_string_equal(cfg->notify.from, "aggd@localhost");
    assert_int_equal(cfg->notify.webhook_timeout_ms, 5000);
    assert_int_equal(cfg->notify.max_attempts, 8);
    assert_int_equal(cfg->auth.token_ttl_days, 30);
    agg_config_free(cfg);
}

static void test_config_set_beats_env_beats_file_beats_default(void **state)
{
    const char *path = write_conf("batch.max_rows = 100\n"
                                  "batch.max_ms = 7\n"
                                  "writer.threads = 3\n");
    char *env[] = {"AGGD_BATCH_MAX_ROWS=200", "AGGD_BATCH_MAX_MS=8", "PATH=/bin", NULL};
    char *sets[] = {"batch.max_rows=300"};
    struct agg_err err = {0};
    struct agg_config *cfg = agg_config_build(path, env, sets, 1, &err);

    (void)state;
    unlink(path);
    assert_non_null(cfg);
    assert_int_equal(cfg->batch.max_rows, 300); /* --set over env over file */
    assert_int_equal(cfg->batch.max_ms, 8);     /* env over file */
    assert_int_equal(cfg->writer.threads, 3);   /* file over default */
    assert_int_equal(cfg->database.pool_size, 20); /* default */
    agg_config_free(cfg);
}

static void test_config_file_syntax_comments_quotes_and_sizes(void **state)
{
    const char *path = write_conf("# a comment\n"
                                  "\n"
                                  "   spool.max_bytes = 512MiB   # trailing comment\n"
                                  "notify.from = \"alerts #1 <a@b>\"\n"
                                  "ingest.max_message_bytes=64k\n"
                                  "listen.syslog_udp =\n"
                                  "listen.http = [::1]:9090\n"
                                  "ingest.http_auth = none\n"
                                  "spool.fsync = always\n"
                                  "log.level = debug\n");
    struct agg_err err = {0};
    struct agg_config *cfg = agg_config_build(path, NULL, NULL, 0, &err);

    (void)state;
    unlink(path);
    assert_non_null(cfg);
    assert_int_equal(cfg->spool.max_bytes, INT64_C(512) << 20);
    assert_string_equal(cfg->notify.from, "alerts #1 <a@b>");
    assert_int_equal(cfg->ingest.max_message_bytes, 65536);
    assert_string_equal(cfg->listen.syslog_udp, "");
    assert_string_equal(cfg->listen.http, "[::1]:9090");
    assert_int_equal(cfg->ingest.http_auth, AGG_HTTP_AUTH_NONE);
    assert_int_equal(cfg->spool.fsync, AGG_SPOOL_FSYNC_ALWAYS);
    assert_string_equal(cfg->log.level, "debug");
    agg_config_free(cfg);
}

static void test_config_env_uses_upper_case_and_underscores(void **state)
{
    char *env[] = {"AGGD_DATABASE_URL=postgresql://h/db", "AGGD_LISTEN_JSON_TCP=", NULL};
    struct agg_err err = {0};
    struct agg_config *cfg = agg_config_build(NULL, env, NULL, 0, &err);

    (void)state;
    assert_non_null(cfg);
    assert_string_equal(cfg->database.url, "postgresql://h/db");
    assert_string_equal(cfg->listen.json_tcp, "");
    agg_config_free(cfg);
}

static void test_config_errors_name_the_key_and_the_source(void **state)
{
    char *bad_env[] = {"AGGD_WRITER_THREADS=lots", NULL};
    char *unknown_set[] = {"nope.key=1"};
    char *no_eq[] = {"batch.max_rows"};
    char *range[] = {"writer.threads=0"};
    char *bad_enum[] = {"spool.fsync=sometimes"};
    char *bad_size[] = {"spool.max_bytes=12 parsecs"};
    char *bad_addr[] = {"listen.http=localhost"};
    char *bad_v6[] = {"listen.http=::1:80"};
    char *bad_port[] = {"listen.http=127.0.0.1:99999"};
    char *bad_level[] = {"log.level=loud"};
    char *empty_dir[] = {"spool.dir="};

    (void)state;
    expect_error("bogus.key = 1\n", NULL, NULL, 0, "unknown configuration key", "bogus.key",
                 ":1", NULL);
    expect_error("batch.max_rows = many\n", NULL, NULL, 0, "batch.max_rows", "\"many\"",
                 "not an integer", NULL);
    expect_error("# ok\njust words\n", NULL, NULL, 0, ":2", "expected key = value", NULL);
    expect_error("= 3\n", NULL, NULL, 0, "missing key", NULL);
    expect_error("notify.from = \"open\n", NULL, NULL, 0, "unterminated", NULL);
    expect_error("notify.from = \"a\" b\n", NULL, NULL, 0, "after quoted", NULL);
    expect_error("writer.threads = 2\nwriter.threads = 3\n", NULL, NULL, 0, "writer.threads",
                 "twice", ":2", NULL);
    expect_error(NULL, bad_env, NULL, 0, "AGGD_WRITER_THREADS", "writer.threads", "lots", NULL);
    expect_error(NULL, NULL, unknown_set, 1, "--set", "nope.key", NULL);
    expect_error(NULL, NULL, no_eq, 1, "expected key=value", NULL);
    expect_error(NULL, NULL, range, 1, "writer.threads", "out of range", NULL);
    expect_error(NULL, NULL, bad_enum, 1, "spool.fsync", "always,batch,never", NULL);
    expect_error(NULL, NULL, bad_size, 1, "spool.max_bytes", "size", NULL);
    expect_error(NULL, NULL, bad_addr, 1, "listen.http", "no :port", NULL);
    expect_error(NULL, NULL, bad_v6, 1, "listen.http", "brackets", NULL);
    expect_error(NULL, NULL, bad_port, 1, "listen.http", "port", NULL);
    expect_error(NULL, NULL, bad_level, 1, "log.level", "loud", NULL);
    expect_error(NULL, NULL, empty_dir, 1, "spool.dir", "empty", NULL);
    expect_error("partitions.retention_months = 2\npartitions.accept_past_months = 3\n", NULL,
                 NULL, 0, "partitions.accept_past_months", "retention_months", NULL);
}

static void test_config_file_may_start_with_a_utf8_bom(void **state)
{
    const char *path = write_conf("\xef\xbb\xbflog.level = debug\n");
    struct agg_err err = {0};
    struct agg_config *cfg = agg_config_build(path, NULL, NULL, 0, &err);

    (void)state;
    unlink(path);
    assert_non_null(cfg);
    assert_string_equal(cfg->log.level, "debug");
    agg_config_free(cfg);
    /* only at the very start: a BOM on another line is part of a key */
    expect_error("log.level = info\n\xef\xbb\xbf" "batch.max_rows = 5\n", NULL, NULL, 0,
                 "unknown configuration key", ":2", NULL);
}

static void test_config_errors_escape_control_bytes(void **state)
{
    char *env[] = {"AGGD_LOG_LEVEL=\x1b[2Jloud", NULL};
    char *sets[] = {"spool.fsync=\x07\xc2\x9b" "31m"};
    char *no_eq[] = {"\x1b]0;title\x07"};
    struct agg_err err = {0};
    const char *path = write_conf("log.level = info\n\x1b[31mbogus = 1\n");
    struct agg_config *cfg = agg_config_build(path, NULL, NULL, 0, &err);

    (void)state;
    unlink(path);
    assert_null(cfg);
    assert_non_null(strstr(err.msg, "\"\\x1b[31mbogus\""));
    assert_non_null(strstr(err.msg, ":2"));
    expect_error(NULL, env, NULL, 0, "AGGD_LOG_LEVEL", "\"\\x1b[2Jloud\"", NULL);
    expect_error(NULL, NULL, sets, 1, "spool.fsync", "\"\\x07\\x9b31m\"", NULL);
    expect_error(NULL, NULL, no_eq, 1, "\\x1b]0;title\\x07", NULL);
    for (size_t i = 0; err.msg[i] != '\0'; i++)
        assert_true((unsigned char)err.msg[i] >= 0x20 && err.msg[i] != 0x7f);
}

static void test_config_missing_file_is_an_error(void **state)
{
    struct agg_err err = {0};

    (void)state;
    assert_null(agg_config_build("/nonexistent/aggd.conf", NULL, NULL, 0, &err));
    assert_non_null(strstr(err.msg, "/nonexistent/aggd.conf"));
}

static void test_config_masks_passwords_in_uris_and_conninfo(void **state)
{
    char out[256];

    (void)state;
    agg_config_mask_secret("postgresql://bob:hunter2@db:5432/x", out, sizeof(out));
    assert_string_equal(out, "postgresql://bob:****@db:5432/x");
    agg_config_mask_secret("host=db password=hunter2 user=bob", out, sizeof(out));
    assert_string_equal(out, "host=db password=**** user=bob");
    agg_config_mask_secret("host=db password = 'a b\\' c' user=bob", out, sizeof(out));
    assert_string_equal(out, "host=db password = **** user=bob");
    agg_config_mask_secret("postgresql:///x?host=/tmp&password=pw&sslmode=require", out,
                           sizeof(out));
    assert_string_equal(out, "postgresql:///x?host=/tmp&password=****&sslmode=require");
    agg_config_mask_secret("smtp://user@mail:587", out, sizeof(out));
    assert_string_equal(out, "smtp://user@mail:587");
    agg_config_mask_secret("postgresql://a:b@c/d?host=x#p@q", out, sizeof(out));
    assert_null(strstr(out, ":b@"));
}

static void test_config_print_is_rereadable_and_masked(void **state)
{
    char *sets[] = {"database.url=postgresql://u:topsecret@h/db", "notify.from=a # b",
                    "listen.json_tcp="};
    struct agg_err err = {0};
    struct agg_config *cfg = agg_config_build(NULL, NULL, sets, 3, &err);
    struct agg_config *again;
    char path[] = "/tmp/aggd-test-print-XXXXXX";
    char text[8192] = {0};
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w+");

    (void)state;
    assert_non_null(cfg);
    agg_config_print(cfg, f);
    rewind(f);
    assert_true(fread(text, 1, sizeof(text) - 1, f) > 0);
    fclose(f);
    assert_null(strstr(text, "topsecret"));
    assert_non_null(strstr(text, "database.url = postgresql://u:****@h/db  # set"));
    assert_non_null(strstr(text, "batch.max_rows = 5000  # default"));
    /* The printed file is valid input and reproduces the non-secret values. */
    again = agg_config_build(path, NULL, NULL, 0, &err);
    unlink(path);
    assert_non_null(again);
    assert_string_equal(again->notify.from, "a # b");
    assert_string_equal(again->listen.json_tcp, "");
    assert_int_equal(again->spool.max_bytes, cfg->spool.max_bytes);
    agg_config_free(again);
    agg_config_free(cfg);
}

static void test_config_parse_addr_accepts_v4_v6_and_names(void **state)
{
    char host[64];
    int port = 0;

    (void)state;
    assert_int_equal(agg_config_parse_addr("0.0.0.0:514", host, sizeof(host), &port, NULL), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 514);
    assert_int_equal(agg_config_parse_addr("[::]:8080", host, sizeof(host), &port, NULL), 0);
    assert_string_equal(host, "::");
    assert_int_equal(port, 8080);
    assert_int_equal(agg_config_parse_addr("localhost:1", host, sizeof(host), &port, NULL), 0);
    assert_int_equal(agg_config_parse_addr(":80", host, sizeof(host), &port, NULL), AGG_EINVAL);
    assert_int_equal(agg_config_parse_addr("[::1]80", host, sizeof(host), &port, NULL),
                     AGG_EINVAL);
    assert_int_equal(agg_config_parse_addr("h:-1", host, sizeof(host), &port, NULL), AGG_EINVAL);
}

static void test_config_survives_every_allocation_failure(void **state)
{
    char *sets[] = {"notify.from=x@y", "database.url=postgresql:///z"};
    long n;

    (void)state;
    for (n = 0;; n++) {
        struct agg_err err = {0};
        struct agg_config *cfg;

        agg_alloc_fail_after(n);
        cfg = agg_config_build(NULL, NULL, sets, 2, &err);
        agg_alloc_fail_after(-1);
        if (cfg != NULL) {
            agg_config_free(cfg);
            break;
        }
        assert_int_equal(err.code, AGG_ENOMEM);
    }
    assert_true(n > 10);
}

static void test_config_syslog_3164_timezone_is_checked_by_loading_the_zone(void **state)
{
    char *unknown[] = {"listen.syslog_3164_timezone=Mars/Olympus"};
    char *path[] = {"listen.syslog_3164_timezone=../../etc/passwd"};
    struct agg_err err = {0};
    struct agg_config *cfg = agg_config_new(&err);

    (void)state;
    assert_non_null(cfg);
    assert_string_equal(cfg->listen.syslog_3164_timezone, "UTC");
    agg_config_free(cfg);
    expect_error(NULL, NULL, unknown, 1, "listen.syslog_3164_timezone", "unknown time zone",
                 "Mars/Olympus", NULL);
    expect_error(NULL, NULL, path, 1, "listen.syslog_3164_timezone", "not a time zone name",
                 NULL);
    expect_error("listen.syslog_3164_timezone = Europe/Nowhere\n", NULL, NULL, 0, ":1",
                 "listen.syslog_3164_timezone", "Europe/Nowhere", NULL);
    if (access("/usr/share/zoneinfo/Europe/Berlin", R_OK) == 0) {
        char *ok[] = {"listen.syslog_3164_timezone=Europe/Berlin"};

        cfg = agg_config_build(NULL, NULL, ok, 1, &err);
        assert_non_null(cfg);
        assert_string_equal(cfg->listen.syslog_3164_timezone, "Europe/Berlin");
        agg_config_free(cfg);
    }
}

/* A module gets one section (or a copy of it) and finds there every key of it. */
static void test_config_section_handed_to_a_module_carries_its_keys(void **state)
{
    char *sets[] = {"notify.from=aggd@example.org", "notify.max_attempts=9",
                    "batch.max_rows=123", "batch.max_ms=45"};
    struct agg_err err = {0};
    struct agg_config *cfg = agg_config_build(NULL, NULL, sets, 4, &err);
    const struct agg_notify_opts *notify;
    struct agg_batch_opts batch;

    (void)state;
    assert_non_null(cfg);
    notify = &cfg->notify;
    batch = cfg->batch;
    assert_string_equal(notify->from, "aggd@example.org");
    assert_int_equal(notify->max_attempts, 9);
    assert_int_equal(notify->webhook_timeout_ms, 5000);  /* untouched keys keep defaults */
    assert_int_equal(batch.max_rows, 123);
    assert_int_equal(batch.max_ms, 45);
    agg_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults_match_design),
        cmocka_unit_test(test_config_set_beats_env_beats_file_beats_default),
        cmocka_unit_test(test_config_file_syntax_comments_quotes_and_sizes),
        cmocka_unit_test(test_config_env_uses_upper_case_and_underscores),
        cmocka_unit_test(test_config_errors_name_the_key_and_the_source),
        cmocka_unit_test(test_config_file_may_start_with_a_utf8_bom),
        cmocka_unit_test(test_config_errors_escape_control_bytes),
        cmocka_unit_test(test_config_missing_file_is_an_error),
        cmocka_unit_test(test_config_masks_passwords_in_uris_and_conninfo),
        cmocka_unit_test(test_config_print_is_rereadable_and_masked),
        cmocka_unit_test(test_config_parse_addr_accepts_v4_v6_and_names),
        cmocka_unit_test(test_config_survives_every_allocation_failure),
        cmocka_unit_test(test_config_syslog_3164_timezone_is_checked_by_loading_the_zone),
        cmocka_unit_test(test_config_section_handed_to_a_module_carries_its_keys),
    };

    return cmocka_run_group_tests_name("agg_config", tests, NULL, NULL);
}
