/*
 * tests/fuzz/fuzz_json.c — libFuzzer target for ingest/json.c and ingest/otlp.c (OTLP
 *                          bodies go through ing_json_decode_document).
 *
 * Feeds the input (an exact-size buffer: any read past it is an ASan report) to the
 * NDJSON, document and single-line decoders, with a large and a small event limit,
 * and once more with a sink that fills up. The sink checks every record: message
 * present, extra_data a jsonb-safe JSON object (valid UTF-8, no \u0000), a kept
 * user_id literal valid JSON, raw present and within the limit; every reject has a reason. After each call the decoder's
 * own invariants must hold (ing_json_check: yajl never outgrew the reserve).
 * Seeds: any JSON, NDJSON or OTLP/HTTP JSON logs bodies.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "core/buf.h"
#include "ingest/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_json: check failed: %s (line %d)\n", #cond, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct state {
    size_t max_event_bytes;
    size_t emitted, rejected;
    long full_after; /* < 0: never full */
};

/* Reads every byte of <p>[<n>], so ASan sees a dangling or short slice. */
static void touch(const char *p, size_t n)
{
    volatile unsigned char sum = 0;

    for (size_t i = 0; i < n; i++)
        sum ^= (unsigned char)p[i];
    (void)sum;
}

static void check_extra(struct agg_str x)
{
    char *text, errbuf[64];
    yajl_val v;

    if (x.p == NULL)
        return;
    CHECK(agg_utf8_is_clean(x.p, x.len));
    for (size_t i = 0; i + 1 < x.len; i++) {
        if (x.p[i] != '\\')
            continue;
        CHECK(!(x.p[i + 1] == 'u' && i + 6 <= x.len && memcmp(x.p + i + 2, "0000", 4) == 0));
        i++; /* the escaped character */
    }
    text = malloc(x.len + 1);
    CHECK(text != NULL);
    memcpy(text, x.p, x.len);
    text[x.len] = '\0';
    v = yajl_tree_parse(text, errbuf, sizeof(errbuf));
    CHECK(v != NULL && YAJL_IS_OBJECT(v));
    yajl_tree_free(v);
    free(text);
}

static int emit(void *arg, const struct agg_record *rec)
{
    struct state *s = arg;

    if (s->full_after >= 0 && (long)s->emitted >= s->full_after)
        return AGG_EFULL;
    CHECK(rec->str[AGG_F_MESSAGE].p != NULL);
    for (int f = 0; f < AGG_F_STR_COUNT; f++) {
        if (rec->str[f].p == NULL)
            CHECK(rec->str[f].len == 0);
        else
            touch(rec->str[f].p, rec->str[f].len);
    }
    CHECK(rec->raw.p != NULL && rec->raw.len <= s->max_event_bytes);
    touch(rec->raw.p, rec->raw.len);
    CHECK(rec->level >= AGG_LEVEL_DEBUG && rec->level <= AGG_LEVEL_CRITICAL);
    check_extra(rec->extra);
    if (rec->user_id_orig.p != NULL) {
        /* a kept user_id: no INTEGER beside it; a literal is JSON store/copy.c can write */
        CHECK(!rec->has_user_id);
        touch(rec->user_id_orig.p, rec->user_id_orig.len);
        if (!rec->user_id_orig_is_string) {
            char *text = malloc(rec->user_id_orig.len + 3);
            yajl_val v;

            CHECK(text != NULL);
            text[0] = '[';
            memcpy(text + 1, rec->user_id_orig.p, rec->user_id_orig.len);
            memcpy(text + 1 + rec->user_id_orig.len, "]", 2);
            v = yajl_tree_parse(text, NULL, 0);
            CHECK(v != NULL);
            yajl_tree_free(v);
            free(text);
        }
    }
    s->emitted++;
    return AGG_OK;
}

static void reject(void *arg, size_t index, const char *why, const char *raw, size_t rawlen)
{
    struct state *s = arg;

    (void)index;
    CHECK(why != NULL && why[0] != '\0');
    CHECK(raw != NULL && rawlen <= s->max_event_bytes);
    touch(raw, rawlen);
    s->rejected++;
}

static void run(struct ing_json *j, size_t max_event_bytes, const char *p, size_t n, long full)
{
    struct state s = {max_event_bytes, 0, 0, full};
    struct agg_sink sink = {emit, reject, &s};
    struct ing_json_stats st;
    struct agg_err err = {0};
    const char *nl;
    int rc;

    rc = ing_json_decode_ndjson(j, p, n, &sink, &st, &err);
    CHECK(rc == AGG_OK || (rc == AGG_EFULL && full >= 0));
    CHECK(st.accepted == s.emitted && st.rejected == s.rejected);
    CHECK(ing_json_check(j));

    s.emitted = s.rejected = 0;
    rc = ing_json_decode_document(j, p, n, &sink, &st, &err);
    CHECK(rc == AGG_OK || rc == AGG_EINVAL || (rc == AGG_EFULL && full >= 0));
    CHECK(st.accepted == s.emitted && st.rejected == s.rejected);
    if (rc == AGG_EINVAL)
        CHECK(s.emitted == 0 && s.rejected == 0 && err.msg[0] != '\0');
    CHECK(ing_json_check(j));

    s.emitted = s.rejected = 0;
    nl = memchr(p, '\n', n);
    rc = ing_json_decode_line(j, p, nl != NULL ? (size_t)(nl - p) : n, 3, &sink, &err);
    CHECK(rc == AGG_OK || rc == AGG_EINVAL || (rc == AGG_EFULL && full >= 0));
    CHECK(s.emitted + s.rejected <= 1);
    CHECK(ing_json_check(j));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ing_json *big, *small;
    char *p;

    if (big == NULL) {
        big = ing_json_new(65536, NULL);
        small = ing_json_new(64, NULL);
        CHECK(big != NULL && small != NULL);
    }
    p = malloc(size ? size : 1);
    CHECK(p != NULL);
    memcpy(p, data, size);
    run(big, 65536, p, size, -1);
    run(small, 64, p, size, -1);
    if (size > 0)
        run(big, 65536, p, size, data[0] % 3);
    free(p);
    return 0;
}
