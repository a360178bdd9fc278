#!/usr/bin/env python3
"""
tests/integration/test_partitions.py — `aggd partitions maintain|list` and `aggd archive
list|verify|restore` against a real PostgreSQL: partitions created from the clock
(--now) across a year boundary, the archive round trip (files, manifests, zstd -dc,
verify, restore to identical rows), crash safety at every archive state
(AGGD_TEST_FAIL_AFTER), corrupted archives, alerts kept while open, two maintainers
at once, and a clock jump: a month still receiving rows is not archived
(partitions.archive_grace_hours), and a month archived and then re-created by ingest is
restored and archived again by merging.

Environment: see harness.py (AGGD_TEST_DATABASE_URL, AGGD_BIN); exits 77 without them.
Prints "N passed, M failed" last.
"""
import csv
import datetime
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import psycopg2

import harness as h

LOCK_PARTITIONS = 0x6167676400000002
TABLES = ("system_logs", "alerts")
MONTHS3 = ("2026-01", "2026-02", "2026-03")


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def month_add(ym, n):
    y, m = int(ym[:4]), int(ym[5:7])
    k = y * 12 + m - 1 + n
    return f"{k // 12:04d}-{k % 12 + 1:02d}"


def month_range(a, b):
    out = [a]
    while out[-1] != b:
        out.append(month_add(out[-1], 1))
    return out


class PartitionsTest(unittest.TestCase):
    def setUp(self):
        self.db = h.Database()
        self.archive = tempfile.mkdtemp(prefix="aggd-archive-")
        out = self.aggd("migrate", "up")
        if out.returncode != 0:
            self.tearDown()
            raise AssertionError(f"migrate up failed: {out.stderr}")
        self.conn = psycopg2.connect(self.db.url)
        self.conn.autocommit = True

    def tearDown(self):
        if getattr(self, "conn", None) is not None:
            self.conn.close()
        self.db.close()
        shutil.rmtree(self.archive, ignore_errors=True)

    # ---- helpers ----

    def aggd(self, *args, env=None):
        e = dict(os.environ)
        e.pop("AGGD_TEST_FAIL_AFTER", None)
        e.update(env or {})
        return h.run_aggd(*args, "--set", f"database.url={self.db.url}",
                          "--set", f"archive.dir={self.archive}", env=e)

    def maintain(self, now, *extra, env=None, ok=True):
        out = self.aggd("partitions", "maintain", "--now", now, *extra, env=env)
        if ok:
            self.assertEqual(out.returncode, 0, out.stderr + out.stdout)
        return out

    def q(self, sql, *args):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else None

    def attached(self, table):
        rows = self.q("""SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                          WHERE i.inhparent = %s::regclass ORDER BY 1""", table)
        return [r[0][len(table) + 1:].replace("_", "-") for r in rows]

    def exists(self, table, ym):
        name = f"{table}_{ym.replace('-', '_')}"
        return self.q("SELECT to_regclass(%s) IS NOT NULL", name)[0][0]

    def state(self, table, ym):
        rows = self.q("SELECT state FROM partition_archives WHERE table_name = %s "
                      "AND month = %s::date", table, ym + "-01")
        return rows[0][0] if rows else None

    def files(self, table, ym):
        base = os.path.join(self.archive, table, ym)
        return base + ".csv.zst", base + ".manifest.json"

    def insert_logs(self, ym, n=4):
        """Rows with every column type, awkward text and NULLs in month <ym>."""
        uid = self.q("INSERT INTO users (email, hashed_password, role) VALUES (%s, 'x', "
                     "'viewer') ON CONFLICT (email) DO UPDATE SET role = 'viewer' "
                     "RETURNING id", "p@example.com")[0][0]
        texts = ["plain", 'quotes " and "" doubled', "tab\there", "new\nline\r\nCRLF",
                 "ünïcødé ✓ 日本", "comma, and \\backslash", "", "NULL"]
        for i in range(n):
            t = texts[i % len(texts)]
            self.q("""INSERT INTO system_logs (level, message, logger_name, module,
                        function_name, line_number, correlation_id, user_id, request_id,
                        request_method, request_path, request_ip, duration_ms,
                        memory_usage_mb, exception_type, exception_message, stack_trace,
                        extra_data, created_at)
                      VALUES (%s, %s, %s, NULL, %s, %s, %s, %s, NULL, 'GET', %s, '::1', %s,
                              %s, NULL, %s, %s, %s, %s)""",
                   "INFO" if i % 2 else "ERROR", t, "log." + t[:5], t, i, f"c-{i}",
                   uid if i % 3 == 0 else None, "/p?q=" + t[:4], i * 10,
                   1.5 + i / 3 if i % 2 else None, t if i % 2 else None,
                   "trace\n" + t, json.dumps({"k": t, "n": i, "nested": [1, None]}),
                   f"{ym}-{1 + i % 28:02d} {i % 24:02d}:00:00.{i:06d}")
        # The month's edges.
        self.q("INSERT INTO system_logs (level, message, created_at) VALUES "
               "('INFO', 'first', %s), ('INFO', 'last', "
               "(%s::date + interval '1 month' - interval '1 microsecond'))",
               ym + "-01 00:00:00", ym + "-01")

    def md5(self, first, last):
        return self.q("""SELECT count(*), md5(string_agg(t::text, '|' ORDER BY id))
                           FROM system_logs t WHERE created_at >= %s::date
                            AND created_at < %s::date + interval '1 month'""",
                      first + "-01", last + "-01")[0]

    def assert_safe(self):
        """Never a month missing from the database without a verified archive."""
        for table in TABLES:
            for month, state in self.q("SELECT to_char(month, 'YYYY-MM'), state FROM "
                                       "partition_archives WHERE table_name = %s", table):
                if not self.exists(table, month):
                    self.assertIn(state, ("verified", "dropped"), (table, month))
                    out = self.aggd("archive", "verify", month, "--table", table)
                    self.assertEqual(out.returncode, 0, out.stderr)

    # ---- tests ----

    def test_maintain_creates_from_clock_across_year_boundary(self):
        steps = ["2025-10-15T12:00:00Z", "2025-11-30T23:59:59Z", "2025-12-31T23:59:59.999Z",
                 "2026-01-01T00:00:00Z", "2026-02-28", "2026-06-01T00:00:00+00:00",
                 "2026-12-31T10:00:00Z", "2027-01-15"]
        for now in steps:
            ym = now[:7]
            self.maintain(now)
            for table in TABLES:
                parts = self.attached(table)
                # current and premake_months (2) ahead exist
                for m in month_range(ym, month_add(ym, 2)):
                    self.assertIn(m, parts, (now, table))
                # nothing older than retention (3) stays attached
                for m in parts:
                    self.assertGreaterEqual(m, month_add(ym, -3), (now, table))
                self.assertLessEqual(max(parts), month_add(ym, 2))
            # rows in every month land in their own partition
            for m in self.attached("system_logs"):
                rows = self.q("""INSERT INTO system_logs (level, message, created_at)
                                 VALUES ('INFO', 'x', %s), ('INFO', 'y',
                                   %s::date + interval '1 month' - interval '1 microsecond')
                                 RETURNING tableoid::regclass::text""",
                              m + "-01", m + "-01")
                self.assertEqual({r[0] for r in rows}, {"system_logs_" + m.replace("-", "_")})
        # the data never creates partitions: the clock does
        self.assertNotIn("2027-04", self.attached("system_logs"))

    def test_archive_round_trip_restores_identical_rows(self):
        self.maintain("2026-01-15")
        for m in MONTHS3:
            self.insert_logs(m, n=12)
        before = {m: self.md5(m, m) for m in MONTHS3}
        out = self.maintain("2026-07-01")
        self.assertIn("6 archived, 0 failed", out.stdout)
        for m in MONTHS3:
            self.assertFalse(self.exists("system_logs", m))
            self.assertEqual(self.state("system_logs", m), "dropped")
            data, manifest = self.files("system_logs", m)
            self.assertTrue(os.path.exists(data) and os.path.exists(manifest))
            man = load_json(manifest)
            self.assertEqual(man["table"], "system_logs")
            self.assertEqual(man["month"], m)
            self.assertEqual(man["rows"], before[m][0])
            self.assertEqual(man["compressed_bytes"], os.path.getsize(data))
            self.assertIn("created_at", man["columns"])
            self.assertGreater(man["schema_version"], 0)
            plain = subprocess.run(["zstd", "-dc", data], check=True,
                                   capture_output=True).stdout
            self.assertEqual(hashlib.sha256(plain).hexdigest(), man["sha256"])
            rows = list(csv.reader(io.StringIO(plain.decode("utf-8"), newline="")))
            self.assertEqual(rows[0], man["columns"])
            self.assertEqual(len(rows) - 1, man["rows"])
            out = self.aggd("archive", "verify", m)
            self.assertEqual(out.returncode, 0, out.stderr)
        listing = self.aggd("archive", "list")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertIn("system_logs\t2026-02\t", listing.stdout)
        plist = self.aggd("partitions", "list")
        self.assertEqual(plist.returncode, 0, plist.stderr)
        self.assertIn("system_logs\t2026-01\tarchived\tdropped", plist.stdout)
        for m in MONTHS3:
            out = self.aggd("archive", "restore", m)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(self.state("system_logs", m), "restored")
            self.assertEqual(self.md5(m, m), before[m])
        self.assertIn("2026-02", self.attached("system_logs"))
        # a restored month looks like a created one: same indexes and constraints
        shape = """SELECT (SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass),
                          (SELECT string_agg(contype::text, ',' ORDER BY contype::text)
                             FROM pg_constraint WHERE conrelid = %s::regclass)"""
        self.assertEqual(self.q(shape, "system_logs_2026_02", "system_logs_2026_02"),
                         self.q(shape, "system_logs_2026_07", "system_logs_2026_07"))
        # a restored month stays until asked
        self.maintain("2026-07-01")
        self.assertTrue(self.exists("system_logs", "2026-02"))
        self.maintain("2026-07-01", "--rearchive")
        self.assertFalse(self.exists("system_logs", "2026-02"))
        self.assertEqual(self.state("system_logs", "2026-02"), "dropped")
        out = self.aggd("archive", "verify", "2026-02")
        self.assertEqual(out.returncode, 0, out.stderr)

    def archive_snapshot(self):
        """What an archive run leaves behind, comparable across databases."""
        return self.q("""SELECT table_name, to_char(month, 'YYYY-MM'), state, row_count,
                                sha256, compressed_bytes, min_created_at, max_created_at,
                                min_id, max_id, error
                           FROM partition_archives ORDER BY 1, 2""")

    def run_archive(self, step=None):
        """Three months of rows archived at 2026-07-01, crashing after <step> each time
        when given; returns (md5 of the rows before, archive snapshot)."""
        self.maintain("2026-01-15")
        for m in MONTHS3:
            self.insert_logs(m, n=6)
        before = self.md5(MONTHS3[0], MONTHS3[-1])
        crashes = 0
        while step is not None and crashes < 20:
            out = self.maintain("2026-07-01", env={"AGGD_TEST_FAIL_AFTER": step}, ok=False)
            self.assert_safe()
            if out.returncode == 0:
                break
            self.assertEqual(out.returncode, 1, out.stderr)
            self.assertIn("injected failure after " + step, out.stderr)
            crashes += 1
        if step is not None:
            # one crash per archived month (3 of system_logs, 3 of alerts)
            self.assertEqual(crashes, 6)
        self.maintain("2026-07-01")
        self.assert_safe()
        return before, self.archive_snapshot()

    def uninterrupted(self):
        """The same run without crashes, in a database and archive dir of its own."""
        saved = (self.db, self.archive, self.conn)
        self.db = h.Database()
        self.archive = tempfile.mkdtemp(prefix="aggd-archive-")
        self.conn = None
        try:
            self.assertEqual(self.aggd("migrate", "up").returncode, 0)
            self.conn = psycopg2.connect(self.db.url)
            self.conn.autocommit = True
            return self.run_archive()
        finally:
            if self.conn is not None:
                self.conn.close()
            self.db.close()
            shutil.rmtree(self.archive, ignore_errors=True)
            self.db, self.archive, self.conn = saved

    def crash_run(self, step):
        before, snapshot = self.run_archive(step)
        for table in TABLES:
            for m in MONTHS3:
                self.assertEqual(self.state(table, m), "dropped", (table, m))
                self.assertFalse(self.exists(table, m))
        # same files, hashes and figures as a run that never crashed
        self.assertEqual(snapshot, self.uninterrupted()[1])
        for m in MONTHS3:
            self.assertEqual(self.aggd("archive", "restore", m).returncode, 0)
        self.assertEqual(self.md5(MONTHS3[0], MONTHS3[-1]), before)

    def test_crash_after_detached_resumes(self):
        self.crash_run("detached")

    def test_crash_after_exported_resumes(self):
        self.crash_run("exported")

    def test_crash_after_verified_resumes(self):
        self.crash_run("verified")

    def test_crash_between_detach_and_record_resumes(self):
        self.maintain("2026-01-15")
        self.insert_logs("2026-01", n=5)
        before = self.md5("2026-01", "2026-01")
        self.q("ALTER TABLE system_logs DETACH PARTITION system_logs_2026_01")
        self.assertIsNone(self.state("system_logs", "2026-01"))
        self.maintain("2026-07-01")
        self.assertEqual(self.state("system_logs", "2026-01"), "dropped")
        self.assertEqual(self.aggd("archive", "restore", "2026-01").returncode, 0)
        self.assertEqual(self.md5("2026-01", "2026-01"), before)

    def test_interrupted_concurrent_detach_is_finalized(self):
        """A DETACH … CONCURRENTLY killed between its two transactions leaves the
        partition pending; the next run finalizes it and archives the month whole."""
        self.maintain("2026-01-15")
        self.insert_logs("2026-01", n=5)
        before = self.md5("2026-01", "2026-01")
        # July's partitions first, so the run below only has the detach to wait for
        self.maintain("2026-07-01", "--set", "partitions.retention_months=1200")
        # an open transaction that has seen system_logs makes the detach wait
        blocker = psycopg2.connect(self.db.url)
        with blocker.cursor() as cur:
            cur.execute("SELECT count(*) FROM system_logs")
        proc = subprocess.Popen([h.aggd_bin(), "partitions", "maintain", "--now", "2026-07-01",
                                 "--set", f"database.url={self.db.url}",
                                 "--set", f"archive.dir={self.archive}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def waiting():
                rows = self.q("""SELECT pid FROM pg_stat_activity WHERE query LIKE
                                 'ALTER TABLE%%DETACH PARTITION%%CONCURRENTLY%%'
                                 AND pid <> pg_backend_pid()""")
                pending = self.q("SELECT count(*) FROM pg_inherits WHERE inhdetachpending")
                return rows[0][0] if rows and pending[0][0] > 0 else None
            pid = h.wait_for(waiting, 30, interval=0.1, what="a detach waiting")
            self.q("SELECT pg_terminate_backend(%s)", pid)
            proc.communicate(timeout=30)
            self.assertNotEqual(proc.returncode, 0, "the interrupted run reported success")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            blocker.close()
        self.assertEqual(self.q("SELECT count(*) FROM pg_inherits WHERE inhdetachpending")[0][0], 1)
        self.assert_safe()
        out = self.maintain("2026-07-01")
        self.assertIn("detach finalized", out.stdout + out.stderr)
        self.assertEqual(self.state("system_logs", "2026-01"), "dropped")
        self.assertEqual(self.aggd("archive", "restore", "2026-01").returncode, 0)
        self.assertEqual(self.md5("2026-01", "2026-01"), before)

    def test_corrupted_archive_fails_verify_and_restore(self):
        self.maintain("2026-01-15")
        self.insert_logs("2026-01", n=40)
        self.maintain("2026-07-01")
        data, manifest = self.files("system_logs", "2026-01")
        size = os.path.getsize(data)
        with open(data, "r+b") as f:
            f.seek(size // 2)
            b = f.read(1)
            f.seek(size // 2)
            f.write(bytes([b[0] ^ 0x55]))
        out = self.aggd("archive", "verify", "2026-01")
        self.assertEqual(out.returncode, 1)
        self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)
        out = self.aggd("archive", "restore", "2026-01")
        self.assertEqual(out.returncode, 1)
        self.assertFalse(self.exists("system_logs", "2026-01"))
        self.assertEqual(self.state("system_logs", "2026-01"), "dropped")
        # a manifest that lies is caught too
        self.maintain("2026-07-01")
        _, man2 = self.files("alerts", "2026-01")
        m = load_json(man2)
        m["sha256"] = "0" * 64
        with open(man2, "w", encoding="utf-8") as f:
            json.dump(m, f)
        out = self.aggd("archive", "verify", "2026-01", "--table", "alerts")
        self.assertEqual(out.returncode, 1)
        # missing archive
        self.assertEqual(self.aggd("archive", "verify", "2025-01").returncode, 1)

    def test_verify_mismatch_leaves_table_detached(self):
        self.maintain("2026-01-15")
        self.insert_logs("2026-01", n=5)
        self.maintain("2026-07-01", env={"AGGD_TEST_FAIL_AFTER": "exported"}, ok=False)
        self.assertEqual(self.state("system_logs", "2026-01"), "exported")
        data, _ = self.files("system_logs", "2026-01")
        with open(data, "ab") as f:
            f.write(b"garbage")
        out = self.maintain("2026-07-01", ok=False)
        self.assertEqual(out.returncode, 1)
        self.assertEqual(self.state("system_logs", "2026-01"), "failed")
        self.assertTrue(self.exists("system_logs", "2026-01"))
        self.assertNotIn("2026-01", self.attached("system_logs"))
        err = self.q("SELECT error FROM partition_archives WHERE table_name = 'system_logs'")
        self.assertTrue(err[0][0])
        # the next run exports again and completes
        self.maintain("2026-07-01")
        self.assertEqual(self.state("system_logs", "2026-01"), "dropped")
        self.assertEqual(self.aggd("archive", "verify", "2026-01").returncode, 0)

    def test_alerts_month_kept_while_an_alert_is_open(self):
        self.maintain("2026-01-15")
        self.q("""INSERT INTO alerts (severity, status, metric_value, message, created_at)
                  VALUES ('high', 'open', 1, 'o', '2026-01-10'),
                         ('low', 'resolved', 2, 'r', '2026-01-11'),
                         ('low', 'closed', 3, 'c', '2026-02-11')""")
        self.maintain("2026-07-01")
        self.assertTrue(self.exists("alerts", "2026-01"))
        self.assertIsNone(self.state("alerts", "2026-01"))
        self.assertEqual(self.state("alerts", "2026-02"), "dropped")
        self.q("UPDATE alerts SET status = 'resolved' WHERE message = 'o'")
        self.maintain("2026-07-01")
        self.assertEqual(self.state("alerts", "2026-01"), "dropped")
        _, man = self.files("alerts", "2026-01")
        self.assertEqual(load_json(man)["rows"], 2)

    def test_second_maintainer_does_nothing_while_one_holds_the_lock(self):
        other = psycopg2.connect(self.db.url)
        other.autocommit = True
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_PARTITIONS,))
        out = self.maintain("2026-01-15")
        self.assertIn("another session", out.stdout)
        self.assertEqual(self.attached("system_logs"), [])
        other.close()
        # two at once: every partition created once, both succeed
        procs = [subprocess.Popen([h.aggd_bin(), "partitions", "maintain", "--now",
                                   "2026-01-15", "--set", f"database.url={self.db.url}",
                                   "--set", f"archive.dir={self.archive}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        outs = [p.communicate(timeout=60) + (p.returncode,) for p in procs]
        for o, e, rc in outs:
            self.assertEqual(rc, 0, e)
        created = sum(int(o.split("maintenance done: ")[1].split(" ")[0])
                      for o, _, _ in outs if "maintenance done" in o)
        self.assertEqual(created, 6)
        self.assertEqual(self.attached("system_logs"), ["2026-01", "2026-02", "2026-03"])

    def test_serve_maintains_at_start_and_reports_metrics(self):
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
        # an old month past retention, with a row, to be archived by the daemon
        self.maintain("2020-01-15")
        self.q("INSERT INTO system_logs (level, message, created_at) "
               "VALUES ('INFO', 'old', '2020-01-20')")
        a = h.Aggd(self.db.url, "--set", f"archive.dir={self.archive}")
        try:
            h.wait_for(lambda: now in self.attached("system_logs")
                       and self.state("system_logs", "2020-01") == "dropped", 20,
                       what="maintenance at start")
            self.assertIn(month_add(now, 2), self.attached("alerts"))

            def metrics():
                text = a.get("/metrics")[2]
                return text if "\naggd_partition_maintenance_last_success 1\n" in text else None
            text = h.wait_for(metrics, 10, what="maintenance metrics")
            self.assertIn('aggd_partitions{table="system_logs"} 3', text)
            self.assertIn('aggd_partitions{table="alerts"} 3', text)
            self.assertRegex(text, r"aggd_archived_bytes [1-9]")
            self.assertIn("aggd_archive_failed_months 0", text)
            self.assertEqual(a.stop(), 0)
        finally:
            a.close()

    def test_serve_reports_a_failed_archive(self):
        self.maintain("2020-01-15")
        self.q("INSERT INTO system_logs (level, message, created_at) "
               "VALUES ('INFO', 'old', '2020-01-20')")
        not_a_dir = os.path.join(self.archive, "file")
        with open(not_a_dir, "w", encoding="utf-8") as f:
            f.write("x")
        a = h.Aggd(self.db.url, "--set", f"archive.dir={not_a_dir}")
        try:
            # 2020-01..03 of both tables, none can be written
            def metrics():
                text = a.get("/metrics")[2]
                return text if "\naggd_archive_failed_months 6\n" in text else None
            text = h.wait_for(metrics, 20, what="failed archive in /metrics")
            self.assertIn("\naggd_partition_maintenance_last_success 0\n", text)
            self.assertEqual(self.state("system_logs", "2020-01"), "failed")
            self.assertTrue(self.exists("system_logs", "2020-01"))
            self.assertNotIn("2020-01", self.attached("system_logs"))
            self.assertEqual(a.stop(), 0)
            self.assertIn("could not archive system_logs 2020-01", a.output())
        finally:
            a.close()

    def test_restore_waits_for_no_maintainer(self):
        self.maintain("2026-01-15")
        self.insert_logs("2026-01", n=3)
        self.maintain("2026-07-01")
        other = psycopg2.connect(self.db.url)
        other.autocommit = True
        try:
            with other.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_PARTITIONS,))
            out = self.aggd("archive", "restore", "2026-01")
            self.assertEqual(out.returncode, 1)
            self.assertIn("maintenance is running", out.stderr)
            self.assertFalse(self.exists("system_logs", "2026-01"))
        finally:
            other.close()
        self.assertEqual(self.aggd("archive", "restore", "2026-01").returncode, 0)

    # ---- a clock jump: grace, and months re-created after their archive ----

    def serve(self):
        """The daemon on the real clock, ingesting over HTTP without tokens, once its
        maintenance at start is over (it holds the maintenance lock meanwhile)."""
        a = h.Aggd(self.db.url, "--set", f"archive.dir={self.archive}",
                   "--set", "ingest.http_auth=none", "--set", "batch.max_ms=20")
        h.wait_for(lambda: "\naggd_partition_maintenance_last_success 1\n"
                   in a.get("/metrics")[2], 20, what="maintenance at start")
        return a

    def send(self, a, ym, tag, n):
        """<n> events dated in month <ym>, each message "<tag> <i>", acknowledged once
        committed."""
        body = "".join(json.dumps({"timestamp": f"{ym}-01T00:{i // 60:02d}:{i % 60:02d}Z",
                                   "level": "info", "message": f"{tag} {i}"}) + "\n"
                       for i in range(n))
        status, _, text = h.request(a.http_port, "POST", "/v1/logs?wait=commit",
                                    body=body.encode(),
                                    headers={"Content-Type": "application/x-ndjson"},
                                    timeout=30)
        self.assertEqual(status, 200, text + a.output()[-2000:])
        return [f"{tag} {i}" for i in range(n)]

    def month_messages(self, ym):
        return sorted(r[0] for r in self.q(
            "SELECT message FROM system_logs WHERE created_at >= %s::date "
            "AND created_at < %s::date + interval '1 month'", ym + "-01", ym + "-01"))

    def archived_messages(self, ym):
        data, manifest = self.files("system_logs", ym)
        plain = subprocess.run(["zstd", "-dc", data], check=True, capture_output=True).stdout
        rows = list(csv.DictReader(io.StringIO(plain.decode("utf-8"), newline="")))
        self.assertEqual(len(rows), load_json(manifest)["rows"])
        return sorted(r["message"] for r in rows)

    def test_month_receiving_rows_is_not_archived_and_recreated_month_merges(self):
        ym = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
        ahead = month_add(ym, 4) + "-15"
        no_grace = ("--set", "partitions.archive_grace_hours=0")
        a = self.serve()
        try:
            before = self.send(a, ym, "before", 5)
            # the clock jumps four months ahead: the month ingest writes is past retention,
            # but it received rows moments ago, on the real clock
            out = self.maintain(ahead)
            self.assertRegex(out.stdout, rf"system_logs {ym}: received rows 0\.\d hours ago "
                                         r".*archiving postponed")
            self.assertIn("1 postponed", out.stdout)
            self.assertIn(ym, self.attached("system_logs"))
            self.assertIsNone(self.state("system_logs", ym))
            # without the grace, the jump archives and drops it (what happened before)
            out = self.maintain(ahead, *no_grace)
            self.assertIn("0 postponed", out.stdout)
            self.assertEqual(self.state("system_logs", ym), "dropped")
            self.assertFalse(self.exists("system_logs", ym))
            self.assertEqual(self.archived_messages(ym), sorted(before))
            # ingest on the real clock goes on writing the month: it re-creates it
            after = self.send(a, ym, "after", 4)
            self.assertIn(ym, self.attached("system_logs"))
            self.assertEqual(self.month_messages(ym), sorted(after))
            # restore merges the archive into the re-created partition
            out = self.aggd("archive", "restore", ym)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("merged", out.stdout)
            self.assertIn("5 of 5 archived rows added", out.stdout)
            self.assertEqual(self.state("system_logs", ym), "restored")
            self.assertEqual(self.month_messages(ym), sorted(before + after))
            # a second restore is refused, changing nothing
            self.assertEqual(self.aggd("archive", "restore", ym).returncode, 1)
            self.assertEqual(self.month_messages(ym), sorted(before + after))
            more = self.send(a, ym, "more", 3)
            everything = sorted(before + after + more)
            # archived again, whole: one file holds every row
            out = self.maintain(ahead, "--rearchive", *no_grace)
            self.assertEqual(self.state("system_logs", ym), "dropped")
            self.assertFalse(self.exists("system_logs", ym))
            out = self.aggd("archive", "verify", ym)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(self.archived_messages(ym), everything)
            self.assertEqual(self.q("SELECT row_count FROM partition_archives WHERE "
                                    "table_name = 'system_logs' AND month = %s::date",
                                    ym + "-01")[0][0], len(everything))
            # and restored once more: every row exactly once
            out = self.aggd("archive", "restore", ym)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(self.month_messages(ym), everything)
            self.assertEqual(a.stop(), 0)
        finally:
            a.close()
        self.assert_safe()

    def test_recreated_month_is_archived_again_with_its_archived_rows(self):
        ym = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m")
        ahead = month_add(ym, 4) + "-15"
        a = self.serve()
        try:
            before = self.send(a, ym, "before", 6)
            self.maintain(ahead, "--set", "partitions.archive_grace_hours=0")
            self.assertEqual(self.state("system_logs", ym), "dropped")
            after = self.send(a, ym, "after", 2)
            self.assertEqual(a.stop(), 0)
        finally:
            a.close()
        # the re-created month is still within the grace: left as it is
        out = self.maintain(ahead)
        self.assertIn("archiving postponed", out.stdout)
        self.assertEqual(self.month_messages(ym), sorted(after))
        self.assertEqual(self.archived_messages(ym), sorted(before))
        # a day later (on the database's clock: --now plays no part) it goes again,
        # taking the rows of its first archive along
        self.q("UPDATE partition_activity SET last_received_at = last_received_at - "
               "interval '25 hours'")
        out = self.maintain(ahead)
        self.assertIn(f"system_logs {ym}: re-created after its archive: merged 6 of its 6 "
                      "archived rows back", out.stdout)
        self.assertIn("1 archived, 0 failed, 0 postponed", out.stdout)
        self.assertEqual(self.state("system_logs", ym), "dropped")
        self.assertFalse(self.exists("system_logs", ym))
        self.assertEqual(self.aggd("archive", "verify", ym).returncode, 0)
        self.assertEqual(self.archived_messages(ym), sorted(before + after))
        # nothing left to do
        out = self.maintain(ahead)
        self.assertIn("0 archived, 0 failed, 0 postponed", out.stdout)
        out = self.aggd("archive", "restore", ym)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(self.month_messages(ym), sorted(before + after))
        self.assert_safe()

    def test_recreated_month_with_a_missing_archive_is_left_as_it_is(self):
        """The old archive is the only copy of its rows: without it, the month is not
        exported over it, and nothing changes."""
        self.maintain("2026-01-15")
        self.insert_logs("2026-01", n=3)
        self.maintain("2026-07-01")
        self.assertEqual(self.state("system_logs", "2026-01"), "dropped")
        self.q("SELECT aggd_create_month_partition('system_logs', '2026-01-01')")
        self.q("INSERT INTO system_logs (level, message, created_at) "
               "VALUES ('INFO', 'late', '2026-01-20')")
        data, manifest = self.files("system_logs", "2026-01")
        os.rename(data, data + ".away")
        out = self.maintain("2026-07-01", ok=False)
        self.assertEqual(out.returncode, 1)
        self.assertIn("2026-01", out.stderr)
        self.assertEqual(self.state("system_logs", "2026-01"), "dropped")
        self.assertIn("2026-01", self.attached("system_logs"))
        self.assertEqual(self.month_messages("2026-01"), ["late"])
        os.rename(data + ".away", data)
        out = self.maintain("2026-07-01")
        self.assertIn("merged 5 of its 5 archived rows back", out.stdout)
        self.assertEqual(self.state("system_logs", "2026-01"), "dropped")
        self.assertEqual(load_json(manifest)["rows"], 6)
        self.assertEqual(self.aggd("archive", "verify", "2026-01").returncode, 0)

    def test_usage_errors_exit_2(self):
        for args in (["partitions"], ["partitions", "maintain", "--now", "yesterday"],
                     ["partitions", "maintain", "--bogus"], ["archive", "verify", "2026-13"],
                     ["archive", "restore", "2026-01", "--table", "users"], ["archive"]):
            out = self.aggd(*args)
            self.assertEqual(out.returncode, 2, (args, out.stderr))
            self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)
        out = self.aggd("archive", "restore", "2026-01")
        self.assertEqual(out.returncode, 1)
        self.assertIn("not archived", out.stderr)


if __name__ == "__main__":
    h.main()
