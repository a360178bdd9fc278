/*
 * core/tz.c — a TZif (RFC 8536) reader and the POSIX TZ rules of its footer.
 *
 * Place: see core/tz.h.
 * Threads: pure after load; loading reads one file (startup, config check).
 * Ownership: a zone owns its arrays.
 * Traps: every read of the file is length-checked first (fuzz_syslog feeds zones
 *        through the parser). Version 1 files carry 32-bit times only; version 2+
 *        files repeat the data with 64-bit times after the version 1 block, and
 *        only that second block and the footer are used. glibc offers no
 *        thread-safe way to ask another zone than TZ's, hence this reader.
 * Not here: which zone a listener uses (src/listen.c), config validation
 *           (core/config.c).
 */
#include "core/tz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/time.h"
#include "core/alloc.h"

#define SEC_PER_DAY   INT64_C(86400)
#define OFFSET_MIN    (-89999) /* RFC 8536 3.2: utoff in [-89999, 93599] */
#define OFFSET_MAX    93599
#define RULE_HOUR_MAX 167 /* RFC 8536 3.3.1: transition times of -167..167 hours */
#define TYPES_MAX     256
/* Instants the rule arithmetic works in: years 1..9999 */
#define RULE_T_MIN (INT64_C(-62135596800))
#define RULE_T_MAX (INT64_C(253402300799))

/* A date of a POSIX TZ rule: Jn (1-365, no Feb 29), n (0-365) or Mm.w.d. */
struct rule_date {
    char kind; /* 'J', 'n' or 'M' */
    int n, m, w, d;
    int32_t time_s; /* local time of day of the change, may be < 0 or > 24 h */
};

/* The footer: standard time, and daylight time with its two changes. */
struct rule {
    int32_t std_off, dst_off; /* seconds east of UTC */
    bool has_dst;
    struct rule_date start, end;
};

struct agg_tz {
    char name[AGG_TZ_NAME_MAX + 1];
    size_t ntrans, ntypes;
    int64_t *trans;      /* UTC seconds, ascending */
    unsigned char *kind; /* the type of each transition */
    int32_t *off;        /* the offset of each type */
    bool has_rule;       /* the footer continues the table */
    struct rule rule;
};

/* ---- the footer: a POSIX TZ string ------------------------------------------ */

struct cursor {
    const char *p, *end;
};

static bool at(const struct cursor *c, char ch)
{
    return c->p < c->end && *c->p == ch;
}

static bool digit_at(const struct cursor *c)
{
    return c->p < c->end && *c->p >= '0' && *c->p <= '9';
}

/* Up to <max_digits> digits, value <= <max>. */
static bool number(struct cursor *c, int max_digits, int max, int *out)
{
    int v = 0, n = 0;

    while (digit_at(c) && n < max_digits) {
        v = v * 10 + (*c->p++ - '0');
        n++;
    }
    if (n == 0 || v > max || digit_at(c))
        return false;
    *out = v;
    return true;
}

/* [+-]hh[:mm[:ss]] with hh <= <max_h>, as signed seconds. */
static bool hms(struct cursor *c, int max_h, int32_t *out)
{
    int sign = 1, h, m = 0, s = 0;

    if (at(c, '+') || at(c, '-'))
        sign = *c->p++ == '-' ? -1 : 1;
    if (!number(c, 3, max_h, &h))
        return false;
    if (at(c, ':')) {
        c->p++;
        if (!number(c, 2, 59, &m))
            return false;
        if (at(c, ':')) {
            c->p++;
            if (!number(c, 2, 59, &s))
                return false;
        }
    }
    *out = sign * (h * 3600 + m * 60 + s);
    return true;
}

/* A zone abbreviation: 3+ letters, or <...> of letters, digits, '+', '-'. */
static bool abbrev(struct cursor *c)
{
    const char *s = c->p;

    if (at(c, '<')) {
        c->p++;
        s = c->p;
        while (c->p < c->end && *c->p != '>') {
            char ch = *c->p;

            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                  ch == '+' || ch == '-'))
                return false;
            c->p++;
        }
        if (c->p - s < 3 || !at(c, '>'))
            return false;
        c->p++;
        return true;
    }
    while (c->p < c->end && ((*c->p >= 'A' && *c->p <= 'Z') || (*c->p >= 'a' && *c->p <= 'z')))
        c->p++;
    return c->p - s >= 3;
}

static bool rule_date(struct cursor *c, struct rule_date *d)
{
    memset(d, 0, sizeof(*d));
    d->time_s = 2 * 3600; /* POSIX default 02:00:00 */
    if (at(c, 'J')) {
        c->p++;
        d->kind = 'J';
        if (!number(c, 3, 365, &d->n) || d->n < 1)
            return false;
    } else if (at(c, 'M')) {
        c->p++;
        d->kind = 'M';
        if (!number(c, 2, 12, &d->m) || d->m < 1 || !at(c, '.'))
            return false;
        c->p++;
        if (!number(c, 1, 5, &d->w) || d->w < 1 || !at(c, '.'))
            return false;
        c->p++;
        if (!number(c, 1, 6, &d->d))
            return false;
    } else {
        d->kind = 'n';
        if (!number(c, 3, 365, &d->n))
            return false;
    }
    if (at(c, '/')) {
        c->p++;
        return hms(c, RULE_HOUR_MAX, &d->time_s);
    }
    return true;
}

/* Parses the TZ string <s>[<n>] into <r>: false when malformed. */
static bool parse_rule(const char *s, size_t n, struct rule *r)
{
    struct cursor c = {s, s + n};
    int32_t v;

    memset(r, 0, sizeof(*r));
    if (!abbrev(&c) || !hms(&c, 24, &v))
        return false;
    r->std_off = -v; /* POSIX counts west of Greenwich as positive */
    r->dst_off = r->std_off;
    if (c.p == c.end)
        return true;
    if (!abbrev(&c))
        return false;
    r->has_dst = true;
    r->dst_off = r->std_off + 3600;
    if (!at(&c, ',') && c.p < c.end) {
        if (!hms(&c, 24, &v))
            return false;
        r->dst_off = -v;
    }
    if (c.p == c.end) {
        /* no rule: POSIX leaves it to the implementation; glibc uses the US one */
        r->start = (struct rule_date){'M', 0, 3, 2, 0, 7200};
        r->end = (struct rule_date){'M', 0, 11, 1, 0, 7200};
        return true;
    }
    if (!at(&c, ','))
        return false;
    c.p++;
    if (!rule_date(&c, &r->start) || !at(&c, ','))
        return false;
    c.p++;
    return rule_date(&c, &r->end) && c.p == c.end;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* The day (since the epoch) <d> falls on in year <y>. */
static int64_t rule_day(const struct rule_date *d, int64_t y)
{
    int64_t jan1 = agg_days_from_civil(y, 1, 1), first, day;
    unsigned dim;

    if (d->kind == 'J')
        return jan1 + d->n - 1 + (is_leap(y) && d->n >= 60 ? 1 : 0);
    if (d->kind == 'n')
        return jan1 + d->n;
    first = agg_days_from_civil(y, (unsigned)d->m, 1);
    dim = agg_days_in_month(y, (unsigned)d->m);
    /* 1970-01-01 was a Thursday (4); weekdays count from Sunday (0) */
    day = first + ((d->d - ((first % 7 + 7 + 4) % 7)) + 7) % 7 + (int64_t)(d->w - 1) * 7;
    while (day >= first + dim)
        day -= 7;
    return day;
}

/* The offset the rule gives at <t> (UTC seconds within RULE_T_MIN..RULE_T_MAX). */
static int32_t rule_offset(const struct rule *r, int64_t t)
{
    int64_t days, y, best_t = INT64_MIN;
    unsigned mo, dd;
    int32_t best = r->std_off;

    if (!r->has_dst)
        return r->std_off;
    days = (t + r->std_off) / SEC_PER_DAY - ((t + r->std_off) % SEC_PER_DAY < 0);
    agg_civil_from_days(days, &y, &mo, &dd);
    /* the latest change at or before <t>, among those of the years around it */
    for (int64_t yy = y - 1; yy <= y + 1; yy++) {
        int64_t start = rule_day(&r->start, yy) * SEC_PER_DAY + r->start.time_s - r->std_off;
        int64_t end = rule_day(&r->end, yy) * SEC_PER_DAY + r->end.time_s - r->dst_off;

        if (start <= t && start >= best_t) {
            best_t = start;
            best = r->dst_off;
        }
        if (end <= t && end >= best_t) {
            best_t = end;
            best = r->std_off;
        }
    }
    return best;
}

/* ---- the TZif file ------------------------------------------------------------ */

struct counts {
    uint32_t isut, isstd, leap, time, type, chars;
};

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* The header at <p>[<n>]: its version and counts, or false. */
static bool header(const unsigned char *p, size_t n, int *version, struct counts *c)
{
    if (n < 44 || memcmp(p, "TZif", 4) != 0)
        return false;
    *version = p[4] == 0 ? 1 : p[4] - '0';
    if (*version < 1 || *version > 4)
        return false;
    c->isut = be32(p + 20);
    c->isstd = be32(p + 24);
    c->leap = be32(p + 28);
    c->time = be32(p + 32);
    c->type = be32(p + 36);
    c->chars = be32(p + 40);
    return c->type >= 1 && c->type <= TYPES_MAX && c->chars >= 1 &&
           (c->isut == 0 || c->isut == c->type) && (c->isstd == 0 || c->isstd == c->type) &&
           c->time <= AGG_TZ_TRANSITIONS_MAX && c->leap <= AGG_TZ_TRANSITIONS_MAX &&
           c->chars <= 65536;
}

/* Octets of the data block after a header with <c> and <tsize>-octet times. */
static size_t block_size(const struct counts *c, size_t tsize)
{
    return (size_t)c->time * (tsize + 1) + (size_t)c->type * 6 + c->chars +
           (size_t)c->leap * (tsize + 4) + c->isstd + c->isut;
}

static int bad(struct agg_err *err, const char *name, const char *why)
{
    return agg_err_set(err, AGG_EINVAL, "time zone \"%s\": %s", name, why);
}

/* Fills <tz> from the data block <p> (size checked) with <tsize>-octet times. */
static int load_block(struct agg_tz *tz, const unsigned char *p, const struct counts *c,
                      size_t tsize, struct agg_err *err)
{
    const unsigned char *idx = p + (size_t)c->time * tsize, *types = idx + c->time;

    tz->ntrans = c->time;
    tz->ntypes = c->type;
    tz->trans = agg_malloc((c->time > 0 ? c->time : 1) * sizeof(*tz->trans));
    tz->kind = agg_malloc(c->time > 0 ? c->time : 1);
    tz->off = agg_malloc(c->type * sizeof(*tz->off));
    if (tz->trans == NULL || tz->kind == NULL || tz->off == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    for (size_t i = 0; i < c->type; i++) {
        int32_t off = (int32_t)be32(types + i * 6);

        if (off < OFFSET_MIN || off > OFFSET_MAX || types[i * 6 + 5] >= c->chars)
            return bad(err, tz->name, "a local time type is out of range");
        tz->off[i] = off;
    }
    for (size_t i = 0; i < c->time; i++) {
        tz->trans[i] = tsize == 8 ? be64(p + i * 8) : (int32_t)be32(p + i * 4);
        tz->kind[i] = idx[i];
        if (idx[i] >= c->type || (i > 0 && tz->trans[i] <= tz->trans[i - 1]))
            return bad(err, tz->name, "transitions are out of order or of an unknown type");
    }
    return AGG_OK;
}

struct agg_tz *agg_tz_parse(const char *name, const unsigned char *data, size_t len,
                            struct agg_err *err)
{
    struct agg_tz *tz = agg_calloc(1, sizeof(*tz));
    struct counts c;
    int version;
    size_t v1, at2;

    if (tz == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(tz->name, sizeof(tz->name), "%s", name);
    if (!header(data, len, &version, &c)) {
        bad(err, name, "not a TZif file (RFC 8536)");
        goto fail;
    }
    v1 = block_size(&c, 4);
    if (v1 > len - 44) {
        bad(err, name, "the file is truncated");
        goto fail;
    }
    if (version == 1) {
        if (c.leap > 0) {
            bad(err, name, "zones with leap seconds are not supported");
            goto fail;
        }
        if (load_block(tz, data + 44, &c, 4, err) != AGG_OK)
            goto fail;
        return tz;
    }
    at2 = 44 + v1;
    if (!header(data + at2, len - at2, &version, &c) || version == 1) {
        bad(err, name, "the second header is malformed");
        goto fail;
    }
    if (block_size(&c, 8) > len - at2 - 44) {
        bad(err, name, "the file is truncated");
        goto fail;
    }
    if (c.leap > 0) {
        bad(err, name, "zones with leap seconds are not supported");
        goto fail;
    }
    if (load_block(tz, data + at2 + 44, &c, 8, err) != AGG_OK)
        goto fail;
    {
        const char *foot = (const char *)data + at2 + 44 + block_size(&c, 8);
        const char *end = (const char *)data + len, *nl;

        if (foot >= end || *foot != '\n' ||
            (nl = memchr(foot + 1, '\n', (size_t)(end - foot - 1))) == NULL) {
            bad(err, name, "the footer is missing");
            goto fail;
        }
        if (nl > foot + 1) {
            if (!parse_rule(foot + 1, (size_t)(nl - foot - 1), &tz->rule)) {
                bad(err, name, "the footer's TZ rule is malformed");
                goto fail;
            }
            tz->has_rule = true;
        }
    }
    return tz;

fail:
    agg_tz_free(tz);
    return NULL;
}

/* Whether <name> is a zone name we may turn into a path under AGG_TZ_DIR. */
static bool name_ok(const char *name)
{
    size_t n = strlen(name), comp = 0;

    if (n == 0 || n > AGG_TZ_NAME_MAX)
        return false;
    for (size_t i = 0; i <= n; i++) {
        char ch = name[i];

        if (ch == '/' || ch == '\0') {
            /* no empty, "." or ".." component */
            if (comp == 0 || (comp <= 2 && memcmp(name + i - comp, "..", comp) == 0))
                return false;
            comp = 0;
            continue;
        }
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '+' || ch == '-'))
            return false;
        comp++;
    }
    return true;
}

struct agg_tz *agg_tz_load(const char *name, struct agg_err *err)
{
    char path[sizeof(AGG_TZ_DIR) + AGG_TZ_NAME_MAX + 2];
    unsigned char *data = NULL;
    struct agg_tz *tz = NULL;
    struct stat st;
    size_t got = 0;
    int fd;

    if (!name_ok(name)) {
        agg_err_set(err, AGG_EINVAL,
                    "\"%s\" is not a time zone name (an IANA name such as Europe/Berlin)", name);
        return NULL;
    }
    if (strcmp(name, "UTC") == 0) {
        tz = agg_calloc(1, sizeof(*tz));
        if (tz == NULL || (tz->off = agg_calloc(1, sizeof(*tz->off))) == NULL) {
            agg_tz_free(tz);
            agg_err_set(err, AGG_ENOMEM, "out of memory");
            return NULL;
        }
        snprintf(tz->name, sizeof(tz->name), "UTC");
        tz->ntypes = 1;
        return tz;
    }
    snprintf(path, sizeof(path), "%s/%s", AGG_TZ_DIR, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        agg_err_set(err, AGG_EINVAL, "unknown time zone \"%s\" (%s: %s)", name, path,
                    strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > AGG_TZ_FILE_MAX) {
        agg_err_set(err, AGG_EINVAL, "unknown time zone \"%s\" (%s is not a zone file)", name,
                    path);
        goto out_close;
    }
    data = agg_malloc((size_t)st.st_size + 1);
    if (data == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto out_close;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, data + got, (size_t)st.st_size - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            agg_err_set(err, AGG_EINVAL, "could not read time zone file \"%s\": %s", path,
                        r < 0 ? strerror(errno) : "unexpected end of file");
            goto out_close;
        }
        got += (size_t)r;
    }
    tz = agg_tz_parse(name, data, got, err);

out_close:
    free(data);
    close(fd);
    return tz;
}

void agg_tz_free(struct agg_tz *tz)
{
    if (tz == NULL)
        return;
    free(tz->trans);
    free(tz->kind);
    free(tz->off);
    free(tz);
}

const char *agg_tz_name(const struct agg_tz *tz)
{
    return tz->name;
}

int32_t agg_tz_offset_at(const struct agg_tz *tz, int64_t utc_s)
{
    size_t lo = 0, hi = tz->ntrans;

    if (tz->ntrans == 0 || utc_s >= tz->trans[tz->ntrans - 1]) {
        if (tz->has_rule) {
            int64_t t = utc_s < RULE_T_MIN ? RULE_T_MIN : utc_s > RULE_T_MAX ? RULE_T_MAX : utc_s;

            return rule_offset(&tz->rule, t);
        }
        return tz->off[tz->ntrans > 0 ? tz->kind[tz->ntrans - 1] : 0];
    }
    if (utc_s < tz->trans[0])
        return tz->off[0]; /* RFC 8536 3.2: type 0 before the first transition */
    /* the last transition at or before utc_s */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (tz->trans[mid] <= utc_s)
            lo = mid;
        else
            hi = mid;
    }
    return tz->off[tz->kind[lo]];
}

/* Microseconds far enough from the int64 limits for any offset and a day around. */
static bool in_range(int64_t us)
{
    const int64_t margin = INT64_C(4) * SEC_PER_DAY * AGG_US_PER_SEC;

    return us > INT64_MIN + margin && us < INT64_MAX - margin;
}

int64_t agg_tz_local_to_utc(const struct agg_tz *tz, int64_t local_us)
{
    int64_t s, best_u = 0;
    int32_t cand[3];
    bool found = false;

    if (!in_range(local_us))
        return local_us;
    s = local_us / AGG_US_PER_SEC - (local_us % AGG_US_PER_SEC < 0);
    /* the offsets in force around that wall-clock time */
    cand[0] = agg_tz_offset_at(tz, s - SEC_PER_DAY);
    cand[1] = agg_tz_offset_at(tz, s);
    cand[2] = agg_tz_offset_at(tz, s + SEC_PER_DAY);
    for (int i = 0; i < 3; i++) {
        int64_t u = s - cand[i];

        /* consistent: at that instant the clock does read <local> */
        if (agg_tz_offset_at(tz, u) == cand[i] && (!found || u < best_u)) {
            best_u = u;
            found = true;
        }
    }
    if (!found) /* skipped by a change: read with the offset before it */
        best_u = s - cand[0];
    return local_us - (s - best_u) * AGG_US_PER_SEC;
}

int64_t agg_tz_utc_to_local(const struct agg_tz *tz, int64_t utc_us)
{
    int64_t s;

    if (!in_range(utc_us))
        return utc_us;
    s = utc_us / AGG_US_PER_SEC - (utc_us % AGG_US_PER_SEC < 0);
    return utc_us + (int64_t)agg_tz_offset_at(tz, s) * AGG_US_PER_SEC;
}
