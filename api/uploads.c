/*
 * api/uploads.c — the path rule of uploaded files (see api/uploads.h).
 *
 * Threads: pure.
 */
#include "api/uploads.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

bool api_upload_path(const char *dir, int id, const char *suffix, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/%d%s", dir, id, suffix);

    return n > 0 && (size_t)n < cap;
}

int api_upload_id_of(const char *name)
{
    size_t digits = strspn(name, "0123456789");
    long long id = 0;

    if (digits == 0 || digits > 10 || name[0] == '0' ||
        (strcmp(name + digits, API_UPLOAD_PART) != 0 &&
         strcmp(name + digits, API_UPLOAD_DATA) != 0))
        return 0;
    for (size_t i = 0; i < digits; i++)
        id = id * 10 + (name[i] - '0');
    return id <= INT_MAX ? (int)id : 0;
}
