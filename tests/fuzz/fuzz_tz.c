/*
 * tests/fuzz/fuzz_tz.c — libFuzzer target for core/tz.c.
 *
 * Parses the input (an exact-size buffer) as a TZif file; a zone that loads is asked
 * for offsets and conversions across the whole int64 range, which must stay within
 * RFC 8536's offsets and never overflow (UBSan). Seeds: files of /usr/share/zoneinfo.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/time.h"
#include "core/tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what, int line)
{
    if (!ok) {
        fprintf(stderr, "fuzz_tz: check failed: %s (line %d)\n", what, line);
        abort();
    }
}

#define CHECK(cond) check((cond) != 0, #cond, __LINE__)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t instants[] = {
        INT64_MIN, -INT64_C(62135596800), -INT64_C(2208988800), -1, 0, 1,
        INT64_C(1711846800), /* 2024-03-31 01:00Z */
        INT64_C(2147483647), INT64_C(4102444800), INT64_C(253402300799), INT64_MAX,
    };
    struct agg_err err = {0};
    unsigned char *exact = malloc(size > 0 ? size : 1);
    struct agg_tz *tz;

    CHECK(exact != NULL);
    for (size_t i = 0; i < size; i++)
        exact[i] = data[i];
    tz = agg_tz_parse("fuzz", exact, size, &err);
    if (tz == NULL) {
        CHECK(err.msg[0] != '\0');
        free(exact);
        return 0;
    }
    for (size_t i = 0; i < sizeof(instants) / sizeof(instants[0]); i++) {
        int32_t off = agg_tz_offset_at(tz, instants[i]);
        int64_t us = instants[i] > INT64_MIN / AGG_US_PER_SEC &&
                             instants[i] < INT64_MAX / AGG_US_PER_SEC
                         ? instants[i] * AGG_US_PER_SEC
                         : instants[i];
        int64_t local = agg_tz_utc_to_local(tz, us), back = agg_tz_local_to_utc(tz, local);

        CHECK(off >= -89999 && off <= 93599);
        /* a conversion moves an instant by one offset at most */
        CHECK(back - local >= -INT64_C(93599) * AGG_US_PER_SEC &&
              back - local <= INT64_C(89999) * AGG_US_PER_SEC);
    }
    agg_tz_free(tz);
    free(exact);
    return 0;
}
