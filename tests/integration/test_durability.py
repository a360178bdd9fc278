"""Nothing acknowledged is ever lost, nothing is stored twice: SIGKILL, PostgreSQL
outages, a damaged spool, a full spool and SIGTERM, with the real binary and a real
PostgreSQL. Every event carries a unique id in correlation_id; a client records
which ids got a 2xx."""
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import psycopg2

import harness as h


class Streamer(threading.Thread):
    """Posts NDJSON batches of fresh ids until stopped; never resends an id, so an id
    found twice is a duplicate made by aggd."""

    def __init__(self, port, run, batch=50, pause=0.0, junk=0):
        """With <junk>, every <junk>th event is sent undecodable (ingest_rejects)."""
        super().__init__(daemon=True)
        self.port, self.run_id, self.batch, self.pause = port, run, batch, pause
        self.junk = junk
        self.acked, self.sent = [], 0
        self.refused = 0  # 503s seen
        self.halt = threading.Event()

    def run(self):
        n = 0
        while not self.halt.is_set():
            ids = [f"{self.run_id}-{n + i}" for i in range(self.batch)]
            lines = [json.dumps({"message": "durability", "correlation_id": i,
                                 "level": "info"}) for i in ids]
            if self.junk:
                lines = [l[:-1] if (n + k) % self.junk == 0 else l for k, l in enumerate(lines)]
            n += self.batch
            body = "".join(l + "\n" for l in lines)
            try:
                status, headers, _ = h.request(self.port, "POST", "/v1/logs", body=body,
                                               headers={"Content-Type": "application/x-ndjson"},
                                               timeout=5)
            except OSError:
                status = 0
            self.sent += len(ids)
            if 200 <= status < 300:
                self.acked.extend(ids)
            else:
                self.refused += status == 503
                time.sleep(0.05)
            if self.pause:
                time.sleep(self.pause)

    def stop(self):
        self.halt.set()
        self.join(30)


class DurabilityBase(unittest.TestCase):
    def setUp(self):
        self.cluster = h.Cluster()
        self.db = h.Database(self.cluster.admin)
        out = h.run_aggd("migrate", "up", "--set", f"database.url={self.db.url}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.spool = tempfile.mkdtemp(prefix="aggd-spool.")
        self.ports = None
        self.aggd = None
        self.run_id = "d" + uuid.uuid4().hex[:10]

    def tearDown(self):
        if self.aggd is not None:
            self.aggd.close()
        self.cluster.start()
        self.db.close()
        self.cluster.close()
        shutil.rmtree(self.spool, ignore_errors=True)

    def start(self, *extra, wait=True):
        if self.aggd is not None:
            self.aggd.close()
        self.aggd = h.Aggd(self.db.url, "--set", "ingest.http_auth=none",
                           "--set", "batch.max_ms=20", *extra, ports=self.ports,
                           spool=self.spool, wait_healthy=wait)
        self.ports = self.aggd.ports
        return self.aggd

    def counts(self):
        return h.correlation_counts(self.db.url, self.run_id + "-")

    def wait_drained(self, timeout=60):
        """Until /metrics says nothing is waiting (no batch in flight or open)."""
        def drained():
            _, _, text = self.aggd.get("/metrics")
            return "aggd_oldest_uncommitted_seconds 0\n" in text
        h.wait_for(drained, timeout, interval=0.2, what="spool drained")

    def assert_exactly_once(self, acked, counts, label):
        missing = [i for i in acked if i not in counts]
        dups = {i: c for i, c in counts.items() if c > 1}
        print(f"{label}: acknowledged {len(acked)}, stored {len(counts)} distinct, "
              f"missing {len(missing)}, duplicated {len(dups)}")
        self.assertEqual(missing, [], f"acknowledged but lost: {missing[:5]}")
        self.assertEqual(dups, {}, "stored more than once")


class KillTest(DurabilityBase):
    def test_sigkill_at_random_moments_loses_and_duplicates_nothing(self):
        rng = random.Random(int(time.time()))
        self.start()
        streamer = Streamer(self.ports["http"], self.run_id)
        streamer.start()
        for _ in range(6):
            time.sleep(rng.uniform(0.3, 1.5))
            self.aggd.proc.send_signal(signal.SIGKILL)
            self.aggd.proc.wait()
            time.sleep(rng.uniform(0, 0.3))
            self.start()
        time.sleep(0.5)
        streamer.stop()
        self.wait_drained()
        self.assertGreater(len(streamer.acked), 500, "the client got too little through")
        self.assert_exactly_once(streamer.acked, self.counts(), "after 6 SIGKILLs")
        self.assertEqual(self.aggd.stop(), 0, self.aggd.output())

    def test_sigkill_amid_undecodable_events_loses_and_duplicates_no_reject(self):
        rng = random.Random(int(time.time()))
        self.start()
        streamer = Streamer(self.ports["http"], self.run_id, junk=3)
        streamer.start()
        for _ in range(4):
            time.sleep(rng.uniform(0.3, 1.5))
            self.aggd.proc.send_signal(signal.SIGKILL)
            self.aggd.proc.wait()
            self.start()
        time.sleep(0.5)
        streamer.stop()
        self.wait_drained()
        counts = self.counts()
        with psycopg2.connect(self.db.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT substring(convert_from(raw, 'UTF8') from %s), count(*) "
                        "FROM ingest_rejects GROUP BY 1", (f'"({self.run_id}-[0-9]+)"',))
            rejects = {i: c for i, c in cur.fetchall() if i is not None}
        self.assertGreater(len(rejects), 100, "too few rejects to tell")
        self.assertEqual(set(rejects) & set(counts), set(), "both a row and a reject")
        counts.update(rejects)
        self.assert_exactly_once(streamer.acked, counts, "rows and rejects after 4 SIGKILLs")
        self.assertEqual(self.aggd.stop(), 0, self.aggd.output())


class OutageTest(DurabilityBase):
    def test_postgresql_down_for_twenty_seconds_mid_stream(self):
        self.start()
        streamer = Streamer(self.ports["http"], self.run_id, pause=0.01)
        streamer.start()
        time.sleep(2)
        self.cluster.stop()
        during = len(streamer.acked)
        time.sleep(20)
        status, _, body = self.aggd.get("/readyz")
        self.assertEqual(status, 503)
        self.assertIn("database", json.loads(body)["reason"])
        self.assertGreater(len(streamer.acked), during, "kept accepting into the spool")
        self.cluster.start()
        time.sleep(3)
        streamer.stop()
        self.wait_drained(90)
        self.assert_exactly_once(streamer.acked, self.counts(), "across a 20 s outage")
        metrics = self.aggd.get("/metrics")[2]
        self.assertRegex(metrics, r"aggd_writer_retries_total [1-9]")
        for name in ("aggd_spool_bytes", "aggd_spool_segments", "aggd_oldest_uncommitted_seconds",
                     "aggd_spool_replayed_total", "aggd_seconds_since_last_commit"):
            self.assertRegex(metrics, rf"(?m)^{name} -?[0-9.e+]+$")
        self.assertEqual(self.aggd.stop(), 0)


class DamageTest(DurabilityBase):
    def test_torn_tail_and_corrupt_byte_lose_only_the_damaged_records(self):
        # PostgreSQL down: everything stays in the spool, over several segments
        self.cluster.stop()
        self.start("--set", "spool.segment_bytes=64KiB")
        acked = []
        for n in range(40):
            ids = [f"{self.run_id}-{n * 25 + i}" for i in range(25)]
            body = "".join(json.dumps({"message": "x" * 100, "correlation_id": i}) + "\n"
                           for i in ids)
            status, _, _ = h.request(self.ports["http"], "POST", "/v1/logs", body=body,
                                     headers={"Content-Type": "application/x-ndjson"})
            self.assertEqual(status, 202)
            acked.extend(ids)
        self.aggd.proc.send_signal(signal.SIGKILL)
        self.aggd.proc.wait()
        segments = sorted(glob.glob(os.path.join(self.spool, "*.seg")))
        self.assertGreaterEqual(len(segments), 3)
        with open(segments[-1], "r+b") as f:  # a crash mid-write
            f.truncate(os.path.getsize(segments[-1]) - 37)
        with open(segments[0], "r+b") as f:   # a flipped byte in an older segment
            f.seek(os.path.getsize(segments[0]) // 2)
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 0xFF]))
        self.cluster.start()
        self.start()
        self.wait_drained()
        self.assertIn("recovered from damage", self.aggd.output())
        counts = self.counts()
        missing = [i for i in acked if i not in counts]
        print(f"damaged spool: acknowledged {len(acked)}, stored {len(counts)}, "
              f"missing {len(missing)}")
        self.assertLessEqual(len(missing), 2, "only the torn and the corrupt record")
        self.assertTrue(all(c == 1 for c in counts.values()))
        self.assertEqual(self.aggd.stop(), 0)


class FullSpoolTest(DurabilityBase):
    def test_full_spool_refuses_http_blocks_tcp_and_loses_nothing(self):
        self.cluster.stop()
        self.start("--set", "spool.max_bytes=1MiB", "--set", "spool.segment_bytes=64KiB")
        acked, refused, n = [], None, 0
        while refused is None and n < 100000:
            ids = [f"{self.run_id}-{n + i}" for i in range(50)]
            n += 50
            body = "".join(json.dumps({"message": "y" * 200, "correlation_id": i}) + "\n"
                           for i in ids)
            status, headers, text = h.request(self.ports["http"], "POST", "/v1/logs",
                                              body=body,
                                              headers={"Content-Type": "application/x-ndjson"})
            if status == 503:
                refused = headers
            else:
                self.assertEqual(status, 202, text)
                doc = json.loads(text)
                taken = len(ids) - len(doc["errors"])
                acked.extend(ids[:taken])  # a partly full spool reports the rest
        self.assertIsNotNone(refused, "the spool never filled")
        self.assertEqual(refused["retry-after"], "1")
        # a TCP sender is held back: its writes stop completing
        tcp_sent = {"bytes": 0}
        sock = socket.create_connection(("127.0.0.1", self.ports["syslog_tcp"]))
        sock.settimeout(2)
        line = f"<14>1 - h app - - - tcp-{self.run_id}\n".encode()
        try:
            for _ in range(200000):
                sock.sendall(line * 100)
                tcp_sent["bytes"] += len(line) * 100
        except socket.timeout:
            pass
        self.assertLess(tcp_sent["bytes"], 100 * 1024 * 1024, "TCP was never held back")
        self.cluster.start()
        sock.settimeout(30)
        sock.sendall(b"<14>1 - h app - - - last-" + self.run_id.encode() + b"\n")
        sock.close()
        self.wait_drained(120)
        self.assert_exactly_once(acked, self.counts(), "full spool")
        conn = psycopg2.connect(self.db.url)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM system_logs WHERE message = %s",
                        (f"last-{self.run_id}",))
            self.assertEqual(cur.fetchone()[0], 1)
        conn.close()
        self.assertEqual(self.aggd.stop(), 0)


class DiskFullTest(DurabilityBase):
    """A request whose events meet a full disk is answered (503 + Retry-After) within
    a bound, not when space returns."""

    def test_request_caught_by_a_full_disk_is_answered_in_time(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a small tmpfs")
        mnt = tempfile.mkdtemp(prefix="aggd-disk.")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt], check=True)
        self.addCleanup(os.rmdir, mnt)
        self.addCleanup(subprocess.run, ["umount", "-l", mnt], check=False)
        self.spool = os.path.join(mnt, "spool")
        self.cluster.stop()  # nothing leaves the spool
        self.start("--set", "spool.segment_bytes=256KiB")
        answers, acked, n = [], [], 0
        while len([a for a in answers if a[0] == 503]) < 3 and n < 20000:
            ids = [f"{self.run_id}-{n + i}" for i in range(50)]
            n += 50
            body = "".join(json.dumps({"message": "z" * 1000, "correlation_id": i}) + "\n"
                           for i in ids)
            t0 = time.monotonic()
            status, headers, text = h.request(self.ports["http"], "POST", "/v1/logs",
                                              body=body, timeout=10,
                                              headers={"Content-Type": "application/x-ndjson"})
            answers.append((status, time.monotonic() - t0))
            if status == 202:
                taken = len(ids) - len(json.loads(text)["errors"])
                acked.extend(ids[:taken])
            else:
                self.assertEqual(status, 503, text)
                self.assertEqual(headers["retry-after"], "1")
        slowest = max(t for _, t in answers)
        print(f"full disk: {len(answers)} requests, {len(acked)} events acknowledged, "
              f"slowest answer {slowest:.2f} s")
        self.assertGreaterEqual(len([a for a in answers if a[0] == 503]), 3, answers[-5:])
        self.assertLess(slowest, 5.0, "a request waited for space to return")
        # space returns: aggd resumes by itself, and nothing acknowledged is lost
        self.cluster.start()  # batches land, segments go, space returns
        def accepting():
            status, _, _ = h.request(self.ports["http"], "POST", "/v1/logs",
                                     body=json.dumps({"message": "after"}) + "\n",
                                     headers={"Content-Type": "application/x-ndjson"})
            return status == 202
        h.wait_for(accepting, 60, interval=0.5, what="ingest to resume once space returned")
        self.wait_drained(60)
        self.assert_exactly_once(acked, self.counts(), "full disk")
        self.assertEqual(self.aggd.stop(), 0)


class SpillTest(DurabilityBase):
    """Busy writers neither hold nor bounce requests: batches that cannot be written
    leave memory, stay in the spool and are read back, in order, once a writer is
    free."""

    def post(self, first, n, out):
        ids = [f"{self.run_id}-{first + i}" for i in range(n)]
        body = "".join(json.dumps({"message": "spill", "correlation_id": i}) + "\n"
                       for i in ids)
        t0 = time.monotonic()
        status, headers, text = h.request(self.ports["http"], "POST", "/v1/logs", body=body,
                                          headers={"Content-Type": "application/x-ndjson"},
                                          timeout=30)
        out.update(status=status, headers=headers, seconds=time.monotonic() - t0, ids=ids,
                   text=text)

    def metric(self, name):
        return self.aggd.metric(name)

    def test_busy_writers_spill_to_the_spool_and_read_back_in_order(self):
        self.start("--set", "writer.threads=1", "--set", "batch.max_rows=5")
        blocker = psycopg2.connect(self.db.url)
        acked = []
        try:
            with blocker.cursor() as cur:
                cur.execute("LOCK TABLE system_logs IN ACCESS EXCLUSIVE MODE")
            for k in range(20):  # far more than the writer and the open batch hold
                got = {}
                self.post(k * 50, 50, got)
                self.assertEqual(got["status"], 202, got)
                self.assertLess(got["seconds"], 2.0, "held while the writers were busy")
                acked += got["ids"]
            self.assertGreater(self.metric("aggd_spool_spilled_total"), 900)
            self.assertGreater(self.metric("aggd_spool_backlog_bytes"), 0)
        finally:
            blocker.rollback()
            blocker.close()
        self.wait_drained(60)
        self.assert_exactly_once(acked, self.counts(), "spilled requests")
        h.wait_for(lambda: self.metric("aggd_spool_backlog_bytes") == 0, 10,
                   what="the backlog to be read back")
        with psycopg2.connect(self.db.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT correlation_id FROM system_logs ORDER BY id")
            order = [int(r[0].rsplit("-", 1)[1]) for r in cur.fetchall()]
        self.assertEqual(order, sorted(order), "rows landed out of spool order")


class TermTest(DurabilityBase):
    def test_sigterm_under_load_exits_zero_and_the_rest_lands_next_start(self):
        self.start("--set", "writer.grace_seconds=3")
        streamer = Streamer(self.ports["http"], self.run_id)
        streamer.start()
        time.sleep(2)
        self.cluster.stop()  # so some batches cannot land before the grace ends
        time.sleep(1)
        started = time.monotonic()
        self.aggd.proc.send_signal(signal.SIGTERM)
        rc = self.aggd.proc.wait(timeout=15)
        elapsed = time.monotonic() - started
        streamer.stop()
        self.assertEqual(rc, 0, self.aggd.output())
        self.assertLess(elapsed, 3 + 2, "stopped within the grace period")
        self.cluster.start()
        self.start()
        self.wait_drained()
        self.assert_exactly_once(streamer.acked, self.counts(), "SIGTERM then restart")
        self.assertEqual(self.aggd.stop(), 0)


if __name__ == "__main__":
    h.main()
