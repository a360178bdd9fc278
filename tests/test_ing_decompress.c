/*
 * tests/test_ing_decompress.c — Content-Encoding parsing and bounded gzip/zstd
 * decompression: round trips, multi-member/multi-frame bodies, bombs, bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <zlib.h>
#include <zstd.h>

#include "ingest/decompress.h"
#include "core/alloc.h"
#include "core/time.h"

#define MIB ((size_t)1 << 20)

/* Deterministic, compressible but not trivial text: log-like lines. */
static char *sample(size_t n)
{
    char *p = malloc(n);
    uint32_t x = 12345;

    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (i % 97 == 96) ? '\n' : "abcdefghij klmnop {}\":,0123456789"[(x >> 16) % 33];
    }
    return p;
}

struct blob {
    unsigned char *p;
    size_t len, cap;
};

static void blob_add(struct blob *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* One gzip member of <in>[<n>] appended to <b>. */
static void gzip_member(struct blob *b, const void *in, size_t n)
{
    z_stream zs = {0};
    unsigned char buf[16384];
    int rc;

    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)n;
    do {
        zs.next_out = buf;
        zs.avail_out = sizeof(buf);
        rc = deflate(&zs, Z_FINISH);
        blob_add(b, buf, sizeof(buf) - zs.avail_out);
    } while (rc == Z_OK);
    assert_int_equal(rc, Z_STREAM_END);
    deflateEnd(&zs);
}

static void zstd_frame(struct blob *b, const void *in, size_t n)
{
    size_t bound = ZSTD_compressBound(n);
    unsigned char *buf = malloc(bound);
    size_t got = ZSTD_compress(buf, bound, in, n, 3);

    assert_false(ZSTD_isError(got));
    blob_add(b, buf, got);
    free(buf);
}

static void test_decompress_parses_content_encoding(void **state)
{
    enum ing_encoding e = ING_ENCODING_ZSTD;

    (void)state;
    assert_true(ing_encoding_parse(NULL, &e));
    assert_int_equal(e, ING_ENCODING_IDENTITY);
    assert_true(ing_encoding_parse("gzip", &e));
    assert_int_equal(e, ING_ENCODING_GZIP);
    assert_true(ing_encoding_parse(" X-GZip ", &e));
    assert_int_equal(e, ING_ENCODING_GZIP);
    assert_true(ing_encoding_parse("ZSTD", &e));
    assert_int_equal(e, ING_ENCODING_ZSTD);
    assert_true(ing_encoding_parse("Identity", &e));
    assert_int_equal(e, ING_ENCODING_IDENTITY);
    assert_true(ing_encoding_parse("", &e));
    assert_int_equal(e, ING_ENCODING_IDENTITY);
    assert_false(ing_encoding_parse("br", &e));
    assert_false(ing_encoding_parse("deflate", &e));
    assert_false(ing_encoding_parse("gzip, zstd", &e));
    assert_false(ing_encoding_parse("gzipx", &e));
    assert_string_equal(ing_encoding_name(ING_ENCODING_ZSTD), "zstd");
}

static void round_trip(enum ing_encoding enc)
{
    size_t n = 300000;
    char *text = sample(n);
    struct blob b = {0};
    struct agg_buf out;
    struct agg_err err = {0};

    if (enc == ING_ENCODING_GZIP)
        gzip_member(&b, text, n);
    else
        zstd_frame(&b, text, n);
    agg_buf_init(&out);
    assert_int_equal(agg_buf_append(&out, "pre:", 4), AGG_OK);
    assert_int_equal(ing_decompress(enc, (const char *)b.p, b.len, n, &out, &err), AGG_OK);
    assert_int_equal(out.len, 4 + n);
    assert_memory_equal(out.data, "pre:", 4);
    assert_memory_equal(out.data + 4, text, n);
    assert_int_equal(out.data[out.len], '\0');
    /* one byte less room than the body needs */
    out.len = 0;
    assert_int_equal(ing_decompress(enc, (const char *)b.p, b.len, n - 1, &out, &err), AGG_EFULL);
    assert_int_equal(out.len, 0);
    agg_buf_clear(&out);
    free(b.p);
    free(text);
}

static void test_decompress_gzip_round_trips(void **state)
{
    (void)state;
    round_trip(ING_ENCODING_GZIP);
}

static void test_decompress_zstd_round_trips(void **state)
{
    (void)state;
    round_trip(ING_ENCODING_ZSTD);
}

static void test_decompress_identity_copies_within_bound(void **state)
{
    struct agg_buf out;
    struct agg_err err = {0};

    (void)state;
    agg_buf_init(&out);
    assert_int_equal(ing_decompress(ING_ENCODING_IDENTITY, "hello", 5, 5, &out, &err), AGG_OK);
    assert_string_equal(out.data, "hello");
    assert_int_equal(ing_decompress(ING_ENCODING_IDENTITY, "hello", 5, 4, &out, &err), AGG_EFULL);
    assert_int_equal(out.len, 5);
    agg_buf_clear(&out);
}

static void test_decompress_empty_input_gives_empty_output(void **state)
{
    struct agg_buf out;
    struct agg_err err = {0};

    (void)state;
    agg_buf_init(&out);
    for (int e = ING_ENCODING_IDENTITY; e <= ING_ENCODING_ZSTD; e++) {
        assert_int_equal(ing_decompress((enum ing_encoding)e, "", 0, 100, &out, &err), AGG_OK);
        assert_int_equal(out.len, 0);
    }
    agg_buf_clear(&out);
}

static void test_decompress_gzip_concatenated_members(void **state)
{
    struct blob b = {0};
    struct agg_buf out;
    struct agg_err err = {0};

    (void)state;
    gzip_member(&b, "first,", 6);
    gzip_member(&b, "", 0);
    gzip_member(&b, "second", 6);
    agg_buf_init(&out);
    assert_int_equal(ing_decompress(ING_ENCODING_GZIP, (const char *)b.p, b.len, 100, &out, &err),
                     AGG_OK);
    assert_string_equal(out.data, "first,second");
    agg_buf_clear(&out);
    free(b.p);
}

static void test_decompress_zstd_multiple_frames(void **state)
{
    /* a skippable frame: magic 0x184D2A50, 4-byte little-endian size, payload */
    static const unsigned char skippable[] = {0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 'x', 'y', 'z'};
    struct blob b = {0};
    struct agg_buf out;
    struct agg_err err = {0};

    (void)state;
    zstd_frame(&b, "one ", 4);
    blob_add(&b, skippable, sizeof(skippable));
    zstd_frame(&b, "two ", 4);
    zstd_frame(&b, "three", 5);
    agg_buf_init(&out);
    assert_int_equal(ing_decompress(ING_ENCODING_ZSTD, (const char *)b.p, b.len, 100, &out, &err),
                     AGG_OK);
    assert_string_equal(out.data, "one two three");
    /* the bound counts all frames together */
    out.len = 0;
    assert_int_equal(ing_decompress(ING_ENCODING_ZSTD, (const char *)b.p, b.len, 10, &out, &err),
                     AGG_EFULL);
    agg_buf_clear(&out);
    free(b.p);
}

static double seconds_since(int64_t t0_us)
{
    return (double)(agg_time_mono_us() - t0_us) / 1e6;
}

/* A gzip body that inflates to <mib> MiB of zeros, built cheaply: after a full
 * flush a deflate block stands alone, so one compressed MiB of zeros can be repeated.
 * The trailer is left off; the bound must stop decoding long before it. */
static void gzip_bomb(struct blob *b, size_t mib)
{
    static const unsigned char zeros[1 << 20];
    unsigned char *buf = malloc(MIB);
    z_stream zs = {0};
    size_t first;

    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)(uintptr_t)zeros;
    zs.avail_in = sizeof(zeros);
    zs.next_out = buf;
    zs.avail_out = MIB;
    assert_int_equal(deflate(&zs, Z_FULL_FLUSH), Z_OK);
    first = MIB - zs.avail_out;
    blob_add(b, buf, first); /* gzip header + one MiB */
    zs.next_in = (Bytef *)(uintptr_t)zeros;
    zs.avail_in = sizeof(zeros);
    zs.next_out = buf;
    zs.avail_out = MIB;
    assert_int_equal(deflate(&zs, Z_FULL_FLUSH), Z_OK);
    for (size_t i = 1; i < mib; i++)
        blob_add(b, buf, MIB - zs.avail_out);
    deflateEnd(&zs);
    free(buf);
}

static void test_decompress_gzip_bomb_stops_at_bound(void **state)
{
    struct blob b = {0};
    struct agg_buf out;
    struct agg_err err = {0};
    int64_t t0;

    (void)state;
    gzip_bomb(&b, 1024); /* 1 GiB of zeros */
    assert_true(b.len < 4 * MIB);
    agg_buf_init(&out);
    t0 = agg_time_mono_us();
    assert_int_equal(
        ing_decompress(ING_ENCODING_GZIP, (const char *)b.p, b.len, 10 * MIB, &out, &err),
        AGG_EFULL);
    assert_true(seconds_since(t0) < 2.0);
    assert_non_null(strstr(err.msg, "more than"));
    assert_int_equal(out.len, 0);
    /* bounded: max_out plus one slice, doubled by agg_buf growth */
    assert_true(out.cap <= 2 * (11 * MIB + 1));
    agg_buf_clear(&out);

    /* below the bound the same stream decodes, and would go on to its (absent) end */
    agg_buf_init(&out);
    assert_int_equal(
        ing_decompress(ING_ENCODING_GZIP, (const char *)b.p, 5000, 64 * MIB, &out, &err),
        AGG_EINVAL);
    assert_non_null(strstr(err.msg, "truncated"));
    agg_buf_clear(&out);
    free(b.p);
}

/* 1 GiB of zeros as one zstd frame; <declare>: the frame header says how big. */
static void zstd_bomb(struct blob *b, bool declare)
{
    static const char zeros[1 << 20];
    ZSTD_CCtx *c = ZSTD_createCCtx();
    unsigned char buf[65536];

    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1);
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, declare ? 1 : 0);
    if (declare)
        ZSTD_CCtx_setPledgedSrcSize(c, 1024 * MIB);
    for (int i = 0; i < 1024; i++) {
        ZSTD_inBuffer ib = {zeros, sizeof(zeros), 0};
        ZSTD_EndDirective end = i == 1023 ? ZSTD_e_end : ZSTD_e_continue;
        size_t left;

        do {
            ZSTD_outBuffer ob = {buf, sizeof(buf), 0};

            left = ZSTD_compressStream2(c, &ob, &ib, end);
            assert_false(ZSTD_isError(left));
            blob_add(b, buf, ob.pos);
        } while (ib.pos < ib.size || (end == ZSTD_e_end && left != 0));
    }
    ZSTD_freeCCtx(c);
}

static void test_decompress_zstd_declared_bomb_fails_before_inflating(void **state)
{
    struct blob b = {0};
    struct agg_buf out;
    struct agg_err err = {0};

    (void)state;
    zstd_bomb(&b, true);
    agg_buf_init(&out);
    assert_int_equal(
        ing_decompress(ING_ENCODING_ZSTD, (const char *)b.p, b.len, 10 * MIB, &out, &err),
        AGG_EFULL);
    assert_non_null(strstr(err.msg, "declares"));
    assert_null(out.data); /* nothing was even allocated */
    agg_buf_clear(&out);
    free(b.p);
}

static void test_decompress_zstd_undeclared_bomb_stops_at_bound(void **state)
{
    struct blob b = {0};
    struct agg_buf out;
    struct agg_err err = {0};
    int64_t t0;

    (void)state;
    zstd_bomb(&b, false);
    agg_buf_init(&out);
    t0 = agg_time_mono_us();
    assert_int_equal(
        ing_decompress(ING_ENCODING_ZSTD, (const char *)b.p, b.len, 10 * MIB, &out, &err),
        AGG_EFULL);
    assert_true(seconds_since(t0) < 2.0);
    assert_int_equal(out.len, 0);
    assert_true(out.cap <= 2 * (11 * MIB + 1));
    agg_buf_clear(&out);
    free(b.p);
}

static void test_decompress_rejects_truncated_and_corrupt_gzip(void **state)
{
    char *text = sample(50000);
    struct blob b = {0};
    struct agg_buf out;
    struct agg_err err = {0};
    unsigned char *bad;

    (void)state;
    gzip_member(&b, text, 50000);
    agg_buf_init(&out);
    /* truncated: inside the data, and just before the trailer's last byte */
    assert_int_equal(
        ing_decompress(ING_ENCODING_GZIP, (const char *)b.p, b.len / 2, MIB, &out, &err),
        AGG_EINVAL);
    assert_int_equal(out.len, 0);
    assert_int_equal(
        ing_decompress(ING_ENCODING_GZIP, (const char *)b.p, b.len - 1, MIB, &out, &err),
        AGG_EINVAL);
    assert_int_equal(ing_decompress(ING_ENCODING_GZIP, (const char *)b.p, 5, MIB, &out, &err),
                     AGG_EINVAL);
    /* corrupt: a bad CRC, a bad header */
    bad = malloc(b.len + 4);
    memcpy(bad, b.p, b.len);
    bad[b.len - 6] ^= 0x55;
    assert_int_equal(ing_decompress(ING_ENCODING_GZIP, (const char *)bad, b.len, MIB, &out, &err),
                     AGG_EINVAL);
    memcpy(bad, b.p, b.len);
    bad[0] = 'x';
    assert_int_equal(ing_decompress(ING_ENCODING_GZIP, (const char *)bad, b.len, MIB, &out, &err),
                     AGG_EINVAL);
    /* trailing garbage, zero padding included */
    memcpy(bad, b.p, b.len);
    memcpy(bad + b.len, "\0\0\0\0", 4);
    assert_int_equal(
        ing_decompress(ING_ENCODING_GZIP, (const char *)bad, b.len + 4, MIB, &out, &err),
        AGG_EINVAL);
    assert_non_null(strstr(err.msg, "trailing garbage"));
    assert_int_equal(out.len, 0);
    /* not gzip at all */
    assert_int_equal(ing_decompress(ING_ENCODING_GZIP, "{\"a\":1}", 7, MIB, &out, &err),
                     AGG_EINVAL);
    agg_buf_clear(&out);
    free(bad);
    free(b.p);
    free(text);
}

static void test_decompress_rejects_truncated_and_corrupt_zstd(void **state)
{
    char *text = sample(50000);
    struct blob b = {0};
    struct agg_buf out;
    struct agg_err err = {0};
    unsigned char *bad;

    (void)state;
    zstd_frame(&b, text, 50000);
    agg_buf_init(&out);
    assert_int_equal(
        ing_decompress(ING_ENCODING_ZSTD, (const char *)b.p, b.len / 2, MIB, &out, &err),
        AGG_EINVAL);
    assert_int_equal(out.len, 0);
    assert_int_equal(ing_decompress(ING_ENCODING_ZSTD, (const char *)b.p, 3, MIB, &out, &err),
                     AGG_EINVAL);
    bad = malloc(b.len + 3);
    memcpy(bad, b.p, b.len);
    for (size_t i = 20; i < 40; i++)
        bad[i] ^= 0xA5;
    assert_int_equal(ing_decompress(ING_ENCODING_ZSTD, (const char *)bad, b.len, MIB, &out, &err),
                     AGG_EINVAL);
    memcpy(bad, b.p, b.len);
    memcpy(bad + b.len, "abc", 3);
    assert_int_equal(
        ing_decompress(ING_ENCODING_ZSTD, (const char *)bad, b.len + 3, MIB, &out, &err),
        AGG_EINVAL);
    assert_int_equal(ing_decompress(ING_ENCODING_ZSTD, "{\"a\":1}", 7, MIB, &out, &err),
                     AGG_EINVAL);
    assert_int_equal(out.len, 0);
    agg_buf_clear(&out);
    free(bad);
    free(b.p);
    free(text);
}

static void sweep(enum ing_encoding enc)
{
    char *text = sample(200000);
    struct blob b = {0};
    int rc = AGG_ENOMEM;

    if (enc == ING_ENCODING_GZIP)
        gzip_member(&b, text, 200000);
    else
        zstd_frame(&b, text, 200000);
    for (long n = 0; rc != AGG_OK; n++) {
        struct agg_buf out;
        struct agg_err err = {0};

        assert_true(n < 1000);
        agg_buf_init(&out);
        assert_int_equal(agg_buf_append(&out, "x", 1), AGG_OK);
        agg_alloc_fail_after(n);
        rc = ing_decompress(enc, (const char *)b.p, b.len, MIB, &out, &err);
        agg_alloc_fail_after(-1);
        if (rc == AGG_OK) {
            assert_int_equal(out.len, 200001);
            assert_memory_equal(out.data + 1, text, 200000);
        } else {
            assert_int_equal(rc, AGG_ENOMEM);
            assert_int_equal(out.len, 1);
        }
        agg_buf_clear(&out);
    }
    free(b.p);
    free(text);
}

static void test_decompress_survives_allocation_failure(void **state)
{
    (void)state;
    sweep(ING_ENCODING_GZIP);
    sweep(ING_ENCODING_ZSTD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decompress_parses_content_encoding),
        cmocka_unit_test(test_decompress_gzip_round_trips),
        cmocka_unit_test(test_decompress_zstd_round_trips),
        cmocka_unit_test(test_decompress_identity_copies_within_bound),
        cmocka_unit_test(test_decompress_empty_input_gives_empty_output),
        cmocka_unit_test(test_decompress_gzip_concatenated_members),
        cmocka_unit_test(test_decompress_zstd_multiple_frames),
        cmocka_unit_test(test_decompress_gzip_bomb_stops_at_bound),
        cmocka_unit_test(test_decompress_zstd_declared_bomb_fails_before_inflating),
        cmocka_unit_test(test_decompress_zstd_undeclared_bomb_stops_at_bound),
        cmocka_unit_test(test_decompress_rejects_truncated_and_corrupt_gzip),
        cmocka_unit_test(test_decompress_rejects_truncated_and_corrupt_zstd),
        cmocka_unit_test(test_decompress_survives_allocation_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
