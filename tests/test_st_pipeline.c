/*
 * tests/test_st_pipeline.c — the pipeline with a real spool (temp dir), a real
 * event_base and real writers on a fresh PostgreSQL database: every event lands once,
 * waiters are answered in order, batches spill to the spool while the writers are
 * blocked and are read back, a replay stores nothing twice, allocation failures while
 * adding lose nothing. st_pipeline_check() runs after every mutation.
 *
 * Needs AGGD_TEST_DATABASE_URL (a server where it may create and drop a database);
 * exits 77 (skipped, which scripts/test.sh counts as a failure) without it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <libpq-fe.h>

#include "core/alloc.h"
#include "core/metrics.h"
#include "store/batch.h"
#include "store/copy.h"
#include "store/migrate.h"
#include "store/pipeline.h"
#include "store/pool.h"
#include "store/spool.h"

static char db_name[64];
static char conninfo[512];    /* the test database */
static const char *admin_url; /* AGGD_TEST_DATABASE_URL */

struct fixture {
    char dir[64];
    struct event_base *base;
    struct st_spool *spool;
    struct agg_metrics *metrics;
    struct st_pool *pool;
    struct st_pipeline *p;
    int threads;
    int64_t max_rows;
};

struct waits {
    int answered;
    int order[16]; /* waiter ids in the order they were answered */
    bool all_landed;
    size_t refused;
    struct event_base *base;
    int want;
};

/* ---- database --------------------------------------------------------------- */

static PGconn *connect_to(const char *name)
{
    const char *keys[] = {"dbname", "dbname", NULL};
    const char *values[] = {admin_url, name, NULL};
    PGconn *c = PQconnectdbParams(keys, values, 1);

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "test_st_pipeline: cannot connect: %s", PQerrorMessage(c));
        exit(1);
    }
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);

    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "test_st_pipeline: %s: %s", sql, PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
}

static long long count_of(const char *sql)
{
    PGconn *c = connect_to(db_name);
    PGresult *r = PQexec(c, sql);
    long long n;

    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return n;
}

/* A fresh database, migrated; dropped by drop_database(). */
static int create_database(void **state)
{
    PGconn *admin = connect_to(NULL), *c;
    char sql[160];
    struct agg_err err = {0};

    (void)state;
    snprintf(db_name, sizeof(db_name), "aggd_u_pipeline_%ld", (long)getpid());
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", db_name);
    exec_ok(admin, sql);
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\" TEMPLATE template0", db_name);
    exec_ok(admin, sql);
    PQfinish(admin);
    c = connect_to(db_name);
    if (st_migrate_up(c, NULL, &err) != AGG_OK) {
        fprintf(stderr, "test_st_pipeline: migrate: %s\n", err.msg);
        exit(1);
    }
    snprintf(conninfo, sizeof(conninfo), "host='%s' port='%s' user='%s' dbname='%s'", PQhost(c),
             PQport(c), PQuser(c), db_name);
    PQfinish(c);
    return 0;
}

static int drop_database(void **state)
{
    PGconn *admin = connect_to(NULL);
    char sql[160];

    (void)state;
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", db_name);
    exec_ok(admin, sql);
    PQfinish(admin);
    return 0;
}

/* ---- fixture ---------------------------------------------------------------- */

static void check(const struct fixture *f)
{
    struct agg_err err = {0};

    if (st_pipeline_check(f->p, &err) != AGG_OK)
        fail_msg("st_pipeline_check: %s", err.msg);
    if (st_spool_check(f->spool, &err) != AGG_OK)
        fail_msg("st_spool_check: %s", err.msg);
}

/* Opens the spool in f->dir and builds the pipeline over it (the one place that knows
 * st_pipeline_new's options). */
static void start(struct fixture *f)
{
    struct st_spool_opts sopts = {
        .dir = f->dir, .max_bytes = INT64_C(1) << 30, .fsync = AGG_SPOOL_FSYNC_NEVER};
    struct st_pipeline_opts opts = {
        .batch = {.max_rows = f->max_rows, .max_ms = 20},
        .writer = {.threads = f->threads, .grace_seconds = 5},
        .accept_past_months = 3,
    };
    struct agg_err err = {0};

    f->base = event_base_new();
    assert_non_null(f->base);
    f->spool = st_spool_open(f->base, &sopts, NULL, &err);
    if (f->spool == NULL)
        fail_msg("st_spool_open: %s", err.msg);
    f->metrics = agg_metrics_new(&err);
    assert_non_null(f->metrics);
    f->pool = st_pool_new(conninfo, f->threads, 0, 0, &err);
    assert_non_null(f->pool);
    f->p = st_pipeline_new(f->base, &opts, f->pool, f->spool, f->metrics, &err);
    if (f->p == NULL)
        fail_msg("st_pipeline_new: %s", err.msg);
    check(f);
}

/* Frees everything but the spool directory, which a restart opens again. */
static void stop(struct fixture *f)
{
    check(f);
    st_pipeline_free(f->p);
    st_spool_free(f->spool);
    st_pool_free(f->pool);
    agg_metrics_free(f->metrics);
    event_base_free(f->base);
    f->p = NULL;
    f->spool = NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/aggd-test-pipeline-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->threads = 1;
    f->max_rows = 50;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];

    if (f->p != NULL)
        stop(f);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_st_pipeline: could not remove %s\n", f->dir);
    free(f);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

/* Adds event <tag>-<i> (correlation_id) and checks the pipeline. */
static int add(struct fixture *f, const char *tag, int i)
{
    char corr[64], msg[64];
    struct agg_record rec;
    int rc;

    snprintf(corr, sizeof(corr), "%s-%d", tag, i);
    snprintf(msg, sizeof(msg), "event %d of %s", i, tag);
    agg_record_init(&rec);
    rec.str[AGG_F_MESSAGE] = (struct agg_str){msg, strlen(msg)};
    rec.str[AGG_F_CORRELATION_ID] = (struct agg_str){corr, strlen(corr)};
    rec.raw = (struct agg_str){msg, strlen(msg)};
    rc = st_pipeline_add(f->p, &rec, AGG_TRANSPORT_HTTP, "127.0.0.1:1", agg_time_now_us());
    check(f);
    return rc;
}

static long long stored(const char *tag)
{
    char sql[200];

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM system_logs WHERE correlation_id LIKE '%s-%%'",
             tag);
    return count_of(sql);
}

static long long stored_distinct(const char *tag)
{
    char sql[200];

    snprintf(sql, sizeof(sql),
             "SELECT count(DISTINCT correlation_id) FROM system_logs WHERE correlation_id "
             "LIKE '%s-%%'",
             tag);
    return count_of(sql);
}

struct waiter_arg {
    struct waits *w;
    int id;
};

static void on_landed(void *arg, bool landed, size_t refused)
{
    struct waiter_arg *a = arg;
    struct waits *w = a->w;

    w->order[w->answered++] = a->id;
    w->all_landed = w->all_landed && landed;
    w->refused += refused;
    if (w->answered == w->want)
        event_base_loopbreak(w->base);
}

/* Runs the loop (checking the pipeline every 10 ms) until <w> has <want> answers;
 * fails after 60 s. */
static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    check(arg);
}

static void run_until(struct fixture *f, struct waits *w)
{
    struct timeval limit = {60, 0}, tick = {0, 10000};
    struct event *poll = event_new(f->base, -1, EV_PERSIST, on_poll, f);

    assert_non_null(poll);
    event_add(poll, &tick);
    if (w->answered < w->want) {
        event_base_loopexit(f->base, &limit);
        event_base_dispatch(f->base);
    }
    event_free(poll);
    assert_int_equal(w->answered, w->want);
    check(f);
}

static void replay_done(void *arg)
{
    *(bool *)arg = true;
}

static void replay(struct fixture *f)
{
    struct timeval limit = {60, 0}, tick = {0, 10000};
    struct event *poll = event_new(f->base, -1, EV_PERSIST, on_poll, f);
    bool done = false;

    assert_non_null(poll);
    event_add(poll, &tick);
    st_pipeline_replay(f->p, replay_done, &done);
    check(f);
    while (!done) {
        event_base_loopexit(f->base, &limit);
        assert_int_equal(event_base_loop(f->base, EVLOOP_ONCE), 0);
        check(f);
    }
    event_free(poll);
    assert_true(st_pipeline_accepting(f->p));
}

/* Waits for everything added so far to land. */
static void land_all(struct fixture *f)
{
    struct waits w = {.all_landed = true, .base = f->base, .want = 1};
    struct waiter_arg a = {&w, 0};

    assert_int_equal(st_pipeline_wait(f->p, 0, on_landed, &a), AGG_OK);
    check(f);
    run_until(f, &w);
    assert_true(w.all_landed);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_pipeline_lands_every_event_once_and_answers_waiters_in_order(void **state)
{
    struct fixture *f = *state;
    struct waits w = {.all_landed = true};
    struct waiter_arg args[5];

    f->threads = 2;
    start(f);
    w.base = f->base;
    w.want = 5;
    for (int k = 0; k < 5; k++) {
        uint64_t from = st_pipeline_tail(f->p);

        for (int i = 0; i < 120; i++)
            assert_int_equal(add(f, "once", k * 120 + i), AGG_OK);
        args[k] = (struct waiter_arg){&w, k};
        assert_int_equal(st_pipeline_wait(f->p, from, on_landed, &args[k]), AGG_OK);
        check(f);
    }
    run_until(f, &w);
    assert_true(w.all_landed);
    assert_int_equal(w.refused, 0);
    for (int k = 0; k < 5; k++)
        assert_int_equal(w.order[k], k);
    assert_int_equal(stored("once"), 600);
    assert_int_equal(stored_distinct("once"), 600);
    stop(f);
}

static void test_pipeline_keeps_rejects_and_counts_refused_rows(void **state)
{
    struct fixture *f = *state;
    struct waits w = {.all_landed = true, .want = 1};
    struct waiter_arg a = {&w, 0};
    struct agg_record rec;
    uint64_t from;
    char big[40];

    start(f);
    w.base = f->base;
    from = st_pipeline_tail(f->p);
    assert_int_equal(st_pipeline_reject(f->p, AGG_TRANSPORT_JSON_TCP, "10.0.0.9:7", 1,
                                        "not JSON: rejtest", "{oops", 5),
                     AGG_OK);
    check(f);
    /* request_method is VARCHAR(10): PostgreSQL refuses the row, not the batch */
    memset(big, 'M', sizeof(big));
    agg_record_init(&rec);
    rec.str[AGG_F_MESSAGE] = (struct agg_str){"refused", 7};
    rec.str[AGG_F_CORRELATION_ID] = (struct agg_str){"refused-1", 9};
    rec.str[AGG_F_REQUEST_METHOD] = (struct agg_str){big, sizeof(big)};
    assert_int_equal(st_pipeline_add(f->p, &rec, AGG_TRANSPORT_HTTP, NULL, agg_time_now_us()),
                     AGG_OK);
    check(f);
    assert_int_equal(add(f, "kept", 1), AGG_OK);
    assert_int_equal(st_pipeline_wait(f->p, from, on_landed, &a), AGG_OK);
    run_until(f, &w);
    assert_true(w.all_landed);
    assert_int_equal(stored("kept"), 1);
    assert_int_equal(count_of("SELECT count(*) FROM ingest_rejects WHERE error LIKE "
                              "'%rejtest%'"),
                     1);
    /* the row over VARCHAR(10) either lands truncated or is refused; never both */
    assert_int_equal(stored("refused") + (long long)w.refused, 1);
    stop(f);
}

static void test_pipeline_spills_while_writers_are_blocked_and_reads_back(void **state)
{
    struct fixture *f = *state;
    PGconn *lock = connect_to(db_name);

    f->threads = 1; /* two batches in flight at most */
    f->max_rows = 20;
    start(f);
    /* partitions exist before the writer needs to create one under the lock */
    assert_int_equal(add(f, "warm", 0), AGG_OK);
    land_all(f);
    exec_ok(lock, "BEGIN; LOCK TABLE system_logs IN ACCESS EXCLUSIVE MODE");
    for (int i = 0; i < 400; i++) {
        assert_int_equal(add(f, "spill", i), AGG_OK);
        if (i % 40 == 0) { /* let the batch timer and the writers turn */
            event_base_loop(f->base, EVLOOP_NONBLOCK);
            check(f);
        }
    }
    exec_ok(lock, "COMMIT");
    PQfinish(lock);
    land_all(f);
    assert_int_equal(stored("spill"), 400);
    assert_int_equal(stored_distinct("spill"), 400);
    {
        struct evbuffer *buf = evbuffer_new();
        const char *text, *at;

        assert_int_equal(agg_metrics_render(f->metrics, buf), AGG_OK);
        evbuffer_add(buf, "", 1);
        text = (const char *)evbuffer_pullup(buf, -1);
        at = strstr(text, "\naggd_spool_spilled_total ");
        assert_non_null(at);
        assert_true(strtoll(at + strlen("\naggd_spool_spilled_total "), NULL, 10) > 0);
        evbuffer_free(buf);
    }
    stop(f);
}

/* Turns the spool record <rec> of a row into the one a build before binary COPY wrote:
 * kind 1, the row as the COPY text line <text>. */
static void as_text_record(struct agg_buf *rec, const struct agg_buf *text)
{
    struct agg_buf old;
    size_t peer = (size_t)(unsigned char)rec->data[2] | (size_t)(unsigned char)rec->data[3] << 8;
    size_t tuple = 0, raw;

    for (int i = 0; i < 4; i++)
        tuple |= (size_t)(unsigned char)rec->data[16 + i] << (8 * i);
    raw = rec->len - 24 - peer - tuple;
    agg_buf_init(&old);
    assert_int_equal(agg_buf_append(&old, rec->data, 24 + peer), AGG_OK);
    old.data[0] = 1;
    for (int i = 0; i < 4; i++)
        old.data[16 + i] = (char)(text->len >> (8 * i));
    assert_int_equal(agg_buf_append(&old, text->data, text->len), AGG_OK);
    assert_int_equal(agg_buf_append(&old, rec->data + 24 + peer + tuple, raw), AGG_OK);
    agg_buf_clear(rec);
    *rec = old;
}

/* Spool records written with no pipeline (as if aggd died after spooling them) land
 * once on replay; replaying again, and adding more, stores nothing twice. Every other
 * record is a row as a build before binary COPY spooled it (COPY text). */
static void test_pipeline_replay_stores_nothing_twice(void **state)
{
    struct fixture *f = *state;
    struct st_spool_opts sopts = {
        .dir = f->dir, .max_bytes = INT64_C(1) << 30, .fsync = AGG_SPOOL_FSYNC_NEVER};
    struct st_copy_scratch scratch;
    struct st_batch *b = st_batch_new();
    struct event_base *base = event_base_new();
    struct agg_err err = {0};
    struct st_spool *s;
    struct agg_buf rec, text;

    assert_non_null(b);
    assert_non_null(base);
    agg_buf_init(&text);
    s = st_spool_open(base, &sopts, NULL, &err);
    assert_non_null(s);
    st_copy_scratch_init(&scratch);
    agg_buf_init(&rec);
    for (int i = 0; i < 150; i++) {
        char corr[32];
        struct agg_record r;
        uint64_t pos, next;

        snprintf(corr, sizeof(corr), "replay-%d", i);
        agg_record_init(&r);
        r.str[AGG_F_MESSAGE] = (struct agg_str){"spooled", 7};
        r.str[AGG_F_CORRELATION_ID] = (struct agg_str){corr, strlen(corr)};
        assert_int_equal(st_batch_add(b, &r, agg_time_now_us(), AGG_TIME_NONE,
                                      AGG_TRANSPORT_SYSLOG_TCP, "p", 0, &scratch),
                         AGG_OK);
        assert_int_equal(st_batch_record(b, b->nrows - 1, false, &rec), AGG_OK);
        if (i % 2 == 1) {
            agg_buf_reset(&text);
            assert_int_equal(
                st_copy_encode(&text, ST_COPY_TEXT, &r, agg_time_now_us(), AGG_TIME_NONE, &scratch),
                AGG_OK);
            as_text_record(&rec, &text);
        }
        assert_int_equal(st_spool_append(s, rec.data, rec.len, &pos, &next), AGG_OK);
    }
    st_spool_free(s); /* writes and closes */
    event_base_free(base);
    agg_buf_clear(&rec);
    agg_buf_clear(&text);
    st_copy_scratch_clear(&scratch);
    st_batch_free(b);

    start(f);
    replay(f);
    land_all(f);
    assert_int_equal(stored("replay"), 150);
    stop(f);

    start(f); /* everything is committed: a second replay skips it all */
    replay(f);
    for (int i = 0; i < 30; i++)
        assert_int_equal(add(f, "after", i), AGG_OK);
    land_all(f);
    assert_int_equal(stored("replay"), 150);
    assert_int_equal(stored_distinct("replay"), 150);
    assert_int_equal(stored("after"), 30);
    stop(f);
}

static void test_pipeline_add_out_of_memory_sweep_reaches_success(void **state)
{
    struct fixture *f = *state;
    int taken = 0;
    bool reached = false;

    start(f);
    for (long n = 0; !reached && n < 200; n++) {
        int rc;

        agg_alloc_fail_after_here(n);
        rc = add(f, "oom", taken);
        agg_alloc_fail_after_here(-1);
        if (rc == AGG_OK) {
            taken++;
            reached = true;
        } else {
            assert_int_equal(rc, AGG_ENOMEM);
        }
    }
    assert_true(reached);
    /* a batch that fills up and goes out, under the same sweep */
    for (long n = 0; taken < 60 && n < 10000; n = (n + 1) % 8) {
        int rc;

        agg_alloc_fail_after_here(n);
        rc = add(f, "oom", taken);
        agg_alloc_fail_after_here(-1);
        if (rc == AGG_OK)
            taken++;
        else
            assert_int_equal(rc, AGG_ENOMEM);
    }
    land_all(f);
    /* what was refused left no trace; what was taken landed once */
    assert_int_equal(stored("oom"), taken);
    assert_int_equal(stored_distinct("oom"), taken);
    stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_pipeline_lands_every_event_once_and_answers_waiters_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_keeps_rejects_and_counts_refused_rows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_pipeline_spills_while_writers_are_blocked_and_reads_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_replay_stores_nothing_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_add_out_of_memory_sweep_reaches_success,
                                        setup, teardown),
    };

    admin_url = getenv("AGGD_TEST_DATABASE_URL");
    if (admin_url == NULL || admin_url[0] == '\0') {
        fprintf(stderr, "test_st_pipeline: AGGD_TEST_DATABASE_URL is not set: skipped\n");
        return 77;
    }
    evthread_use_pthreads();
    return cmocka_run_group_tests_name("st_pipeline", tests, create_database, drop_database);
}
