/*
 * core/time.c — civil-time arithmetic and ISO 8601 parsing without libc time zones.
 *
 * Place: see core/time.h.
 * Threads: pure (no localtime, no TZ).
 * Traps: days_from_civil is Howard Hinnant's public-domain algorithm, exact for the
 *        proleptic Gregorian calendar.
 */
#include "core/time.h"

#include <stdio.h>
#include <time.h>

int64_t agg_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void agg_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

unsigned agg_days_in_month(int64_t y, unsigned m)
{
    static const unsigned char days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : days[m - 1];
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

int agg_time_month_of_us(int64_t us)
{
    int64_t y;
    unsigned m, d;

    agg_civil_from_days(floor_div(us, 86400 * AGG_US_PER_SEC), &y, &m, &d);
    return AGG_TIME_MONTH(y, m);
}

int64_t agg_time_month_start_us(int month)
{
    int y, m;

    agg_time_month_split(month, &y, &m);
    return agg_days_from_civil(y, (unsigned)m, 1) * 86400 * AGG_US_PER_SEC;
}

void agg_time_month_split(int month, int *year, int *mon)
{
    *year = (int)floor_div(month, 12);
    *mon = month - *year * 12 + 1;
}

void agg_time_month_format(int month, char sep, char out[8])
{
    int y, m;

    agg_time_month_split(month, &y, &m);
    if (y < 0 || y > 9999)
        y = 0, m = 1;
    snprintf(out, 8, "%04u%c%02u", (unsigned)y % 10000u, sep, (unsigned)m % 100u);
}

void agg_time_month_date(int month, char out[16])
{
    char ym[8];

    agg_time_month_format(month, '-', ym);
    snprintf(out, 16, "%s-01", ym);
}

/* Reads exactly <n> digits at <p>; -1 when any is not a digit. */
static int digits(const char *p, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

size_t agg_time_scan_fraction(const char *p, size_t len, size_t i, int64_t *frac_us,
                              size_t *ndigits)
{
    int64_t v = 0;
    size_t n = 0;

    for (; i < len && p[i] >= '0' && p[i] <= '9'; i++, n++) {
        if (n < 6)
            v = v * 10 + (p[i] - '0');
    }
    for (size_t k = n; k < 6; k++)
        v *= 10;
    *frac_us = v;
    *ndigits = n;
    return i;
}

/* Fails the scan at <p>[<bad>] because of <why>. */
static bool refuse(struct agg_time_iso *out, size_t bad, const char *why)
{
    out->bad = bad;
    out->why = why;
    return false;
}

/* The zone at <p>[j..len) after the seconds and fraction: "Z", an offset, or (unless
 * <strict>) nothing; *off_s gets the offset east of UTC in seconds. */
static bool scan_zone(const char *p, size_t len, size_t j, unsigned flags, int *off_s,
                      struct agg_time_iso *out)
{
    bool strict = (flags & AGG_TIME_ISO_RFC5424) != 0;
    int sign, oh, om = 0;

    out->zoned = j < len && (p[j] == 'Z' || p[j] == 'z' || p[j] == '+' || p[j] == '-');
    if (j < len && (p[j] == 'Z' || (!strict && p[j] == 'z'))) {
        j++;
        if (strict || (flags & AGG_TIME_ISO_Z_OFFSET) == 0 || j >= len ||
            (p[j] != '+' && p[j] != '-')) {
            out->end = j;
            return true;
        }
    } else if (strict && (j >= len || (p[j] != '+' && p[j] != '-'))) {
        return refuse(out, j, "\"Z\" or a +hh:mm offset expected");
    }
    if (j >= len || (p[j] != '+' && p[j] != '-')) {
        out->end = j; /* no zone */
        return true;
    }
    sign = p[j] == '-' ? -1 : 1;
    oh = j + 3 <= len ? digits(p + j + 1, 2) : -1;
    if (oh < 0 || oh > 23)
        return refuse(out, j + 1, "offset hours 00-23 expected");
    j += 3;
    if (j + 3 <= len && p[j] == ':' && digits(p + j + 1, 2) >= 0) {
        om = digits(p + j + 1, 2);
        j += 3;
    } else if (!strict && j + 2 <= len && digits(p + j, 2) >= 0) {
        om = digits(p + j, 2);
        j += 2;
    } else if (strict) {
        return refuse(out, j, "\":mm\" expected in the offset");
    }
    if (om > 59)
        return refuse(out, j - 2, "offset minutes 00-59 expected");
    *off_s = sign * (oh * 3600 + om * 60);
    out->end = j;
    return true;
}

bool agg_time_scan_iso8601(const char *p, size_t len, size_t i, unsigned flags,
                           struct agg_time_iso *out)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd:dd";
    bool strict = (flags & AGG_TIME_ISO_RFC5424) != 0;
    int y, mo, d, h, mi, s, off_s = 0;
    int64_t frac = 0;
    size_t j;

    for (size_t k = 0; k < sizeof(pattern) - 1; k++) {
        char c;
        bool ok;

        if (i + k >= len)
            return refuse(out, i + k, "ends early");
        c = p[i + k];
        if (pattern[k] == 'd')
            ok = c >= '0' && c <= '9';
        else if (pattern[k] == 'T')
            ok = c == 'T' || (!strict && (c == 't' || c == ' '));
        else
            ok = c == pattern[k];
        if (!ok)
            return refuse(out, i + k, pattern[k] == 'd' ? "digit expected" : "separator expected");
    }
    y = digits(p + i, 4);
    mo = digits(p + i + 5, 2);
    d = digits(p + i + 8, 2);
    h = digits(p + i + 11, 2);
    mi = digits(p + i + 14, 2);
    s = digits(p + i + 17, 2);
    if (y < 1)
        return refuse(out, i, "field out of range");
    if (mo < 1 || mo > 12)
        return refuse(out, i + 5, "field out of range");
    if (d < 1 || d > (int)agg_days_in_month(y, (unsigned)mo))
        return refuse(out, i + 8, "field out of range");
    if (h > 23)
        return refuse(out, i + 11, "field out of range");
    if (mi > 59)
        return refuse(out, i + 14, "field out of range");
    if (s > 60 || (s == 60 && strict)) /* RFC 5424 6.2.3 forbids leap seconds */
        return refuse(out, i + 17, "field out of range");
    j = i + 19;
    if (j < len && (p[j] == '.' || (!strict && p[j] == ','))) {
        size_t n;

        j = agg_time_scan_fraction(p, len, j + 1, &frac, &n);
        if (n == 0)
            return refuse(out, j, "fraction digit expected");
        if (strict && n > 6)
            return refuse(out, j - n + 6, "more than 6 fraction digits");
    }
    if (!scan_zone(p, len, j, flags, &off_s, out))
        return false;
    if (s == 60) { /* a leap second: the last instant of the minute */
        s = 59;
        frac = 999999;
    }
    out->us = (agg_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
               s - off_s) *
                  AGG_US_PER_SEC +
              frac;
    return true;
}

bool agg_time_parse_iso8601(const char *p, size_t len, int64_t *us)
{
    struct agg_time_iso t;

    if (!agg_time_scan_iso8601(p, len, 0, 0, &t) || t.end != len)
        return false;
    *us = t.us;
    return true;
}

static void split(int64_t us, int64_t *y, unsigned *mo, unsigned *d, int *h, int *mi, int *s,
                  int *frac)
{
    int64_t secs = floor_div(us, AGG_US_PER_SEC);
    int64_t days = floor_div(secs, 86400);
    int64_t sod = secs - days * 86400;

    *frac = (int)(us - secs * AGG_US_PER_SEC);
    agg_civil_from_days(days, y, mo, d);
    *h = (int)(sod / 3600);
    *mi = (int)(sod % 3600 / 60);
    *s = (int)(sod % 60);
}

/* "YYYY-MM-DD<sep>HH:MM:SS.ffffff<suffix>" of <us> into <out>[<size>]. */
static size_t format(int64_t us, char *out, size_t size, char sep, const char *suffix)
{
    int64_t y;
    unsigned mo, d;
    int h, mi, s, frac;

    split(us, &y, &mo, &d, &h, &mi, &s, &frac);
    return (size_t)snprintf(out, size, "%04d-%02u-%02u%c%02d:%02d:%02d.%06d%s", (int)y, mo, d, sep,
                            h, mi, s, frac, suffix);
}

size_t agg_time_format(int64_t us, char out[32])
{
    return format(us, out, 32, ' ', "");
}

size_t agg_time_format_rfc3339(int64_t us, char out[40])
{
    return format(us, out, 40, 'T', "Z");
}

static int64_t clock_us(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * AGG_US_PER_SEC + ts.tv_nsec / 1000;
}

int64_t agg_time_now_us(void)
{
    return clock_us(CLOCK_REALTIME);
}

int64_t agg_time_mono_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}
