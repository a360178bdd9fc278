/*
 * tests/test_agg_workq.c — the work queue: items worked on by threads and handed back
 * on the loop, every one exactly once; stopping with items in flight; allocation
 * failures. agg_workq_check() runs after every mutation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <pthread.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "core/alloc.h"
#include "core/workq.h"

#define NITEMS 200

struct item {
    struct agg_work work; /* first: the queue's link */
    int id;
    _Atomic int worked; /* times the work callback saw it */
    bool off_loop;      /* worked on a thread other than the loop's */
    bool had_state;     /* the work callback got its thread's state */
};

struct ctx {
    struct event_base *base;
    struct agg_workq *q;
    pthread_t loop;
    _Atomic int inits, finis;
    pthread_mutex_t gate_lock;
    pthread_cond_t gate_cond;
    bool gate_open;     /* work waits until it is */
    bool sleepy;        /* work sleeps (agg_workq_sleep) until the stop deadline */
    int order[NITEMS];  /* ids in the order they came back */
    int back;           /* items handed back */
    int want;           /* break the loop once this many are back */
    bool done_off_loop; /* a done callback ran on another thread */
};

static void check(const struct agg_workq *q)
{
    struct agg_err err = {0};

    if (agg_workq_check(q, &err) != AGG_OK)
        fail_msg("agg_workq_check: %s", err.msg);
}

static void *thread_init(void *arg)
{
    struct ctx *c = arg;

    atomic_fetch_add(&c->inits, 1);
    return c; /* the state: checked by work */
}

static void thread_fini(void *arg, void *state)
{
    struct ctx *c = arg;

    if (state == c)
        atomic_fetch_add(&c->finis, 1);
}

static void work(void *arg, void *state, struct agg_work *w)
{
    struct ctx *c = arg;
    struct item *it = (struct item *)w;

    it->off_loop = !pthread_equal(pthread_self(), c->loop);
    it->had_state = state == c;
    pthread_mutex_lock(&c->gate_lock);
    while (!c->gate_open)
        pthread_cond_wait(&c->gate_cond, &c->gate_lock);
    pthread_mutex_unlock(&c->gate_lock);
    while (c->sleepy && agg_workq_sleep(c->q, 60000))
        continue; /* woken early (a submit, the stop): sleep on to the deadline */
    atomic_fetch_add(&it->worked, 1);
}

static void done(void *arg, struct agg_work *w)
{
    struct ctx *c = arg;
    struct item *it = (struct item *)w;

    if (!pthread_equal(pthread_self(), c->loop))
        c->done_off_loop = true;
    assert_null(w->next);
    c->order[c->back++] = it->id;
    if (c->back == c->want)
        event_base_loopbreak(c->base);
}

static const struct agg_workq_ops ops = {thread_init, thread_fini, work, done};

static void ctx_init(struct ctx *c, bool gate_open)
{
    memset(c, 0, sizeof(*c));
    c->base = event_base_new();
    assert_non_null(c->base);
    c->loop = pthread_self();
    c->gate_open = gate_open;
    pthread_mutex_init(&c->gate_lock, NULL);
    pthread_cond_init(&c->gate_cond, NULL);
}

static void ctx_clear(struct ctx *c)
{
    pthread_mutex_destroy(&c->gate_lock);
    pthread_cond_destroy(&c->gate_cond);
    event_base_free(c->base);
}

static void open_gate(struct ctx *c)
{
    pthread_mutex_lock(&c->gate_lock);
    c->gate_open = true;
    pthread_cond_broadcast(&c->gate_cond);
    pthread_mutex_unlock(&c->gate_lock);
}

/* Runs the loop until every item wanted is back, failing after 30 s. */
static void run_until_back(struct ctx *c)
{
    struct timeval limit = {30, 0};

    event_base_loopexit(c->base, &limit);
    event_base_dispatch(c->base);
    assert_int_equal(c->back, c->want);
}

static void submit_all(struct ctx *c, struct item *items, int n)
{
    for (int i = 0; i < n; i++) {
        items[i].id = i;
        agg_workq_submit(c->q, &items[i].work);
        check(c->q);
    }
}

static void expect_each_worked_once(const struct ctx *c, const struct item *items, int n)
{
    bool seen[NITEMS] = {false};

    for (int i = 0; i < n; i++) {
        assert_int_equal(atomic_load(&items[i].worked), 1);
        assert_true(items[i].off_loop);
        assert_true(items[i].had_state);
        assert_false(seen[c->order[i]]);
        seen[c->order[i]] = true;
    }
    assert_false(c->done_off_loop);
}

static void test_workq_works_every_item_off_the_loop_and_hands_it_back_on_it(void **state)
{
    static struct item items[NITEMS];
    struct agg_err err = {0};
    struct ctx c;

    (void)state;
    memset(items, 0, sizeof(items));
    ctx_init(&c, true);
    c.q = agg_workq_new(c.base, 3, &ops, &c, &err);
    assert_non_null(c.q);
    check(c.q);
    c.want = NITEMS;
    submit_all(&c, items, NITEMS);
    assert_int_equal(agg_workq_inflight(c.q), NITEMS);
    run_until_back(&c);
    check(c.q);
    assert_int_equal(agg_workq_inflight(c.q), 0);
    assert_int_equal(agg_workq_queued(c.q), 0);
    expect_each_worked_once(&c, items, NITEMS);
    agg_workq_free(c.q);
    /* once joined, every thread made its state and tore it down */
    assert_int_equal(atomic_load(&c.inits), 3);
    assert_int_equal(atomic_load(&c.finis), 3);
    ctx_clear(&c);
}

static void test_workq_with_one_thread_hands_items_back_in_order(void **state)
{
    static struct item items[NITEMS];
    struct agg_err err = {0};
    struct ctx c;

    (void)state;
    memset(items, 0, sizeof(items));
    ctx_init(&c, false);
    c.q = agg_workq_new(c.base, 1, &ops, &c, &err);
    assert_non_null(c.q);
    c.want = NITEMS;
    submit_all(&c, items, NITEMS);
    /* the thread holds at most one item: the rest wait in the queue */
    assert_true(agg_workq_queued(c.q) >= NITEMS - 1);
    check(c.q);
    open_gate(&c);
    run_until_back(&c);
    check(c.q);
    for (int i = 0; i < NITEMS; i++)
        assert_int_equal(c.order[i], i);
    expect_each_worked_once(&c, items, NITEMS);
    agg_workq_free(c.q);
    ctx_clear(&c);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_workq_stop_hands_back_items_in_flight(void **state)
{
    struct item items[6];
    struct agg_err err = {0};
    struct ctx c;
    int64_t t0;

    (void)state;
    memset(items, 0, sizeof(items));
    ctx_init(&c, true);
    c.sleepy = true; /* each item sleeps until the stop deadline */
    c.q = agg_workq_new(c.base, 2, &ops, &c, &err);
    assert_non_null(c.q);
    c.want = -1; /* the loop does not run: stop itself hands the items back */
    submit_all(&c, items, 6);
    t0 = now_ms();
    agg_workq_stop(c.q, 100);
    /* waited for the grace period, not for the 60 s sleeps */
    assert_true(now_ms() - t0 >= 90);
    assert_true(now_ms() - t0 < 10000);
    check(c.q);
    assert_int_equal(c.back, 6);
    assert_int_equal(agg_workq_inflight(c.q), 0);
    expect_each_worked_once(&c, items, 6);
    assert_true(agg_workq_expired(c.q));
    agg_workq_stop(c.q, 100); /* twice is harmless */
    check(c.q);
    assert_int_equal(c.back, 6);
    agg_workq_free(c.q);
    assert_int_equal(atomic_load(&c.finis), 2);
    ctx_clear(&c);
}

static void test_workq_free_hands_back_what_is_queued(void **state)
{
    struct item items[5];
    struct agg_err err = {0};
    struct ctx c;

    (void)state;
    memset(items, 0, sizeof(items));
    ctx_init(&c, true);
    c.q = agg_workq_new(c.base, 1, &ops, &c, &err);
    assert_non_null(c.q);
    c.want = -1;
    submit_all(&c, items, 5);
    assert_false(agg_workq_expired(c.q)); /* not stopping */
    agg_workq_free(c.q); /* no grace: still every item is worked once and handed back */
    assert_int_equal(c.back, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(atomic_load(&items[i].worked), 1);
    ctx_clear(&c);
}

static void test_workq_new_out_of_memory_sweep_reaches_success(void **state)
{
    struct item items[3];
    bool reached = false;

    (void)state;
    for (long n = 0; !reached && n < 100; n++) {
        struct agg_err err = {0};
        struct ctx c;

        memset(items, 0, sizeof(items));
        ctx_init(&c, true);
        agg_alloc_fail_after(n);
        c.q = agg_workq_new(c.base, 2, &ops, &c, &err);
        agg_alloc_fail_after(-1);
        if (c.q == NULL) {
            assert_int_equal(err.code, AGG_ENOMEM);
            assert_int_equal(atomic_load(&c.inits), 0);
        } else {
            reached = true;
            check(c.q);
            c.want = 3;
            submit_all(&c, items, 3);
            run_until_back(&c);
            expect_each_worked_once(&c, items, 3);
            agg_workq_free(c.q);
        }
        ctx_clear(&c);
    }
    assert_true(reached);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workq_works_every_item_off_the_loop_and_hands_it_back_on_it),
        cmocka_unit_test(test_workq_with_one_thread_hands_items_back_in_order),
        cmocka_unit_test(test_workq_stop_hands_back_items_in_flight),
        cmocka_unit_test(test_workq_free_hands_back_what_is_queued),
        cmocka_unit_test(test_workq_new_out_of_memory_sweep_reaches_success),
    };

    evthread_use_pthreads();
    return cmocka_run_group_tests_name("agg_workq", tests, NULL, NULL);
}
