/*
 * tests/support/conformance.h — the conformance vectors as yajl trees, for C tests.
 *
 * Traps: yajl_tree keeps strings NUL-terminated without a length, so lines are read
 *        with "\u0000" carried as U+10FFFF (absent from the corpus) and conf_str()
 *        turns it back into a NUL octet.
 */
#ifndef AGGD_TESTS_SUPPORT_CONFORMANCE_H
#define AGGD_TESTS_SUPPORT_CONFORMANCE_H

#include <stddef.h>

#include <yajl/yajl_tree.h>

/* Parses one JSONL line; fails the test on bad JSON. Caller frees: yajl_tree_free(). */
yajl_val conf_parse_line(const char *line);

/* The bytes of string <v> with NULs restored, length in <len>. Caller frees. */
char *conf_str(yajl_val v, size_t *len);

/* Decodes the hex string <hex>. Caller frees. */
char *conf_unhex(const char *hex, size_t *len);

/* Member <name> of object <obj>, or NULL. */
yajl_val conf_key(yajl_val obj, const char *name);

/* Calls <fn> for every case of $AGGD_SOURCE_DIR/tests/data/conformance/<file>;
 * returns how many. */
int conf_for_each_case(const char *file, void (*fn)(yajl_val c, void *arg), void *arg);

#endif
