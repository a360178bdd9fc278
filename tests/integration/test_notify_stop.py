"""The notification dispatcher across a stop, against the real binary: idle polls
(empty claims) and webhook sends still in flight at SIGTERM leave nothing behind
(under ASan/LSan: no leak report, exit 0); the stop hands the cancelled sends back to
'pending' and the next start sends them at once. Claimed rows are leased: a second
daemon on the same database leaves a live daemon's sends alone, takes over those whose
lease ended, and the first daemon, once taken over, changes nothing of them; a daemon
never claims again the rows it is still sending, lease or not. A send that hangs does
not hold back the rows queued after its claim.
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
        self.alert = None

    def tearDown(self):
        self.recv.close()
        self.env.close()

    def queue_webhooks(self, ids=range(SENDS)):
        """A pending webhook row per number in <ids>, each committed on its own (as the
        notices of different alerts are), for one alert made on the first call."""
        env = self.env
        if self.alert is None:
            rule = env.ok("POST", "/api/v1/alert-rules", RULE, status=201)["id"]
            alert = env.scalar("INSERT INTO alerts (rule_id, severity, status, metric_value,"
                               f" message) VALUES ({rule}, 'high', 'active', 11, 'errors')"
                               " RETURNING id")
            self.alert = (alert, {"notice": "firing", "status": "firing", "alert_id": alert,
                                  "rule_id": rule, "rule": "errors",
                                  "starts_at": "2025-01-31T12:00:00Z"})
        alert, facts = self.alert
        for i in ids:
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

    def attempts(self):
        out = self.env.db.sql("SELECT string_agg(attempts::text, ',' ORDER BY id)"
                              " FROM alert_notifications")
        return [int(a) for a in out.split(",")] if out else []

    def stop_clean(self, aggd):
        code = aggd.stop()
        out = aggd.output()
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
            self.assertNotIn(bad, out)
        self.assertEqual(code, 0, out[-3000:])
        return out

    def test_sends_in_flight_at_stop_are_cancelled_and_resumed(self):
        env = self.env
        time.sleep(2)  # several empty polls first
        self.queue_webhooks()
        harness.wait_for(lambda: self.recv.accepted() >= SENDS, 10, what="sends in flight")
        self.assertEqual(self.statuses(), ["sending"] * SENDS)

        out = self.stop_clean(env.aggd)
        self.assertEqual(self.statuses(), ["pending"] * SENDS)  # handed back, not failed
        self.assertEqual(env.db.sql("SELECT count(*) FROM alert_notifications"
                                    " WHERE last_result IS NOT NULL"), "0")
        self.assertIn(f"{SENDS} notifications in flight at the stop are pending again", out)

        env.aggd.close()
        # the lease (minutes with a 60 s timeout) does not delay a restart
        env.aggd = harness.Aggd(env.db.url, "--set", "notify.webhook_timeout_ms=60000")
        harness.wait_for(lambda: self.recv.accepted() >= 2 * SENDS, 15, what="sends again")

    def test_a_live_daemons_sends_are_leased(self):
        env = self.env
        self.queue_webhooks()
        harness.wait_for(lambda: self.recv.accepted() >= SENDS, 10, what="sends in flight")
        other = harness.Aggd(env.db.url, "--set", "notify.webhook_timeout_ms=60000")
        try:
            time.sleep(2)  # several polls of the second daemon
            self.assertEqual(self.recv.accepted(), SENDS)
            self.assertEqual(self.attempts(), [1] * SENDS)
            # the first daemon stalls past its lease: any daemon may take the rows over
            env.db.sql("UPDATE alert_notifications SET next_attempt_at ="
                       " now() AT TIME ZONE 'UTC' - interval '1 second'")
            harness.wait_for(lambda: self.recv.accepted() >= 2 * SENDS, 15, what="taken over")
            harness.wait_for(lambda: self.attempts() == [2] * SENDS, 5, what="attempts")
            # the first daemon's stop hands back nothing it lost
            out = self.stop_clean(env.aggd)
            self.assertNotIn("in flight at the stop", out)
            self.assertEqual(self.statuses(), ["sending"] * SENDS)
            self.stop_clean(other)
            self.assertEqual(self.statuses(), ["pending"] * SENDS)
        finally:
            other.close()

    def test_a_daemon_never_claims_again_its_own_sends_in_flight(self):
        self.queue_webhooks()
        harness.wait_for(lambda: self.recv.accepted() >= SENDS, 10, what="sends in flight")
        # the lease ends while the sends still hang: another daemon may take the rows
        # over, but this one, whose sends end within their timeout, sends nothing twice
        self.env.db.sql("UPDATE alert_notifications SET next_attempt_at ="
                        " now() AT TIME ZONE 'UTC' - interval '1 second'")
        time.sleep(2)  # several polls
        self.assertEqual(self.recv.accepted(), SENDS)
        self.assertEqual(self.attempts(), [1] * SENDS)

    def test_a_hung_send_does_not_hold_back_rows_queued_after_it(self):
        self.queue_webhooks([0])
        harness.wait_for(lambda: self.recv.accepted() >= 1, 10, what="the first send")
        time.sleep(1.5)  # polls while the first send hangs (60 s timeout)
        self.queue_webhooks([1])
        harness.wait_for(lambda: self.recv.accepted() >= 2, 5, what="the later send")
        self.assertEqual(self.statuses(), ["sending"] * 2)
        self.assertEqual(self.attempts(), [1] * 2)


if __name__ == "__main__":
    harness.main()
