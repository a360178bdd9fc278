/*
 * core/time.h — timestamps as microseconds since the Unix epoch, UTC.
 *
 * Place: parsers turn text into int64 microseconds; the COPY encoder prints them.
 * Threads: pure.
 */
#ifndef AGGD_CORE_TIME_H
#define AGGD_CORE_TIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGG_TIME_NONE INT64_MIN
#define AGG_US_PER_SEC INT64_C(1000000)

/* Days since 1970-01-01 of the proleptic Gregorian date <y>-<m>-<d>. */
int64_t agg_days_from_civil(int64_t y, unsigned m, unsigned d);
/* The date of <days> since 1970-01-01. */
void agg_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
/* Days in month <m> of year <y>. */
unsigned agg_days_in_month(int64_t y, unsigned m);

/* ---- months: the key of the monthly partitions and their archives ----
 * A month key counts months since year 0 (UTC): year * 12 + (month - 1). */
#define AGG_TIME_MONTH(y, m) ((int)(y)*12 + (int)(m)-1)

/* The month key holding <us> (floor: -1 is in 1969-12). */
int agg_time_month_of_us(int64_t us);
/* The first instant of <month>: its day 1, 00:00 UTC, in microseconds. */
int64_t agg_time_month_start_us(int month);
/* The year and month (1-12) of <month>. */
void agg_time_month_split(int month, int *year, int *mon);
/* "YYYY<sep>MM" into <out>: <sep> '-' for archives and the CLI, '_' for the partition
 * suffix (<table>_YYYY_MM). Years 0000-9999; any other month writes "0000<sep>01". */
void agg_time_month_format(int month, char sep, char out[8]);
/* "YYYY-MM-01", the SQL date of <month>'s first day, into <out>. */
void agg_time_month_date(int month, char out[16]);

/* ---- ISO 8601 / RFC 3339: the one parser (JSON, syslog, API, CLI) ----
 *
 * Leap seconds, decided here once: second 60 is accepted in any minute and read as the
 * last microsecond of that minute (:59.999999, whatever fraction followed), so the
 * instant stays inside the minute it names and sorts before the next one. Only
 * AGG_TIME_ISO_RFC5424 refuses it (RFC 5424 section 6.2.3 forbids leap seconds). */

enum agg_time_iso_flag {
    /* Exactly an RFC 5424 TIMESTAMP: upper-case 'T', '.' and 1-6 fraction digits, 'Z' or
     * +hh:mm required, no leap second. */
    AGG_TIME_ISO_RFC5424 = 1 << 0,
    /* Also "Z" followed by an offset ("Z+00:00", as Beats reads it), the offset winning.
     * Ignored with AGG_TIME_ISO_RFC5424. */
    AGG_TIME_ISO_Z_OFFSET = 1 << 1,
};

/* What agg_time_scan_iso8601() found. */
struct agg_time_iso {
    size_t end;      /* index after the timestamp */
    int64_t us;      /* the instant; with no zone the wall-clock time counted as UTC */
    bool zoned;      /* 'Z' or an offset was given */
    size_t bad;      /* on failure: index of the offending octet */
    const char *why; /* on failure: static text, e.g. "field out of range" */
};

/* Scans a date-time at <p>[<i>..<len>) (no NUL needed), which may be followed by more:
 * YYYY-MM-DD('T'|'t'|' ')HH:MM:SS[('.'|',')fraction][Z|z|+HH:MM|-HH:MM|+HHMM|+HH],
 * narrowed or widened by <flags> (enum agg_time_iso_flag). Real calendar days, hours
 * 00-23, offsets up to 23:59; fraction digits past microseconds are truncated. True and
 * <out>'s end, us and zoned, or false and its bad and why. */
bool agg_time_scan_iso8601(const char *p, size_t len, size_t i, unsigned flags,
                           struct agg_time_iso *out);

/* Parses an ISO 8601 / RFC 3339 timestamp, the whole of <p>[<len>], as
 * agg_time_scan_iso8601() with no flags; no zone means UTC. False when it is not such a
 * timestamp or a field is out of range. */
bool agg_time_parse_iso8601(const char *p, size_t len, int64_t *us);

/* Reads the digits of a fraction at <p>[<i>..<len>): *<frac_us> the first six as
 * microseconds, *<ndigits> how many there were. Returns the index after them. */
size_t agg_time_scan_fraction(const char *p, size_t len, size_t i, int64_t *frac_us,
                              size_t *ndigits);

/* Writes <us> as "YYYY-MM-DD HH:MM:SS.ffffff" (26 chars + NUL) into <out>; years
 * 0001-9999 only. Returns the length. */
size_t agg_time_format(int64_t us, char out[32]);

/* Writes <us> as RFC 3339 "YYYY-MM-DDTHH:MM:SS.ffffffZ" into <out>. */
size_t agg_time_format_rfc3339(int64_t us, char out[40]);

/* The current time in microseconds. */
int64_t agg_time_now_us(void);

/* Microseconds on CLOCK_MONOTONIC: for intervals, deadlines and rate limits, never for
 * timestamps (it does not jump with the wall clock, and its zero is arbitrary). Any
 * thread. */
int64_t agg_time_mono_us(void);

#endif
