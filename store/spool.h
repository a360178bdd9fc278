/*
 * store/spool.h — the disk spool: every accepted event is appended here before it is
 * acknowledged, and replayed after a crash until PostgreSQL has it.
 *
 * Place: pipeline (loop) -> [spool: segments in spool.dir] ; writer commits record
 *        positions in ingest_checkpoints; the pipeline releases what is committed.
 * Threads: st_spool_append/_sync/_release and the sync callbacks on the event-loop
 *          thread; writing and fsync on the spool's own thread; st_spool_open and
 *          st_spool_read before the loop runs (any one thread).
 * Ownership: the spool owns its files and buffers; appended bytes are copied.
 * Traps: a position is a byte offset in the spool's logical stream (segment base +
 *        offset), so positions only grow, across restarts too. A torn or corrupt
 *        record is detected by its checksum and never handed out.
 * Not here: the on-disk format and the recovery rules (docs/spool.md).
 */
#ifndef AGGD_STORE_SPOOL_H
#define AGGD_STORE_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "core/config.h"
#include "core/err.h"

struct st_spool;

struct st_spool_opts {
    const char *dir;       /* created if missing (mode 0750) */
    int64_t max_bytes;     /* spool.max_bytes: appends beyond it get AGG_EFULL */
    int fsync;             /* enum agg_spool_fsync */
    int64_t segment_bytes; /* rotate after this many bytes (default 64 MiB if 0);
                              capped at max_bytes / 8 (at least 4 KiB) so that
                              releasing can always make room */
    int group_ms;          /* fsync=batch: the longest a sync waits for company;
                              data is fsynced within group_ms of being written
                              (2 if <= 0; see docs/spool.md) */
};

/* What opening found. */
struct st_spool_report {
    uint64_t start; /* first position still on disk */
    uint64_t end;   /* position the next append gets */
    int segments;
    uint64_t records;       /* intact records on disk */
    uint64_t skipped_bytes; /* bytes of damaged records passed over */
    uint64_t cut_bytes;     /* bytes of a torn tail cut off the newest segment */
    int damaged;            /* damaged places found (each reported in <detail>) */
    char detail[512];       /* a human sentence about the damage and the cut tail,
                               "" if none */
};

/* Opens (creating) the spool in opts->dir and recovers it: scans every segment,
 * cuts a torn tail off the newest, passes over damaged records elsewhere (searching
 * for the next intact one). The spool's id (random, kept in <dir>/spool.id) names
 * its checkpoints. <base> is borrowed until free; the thread starts here. <opts> is
 * copied; <report> may be NULL. Damage is not an error (it is in <report>); a
 * directory another spool holds open, an unreadable spool.id or I/O errors are.
 * Caller owns the result: st_spool_free(). */
struct st_spool *st_spool_open(struct event_base *base, const struct st_spool_opts *opts,
                               struct st_spool_report *report, struct agg_err *err);

/* Writes what is buffered, fsyncs (unless fsync=never), stops the thread, closes,
 * then calls every sync callback still waiting, in order: durable now, unless the
 * disk failed (then the spool has logged what was lost; none of it was acknowledged
 * before). Those callbacks must not call the spool. Loop thread; NULL is ignored. */
void st_spool_free(struct st_spool *s);

/* The spool's id: 32 hex characters. */
const char *st_spool_id(const struct st_spool *s);

/* Reads every intact record at or after <from>, in order, calling <fn> with its
 * position, the position after it and its payload (valid during the call); stops
 * early when <fn> returns non-zero (and returns that). Damage is passed over silently
 * (st_spool_open reported it). Once appends have started, only records before
 * st_spool_durable() are whole on disk: <fn> must stop at that position. Loop thread. */
int st_spool_read(struct st_spool *s, uint64_t from,
                  int (*fn)(void *arg, uint64_t pos, uint64_t next, const void *rec, size_t len),
                  void *arg, struct agg_err *err);

/* Appends one record (copied); *<pos> gets its position and *<next> the position
 * after it. AGG_EFULL when the spool holds max_bytes already, the disk is full or
 * failing, or 64 MiB appended are not yet durable; AGG_EINVAL when <len> is over
 * 64 MiB; AGG_ENOMEM. Nothing is appended on error. Loop thread; never blocks. */
int st_spool_append(struct st_spool *s, const void *rec, size_t len, uint64_t *pos, uint64_t *next);

/* Calls <fn>(<arg>) on the loop thread once every record appended so far is durable
 * per spool.fsync (written, and fsynced unless never). May call it before returning
 * when that is already so. AGG_ENOMEM is the only failure. */
int st_spool_sync(struct st_spool *s, void (*fn)(void *arg), void *arg);

/* Everything before <pos> is committed in PostgreSQL: segments wholly before it are
 * deleted (on the spool thread). */
void st_spool_release(struct st_spool *s, uint64_t pos);

/* Every record before this position is on disk (written, and fsynced unless
 * fsync=never) and can be read back. Any thread. */
uint64_t st_spool_durable(const struct st_spool *s);

/* Gauges for /metrics and /readyz: bytes and segments on disk (and buffered). Any
 * thread. */
uint64_t st_spool_bytes(const struct st_spool *s);
int st_spool_segments(const struct st_spool *s);

/* True while appends are refused: full, the disk failed (st_spool_problem says why), or
 * behind as below. Loop thread. */
bool st_spool_is_full(const struct st_spool *s);

/* True while appends are refused only because the disk has not caught up with what was
 * appended (not yet durable): it passes by itself. Loop thread. */
bool st_spool_is_behind(const struct st_spool *s);
void st_spool_problem(const struct st_spool *s, char *why, size_t size);

/* Invariant validator for tests: AGG_OK, or AGG_ERR with what is wrong. Loop thread. */
int st_spool_check(const struct st_spool *s, struct agg_err *err);

/* Test hook: after <after> more writes (or, with <on_fsync>, fsyncs) of the spool
 * thread succeed, the next <count> fail with errno <errnum>; <count> 0 turns it off.
 * Any thread. */
void st_spool_inject_error(struct st_spool *s, bool on_fsync, int errnum, int after, int count);

#endif
