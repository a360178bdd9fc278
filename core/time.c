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

bool agg_time_parse_iso8601(const char *p, size_t len, int64_t *us)
{
    const char *end = p + len;
    int y, mo, d, h, mi, s;
    int64_t frac = 0, offset_s = 0;

    if (len < 19 || p[4] != '-' || p[7] != '-' || p[13] != ':' || p[16] != ':' ||
        (p[10] != 'T' && p[10] != 't' && p[10] != ' '))
        return false;
    y = digits(p, 4);
    mo = digits(p + 5, 2);
    d = digits(p + 8, 2);
    h = digits(p + 11, 2);
    mi = digits(p + 14, 2);
    s = digits(p + 17, 2);
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > (int)agg_days_in_month(y, (unsigned)mo) ||
        h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 60)
        return false;
    p += 19;
    if (p < end && (*p == '.' || *p == ',')) {
        int n = 0;

        p++;
        if (p >= end || *p < '0' || *p > '9')
            return false;
        for (; p < end && *p >= '0' && *p <= '9'; p++, n++) {
            if (n < 6)
                frac = frac * 10 + (*p - '0');
        }
        for (; n < 6; n++)
            frac *= 10;
    }
    if (p < end) {
        if ((*p == 'Z' || *p == 'z') && p + 1 == end) {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p == '-' ? -1 : 1, oh, om;
            size_t rest = (size_t)(end - p - 1);

            if (rest == 5 && p[3] == ':') {
                oh = digits(p + 1, 2);
                om = digits(p + 4, 2);
            } else if (rest == 4) {
                oh = digits(p + 1, 2);
                om = digits(p + 3, 2);
            } else if (rest == 2) {
                oh = digits(p + 1, 2);
                om = 0;
            } else {
                return false;
            }
            if (oh < 0 || oh > 23 || om < 0 || om > 59)
                return false;
            offset_s = sign * (oh * 3600 + om * 60);
            p = end;
        } else {
            return false;
        }
    }
    if (p != end)
        return false;
    if (s == 60) { /* a leap second: the last instant of the minute */
        s = 59;
        frac = 999999;
    }
    *us = ((agg_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + s -
            offset_s) *
           AGG_US_PER_SEC) +
          frac;
    return true;
}

static void split(int64_t us, int64_t *y, unsigned *mo, unsigned *d, int *h, int *mi, int *s,
                  int *frac)
{
    int64_t secs = us >= 0 ? us / AGG_US_PER_SEC : -((-us + AGG_US_PER_SEC - 1) / AGG_US_PER_SEC);
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
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

int64_t agg_time_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * AGG_US_PER_SEC + ts.tv_nsec / 1000;
}
