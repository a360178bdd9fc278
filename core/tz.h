/*
 * core/tz.h — IANA time zones read from the system's TZif files, for local times
 *               that carry no offset (RFC 3164 timestamps).
 *
 * Place: config validation and the syslog listeners load a zone once; the syslog
 *        parser converts with it (ingest/syslog.c).
 * Threads: a loaded zone is immutable: any thread may use it at once. Nothing here
 *          touches TZ, localtime or any other process-wide state.
 * Ownership: agg_tz_load/agg_tz_parse return a zone the caller frees.
 * Traps: files after the last transition (all of them after 2037, and "slim" ones
 *        much earlier) are continued by the POSIX TZ rule in the file's footer;
 *        RFC 8536 allows its hours to run from -167 to 167.
 * Not here: the zone of the daemon itself (everything aggd stores is UTC).
 */
#ifndef AGGD_CORE_TZ_H
#define AGGD_CORE_TZ_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define AGG_TZ_DIR          "/usr/share/zoneinfo" /* Debian's tzdata, glibc's default */
#define AGG_TZ_NAME_MAX     255
#define AGG_TZ_FILE_MAX     (1024 * 1024)         /* the largest zone file read */
#define AGG_TZ_TRANSITIONS_MAX 100000             /* tzdata's largest has ~2000 */

struct agg_tz; /* opaque, immutable */

/* The zone <name>, an IANA name ("Europe/Berlin", "America/New_York", "Etc/GMT-3",
 * "UTC"): read from AGG_TZ_DIR/<name>, except "UTC", which needs no file. Names are
 * path components of letters, digits and "._+-", never ".." or absolute. Caller owns
 * the result: agg_tz_free(). NULL + <err> naming the zone and the reason. */
struct agg_tz *agg_tz_load(const char *name, struct agg_err *err);

/* The zone <name> from the TZif data <data>[<len>] (RFC 8536, versions 1-4). Zones
 * with leap seconds ("right/...") are refused. Caller owns the result:
 * agg_tz_free(). NULL + <err> on malformed data. */
struct agg_tz *agg_tz_parse(const char *name, const unsigned char *data, size_t len,
                            struct agg_err *err);

/* Frees <tz>; NULL is allowed. */
void agg_tz_free(struct agg_tz *tz);

/* The zone's name, as loaded. Points into <tz>. */
const char *agg_tz_name(const struct agg_tz *tz);

/* The offset from UTC, in seconds east, in force at the instant <utc_s> (seconds
 * since the epoch). */
int32_t agg_tz_offset_at(const struct agg_tz *tz, int64_t utc_s);

/* The instant (microseconds since the epoch, UTC) at which the zone's wall clock
 * reads <local_us> (a civil date and time counted as microseconds since
 * 1970-01-01 00:00 of that wall clock). A time skipped when the clock goes forward
 * is read with the offset in force before the change (it lands after the change);
 * a time that occurs twice when the clock goes back is the first of the two. */
int64_t agg_tz_local_to_utc(const struct agg_tz *tz, int64_t local_us);

/* The zone's wall clock at the instant <utc_us>, as agg_tz_local_to_utc counts it. */
int64_t agg_tz_utc_to_local(const struct agg_tz *tz, int64_t utc_us);

#endif
