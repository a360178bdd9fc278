/*
 * store/spool.c — the disk spool: framed, checksummed records in segment files, written
 *                 and fsynced by one thread, recovered record by record at open.
 *
 * Place: see store/spool.h; the on-disk format and the recovery rules are in
 *        docs/spool.md.
 * Threads: the loop owns s->cur, s->end and the waiters; the spool thread owns the
 *          open segment (fd, seg_*), written/synced and the todo and unsynced lists;
 *          s->lock guards the hand-off queue, the spare chunks, the segment list
 *          (mutated by the spool thread only, after open), the stop and release
 *          requests and the problem text. durable, wake_at and the gauges are atomics.
 * Ownership: a chunk of framed records belongs to the loop while it fills, then to
 *            the queue, then to the spool thread until it is durable (kept so that it
 *            can be written again after a failed fsync), then to the spare list.
 * Traps: a record's position is decided on the loop (s->end) and its file offset on
 *        the thread (seg_base + seg_len); they agree because records are written in
 *        order, never split across segments, and a new segment is named after the
 *        position written next. The checksum covers the position too, so a record
 *        found at the wrong place (a stale block, a renamed file) is damage, and the
 *        thread, not the loop, computes it. After a failed fsync the kernel may have
 *        dropped the dirty pages: everything after s->synced is written again.
 * Not here: what is committed (the pipeline and ingest_checkpoints).
 */
#include "store/spool.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/time.h"

#define HDR_BYTES             12                  /* magic, length, checksum */
#define MAX_RECORD_BYTES      (64u << 20)         /* payload bytes of one record */
#define CHUNK_BYTES           ((size_t)256 << 10) /* loop buffer handed to the thread when full */
#define MERGE_MAX_BYTES       (CHUNK_BYTES / 8)   /* smaller hand-offs are copied into the queue */
#define SPARE_CHUNKS_MAX      8
#define PENDING_MAX_BYTES     ((uint64_t)32 << 20) /* appended but not yet durable */
#define READ_WINDOW_BYTES     ((size_t)1 << 20)
#define DEFAULT_SEGMENT_BYTES ((int64_t)64 << 20)
#define MIN_SEGMENT_CAP_BYTES 4096
#define DEFAULT_GROUP_MS      2
#define MAX_GROUP_MS          1000
#define RETRY_MS              500
#define SEG_NAME_BYTES        24             /* 16 hex digits, ".seg", NUL */
#define ID_FILE               "spool.id"
#define ID_TMP_FILE           "spool.id.tmp"

static const unsigned char record_magic[4] = {0xAB, 'S', 'P', '1'};

enum refusal {
    REFUSED_NONE = 0,
    REFUSED_FULL,   /* max_bytes */
    REFUSED_BEHIND, /* PENDING_MAX_BYTES not yet durable */
};

struct chunk {
    struct chunk *next;
    uint64_t pos; /* position of data[0] */
    size_t len;   /* framed bytes in data */
    size_t cap;
    size_t done; /* spool thread: bytes of data written */
    size_t mark; /* spool thread: end of the records chosen for the open segment */
    unsigned char data[];
};

struct list {
    struct chunk *head, *tail;
};

struct seg {
    uint64_t base;
    uint64_t bytes; /* file size; for the open segment only as of the last rotation */
    bool released;  /* st_spool_release took its bytes off s->used already */
};

struct waiter {
    uint64_t target;
    void (*fn)(void *arg);
    void *arg;
};

struct st_spool {
    struct event_base *base;
    char *dir;
    int fsync_mode; /* enum agg_spool_fsync */
    int64_t max_bytes;
    int64_t seg_max;
    int group_ms;
    char id[33];
    int dirfd; /* holds the flock that keeps a second process out */
    struct event *done_ev, *flush_ev;

    /* loop thread */
    struct chunk *cur;      /* being filled; cur->pos + cur->len == end */
    uint64_t end;           /* position of the next append */
    struct waiter *waiters; /* ring, targets non-decreasing */
    size_t whead, wcount, wcap;
    bool flush_armed;
    bool thread_started;
    pthread_t thread;

    /* guarded by lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct list queue;
    struct chunk *spare;
    int nspare;
    struct seg *segs; /* sorted by base; the last one is open for writing */
    size_t nsegs, cap_segs;
    uint64_t release_pos;
    uint64_t sync_req; /* highest position a sync waits for */
    uint64_t nreq;     /* how many times sync_req grew */
    bool stopping;
    char problem[256];

    /* spool thread */
    struct list todo;     /* handed over, not wholly written */
    struct list unsynced; /* written, not yet fsynced */
    int fd;
    uint64_t seg_base, seg_len;
    uint64_t written, synced, released;
    uint64_t req_seen, nreq_seen, nreq_at_sync; /* sync_req, nreq as last taken */
    bool lonely; /* batch: the last fsync served at most one request */
    int64_t first_unsynced_us, last_sync_us, retry_at_us;
    struct agg_log_limit warn_limit; /* repeated trouble: AGG_LOG_LIMIT_US apart */

    /* any thread */
    _Atomic uint64_t durable;
    _Atomic uint64_t wake_at; /* the loop's earliest waiting target, UINT64_MAX if none */
    _Atomic uint64_t used;    /* segment bytes on disk + bytes not yet written */
    atomic_int nsegments;
    atomic_bool failed;
    atomic_int refused; /* enum refusal of the last append, until space is freed */
    atomic_int inject_errno, inject_after, inject_left;
    atomic_bool inject_fsync;
};

/* ---- small helpers ------------------------------------------------------------------ */

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* CRC-32 (zlib) of the position (8 bytes LE), the length field and the payload of the
 * record whose header is at <rec>. */
static uint32_t record_crc(uint64_t pos, const unsigned char *rec)
{
    unsigned char le[8];
    uLong crc;

    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(pos >> (8 * i));
    crc = crc32(0L, le, sizeof(le));
    crc = crc32(crc, rec + 4, 4);
    return (uint32_t)crc32(crc, rec + HDR_BYTES, (uInt)get_le32(rec + 4));
}

static void seg_name(char name[SEG_NAME_BYTES], uint64_t base)
{
    snprintf(name, SEG_NAME_BYTES, "%016" PRIx64 ".seg", base);
}

/* "<16 lower-case hex digits>.seg" -> *<base>. */
static bool parse_seg_name(const char *name, uint64_t *base)
{
    uint64_t v = 0;

    if (strlen(name) != 20 || strcmp(name + 16, ".seg") != 0)
        return false;
    for (int i = 0; i < 16; i++) {
        char c = name[i];

        if (c >= '0' && c <= '9')
            v = v << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v << 4 | (uint64_t)(c - 'a' + 10);
        else
            return false;
    }
    *base = v;
    return true;
}

static void list_push(struct list *l, struct chunk *c)
{
    c->next = NULL;
    if (l->tail != NULL)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static struct chunk *list_pop(struct list *l)
{
    struct chunk *c = l->head;

    if (c != NULL) {
        l->head = c->next;
        if (l->head == NULL)
            l->tail = NULL;
        c->next = NULL;
    }
    return c;
}

/* Moves every chunk of <more> to the end of <l>. */
static void list_concat(struct list *l, struct list *more)
{
    if (more->head == NULL)
        return;
    if (l->tail != NULL)
        l->tail->next = more->head;
    else
        l->head = more->head;
    l->tail = more->tail;
    more->head = more->tail = NULL;
}

static void list_free(struct list *l)
{
    struct chunk *c;

    while ((c = list_pop(l)) != NULL)
        free(c);
}

/* ---- reading segments (open, st_spool_read) ----------------------------------------- */

/* A window over one segment file, so that records are checked without a syscall
 * each and searching damage byte by byte stays cheap. */
struct reader {
    int fd;
    const char *name;
    uint64_t limit; /* bytes of the file that belong to this segment */
    unsigned char *buf;
    size_t cap, len;
    uint64_t off; /* file offset of buf[0] */
};

static void reader_reset(struct reader *r, int fd, const char *name, uint64_t limit)
{
    r->fd = fd;
    r->name = name;
    r->limit = limit;
    r->off = 0;
    r->len = 0;
}

/* Buffers the bytes [<off>, <off> + <want>) (fewer at the limit): *<p> points at
 * <off>, *<got> says how many bytes from there are buffered. <off> <= limit. */
static int reader_get(struct reader *r, uint64_t off, size_t want, const unsigned char **p,
                      size_t *got, struct agg_err *err)
{
    uint64_t have = r->off + r->len;

    if (off < r->off || off > have || (off + want > have && have < r->limit)) {
        size_t need = want > READ_WINDOW_BYTES ? want : READ_WINDOW_BYTES;

        if (need > r->cap) {
            unsigned char *nb = agg_realloc(r->buf, need);

            if (nb == NULL)
                return agg_err_set(err, AGG_ENOMEM, "out of memory");
            r->buf = nb;
            r->cap = need;
        }
        r->off = off;
        r->len = 0;
        while (r->len < r->cap && r->off + r->len < r->limit) {
            uint64_t left = r->limit - r->off - r->len;
            size_t n = r->cap - r->len < left ? r->cap - r->len : (size_t)left;
            ssize_t k = pread(r->fd, r->buf + r->len, n, (off_t)(r->off + r->len));

            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return agg_err_set(err, AGG_ERR, "could not read spool segment \"%s\": %s", r->name,
                                   strerror(errno));
            if (k == 0) { /* shorter than it was: what is not there is not ours */
                r->limit = r->off + r->len;
                break;
            }
            r->len += (size_t)k;
        }
    }
    *p = r->buf != NULL ? r->buf + (off - r->off) : NULL;
    *got = (size_t)(r->off + r->len - off);
    return AGG_OK;
}

/* Is there an intact record at <off> of the segment based at <base>? 1 with *<len> and
 * *<payload> (valid until the next reader call), 0 with *<why>, or an error code. */
static int check_at(struct reader *r, uint64_t off, uint64_t base, uint32_t *len,
                    const unsigned char **payload, const char **why, struct agg_err *err)
{
    const unsigned char *p = NULL;
    size_t got = 0;
    uint32_t n;
    int rc;

    if (r->limit - off < HDR_BYTES) {
        *why = "a truncated record header";
        return 0;
    }
    if ((rc = reader_get(r, off, HDR_BYTES, &p, &got, err)) != AGG_OK)
        return rc;
    if (got < HDR_BYTES) {
        *why = "a truncated record header";
        return 0;
    }
    if (memcmp(p, record_magic, sizeof(record_magic)) != 0) {
        *why = "no record marker";
        return 0;
    }
    n = get_le32(p + 4);
    if (n > MAX_RECORD_BYTES) {
        *why = "an impossible record length";
        return 0;
    }
    if (HDR_BYTES + (uint64_t)n > r->limit - off) {
        *why = "a record cut short";
        return 0;
    }
    if ((rc = reader_get(r, off, HDR_BYTES + n, &p, &got, err)) != AGG_OK)
        return rc;
    if (got < HDR_BYTES + (size_t)n) {
        *why = "a record cut short";
        return 0;
    }
    if (record_crc(base + off, p) != get_le32(p + 8)) {
        *why = "a bad checksum";
        return 0;
    }
    *len = n;
    *payload = p + HDR_BYTES;
    return 1;
}

/* The offset of the first intact record after <off> into *<found>; the limit when
 * there is none. */
static int resync(struct reader *r, uint64_t off, uint64_t base, uint64_t *found,
                  struct agg_err *err)
{
    uint64_t o = off + 1;

    while (o + HDR_BYTES <= r->limit) {
        const unsigned char *p = NULL, *q, *payload;
        const char *why;
        size_t got = 0;
        uint32_t len;
        int rc = reader_get(r, o, HDR_BYTES, &p, &got, err);

        if (rc != AGG_OK)
            return rc;
        if (got < HDR_BYTES)
            break;
        /* candidates whose header is buffered: jump to the next first magic byte */
        q = memchr(p, record_magic[0], got - HDR_BYTES + 1);
        if (q == NULL) {
            o += got - HDR_BYTES + 1;
            continue;
        }
        o += (uint64_t)(q - p);
        rc = check_at(r, o, base, &len, &payload, &why, err);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            *found = o;
            return AGG_OK;
        }
        o++;
    }
    *found = r->limit;
    return AGG_OK;
}

struct visit {
    int (*record)(void *arg, uint64_t pos, uint64_t next, const void *rec, size_t len);
    /* <bytes> of damage at <off>; <tail>: nothing intact follows in this segment */
    void (*damage)(void *arg, uint64_t off, uint64_t bytes, const char *why, bool tail);
    void *arg;
};

/* Walks the segment based at <base> from <off>: each intact record to v->record, each
 * damaged stretch to v->damage. AGG_OK, an error code, or what v->record returned
 * when that was non-zero. */
static int scan_segment(struct reader *r, uint64_t base, uint64_t off, const struct visit *v,
                        struct agg_err *err)
{
    while (off < r->limit) {
        const unsigned char *payload;
        const char *why = "";
        uint32_t len;
        uint64_t found;
        int rc = check_at(r, off, base, &len, &payload, &why, err);

        if (rc < 0)
            return rc;
        if (rc == 1) {
            uint64_t next = off + HDR_BYTES + len;

            rc = v->record(v->arg, base + off, base + next, payload, len);
            if (rc != 0)
                return rc;
            off = next;
            continue;
        }
        if ((rc = resync(r, off, base, &found, err)) != AGG_OK)
            return rc;
        v->damage(v->arg, off, found - off, why, found >= r->limit);
        off = found;
    }
    return AGG_OK;
}

/* ---- the spool thread --------------------------------------------------------------- */

/* Test hook (st_spool_inject_error): should this write or fsync fail? */
static bool injected(struct st_spool *s, bool on_fsync)
{
    if (atomic_load(&s->inject_left) <= 0 || atomic_load(&s->inject_fsync) != on_fsync)
        return false;
    if (atomic_load(&s->inject_after) > 0) {
        atomic_fetch_sub(&s->inject_after, 1);
        return false;
    }
    atomic_fetch_sub(&s->inject_left, 1);
    errno = atomic_load(&s->inject_errno);
    return true;
}

static ssize_t spool_pwrite(struct st_spool *s, const void *p, size_t n, uint64_t off)
{
    ssize_t k;

    if (injected(s, false))
        return -1;
    do {
        k = pwrite(s->fd, p, n, (off_t)off);
    } while (k < 0 && errno == EINTR);
    if (k == 0) {
        errno = EIO;
        return -1;
    }
    return k;
}

static int spool_fdatasync(struct st_spool *s)
{
    if (injected(s, true))
        return -1;
    return fdatasync(s->fd);
}

static void set_problem(struct st_spool *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records why appends are refused and schedules the retry; logs the first time. */
static void set_problem(struct st_spool *s, const char *fmt, ...)
{
    char why[sizeof(s->problem)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s->lock);
    memcpy(s->problem, why, sizeof(why));
    pthread_mutex_unlock(&s->lock);
    s->retry_at_us = agg_time_mono_us() + RETRY_MS * 1000;
    if (!atomic_exchange(&s->failed, true))
        AGG_LOG_LIMITED(&s->warn_limit, AGG_LOG_LEVEL_WARN, "spool",
                        "%s; refusing appends, retrying every %d ms", why, RETRY_MS);
}

static void clear_problem(struct st_spool *s)
{
    pthread_mutex_lock(&s->lock);
    s->problem[0] = '\0';
    pthread_mutex_unlock(&s->lock);
    atomic_store(&s->failed, false);
    AGG_LOG_INFO("spool", "spool writes succeed again in \"%s\", accepting appends", s->dir);
}

/* Gives the chunks of <l> back: standard ones to the spare list, the rest freed. */
static void recycle(struct st_spool *s, struct list *l)
{
    struct list drop = {0};
    struct chunk *c;

    if (l->head == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    while ((c = list_pop(l)) != NULL) {
        if (c->cap == CHUNK_BYTES && s->nspare < SPARE_CHUNKS_MAX) {
            c->next = s->spare;
            s->spare = c;
            s->nspare++;
        } else {
            list_push(&drop, c);
        }
    }
    pthread_mutex_unlock(&s->lock);
    list_free(&drop);
}

/* Points <c> at <off> for writing again: done there, mark at the end of the record
 * that contains it (or at <off> when a record starts there). */
static void chunk_seek(struct chunk *c, size_t off)
{
    size_t r = 0;

    while (r < off) {
        size_t end = r + HDR_BYTES + get_le32(c->data + r + 4);

        if (end > off)
            break;
        r = end;
    }
    c->done = off;
    c->mark = r == off ? off : r + HDR_BYTES + get_le32(c->data + r + 4);
}

/* After a failed fsync: everything after s->synced is written again (the kernel may
 * have dropped those pages), from the chunks kept until durable. synced >= seg_base:
 * a rotation fsyncs the old segment first. */
static void rewind_to_synced(struct st_spool *s)
{
    struct list all = s->unsynced, spare = {0};
    struct chunk *c;

    s->unsynced.head = s->unsynced.tail = NULL;
    list_concat(&all, &s->todo);
    while ((c = list_pop(&all)) != NULL) {
        uint64_t from = s->synced > c->pos ? s->synced - c->pos : 0;

        if (from >= c->len) {
            list_push(&spare, c);
            continue;
        }
        chunk_seek(c, (size_t)from);
        list_push(&s->todo, c);
    }
    s->written = s->synced;
    s->seg_len = s->synced - s->seg_base;
    recycle(s, &spare);
}

static int sync_now(struct st_spool *s)
{
    struct list durable;

    s->last_sync_us = agg_time_mono_us();
    if (spool_fdatasync(s) != 0) {
        int e = errno;

        set_problem(s, "could not fsync spool segment \"%s/%016" PRIx64 ".seg\": %s", s->dir,
                    s->seg_base, strerror(e));
        rewind_to_synced(s);
        return AGG_ERR;
    }
    s->synced = s->written;
    s->lonely = s->nreq_seen - s->nreq_at_sync <= 1;
    s->nreq_at_sync = s->nreq_seen;
    durable = s->unsynced;
    s->unsynced.head = s->unsynced.tail = NULL;
    recycle(s, &durable);
    return AGG_OK;
}

/* Closes the open segment and starts the next one, named after the position written
 * next; in the fsync modes the old one is fsynced first, so synced >= seg_base. */
static int rotate(struct st_spool *s)
{
    char name[SEG_NAME_BYTES];
    int fd;

    if (s->fsync_mode != AGG_SPOOL_FSYNC_NEVER && s->written > s->synced && sync_now(s) != AGG_OK)
        return AGG_ERR;
    if (s->nsegs == s->cap_segs) {
        int rc;

        pthread_mutex_lock(&s->lock); /* st_spool_read copies the list */
        rc = agg_grow((void **)&s->segs, sizeof(*s->segs), &s->cap_segs, s->nsegs + 1);
        pthread_mutex_unlock(&s->lock);
        if (rc != AGG_OK) {
            set_problem(s, "could not start a new spool segment in \"%s\": out of memory", s->dir);
            return AGG_ERR;
        }
    }
    seg_name(name, s->written);
    /* O_TRUNC: a file of that name can only be our own empty leftover */
    fd = openat(s->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        int e = errno;

        set_problem(s, "could not create spool segment \"%s/%s\": %s", s->dir, name, strerror(e));
        return AGG_ERR;
    }
    if (fsync(s->dirfd) != 0) {
        int e = errno;

        close(fd);
        set_problem(s, "could not fsync spool directory \"%s\": %s", s->dir, strerror(e));
        return AGG_ERR;
    }
    pthread_mutex_lock(&s->lock);
    s->segs[s->nsegs - 1].bytes = s->seg_len;
    s->segs[s->nsegs].base = s->written;
    s->segs[s->nsegs].bytes = 0;
    s->segs[s->nsegs].released = false;
    s->nsegs++;
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->nsegments, 1);
    close(s->fd);
    s->fd = fd;
    s->seg_base = s->written;
    s->seg_len = 0;
    return AGG_OK;
}

/* Chooses the next run of whole records of <c> for the open segment (starting a new
 * segment when it is full) and fills in their checksums. c->done == c->mark. */
static int choose_records(struct st_spool *s, struct chunk *c)
{
    size_t off = c->done;

    assert(s->written == c->pos + c->done);
    if (s->seg_len >= (uint64_t)s->seg_max && rotate(s) != AGG_OK)
        return AGG_ERR;
    do {
        unsigned char *p = c->data + off;

        put_le32(p + 8, record_crc(c->pos + off, p));
        off += HDR_BYTES + get_le32(p + 4);
    } while (off < c->len && s->seg_len + (off - c->done) < (uint64_t)s->seg_max);
    c->mark = off;
    return AGG_OK;
}

/* Writes the todo list into the segments. AGG_ERR after a failure (problem set). */
static int write_todo(struct st_spool *s)
{
    struct list written = {0};
    struct chunk *c;
    int rc = AGG_OK;

    while ((c = s->todo.head) != NULL) {
        while (c->done < c->len) {
            ssize_t k;

            if (c->done == c->mark && choose_records(s, c) != AGG_OK) {
                rc = AGG_ERR;
                goto out;
            }
            k = spool_pwrite(s, c->data + c->done, c->mark - c->done, s->seg_len);
            if (k < 0) {
                int e = errno;

                set_problem(s, "could not write spool segment \"%s/%016" PRIx64 ".seg\": %s",
                            s->dir, s->seg_base, strerror(e));
                rc = AGG_ERR;
                goto out;
            }
            if (s->written == s->synced)
                s->first_unsynced_us = agg_time_mono_us();
            c->done += (size_t)k;
            s->seg_len += (uint64_t)k;
            s->written += (uint64_t)k;
        }
        list_pop(&s->todo);
        if (s->fsync_mode == AGG_SPOOL_FSYNC_NEVER)
            list_push(&written, c);
        else
            list_push(&s->unsynced, c); /* kept until fsynced */
    }
out:
    recycle(s, &written);
    return rc;
}

/* The segments wholly before <pos> (never the open one): how many. s->segs is only
 * mutated by the spool thread, under the lock. */
static size_t releasable(const struct st_spool *s, uint64_t pos)
{
    size_t n = 0;

    while (n + 1 < s->nsegs && s->segs[n + 1].base <= pos)
        n++;
    return n;
}

/* Deletes the segments wholly before <pos>. Their bytes left s->used when
 * st_spool_release marked them; what cannot be deleted gets them back. */
static void release_segments(struct st_spool *s, uint64_t pos)
{
    char name[SEG_NAME_BYTES];
    uint64_t bytes = 0, back = 0;
    size_t n = releasable(s, pos), gone = 0;

    s->released = pos;
    for (; gone < n; gone++) {
        seg_name(name, s->segs[gone].base);
        if (unlinkat(s->dirfd, name, 0) != 0 && errno != ENOENT) {
            AGG_LOG_LIMITED(&s->warn_limit, AGG_LOG_LEVEL_WARN, "spool",
                            "could not delete spool segment \"%s/%s\": %s", s->dir, name,
                            strerror(errno));
            break;
        }
    }
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        if (i < gone && !s->segs[i].released)
            bytes += s->segs[i].bytes;
        if (i >= gone && s->segs[i].released) { /* still there: still counts */
            s->segs[i].released = false;
            back += s->segs[i].bytes;
        }
    }
    memmove(s->segs, s->segs + gone, (s->nsegs - gone) * sizeof(*s->segs));
    s->nsegs -= gone;
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&s->used, back);
    atomic_fetch_sub(&s->used, bytes);
    if (gone == 0)
        return;
    atomic_fetch_sub(&s->nsegments, (int)gone);
    atomic_store(&s->refused, REFUSED_NONE);
    s->retry_at_us = 0; /* a full disk may have room now: retry at once */
    /* only the space depends on it: a resurrected segment is released again */
    if (fsync(s->dirfd) != 0)
        AGG_LOG_LIMITED(&s->warn_limit, AGG_LOG_LEVEL_WARN, "spool",
                        "could not fsync spool directory \"%s\": %s", s->dir, strerror(errno));
}

/* fsync=batch: when the unsynced data must be fsynced, given the highest requested
 * position <req>: within group_ms of its first write in any case; for a sync request
 * at once when the last fsync served it alone (nobody else is appending, company is
 * not coming), else group_ms after the last fsync started, so that the requests
 * arriving meanwhile share the next one. */
static int64_t batch_due_us(const struct st_spool *s, uint64_t req)
{
    int64_t group = (int64_t)s->group_ms * 1000, due = s->first_unsynced_us + group;

    if (req > s->synced) {
        int64_t asked = s->lonely ? 0 : s->last_sync_us + group;

        if (asked < due)
            due = asked;
    }
    return due;
}

static bool sync_due(const struct st_spool *s, int64_t now, bool stop)
{
    if (s->fsync_mode == AGG_SPOOL_FSYNC_NEVER || s->written == s->synced)
        return false;
    if (s->fsync_mode == AGG_SPOOL_FSYNC_ALWAYS || stop)
        return true;
    return now >= batch_due_us(s, s->req_seen);
}

static void publish(struct st_spool *s)
{
    uint64_t d = s->fsync_mode == AGG_SPOOL_FSYNC_NEVER ? s->written : s->synced;

    if (d == atomic_load(&s->durable))
        return;
    atomic_store(&s->durable, d);
    if (d >= atomic_load(&s->wake_at))
        event_active(s->done_ev, EV_READ, 0);
}

static void timed_wait(struct st_spool *s, int64_t until_us)
{
    struct timespec ts = {.tv_sec = (time_t)(until_us / 1000000),
                          .tv_nsec = (long)(until_us % 1000000) * 1000};

    pthread_cond_timedwait(&s->cond, &s->lock, &ts); /* the condvar runs on CLOCK_MONOTONIC */
}

/* Sleeps (s->lock held) until there is something to do. */
static void wait_for_work(struct st_spool *s)
{
    for (;;) {
        int64_t now = agg_time_mono_us(), until;

        if (s->stopping || s->release_pos > s->released)
            return;
        if (atomic_load(&s->failed)) {
            if (now >= s->retry_at_us)
                return;
            until = s->retry_at_us;
        } else if (s->fsync_mode == AGG_SPOOL_FSYNC_BATCH && s->written > s->synced) {
            /* within the window: let the queue grow, it goes out with the fsync */
            until = batch_due_us(s, s->sync_req);
            if (now >= until)
                return;
        } else if (s->queue.head != NULL) {
            return;
        } else {
            pthread_cond_wait(&s->cond, &s->lock);
            continue;
        }
        timed_wait(s, until);
    }
}

static void work(struct st_spool *s, uint64_t release, bool stop)
{
    bool was_failed = atomic_load(&s->failed);
    bool ok = true;

    if (release > s->released) /* first: it may free the space a write is waiting for */
        release_segments(s, release);
    if (was_failed && !stop && agg_time_mono_us() < s->retry_at_us)
        return;
    if (s->todo.head != NULL)
        ok = write_todo(s) == AGG_OK;
    if (ok && sync_due(s, agg_time_mono_us(), stop))
        ok = sync_now(s) == AGG_OK;
    if (ok && was_failed)
        clear_problem(s);
    publish(s);
}

static void *thread_main(void *arg)
{
    struct st_spool *s = arg;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        uint64_t release;
        bool stop;

        wait_for_work(s);
        list_concat(&s->todo, &s->queue);
        s->req_seen = s->sync_req;
        s->nreq_seen = s->nreq;
        release = s->release_pos;
        stop = s->stopping;
        pthread_mutex_unlock(&s->lock);
        work(s, release, stop);
        if (stop)
            break;
        pthread_mutex_lock(&s->lock);
    }
    if (s->todo.head != NULL ||
        (s->fsync_mode != AGG_SPOOL_FSYNC_NEVER && s->written > s->synced)) {
        uint64_t last = s->todo.tail != NULL ? s->todo.tail->pos + s->todo.tail->len : s->written;
        char why[sizeof(s->problem)];

        st_spool_problem(s, why, sizeof(why));
        AGG_LOG_ERR("spool",
                    "could not make the last %" PRIu64 " bytes appended to \"%s\" "
                    "durable before stopping (they were never acknowledged): %s",
                    last - atomic_load(&s->durable), s->dir, why);
    }
    return NULL;
}

/* ---- the loop side ------------------------------------------------------------------ */

/* Hands the loop's chunk to the thread: small ones are copied into the last queued
 * chunk when it has room (the loop keeps its own), others are queued whole. A
 * non-zero <sync_target> tells the thread that a sync waits for that position. */
static void hand_off(struct st_spool *s, uint64_t sync_target)
{
    struct chunk *c = s->cur, *t;
    bool data = c != NULL && c->len > 0;

    if (!data && sync_target == 0)
        return;
    pthread_mutex_lock(&s->lock);
    t = s->queue.tail;
    if (!data) {
        /* nothing new: the data is with the thread already */
    } else if (t != NULL && c->len <= MERGE_MAX_BYTES && t->cap - t->len >= c->len) {
        assert(t->pos + t->len == c->pos);
        memcpy(t->data + t->len, c->data, c->len);
        t->len += c->len;
        c->pos += c->len;
        c->len = 0;
    } else {
        list_push(&s->queue, c);
        s->cur = NULL;
    }
    if (sync_target > s->sync_req) {
        s->sync_req = sync_target;
        s->nreq++;
    }
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static struct chunk *chunk_get(struct st_spool *s, size_t need)
{
    struct chunk *c = NULL;

    if (need <= CHUNK_BYTES) {
        pthread_mutex_lock(&s->lock);
        c = s->spare;
        if (c != NULL) {
            s->spare = c->next;
            s->nspare--;
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (c == NULL) {
        size_t cap = need > CHUNK_BYTES ? need : CHUNK_BYTES;

        c = agg_malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
    }
    c->next = NULL;
    c->len = c->done = c->mark = 0;
    return c;
}

/* The loop's chunk with room for <framed> more bytes, or NULL (out of memory). */
static struct chunk *room_for(struct st_spool *s, size_t framed)
{
    struct chunk *c = s->cur, *n;

    if (c != NULL && c->cap - c->len >= framed)
        return c;
    if (c != NULL && c->len > 0) {
        hand_off(s, 0);
        c = s->cur;
        if (c != NULL && c->cap >= framed) /* emptied by a merge */
            return c;
    }
    n = chunk_get(s, framed);
    if (n == NULL)
        return NULL;
    if (c != NULL) { /* empty but too small for this record */
        struct list l = {0};

        list_push(&l, c);
        recycle(s, &l);
    }
    n->pos = s->end;
    s->cur = n;
    return n;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct st_spool *s = arg;

    (void)fd;
    (void)what;
    s->flush_armed = false;
    hand_off(s, 0);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct st_spool *s = arg;

    (void)fd;
    (void)what;
    for (;;) {
        struct waiter w;

        if (s->wcount == 0) {
            atomic_store(&s->wake_at, UINT64_MAX);
            return;
        }
        w = s->waiters[s->whead];
        if (w.target > atomic_load(&s->durable)) {
            atomic_store(&s->wake_at, w.target);
            if (atomic_load(&s->durable) < w.target) /* else the thread raced us: go on */
                return;
            continue;
        }
        s->whead = (s->whead + 1) % s->wcap;
        s->wcount--;
        w.fn(w.arg); /* may append and sync again */
    }
}

static int waiters_push(struct st_spool *s, uint64_t target, void (*fn)(void *), void *arg)
{
    if (s->wcount == s->wcap) {
        size_t cap = s->wcap != 0 ? s->wcap * 2 : 16;
        struct waiter *w = agg_malloc(cap * sizeof(*w));

        if (w == NULL)
            return AGG_ENOMEM;
        for (size_t i = 0; i < s->wcount; i++)
            w[i] = s->waiters[(s->whead + i) % s->wcap];
        free(s->waiters);
        s->waiters = w;
        s->wcap = cap;
        s->whead = 0;
    }
    s->waiters[(s->whead + s->wcount) % s->wcap] = (struct waiter){target, fn, arg};
    s->wcount++;
    return AGG_OK;
}

int st_spool_append(struct st_spool *s, const void *rec, size_t len, uint64_t *pos, uint64_t *next)
{
    uint64_t used, pending;
    struct chunk *c;
    unsigned char *p;
    size_t framed;

    if (len > MAX_RECORD_BYTES)
        return AGG_EINVAL;
    framed = HDR_BYTES + len;
    if (atomic_load_explicit(&s->failed, memory_order_relaxed))
        return AGG_EFULL;
    used = atomic_load_explicit(&s->used, memory_order_relaxed);
    if (used + framed > (uint64_t)s->max_bytes) {
        atomic_store_explicit(&s->refused, REFUSED_FULL, memory_order_relaxed);
        return AGG_EFULL;
    }
    pending = s->end - atomic_load_explicit(&s->durable, memory_order_relaxed);
    if (pending > 0 && pending + framed > PENDING_MAX_BYTES) {
        atomic_store_explicit(&s->refused, REFUSED_BEHIND, memory_order_relaxed);
        return AGG_EFULL;
    }
    if ((c = room_for(s, framed)) == NULL)
        return AGG_ENOMEM;
    p = c->data + c->len;
    memcpy(p, record_magic, sizeof(record_magic));
    put_le32(p + 4, (uint32_t)len);
    put_le32(p + 8, 0); /* the spool thread computes the checksum */
    if (len > 0)
        memcpy(p + HDR_BYTES, rec, len);
    c->len += framed;
    *pos = s->end;
    s->end += framed;
    *next = s->end;
    atomic_fetch_add_explicit(&s->used, framed, memory_order_relaxed);
    if (atomic_load_explicit(&s->refused, memory_order_relaxed) != REFUSED_NONE)
        atomic_store_explicit(&s->refused, REFUSED_NONE, memory_order_relaxed);
    if (c->len >= CHUNK_BYTES) {
        hand_off(s, 0);
    } else if (!s->flush_armed) { /* hand it over once this loop iteration is done */
        s->flush_armed = true;
        event_active(s->flush_ev, EV_READ, 0);
    }
    return AGG_OK;
}

int st_spool_sync(struct st_spool *s, void (*fn)(void *arg), void *arg)
{
    uint64_t target = s->end;

    if (atomic_load(&s->durable) >= target) {
        fn(arg);
        return AGG_OK;
    }
    if (waiters_push(s, target, fn, arg) != AGG_OK)
        return AGG_ENOMEM;
    if (s->wcount == 1)
        atomic_store(&s->wake_at, target);
    hand_off(s, target);
    /* the thread may have published before it could see wake_at */
    if (atomic_load(&s->durable) >= atomic_load(&s->wake_at))
        event_active(s->done_ev, EV_READ, 0);
    return AGG_OK;
}

void st_spool_release(struct st_spool *s, uint64_t pos)
{
    uint64_t freed = 0;

    pthread_mutex_lock(&s->lock);
    if (pos > s->release_pos) {
        size_t n = releasable(s, pos);

        /* the room counts at once (the pipeline checks right after releasing); the
         * files go on the spool thread */
        for (size_t i = 0; i < n; i++) {
            if (!s->segs[i].released) {
                s->segs[i].released = true;
                freed += s->segs[i].bytes;
            }
        }
        s->release_pos = pos;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    if (freed > 0) {
        atomic_fetch_sub(&s->used, freed);
        atomic_store(&s->refused, REFUSED_NONE);
    }
}

/* ---- open and recovery -------------------------------------------------------------- */

/* mkdir -p <dir>, mode 0750 for what it creates. */
static int make_dirs(const char *dir, struct agg_err *err)
{
    char *path = agg_strdup(dir);

    if (path == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        (void)mkdir(path, 0750); /* a real problem shows in the last mkdir */
        *p = '/';
    }
    free(path);
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return agg_err_set(err, AGG_ERR, "could not create spool directory \"%s\": %s", dir,
                           strerror(errno));
    return AGG_OK;
}

/* Writes <len> bytes of <data> to <dir>/<name> via a temporary file, rename and fsyncs. */
static int write_file_durably(struct st_spool *s, const char *name, const char *data, size_t len,
                              struct agg_err *err)
{
    int fd = openat(s->dirfd, ID_TMP_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    ssize_t n;

    if (fd < 0)
        return agg_err_set(err, AGG_ERR, "could not create \"%s/%s\": %s", s->dir, ID_TMP_FILE,
                           strerror(errno));
    n = write(fd, data, len);
    if (n != (ssize_t)len || fsync(fd) != 0) {
        int e = n < 0 || n == (ssize_t)len ? errno : ENOSPC;

        close(fd);
        unlinkat(s->dirfd, ID_TMP_FILE, 0);
        return agg_err_set(err, AGG_ERR, "could not write \"%s/%s\": %s", s->dir, ID_TMP_FILE,
                           strerror(e));
    }
    close(fd);
    if (renameat(s->dirfd, ID_TMP_FILE, s->dirfd, name) != 0) {
        int e = errno;

        unlinkat(s->dirfd, ID_TMP_FILE, 0);
        return agg_err_set(err, AGG_ERR, "could not rename \"%s/%s\" to \"%s\": %s", s->dir,
                           ID_TMP_FILE, name, strerror(e));
    }
    if (fsync(s->dirfd) != 0)
        return agg_err_set(err, AGG_ERR, "could not fsync spool directory \"%s\": %s", s->dir,
                           strerror(errno));
    return AGG_OK;
}

/* Reads <dir>/spool.id, or creates it with 128 random bits. */
static int load_id(struct st_spool *s, struct agg_err *err)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[16];
    char text[34];
    ssize_t n;
    int rc, fd = openat(s->dirfd, ID_FILE, O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        n = read(fd, text, sizeof(text));
        close(fd);
        if (n != 33 || text[32] != '\n' || strspn(text, hex) != 32)
            return agg_err_set(err, AGG_EINVAL,
                               "cannot use spool id file \"%s/%s\": not 32 lower-case hex "
                               "digits and a newline (it names the spool's checkpoints: "
                               "restore it rather than delete it)",
                               s->dir, ID_FILE);
        memcpy(s->id, text, 32);
        s->id[32] = '\0';
        return AGG_OK;
    }
    if (errno != ENOENT)
        return agg_err_set(err, AGG_ERR, "could not open \"%s/%s\": %s", s->dir, ID_FILE,
                           strerror(errno));
    for (size_t got = 0; got < sizeof(raw);) {
        n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return agg_err_set(err, AGG_ERR, "could not get random bytes for the spool id: %s",
                               strerror(errno));
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        text[2 * i] = hex[raw[i] >> 4];
        text[2 * i + 1] = hex[raw[i] & 15];
    }
    text[32] = '\n';
    if ((rc = write_file_durably(s, ID_FILE, text, 33, err)) != AGG_OK)
        return rc;
    memcpy(s->id, text, 32);
    s->id[32] = '\0';
    return AGG_OK;
}

static int grow_segs(struct st_spool *s)
{
    return agg_grow((void **)&s->segs, sizeof(*s->segs), &s->cap_segs, s->nsegs + 1);
}

static int cmp_seg(const void *a, const void *b)
{
    uint64_t x = ((const struct seg *)a)->base, y = ((const struct seg *)b)->base;

    return x < y ? -1 : x > y;
}

static int list_segments(struct st_spool *s, struct agg_err *err)
{
    struct dirent *e;
    DIR *d;
    int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        int code = errno == ENOMEM ? AGG_ENOMEM : AGG_ERR;

        if (fd >= 0)
            close(fd);
        return agg_err_set(err, code, "could not list spool directory \"%s\": %s", s->dir,
                           strerror(errno));
    }
    while ((e = readdir(d)) != NULL) {
        uint64_t base;

        if (!parse_seg_name(e->d_name, &base))
            continue;
        if (grow_segs(s) != AGG_OK) {
            closedir(d);
            return agg_err_set(err, AGG_ENOMEM, "out of memory");
        }
        s->segs[s->nsegs].base = base;
        s->segs[s->nsegs].bytes = 0;
        s->segs[s->nsegs].released = false;
        s->nsegs++;
    }
    closedir(d);
    if (s->nsegs > 1)
        qsort(s->segs, s->nsegs, sizeof(*s->segs), cmp_seg);
    return AGG_OK;
}

static void note(struct st_spool_report *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends a sentence to rep->detail ("; " between them), truncating quietly. */
static void note(struct st_spool_report *rep, const char *fmt, ...)
{
    size_t used = strlen(rep->detail);
    va_list ap;

    if (used > 0 && used + 2 < sizeof(rep->detail)) {
        memcpy(rep->detail + used, "; ", 3);
        used += 2;
    }
    if (used + 1 >= sizeof(rep->detail))
        return;
    va_start(ap, fmt);
    vsnprintf(rep->detail + used, sizeof(rep->detail) - used, fmt, ap);
    va_end(ap);
}

struct recovery {
    struct st_spool_report *rep;
    const char *name;
    bool newest;
    uint64_t cut; /* offset of the torn tail of the newest segment, UINT64_MAX if none */
};

static int recovered_record(void *arg, uint64_t pos, uint64_t next, const void *rec, size_t len)
{
    struct recovery *rc = arg;

    (void)pos;
    (void)next;
    (void)rec;
    (void)len;
    rc->rep->records++;
    return 0;
}

static void recovered_damage(void *arg, uint64_t off, uint64_t bytes, const char *why, bool tail)
{
    struct recovery *rc = arg;

    if (tail && rc->newest) { /* a write the crash interrupted: cut, as never written */
        rc->cut = off;
        return;
    }
    rc->rep->skipped_bytes += bytes;
    rc->rep->damaged++;
    note(rc->rep, "segment %s: skipped %" PRIu64 " damaged bytes at offset %" PRIu64 " (%s)%s",
         rc->name, bytes, off, why, tail ? ", nothing intact after them" : "");
}

/* Scans segment <i>: counts its intact records, passes over damage, and cuts a torn
 * tail off the newest, which stays open for appending. */
static int recover_segment(struct st_spool *s, size_t i, struct reader *r,
                           struct st_spool_report *rep, struct agg_err *err)
{
    static const struct visit visit = {recovered_record, recovered_damage, NULL};
    struct visit v = visit;
    struct seg *g = &s->segs[i];
    char name[SEG_NAME_BYTES];
    struct recovery rc = {rep, name, i + 1 == s->nsegs, UINT64_MAX};
    struct stat st;
    uint64_t size, limit;
    int fd, code = AGG_OK;

    seg_name(name, g->base);
    fd = openat(s->dirfd, name, (rc.newest ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return agg_err_set(err, AGG_ERR, "could not open spool segment \"%s/%s\": %s", s->dir, name,
                           strerror(errno));
    if (fstat(fd, &st) != 0) {
        code = agg_err_set(err, AGG_ERR, "could not stat spool segment \"%s/%s\": %s", s->dir, name,
                           strerror(errno));
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        code = agg_err_set(err, AGG_EINVAL, "cannot use spool segment \"%s/%s\": not a file",
                           s->dir, name);
        goto out_close;
    }
    size = (uint64_t)st.st_size;
    limit = size;
    if (!rc.newest && s->segs[i + 1].base - g->base < limit)
        limit = s->segs[i + 1].base - g->base;
    v.arg = &rc;
    reader_reset(r, fd, name, limit);
    if ((code = scan_segment(r, g->base, 0, &v, err)) != AGG_OK)
        goto out_close;
    if (limit < size) {
        rep->skipped_bytes += size - limit;
        rep->damaged++;
        note(rep,
             "segment %s: skipped %" PRIu64 " bytes at offset %" PRIu64
             " (they overlap the next segment)",
             name, size - limit, limit);
    }
    if (rc.cut != UINT64_MAX) {
        if (ftruncate(fd, (off_t)rc.cut) != 0 || fdatasync(fd) != 0) {
            code = agg_err_set(err, AGG_ERR,
                               "could not cut the torn tail off spool segment "
                               "\"%s/%s\": %s",
                               s->dir, name, strerror(errno));
            goto out_close;
        }
        rep->cut_bytes += size - rc.cut;
        note(rep, "segment %s: cut a torn tail of %" PRIu64 " bytes at offset %" PRIu64, name,
             size - rc.cut, rc.cut);
        size = rc.cut;
    }
    g->bytes = size;
    if (rc.newest) {
        s->fd = fd;
        fd = -1;
    }
out_close:
    if (fd >= 0)
        close(fd);
    return code;
}

static int recover(struct st_spool *s, struct st_spool_report *rep, struct agg_err *err)
{
    struct reader r = {.fd = -1};
    uint64_t used = 0;
    struct seg *last;
    int rc = AGG_OK;

    if ((rc = list_segments(s, err)) != AGG_OK)
        return rc;
    if (s->nsegs == 0) {
        char name[SEG_NAME_BYTES];

        if (grow_segs(s) != AGG_OK)
            return agg_err_set(err, AGG_ENOMEM, "out of memory");
        seg_name(name, 0);
        s->fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (s->fd < 0)
            return agg_err_set(err, AGG_ERR, "could not create spool segment \"%s/%s\": %s", s->dir,
                               name, strerror(errno));
        if (fsync(s->dirfd) != 0)
            return agg_err_set(err, AGG_ERR, "could not fsync spool directory \"%s\": %s", s->dir,
                               strerror(errno));
        s->segs[0].base = 0;
        s->segs[0].bytes = 0;
        s->segs[0].released = false;
        s->nsegs = 1;
    } else {
        for (size_t i = 0; i < s->nsegs && rc == AGG_OK; i++)
            rc = recover_segment(s, i, &r, rep, err);
        free(r.buf);
        if (rc != AGG_OK)
            return rc;
    }
    for (size_t i = 0; i < s->nsegs; i++)
        used += s->segs[i].bytes;
    last = &s->segs[s->nsegs - 1];
    s->seg_base = last->base;
    s->seg_len = last->bytes;
    s->end = s->written = s->synced = last->base + last->bytes;
    s->lonely = true;
    atomic_store(&s->durable, s->end);
    atomic_store(&s->used, used);
    atomic_store(&s->nsegments, (int)s->nsegs);
    rep->start = s->segs[0].base;
    rep->end = s->end;
    rep->segments = (int)s->nsegs;
    return AGG_OK;
}

struct st_spool *st_spool_open(struct event_base *base, const struct st_spool_opts *opts,
                               struct st_spool_report *report, struct agg_err *err)
{
    struct st_spool_report scratch;
    pthread_condattr_t attr;
    struct st_spool *s;
    int64_t cap;

    if (report == NULL)
        report = &scratch;
    memset(report, 0, sizeof(*report));
    if (opts == NULL || opts->dir == NULL || opts->dir[0] == '\0') {
        agg_err_set(err, AGG_EINVAL, "spool.dir is empty");
        return NULL;
    }
    if (opts->max_bytes <= 0 || opts->segment_bytes < 0 || opts->fsync < AGG_SPOOL_FSYNC_ALWAYS ||
        opts->fsync > AGG_SPOOL_FSYNC_NEVER) {
        agg_err_set(err, AGG_EINVAL,
                    "invalid spool options (max_bytes %" PRId64 ", segment_bytes %" PRId64
                    ", fsync %d)",
                    opts->max_bytes, opts->segment_bytes, opts->fsync);
        return NULL;
    }
    s = agg_calloc(1, sizeof(*s));
    if (s == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &attr);
    pthread_condattr_destroy(&attr);
    s->fd = s->dirfd = -1;
    atomic_store(&s->wake_at, UINT64_MAX);
    s->base = base;
    s->fsync_mode = opts->fsync;
    s->max_bytes = opts->max_bytes;
    /* at most an eighth of max_bytes, so that releasing can always make room */
    s->seg_max = opts->segment_bytes > 0 ? opts->segment_bytes : DEFAULT_SEGMENT_BYTES;
    cap = opts->max_bytes / 8 > MIN_SEGMENT_CAP_BYTES ? opts->max_bytes / 8 : MIN_SEGMENT_CAP_BYTES;
    if (s->seg_max > cap)
        s->seg_max = cap;
    s->group_ms = opts->group_ms > 0 ? opts->group_ms : DEFAULT_GROUP_MS;
    if (s->group_ms > MAX_GROUP_MS)
        s->group_ms = MAX_GROUP_MS;
    s->dir = agg_strdup(opts->dir);
    if (s->dir == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    if (make_dirs(s->dir, err) != AGG_OK)
        goto fail;
    s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        agg_err_set(err, AGG_ERR, "could not open spool directory \"%s\": %s", s->dir,
                    strerror(errno));
        goto fail;
    }
    if (flock(s->dirfd, LOCK_EX | LOCK_NB) != 0) {
        agg_err_set(err, AGG_ERR, "cannot use spool directory \"%s\": %s", s->dir,
                    errno == EWOULDBLOCK ? "another spool (process) has it open" : strerror(errno));
        goto fail;
    }
    if (load_id(s, err) != AGG_OK || recover(s, report, err) != AGG_OK)
        goto fail;
    s->done_ev = event_new(base, -1, 0, on_done, s);
    s->flush_ev = event_new(base, -1, 0, on_flush, s);
    if (s->done_ev == NULL || s->flush_ev == NULL) {
        agg_err_set(err, AGG_ENOMEM, "out of memory");
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, thread_main, s) != 0) {
        agg_err_set(err, AGG_ERR, "could not start the spool thread");
        goto fail;
    }
    s->thread_started = true;
    return s;

fail:
    st_spool_free(s); /* copes with a half-built spool */
    return NULL;
}

void st_spool_free(struct st_spool *s)
{
    struct list l = {0};

    if (s == NULL)
        return;
    if (s->thread_started) {
        hand_off(s, 0);
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    while (s->wcount > 0) {
        struct waiter w = s->waiters[s->whead];

        s->whead = (s->whead + 1) % s->wcap;
        s->wcount--;
        w.fn(w.arg);
    }
    if (s->done_ev != NULL)
        event_free(s->done_ev);
    if (s->flush_ev != NULL)
        event_free(s->flush_ev);
    if (s->fd >= 0)
        close(s->fd);
    if (s->dirfd >= 0)
        close(s->dirfd); /* and with it the flock */
    free(s->cur);
    list_free(&s->queue);
    list_free(&s->todo);
    list_free(&s->unsynced);
    while (s->spare != NULL) {
        struct chunk *c = s->spare;

        s->spare = c->next;
        list_push(&l, c);
    }
    list_free(&l);
    free(s->segs);
    free(s->waiters);
    free(s->dir);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

const char *st_spool_id(const struct st_spool *s)
{
    return s->id;
}

/* ---- reading ------------------------------------------------------------------------ */

struct reading {
    int (*fn)(void *arg, uint64_t pos, uint64_t next, const void *rec, size_t len);
    void *arg;
    uint64_t from;
};

static int read_record(void *arg, uint64_t pos, uint64_t next, const void *rec, size_t len)
{
    struct reading *rd = arg;

    return pos >= rd->from ? rd->fn(rd->arg, pos, next, rec, len) : 0;
}

static void read_damage(void *arg, uint64_t off, uint64_t bytes, const char *why, bool tail)
{
    (void)arg; /* reported by st_spool_open */
    (void)off;
    (void)bytes;
    (void)why;
    (void)tail;
}

int st_spool_read(struct st_spool *s, uint64_t from,
                  int (*fn)(void *arg, uint64_t pos, uint64_t next, const void *rec, size_t len),
                  void *arg, struct agg_err *err)
{
    struct reading rd = {fn, arg, from};
    const struct visit v = {read_record, read_damage, &rd};
    struct reader r = {.fd = -1};
    uint64_t *bases;
    size_t n;
    int rc = AGG_OK;

    pthread_mutex_lock(&s->lock);
    n = s->nsegs;
    bases = agg_malloc(n * sizeof(*bases));
    for (size_t i = 0; bases != NULL && i < n; i++)
        bases[i] = s->segs[i].base;
    pthread_mutex_unlock(&s->lock);
    if (bases == NULL)
        return agg_err_set(err, AGG_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && rc == AGG_OK; i++) {
        char name[SEG_NAME_BYTES];
        uint64_t limit, off = 0;
        struct stat st;
        int fd;

        if (i + 1 < n && bases[i + 1] <= from)
            continue; /* wholly before <from> */
        seg_name(name, bases[i]);
        fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
            continue; /* released meanwhile */
        if (fd < 0 || fstat(fd, &st) != 0) {
            rc = agg_err_set(err, AGG_ERR, "could not read spool segment \"%s/%s\": %s", s->dir,
                             name, strerror(errno));
            if (fd >= 0)
                close(fd);
            break;
        }
        limit = (uint64_t)st.st_size;
        if (i + 1 < n && bases[i + 1] - bases[i] < limit)
            limit = bases[i + 1] - bases[i];
        reader_reset(&r, fd, name, limit);
        if (from > bases[i] && from - bases[i] < limit) {
            /* a record starts at <from> (a checkpoint): no need to read up to it */
            const unsigned char *payload;
            const char *why;
            uint32_t len;

            rc = check_at(&r, from - bases[i], bases[i], &len, &payload, &why, err);
            off = rc == 1 ? from - bases[i] : 0;
            rc = rc < 0 ? rc : AGG_OK;
        }
        if (rc == AGG_OK)
            rc = scan_segment(&r, bases[i], off, &v, err);
        close(fd);
    }
    free(r.buf);
    free(bases);
    return rc;
}

/* ---- gauges, checks, test hook ------------------------------------------------------ */

uint64_t st_spool_bytes(const struct st_spool *s)
{
    return atomic_load(&((struct st_spool *)s)->used);
}

uint64_t st_spool_durable(const struct st_spool *s)
{
    return atomic_load(&((struct st_spool *)s)->durable);
}

int st_spool_segments(const struct st_spool *s)
{
    return atomic_load(&((struct st_spool *)s)->nsegments);
}

bool st_spool_is_full(const struct st_spool *s)
{
    struct st_spool *m = (struct st_spool *)s;

    if (atomic_load(&m->failed))
        return true;
    switch (atomic_load(&m->refused)) {
    case REFUSED_NONE:
        return false;
    case REFUSED_BEHIND:
        return st_spool_is_behind(s);
    default:
        return true;
    }
}

bool st_spool_is_behind(const struct st_spool *s)
{
    struct st_spool *m = (struct st_spool *)s;

    /* half the limit: readers resume with room for a burst, not one record */
    return atomic_load(&m->refused) == REFUSED_BEHIND &&
           s->end - atomic_load(&m->durable) > PENDING_MAX_BYTES / 2;
}

void st_spool_problem(const struct st_spool *s, char *why, size_t size)
{
    struct st_spool *m = (struct st_spool *)s; /* the lock, not the state */

    if (size == 0)
        return;
    why[0] = '\0';
    if (atomic_load(&m->failed)) {
        pthread_mutex_lock(&m->lock);
        snprintf(why, size, "%s", m->problem);
        pthread_mutex_unlock(&m->lock);
        return;
    }
    switch (atomic_load(&m->refused)) {
    case REFUSED_FULL:
        snprintf(why, size,
                 "spool is full: %" PRIu64 " of %" PRId64 " bytes (spool.max_bytes) "
                 "in use until PostgreSQL commits",
                 atomic_load(&m->used), m->max_bytes);
        break;
    case REFUSED_BEHIND:
        snprintf(why, size,
                 "spool disk is behind: %" PRIu64 " bytes appended are not yet "
                 "durable",
                 PENDING_MAX_BYTES);
        break;
    default:
        break;
    }
}

int st_spool_check(const struct st_spool *s, struct agg_err *err)
{
    struct st_spool *m = (struct st_spool *)s; /* the lock, not the state */
    uint64_t durable = atomic_load(&m->durable), prev = 0, qend = UINT64_MAX;
    int rc = AGG_OK;

    if (s->cur != NULL && (s->cur->pos + s->cur->len != s->end || s->cur->len > s->cur->cap))
        return agg_err_set(err, AGG_ERR, "loop chunk [%" PRIu64 ", +%zu) does not end at %" PRIu64,
                           s->cur->pos, s->cur->len, s->end);
    if (durable > s->end)
        return agg_err_set(err, AGG_ERR, "durable %" PRIu64 " past the end %" PRIu64, durable,
                           s->end);
    for (size_t i = 0; i < s->wcount; i++) {
        uint64_t t = s->waiters[(s->whead + i) % s->wcap].target;

        if (t < prev || t > s->end)
            return agg_err_set(err, AGG_ERR, "sync target %" PRIu64 " out of order", t);
        prev = t;
    }
    pthread_mutex_lock(&m->lock);
    for (const struct chunk *c = m->queue.head; c != NULL && rc == AGG_OK; c = c->next) {
        if ((qend != UINT64_MAX && c->pos != qend) || c->len > c->cap)
            rc = agg_err_set(err, AGG_ERR, "queued chunk at %" PRIu64 " not contiguous", c->pos);
        qend = c->pos + c->len;
    }
    if (rc == AGG_OK && qend != UINT64_MAX && qend > s->end)
        rc = agg_err_set(err, AGG_ERR, "queue ends at %" PRIu64 " past %" PRIu64, qend, s->end);
    if (rc == AGG_OK && (m->nsegs == 0 || (int)m->nsegs != atomic_load(&m->nsegments)))
        rc = agg_err_set(err, AGG_ERR, "%zu segments, gauge says %d", m->nsegs,
                         atomic_load(&m->nsegments));
    for (size_t i = 1; rc == AGG_OK && i < m->nsegs; i++) {
        if (m->segs[i].base <= m->segs[i - 1].base)
            rc = agg_err_set(err, AGG_ERR, "segments out of order at %zu", i);
    }
    if (rc == AGG_OK && m->segs[m->nsegs - 1].base > s->end)
        rc = agg_err_set(err, AGG_ERR, "newest segment starts past the end %" PRIu64, s->end);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

void st_spool_inject_error(struct st_spool *s, bool on_fsync, int errnum, int after, int count)
{
    atomic_store(&s->inject_left, 0);
    atomic_store(&s->inject_errno, errnum);
    atomic_store(&s->inject_after, after);
    atomic_store(&s->inject_fsync, on_fsync);
    atomic_store(&s->inject_left, count);
}
