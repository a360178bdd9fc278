/*
 * tests/fuzz/fuzz_framing.c — libFuzzer target for ingest/framing.c.
 *
 * Input: one configuration octet (bits 0-1: framing mode; bits 2-7: v, max_frame =
 * v * v, 0 meaning the default), then the stream. The stream is framed in one piece,
 * then split in two at an offset derived from the data, then fed in three pieces with
 * every second frame refused (backpressure): every run must deliver the same frames
 * and report the same errors. A fourth run flushes a held NUL after the first piece
 * (invariants only). Every feed gets an exact-size heap copy of its bytes.
 * Seeds: the streams of tests/data/conformance/framing.jsonl (scripts/test.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "ingest/framing.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what, int line)
{
    if (!ok) {
        fprintf(stderr, "fuzz_framing: check failed: %s (line %d)\n", what, line);
        abort();
    }
}

#define CHECK(cond) check((cond) != 0, #cond, __LINE__)

struct run {
    struct ing_framer f;
    struct agg_buf log; /* "F<len>:<bytes>" per frame, "E<kind>:<why>" per error */
    struct agg_buf pending;
    int refuse_every, calls;
    int refused;
};

static int on_frame(void *arg, const char *p, size_t len)
{
    struct run *r = arg;
    char head[32];

    CHECK(len >= 1 && len <= r->f.max_frame);
    if (r->refuse_every > 0 && ++r->calls % r->refuse_every == 0) {
        r->refused = 1;
        return AGG_EFULL;
    }
    snprintf(head, sizeof(head), "F%zu:", len);
    CHECK(agg_buf_append(&r->log, head, strlen(head)) == AGG_OK);
    CHECK(agg_buf_append(&r->log, p, len) == AGG_OK);
    return AGG_OK;
}

static void on_error(void *arg, int kind, const char *why)
{
    struct run *r = arg;

    CHECK(kind >= ING_FRAMING_E_OVERSIZE && kind <= ING_FRAMING_E_INCOMPLETE);
    CHECK(why != NULL && why[0] != '\0');
    CHECK(agg_buf_printf(&r->log, "E%d:%s", kind, why) == AGG_OK);
}

/* Appends <p>[<n>] to the pending bytes and feeds (or finishes, or with <eof> < 0
 * flushes) as a listener would. */
static void drive(struct run *r, const char *p, size_t n, int eof)
{
    const struct ing_frame_cb cb = {on_frame, on_error, r};

    CHECK(agg_buf_append(&r->pending, p, n) == AGG_OK);
    do {
        size_t len = r->pending.len, used;
        char *exact = malloc(len > 0 ? len : 1);

        CHECK(exact != NULL);
        if (len > 0)
            memcpy(exact, r->pending.data, len);
        r->refused = 0;
        used = eof > 0   ? ing_framer_finish(&r->f, exact, len, &cb)
               : eof < 0 ? ing_framer_flush(&r->f, exact, len, &cb)
                         : ing_framer_feed(&r->f, exact, len, &cb);
        free(exact);
        CHECK(used <= len);
        memmove(r->pending.data, r->pending.data + used, len - used);
        r->pending.len -= used;
        r->pending.data[r->pending.len] = '\0';
    } while (r->refused);
    if (eof > 0)
        CHECK(r->pending.len == 0);
    if (eof < 0)
        CHECK(!r->f.nul_pending);
    /* what stays unconsumed is bounded: max_frame + MSG-LEN SP (+ CR NUL) */
    CHECK(r->pending.len <= r->f.max_frame + ING_FRAMING_MAX_DIGITS + 3);
}

static void run_init(struct run *r, uint8_t conf)
{
    unsigned v = conf >> 2;

    memset(r, 0, sizeof(*r));
    ing_framer_init(&r->f, (enum ing_framing_mode)(conf & 3), v * v);
    agg_buf_init(&r->log);
    agg_buf_init(&r->pending);
    CHECK(agg_buf_reserve(&r->pending, 1) == AGG_OK);
    CHECK(agg_buf_reserve(&r->log, 1) == AGG_OK);
}

static void run_clear(struct run *r)
{
    agg_buf_clear(&r->log);
    agg_buf_clear(&r->pending);
}

static int same(const struct run *a, const struct run *b)
{
    return a->log.len == b->log.len && memcmp(a->log.data, b->log.data, a->log.len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run one, two, three, four;
    const char *s;
    size_t n, k, k2;
    uint32_t h = 2166136261u;

    if (size < 1)
        return 0;
    s = (const char *)data + 1;
    n = size - 1;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    k = n > 0 ? h % (n + 1) : 0;
    k2 = n > 0 ? (h >> 11) % (n + 1) : 0;
    if (k2 < k) {
        size_t t = k;

        k = k2;
        k2 = t;
    }

    run_init(&one, data[0]);
    drive(&one, s, n, 0);
    drive(&one, NULL, 0, 1);
    CHECK(one.f.offset == 0); /* finish resets the stream */

    run_init(&two, data[0]);
    drive(&two, s, k, 0);
    drive(&two, s + k, n - k, 0);
    drive(&two, NULL, 0, 1);
    CHECK(same(&one, &two));

    run_init(&three, data[0]);
    three.refuse_every = 2;
    drive(&three, s, k, 0);
    drive(&three, s + k, k2 - k, 0);
    drive(&three, s + k2, n - k2, 0);
    drive(&three, NULL, 0, 1);
    CHECK(same(&one, &three));

    /* a pause after the first piece: a held NUL is flushed as a trailer (the frames
     * may then differ from the unpaused stream; only the invariants are checked) */
    run_init(&four, data[0]);
    drive(&four, s, k, 0);
    if (four.f.nul_pending)
        drive(&four, NULL, 0, -1);
    drive(&four, s + k, n - k, 0);
    drive(&four, NULL, 0, 1);

    run_clear(&one);
    run_clear(&two);
    run_clear(&three);
    run_clear(&four);
    return 0;
}
