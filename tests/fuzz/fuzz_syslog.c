/*
 * tests/fuzz/fuzz_syslog.c — libFuzzer target for ingest/syslog.c.
 *
 * Parses the input (an exact-size buffer: any read past it is an ASan report) with
 * several receive times, in UTC and in a zone with DST (Europe/Berlin, when tzdata is
 * installed), checks the parsed message's invariants, walks its
 * STRUCTURED-DATA and maps it to a record, whose extra_data must be valid UTF-8 JSON;
 * a MSG that is a JSON object is decoded over that record, as the listener does.
 * Seeds: the inputs of tests/data/conformance/rfc5424.jsonl and rfc3164.jsonl
 * (scripts/test.sh writes them).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "ingest/json.h"
#include "ingest/syslog.h"
#include "core/time.h"
#include "core/tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what, int line)
{
    if (!ok) {
        fprintf(stderr, "fuzz_syslog: check failed: %s (line %d)\n", what, line);
        abort();
    }
}

#define CHECK(cond) check((cond) != 0, #cond, __LINE__)

static void check_slice(const char *p, size_t len, struct agg_str s)
{
    if (s.p == NULL) {
        CHECK(s.len == 0);
        return;
    }
    CHECK(s.p >= p && s.p <= p + len && s.len <= (size_t)(p + len - s.p));
}

static void check_message(const char *p, size_t len, const struct ing_syslog_msg *m)
{
    struct ing_syslog_sd_iter it;
    struct agg_str id, name, value;
    struct agg_buf b;

    CHECK(m->format == ING_SYSLOG_RFC5424 || m->format == ING_SYSLOG_RFC3164);
    CHECK(m->pri >= 0 && m->pri <= 191);
    CHECK(m->facility == m->pri / 8 && m->severity == m->pri % 8);
    CHECK(m->raw.p == p && m->raw.len == len);
    check_slice(p, len, m->timestamp);
    check_slice(p, len, m->hostname);
    check_slice(p, len, m->app_name);
    check_slice(p, len, m->procid);
    check_slice(p, len, m->msgid);
    check_slice(p, len, m->sd);
    check_slice(p, len, m->msg);
    CHECK((m->timestamp.p == NULL) == (m->ts_us == AGG_TIME_NONE));
    if (m->format == ING_SYSLOG_RFC5424) {
        CHECK(m->version >= 1 && m->version <= 999);
        CHECK(!m->pri_assumed);
        if (m->timestamp.p != NULL) {
            int64_t us;

            /* a strict RFC 5424 TIMESTAMP is an ISO 8601 timestamp to the general parser */
            CHECK(agg_time_parse_iso8601(m->timestamp.p, m->timestamp.len, &us));
            CHECK(us == m->ts_us);
        }
        CHECK(m->hostname.p == NULL || m->hostname.len <= 255);
        CHECK(m->app_name.p == NULL || m->app_name.len <= 48);
        CHECK(m->procid.p == NULL || m->procid.len <= 128);
        CHECK(m->msgid.p == NULL || m->msgid.len <= 32);
    } else {
        CHECK(m->version == 0 && m->sd.p == NULL && m->msgid.p == NULL);
        CHECK(m->msg.p != NULL);
        CHECK(!m->pri_assumed || m->pri == 13);
    }
    agg_buf_init(&b);
    ing_syslog_sd_init(&it, m->sd);
    while (ing_syslog_sd_next_element(&it, &id)) {
        check_slice(p, len, id);
        CHECK(id.len >= 1 && id.len <= 32);
        while (ing_syslog_sd_next_param(&it, &name, &value)) {
            check_slice(p, len, name);
            check_slice(p, len, value);
            CHECK(name.len >= 1 && name.len <= 32);
            agg_buf_reset(&b);
            CHECK(ing_syslog_sd_unescape(&b, value.p, value.len) == AGG_OK);
            CHECK(b.len <= value.len);
        }
    }
    agg_buf_clear(&b);
}

/* extra_data <p>[<len>]: valid UTF-8, a JSON object. */
static void check_extra(const char *p, size_t len)
{
    char *text = malloc(len + 1);
    yajl_val v;

    CHECK(text != NULL);
    CHECK(p != NULL && len >= 2);
    CHECK(agg_utf8_is_clean(p, len));
    memcpy(text, p, len);
    text[len] = '\0';
    v = yajl_tree_parse(text, NULL, 0);
    CHECK(v != NULL && YAJL_IS_OBJECT(v));
    yajl_tree_free(v);
    free(text);
}

static int json_emitted(void *arg, const struct agg_record *rec)
{
    (void)arg;
    check_extra(rec->extra.p, rec->extra.len);
    CHECK(rec->str[AGG_F_MESSAGE].p != NULL && rec->has_level);
    return AGG_OK;
}

/* A MSG that is a JSON object, decoded over the record as the listener does. */
static void check_json_msg(const struct agg_record *rec)
{
    static struct ing_json *j;
    struct agg_sink sink = {json_emitted, NULL, NULL};
    struct agg_buf merged;
    struct agg_str obj;
    struct agg_err err = {0};
    int rc;

    if (!ing_syslog_json_msg(rec->str[AGG_F_MESSAGE], &obj))
        return;
    if (j == NULL)
        j = ing_json_new(1 << 20, NULL);
    CHECK(j != NULL);
    agg_buf_init(&merged);
    rc = ing_json_decode_over(j, obj.p, obj.len, rec, &merged, &sink, &err);
    CHECK(rc == AGG_OK || (rc == AGG_EINVAL && err.msg[0] != '\0'));
    CHECK(ing_json_check(j));
    agg_buf_clear(&merged);
}

static void check_record(const struct ing_syslog_msg *m)
{
    struct agg_buf scratch;
    struct agg_record rec;
    struct agg_err err = {0};
    int rc;

    agg_buf_init(&scratch);
    rc = ing_syslog_to_record(m, &scratch, &rec, &err);
    /* only an SD param naming a typed column can be refused */
    CHECK(rc == AGG_OK || (rc == AGG_EINVAL && m->sd.p != NULL));
    if (rc == AGG_OK) {
        check_extra(rec.extra.p, rec.extra.len);
        CHECK(rec.str[AGG_F_MESSAGE].p != NULL);
        /* an SD param "level" may set the level instead of the severity */
        CHECK(rec.has_level);
        CHECK(m->sd.p != NULL || rec.level == agg_level_from_syslog(m->severity));
        check_json_msg(&rec);
    }
    agg_buf_clear(&scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t nows[] = {
        INT64_C(1718452800000000), /* 2024-06-15 */
        INT64_C(1704067199000000), /* 2023-12-31 23:59:59 */
        0,
        INT64_MIN,
        INT64_MAX,
    };
    static struct agg_tz *zones[2]; /* UTC (NULL) and Berlin, loaded once */
    static bool loaded;
    const char *p = (const char *)data;

    if (!loaded) {
        zones[1] = agg_tz_load("Europe/Berlin", NULL);
        loaded = true;
    }
    for (size_t z = 0; z < 2; z++) {
        if (z == 1 && zones[1] == NULL)
            break;
        for (size_t i = 0; i < sizeof(nows) / sizeof(nows[0]); i++) {
            struct ing_syslog_msg m;
            struct agg_err err = {0};
            int rc = ing_syslog_parse(p, size, nows[i], zones[z], &m, &err);

            CHECK(rc == AGG_OK || rc == AGG_EINVAL);
            if (rc != AGG_OK) {
                CHECK(err.code == AGG_EINVAL && err.msg[0] != '\0');
                return 0;
            }
            check_message(p, size, &m);
            if (i == 0 && z == 0)
                check_record(&m);
        }
    }
    return 0;
}
