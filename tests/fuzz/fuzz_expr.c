/*
 * tests/fuzz/fuzz_expr.c — libFuzzer target for rules/expr.c.
 *
 * Input: the expression text (cut at the first NUL). It must compile or fail with a
 * positioned message; when it compiles, its canonical text must compile back to an
 * equal expression, or, when canonical spelling made it longer than 100 characters,
 * fail for its length only. Matching a record built from the input must not crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/record.h"
#include "rules/expr.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what, int line)
{
    if (!ok) {
        fprintf(stderr, "fuzz_expr: check failed: %s (line %d)\n", what, line);
        abort();
    }
}

#define CHECK(cond) check((cond) != 0, #cond, __LINE__)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), canon[RL_EXPR_FORMAT_MAX], prefix[32];
    struct rl_expr e, back;
    struct agg_err err = {0};
    struct agg_record rec;
    size_t pos = SIZE_MAX, len;
    double v;

    CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    len = strlen(text);
    if (rl_expr_compile(text, &e, &pos, &err) != AGG_OK) {
        CHECK(err.code == AGG_EINVAL);
        CHECK(pos <= len);
        snprintf(prefix, sizeof(prefix), "at %zu: ", pos);
        CHECK(strncmp(err.msg, prefix, strlen(prefix)) == 0);
        free(text);
        return 0;
    }
    rl_expr_format(&e, canon, sizeof(canon));
    CHECK(strlen(canon) < sizeof(canon) - 1);
    if (strlen(canon) <= RL_EXPR_MAX_CHARS) {
        CHECK(rl_expr_compile(canon, &back, NULL, &err) == AGG_OK);
        CHECK(rl_expr_equal(&e, &back));
    } else {
        CHECK(rl_expr_compile(canon, &back, &pos, &err) == AGG_EINVAL);
        CHECK(pos == RL_EXPR_MAX_CHARS && strstr(err.msg, "longer than") != NULL);
    }

    /* a record whose text fields are the input itself */
    agg_record_init(&rec);
    rec.has_level = size > 0;
    rec.level = (enum agg_level)(size % 5);
    for (int f = 0; f < AGG_F_STR_COUNT; f++) {
        rec.str[f].p = (const char *)data;
        rec.str[f].len = size / (size_t)(f + 1);
    }
    rec.has_duration_ms = true;
    rec.duration_ms = (int32_t)size;
    (void)rl_expr_match(&e, &rec);
    CHECK(rl_expr_value_of(&e, &rec, &v) == (e.field == AGG_F_DURATION_MS));
    free(text);
    return 0;
}
