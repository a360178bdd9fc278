"""The API while PostgreSQL hangs: with every server process of a private cluster
stopped (SIGSTOP), a request whose job cannot finish is answered 503 with Retry-After
within the job deadline (API_JOB_DEADLINE_S, 10 s) instead of hanging for the whole
freeze, and so is one whose token check cannot finish (api/session.c, 10 s); after SIGCONT the API answers again, and the late results were dropped safely
(aggd exits cleanly, sanitizers quiet)."""
import os
import signal
import time
import unittest

import apikit
import harness as h

DEADLINE_S = 10  # api/req.h API_JOB_DEADLINE_S
QUEUE_MAX = 128  # api/req.h API_QUEUE_MAX


def server_pids(cluster):
    """The postmaster of <cluster> and its children."""
    with open(os.path.join(cluster.dir, "data", "postmaster.pid")) as f:
        master = int(f.readline())
    pids = [master]
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == master:
            pids.append(int(name))
    return pids


class FrozenDatabase(unittest.TestCase):
    def setUp(self):
        self.cluster = h.Cluster()
        self.env = None
        self.frozen = []
        try:
            self.env = apikit.ApiEnv(admin=self.cluster.admin)
        except BaseException:
            self.cluster.close()
            raise

    def tearDown(self):
        self.thaw()
        try:
            if self.env is not None:
                self.env.close()
        finally:
            self.cluster.close()

    def freeze(self):
        self.frozen = server_pids(self.cluster)
        for pid in self.frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self):
        for pid in self.frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.frozen = []

    def test_requests_get_503_within_the_deadline_and_work_after_the_thaw(self):
        env = self.env
        # warm: the admin token is checked and cached, pooled connections exist
        self.assertEqual(env.call("GET", "/api/v1/users")[0], 200)
        self.freeze()
        t0 = time.monotonic()
        code, doc, headers = env.call("GET", "/api/v1/users")
        took = time.monotonic() - t0
        self.assertEqual(code, 503, doc)
        self.assertEqual(doc["error"]["code"], "unavailable")
        self.assertGreater(int(headers["retry-after"]), 0)
        self.assertLess(took, DEADLINE_S + 5)
        # later requests queue behind the hung ones: each still gets its answer in time
        t0 = time.monotonic()
        code, _, headers = env.call("GET", "/api/v1/pipelines")
        self.assertEqual(code, 503)
        self.assertIn("retry-after", headers)
        self.assertLess(time.monotonic() - t0, DEADLINE_S + 5)
        # a token never checked before: its lookup hangs too, and is answered in time
        t0 = time.monotonic()
        code, doc, headers = env.call("GET", "/api/v1/pipelines", who="viewer")
        self.assertEqual(code, 503, doc)
        self.assertIn("retry-after", headers)
        self.assertLess(time.monotonic() - t0, DEADLINE_S + 5)
        self.thaw()
        h.wait_for(lambda: env.call("GET", "/api/v1/users")[0] == 200, 30,
                   interval=0.5, what="the API to answer after the thaw")
        h.wait_for(lambda: env.call("GET", "/api/v1/pipelines", who="viewer")[0] == 200, 30,
                   interval=0.5, what="token checks after the thaw")
        self.assertIn("no answer from the database", env.aggd.output())


    def test_requests_beyond_the_queue_bound_are_refused_at_once(self):
        import concurrent.futures

        env = self.env
        self.assertEqual(env.call("GET", "/api/v1/users")[0], 200)
        self.freeze()

        def one(_):
            t0 = time.monotonic()
            code, doc, _ = env.call("GET", "/api/v1/users")
            return code, (doc or {}).get("error", {}).get("code"), time.monotonic() - t0

        n = QUEUE_MAX + 40
        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
            answers = list(pool.map(one, range(n)))
        self.assertTrue(all(code == 503 for code, _, _ in answers), answers)
        busy = [took for _, ecode, took in answers if ecode == "busy"]
        # the queue holds QUEUE_MAX jobs that wait for the deadline; the rest are
        # refused without waiting (their memory is never held)
        self.assertGreaterEqual(len(busy), n - QUEUE_MAX)
        self.assertLess(max(busy), DEADLINE_S / 2)
        self.assertTrue(all(took < DEADLINE_S + 5 for _, _, took in answers), answers)
        self.thaw()
        h.wait_for(lambda: env.call("GET", "/api/v1/users")[0] == 200, 30,
                   interval=0.5, what="the API to answer after the thaw")


class SlowStatement(unittest.TestCase):
    """A statement that waits on a lock is cancelled by statement_timeout (9 s) while
    the lock is still held, not left waiting for it."""

    def setUp(self):
        self.env = apikit.ApiEnv()

    def tearDown(self):
        self.env.close()

    def test_a_blocked_statement_is_cancelled_and_answered_503(self):
        import psycopg2

        env = self.env
        self.assertEqual(env.call("GET", "/api/v1/transformations")[0], 200)
        locker = psycopg2.connect(env.db.url)
        watcher = psycopg2.connect(env.db.url)
        watcher.autocommit = True

        def waiting():
            with watcher.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'aggd' AND wait_event_type = 'Lock' AND query LIKE "
                            "'%FROM transformations%'")
                return cur.fetchone()[0]

        try:
            with locker.cursor() as cur:
                cur.execute("LOCK TABLE transformations IN ACCESS EXCLUSIVE MODE")
            t0 = time.monotonic()
            code, doc, headers = env.call("GET", "/api/v1/transformations")
            self.assertEqual(code, 503, doc)
            self.assertIn("retry-after", headers)
            self.assertLess(time.monotonic() - t0, DEADLINE_S + 5)
            # the lock is still held: only statement_timeout ends the wait
            try:
                h.wait_for(lambda: waiting() == 0, 15, interval=0.2,
                           what="the blocked statement to be cancelled")
            except AssertionError:
                with watcher.cursor() as cur:
                    cur.execute("SELECT pid, state, wait_event_type, query_start, query FROM "
                                "pg_stat_activity WHERE application_name = 'aggd'")
                    raise AssertionError(cur.fetchall()) from None
        finally:
            locker.rollback()
            locker.close()
            watcher.close()
        self.assertEqual(env.call("GET", "/api/v1/transformations")[0], 200)


if __name__ == "__main__":
    h.main()
