/*
 * tests/test_st_spool.c — the disk spool: round trips, positions, sync per fsync mode,
 * release, max_bytes, recovery from torn tails and damaged records, disk errors
 * (a tiny tmpfs when mounting works, the st_spool_inject_error hook always), and an
 * allocation-failure sweep. Temp dirs under /tmp; no network, no database.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "core/alloc.h"
#include "core/time.h"
#include "store/spool.h"

#define NREC_MAX 4096
#define HDR      12

struct fixture {
    char dir[64];
    struct event_base *base;
};

/* What the test appended: record i has payload make_payload(i). */
struct appended {
    int n;
    uint64_t pos[NREC_MAX], next[NREC_MAX];
};

/* What st_spool_read handed out. */
struct got {
    int n;
    int idx[NREC_MAX];
    uint64_t pos[NREC_MAX], next[NREC_MAX];
    int stop_after; /* return 7 after this many records; 0: never */
};

static int64_t now_ms(void)
{
    return agg_time_mono_us() / 1000;
}

static size_t payload_len(int i)
{
    return 4 + (size_t)(i * 37) % 297;
}

/* Payload of record <i>: its index (4 bytes LE), then a pattern. */
static size_t make_payload(int i, unsigned char *buf)
{
    size_t len = payload_len(i);

    buf[0] = (unsigned char)i;
    buf[1] = (unsigned char)(i >> 8);
    buf[2] = (unsigned char)(i >> 16);
    buf[3] = (unsigned char)(i >> 24);
    for (size_t j = 4; j < len; j++)
        buf[j] = (unsigned char)(i * 7 + (int)j);
    return len;
}

static int collect(void *arg, uint64_t pos, uint64_t next, const void *rec, size_t len)
{
    struct got *g = arg;
    const unsigned char *p = rec;
    unsigned char want[512];
    int i;

    assert_true(len >= 4);
    i = p[0] | p[1] << 8 | p[2] << 16 | p[3] << 24;
    assert_int_equal(len, make_payload(i, want));
    assert_memory_equal(rec, want, len);
    assert_int_equal(next - pos, HDR + len);
    assert_true(g->n < NREC_MAX);
    if (g->n > 0)
        assert_true(pos >= g->next[g->n - 1]); /* in order, never overlapping */
    g->idx[g->n] = i;
    g->pos[g->n] = pos;
    g->next[g->n] = next;
    g->n++;
    return g->stop_after > 0 && g->n == g->stop_after ? 7 : 0;
}

/* Like collect, for records of any content. */
static int collect_any(void *arg, uint64_t pos, uint64_t next, const void *rec, size_t len)
{
    struct got *g = arg;

    (void)rec;
    assert_int_equal(next - pos, HDR + len);
    assert_true(g->n < NREC_MAX);
    if (g->n > 0)
        assert_true(pos >= g->next[g->n - 1]);
    g->idx[g->n] = -1;
    g->pos[g->n] = pos;
    g->next[g->n] = next;
    g->n++;
    return 0;
}

static void check(struct st_spool *s)
{
    struct agg_err err = {0};

    if (st_spool_check(s, &err) != AGG_OK)
        fail_msg("st_spool_check: %s", err.msg);
}

static void append_range(struct st_spool *s, struct appended *a, int first, int count)
{
    unsigned char buf[512];

    for (int i = first; i < first + count; i++) {
        size_t len = make_payload(i, buf);

        assert_true(i < NREC_MAX);
        assert_int_equal(st_spool_append(s, buf, len, &a->pos[i], &a->next[i]), AGG_OK);
        assert_int_equal(a->next[i] - a->pos[i], HDR + len);
        if (i > 0 && i == a->n)
            assert_int_equal(a->pos[i], a->next[i - 1]); /* contiguous */
        if (i == a->n)
            a->n++;
    }
    check(s);
}

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

/* Runs the loop until *<counter> reaches <want> or <ms> pass. */
static void run_until(struct event_base *base, const int *counter, int want, int ms)
{
    int64_t deadline = now_ms() + ms;

    while (*counter < want && now_ms() < deadline) {
        struct timeval tv = {0, 2000};

        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

static void sync_and_wait(struct event_base *base, struct st_spool *s)
{
    int n = 0;

    assert_int_equal(st_spool_sync(s, count_cb, &n), AGG_OK);
    run_until(base, &n, 1, 10000);
    assert_int_equal(n, 1);
}

static struct st_spool_opts opts_for(const char *dir, int fsync, int64_t segment_bytes)
{
    struct st_spool_opts o = {.dir = dir,
                              .max_bytes = INT64_C(64) << 20,
                              .fsync = fsync,
                              .segment_bytes = segment_bytes,
                              .group_ms = 2};
    return o;
}

static struct st_spool *open_ok(struct fixture *f, const struct st_spool_opts *o,
                                struct st_spool_report *rep)
{
    struct agg_err err = {0};
    struct st_spool *s = st_spool_open(f->base, o, rep, &err);

    if (s == NULL)
        fail_msg("st_spool_open: %s", err.msg);
    check(s);
    return s;
}

static void read_all(struct st_spool *s, uint64_t from, struct got *g)
{
    struct agg_err err = {0};

    g->n = 0;
    assert_int_equal(st_spool_read(s, from, collect, g, &err), AGG_OK);
}

/* Segment files of <dir>, sorted by base: bases[], sizes[]; returns how many. */
static int list_segs(const char *dir, uint64_t *bases, off_t *sizes, int max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char path[512];
        struct stat st;

        if (strlen(e->d_name) != 20 || strcmp(e->d_name + 16, ".seg") != 0)
            continue;
        assert_true(n < max);
        bases[n] = strtoull(e->d_name, NULL, 16);
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        assert_int_equal(stat(path, &st), 0);
        sizes[n] = st.st_size;
        n++;
    }
    closedir(d);
    for (int i = 1; i < n; i++) { /* insertion sort */
        for (int j = i; j > 0 && bases[j] < bases[j - 1]; j--) {
            uint64_t b = bases[j];
            off_t z = sizes[j];

            bases[j] = bases[j - 1];
            sizes[j] = sizes[j - 1];
            bases[j - 1] = b;
            sizes[j - 1] = z;
        }
    }
    return n;
}

static void seg_path(char *out, size_t size, const char *dir, uint64_t base)
{
    snprintf(out, size, "%s/%016llx.seg", dir, (unsigned long long)base);
}

/* Base of the segment holding position <pos>. */
static uint64_t seg_of(const char *dir, uint64_t pos)
{
    uint64_t bases[256], found = 0;
    off_t sizes[256];
    int n = list_segs(dir, bases, sizes, 256);

    for (int i = 0; i < n; i++) {
        if (bases[i] <= pos)
            found = bases[i];
    }
    return found;
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char b;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x20;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static void append_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0640);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[512];
        struct stat st;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/aggd-spool-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    f->base = event_base_new();
    if (f->base == NULL)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char mnt[128];

    snprintf(mnt, sizeof(mnt), "%s/mnt", f->dir);
    umount2(mnt, MNT_DETACH); /* left mounted by a failed disk-full test */
    remove_tree(f->dir);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_spool_round_trips_across_segments_and_reopens(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_NEVER, 2000);
    static struct appended a;
    static struct got g;
    struct st_spool_report rep;
    struct agg_err err = {0};
    uint64_t bases[256];
    off_t sizes[256];
    struct st_spool *s = open_ok(f, &o, &rep);
    int nsegs;

    memset(&a, 0, sizeof(a));
    assert_int_equal(rep.start, 0);
    assert_int_equal(rep.end, 0);
    assert_int_equal(rep.records, 0);
    append_range(s, &a, 0, 300);
    assert_int_equal(a.pos[0], 0);
    sync_and_wait(f->base, s);
    check(s);
    assert_true(st_spool_segments(s) > 5);
    st_spool_free(s);

    /* every segment but the newest stops within one record of segment_bytes */
    nsegs = list_segs(f->dir, bases, sizes, 256);
    assert_true(nsegs > 5);
    for (int i = 0; i + 1 < nsegs; i++) {
        assert_int_equal(bases[i] + (uint64_t)sizes[i], bases[i + 1]); /* contiguous */
        assert_true(sizes[i] >= 2000 && sizes[i] < 2000 + HDR + 300);
    }

    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.records, 300);
    assert_int_equal(rep.segments, nsegs);
    assert_int_equal(rep.damaged, 0);
    assert_int_equal(rep.cut_bytes, 0);
    assert_int_equal(rep.skipped_bytes, 0);
    assert_string_equal(rep.detail, "");
    assert_int_equal(rep.start, 0);
    assert_int_equal(rep.end, a.next[299]);
    assert_int_equal(st_spool_bytes(s), a.next[299]);

    read_all(s, 0, &g);
    assert_int_equal(g.n, 300);
    for (int i = 0; i < 300; i++) {
        assert_int_equal(g.idx[i], i);
        assert_int_equal(g.pos[i], a.pos[i]);
        assert_int_equal(g.next[i], a.next[i]);
    }
    read_all(s, a.pos[150], &g); /* from a checkpoint */
    assert_int_equal(g.n, 150);
    assert_int_equal(g.idx[0], 150);
    read_all(s, a.pos[150] + 1, &g); /* from inside a record: the next one */
    assert_int_equal(g.n, 149);
    assert_int_equal(g.idx[0], 151);
    read_all(s, a.next[299], &g);
    assert_int_equal(g.n, 0);
    g.n = 0;
    g.stop_after = 10;
    assert_int_equal(st_spool_read(s, 0, collect, &g, &err), 7);
    assert_int_equal(g.n, 10);
    g.stop_after = 0;

    append_range(s, &a, 300, 10); /* appends go on where the stream ended */
    assert_int_equal(a.pos[300], a.next[299]);
    sync_and_wait(f->base, s);
    st_spool_free(s);
    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.records, 310);
    read_all(s, 0, &g);
    assert_int_equal(g.n, 310);
    assert_int_equal(g.idx[309], 309);
    st_spool_free(s);
}

static void record_order(void *arg)
{
    int *order = arg;

    order[order[0] + 1] = order[0] + 100;
    order[0]++;
}

static void test_spool_sync_fires_once_durable_in_every_fsync_mode(void **state)
{
    struct fixture *f = *state;
    static const int modes[] = {AGG_SPOOL_FSYNC_ALWAYS, AGG_SPOOL_FSYNC_BATCH,
                                AGG_SPOOL_FSYNC_NEVER};

    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        static struct appended a;
        static struct got g;
        struct st_spool_report rep;
        struct st_spool_opts o;
        struct st_spool *s;
        char dir[128];
        int fired = 0, order[8] = {0}, at_free = 0;

        memset(&a, 0, sizeof(a));
        snprintf(dir, sizeof(dir), "%s/mode%d", f->dir, modes[m]);
        o = opts_for(dir, modes[m], 0);
        s = open_ok(f, &o, &rep);
        append_range(s, &a, 0, 100);
        assert_int_equal(st_spool_sync(s, count_cb, &fired), AGG_OK);
        assert_int_equal(fired, 0); /* still in the loop's buffer: not durable yet */
        check(s);
        run_until(f->base, &fired, 1, 10000);
        assert_int_equal(fired, 1);
        /* nothing new: durable already, called before returning */
        assert_int_equal(st_spool_sync(s, count_cb, &fired), AGG_OK);
        assert_int_equal(fired, 2);
        /* several waiters fire in order, each once */
        append_range(s, &a, 100, 1);
        assert_int_equal(st_spool_sync(s, record_order, order), AGG_OK);
        append_range(s, &a, 101, 1);
        assert_int_equal(st_spool_sync(s, record_order, order), AGG_OK);
        assert_int_equal(st_spool_sync(s, record_order, order), AGG_OK);
        check(s);
        run_until(f->base, &order[0], 3, 10000);
        assert_int_equal(order[0], 3);
        assert_int_equal(order[1], 100);
        assert_int_equal(order[3], 102);
        run_until(f->base, &fired, 3, 20); /* nothing else fires */
        assert_int_equal(fired, 2);
        /* many waiters at once: the ring grows while it wraps */
        for (int k = 0; k < 40; k++) {
            if (k % 3 == 0)
                append_range(s, &a, a.n, 1);
            assert_int_equal(st_spool_sync(s, count_cb, &fired), AGG_OK);
            if (k == 10)
                run_until(f->base, &fired, 2 + 11, 10000);
        }
        check(s);
        run_until(f->base, &fired, 2 + 40, 10000);
        assert_int_equal(fired, 2 + 40);
        /* a sync still waiting at free is run by free, after the final write */
        append_range(s, &a, a.n, 1);
        assert_int_equal(st_spool_sync(s, count_cb, &at_free), AGG_OK);
        st_spool_free(s);
        assert_int_equal(at_free, 1);

        s = open_ok(f, &o, &rep);
        assert_int_equal(rep.records, (uint64_t)a.n);
        read_all(s, 0, &g);
        assert_int_equal(g.n, a.n);
        st_spool_free(s);
    }
}

/* Waits for the segment gauge to reach <want> (releases happen on the thread). */
static void wait_segments(struct st_spool *s, int want)
{
    int64_t deadline = now_ms() + 5000;

    while (st_spool_segments(s) != want && now_ms() < deadline)
        usleep(1000);
    assert_int_equal(st_spool_segments(s), want);
}

static void test_spool_release_deletes_only_wholly_committed_segments(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_BATCH, 1000);
    static struct appended a;
    static struct got g;
    struct st_spool_report rep;
    uint64_t bases[256], after[256], rel;
    off_t sizes[256], after_sizes[256];
    struct st_spool *s = open_ok(f, &o, &rep);
    int n, survivors = 0, m;
    uint64_t bytes = 0;

    memset(&a, 0, sizeof(a));
    append_range(s, &a, 0, 200);
    sync_and_wait(f->base, s);
    n = list_segs(f->dir, bases, sizes, 256);
    assert_true(n >= 10);
    assert_int_equal(st_spool_segments(s), n);

    rel = a.pos[100];
    for (int i = 0; i < n; i++) {
        if (i + 1 == n || bases[i + 1] > rel)
            survivors++;
    }
    assert_true(survivors < n);
    st_spool_release(s, rel);
    wait_segments(s, survivors);
    check(s);
    m = list_segs(f->dir, after, after_sizes, 256);
    assert_int_equal(m, survivors);
    assert_true(after[0] <= rel); /* the segment holding <rel> is still needed */
    assert_int_equal(after[m - 1], bases[n - 1]);
    for (int i = 0; i < m; i++)
        bytes += (uint64_t)after_sizes[i];
    assert_int_equal(st_spool_bytes(s), bytes);
    read_all(s, rel, &g);
    assert_int_equal(g.n, 100);
    assert_int_equal(g.idx[0], 100);
    read_all(s, 0, &g); /* what is left starts at a segment boundary */
    assert_int_equal(g.pos[0], after[0]);

    /* everything committed: only the newest stays, and appends go on after it */
    st_spool_release(s, a.next[199]);
    wait_segments(s, 1);
    m = list_segs(f->dir, after, after_sizes, 256);
    assert_int_equal(m, 1);
    assert_int_equal(after[0], bases[n - 1]);
    assert_int_equal(st_spool_bytes(s), (uint64_t)after_sizes[0]);
    st_spool_release(s, 5); /* going back is ignored */
    append_range(s, &a, 200, 5);
    assert_int_equal(a.pos[200], a.next[199]);
    sync_and_wait(f->base, s);
    st_spool_free(s);

    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.start, after[0]);
    assert_int_equal(rep.end, a.next[204]);
    read_all(s, 0, &g);
    assert_int_equal(g.idx[g.n - 1], 204);
    st_spool_free(s);
}

static void test_spool_refuses_beyond_max_bytes_until_release(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_NEVER, 0);
    unsigned char buf[100] = {0};
    struct st_spool_report rep;
    uint64_t bases[8];
    off_t sizes[8];
    char why[256];
    struct st_spool *s;
    uint64_t pos, next, last = 0;
    int k = 0;

    o.max_bytes = 16384; /* segments capped at 4 KiB */
    s = open_ok(f, &o, &rep);
    st_spool_problem(s, why, sizeof(why));
    assert_string_equal(why, "");
    assert_false(st_spool_is_full(s));
    while (st_spool_append(s, buf, sizeof(buf), &pos, &next) == AGG_OK) {
        assert_int_equal(pos, last);
        last = next;
        k++;
    }
    assert_int_equal(k, 16384 / (HDR + 100));
    assert_int_equal(st_spool_bytes(s), (uint64_t)k * (HDR + 100));
    assert_true(st_spool_is_full(s));
    st_spool_problem(s, why, sizeof(why));
    assert_non_null(strstr(why, "full"));
    assert_int_equal(st_spool_append(s, buf, sizeof(buf), &pos, &next), AGG_EFULL);
    check(s);
    sync_and_wait(f->base, s);
    assert_true(st_spool_segments(s) > 2);

    /* the room counts at once (the pipeline re-checks right after releasing); the
     * files go a little later, on the spool thread */
    st_spool_release(s, last);
    assert_false(st_spool_is_full(s));
    assert_true(st_spool_bytes(s) < 4096 + HDR + 100);
    assert_int_equal(st_spool_append(s, buf, sizeof(buf), &pos, &next), AGG_OK);
    assert_int_equal(pos, last); /* the refused ones took no position */
    wait_segments(s, 1);
    sync_and_wait(f->base, s);
    assert_int_equal(list_segs(f->dir, bases, sizes, 8), 1);
    assert_int_equal(st_spool_bytes(s), (uint64_t)sizes[0]); /* the gauge is the disk */
    st_spool_problem(s, why, sizeof(why));
    assert_string_equal(why, "");
    check(s);
    st_spool_free(s);
}

/* Writes records 0..<n>-1, closes. */
static void write_spool(struct fixture *f, const struct st_spool_opts *o, struct appended *a, int n)
{
    struct st_spool_report rep;
    struct st_spool *s = open_ok(f, o, &rep);

    memset(a, 0, sizeof(*a));
    append_range(s, a, 0, n);
    sync_and_wait(f->base, s);
    st_spool_free(s);
}

static void test_spool_cuts_a_torn_tail_off_the_newest_segment(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_BATCH, 2000);
    static struct appended a;
    static struct got g;
    struct st_spool_report rep;
    struct st_spool *s;
    char path[512];
    uint64_t base;

    write_spool(f, &o, &a, 60);
    base = seg_of(f->dir, a.pos[59]);
    seg_path(path, sizeof(path), f->dir, base);
    /* a crash in the middle of writing the last record */
    assert_int_equal(truncate(path, (off_t)(a.pos[59] - base + HDR + 3)), 0);

    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.cut_bytes, HDR + 3);
    assert_int_equal(rep.damaged, 0);
    assert_int_equal(rep.skipped_bytes, 0);
    assert_int_equal(rep.records, 59);
    assert_int_equal(rep.end, a.pos[59]);
    assert_non_null(strstr(rep.detail, "torn tail"));
    read_all(s, 0, &g);
    assert_int_equal(g.n, 59);
    for (int i = 0; i < 59; i++)
        assert_int_equal(g.idx[i], i);
    /* the next append takes the place of the torn record */
    append_range(s, &a, 59, 1);
    assert_int_equal(a.pos[59], rep.end);
    sync_and_wait(f->base, s);
    st_spool_free(s);

    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.cut_bytes, 0);
    assert_int_equal(rep.records, 60);
    assert_string_equal(rep.detail, "");
    st_spool_free(s);
}

static void test_spool_skips_a_damaged_record_in_an_older_segment(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_NEVER, 2000);
    static struct appended a;
    static struct got g;
    struct st_spool_report rep;
    struct st_spool *s;
    char path[512], name[32];
    uint64_t base;
    int bad = -1;

    write_spool(f, &o, &a, 100);
    base = seg_of(f->dir, a.pos[0]);
    /* a record in the middle of the first segment */
    for (int i = 1; i < 100 && seg_of(f->dir, a.next[i] + 1) == base; i++)
        bad = i / 2 + 1;
    assert_true(bad > 0);
    seg_path(path, sizeof(path), f->dir, base);
    flip_byte(path, (off_t)(a.pos[bad] - base + HDR + 2));

    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.damaged, 1);
    assert_int_equal(rep.skipped_bytes, a.next[bad] - a.pos[bad]);
    assert_int_equal(rep.cut_bytes, 0);
    assert_int_equal(rep.records, 99);
    snprintf(name, sizeof(name), "%016llx.seg", (unsigned long long)base);
    assert_non_null(strstr(rep.detail, name));
    assert_non_null(strstr(rep.detail, "checksum"));
    read_all(s, 0, &g);
    assert_int_equal(g.n, 99);
    for (int i = 0, j = 0; i < 100; i++) {
        if (i == bad)
            continue;
        assert_int_equal(g.idx[j], i);
        assert_int_equal(g.pos[j], a.pos[i]);
        j++;
    }
    st_spool_free(s);
}

/* The scenario: the newest segment truncated mid-record and one byte of
 * another corrupted: it starts, reports both, and loses nothing before the damage. */
static void test_spool_survives_a_torn_tail_and_a_corrupt_byte_together(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_ALWAYS, 1500);
    static struct appended a;
    static struct got g;
    struct st_spool_report rep;
    struct st_spool *s;
    char path[512];
    uint64_t newest, older;
    int bad = 20;

    write_spool(f, &o, &a, 120);
    newest = seg_of(f->dir, a.pos[119]);
    older = seg_of(f->dir, a.pos[bad]);
    assert_true(older < newest);
    seg_path(path, sizeof(path), f->dir, newest);
    assert_int_equal(truncate(path, (off_t)(a.pos[119] - newest + 7)), 0);
    seg_path(path, sizeof(path), f->dir, older);
    flip_byte(path, (off_t)(a.pos[bad] - older + 5)); /* in the length field */

    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.damaged, 1);
    assert_int_equal(rep.skipped_bytes, a.next[bad] - a.pos[bad]);
    assert_int_equal(rep.cut_bytes, 7);
    assert_int_equal(rep.records, 118);
    assert_non_null(strstr(rep.detail, "skipped"));
    assert_non_null(strstr(rep.detail, "torn tail"));
    read_all(s, 0, &g);
    assert_int_equal(g.n, 118);
    for (int i = 0, j = 0; i < 119; i++) {
        if (i != bad)
            assert_int_equal(g.idx[j++], i);
    }
    st_spool_free(s);
}

static void test_spool_cuts_garbage_and_zero_filled_tails(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_NEVER, 0);
    static struct appended a;
    static struct got g;
    struct st_spool_report rep;
    unsigned char junk[5000];
    struct st_spool *s;
    char path[512];

    write_spool(f, &o, &a, 30);
    seg_path(path, sizeof(path), f->dir, 0);
    srand(42);
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (unsigned char)rand(); /* NOLINT: test noise */
    junk[100] = 0xAB;                    /* a record marker with nonsense after it */
    junk[101] = 'S';
    junk[102] = 'P';
    junk[103] = '1';
    append_file(path, junk, sizeof(junk));
    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.cut_bytes, sizeof(junk));
    assert_int_equal(rep.records, 30);
    assert_int_equal(rep.damaged, 0);
    st_spool_free(s);

    /* some filesystems leave zeros after a crash: the size grew, the data did not */
    memset(junk, 0, sizeof(junk));
    append_file(path, junk, sizeof(junk));
    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.cut_bytes, sizeof(junk));
    assert_int_equal(rep.records, 30);
    read_all(s, 0, &g);
    assert_int_equal(g.n, 30);
    assert_int_equal(rep.end, a.next[29]);
    st_spool_free(s);
}

static void test_spool_copes_with_empty_and_garbage_segments(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_BATCH, 0);
    static struct appended a;
    static struct got g;
    struct st_spool_report rep;
    unsigned char junk[500];
    struct st_spool *s;
    char path[512];

    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (unsigned char)(i * 31 + 7);
    seg_path(path, sizeof(path), f->dir, 0);
    append_file(path, junk, sizeof(junk)); /* older, all garbage */
    seg_path(path, sizeof(path), f->dir, 0x1000);
    append_file(path, junk, 0); /* older, empty */
    seg_path(path, sizeof(path), f->dir, 0x2000);
    append_file(path, junk, 0); /* newest, empty */

    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.segments, 3);
    assert_int_equal(rep.records, 0);
    assert_int_equal(rep.damaged, 1);
    assert_int_equal(rep.skipped_bytes, sizeof(junk));
    assert_int_equal(rep.start, 0);
    assert_int_equal(rep.end, 0x2000);
    assert_non_null(strstr(rep.detail, "nothing intact"));
    read_all(s, 0, &g);
    assert_int_equal(g.n, 0);
    memset(&a, 0, sizeof(a));
    append_range(s, &a, 0, 3);
    assert_int_equal(a.pos[0], 0x2000);
    sync_and_wait(f->base, s);
    st_spool_release(s, 0x2000);
    wait_segments(s, 1);
    st_spool_free(s);

    /* a newest segment that is nothing but garbage is cut to nothing */
    remove_tree(f->dir);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    seg_path(path, sizeof(path), f->dir, 0x500);
    append_file(path, junk, sizeof(junk));
    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.cut_bytes, sizeof(junk));
    assert_int_equal(rep.end, 0x500);
    assert_int_equal(rep.records, 0);
    st_spool_free(s);
}

/* Damage in the middle of the newest segment with intact records after it is not a
 * torn tail: those records were written (maybe acknowledged) and are kept. */
static void test_spool_keeps_records_after_damage_in_the_newest_segment(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_NEVER, 0);
    static struct appended a;
    static struct got g;
    struct st_spool_report rep;
    struct st_spool *s;
    char path[512];

    write_spool(f, &o, &a, 50);
    seg_path(path, sizeof(path), f->dir, 0);
    flip_byte(path, (off_t)(a.pos[25] + 1)); /* the record marker */
    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.damaged, 1);
    assert_int_equal(rep.cut_bytes, 0);
    assert_int_equal(rep.records, 49);
    assert_int_equal(rep.end, a.next[49]);
    assert_non_null(strstr(rep.detail, "marker"));
    read_all(s, 0, &g);
    assert_int_equal(g.n, 49);
    assert_int_equal(g.idx[25], 26);
    st_spool_free(s);
}

static void test_spool_refuses_appends_while_the_disk_is_full(void **state)
{
    struct fixture *f = *state;
    static struct appended a;
    static struct got g;
    struct st_spool_report rep;
    struct st_spool_opts o;
    struct st_spool *s;
    char mnt[128], dir[160], why[256];
    unsigned char buf[512];
    uint64_t pos, next, acked_end = 0;
    int acked = 0, syncs = 0, fired = 0, i = 0;

    snprintf(mnt, sizeof(mnt), "%s/mnt", f->dir);
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=256k") != 0) {
        fprintf(stderr, "cannot mount a tmpfs (%s): the injected errors test covers this\n",
                strerror(errno));
        skip();
    }
    snprintf(dir, sizeof(dir), "%s/spool", mnt);
    o = opts_for(dir, AGG_SPOOL_FSYNC_ALWAYS, 16384);
    s = open_ok(f, &o, &rep);
    memset(&a, 0, sizeof(a));
    /* append and sync in rounds until the disk fills and appends are refused */
    for (;;) {
        int rc = AGG_OK;

        for (int k = 0; k < 20 && rc == AGG_OK; k++) {
            size_t len = make_payload(i, buf);

            rc = st_spool_append(s, buf, len, &a.pos[i], &a.next[i]);
            if (rc == AGG_OK)
                a.n = ++i;
        }
        if (rc == AGG_EFULL)
            break;
        assert_int_equal(rc, AGG_OK);
        assert_int_equal(st_spool_sync(s, count_cb, &fired), AGG_OK);
        syncs++;
        run_until(f->base, &fired, syncs, 300);
        if (fired == syncs) {
            acked = i;
            acked_end = a.next[i - 1];
        }
        assert_true(i < NREC_MAX - 20);
    }
    assert_true(st_spool_is_full(s));
    st_spool_problem(s, why, sizeof(why));
    assert_non_null(strstr(why, strerror(ENOSPC)));
    assert_int_equal(st_spool_append(s, buf, 10, &pos, &next), AGG_EFULL);
    assert_true(acked > 0);
    check(s);

    /* PostgreSQL commits what was acknowledged: old segments go, writes resume */
    st_spool_release(s, acked_end);
    run_until(f->base, &fired, syncs, 5000);
    assert_int_equal(fired, syncs);
    assert_false(st_spool_is_full(s));
    st_spool_problem(s, why, sizeof(why));
    assert_string_equal(why, "");
    append_range(s, &a, i, 3);
    assert_int_equal(a.pos[i], a.next[i - 1]);
    sync_and_wait(f->base, s);
    st_spool_free(s);

    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.damaged, 0);
    assert_int_equal(rep.cut_bytes, 0);
    read_all(s, acked_end, &g);
    assert_int_equal(g.n, a.n - acked);
    for (int j = 0; j < g.n; j++)
        assert_int_equal(g.idx[j], acked + j);
    st_spool_free(s);
    assert_int_equal(umount2(mnt, MNT_DETACH), 0);
}

static void test_spool_retries_failed_writes_and_fsyncs(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_BATCH, 3000);
    static struct appended a;
    static struct got g;
    struct st_spool_report rep;
    struct st_spool *s = open_ok(f, &o, &rep);
    unsigned char buf[16] = {0};
    uint64_t pos, next;
    char why[256];
    int fired = 0;
    int64_t t0;

    memset(&a, 0, sizeof(a));
    st_spool_inject_error(s, false, EIO, 0, 2);
    append_range(s, &a, 0, 40);
    assert_int_equal(st_spool_sync(s, count_cb, &fired), AGG_OK);
    t0 = now_ms();
    while (!st_spool_is_full(s) && now_ms() - t0 < 5000)
        usleep(1000);
    assert_true(st_spool_is_full(s));
    st_spool_problem(s, why, sizeof(why));
    assert_non_null(strstr(why, "could not write spool segment"));
    assert_non_null(strstr(why, strerror(EIO)));
    assert_int_equal(st_spool_append(s, buf, sizeof(buf), &pos, &next), AGG_EFULL);
    assert_int_equal(fired, 0);
    run_until(f->base, &fired, 1, 5000); /* two retries, 500 ms apart */
    assert_int_equal(fired, 1);
    assert_true(now_ms() - t0 >= 900);
    assert_false(st_spool_is_full(s));
    st_spool_problem(s, why, sizeof(why));
    assert_string_equal(why, "");

    /* a failed fsync: the unsynced bytes are written again, then fsynced; first the
     * rotation's own fsync fails, then (one buffer spanning a rotation) the one after
     * it, which rewinds into the middle of that buffer */
    for (int after = 0; after < 2; after++) {
        int first = a.n;

        st_spool_inject_error(s, true, EIO, after, 1);
        append_range(s, &a, first, 40); /* ~6 KB: crosses a 3000-byte segment */
        sync_and_wait(f->base, s);
        st_spool_problem(s, why, sizeof(why));
        assert_string_equal(why, "");
    }
    st_spool_inject_error(s, true, EIO, 0, 1);
    append_range(s, &a, a.n, 5);
    sync_and_wait(f->base, s);
    check(s);
    st_spool_free(s);

    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.damaged, 0);
    assert_int_equal(rep.cut_bytes, 0);
    assert_int_equal(rep.records, 125);
    read_all(s, 0, &g);
    assert_int_equal(g.n, 125);
    for (int i = 0; i < 125; i++) {
        assert_int_equal(g.idx[i], i);
        assert_int_equal(g.pos[i], a.pos[i]);
    }

    /* stopping while the disk fails: no hang, the waiting callback still runs, and
     * what was never durable (never acknowledged) is all that is missing */
    fired = 0;
    st_spool_inject_error(s, false, EIO, 0, 1000);
    append_range(s, &a, 125, 3);
    assert_int_equal(st_spool_sync(s, count_cb, &fired), AGG_OK);
    st_spool_free(s);
    assert_int_equal(fired, 1);
    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.records, 125);
    assert_int_equal(rep.end, a.next[124]);
    st_spool_free(s);
}

static void test_spool_survives_allocation_failures(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_BATCH, 0);
    unsigned char *big = calloc(1, 300000);
    long n;

    assert_non_null(big);
    for (n = 0; n < 1000; n++) {
        struct st_spool_report rep;
        struct agg_err err = {0};
        struct st_spool *s;
        static struct got g;
        bool failed = false;
        int rc, fired = 0;

        agg_alloc_fail_after(n);
        s = st_spool_open(f->base, &o, &rep, &err);
        if (s == NULL) {
            assert_int_equal(err.code, AGG_ENOMEM);
            failed = true;
        } else {
            unsigned char buf[512];
            uint64_t pos, next;

            for (int i = 0; i < 20 && !failed; i++) {
                size_t len = make_payload(i, buf);

                rc = i == 10 ? st_spool_append(s, big, 300000, &pos, &next)
                             : st_spool_append(s, buf, len, &pos, &next);
                if (rc == AGG_ENOMEM)
                    failed = true;
                else
                    assert_int_equal(rc, AGG_OK);
            }
            rc = st_spool_sync(s, count_cb, &fired);
            if (rc == AGG_ENOMEM)
                failed = true;
            else
                assert_int_equal(rc, AGG_OK);
            if (rc == AGG_OK)
                run_until(f->base, &fired, 1, 10000);
            check(s);
            g.n = 0;
            rc = st_spool_read(s, 0, collect_any, &g, &err);
            if (rc == AGG_ENOMEM)
                failed = true;
            else
                assert_int_equal(rc, AGG_OK);
            st_spool_free(s);
        }
        agg_alloc_fail_after(-1);
        if (!failed)
            break;
    }
    assert_true(n > 3 && n < 1000);
    free(big);
}

static void test_spool_rejects_oversized_and_keeps_empty_records(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_NEVER, 0);
    struct st_spool_report rep;
    struct st_spool *s = open_ok(f, &o, &rep);
    unsigned char one = 1;
    uint64_t pos, next, pos2, next2;
    static struct got g;

    assert_int_equal(st_spool_append(s, &one, (size_t)(64u << 20) + 1, &pos, &next), AGG_EINVAL);
    assert_int_equal(st_spool_append(s, NULL, 0, &pos, &next), AGG_OK);
    assert_int_equal(pos, 0);
    assert_int_equal(next, HDR);
    assert_int_equal(st_spool_append(s, NULL, 0, &pos2, &next2), AGG_OK);
    assert_int_equal(pos2, next);
    sync_and_wait(f->base, s);
    st_spool_free(s);
    s = open_ok(f, &o, &rep);
    assert_int_equal(rep.records, 2);
    g.n = 0;
    assert_int_equal(st_spool_read(s, 0, collect_any, &g, NULL), AGG_OK);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.next[1], next2);
    st_spool_free(s);
}

static void test_spool_keeps_its_id_and_refuses_a_second_opener(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts o = opts_for(f->dir, AGG_SPOOL_FSYNC_NEVER, 0);
    struct st_spool_report rep;
    struct agg_err err = {0};
    char id[33], path[512], text[64] = {0};
    struct st_spool *s = open_ok(f, &o, &rep), *t;
    int fd;

    assert_int_equal(strlen(st_spool_id(s)), 32);
    assert_int_equal(strspn(st_spool_id(s), "0123456789abcdef"), 32);
    memcpy(id, st_spool_id(s), sizeof(id));
    snprintf(path, sizeof(path), "%s/spool.id", f->dir);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, text, sizeof(text)), 33);
    close(fd);
    assert_memory_equal(text, id, 32);
    assert_int_equal(text[32], '\n');

    t = st_spool_open(f->base, &o, NULL, &err);
    assert_null(t);
    assert_non_null(strstr(err.msg, "another spool"));
    st_spool_free(s);

    s = open_ok(f, &o, NULL);
    assert_string_equal(st_spool_id(s), id);
    st_spool_free(s);

    append_file(path, "x", 1); /* no longer an id: refuse rather than forget it */
    t = st_spool_open(f->base, &o, &rep, &err);
    assert_null(t);
    assert_int_equal(err.code, AGG_EINVAL);
    assert_non_null(strstr(err.msg, "spool.id"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_spool_round_trips_across_segments_and_reopens, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_sync_fires_once_durable_in_every_fsync_mode,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_release_deletes_only_wholly_committed_segments,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_refuses_beyond_max_bytes_until_release, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_cuts_a_torn_tail_off_the_newest_segment, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_skips_a_damaged_record_in_an_older_segment,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_survives_a_torn_tail_and_a_corrupt_byte_together,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_cuts_garbage_and_zero_filled_tails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_copes_with_empty_and_garbage_segments, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_keeps_records_after_damage_in_the_newest_segment,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_refuses_appends_while_the_disk_is_full, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_retries_failed_writes_and_fsyncs, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_survives_allocation_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_rejects_oversized_and_keeps_empty_records, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_keeps_its_id_and_refuses_a_second_opener, setup,
                                        teardown),
    };

    evthread_use_pthreads();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
