/*
 * tests/fuzz/fuzz_spool.c — libFuzzer target for the recovery of store/spool.c.
 *
 * Writes the input (after one mode byte) as a segment file into a spool directory,
 * opens the spool and reads every record. The first mode bit chooses whether the
 * fuzzed segment is the newest (its torn tail is cut) or an older one (damage is
 * passed over; an empty newest segment follows, at <size> or before it so that the
 * fuzzed one overlaps it); the second bit names the fuzzed segment at 0 or 0x1000.
 * Checks: opening never fails on content; records come in order, each next - pos ==
 * 12 + len; every byte is accounted for (intact records + skipped + cut == size);
 * a second open finds the same records, the same damage and nothing left to cut.
 * Seeds: a spool segment written by the unit tests (tests/test_st_spool.c keeps
 * none; any file works, the fuzzer finds the record marker \xABSP1 quickly).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "store/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_spool: check failed: %s (line %d)\n", #cond, __LINE__);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct seen {
    uint64_t records, bytes, last_next;
};

static int on_record(void *arg, uint64_t pos, uint64_t next, const void *rec, size_t len)
{
    struct seen *s = arg;
    const volatile unsigned char *p = rec;
    unsigned char sum = 0;

    CHECK(next - pos == 12 + len);
    CHECK(s->records == 0 || pos >= s->last_next);
    for (size_t i = 0; i < len; i++) /* every byte readable: ASan sees a short slice */
        sum = (unsigned char)(sum + p[i]);
    (void)sum;
    s->records++;
    s->bytes += next - pos;
    s->last_next = next;
    return 0;
}

static void clear_segments(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[256];

        if (strstr(e->d_name, ".seg") == NULL)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static void write_file(const char *dir, uint64_t base, const uint8_t *data, size_t size)
{
    char path[256];
    int fd;

    snprintf(path, sizeof(path), "%s/%016llx.seg", dir, (unsigned long long)base);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct event_base *base;
    static char dir[64];
    struct st_spool_opts opts = {.max_bytes = INT64_C(1) << 40, .fsync = AGG_SPOOL_FSYNC_NEVER};
    struct st_spool_report rep, again;
    struct agg_err err = {0};
    struct seen seen = {0};
    struct st_spool *s;
    uint64_t at, newest = 0;
    bool older;

    if (base == NULL) {
        evthread_use_pthreads();
        base = event_base_new();
        snprintf(dir, sizeof(dir), "%s/aggd-fuzz-spool-XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        CHECK(base != NULL && mkdtemp(dir) != NULL);
    }
    if (size < 1)
        return 0;
    older = (data[0] & 1) != 0;
    at = (data[0] & 2) != 0 ? 0x1000 : 0;
    data++;
    size--;
    opts.dir = dir;
    clear_segments(dir);
    write_file(dir, at, data, size);
    if (older) { /* an empty newest right after the fuzzed one, or overlapping it */
        newest = at + (size == 0 ? 1 : (data[0] & 1) != 0 ? size : size / 2 + 1);
        write_file(dir, newest, data, 0);
    }

    s = st_spool_open(base, &opts, &rep, &err);
    if (s == NULL)
        fprintf(stderr, "fuzz_spool: %s\n", err.msg);
    CHECK(s != NULL);
    CHECK(st_spool_read(s, 0, on_record, &seen, &err) == AGG_OK);
    CHECK(seen.records == rep.records);
    CHECK(seen.bytes + rep.skipped_bytes + rep.cut_bytes == size);
    CHECK(older ? rep.cut_bytes == 0 : rep.damaged == 0 || rep.skipped_bytes > 0);
    CHECK(rep.end == (older ? newest : at + size - rep.cut_bytes));
    CHECK(rep.start == at);
    CHECK(st_spool_check(s, &err) == AGG_OK);
    st_spool_free(s);

    s = st_spool_open(base, &opts, &again, &err);
    CHECK(s != NULL);
    CHECK(again.records == rep.records);
    CHECK(again.cut_bytes == 0);
    CHECK(again.skipped_bytes == rep.skipped_bytes);
    CHECK(again.damaged == rep.damaged);
    CHECK(again.end == rep.end);
    st_spool_free(s);
    return 0;
}
