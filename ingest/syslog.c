/*
 * ingest/syslog.c — RFC 5424/3164 parser: one frame in, one record out.
 *
 * Place: framer -> [syslog] -> record -> spool (DESIGN.md, Data flow).
 * Threads: pure; callable from any thread.
 * Ownership: keeps no pointer into the input after return; the message it fills does.
 * Traps: every index is checked against the length before the octet is read (no
 *        NUL terminator is assumed: fuzz_syslog feeds exact-size buffers). RFC 3164
 *        heuristics are tuned against tests/data/conformance/rfc3164.jsonl; change
 *        one and run test_ing_syslog, which prints the per-file tally. yajl_gen
 *        allocates with plain malloc: its allocator hooks do not survive a failing
 *        allocation, so the allocation-failure sweep reaches only our buffers.
 *        An SD param left out of extra_data.sd must come back from its column exactly:
 *        column_holds() decides, against how PostgreSQL prints the column, and
 *        tests/integration/test_sd_rebuild.py checks the stored rows.
 * Not here: framing (ingest/framing.c), UTF-8 repair of columns (store/ COPY encoder).
 */
#include "ingest/syslog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>

#include "core/time.h"
#include "core/tz.h"

/* ---- octets ------------------------------------------------------------------ */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(char c)
{
    return is_digit(c) || is_alpha(c);
}

/* RFC 5424 PRINTUSASCII: %d33-126. */
static bool is_print(char c)
{
    return (unsigned char)c >= 33 && (unsigned char)c <= 126;
}

/* <c> for an error message: 'x', or its hex value when not printable. */
static const char *show(char c, char out[8])
{
    if (is_print(c) && c != '\'')
        snprintf(out, 8, "'%c'", c);
    else
        snprintf(out, 8, "0x%02x", (unsigned char)c);
    return out;
}

/* The value of the <n> digits at <p>, or -1. */
static int digits(const char *p, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static struct agg_str slice(const char *p, size_t from, size_t to)
{
    struct agg_str s = {p + from, to - from};

    return s;
}

/* ---- timestamps -------------------------------------------------------------- */

#define US_PER_DAY (INT64_C(86400) * AGG_US_PER_SEC)
#define DAYS_31_US (INT64_C(31) * US_PER_DAY)

static int64_t civil_us(int64_t y, unsigned mo, unsigned d, int h, int mi, int s, int64_t frac)
{
    return (agg_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * AGG_US_PER_SEC + frac;
}

/* When the zone-less times of RFC 3164 are read: the receive time and the sender's
 * zone (NULL: UTC). */
struct clock {
    int64_t now_us;
    const struct agg_tz *zone;
};

/* The instant at which <c>'s zone reads the wall-clock time <local_us>. */
static int64_t from_local(const struct clock *c, int64_t local_us)
{
    return c->zone != NULL && local_us != AGG_TIME_NONE ? agg_tz_local_to_utc(c->zone, local_us)
                                                         : local_us;
}

/* The instant of a year-less date nearest to <now_us>, not more than 31 days ahead of
 * it when avoidable (a device's "Dec 31" read on Jan 2 is last year's; its "Jan 1" read
 * on Dec 31 is next year's). A "Feb 29" with no leap year in reach is of the latest
 * leap year before. */
static int64_t resolve_year(unsigned mo, unsigned d, int64_t tod_us, int64_t now_us)
{
    int64_t lo = agg_days_from_civil(10, 1, 1) * US_PER_DAY;
    int64_t hi = agg_days_from_civil(9998, 12, 31) * US_PER_DAY;
    int64_t days, y, best = AGG_TIME_NONE;
    unsigned m_now, d_now;
    bool best_future = true;

    /* keep every candidate within years 1..9999 */
    now_us = now_us < lo ? lo : now_us > hi ? hi : now_us;
    days = now_us >= 0 ? now_us / US_PER_DAY : -((-now_us + US_PER_DAY - 1) / US_PER_DAY);
    agg_civil_from_days(days, &y, &m_now, &d_now);
    for (int64_t cy = y - 1; cy <= y + 1; cy++) {
        int64_t c, dist;
        bool future, better;

        if (d > agg_days_in_month(cy, mo))
            continue;
        c = agg_days_from_civil(cy, mo, d) * US_PER_DAY + tod_us;
        future = c - now_us > DAYS_31_US;
        dist = c > now_us ? c - now_us : now_us - c;
        if (best == AGG_TIME_NONE)
            better = true;
        else if (best_future != future)
            better = best_future;
        else
            better = dist < (best > now_us ? best - now_us : now_us - best);
        if (better) {
            best = c;
            best_future = future;
        }
    }
    for (int64_t cy = y - 2; best == AGG_TIME_NONE && cy >= y - 8; cy--) {
        if (d <= agg_days_in_month(cy, mo))
            best = agg_days_from_civil(cy, mo, d) * US_PER_DAY + tod_us;
    }
    return best;
}

static const char *const month_names[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                            "jul", "aug", "sep", "oct", "nov", "dec"};

/* A BSD timestamp at <p>[i..len): "Mmm dd hh:mm:ss", the month in any case, the day as
 * " d", "d" or "dd", an optional "yyyy " before the time, an optional fraction. It
 * must be followed by the end, SP, or ":" and then the end or SP (Cisco). */
struct bsd_time {
    size_t end;  /* after the timestamp text */
    size_t next; /* after a Cisco ":" */
    int64_t us;
    int year;
};

static bool scan_bsd(const char *p, size_t len, size_t i, const struct clock *ck,
                     struct bsd_time *t)
{
    int mo = -1, d, h, mi, s, year = 0;
    int64_t frac = 0;
    size_t j;
    bool padded;

    if (i + 3 > len)
        return false;
    for (int k = 0; k < 12; k++) {
        if ((p[i] | 0x20) == month_names[k][0] && (p[i + 1] | 0x20) == month_names[k][1] &&
            (p[i + 2] | 0x20) == month_names[k][2])
            mo = k + 1;
    }
    j = i + 3;
    if (mo < 0 || j >= len || p[j] != ' ')
        return false;
    j++;
    padded = j < len && p[j] == ' '; /* "Feb  5" */
    j += padded;
    if (j >= len || !is_digit(p[j]))
        return false;
    d = p[j++] - '0';
    if (j < len && is_digit(p[j])) {
        if (padded)
            return false;
        d = d * 10 + (p[j++] - '0');
    }
    if (j >= len || p[j] != ' ')
        return false;
    j++;
    if (j + 5 <= len && digits(p + j, 4) >= 0 && p[j + 4] == ' ') {
        year = digits(p + j, 4);
        j += 5;
        if (year < 1)
            return false;
    }
    if (j + 8 > len || p[j + 2] != ':' || p[j + 5] != ':')
        return false;
    h = digits(p + j, 2);
    mi = digits(p + j + 3, 2);
    s = digits(p + j + 6, 2);
    j += 8;
    if (h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59 || d < 1 ||
        d > (int)agg_days_in_month(year != 0 ? year : 2000, (unsigned)mo))
        return false;
    if (j + 1 < len && p[j] == '.' && is_digit(p[j + 1])) {
        size_t n;

        j = agg_time_scan_fraction(p, len, j + 1, &frac, &n);
    }
    t->end = j;
    if (j == len || p[j] == ' ')
        t->next = j;
    else if (p[j] == ':' && (j + 1 == len || p[j + 1] == ' '))
        t->next = j + 1;
    else
        return false;
    t->year = year;
    if (year != 0) {
        t->us = from_local(ck, civil_us(year, (unsigned)mo, (unsigned)d, h, mi, s, frac));
    } else {
        /* the year nearest to the sender's wall clock now */
        int64_t now = ck->zone != NULL ? agg_tz_utc_to_local(ck->zone, ck->now_us) : ck->now_us;

        t->us = from_local(ck, resolve_year((unsigned)mo, (unsigned)d,
                                            (h * INT64_C(3600) + mi * 60 + s) * AGG_US_PER_SEC +
                                                frac,
                                            now));
    }
    return true;
}

/* ---- common ------------------------------------------------------------------ */

static void msg_init(struct ing_syslog_msg *m, const char *p, size_t len)
{
    memset(m, 0, sizeof(*m));
    m->ts_us = AGG_TIME_NONE;
    m->raw.p = p;
    m->raw.len = len;
    m->msgcount = -1;
    m->sequence = -1;
}

static void set_pri(struct ing_syslog_msg *m, int pri)
{
    m->pri = pri;
    m->facility = pri / 8;
    m->severity = pri % 8;
}

/* Whether <p>[<len>] is shaped "<PRI>VERSION SP" (or ends after VERSION), PRI and
 * VERSION being 1-3 digits each: such input is RFC 5424 or nothing. */
static bool shaped_5424(const char *p, size_t len)
{
    size_t i = 1, k;

    if (len < 4 || p[0] != '<')
        return false;
    while (i < len && i < 5 && is_digit(p[i]))
        i++;
    if (i == 1 || i >= len || p[i] != '>')
        return false;
    k = ++i;
    while (i < len && i < k + 4 && is_digit(p[i]))
        i++;
    return i > k && i - k <= 3 && (i == len || p[i] == ' ');
}

/* ---- RFC 5424 ---------------------------------------------------------------- */

/* An RFC 5424 header field at <p>[*pi..len): NILVALUE or 1..<max> PRINTUSASCII, then SP. */
static int header_field(const char *p, size_t len, size_t *pi, const char *name, size_t max,
                        struct agg_str *out, struct agg_err *err)
{
    size_t i = *pi, s = i;
    char c[8];

    if (i >= len)
        return agg_err_set(err, AGG_EINVAL, "RFC 5424 %s expected at offset %zu (end of input)",
                           name, i);
    while (i < len && p[i] != ' ') {
        if (!is_print(p[i]))
            return agg_err_set(err, AGG_EINVAL,
                               "RFC 5424 %s: octet %s at offset %zu is not printable US-ASCII",
                               name, show(p[i], c), i);
        if (i - s == max)
            return agg_err_set(err, AGG_EINVAL, "RFC 5424 %s longer than %zu octets at offset %zu",
                               name, max, s);
        i++;
    }
    if (i == s)
        return agg_err_set(err, AGG_EINVAL, "RFC 5424 %s is empty (two SPs) at offset %zu", name,
                           s);
    if (i == len)
        return agg_err_set(err, AGG_EINVAL,
                           "RFC 5424 SP expected after %s at offset %zu (end of input)", name, i);
    if (!(i - s == 1 && p[s] == '-'))
        *out = slice(p, s, i);
    *pi = i + 1;
    return AGG_OK;
}

/* SD-NAME at <p>[*pi..len): 1-32 PRINTUSASCII except '=', SP, ']', '"'. */
static int sd_name(const char *p, size_t len, size_t *pi, const char *name, struct agg_err *err)
{
    size_t i = *pi, s = i;
    char c[8];

    while (i < len && is_print(p[i]) && p[i] != '=' && p[i] != ']' && p[i] != '"') {
        if (i - s == 32)
            return agg_err_set(err, AGG_EINVAL, "RFC 5424 %s longer than 32 octets at offset %zu",
                               name, s);
        i++;
    }
    if (i == s) {
        if (i >= len)
            return agg_err_set(err, AGG_EINVAL, "RFC 5424 %s expected at offset %zu (end of input)",
                               name, i);
        return agg_err_set(err, AGG_EINVAL, "RFC 5424 %s expected at offset %zu, found %s", name, i,
                           show(p[i], c));
    }
    *pi = i;
    return AGG_OK;
}

struct sd_seen {
    uint32_t off;
    uint8_t len; /* 0: free */
};

#define SD_SEEN_SLOTS 1024 /* power of two, twice ING_SYSLOG_MAX_SD_ELEMENTS */

/* Records SD-ID <p>[off..off+n) (n <= 32); false if it was there already. */
static bool sd_id_is_new(struct sd_seen *seen, const char *p, size_t off, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t k = 0; k < n; k++)
        h = (h ^ (unsigned char)p[off + k]) * 16777619u;
    for (uint32_t s = h & (SD_SEEN_SLOTS - 1);; s = (s + 1) & (SD_SEEN_SLOTS - 1)) {
        if (seen[s].len == 0) {
            seen[s].off = (uint32_t)off;
            seen[s].len = (uint8_t)n;
            return true;
        }
        if (seen[s].len == n && memcmp(p + seen[s].off, p + off, n) == 0)
            return false;
    }
}

/* STRUCTURED-DATA elements at <p>[*pi..len), which starts with '['. */
static int structured_data(const char *p, size_t len, size_t *pi, struct agg_err *err)
{
    struct sd_seen seen[SD_SEEN_SLOTS];
    size_t i = *pi, n = 0;
    char c[8];

    /* offsets are stored in 32 bits; no frame gets near that */
    if (len > UINT32_MAX)
        return agg_err_set(err, AGG_EINVAL, "message too long");
    memset(seen, 0, sizeof(seen));
    while (i < len && p[i] == '[') {
        size_t open = i, id;

        if (++n > ING_SYSLOG_MAX_SD_ELEMENTS)
            return agg_err_set(err, AGG_EINVAL,
                               "RFC 5424 STRUCTURED-DATA has more than %d elements at offset %zu",
                               ING_SYSLOG_MAX_SD_ELEMENTS, i);
        id = ++i;
        if (sd_name(p, len, &i, "SD-ID", err) != AGG_OK)
            return AGG_EINVAL;
        if (!sd_id_is_new(seen, p, id, i - id))
            return agg_err_set(err, AGG_EINVAL, "RFC 5424 duplicate SD-ID \"%.*s\" at offset %zu",
                               (int)(i - id), p + id, id);
        while (i < len && p[i] == ' ') {
            size_t value;

            i++;
            if (sd_name(p, len, &i, "PARAM-NAME", err) != AGG_OK)
                return AGG_EINVAL;
            if (i >= len || p[i] != '=')
                return agg_err_set(err, AGG_EINVAL,
                                   "RFC 5424 '=' expected after PARAM-NAME at offset %zu, found %s",
                                   i, i >= len ? "the end" : show(p[i], c));
            i++;
            if (i >= len || p[i] != '"')
                return agg_err_set(err, AGG_EINVAL,
                                   "RFC 5424 '\"' expected to open PARAM-VALUE at offset %zu, "
                                   "found %s",
                                   i, i >= len ? "the end" : show(p[i], c));
            value = ++i;
            for (;;) {
                if (i >= len)
                    return agg_err_set(err, AGG_EINVAL,
                                       "RFC 5424 PARAM-VALUE opened at offset %zu is not closed",
                                       value - 1);
                if (p[i] == '\\') {
                    i += i + 1 < len && (p[i + 1] == '"' || p[i + 1] == '\\' || p[i + 1] == ']')
                             ? 2
                             : 1;
                } else if (p[i] == '"') {
                    i++;
                    break;
                } else if (p[i] == ']') {
                    return agg_err_set(err, AGG_EINVAL,
                                       "RFC 5424 unescaped ']' in PARAM-VALUE at offset %zu", i);
                } else {
                    i++;
                }
            }
        }
        if (i >= len)
            return agg_err_set(err, AGG_EINVAL,
                               "RFC 5424 SD-ELEMENT opened at offset %zu is not closed", open);
        if (p[i] != ']')
            return agg_err_set(err, AGG_EINVAL,
                               "RFC 5424 SP or ']' expected in SD-ELEMENT at offset %zu, found %s",
                               i, show(p[i], c));
        i++;
    }
    *pi = i;
    return AGG_OK;
}

static int parse_5424(const char *p, size_t len, struct ing_syslog_msg *m, struct agg_err *err)
{
    size_t i = 1, s;
    int pri = 0, version = 0;
    char c[8];

    m->format = ING_SYSLOG_RFC5424;
    /* shaped_5424() vouched for "<" 1*3DIGIT ">" 1*3DIGIT (SP / end) */
    for (; p[i] != '>'; i++)
        pri = pri * 10 + (p[i] - '0');
    if (p[1] == '0' && i > 2)
        return agg_err_set(err, AGG_EINVAL, "RFC 5424 PRI has a leading zero at offset 1");
    if (pri > 191)
        return agg_err_set(err, AGG_EINVAL, "RFC 5424 PRI %d out of range 0-191 at offset 1", pri);
    set_pri(m, pri);
    s = ++i;
    if (p[i] == '0')
        return agg_err_set(err, AGG_EINVAL, "RFC 5424 VERSION must be 1-999 at offset %zu", i);
    for (; i < len && is_digit(p[i]); i++)
        version = version * 10 + (p[i] - '0');
    m->version = version;
    if (i == len)
        return agg_err_set(err, AGG_EINVAL,
                           "RFC 5424 SP expected after VERSION at offset %zu (end of input)", i);
    i++;

    /* TIMESTAMP */
    if (i >= len)
        return agg_err_set(err, AGG_EINVAL,
                           "RFC 5424 TIMESTAMP expected at offset %zu (end of input)", i);
    if (p[i] == '-' && (i + 1 == len || p[i + 1] == ' ')) {
        i++;
    } else {
        struct agg_time_iso t;

        if (!agg_time_scan_iso8601(p, len, i, AGG_TIME_ISO_RFC5424, &t))
            return agg_err_set(err, AGG_EINVAL,
                               "RFC 5424 TIMESTAMP is not an RFC 3339 date-time (%s) at offset %zu",
                               t.why, t.bad);
        m->ts_us = t.us;
        m->timestamp = slice(p, i, t.end);
        i = t.end;
    }
    if (i >= len)
        return agg_err_set(err, AGG_EINVAL,
                           "RFC 5424 SP expected after TIMESTAMP at offset %zu (end of input)", i);
    if (p[i] != ' ')
        return agg_err_set(err, AGG_EINVAL,
                           "RFC 5424 SP expected after TIMESTAMP at offset %zu, found %s", i,
                           show(p[i], c));
    i++;

    if (header_field(p, len, &i, "HOSTNAME", 255, &m->hostname, err) != AGG_OK ||
        header_field(p, len, &i, "APP-NAME", 48, &m->app_name, err) != AGG_OK ||
        header_field(p, len, &i, "PROCID", 128, &m->procid, err) != AGG_OK ||
        header_field(p, len, &i, "MSGID", 32, &m->msgid, err) != AGG_OK)
        return AGG_EINVAL;

    /* STRUCTURED-DATA */
    if (i >= len)
        return agg_err_set(err, AGG_EINVAL,
                           "RFC 5424 STRUCTURED-DATA expected at offset %zu (end of input)", i);
    s = i;
    if (p[i] == '-') {
        i++;
    } else if (p[i] == '[') {
        if (structured_data(p, len, &i, err) != AGG_OK)
            return AGG_EINVAL;
        m->sd = slice(p, s, i);
    } else {
        return agg_err_set(err, AGG_EINVAL,
                           "RFC 5424 STRUCTURED-DATA must be '-' or start with '[' at offset %zu, "
                           "found %s",
                           i, show(p[i], c));
    }

    /* MSG: only the first SP is a separator */
    if (i < len) {
        if (p[i] != ' ')
            return agg_err_set(err, AGG_EINVAL,
                               "RFC 5424 SP expected after STRUCTURED-DATA at offset %zu, found %s",
                               i, show(p[i], c));
        m->msg = slice(p, i + 1, len);
    }
    return AGG_OK;
}

/* ---- RFC 3164 ---------------------------------------------------------------- */

#define TAG_MAX  255
#define PID_MAX  128
#define HOST_MAX 255

/* Octets of a TAG's program name: printable ASCII except ':' and '['. */
static bool is_tag_char(char c)
{
    return is_print(c) && c != ':' && c != '[';
}

static bool is_pid_char(char c)
{
    return is_print(c) && c != '[' && c != ']';
}

/* Octets of a HOSTNAME: letters, digits, ".-_" (RFC 1035 and common practice), ':' for
 * IPv6, '@' and '/' for relay chains (syslog-ng "source@host", "host1/host2"). */
static bool is_host_char(char c)
{
    return is_alnum(c) || c == '.' || c == '-' || c == '_' || c == ':' || c == '@' || c == '/';
}

static bool has_alnum(const char *p, size_t i, size_t j)
{
    for (size_t k = i; k < j; k++) {
        if (is_alnum(p[k]))
            return true;
    }
    return false;
}

/* Whether <p>[i..j) can be a HOSTNAME: host octets, at least one letter or digit, and
 * no ':' unless it has two or more (IPv6); "word:" is a TAG. */
static bool is_host(const char *p, size_t i, size_t j)
{
    size_t colons = 0;
    bool alnum = false;

    if (j - i > HOST_MAX)
        return false;
    for (size_t k = i; k < j; k++) {
        if (!is_host_char(p[k]))
            return false;
        colons += p[k] == ':';
        alnum = alnum || is_alnum(p[k]);
    }
    return alnum && colons != 1;
}

/* Reads TAG = NAME ["[" PID "]"] at <p>[i..len). Returns the index after it (at ':' or
 * SP or the end), or 0 when there is no such TAG there. */
static size_t scan_tag(const char *p, size_t len, size_t i, struct agg_str *name,
                       struct agg_str *pid)
{
    size_t n = i, k;

    while (n < len && is_tag_char(p[n]))
        n++;
    if (n == i || n - i > TAG_MAX)
        return 0;
    *name = slice(p, i, n);
    pid->p = NULL;
    pid->len = 0;
    if (n >= len || p[n] != '[')
        return n;
    k = n + 1;
    while (k < len && is_pid_char(p[k]))
        k++;
    if (k >= len || p[k] != ']' || k == n + 1 || k - n - 1 > PID_MAX)
        return 0;
    *pid = slice(p, n + 1, k);
    return k + 1;
}

enum tag_rule {
    TAG_COLON = 0, /* NAME[PID]: or NAME[PID] SP */
    TAG_COLON_SP,  /* as TAG_COLON, the ':' followed by SP or the end (after 2 SPs) */
    TAG_ANY_WORD,  /* also a bare NAME (a word in the HOSTNAME slot that is no host) */
};

/* The TAG and MSG from <p>[i..len). Without a TAG, MSG starts at <i>. */
static void tag_and_msg(const char *p, size_t len, size_t i, enum tag_rule rule,
                        struct ing_syslog_msg *m)
{
    struct agg_str name = {NULL, 0}, pid = {NULL, 0};
    size_t start = i, j;

    if (rule == TAG_COLON_SP) {
        while (i < len && p[i] == ' ')
            i++;
    }
    j = i < len ? scan_tag(p, len, i, &name, &pid) : 0;
    if (j != 0 && j < len && p[j] == ':' &&
        (rule != TAG_COLON_SP || j + 1 == len || p[j + 1] == ' ')) {
        j++;
    } else if (j != 0 && (j == len || p[j] == ' ') && (pid.p != NULL || rule == TAG_ANY_WORD)) {
        /* TAG[PID] without ':' (rsyslog), or a bare word that is not a HOSTNAME */
    } else {
        m->msg = slice(p, start, len);
        return;
    }
    m->app_name = name;
    m->procid = pid;
    if (j < len && p[j] == ' ')
        j++;
    m->msg = slice(p, j, len);
}

/* English words that start prose, never a program's name: a bare word after the
 * HOSTNAME that is one of them starts the MSG even in rsyslog's header shape. */
static bool is_prose_word(const char *p, size_t n)
{
    static const char *const words[] = {
        "a",    "an",   "the",   "this",   "that",  "these", "those", "it",   "its",
        "i",    "we",   "you",   "he",     "she",   "they",  "my",    "our",  "your",
        "their", "there", "here", "just",  "not",   "no",    "all",   "some", "any",
        "each", "every", "only", "also",   "and",   "or",    "but",   "if",   "when",
        "then", "so",   "is",    "was",    "are",   "were",  "has",   "have", "had",
        "do",   "does", "did",   "can",    "could", "will",  "would", "should", "may",
        "might", "must", "please",
    };

    for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++) {
        if (strlen(words[k]) == n && memcmp(words[k], p, n) == 0)
            return true;
    }
    return false;
}

#define RSYSLOG_TAG_MAX 32 /* RSYSLOG_TraditionalForwardFormat: %syslogtag:1:32% */

/* rsyslog relaying an RFC 5424 message in its traditional format writes the TAG it
 * emulates from APP-NAME without a ':' ("<14>Dec  3 10:00:00 web01 myapp hello").
 * Called with the HOSTNAME <p>[h..w) of such a header (rsyslog_shape()); takes the
 * word after it as TAG when it is as an APP-NAME looks and the message does not
 * look like prose: HOSTNAME without upper case and not a number, one SP, a word of 1-32 lower-case
 * letters, digits and ".-_/" starting with a letter and not an English function word
 * (is_prose_word), one SP, a non-empty MSG. */
static bool rsyslog_bare_tag(const char *p, size_t len, size_t h, size_t w,
                             struct ing_syslog_msg *m)
{
    size_t j = w + 1, k;
    bool number = true;

    for (size_t x = h; x < w; x++) {
        if (p[x] >= 'A' && p[x] <= 'Z')
            return false;
        number = number && is_digit(p[x]);
    }
    /* a number is no host name rsyslog writes: "Apr 15 21:28:13 2007 host app: x" */
    if (number || j >= len || p[w] != ' ' || p[j] < 'a' || p[j] > 'z')
        return false;
    for (k = j; k < len && p[k] != ' '; k++) {
        if (!((p[k] >= 'a' && p[k] <= 'z') || is_digit(p[k]) || p[k] == '.' || p[k] == '-' ||
              p[k] == '_' || p[k] == '/'))
            return false;
    }
    if (k - j > RSYSLOG_TAG_MAX || k + 1 >= len || is_prose_word(p + j, k - j))
        return false;
    m->app_name = slice(p, j, k);
    m->msg = slice(p, k + 1, len);
    return true;
}

/* What follows a timestamp at <p>[i..len): [HOSTNAME SP] [TAG] MSG. <rsyslog>: the
 * header so far is exactly as rsyslog's traditional forwarding format writes it. */
static void host_tag_msg(const char *p, size_t len, size_t i, bool rsyslog,
                         struct ing_syslog_msg *m)
{
    struct agg_str name, pid;
    size_t w = i, j;

    while (w < len && p[w] != ' ')
        w++;
    if (w == i) { /* nothing, or a second SP */
        m->msg = slice(p, i, len);
        return;
    }
    j = scan_tag(p, len, i, &name, &pid);
    if (j != 0 && j + 1 == w && p[j] == ':') { /* "word:" or "word[pid]:" is a TAG */
        tag_and_msg(p, len, i, TAG_COLON, m);
        return;
    }
    if (!is_host(p, i, w)) {
        /* A word of TAG octets with a letter or digit is the TAG (rsyslog: Snare's
         * "#001", "%PIX-..."); "---" and control octets start the MSG. */
        tag_and_msg(p, len, i, j == w && has_alnum(p, i, w) ? TAG_ANY_WORD : TAG_COLON, m);
        return;
    }
    m->hostname = slice(p, i, w);
    if (rsyslog && rsyslog_bare_tag(p, len, i, w, m))
        return;
    if (w < len)
        w++;
    tag_and_msg(p, len, w, w < len && p[w] == ' ' ? TAG_COLON_SP : TAG_COLON, m);
}

/* A timestamp (BSD or ISO) at <p>[i..len), after an optional Cisco clock flag. */
struct ts_3164 {
    size_t start, end, next;
    int64_t us;
    int year;
    char flag;
};

static bool scan_ts_3164(const char *p, size_t len, size_t i, const struct clock *ck,
                         struct ts_3164 *t)
{
    t->flag = 0;
    if (i < len && (p[i] == '*' || p[i] == '.')) {
        t->flag = p[i];
        i++;
    }
    t->start = i;
    if (i < len && is_alpha(p[i])) {
        struct bsd_time b;

        if (!scan_bsd(p, len, i, ck, &b))
            return false;
        t->end = b.end;
        t->next = b.next;
        t->us = b.us;
        t->year = b.year;
        return true;
    }
    if (i < len && is_digit(p[i])) {
        struct agg_time_iso iso;
        size_t end;

        /* a leap second reads as :59.999999, as in JSON (core/time.h) */
        if (!agg_time_scan_iso8601(p, len, i, AGG_TIME_ISO_Z_OFFSET, &iso))
            return false;
        end = iso.end;
        t->us = iso.zoned ? iso.us : from_local(ck, iso.us);
        t->end = end;
        t->year = 0;
        if (end == len || p[end] == ' ')
            t->next = end;
        else if (p[end] == ':' && (end + 1 == len || p[end + 1] == ' '))
            t->next = end + 1;
        else
            return false;
        return true;
    }
    return false;
}

/* Reads "DIGITS: " (at most 18 digits; none only if <empty_ok>) at <p>[*pi..len). */
static bool cisco_number(const char *p, size_t len, size_t *pi, bool empty_ok, int64_t *v)
{
    size_t i = *pi, s = i;
    int64_t n = 0;

    while (i < len && is_digit(p[i]) && i - s < 18)
        n = n * 10 + (p[i++] - '0');
    if ((i == s && !empty_ok) || i + 1 >= len || p[i] != ':' || p[i + 1] != ' ')
        return false;
    *v = n;
    *pi = i + 2;
    return true;
}

/* The header of a BSD message at <p>[*pi..len): Cisco IOS "counter: [sequence: ]
 * [origin-host: ]" and clock flag, then a timestamp. Fills <m> and moves *pi past it
 * (and a Cisco ':' after it); false, with <m> untouched, when there is no timestamp. */
static bool header_3164(const char *p, size_t len, size_t *pi, const struct clock *ck,
                        struct ing_syslog_msg *m)
{
    size_t i = *pi, c = i;
    int64_t count = -1, seq = -1;
    struct agg_str origin = {NULL, 0};
    struct ts_3164 t;

    if (cisco_number(p, len, &c, !m->pri_assumed, &count)) {
        size_t w;

        cisco_number(p, len, &c, false, &seq);
        for (w = c; w < len && is_host_char(p[w]) && p[w] != ':'; w++)
            ;
        if (w > c && is_host(p, c, w) && w + 1 < len && p[w] == ':' && p[w + 1] == ' ' &&
            scan_ts_3164(p, len, w + 2, ck, &t)) {
            origin = slice(p, c, w);
            c = w + 2;
        }
        if (!scan_ts_3164(p, len, c, ck, &t)) {
            count = seq = -1;
            origin.p = NULL;
            if (!scan_ts_3164(p, len, i, ck, &t))
                return false;
        }
    } else if (!scan_ts_3164(p, len, i, ck, &t)) {
        return false;
    }
    m->msgcount = count;
    m->sequence = seq;
    m->hostname = origin;
    m->clock_flag = t.flag;
    m->timestamp = slice(p, t.start, t.end);
    m->ts_us = t.us;
    m->year = t.year;
    *pi = t.next;
    return true;
}

/* Whether the header <m> read from <p>, ending at <i> (the SP after the timestamp), is
 * exactly as rsyslog's RSYSLOG_TraditionalForwardFormat writes it: "<PRI>Mmm dd
 * hh:mm:ss SP", the day space-padded or two digits, nothing else (no SP after PRI,
 * year, fraction, Cisco counter or clock flag). <ts_at> is where the PRI ended. */
static bool rsyslog_shape(const char *p, size_t len, size_t ts_at, size_t i,
                          const struct ing_syslog_msg *m)
{
    const char *t = m->timestamp.p;

    return !m->pri_assumed && m->msgcount < 0 && m->sequence < 0 && m->hostname.p == NULL &&
           m->clock_flag == 0 && m->year == 0 && t == p + ts_at && m->timestamp.len == 15 &&
           t[0] >= 'A' && t[0] <= 'Z' && t[1] >= 'a' && t[1] <= 'z' && t[2] >= 'a' &&
           t[2] <= 'z' && (size_t)(t - p) + 15 == i && i < len && p[i] == ' ';
}

static void parse_3164(const char *p, size_t len, const struct clock *ck,
                       struct ing_syslog_msg *m)
{
    size_t i = 0, ts_at = 0;

    m->format = ING_SYSLOG_RFC3164;
    m->pri_assumed = true;
    set_pri(m, 13); /* RFC 3164 4.3.3: user.notice */
    if (p[0] == '<') {
        int pri = 0;
        size_t k = 1;

        while (k < len && k <= 3 && is_digit(p[k]))
            pri = pri * 10 + (p[k++] - '0');
        if (k == 1 || k >= len || p[k] != '>' || pri > 191) {
            /* an invalid PRI: the whole packet is MSG (RFC 3164 4.3.3, rsyslog) */
            m->msg = slice(p, 0, len);
            return;
        }
        m->pri_assumed = false;
        set_pri(m, pri);
        i = ts_at = k + 1;
        while (i < len && p[i] == ' ')
            i++;
    }
    if (header_3164(p, len, &i, ck, m)) {
        bool rsyslog = rsyslog_shape(p, len, ts_at, i, m);

        if (i < len)
            i++; /* the SP after the timestamp */
        if (m->hostname.p != NULL)
            tag_and_msg(p, len, i, i < len && p[i] == ' ' ? TAG_COLON_SP : TAG_COLON, m);
        else
            host_tag_msg(p, len, i, rsyslog, m);
    } else {
        tag_and_msg(p, len, i, TAG_COLON, m);
    }
}

int ing_syslog_parse(const char *p, size_t len, int64_t now_us, const struct agg_tz *zone,
                     struct ing_syslog_msg *out, struct agg_err *err)
{
    const struct clock ck = {now_us, zone};

    msg_init(out, p, len);
    /* frame trailer junk: C strings, LF and CRLF line ends */
    if (len > 0 && p[len - 1] == '\0')
        len--;
    if (len > 0 && p[len - 1] == '\n')
        len--;
    if (len > 0 && p[len - 1] == '\r')
        len--;
    if (len == 0)
        return agg_err_set(err, AGG_EINVAL, "empty syslog message");
    if (shaped_5424(p, len))
        return parse_5424(p, len, out, err);
    parse_3164(p, len, &ck, out);
    return AGG_OK;
}

/* ---- STRUCTURED-DATA walking ------------------------------------------------- */

void ing_syslog_sd_init(struct ing_syslog_sd_iter *it, struct agg_str sd)
{
    it->p = sd.p;
    it->end = sd.p != NULL ? sd.p + sd.len : NULL;
    it->in_element = false;
}

/* Skips a quoted PARAM-VALUE at it->p (after the opening quote); false if unclosed. */
static bool skip_value(struct ing_syslog_sd_iter *it, const char **vend)
{
    const char *q = it->p;

    while (q < it->end) {
        if (*q == '\\' && q + 1 < it->end) {
            q += 2;
        } else if (*q == '"') {
            *vend = q;
            it->p = q + 1;
            return true;
        } else {
            q++;
        }
    }
    return false;
}

bool ing_syslog_sd_next_param(struct ing_syslog_sd_iter *it, struct agg_str *name,
                              struct agg_str *raw_value)
{
    const char *n, *v, *vend;

    if (!it->in_element || it->p == NULL || it->p >= it->end || *it->p != ' ')
        return false;
    n = ++it->p;
    while (it->p < it->end && *it->p != '=')
        it->p++;
    if (it->p + 1 >= it->end || it->p[1] != '"')
        return false;
    name->p = n;
    name->len = (size_t)(it->p - n);
    it->p += 2;
    v = it->p;
    if (!skip_value(it, &vend))
        return false;
    raw_value->p = v;
    raw_value->len = (size_t)(vend - v);
    return true;
}

bool ing_syslog_sd_next_element(struct ing_syslog_sd_iter *it, struct agg_str *id)
{
    struct agg_str name, value;
    const char *s;

    if (it->p == NULL)
        return false;
    if (it->in_element) {
        while (ing_syslog_sd_next_param(it, &name, &value))
            ;
        if (it->p >= it->end || *it->p != ']') {
            it->p = it->end;
            return false;
        }
        it->p++;
        it->in_element = false;
    }
    if (it->p >= it->end || *it->p != '[')
        return false;
    s = ++it->p;
    while (it->p < it->end && *it->p != ' ' && *it->p != ']')
        it->p++;
    if (it->p >= it->end)
        return false;
    id->p = s;
    id->len = (size_t)(it->p - s);
    it->in_element = true;
    return true;
}

int ing_syslog_sd_unescape(struct agg_buf *out, const char *p, size_t len)
{
    size_t i = 0, run = 0;

    while (i < len) {
        if (p[i] == '\\' && i + 1 < len &&
            (p[i + 1] == '"' || p[i + 1] == '\\' || p[i + 1] == ']')) {
            if (agg_buf_append(out, p + run, i - run) != AGG_OK)
                return AGG_ENOMEM;
            run = i + 1; /* keep the escaped octet, drop the backslash */
            i += 2;
        } else {
            i++;
        }
    }
    return agg_buf_append(out, p + run, len - run);
}

/* ---- record mapping ---------------------------------------------------------- */

struct json {
    yajl_gen g;
    struct agg_buf *out;
    struct agg_buf tmp, fix; /* an unescaped SD value; a repaired string */
    bool nomem, bad;
};

static void json_print(void *ctx, const char *s, size_t n)
{
    struct json *j = ctx;

    if (!j->nomem && agg_buf_append(j->out, s, n) != AGG_OK)
        j->nomem = true;
}

/* A JSON string of <p>[<len>] made valid UTF-8 without NUL (jsonb refuses both). */
static void json_str(struct json *j, const char *p, size_t len)
{
    if (!agg_utf8_is_clean(p, len)) {
        agg_buf_reset(&j->fix);
        if (agg_utf8_repair(&j->fix, p, len) != AGG_OK) {
            j->nomem = true;
            return;
        }
        p = j->fix.data;
        len = j->fix.len;
    }
    if (yajl_gen_string(j->g, (const unsigned char *)(len > 0 ? p : ""), len) != yajl_gen_status_ok)
        j->bad = true;
}

static void json_key(struct json *j, const char *key)
{
    json_str(j, key, strlen(key));
}

static void json_opt(struct json *j, const char *key, struct agg_str s)
{
    if (s.p != NULL) {
        json_key(j, key);
        json_str(j, s.p, s.len);
    }
}

static void json_int(struct json *j, const char *key, long long v)
{
    char d[21];
    size_t n = 0;

    json_key(j, key);
    if (v < 0)
        d[n++] = '-';
    n += agg_fmt_u64(d + n, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    if (yajl_gen_number(j->g, d, n) != yajl_gen_status_ok)
        j->bad = true;
}

static void json_status(struct json *j, yajl_gen_status st)
{
    if (st != yajl_gen_status_ok)
        j->bad = true;
}

/* One SD-PARAM of the message, in message order. */
struct sd_param {
    struct agg_str name, value; /* point into the input; value as written (escapes kept) */
    uint32_t key;               /* rank of name among the names its element keeps in sd */
    int field;                  /* the system_logs column named so, or -1 */
    bool exact;                 /* the column took this value and holds it exactly */
    bool in_column;             /* left out of extra_data.sd: the column has it */
};

struct sd_elem {
    struct agg_str id;
    uint32_t first, n;       /* its params: params[first .. first + n) */
    uint32_t rank;           /* rank of id among the SD-IDs kept in sd */
    uint32_t keys_at, nkeys; /* its names kept in sd, sorted: keys[keys_at ..] */
    bool in_sd;              /* has a param left in sd, or none at all */
};

/* A name to sort by, and whose it is. */
struct sd_key {
    struct agg_str name;
    uint32_t who;
};

/* The SD of one message as ing_syslog_to_record stores it (docs/json-mapping.md,
 * "Structured data stored once"). Arrays in buffers: they grow with the input. */
struct sd_map {
    struct agg_buf params, elems, keys, order;
    size_t nparams, nelems;
};

/* sd_order's letter for a param taken from a column; 0: never left out of sd. */
static const char column_codes[AGG_F_COUNT] = {
    [AGG_F_MESSAGE] = 'a',
    [AGG_F_LOGGER_NAME] = 'b',
    [AGG_F_MODULE] = 'c',
    [AGG_F_FUNCTION_NAME] = 'd',
    [AGG_F_CORRELATION_ID] = 'e',
    [AGG_F_REQUEST_ID] = 'f',
    [AGG_F_REQUEST_METHOD] = 'g',
    [AGG_F_REQUEST_PATH] = 'h',
    [AGG_F_REQUEST_IP] = 'i',
    [AGG_F_EXCEPTION_TYPE] = 'j',
    [AGG_F_EXCEPTION_MESSAGE] = 'k',
    [AGG_F_STACK_TRACE] = 'l',
    [AGG_F_LINE_NUMBER] = 'm',
    [AGG_F_USER_ID] = 'n',
    [AGG_F_DURATION_MS] = 'o',
    [AGG_F_MEMORY_USAGE_MB] = 'p',
    [AGG_F_LEVEL] = 'q',
};

static struct sd_param *sd_params(const struct sd_map *sm)
{
    return (struct sd_param *)(void *)sm->params.data;
}

static struct sd_elem *sd_elems(const struct sd_map *sm)
{
    return (struct sd_elem *)(void *)sm->elems.data;
}

static int key_cmp(const void *a, const void *b)
{
    const struct sd_key *x = a, *y = b;
    int c = memcmp(x->name.p, y->name.p, x->name.len < y->name.len ? x->name.len : y->name.len);

    if (c == 0)
        c = x->name.len < y->name.len ? -1 : x->name.len > y->name.len;
    if (c == 0)
        c = x->who < y->who ? -1 : x->who > y->who;
    return c;
}

static bool name_eq(struct agg_str a, struct agg_str b)
{
    return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

/* Whether <p>[<n>] is how PostgreSQL prints an integer: -?(0|[1-9][0-9]*), not -0. */
static bool is_int_text(const char *p, size_t n)
{
    size_t i = n > 0 && p[0] == '-';

    if (i == n || (p[i] == '0' && n - i > 1) || (i == 1 && p[1] == '0'))
        return false;
    for (; i < n; i++) {
        if (!is_digit(p[i]))
            return false;
    }
    return true;
}

/* Whether <p>[<n>] is how PostgreSQL prints the float8 it reads from it: a plain
 * decimal without superfluous zeros, at most 15 significant digits (so it is the
 * shortest text of its double), written without exponent (decimal exponent -4..14). */
static bool is_float_text(const char *p, size_t n)
{
    size_t i = n > 0 && p[0] == '-', int_digits = 0, lead = 0, sig = 0, dot;
    bool seen = false;

    if (i == n)
        return false;
    if (p[i] == '0') {
        i++;
    } else {
        for (; i < n && is_digit(p[i]); i++)
            int_digits++;
        if (int_digits == 0)
            return false;
        seen = true;
        sig = int_digits;
    }
    if (i < n && p[i] == '.') {
        dot = ++i;
        for (; i < n && is_digit(p[i]); i++) {
            if (!seen && p[i] == '0') {
                lead++;
                continue;
            }
            seen = true;
            sig++;
        }
        if (i == dot || p[i - 1] == '0')
            return false;
    }
    return i == n && sig <= 15 && int_digits <= 15 && (int_digits > 0 || !seen || lead <= 3);
}

/* Whether column <f>, just set by <rec> from the unescaped value <v>[<n>], gives that
 * text back exactly (docs/json-mapping.md lists what PostgreSQL prints). */
static bool column_holds(const struct agg_record *rec, int f, const char *v, size_t n)
{
    size_t chars = 0, max;

    if (column_codes[f] == 0 || !agg_utf8_is_clean(v, n))
        return false;
    if (f < AGG_F_STR_COUNT) {
        max = agg_field_max_chars(f);
        for (size_t i = 0; max > 0 && i < n; i++)
            chars += ((unsigned char)v[i] & 0xC0) != 0x80;
        return chars <= max || max == 0;
    }
    switch (f) {
    case AGG_F_USER_ID: /* else kept as the string extra_data.user_id */
        return rec->user_id_orig.p != NULL || is_int_text(v, n);
    case AGG_F_MEMORY_USAGE_MB:
        return is_float_text(v, n);
    case AGG_F_LEVEL:
        return strlen(agg_level_name(rec->level)) == n &&
               memcmp(agg_level_name(rec->level), v, n) == 0;
    default:
        return is_int_text(v, n);
    }
}

/* Reads the SD of <m> into <sm>, and sets the columns its params name: typed ones
 * now, text ones unescaped into <scratch> with their offsets noted (<scratch> may
 * still move); so is a user_id that is not an INTEGER, at off[AGG_F_STR_COUNT]. The
 * last param naming a column sets it (and only it can be in_column). */
static int sd_columns(const struct ing_syslog_msg *m, struct agg_buf *scratch,
                      struct agg_record *rec, size_t off[], size_t len[], struct sd_map *sm,
                      struct agg_err *err)
{
    struct ing_syslog_sd_iter it;
    struct agg_str id, name, value;
    size_t last[AGG_F_COUNT];

    for (int f = 0; f < AGG_F_COUNT; f++)
        last[f] = SIZE_MAX;
    ing_syslog_sd_init(&it, m->sd);
    while (ing_syslog_sd_next_element(&it, &id)) {
        struct sd_elem e = {id, (uint32_t)sm->nparams, 0, 0, 0, 0, false};

        while (ing_syslog_sd_next_param(&it, &name, &value)) {
            struct sd_param sp = {name, value, 0, -1, false, false};
            size_t at = scratch->len;

            sp.field = agg_field_by_column(name.p, name.len);
            if (sp.field >= 0) {
                if (ing_syslog_sd_unescape(scratch, value.p, value.len) != AGG_OK)
                    return agg_err_set(err, AGG_ENOMEM, "out of memory");
                if (sp.field < AGG_F_STR_COUNT) {
                    off[sp.field] = at;
                    len[sp.field] = scratch->len - at;
                } else if (agg_record_set_text(rec, sp.field, scratch->data + at, scratch->len - at,
                                               err) != AGG_OK) {
                    agg_err_prefix(err, "syslog SD-PARAM %.*s in [%.*s]", (int)name.len, name.p,
                                   (int)id.len, id.p);
                    return AGG_EINVAL;
                } else if (sp.field == AGG_F_USER_ID) {
                    /* a user_id that is not an INTEGER, kept for extra_data: an offset too */
                    off[AGG_F_STR_COUNT] = rec->user_id_orig.p != NULL ? at : SIZE_MAX;
                }
                sp.exact = column_holds(rec, sp.field, scratch->data + at, scratch->len - at);
                last[sp.field] = sm->nparams;
            }
            if (agg_buf_append(&sm->params, &sp, sizeof(sp)) != AGG_OK)
                return agg_err_set(err, AGG_ENOMEM, "out of memory");
            sm->nparams++;
            e.n++;
        }
        if (agg_buf_append(&sm->elems, &e, sizeof(e)) != AGG_OK)
            return agg_err_set(err, AGG_ENOMEM, "out of memory");
        sm->nelems++;
    }
    for (int f = 0; f < AGG_F_COUNT; f++) {
        if (last[f] != SIZE_MAX)
            sd_params(sm)[last[f]].in_column = sd_params(sm)[last[f]].exact;
    }
    return AGG_OK;
}

/* The keys from index <at> on; NULL while none were ever added (no offset on NULL). */
static struct sd_key *sd_keys_at(const struct sd_map *sm, uint32_t at)
{
    return sm->keys.data != NULL ? (struct sd_key *)(void *)sm->keys.data + at : NULL;
}

/* Ranks the names element <e> keeps in sd (params[].key), appending them sorted to
 * sm->keys, and says whether they come in strictly ascending order with none in a
 * column. */
static int rank_params(struct sd_map *sm, struct sd_elem *e, bool *plain)
{
    struct sd_param *ps = sd_params(sm);
    struct sd_key *k;
    uint32_t rank = 0;

    e->keys_at = (uint32_t)(sm->keys.len / sizeof(*k));
    for (uint32_t i = e->first; i < e->first + e->n; i++) {
        struct sd_key key = {ps[i].name, i};

        if (ps[i].in_column) {
            *plain = false;
            continue;
        }
        if (agg_buf_append(&sm->keys, &key, sizeof(key)) != AGG_OK)
            return AGG_ENOMEM;
        e->nkeys++;
    }
    k = sd_keys_at(sm, e->keys_at);
    if (e->nkeys > 1)
        qsort(k, e->nkeys, sizeof(*k), key_cmp);
    for (uint32_t i = 0; i < e->nkeys; i++) {
        if (i > 0 && !name_eq(k[i].name, k[i - 1].name))
            rank++;
        ps[k[i].who].key = rank;
    }
    for (uint32_t i = e->first + 1; i < e->first + e->n; i++) {
        if (ps[i].key <= ps[i - 1].key)
            *plain = false; /* out of order, or repeated */
    }
    e->in_sd = e->n == 0 || e->nkeys > 0;
    return AGG_OK;
}

/* The SD-ELEMENT <e> as a member of extra_data.sd: its names kept in sd, each with
 * its value, or an array of its values when it is repeated. */
static void json_elem(struct json *j, const struct sd_map *sm, const struct sd_elem *e)
{
    const struct sd_param *ps = sd_params(sm);
    const struct sd_key *k = sd_keys_at(sm, e->keys_at);

    json_str(j, e->id.p, e->id.len);
    json_status(j, yajl_gen_map_open(j->g));
    for (uint32_t i = 0; i < e->nkeys && !j->nomem; i++) {
        bool more = i + 1 < e->nkeys && name_eq(k[i + 1].name, k[i].name);
        bool in_array = i > 0 && name_eq(k[i - 1].name, k[i].name);
        const struct sd_param *p = &ps[k[i].who];

        if (!in_array) {
            json_str(j, p->name.p, p->name.len);
            if (more)
                json_status(j, yajl_gen_array_open(j->g));
        }
        agg_buf_reset(&j->tmp);
        if (ing_syslog_sd_unescape(&j->tmp, p->value.p, p->value.len) != AGG_OK) {
            j->nomem = true;
            return;
        }
        json_str(j, j->tmp.data, j->tmp.len);
        if (in_array && !more)
            json_status(j, yajl_gen_array_close(j->g));
    }
    json_status(j, yajl_gen_map_close(j->g));
}

/* Appends element <e>'s entry of sd_order to sm->order: its reference, '=', one
 * letter per param. */
static int order_entry(struct sd_map *sm, const struct sd_elem *e)
{
    static const char digit36[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const struct sd_param *ps = sd_params(sm);
    struct agg_buf *o = &sm->order;
    int rc;

    if (o->len > 0 && agg_buf_putc(o, ' ') != AGG_OK)
        return AGG_ENOMEM;
    if (e->in_sd)
        rc = agg_buf_put_u64(o, e->rank);
    else if ((rc = agg_buf_putc(o, '[')) == AGG_OK)
        rc = agg_buf_append(o, e->id.p, e->id.len);
    if (rc == AGG_OK)
        rc = agg_buf_putc(o, '=');
    for (uint32_t i = e->first; rc == AGG_OK && i < e->first + e->n; i++) {
        if (ps[i].in_column) {
            rc = agg_buf_putc(o, column_codes[ps[i].field]);
        } else if (ps[i].key < 36) {
            rc = agg_buf_putc(o, digit36[ps[i].key]);
        } else if ((rc = agg_buf_putc(o, '(')) == AGG_OK &&
                   (rc = agg_buf_put_u64(o, ps[i].key)) == AGG_OK) {
            rc = agg_buf_putc(o, ')');
        }
    }
    return rc;
}

/* extra_data.sd and, unless it can be read in sorted order, extra_data.sd_order. */
static void json_sd(struct json *j, struct sd_map *sm)
{
    struct sd_elem *es = sd_elems(sm);
    struct sd_key *k;
    uint32_t ids_at, nids = 0;
    bool plain = true, opened = false;

    for (uint32_t i = 0; i < sm->nelems; i++) {
        if (rank_params(sm, &es[i], &plain) != AGG_OK) {
            j->nomem = true;
            return;
        }
    }
    /* the SD-IDs in sd, sorted after the names */
    ids_at = (uint32_t)(sm->keys.len / sizeof(*k));
    for (uint32_t i = 0; i < sm->nelems; i++) {
        struct sd_key key = {es[i].id, i};

        if (!es[i].in_sd)
            continue;
        if (agg_buf_append(&sm->keys, &key, sizeof(key)) != AGG_OK) {
            j->nomem = true;
            return;
        }
        nids++;
    }
    k = sd_keys_at(sm, ids_at);
    if (nids > 1)
        qsort(k, nids, sizeof(*k), key_cmp);
    for (uint32_t i = 0; i < nids; i++) {
        es[k[i].who].rank = i;
        if (i > 0 && k[i].who < k[i - 1].who)
            plain = false; /* elements not in SD-ID order */
    }
    for (uint32_t i = 0; i < sm->nelems && !j->nomem && !j->bad; i++) {
        if (!es[i].in_sd)
            continue;
        if (!opened) {
            json_key(j, "sd");
            json_status(j, yajl_gen_map_open(j->g));
            opened = true;
        }
        json_elem(j, sm, &es[i]);
    }
    if (opened)
        json_status(j, yajl_gen_map_close(j->g));
    if (plain)
        return;
    for (uint32_t i = 0; i < sm->nelems; i++) {
        if (order_entry(sm, &es[i]) != AGG_OK) {
            j->nomem = true;
            return;
        }
    }
    json_key(j, "sd_order");
    json_str(j, sm->order.data, sm->order.len);
}

static void json_record(struct json *j, const struct ing_syslog_msg *m, struct sd_map *sm)
{
    json_status(j, yajl_gen_map_open(j->g));
    json_key(j, "syslog");
    json_status(j, yajl_gen_map_open(j->g));
    json_opt(j, "hostname", m->hostname);
    json_int(j, "facility", m->facility);
    json_int(j, "severity", m->severity);
    json_opt(j, "procid", m->procid);
    json_opt(j, "msgid", m->msgid);
    if (m->format == ING_SYSLOG_RFC5424 && m->version != 1)
        json_int(j, "version", m->version);
    if (m->pri_assumed) {
        json_key(j, "pri_assumed");
        json_status(j, yajl_gen_bool(j->g, 1));
    }
    if (m->msgcount >= 0)
        json_int(j, "msgcount", m->msgcount);
    if (m->sequence >= 0)
        json_int(j, "sequence", m->sequence);
    if (m->clock_flag != 0) {
        json_key(j, "clock_synced");
        json_status(j, yajl_gen_bool(j->g, m->clock_flag == '.'));
    }
    json_status(j, yajl_gen_map_close(j->g));
    if (m->sd.p != NULL)
        json_sd(j, sm);
    json_status(j, yajl_gen_map_close(j->g));
}

int ing_syslog_to_record(const struct ing_syslog_msg *m, struct agg_buf *scratch,
                         struct agg_record *rec, struct agg_err *err)
{
    static const char bom[] = "\xEF\xBB\xBF";
    struct json j;
    struct sd_map sm;
    struct agg_str msg, obj;
    size_t off[AGG_F_STR_COUNT + 1], len[AGG_F_STR_COUNT], json_at; /* + user_id_orig */
    int rc = AGG_OK;

    agg_record_init(rec);
    agg_buf_reset(scratch);
    rec->raw = m->raw;
    rec->level = agg_level_from_syslog(m->severity);
    rec->has_level = true;
    rec->created_us = m->ts_us;
    rec->str[AGG_F_LOGGER_NAME] = m->app_name;
    rec->str[AGG_F_MESSAGE].p = "";
    if (m->msg.p != NULL) {
        struct agg_str *text = &rec->str[AGG_F_MESSAGE];

        *text = m->msg;
        if (text->len >= 3 && memcmp(text->p, bom, 3) == 0) {
            text->p += 3;
            text->len -= 3;
        } else if (m->format == ING_SYSLOG_RFC5424 && text->len >= 1 && text->p[0] == ' ') {
            /* rsyslog's RFC 5424 templates write "%STRUCTURED-DATA% %msg%", and the
             * %msg% of a message it took from a local socket keeps the SP that
             * followed the TAG's colon: one SP is that, not the sender's text */
            text->p++;
            text->len--;
        }
    }

    memset(&j, 0, sizeof(j));
    memset(&sm, 0, sizeof(sm));
    j.out = scratch;
    agg_buf_init(&j.tmp);
    agg_buf_init(&j.fix);
    agg_buf_init(&sm.params);
    agg_buf_init(&sm.elems);
    agg_buf_init(&sm.keys);
    agg_buf_init(&sm.order);
    for (int f = 0; f <= AGG_F_STR_COUNT; f++)
        off[f] = SIZE_MAX;
    rc = sd_columns(m, scratch, rec, off, len, &sm, err);
    if (rc != AGG_OK)
        goto out_free;
    msg = off[AGG_F_MESSAGE] != SIZE_MAX
              ? (struct agg_str){scratch->data + off[AGG_F_MESSAGE], len[AGG_F_MESSAGE]}
              : rec->str[AGG_F_MESSAGE];
    if (ing_syslog_json_msg(msg, &obj)) {
        /* its JSON may set any column over the SD's (src/listen.c): the SD stays whole */
        for (size_t i = 0; i < sm.nparams; i++)
            sd_params(&sm)[i].in_column = false;
    }

    j.g = yajl_gen_alloc(NULL);
    if (j.g == NULL) {
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto out_free;
    }
    if (!yajl_gen_config(j.g, yajl_gen_print_callback, json_print, &j)) {
        rc = agg_err_set(err, AGG_ERR, "could not set up the JSON generator");
        goto out_free;
    }
    json_at = scratch->len;
    json_record(&j, m, &sm);
    if (j.nomem) {
        rc = agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto out_free;
    }
    if (j.bad) {
        rc = agg_err_set(err, AGG_ERR, "could not generate extra_data JSON");
        goto out_free;
    }

    for (int f = 0; f < AGG_F_STR_COUNT; f++) {
        if (off[f] != SIZE_MAX) {
            rec->str[f].p = scratch->data + off[f];
            rec->str[f].len = len[f];
        }
    }
    if (off[AGG_F_STR_COUNT] != SIZE_MAX)
        rec->user_id_orig.p = scratch->data + off[AGG_F_STR_COUNT];
    rec->extra.p = scratch->data + json_at;
    rec->extra.len = scratch->len - json_at;

out_free:
    if (j.g != NULL)
        yajl_gen_free(j.g);
    agg_buf_clear(&j.tmp);
    agg_buf_clear(&j.fix);
    agg_buf_clear(&sm.params);
    agg_buf_clear(&sm.elems);
    agg_buf_clear(&sm.keys);
    agg_buf_clear(&sm.order);
    return rc;
}

bool ing_syslog_json_msg(struct agg_str msg, struct agg_str *obj)
{
    static const char cookie[] = "@cee:";
    const char *p = msg.p, *end;

    if (p == NULL)
        return false;
    end = p + msg.len;
    if ((size_t)(end - p) >= sizeof(cookie) - 1 && memcmp(p, cookie, sizeof(cookie) - 1) == 0)
        p += sizeof(cookie) - 1;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    if (end - p < 2 || *p != '{' || end[-1] != '}')
        return false;
    obj->p = p;
    obj->len = (size_t)(end - p);
    return true;
}
