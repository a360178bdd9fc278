"""aggd serve and the CLI, driven as a user would: the real binary, real
PostgreSQL, HTTP on loopback, signals, sd_notify and the journald log format."""
import json
import os
import signal
import socket
import tempfile
import time
import unittest

import harness as h


def migrated_database():
    db = h.Database()
    out = h.run_aggd("migrate", "up", "--set", f"database.url={db.url}")
    assert out.returncode == 0, out.stderr
    return db


class ServeTest(unittest.TestCase):
    def setUp(self):
        self.db = migrated_database()
        self.aggd = None

    def tearDown(self):
        if self.aggd is not None:
            self.aggd.close()
        self.db.close()

    def start(self, *extra, **kw):
        self.aggd = h.Aggd(self.db.url, *extra, **kw)
        return self.aggd

    def test_health_ready_and_metrics_answer(self):
        a = self.start()
        status, headers, body = a.get("/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(json.loads(body), {"status": "ok"})

        ready = h.wait_for(lambda: a.get("/readyz")[0] == 200 and a.get("/readyz"), 10,
                           what="ready")
        doc = json.loads(ready[2])
        self.assertEqual(doc["status"], "ready")
        self.assertTrue(doc["database"]["up"])
        self.assertEqual(doc["database"]["schema_version"],
                         doc["database"]["expected_schema_version"])

        status, headers, body = a.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"))
        self.assertIn("# TYPE aggd_build_info gauge", body)
        self.assertRegex(body, r'aggd_build_info\{version="[0-9.]+",commit="[^"]+"\} 1')
        self.assertIn("aggd_database_up 1", body)
        self.assertRegex(body, r"process_resident_memory_bytes [1-9][0-9]*")
        self.assertRegex(body, r"process_start_time_seconds [0-9.]+")

    def test_unknown_routes_and_methods_get_json_errors(self):
        a = self.start()
        status, _, body = a.get("/no/such/route")
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body)["error"]["code"], "not_found")
        status, headers, body = h.request(a.http_port, "POST", "/healthz", body="{}")
        self.assertEqual(status, 405)
        self.assertEqual(headers["allow"], "GET")
        self.assertEqual(json.loads(body)["error"]["code"], "method_not_allowed")

    def test_sigterm_stops_cleanly_within_a_second(self):
        a = self.start()
        h.wait_for(lambda: a.get("/readyz")[0] == 200, 10, what="ready")
        started = time.monotonic()
        rc = a.stop(signal.SIGTERM)
        elapsed = time.monotonic() - started
        self.assertEqual(rc, 0, a.output())
        self.assertLess(elapsed, 1.0)
        self.assertIn("received SIGTERM", a.output())

    def test_sigint_also_stops_cleanly(self):
        a = self.start()
        self.assertEqual(a.stop(signal.SIGINT), 0, a.output())

    def test_sd_notify_ready_then_stopping(self):
        path = os.path.join(tempfile.mkdtemp(prefix="aggd-notify."), "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(10)
        try:
            a = self.start(env={"NOTIFY_SOCKET": path}, wait_healthy=False)
            ready = sock.recv(256).decode()
            self.assertIn("READY=1", ready.split("\n"))
            # READY=1 is sent once listening: HTTP answers right away.
            self.assertEqual(a.get("/healthz")[0], 200)
            a.proc.send_signal(signal.SIGTERM)
            self.assertIn("STOPPING=1", sock.recv(256).decode().split("\n"))
            self.assertEqual(a.proc.wait(timeout=5), 0)
        finally:
            sock.close()
            os.unlink(path)
            os.rmdir(os.path.dirname(path))

    def test_socket_activation_uses_the_sockets_passed_in(self):
        """Sockets bound by "systemd" (this test) are used for the listen.* addresses
        they are bound to; aggd could not bind those ports itself while they are held.
        One socket no key asks for is closed with a warning."""
        def bound(kind, listen=True):
            sk = socket.socket(socket.AF_INET, kind)
            sk.bind(("127.0.0.1", 0))
            if listen and kind == socket.SOCK_STREAM:
                sk.listen(16)
            return sk
        socks = {"http": bound(socket.SOCK_STREAM), "syslog_udp": bound(socket.SOCK_DGRAM),
                 "syslog_tcp": bound(socket.SOCK_STREAM), "json_tcp": bound(socket.SOCK_STREAM)}
        stray = bound(socket.SOCK_DGRAM)
        ports = {k: sk.getsockname()[1] for k, sk in socks.items()}
        try:
            a = self.start("--set", "ingest.http_auth=none", "--set", "batch.max_ms=20",
                           ports=ports, sockets=[stray, *socks.values()])
        finally:
            for sk in [stray, *socks.values()]:
                sk.close()  # aggd holds its own copies
        tag = "act-" + os.urandom(4).hex()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(f"<14>1 - h app - - - {tag} udp".encode(), ("127.0.0.1", ports["syslog_udp"]))
        with socket.create_connection(("127.0.0.1", ports["syslog_tcp"])) as t:
            t.sendall(f"<14>1 - h app - - - {tag} tcp\n".encode())
        with socket.create_connection(("127.0.0.1", ports["json_tcp"])) as j:
            j.sendall(json.dumps({"message": f"{tag} json"}).encode() + b"\n")
        status, _, _ = h.request(ports["http"], "POST", "/v1/logs",
                                 body=json.dumps({"message": f"{tag} http"}),
                                 headers={"Content-Type": "application/json"})
        self.assertEqual(status, 202)
        h.wait_for(lambda: self.db.sql(
            f"SELECT count(*) FROM system_logs WHERE message LIKE '{tag} %'") == "4", 15,
            what="one event per socket")
        self.assertEqual(a.stop(), 0)
        out = a.output()
        self.assertEqual(out.count("using the socket passed by systemd"), 4, out)
        self.assertIn("matches no listen.* address: closed", out)

    def test_journal_stream_gets_priority_prefixes(self):
        a = self.start(env={"JOURNAL_STREAM": "8:12345"})
        a.stop()
        lines = [l for l in a.output().splitlines() if l]
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^<[0-7]>[a-z]+: ")
        self.assertTrue(any(l.startswith("<6>server: ") for l in lines))

    def test_plain_stderr_lines_carry_time_and_level(self):
        a = self.start()
        a.stop()
        self.assertRegex(a.output(), r"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  server: ")


class SchemaGuardTest(unittest.TestCase):
    def setUp(self):
        self.db = h.Database()

    def tearDown(self):
        self.db.close()

    def serve_until_exit(self, *extra):
        return h.run_aggd("serve", "--set", f"database.url={self.db.url}",
                          "--set", f"listen.http=127.0.0.1:{h.free_port()}",
                          "--set", "listen.syslog_udp=", "--set", "listen.syslog_tcp=",
                          "--set", "listen.json_tcp=", *extra, timeout=20)

    def test_refuses_an_unmigrated_database(self):
        out = self.serve_until_exit()
        self.assertEqual(out.returncode, 1)
        self.assertIn("schema is at version 0", out.stderr)
        self.assertIn("aggd migrate up", out.stderr)

    def test_refuses_a_newer_database(self):
        self.assertEqual(h.run_aggd("migrate", "up", "--set",
                                    f"database.url={self.db.url}").returncode, 0)
        self.db.sql("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
        out = self.serve_until_exit()
        self.assertEqual(out.returncode, 1)
        self.assertIn("newer than this aggd", out.stderr)
        status = h.run_aggd("migrate", "up", "--set", f"database.url={self.db.url}")
        self.assertNotEqual(status.returncode, 0)
        self.assertIn("newer", status.stderr)

    def test_migrate_flag_migrates_then_serves(self):
        a = h.Aggd(self.db.url, "--migrate")
        try:
            h.wait_for(lambda: a.get("/readyz")[0] == 200, 10, what="ready")
            self.assertEqual(self.db.sql("SELECT count(*) > 0 FROM schema_migrations"), "t")
            self.assertEqual(a.stop(), 0)
        finally:
            a.close()


class OutageTest(unittest.TestCase):
    """A private cluster, so stopping PostgreSQL disturbs no other test."""

    def setUp(self):
        self.cluster = h.Cluster()
        self.db = h.Database(self.cluster.admin)

    def tearDown(self):
        self.cluster.start()
        self.db.close()
        self.cluster.close()

    def test_readyz_fails_while_postgresql_is_down_and_recovers(self):
        self.assertEqual(h.run_aggd("migrate", "up", "--set",
                                    f"database.url={self.db.url}").returncode, 0)
        a = h.Aggd(self.db.url)
        try:
            h.wait_for(lambda: a.get("/readyz")[0] == 200, 10, what="ready")
            self.cluster.stop()
            status, headers, body = h.wait_for(
                lambda: (lambda r: r if r[0] == 503 else None)(a.get("/readyz")), 10,
                what="not ready")
            doc = json.loads(body)
            self.assertEqual(doc["status"], "not ready")
            self.assertFalse(doc["database"]["up"])
            self.assertIn("database:", doc["reason"])
            self.assertEqual(headers["retry-after"], "1")
            self.assertEqual(a.get("/healthz")[0], 200)  # alive all the same
            self.assertIn("aggd_database_up 0", a.get("/metrics")[2])
            self.cluster.start()
            h.wait_for(lambda: a.get("/readyz")[0] == 200, 15, what="ready again")
            self.assertEqual(a.stop(), 0)
        finally:
            a.close()

    def test_starts_without_postgresql_and_checks_schema_when_it_answers(self):
        self.cluster.stop()
        a = h.Aggd(self.db.url)
        try:
            self.assertEqual(a.get("/readyz")[0], 503)
            self.cluster.start()
            # The database was never migrated: once reachable, aggd stops with a reason.
            rc = a.proc.wait(timeout=15)
            self.assertEqual(rc, 1)
            self.assertIn("schema is at version 0", a.output())
        finally:
            a.close()


class CliTest(unittest.TestCase):
    def test_version(self):
        out = h.run_aggd("version")
        self.assertEqual(out.returncode, 0)
        self.assertRegex(out.stdout, r"^aggd [0-9]+\.[0-9]+\.[0-9]+ ")

    def test_unknown_command_is_a_usage_error(self):
        out = h.run_aggd("frobnicate")
        self.assertEqual(out.returncode, 2)
        self.assertEqual(len(out.stderr.strip().splitlines()), 1)
        self.assertIn("frobnicate", out.stderr)

    def test_bad_configuration_names_the_key(self):
        out = h.run_aggd("config", "check", "--set", "batch.max_rows=-5")
        self.assertEqual(out.returncode, 1)
        self.assertIn("batch.max_rows", out.stderr)
        out = h.run_aggd("serve", "--set", "no.such.key=1")
        self.assertEqual(out.returncode, 1)
        self.assertIn("no.such.key", out.stderr)

    def test_config_check_reads_file_env_and_set(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write("batch.max_rows = 10\nwriter.threads = 4\nbatch.max_ms = 50\n")
            f.flush()
            env = dict(os.environ, AGGD_WRITER_THREADS="6",
                       AGGD_DATABASE_URL="postgresql://u:sekrit@db/x")
            out = h.run_aggd("config", "check", "-c", f.name, "--set", "batch.max_ms=70",
                             env=env)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("batch.max_rows = 10  # file", out.stdout)
        self.assertIn("writer.threads = 6  # env", out.stdout)
        self.assertIn("batch.max_ms = 70  # set", out.stdout)
        self.assertIn("database.url = postgresql://u:****@db/x  # env", out.stdout)
        self.assertNotIn("sekrit", out.stdout)

    def test_migrate_usage_errors(self):
        self.assertEqual(h.run_aggd("migrate", "down").returncode, 2)
        self.assertEqual(h.run_aggd("migrate", "down", "x").returncode, 2)
        self.assertEqual(h.run_aggd("migrate", "sideways").returncode, 2)

    def test_unreachable_database_fails_migrate_with_one_line(self):
        out = h.run_aggd("migrate", "up", "--set",
                         "database.url=postgresql:///x?host=/nonexistent&port=1")
        self.assertEqual(out.returncode, 1)
        self.assertIn("could not connect to PostgreSQL", out.stderr)
        self.assertEqual(len(out.stderr.strip().splitlines()), 1)


if __name__ == "__main__":
    h.main()
