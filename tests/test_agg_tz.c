/*
 * tests/test_agg_tz.c — the TZif reader: offsets against glibc's own reading of the
 * same files (this test process may set TZ; aggd never does), the POSIX TZ footer
 * rules against the transition tables they continue, local-to-UTC conversion
 * around DST changes, and malformed files.
 *
 * Zones come from the system's tzdata (/usr/share/zoneinfo); without it the tests
 * that need them are skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/time.h"
#include "core/tz.h"

#define HOUR INT64_C(3600)
#define DAY  (24 * HOUR)

static int64_t utc(int y, unsigned mo, unsigned d, int h, int mi)
{
    return agg_days_from_civil(y, mo, d) * DAY + h * HOUR + mi * 60;
}

static struct agg_tz *load_or_skip(const char *name)
{
    struct agg_err err = {0};
    struct agg_tz *tz;
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", AGG_TZ_DIR, name);
    if (access(path, R_OK) != 0)
        skip();
    tz = agg_tz_load(name, &err);
    if (tz == NULL)
        fail_msg("could not load %s: %s", name, err.msg);
    return tz;
}

/* A version 2 TZif file with no transitions, one type of <off> and <footer>. */
static unsigned char *footer_only(const char *footer, int32_t off, size_t *len)
{
    static const unsigned char counts[24] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                             0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4};
    unsigned char block[10] = {(unsigned char)((uint32_t)off >> 24),
                               (unsigned char)((uint32_t)off >> 16),
                               (unsigned char)((uint32_t)off >> 8),
                               (unsigned char)off,
                               0,
                               0,
                               'S',
                               'T',
                               'D',
                               0};
    size_t flen = strlen(footer), n = 0;
    unsigned char *p = malloc(2 * (44 + sizeof(block)) + flen + 2);

    assert_non_null(p);
    for (int copy = 0; copy < 2; copy++) {
        memcpy(p + n, "TZif2", 5);
        memset(p + n + 5, 0, 15);
        memcpy(p + n + 20, counts, sizeof(counts));
        n += 44;
        memcpy(p + n, block, sizeof(block));
        n += sizeof(block);
    }
    p[n++] = '\n';
    memcpy(p + n, footer, flen);
    n += flen;
    p[n++] = '\n';
    *len = n;
    return p;
}

static struct agg_tz *rule_zone(const char *footer, int32_t off)
{
    struct agg_err err = {0};
    size_t len;
    unsigned char *data = footer_only(footer, off, &len);
    struct agg_tz *tz = agg_tz_parse("test", data, len, &err);

    free(data);
    if (tz == NULL)
        fail_msg("footer \"%s\": %s", footer, err.msg);
    return tz;
}

/* glibc's offset for <t> in zone <name> (setenv TZ: only a test may do that). */
static long glibc_offset(const char *name, time_t t)
{
    char tzenv[300];
    struct tm tm;

    snprintf(tzenv, sizeof(tzenv), ":%s", name);
    setenv("TZ", tzenv, 1);
    tzset();
    assert_non_null(localtime_r(&t, &tm));
    return tm.tm_gmtoff;
}

static void test_tz_offsets_agree_with_glibc_from_1900_to_2100(void **state)
{
    static const char *const zones[] = {"Europe/Berlin",      "America/New_York",
                                        "Australia/Sydney",   "Asia/Kolkata",
                                        "America/Sao_Paulo",  "Pacific/Chatham",
                                        "Africa/Casablanca",  "Europe/Dublin",
                                        "America/St_Johns",   "Antarctica/Troll",
                                        "Pacific/Apia",       "Etc/GMT-14"};

    (void)state;
    for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
        char path[512];
        struct agg_err err = {0};
        struct agg_tz *tz;
        int checked = 0;

        snprintf(path, sizeof(path), "%s/%s", AGG_TZ_DIR, zones[z]);
        if (access(path, R_OK) != 0)
            continue;
        tz = agg_tz_load(zones[z], &err);
        if (tz == NULL)
            fail_msg("%s: %s", zones[z], err.msg);
        /* every 13 hours and 13 minutes: all hours of the day, all days of the week */
        for (int64_t t = utc(1900, 1, 1, 0, 0); t < utc(2100, 1, 1, 0, 0); t += 13 * HOUR + 780) {
            long want = glibc_offset(zones[z], (time_t)t);

            if (agg_tz_offset_at(tz, t) != want)
                fail_msg("%s at %lld: %d, glibc %ld", zones[z], (long long)t,
                         agg_tz_offset_at(tz, t), want);
            checked++;
        }
        assert_true(checked > 100000);
        agg_tz_free(tz);
    }
    unsetenv("TZ");
    tzset();
}

static void test_tz_footer_rule_continues_the_transition_table(void **state)
{
    static const struct {
        const char *zone, *footer;
        int32_t std;
        int from_year;
    } cases[] = {
        {"Europe/Berlin", "CET-1CEST,M3.5.0,M10.5.0/3", 3600, 1997},
        {"America/New_York", "EST5EDT,M3.2.0,M11.1.0", -5 * 3600, 2008},
        {"Australia/Sydney", "AEST-10AEDT,M10.1.0,M4.1.0/3", 10 * 3600, 2009},
        {"America/St_Johns", "NST3:30NDT,M3.2.0,M11.1.0", -12600, 2012},
        {"Pacific/Chatham", "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45", 45900, 2008},
        {"Asia/Kolkata", "IST-5:30", 19800, 1946},
    };

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct agg_tz *full, *rule;
        char path[512];

        snprintf(path, sizeof(path), "%s/%s", AGG_TZ_DIR, cases[c].zone);
        if (access(path, R_OK) != 0)
            continue;
        full = load_or_skip(cases[c].zone);
        rule = rule_zone(cases[c].footer, cases[c].std);
        for (int64_t t = utc(cases[c].from_year, 1, 1, 0, 0); t < utc(2037, 12, 31, 0, 0);
             t += 1800) {
            if (agg_tz_offset_at(full, t) != agg_tz_offset_at(rule, t))
                fail_msg("%s at %lld: table %d, rule %d", cases[c].zone, (long long)t,
                         agg_tz_offset_at(full, t), agg_tz_offset_at(rule, t));
        }
        agg_tz_free(full);
        agg_tz_free(rule);
    }
}

static void test_tz_footer_rules_of_every_date_form(void **state)
{
    struct agg_tz *tz;

    (void)state;
    /* Jn: day 60 is always March 1 */
    tz = rule_zone("XST-1XDT,J60/0,J305/0", 3600);
    assert_int_equal(agg_tz_offset_at(tz, utc(2024, 2, 29, 22, 59)), 3600);
    assert_int_equal(agg_tz_offset_at(tz, utc(2024, 2, 29, 23, 0)), 7200);
    assert_int_equal(agg_tz_offset_at(tz, utc(2023, 2, 28, 23, 0)), 7200);
    agg_tz_free(tz);
    /* n: zero-based, counts Feb 29 */
    tz = rule_zone("XST-1XDT,59/0,304/0", 3600);
    assert_int_equal(agg_tz_offset_at(tz, utc(2024, 2, 28, 23, 0)), 7200); /* Feb 29 */
    assert_int_equal(agg_tz_offset_at(tz, utc(2023, 2, 28, 22, 59)), 3600);
    agg_tz_free(tz);
    /* RFC 8536's extension: DST all year, written as a change at 25:00 */
    tz = rule_zone("EST5EDT,0/0,J365/25", -5 * 3600);
    for (int64_t t = utc(2030, 1, 1, 0, 0); t < utc(2032, 1, 1, 0, 0); t += 5 * HOUR + 17)
        assert_int_equal(agg_tz_offset_at(tz, t), -4 * 3600);
    agg_tz_free(tz);
    /* negative transition times (-167..167 hours) */
    tz = rule_zone("<-03>3<-02>,M3.5.0/-2,M10.5.0/-1", -3 * 3600);
    /* last Sunday of March (the 29th), -2:00 local: 22:00 on the 28th at -03 */
    assert_int_equal(agg_tz_offset_at(tz, utc(2026, 3, 29, 1, 0)), -2 * 3600);
    assert_int_equal(agg_tz_offset_at(tz, utc(2026, 3, 29, 0, 59)), -3 * 3600);
    agg_tz_free(tz);
    /* far beyond any table, and at the int64 limits: no overflow */
    tz = rule_zone("CET-1CEST,M3.5.0,M10.5.0/3", 3600);
    assert_int_equal(agg_tz_offset_at(tz, utc(9000, 7, 1, 0, 0)), 7200);
    assert_int_equal(agg_tz_offset_at(tz, INT64_MAX), 3600);
    assert_int_equal(agg_tz_offset_at(tz, INT64_MIN), 3600);
    assert_int_equal(agg_tz_local_to_utc(tz, INT64_MIN), INT64_MIN);
    assert_int_equal(agg_tz_utc_to_local(tz, INT64_MAX), INT64_MAX);
    agg_tz_free(tz);
}

static void test_tz_local_to_utc_reads_skipped_and_repeated_times(void **state)
{
    /* wall clock in Berlin -> UTC, as {y, mo, d, h, mi} pairs */
    static const struct {
        int local[5], want[5];
    } cases[] = {
        {{2026, 1, 15, 12, 0}, {2026, 1, 15, 11, 0}}, /* winter */
        {{2026, 7, 1, 12, 0}, {2026, 7, 1, 10, 0}},   /* summer */
        /* 2026-03-29 02:30 does not exist: read with +01:00, it is 03:30 CEST */
        {{2026, 3, 29, 2, 30}, {2026, 3, 29, 1, 30}},
        {{2026, 3, 29, 3, 0}, {2026, 3, 29, 1, 0}},
        /* 2026-10-25 02:30 happens twice: the first, in CEST */
        {{2026, 10, 25, 2, 30}, {2026, 10, 25, 0, 30}},
        {{2026, 10, 25, 3, 0}, {2026, 10, 25, 2, 0}},
    };
    struct agg_tz *tz = rule_zone("CET-1CEST,M3.5.0,M10.5.0/3", 3600);
    int64_t us = AGG_US_PER_SEC;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const int *l = cases[i].local, *w = cases[i].want;
        int64_t local = utc(l[0], (unsigned)l[1], (unsigned)l[2], l[3], l[4]) * us + 7;
        int64_t want = utc(w[0], (unsigned)w[1], (unsigned)w[2], w[3], w[4]) * us + 7;

        if (agg_tz_local_to_utc(tz, local) != want)
            fail_msg("case %zu: %lld, want %lld", i, (long long)agg_tz_local_to_utc(tz, local),
                     (long long)want);
    }
    /* and back */
    assert_int_equal(agg_tz_utc_to_local(tz, utc(2026, 7, 1, 10, 0) * us),
                     utc(2026, 7, 1, 12, 0) * us);
    agg_tz_free(tz);
}

static void test_tz_local_to_utc_round_trips_every_hour(void **state)
{
    static const char *const zones[] = {"Europe/Berlin", "Australia/Sydney", "America/St_Johns"};

    (void)state;
    for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
        struct agg_tz *tz = load_or_skip(zones[z]);

        for (int64_t t = utc(1990, 1, 1, 0, 0); t < utc(2045, 1, 1, 0, 0); t += HOUR) {
            int64_t us = t * AGG_US_PER_SEC, local = agg_tz_utc_to_local(tz, us);
            int64_t back = agg_tz_local_to_utc(tz, local);

            /* the second of a repeated hour reads as the first */
            if (back != us && !(back < us && agg_tz_utc_to_local(tz, back) == local))
                fail_msg("%s: %lld -> %lld -> %lld", zones[z], (long long)us, (long long)local,
                         (long long)back);
        }
        agg_tz_free(tz);
    }
}

static void test_tz_load_refuses_bad_names_and_unknown_zones(void **state)
{
    static const char *const bad[] = {"", "/etc/localtime", "../etc/passwd", "Europe/../UTC",
                                      "Europe//Berlin", "Europe/Berlin/", ".", "a b", "x\\y"};
    struct agg_err err = {0};
    struct agg_tz *tz;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_null(agg_tz_load(bad[i], &err));
        assert_int_equal(err.code, AGG_EINVAL);
        assert_non_null(strstr(err.msg, "not a time zone name"));
    }
    memset(&err, 0, sizeof(err));
    assert_null(agg_tz_load("Europe/Berln", &err));
    assert_non_null(strstr(err.msg, "unknown time zone \"Europe/Berln\""));
    /* a directory is no zone */
    if (access(AGG_TZ_DIR "/Europe", R_OK) == 0) {
        assert_null(agg_tz_load("Europe", &err));
        assert_non_null(strstr(err.msg, "unknown time zone"));
    }
    /* UTC needs no tzdata */
    tz = agg_tz_load("UTC", &err);
    assert_non_null(tz);
    assert_string_equal(agg_tz_name(tz), "UTC");
    assert_int_equal(agg_tz_offset_at(tz, 1234567890), 0);
    assert_int_equal(agg_tz_local_to_utc(tz, 42), 42);
    agg_tz_free(tz);
    agg_tz_free(NULL);
}

static void test_tz_parse_refuses_malformed_files_at_every_length(void **state)
{
    struct agg_tz *tz = load_or_skip("Europe/Berlin");
    char path[512];
    FILE *f;
    unsigned char buf[8192];
    size_t n;

    (void)state;
    agg_tz_free(tz);
    snprintf(path, sizeof(path), "%s/Europe/Berlin", AGG_TZ_DIR);
    f = fopen(path, "rb");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_true(n > 44 && n < sizeof(buf));
    for (size_t k = 0; k < n; k++) {
        struct agg_err err = {0};
        unsigned char *exact = malloc(k > 0 ? k : 1);

        assert_non_null(exact);
        memcpy(exact, buf, k);
        tz = agg_tz_parse("Europe/Berlin", exact, k, &err);
        if (tz != NULL)
            fail_msg("a file cut at %zu octets was accepted", k);
        assert_non_null(strstr(err.msg, "Europe/Berlin"));
        free(exact);
    }
    /* a bad footer and a transition of an unknown type */
    {
        struct agg_err err = {0};
        size_t len;
        unsigned char *p = footer_only("CET-1CEST,M13.5.0,M10.5.0/3", 3600, &len);

        assert_null(agg_tz_parse("x", p, len, &err));
        assert_non_null(strstr(err.msg, "footer"));
        free(p);
    }
    memcpy(buf + 4, "5", 1);
    assert_null(agg_tz_parse("x", buf, n, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tz_offsets_agree_with_glibc_from_1900_to_2100),
        cmocka_unit_test(test_tz_footer_rule_continues_the_transition_table),
        cmocka_unit_test(test_tz_footer_rules_of_every_date_form),
        cmocka_unit_test(test_tz_local_to_utc_reads_skipped_and_repeated_times),
        cmocka_unit_test(test_tz_local_to_utc_round_trips_every_hour),
        cmocka_unit_test(test_tz_load_refuses_bad_names_and_unknown_zones),
        cmocka_unit_test(test_tz_parse_refuses_malformed_files_at_every_length),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
