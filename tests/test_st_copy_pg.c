/*
 * tests/test_st_copy_pg.c — COPY encoding against a real PostgreSQL: the same records
 * encoded as text and as binary, COPYed into two tables shaped like system_logs, read
 * back equal column by column (edge values: NULLs, NaN, infinities, maximum lengths
 * in characters, multi-byte UTF-8, NUL replaced, empty strings, partition bounds and
 * microseconds, integer limits, nested JSON with unicode escapes); binary rows routed
 * to the right month of system_logs; PostgreSQL naming the bad tuple of a binary COPY
 * as "line N", which the writer's poison-row isolation relies on.
 *
 * Needs AGGD_TEST_DATABASE_URL (a server where it may create and drop a database);
 * exits 77 (skipped, which scripts/test.sh counts as a failure) without it.
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "core/time.h"
#include "store/copy.h"
#include "store/migrate.h"

static const char *admin_url; /* AGGD_TEST_DATABASE_URL */
static char db_name[64];
static PGconn *conn; /* to db_name */

/* ---- database --------------------------------------------------------------- */

static PGconn *connect_to(const char *name)
{
    const char *keys[] = {"dbname", "dbname", NULL};
    const char *values[] = {admin_url, name, NULL};
    PGconn *c = PQconnectdbParams(keys, values, 1);

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "test_st_copy_pg: cannot connect: %s", PQerrorMessage(c));
        exit(1);
    }
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);

    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "test_st_copy_pg: %s: %s", sql, PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
}

/* A fresh database, migrated; dropped by drop_database(). */
static int create_database(void **state)
{
    PGconn *admin = connect_to(NULL);
    char sql[160];
    struct agg_err err = {0};

    (void)state;
    snprintf(db_name, sizeof(db_name), "aggd_u_copy_%ld", (long)getpid());
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", db_name);
    exec_ok(admin, sql);
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\" TEMPLATE template0", db_name);
    exec_ok(admin, sql);
    PQfinish(admin);
    conn = connect_to(db_name);
    if (st_migrate_up(conn, NULL, &err) != AGG_OK) {
        fprintf(stderr, "test_st_copy_pg: migrate: %s\n", err.msg);
        exit(1);
    }
    return 0;
}

static int drop_database(void **state)
{
    PGconn *admin;
    char sql[160];

    (void)state;
    PQfinish(conn);
    admin = connect_to(NULL);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", db_name);
    exec_ok(admin, sql);
    PQfinish(admin);
    return 0;
}

/* COPYs <data>[<len>] into <table> in <format> (binary: framed here). Returns the
 * server's result, caller clears. */
static PGresult *copy(const char *table, enum st_copy_format format, const char *data, size_t len)
{
    char sql[512];
    PGresult *r;

    snprintf(sql, sizeof(sql), "COPY %s (" ST_COPY_COLUMNS ") FROM STDIN%s", table,
             format == ST_COPY_BINARY ? " (FORMAT binary)" : "");
    r = PQexec(conn, sql);
    assert_int_equal(PQresultStatus(r), PGRES_COPY_IN);
    PQclear(r);
    if (format == ST_COPY_BINARY)
        assert_int_equal(PQputCopyData(conn, st_copy_header, ST_COPY_HEADER_LEN), 1);
    assert_int_equal(PQputCopyData(conn, data, (int)len), 1);
    if (format == ST_COPY_BINARY)
        assert_int_equal(PQputCopyData(conn, st_copy_trailer, ST_COPY_TRAILER_LEN), 1);
    assert_int_equal(PQputCopyEnd(conn, NULL), 1);
    r = PQgetResult(conn);
    assert_null(PQgetResult(conn));
    return r;
}

static void copy_ok(const char *table, enum st_copy_format format, const struct agg_buf *rows)
{
    PGresult *r = copy(table, format, rows->data, rows->len);

    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("COPY into %s: %s", table, PQresultErrorMessage(r));
    PQclear(r);
}

/* The one value of <sql>, copied into <out>[<size>]; "(null)" for NULL. */
static void value_of(const char *sql, char *out, size_t size)
{
    PGresult *r = PQexec(conn, sql);

    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    snprintf(out, size, "%s", PQgetisnull(r, 0, 0) ? "(null)" : PQgetvalue(r, 0, 0));
    PQclear(r);
}

/* ---- records ---------------------------------------------------------------- */

#define US(y, mo, d, h, mi, s, us)                                                                 \
    ((agg_days_from_civil((y), (mo), (d)) * 86400 + (h)*3600 + (mi)*60 + (s)) * AGG_US_PER_SEC +   \
     (us))
#define NREC 10

static struct agg_str str(const char *s)
{
    return (struct agg_str){s, strlen(s)};
}

/* <n> copies of the UTF-8 character <ch>, in <buf>. */
static struct agg_str repeat(char *buf, const char *ch, int n)
{
    size_t w = strlen(ch);

    for (int i = 0; i < n; i++)
        memcpy(buf + (size_t)i * w, ch, w);
    return (struct agg_str){buf, (size_t)n * w};
}

/* Record <i> of the edge cases, and the created_at it is stored with. */
static int64_t edge_record(int i, struct agg_record *rec, int64_t *original)
{
    static char e255[255 * 2], emoji256[256 * 4], e101[101 * 2], m10[10 * 3], a46[46];
    static const char nul_msg[] = {'a', '\0', 'b', (char)0xFF, 'c'};
    int64_t created = US(2024, 6, 15, 12, 0, 0, 0);

    agg_record_init(rec);
    *original = AGG_TIME_NONE;
    switch (i) {
    case 0: /* every column NULL that may be */
        break;
    case 1: /* every column set: non-ASCII, COPY text's special bytes, integer limits */
        for (int f = 0; f < AGG_F_STR_COUNT; f++)
            rec->str[f] = str("caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80 tab\tnl\ncr\rbs\\");
        rec->str[AGG_F_REQUEST_METHOD] = str("P\xc3\xb6ST");
        rec->str[AGG_F_REQUEST_IP] = str("2001:db8::1");
        rec->level = AGG_LEVEL_CRITICAL;
        rec->has_level = true;
        rec->has_line_number = rec->has_user_id = rec->has_duration_ms = true;
        rec->line_number = INT32_MIN;
        rec->user_id = INT32_MAX;
        rec->duration_ms = -1;
        rec->has_memory_usage_mb = true;
        rec->memory_usage_mb = NAN;
        rec->extra = str("{\"a\":{\"b\":[1,{\"c\":\"\\u00e9\\ud83d\\ude00\\\"q\\\"\\\\\"}]},"
                         "\"n\":null,\"t\":true,\"f\":-1.5e300}");
        created = US(2024, 7, 1, 0, 0, 0, 0); /* the first instant of a month */
        break;
    case 2: /* maximum lengths in characters, multi-byte; longer ones truncated */
        rec->str[AGG_F_LOGGER_NAME] = repeat(e255, "\xc3\xa9", 255);
        rec->str[AGG_F_MODULE] = repeat(emoji256, "\xf0\x9f\x98\x80", 256);
        rec->str[AGG_F_CORRELATION_ID] = repeat(e101, "\xc3\xa9", 101);
        rec->str[AGG_F_REQUEST_METHOD] = repeat(m10, "\xe2\x82\xac", 10);
        rec->str[AGG_F_REQUEST_IP] = repeat(a46, "a", 46);
        rec->has_memory_usage_mb = true;
        rec->memory_usage_mb = INFINITY;
        rec->has_line_number = true;
        rec->line_number = INT32_MAX;
        created = US(2024, 6, 30, 23, 59, 59, 999999); /* the last instant of a month */
        break;
    case 3: /* NUL and invalid UTF-8 replaced */
        rec->str[AGG_F_MESSAGE] = (struct agg_str){nul_msg, sizeof(nul_msg)};
        rec->str[AGG_F_STACK_TRACE] = (struct agg_str){nul_msg, sizeof(nul_msg)};
        rec->extra = (struct agg_str){"{\"k\":\"x\xff\"}", 10};
        rec->has_memory_usage_mb = true;
        rec->memory_usage_mb = -INFINITY;
        created = US(2024, 2, 29, 12, 34, 56, 123456);
        break;
    case 4: /* empty strings */
        for (int f = 0; f < AGG_F_STR_COUNT; f++)
            rec->str[f] = str("");
        rec->extra = str("{}");
        rec->has_memory_usage_mb = true;
        rec->memory_usage_mb = -0.0;
        created = US(1999, 12, 31, 23, 59, 59, 999999); /* before PostgreSQL's epoch */
        break;
    case 5: /* floats at the edges */
        rec->has_memory_usage_mb = true;
        rec->memory_usage_mb = DBL_MAX;
        rec->has_duration_ms = true;
        rec->duration_ms = INT32_MIN;
        created = US(2000, 1, 1, 0, 0, 0, 0); /* PostgreSQL's epoch itself */
        break;
    case 6:
        rec->has_memory_usage_mb = true;
        rec->memory_usage_mb = 4.9406564584124654e-324; /* the least subnormal */
        created = US(1970, 1, 1, 0, 0, 0, 1);
        break;
    case 7:
        rec->has_memory_usage_mb = true;
        rec->memory_usage_mb = 0.1;
        created = US(9999, 12, 31, 23, 59, 59, 999999);
        break;
    case 8: /* aggd's additions to extra_data: original time, a user_id kept aside */
        *original = US(2024, 6, 15, 11, 59, 59, 500000);
        agg_record_keep_user_id(rec, "u-\xc3\xa9\"1\"", 7, true);
        rec->extra = str("{\"custom\":{\"x\":[\"\\u0041\"]}}");
        break;
    default: /* a message over 64 KiB */
        rec->str[AGG_F_MESSAGE] = repeat(malloc(70000), "z", 70000);
        created = US(1900, 3, 1, 0, 0, 0, 0);
        break;
    }
    return created;
}

static void encode_all(enum st_copy_format format, struct agg_buf *out)
{
    struct st_copy_scratch scratch;

    st_copy_scratch_init(&scratch);
    for (int i = 0; i < NREC; i++) {
        struct agg_record rec;
        int64_t original, created = edge_record(i, &rec, &original);

        assert_int_equal(st_copy_encode(out, format, &rec, created, original, &scratch), AGG_OK);
        if (i == NREC - 1)
            free((char *)rec.str[AGG_F_MESSAGE].p);
    }
    st_copy_scratch_clear(&scratch);
}

/* ---- tests ------------------------------------------------------------------ */

static const char *const column_names[ST_COPY_NCOLS] = {
    "level",         "message",         "logger_name",    "module",
    "function_name", "line_number",     "correlation_id", "user_id",
    "request_id",    "request_method",  "request_path",   "request_ip",
    "duration_ms",   "memory_usage_mb", "exception_type", "exception_message",
    "stack_trace",   "extra_data",      "created_at",
};

static void test_copy_text_and_binary_store_the_same_values(void **state)
{
    struct agg_buf text, bin;
    char sql[1024], got[256];

    (void)state;
    agg_buf_init(&text);
    agg_buf_init(&bin);
    exec_ok(conn, "CREATE TABLE rt_text (LIKE system_logs INCLUDING DEFAULTS)");
    exec_ok(conn, "CREATE TABLE rt_binary (LIKE system_logs INCLUDING DEFAULTS)");
    encode_all(ST_COPY_TEXT, &text);
    encode_all(ST_COPY_BINARY, &bin);
    copy_ok("rt_text", ST_COPY_TEXT, &text);
    copy_ok("rt_binary", ST_COPY_BINARY, &bin);
    value_of("SELECT count(*) FROM rt_text", got, sizeof(got));
    assert_string_equal(got, "10");
    value_of("SELECT count(*) FROM rt_binary", got, sizeof(got));
    assert_string_equal(got, "10");
    /* column by column, as text (NaN, -0, microseconds) and as values */
    for (int c = 0; c < ST_COPY_NCOLS; c++) {
        const char *col = column_names[c];

        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM (SELECT row_number() OVER (ORDER BY id) n, %s v FROM "
                 "rt_text) t FULL JOIN (SELECT row_number() OVER (ORDER BY id) n, %s v FROM "
                 "rt_binary) b USING (n) WHERE t.v IS DISTINCT FROM b.v OR t.v::text IS "
                 "DISTINCT FROM b.v::text OR t.n IS NULL OR b.n IS NULL",
                 col, col);
        value_of(sql, got, sizeof(got));
        if (strcmp(got, "0") != 0)
            fail_msg("column %s differs in %s rows", col, got);
    }
    /* and the values are the records' */
    static const struct {
        const char *sql, *want;
    } checks[] = {
        {"SELECT level || '|' || message || '|' || coalesce(logger_name, 'null') FROM rt_binary "
         "ORDER BY id LIMIT 1",
         "INFO||null"},
        {"SELECT message FROM rt_binary ORDER BY id OFFSET 1 LIMIT 1",
         "caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80 tab\tnl\ncr\rbs\\"},
        {"SELECT line_number || ' ' || user_id || ' ' || duration_ms || ' ' || memory_usage_mb "
         "|| ' ' || created_at FROM rt_binary ORDER BY id OFFSET 1 LIMIT 1",
         "-2147483648 2147483647 -1 NaN 2024-07-01 00:00:00"},
        {"SELECT extra_data->'a'->'b'->1->>'c' FROM rt_binary ORDER BY id OFFSET 1 LIMIT 1",
         "\xc3\xa9\xf0\x9f\x98\x80\"q\"\\"},
        {"SELECT char_length(logger_name) || ' ' || char_length(module) || ' ' || "
         "char_length(correlation_id) || ' ' || char_length(request_method) || ' ' || "
         "char_length(request_ip) || ' ' || "
         "memory_usage_mb || ' ' || created_at || ' ' || (extra_data->'truncated')::text FROM "
         "rt_binary ORDER BY id OFFSET 2 LIMIT 1",
         "255 255 100 10 45 Infinity 2024-06-30 23:59:59.999999 "
         "[\"module\", \"correlation_id\", \"request_ip\"]"},
        {"SELECT message || '|' || stack_trace || '|' || (extra_data->>'k') || '|' || "
         "memory_usage_mb || '|' || created_at FROM rt_binary ORDER BY id OFFSET 3 LIMIT 1",
         "a\xef\xbf\xbd"
         "b\xef\xbf\xbd"
         "c|a\xef\xbf\xbd"
         "b\xef\xbf\xbd"
         "c|x\xef\xbf\xbd|"
         "-Infinity|2024-02-29 12:34:56.123456"},
        {"SELECT quote_literal(module) || extra_data::text || memory_usage_mb || ' ' || "
         "created_at FROM rt_binary ORDER BY id OFFSET 4 LIMIT 1",
         "''{}-0 1999-12-31 23:59:59.999999"},
        {"SELECT memory_usage_mb || ' ' || duration_ms || ' ' || created_at FROM rt_binary "
         "ORDER BY id OFFSET 5 LIMIT 1",
         "1.7976931348623157e+308 -2147483648 2000-01-01 00:00:00"},
        {"SELECT memory_usage_mb || ' ' || created_at FROM rt_binary ORDER BY id OFFSET 6 LIMIT 1",
         "5e-324 1970-01-01 00:00:00.000001"},
        {"SELECT memory_usage_mb || ' ' || created_at FROM rt_binary ORDER BY id OFFSET 7 LIMIT 1",
         "0.1 9999-12-31 23:59:59.999999"},
        {"SELECT extra_data::text FROM rt_binary ORDER BY id OFFSET 8 LIMIT 1",
         "{\"custom\": {\"x\": [\"A\"]}, \"user_id\": \"u-\xc3\xa9\\\"1\\\"\", "
         "\"original_timestamp\": \"2024-06-15T11:59:59.500000Z\"}"},
        {"SELECT octet_length(message) || ' ' || created_at FROM rt_binary ORDER BY id OFFSET 9 "
         "LIMIT 1",
         "70000 1900-03-01 00:00:00"},
    };
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        value_of(checks[i].sql, got, sizeof(got));
        if (strcmp(got, checks[i].want) != 0)
            fail_msg("%s:\n got  %s\n want %s", checks[i].sql, got, checks[i].want);
    }
    exec_ok(conn, "DROP TABLE rt_text, rt_binary");
    agg_buf_clear(&text);
    agg_buf_clear(&bin);
}

static void test_copy_binary_rows_land_in_their_month(void **state)
{
    struct st_copy_scratch scratch;
    struct agg_record rec;
    struct agg_buf bin;
    char got[256];

    (void)state;
    agg_buf_init(&bin);
    st_copy_scratch_init(&scratch);
    exec_ok(conn, "SELECT aggd_create_month_partition('system_logs', '2024-06-01'), "
                  "aggd_create_month_partition('system_logs', '2024-07-01')");
    agg_record_init(&rec);
    rec.str[AGG_F_MESSAGE] = str("june");
    assert_int_equal(st_copy_encode(&bin, ST_COPY_BINARY, &rec, US(2024, 6, 30, 23, 59, 59, 999999),
                                    AGG_TIME_NONE, &scratch),
                     AGG_OK);
    rec.str[AGG_F_MESSAGE] = str("july");
    assert_int_equal(st_copy_encode(&bin, ST_COPY_BINARY, &rec, US(2024, 7, 1, 0, 0, 0, 0),
                                    AGG_TIME_NONE, &scratch),
                     AGG_OK);
    copy_ok("system_logs", ST_COPY_BINARY, &bin);
    value_of("SELECT string_agg(message || ' ' || tableoid::regclass::text, ',' ORDER BY "
             "created_at) FROM system_logs",
             got, sizeof(got));
    assert_string_equal(got, "june system_logs_2024_06,july system_logs_2024_07");
    exec_ok(conn, "TRUNCATE system_logs");
    st_copy_scratch_clear(&scratch);
    agg_buf_clear(&bin);
}

/* Five rows, the fourth bad: the error's context of a binary COPY names line 4. */
static void expect_line_4(const char *setup, const char *bad_extra, const char *bad_message,
                          const char *want_context)
{
    struct st_copy_scratch scratch;
    struct agg_buf bin;
    PGresult *r;
    const char *context;

    agg_buf_init(&bin);
    st_copy_scratch_init(&scratch);
    if (setup != NULL)
        exec_ok(conn, setup);
    for (int i = 1; i <= 5; i++) {
        struct agg_record rec;

        agg_record_init(&rec);
        rec.str[AGG_F_MESSAGE] = str(i == 4 && bad_message != NULL ? bad_message : "fine");
        if (i == 4 && bad_extra != NULL)
            rec.extra = str(bad_extra);
        assert_int_equal(st_copy_encode(&bin, ST_COPY_BINARY, &rec, US(2024, 6, 1, 0, 0, 0, i),
                                        AGG_TIME_NONE, &scratch),
                         AGG_OK);
    }
    r = copy("system_logs", ST_COPY_BINARY, bin.data, bin.len);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    context = PQresultErrorField(r, PG_DIAG_CONTEXT);
    assert_non_null(context);
    if (strstr(context, want_context) == NULL)
        fail_msg("context \"%s\" does not name \"%s\"", context, want_context);
    PQclear(r);
    st_copy_scratch_clear(&scratch);
    agg_buf_clear(&bin);
}

static void test_copy_binary_errors_name_the_bad_tuple(void **state)
{
    char got[32];

    (void)state;
    exec_ok(conn, "SELECT aggd_create_month_partition('system_logs', '2024-06-01')");
    /* a value the type refuses (found while reading the tuple) */
    expect_line_4(NULL, "{\"unterminated\":", NULL, "COPY system_logs, line 4, column extra_data");
    /* a constraint checked as the row is stored */
    expect_line_4("ALTER TABLE system_logs ADD CONSTRAINT no_bad CHECK (message <> 'bad') "
                  "NOT VALID",
                  NULL, "bad", "COPY system_logs, line 4");
    exec_ok(conn, "ALTER TABLE system_logs DROP CONSTRAINT no_bad");
    value_of("SELECT count(*) FROM system_logs", got, sizeof(got));
    assert_string_equal(got, "0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_text_and_binary_store_the_same_values),
        cmocka_unit_test(test_copy_binary_rows_land_in_their_month),
        cmocka_unit_test(test_copy_binary_errors_name_the_bad_tuple),
    };

    admin_url = getenv("AGGD_TEST_DATABASE_URL");
    if (admin_url == NULL || admin_url[0] == '\0') {
        fprintf(stderr, "test_st_copy_pg: AGGD_TEST_DATABASE_URL is not set: skipped\n");
        return 77;
    }
    return cmocka_run_group_tests_name("st_copy_pg", tests, create_database, drop_database);
}
