/*
 * tests/fuzz/fuzz_csv.c — libFuzzer target for ingest/csv.c.
 *
 * Reads every record of the input (an exact-size buffer: any read past it is an ASan
 * report) and checks that each call makes progress within the input and that every
 * field lies inside the reader's text, NUL-terminated.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what, int line)
{
    if (!ok) {
        fprintf(stderr, "fuzz_csv: check failed: %s (line %d)\n", what, line);
        abort();
    }
}

#define CHECK(cond) check((cond) != 0, #cond, __LINE__)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size > 0 ? size : 1);
    struct ing_csv c;
    size_t at = 0;

    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    ing_csv_init(&c);
    while (at < size) {
        struct agg_err err = {0};
        size_t used = 0;
        int rc = ing_csv_read(&c, copy + at, size - at, &used, &err);

        CHECK(rc == AGG_OK || rc == AGG_EINVAL);
        CHECK(used > 0 && used <= size - at);
        if (rc == AGG_OK) {
            CHECK(c.nfields >= 1 && c.nfields <= ING_CSV_MAX_FIELDS);
            for (size_t i = 0; i < c.nfields; i++) {
                size_t len;
                const char *f = ing_csv_field(&c, i, &len);

                CHECK(f >= c.text.data && f + len < c.text.data + c.text.len);
                CHECK(f[len] == '\0');
            }
        } else {
            CHECK(err.msg[0] != '\0');
        }
        at += used;
    }
    ing_csv_clear(&c);
    free(copy);
    return 0;
}
