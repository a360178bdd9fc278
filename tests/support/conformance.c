/*
 * tests/support/conformance.c — reading the conformance vectors (JSONL) in C tests.
 *
 * Place: linked into every unit test (tests/CMakeLists.txt); used by the framing
 *        and syslog tests.
 * Ownership: returned strings and trees are the caller's (free(), yajl_tree_free()).
 */
#include "tests/support/conformance.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* yajl_tree keeps strings NUL-terminated without a length, so a JSON "\u0000" would
 * cut them short. Lines are rewritten to carry U+10FFFF (absent from the corpus) in
 * its place, and conf_str() turns that back into a NUL octet. */
static const char nul_mark[] = "\xF4\x8F\xBF\xBF";

yajl_val conf_parse_line(const char *line)
{
    size_t n = strlen(line), o = 0;
    char *buf = malloc(n * 3 + 1), errbuf[256];
    yajl_val v;

    assert_non_null(buf);
    for (size_t i = 0; i < n; i++) {
        if (line[i] == '\\' && i + 1 < n) {
            if (strncmp(line + i + 1, "u0000", 5) == 0) {
                memcpy(buf + o, "\\udbff\\udfff", 12);
                o += 12;
                i += 5;
                continue;
            }
            buf[o++] = line[i++];
        }
        buf[o++] = line[i];
    }
    buf[o] = '\0';
    v = yajl_tree_parse(buf, errbuf, sizeof(errbuf));
    if (v == NULL)
        fail_msg("bad JSON line: %s", errbuf);
    free(buf);
    return v;
}

/* The bytes of string <v> (NUL marks turned back into NULs): caller frees. */
char *conf_str(yajl_val v, size_t *len)
{
    const char *s = YAJL_GET_STRING(v);
    size_t n = strlen(s), o = 0;
    char *out = malloc(n + 1);

    assert_non_null(out);
    for (size_t i = 0; i < n;) {
        if (strncmp(s + i, nul_mark, 4) == 0) {
            out[o++] = '\0';
            i += 4;
        } else {
            out[o++] = s[i++];
        }
    }
    out[o] = '\0';
    *len = o;
    return out;
}

char *conf_unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2;
    char *out = malloc(n + 1);

    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        unsigned v;

        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (char)v;
    }
    out[n] = '\0';
    *len = n;
    return out;
}

yajl_val conf_key(yajl_val obj, const char *name)
{
    const char *path[] = {name, NULL};

    return yajl_tree_get(obj, path, yajl_t_any);
}

/* Calls <fn> for every line of tests/data/conformance/<file>. */
int conf_for_each_case(const char *file, void (*fn)(yajl_val c, void *arg), void *arg)
{
    const char *src = getenv("AGGD_SOURCE_DIR");
    char path[1024], *line = NULL;
    size_t cap = 0;
    int n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/tests/data/conformance/%s", src != NULL ? src : ".", file);
    f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open %s (set AGGD_SOURCE_DIR)", path);
    while (getline(&line, &cap, f) > 0) {
        yajl_val c = conf_parse_line(line);

        fn(c, arg);
        yajl_tree_free(c);
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

