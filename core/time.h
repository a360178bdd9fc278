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

/* Parses an ISO 8601 / RFC 3339 timestamp, the whole of <p>[<len>]:
 * YYYY-MM-DD('T'|'t'|' ')HH:MM:SS[.fraction][Z|z|+HH:MM|-HH:MM|+HHMM|-HHMM].
 * No zone means UTC. Fractions past microseconds are truncated. Leap second 60 is
 * accepted as 59.999999. False when it is not such a timestamp or a field is out of
 * range. */
bool agg_time_parse_iso8601(const char *p, size_t len, int64_t *us);

/* Writes <us> as "YYYY-MM-DD HH:MM:SS.ffffff" (26 chars + NUL) into <out>; years
 * 0001-9999 only. Returns the length. */
size_t agg_time_format(int64_t us, char out[32]);

/* Writes <us> as RFC 3339 "YYYY-MM-DDTHH:MM:SS.ffffffZ" into <out>. */
size_t agg_time_format_rfc3339(int64_t us, char out[40]);

/* The current time in microseconds. */
int64_t agg_time_now_us(void);

#endif
