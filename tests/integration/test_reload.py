"""SIGHUP reloads the configuration file, against the real binary: the keys that may
change while running take effect (log level, notification settings, the rule
evaluation interval), the others are named as needing a restart, and a bad file is
refused whole while the running configuration stays.
"""
import json
import os
import signal
import socket
import tempfile
import time
import unittest

import apikit
import harness

RULE = {"name": "reload", "metric": "count{level>=ERROR}[5m]", "threshold": 1000000,
        "operator": "gt", "severity": "low"}


class Reload(unittest.TestCase):
    def setUp(self):
        fd, self.conf = tempfile.mkstemp(prefix="aggd-reload.", suffix=".conf")
        os.close(fd)
        self.write("log.level = info\nalerts.eval_interval_ms = 1000\nbatch.max_rows = 5000\n")
        self.env = apikit.ApiEnv(extra=("-c", self.conf))
        self.aggd = self.env.aggd

    def tearDown(self):
        self.env.close()
        os.unlink(self.conf)

    def write(self, text):
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(text)

    def hup_and_wait(self, needle):
        """Sends SIGHUP and waits for a log line containing <needle> (new ones only)."""
        before = self.aggd.output().count(needle)
        self.aggd.proc.send_signal(signal.SIGHUP)
        harness.wait_for(lambda: self.aggd.output().count(needle) > before, 10,
                         what=f"log line {needle!r}")
        return self.aggd.output()

    def oversized_frame(self):
        """A syslog frame over ingest.max_message_bytes: rejected, logged at debug."""
        with socket.create_connection(("127.0.0.1", self.aggd.ports["syslog_tcp"])) as s:
            s.sendall(b"999999999 <13>1 - - - - - - x")
            time.sleep(0.3)

    def evaluations_in(self, seconds):
        start = self.aggd.metric("aggd_rule_evaluations_total")
        time.sleep(seconds)
        return self.aggd.metric("aggd_rule_evaluations_total") - start

    def test_live_keys_apply_and_the_others_wait_for_a_restart(self):
        self.env.ok("POST", "/api/v1/alert-rules", RULE, status=201)
        harness.wait_for(lambda: self.evaluations_in(0.5) > 0, 20, what="rule evaluated")
        slow = self.evaluations_in(2.0)
        self.oversized_frame()
        self.assertNotIn("DEBUG listen", self.aggd.output())

        self.write("log.level = debug\nalerts.eval_interval_ms = 100\nbatch.max_rows = 100\n")
        out = self.hup_and_wait("configuration reloaded: applied")
        self.assertIn("applied alerts.eval_interval_ms, log.level", out)  # key table order
        self.assertIn("needing a restart: batch.max_rows", out)
        self.oversized_frame()
        harness.wait_for(lambda: "DEBUG listen" in self.aggd.output(), 5,
                         what="a debug line after the reload")
        fast = self.evaluations_in(2.0)
        # 1000 ms -> 100 ms: about 2 -> about 20 evaluations in 2 s
        self.assertLessEqual(slow, 4)
        self.assertGreaterEqual(fast, 8)
        self.assertTrue(self.aggd.healthy())

    def post_logs(self, nbytes):
        line = b'{"message":"' + b"x" * 100 + b'","level":"INFO"}\n'
        body = line * (nbytes // len(line) + 1)
        return harness.request(self.aggd.http_port, "POST", "/v1/logs", body=body,
                               headers={"Authorization": "Bearer " + self.env.tokens["ingest"],
                                        "Content-Type": "application/x-ndjson"})[0]

    def test_limits_apply_to_requests_from_now_on(self):
        self.assertEqual(self.post_logs(8192), 202)
        self.write("log.level = info\nalerts.eval_interval_ms = 1000\nbatch.max_rows = 5000\n"
                   "ingest.max_body_bytes = 4096\nlisten.http_header_timeout_ms = 500\n")
        out = self.hup_and_wait("configuration reloaded: applied")
        self.assertIn("applied listen.http_header_timeout_ms, ingest.max_body_bytes", out)
        self.assertEqual(self.post_logs(8192), 413)
        self.assertEqual(self.post_logs(1024), 202)
        # a head left unfinished is cut at the new deadline
        with socket.create_connection(("127.0.0.1", self.aggd.http_port)) as s:
            s.settimeout(10)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            start = time.monotonic()
            while s.recv(4096):
                pass
            self.assertLess(time.monotonic() - start, 5)

    def test_the_webhook_timeout_applies_to_sends_from_now_on(self):
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # accepts (the kernel does) and never answers
        try:
            self.write("log.level = info\nalerts.eval_interval_ms = 1000\nbatch.max_rows = 5000\n"
                       "notify.webhook_timeout_ms = 1000\n")
            self.hup_and_wait("applied notify.webhook_timeout_ms")
            env = self.env
            rule = env.ok("POST", "/api/v1/alert-rules", RULE, status=201)["id"]
            alert = env.scalar("INSERT INTO alerts (rule_id, severity, status, metric_value,"
                               f" message) VALUES ({rule}, 'low', 'active', 1, 'x') RETURNING id")
            facts = {"notice": "firing", "status": "firing", "alert_id": alert,
                     "rule_id": rule, "rule": "reload", "starts_at": "2025-01-31T12:00:00Z"}
            env.db.sql("INSERT INTO alert_notifications (message_id, alert_id, alert_created_at,"
                       " rule_id, notice, channel, target, next_attempt_at, payload)"
                       " SELECT 'msg_reload', id, created_at, rule_id, 'firing', 'webhook',"
                       f" 'http://127.0.0.1:{silent.getsockname()[1]}/hook',"
                       f" now() AT TIME ZONE 'UTC', '{json.dumps(facts)}'::jsonb"
                       f" FROM alerts WHERE id = {alert}")
            # the default (5000 ms) would not have timed out yet
            result = harness.wait_for(
                lambda: env.db.sql("SELECT last_result FROM alert_notifications"
                                   " WHERE message_id = 'msg_reload' AND attempts > 0") or None,
                4, interval=0.1, what="the first attempt to time out")
            self.assertIn("timed out after 1000 ms", result)
        finally:
            silent.close()

    def test_a_bad_file_is_refused_whole(self):
        self.write("log.level = debug\nno.such.key = 1\n")
        out = self.hup_and_wait("configuration reload refused")
        self.assertIn("the running one stays", out)
        self.assertIn("no.such.key", out)
        self.assertNotIn("configuration reloaded", out)
        self.oversized_frame()
        self.assertNotIn("DEBUG listen", self.aggd.output())  # log.level not taken
        self.assertTrue(self.aggd.healthy())

        self.write("log.level = info\nalerts.eval_interval_ms = 1000\nbatch.max_rows = 5000\n")
        self.hup_and_wait("configuration reloaded: nothing changed")
        self.assertEqual(self.aggd.stop(), 0)


if __name__ == "__main__":
    harness.main()
