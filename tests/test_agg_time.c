/*
 * tests/test_agg_time.c — core/time: the one ISO 8601 / RFC 3339 parser in its lenient
 * and RFC 5424 forms (leap seconds included), the month key, the monotonic clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/time.h"

#define SEC AGG_US_PER_SEC

/* 2024-01-02T03:04:05Z */
#define T0 (INT64_C(1704164645) * SEC)
/* 2016-12-31T23:59:59.999999Z, where a leap second was inserted */
#define LEAP_END (INT64_C(1483228800) * SEC - 1)

static bool parse(const char *s, int64_t *us)
{
    return agg_time_parse_iso8601(s, strlen(s), us);
}

static void test_time_parse_iso8601_reads_rfc3339_and_its_relatives(void **state)
{
    static const struct {
        const char *in;
        int64_t want;
    } cases[] = {
        {"2024-01-02T03:04:05Z", T0},
        {"2024-01-02t03:04:05z", T0},
        {"2024-01-02 03:04:05", T0}, /* no zone: UTC */
        {"2024-01-02T04:04:05+01:00", T0},
        {"2024-01-02T04:04:05+0100", T0},
        {"2024-01-02T04:04:05+01", T0},
        {"2024-01-01T22:04:05-05:00", T0},
        {"2024-01-02T03:04:05.5Z", T0 + 500000},
        {"2024-01-02T03:04:05,25Z", T0 + 250000},
        {"2024-01-02T03:04:05.1234569Z", T0 + 123456}, /* truncated, not rounded */
        {"2024-02-29T00:00:00Z", INT64_C(1709164800) * SEC},
        {"1969-12-31T23:59:59.999999Z", -1},
    };
    int64_t us;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        us = 0;
        if (!parse(cases[i].in, &us) || us != cases[i].want)
            fail_msg("\"%s\": %lld, want %lld", cases[i].in, (long long)us,
                     (long long)cases[i].want);
    }
}

static void test_time_parse_iso8601_refuses_what_is_not_a_date_time(void **state)
{
    static const char *const bad[] = {
        "",
        "2024-01-02",
        "2024-01-02T03:04",
        "2024-01-02X03:04:05Z",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-01-02T24:00:00Z",
        "2024-01-02T03:60:00Z",
        "2024-01-02T03:04:61Z",
        "2024-01-02T03:04:05.Z",
        "2024-01-02T03:04:05+24:00",
        "2024-01-02T03:04:05+01:60",
        "2024-01-02T03:04:05+01:",
        "2024-01-02T03:04:05Z+01:00", /* only the syslog reader takes "Z" then an offset */
        "2024-01-02T03:04:05Z ",
        "0000-01-01T00:00:00Z",
    };
    int64_t us;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], &us))
            fail_msg("\"%s\" accepted", bad[i]);
    }
}

static void test_time_parse_iso8601_reads_a_leap_second_as_the_end_of_its_minute(void **state)
{
    int64_t us;

    (void)state;
    assert_true(parse("2016-12-31T23:59:60Z", &us));
    assert_true(us == LEAP_END);
    assert_true(parse("2016-12-31T23:59:60.75Z", &us));
    assert_true(us == LEAP_END);
    assert_true(parse("2017-01-01T05:29:60+05:30", &us));
    assert_true(us == LEAP_END);
    /* it sorts between the second before and the next minute */
    assert_true(parse("2016-12-31T23:59:59.5Z", &us) && us < LEAP_END);
    assert_true(parse("2017-01-01T00:00:00Z", &us) && us > LEAP_END);
}

static void test_time_scan_iso8601_rfc5424_is_strict(void **state)
{
    static const struct {
        const char *in;
        size_t bad;
        const char *why;
    } refused[] = {
        {"2016-12-31T23:59:60Z", 17, "field out of range"}, /* RFC 5424 6.2.3 */
        {"2024-01-02t03:04:05Z", 10, "separator expected"},
        {"2024-01-02 03:04:05Z", 10, "separator expected"},
        {"2024-01-02T03:04:05", 19, "\"Z\" or a +hh:mm offset expected"},
        {"2024-01-02T03:04:05z", 19, "\"Z\" or a +hh:mm offset expected"},
        {"2024-01-02T03:04:05,5Z", 19, "\"Z\" or a +hh:mm offset expected"},
        {"2024-01-02T03:04:05.1234567Z", 26, "more than 6 fraction digits"},
        {"2024-01-02T03:04:05+0100", 22, "\":mm\" expected in the offset"},
    };
    struct agg_time_iso t;

    (void)state;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const char *in = refused[i].in;

        if (agg_time_scan_iso8601(in, strlen(in), 0, AGG_TIME_ISO_RFC5424, &t))
            fail_msg("\"%s\" accepted", in);
        if (t.bad != refused[i].bad || strcmp(t.why, refused[i].why) != 0)
            fail_msg("\"%s\": %s at %zu, want %s at %zu", in, t.why, t.bad, refused[i].why,
                     refused[i].bad);
    }
    assert_true(agg_time_scan_iso8601("2024-01-02T04:04:05.123456+01:00 host", 37, 0,
                                      AGG_TIME_ISO_RFC5424, &t));
    assert_int_equal(t.end, 32);
    assert_true(t.zoned);
    assert_true(t.us == T0 + 123456);
}

static void test_time_scan_iso8601_stops_at_the_end_and_reports_zones(void **state)
{
    const char line[] = "<13>2024-01-02 03:04:05 host";
    const char beats[] = "2024-01-02T02:04:05Z-01:00 x";
    struct agg_time_iso t;

    (void)state;
    assert_true(agg_time_scan_iso8601(line, sizeof(line) - 1, 4, 0, &t));
    assert_int_equal(t.end, 23);
    assert_false(t.zoned);
    assert_true(t.us == T0);
    /* "Z" then an offset: the offset, with the flag; without, the scan ends at "Z" */
    assert_true(agg_time_scan_iso8601(beats, sizeof(beats) - 1, 0, AGG_TIME_ISO_Z_OFFSET, &t));
    assert_int_equal(t.end, 26);
    assert_true(t.us == T0);
    assert_true(agg_time_scan_iso8601(beats, sizeof(beats) - 1, 0, 0, &t));
    assert_int_equal(t.end, 20);
    assert_true(t.us == T0 - 3600 * SEC);
    /* no NUL needed: the length bounds every read */
    assert_false(agg_time_scan_iso8601(line, 20, 4, 0, &t));
    assert_string_equal(t.why, "ends early");
    assert_int_equal(t.bad, 20);
}

static void test_time_month_key_of_instants_and_back(void **state)
{
    char out[16];

    (void)state;
    assert_int_equal(agg_time_month_of_us(0), AGG_TIME_MONTH(1970, 1));
    assert_int_equal(agg_time_month_of_us(-1), AGG_TIME_MONTH(1969, 12));
    /* 2025-12-31T23:59:59.999999Z and 2026-01-01T00:00:00Z */
    assert_int_equal(agg_time_month_of_us(INT64_C(1767225599999999)), AGG_TIME_MONTH(2025, 12));
    assert_int_equal(agg_time_month_of_us(INT64_C(1767225600000000)), AGG_TIME_MONTH(2026, 1));
    /* 2024-02-29T12:00:00Z (leap day), 2024-03-01T00:00:00Z */
    assert_int_equal(agg_time_month_of_us(INT64_C(1709208000000000)), AGG_TIME_MONTH(2024, 2));
    assert_int_equal(agg_time_month_of_us(INT64_C(1709251200000000)), AGG_TIME_MONTH(2024, 3));
    /* the leap second stays in its month */
    assert_int_equal(agg_time_month_of_us(LEAP_END), AGG_TIME_MONTH(2016, 12));

    assert_true(agg_time_month_start_us(AGG_TIME_MONTH(2026, 1)) == INT64_C(1767225600000000));
    assert_true(agg_time_month_start_us(AGG_TIME_MONTH(1969, 12)) == -31 * 86400 * SEC);
    for (int m = AGG_TIME_MONTH(1968, 1); m < AGG_TIME_MONTH(2101, 1); m++) {
        int64_t start = agg_time_month_start_us(m);

        if (agg_time_month_of_us(start) != m || agg_time_month_of_us(start - 1) != m - 1)
            fail_msg("month %d starts at %lld", m, (long long)start);
    }

    agg_time_month_format(AGG_TIME_MONTH(2026, 1) - 1, '-', out);
    assert_string_equal(out, "2025-12");
    agg_time_month_format(AGG_TIME_MONTH(2026, 1), '_', out);
    assert_string_equal(out, "2026_01");
    agg_time_month_format(AGG_TIME_MONTH(10000, 1), '_', out);
    assert_string_equal(out, "0000_01");
    agg_time_month_date(AGG_TIME_MONTH(2024, 2), out);
    assert_string_equal(out, "2024-02-01");
}

static void test_time_mono_us_never_goes_back(void **state)
{
    int64_t prev = agg_time_mono_us(), first = prev;

    (void)state;
    assert_true(prev > 0);
    for (int i = 0; i < 100000; i++) {
        int64_t now = agg_time_mono_us();

        assert_true(now >= prev);
        prev = now;
    }
    assert_true(prev - first < 60 * SEC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_parse_iso8601_reads_rfc3339_and_its_relatives),
        cmocka_unit_test(test_time_parse_iso8601_refuses_what_is_not_a_date_time),
        cmocka_unit_test(test_time_parse_iso8601_reads_a_leap_second_as_the_end_of_its_minute),
        cmocka_unit_test(test_time_scan_iso8601_rfc5424_is_strict),
        cmocka_unit_test(test_time_scan_iso8601_stops_at_the_end_and_reports_zones),
        cmocka_unit_test(test_time_month_key_of_instants_and_back),
        cmocka_unit_test(test_time_mono_us_never_goes_back),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
