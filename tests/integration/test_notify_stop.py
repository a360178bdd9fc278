"""The notification dispatcher across a stop, against the real binary: idle polls
(empty claims) and webhook sends still in flight at SIGTERM leave nothing behind
(under ASan/LSan: no leak report, exit 0); the cancelled sends stay 'sending' and the
next start puts them back to 'pending' and sends them again.
"""
import json
import socket
import threading
import time
import unittest

import apikit
import harness

RULE = {"name": "errors", "metric": "count{level>=ERROR}[5m]", "threshold": 10,
        "operator": "gt", "severity": "high"}
SENDS = 3


class SilentReceiver:
    """Accepts connections and never answers: every send stays in flight."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)

    def accepted(self):
        with self.lock:
            return len(self.conns)

    def close(self):
        self.sock.close()
        with self.lock:
            for c in self.conns:
                c.close()


class NotifyStop(unittest.TestCase):
    def setUp(self):
        self.recv = SilentReceiver()
        self.env = apikit.ApiEnv(extra=("--set", "notify.webhook_timeout_ms=60000"))

    def tearDown(self):
        self.recv.close()
        self.env.close()

    def queue_webhooks(self):
        env = self.env
        rule = env.ok("POST", "/api/v1/alert-rules", RULE, status=201)["id"]
        alert = env.scalar("INSERT INTO alerts (rule_id, severity, status, metric_value,"
                           f" message) VALUES ({rule}, 'high', 'active', 11, 'errors')"
                           " RETURNING id")
        facts = {"notice": "firing", "status": "firing", "alert_id": alert, "rule_id": rule,
                 "rule": "errors", "starts_at": "2025-01-31T12:00:00Z"}
        for i in range(SENDS):
            env.db.sql("INSERT INTO alert_notifications (message_id, alert_id,"
                       " alert_created_at, rule_id, notice, channel, target, next_attempt_at,"
                       f" payload) SELECT 'msg_stop_{i}', id, created_at, rule_id, 'firing',"
                       f" 'webhook', 'http://127.0.0.1:{self.recv.port}/hook',"
                       " now() AT TIME ZONE 'UTC',"
                       f" '{json.dumps(facts)}'::jsonb FROM alerts WHERE id = {alert}")

    def statuses(self):
        out = self.env.db.sql("SELECT string_agg(status, ',' ORDER BY id)"
                              " FROM alert_notifications")
        return out.split(",") if out else []

    def test_sends_in_flight_at_stop_are_cancelled_and_resumed(self):
        env = self.env
        time.sleep(2)  # several empty polls first
        self.queue_webhooks()
        harness.wait_for(lambda: self.recv.accepted() >= SENDS, 15, what="sends in flight")
        self.assertEqual(self.statuses(), ["sending"] * SENDS)

        code = env.aggd.stop()
        out = env.aggd.output()
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
            self.assertNotIn(bad, out)
        self.assertEqual(code, 0, out[-3000:])
        self.assertEqual(self.statuses(), ["sending"] * SENDS)  # not recorded as failed

        env.aggd.close()
        env.aggd = harness.Aggd(env.db.url, "--set", "notify.webhook_timeout_ms=60000")
        harness.wait_for(lambda: self.recv.accepted() >= 2 * SENDS, 15, what="sends again")
        self.assertIn(f"{SENDS} notifications interrupted by a stop are pending again",
                      env.aggd.output())


if __name__ == "__main__":
    harness.main()
