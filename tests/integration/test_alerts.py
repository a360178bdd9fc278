"""Alert rules end to end with the real binary: events over HTTP make rules fire;
a loopback webhook receiver checks the Alertmanager-shaped body and verifies the
Standard Webhooks signature with its own HMAC; a real SMTP server (aiosmtpd) takes
the email; events stopping resolve; flaps, short spikes, escalation at injected
times, acknowledgement, retries and a restart with pending notices."""
import base64
import hashlib
import hmac
import json
import os
import re
import ssl
import threading
import time
import unittest
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.errors
import psycopg2.extras
from aiosmtpd.controller import Controller

import harness as h

KEY = os.urandom(24)
SECRET = "whsec_" + base64.b64encode(KEY).decode()


class Receiver(ThreadingHTTPServer):
    """Records every POST: (path, headers, body). /flaky answers 500 three times."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.posts = []
        self.flaky_left = 3

    def by_path(self, path):
        with self.lock:
            return [p for p in self.posts if p[0] == path]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        srv = self.server
        with srv.lock:
            srv.posts.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = 200
            if self.path == "/flaky" and srv.flaky_left > 0:
                srv.flaky_left -= 1
                status = 500
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def tls_dir():
    return os.path.join(h.source_dir(), "tests", "data", "tls")


class Mailbox:
    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []  # (rcpt list, content bytes)

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def to(self, addr):
        with self.lock:
            return [m for r, m in self.messages if addr in r]


def verify_signature(headers, body):
    """The Standard Webhooks check, written from the spec, not from aggd."""
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    signed = msg_id.encode() + b"." + ts.encode() + b"." + body
    want = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    sigs = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1,")]
    return any(hmac.compare_digest(want, s) for s in sigs) and abs(time.time() - int(ts)) < 300


def header(msg, name):
    for line in msg.decode("utf-8", "replace").split("\n"):
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return None


class AlertsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.db = h.Database()
        out = h.run_aggd("migrate", "up", "--set", f"database.url={cls.db.url}")
        assert out.returncode == 0, out.stderr
        cls.conn = psycopg2.connect(cls.db.url)
        cls.conn.autocommit = True
        cls.recv = Receiver()
        threading.Thread(target=cls.recv.serve_forever, daemon=True).start()
        # an HTTPS receiver whose certificate (for 127.0.0.1) comes from a private CA
        cls.tls_recv = Receiver()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(tls_dir(), "server.pem"),
                            os.path.join(tls_dir(), "server.key"))
        cls.tls_recv.socket = ctx.wrap_socket(cls.tls_recv.socket, server_side=True)
        threading.Thread(target=cls.tls_recv.serve_forever, daemon=True).start()
        cls.mail = Mailbox()
        cls.smtp_port = h.free_port()
        cls.smtp = Controller(cls.mail, hostname="127.0.0.1", port=cls.smtp_port)
        cls.smtp.start()
        cls.setup_rows()
        cls.ports = None
        cls.spool = None
        cls.start_aggd()

    @classmethod
    def start_aggd(cls):
        cls.aggd = h.Aggd(cls.db.url, "--set", "ingest.http_auth=none",
                          "--set", "batch.max_ms=50", "--set", "alerts.eval_interval_ms=100",
                          "--set", f"notify.smtp_url=smtp://127.0.0.1:{cls.smtp_port}",
                          "--set", "notify.from=aggd@example.test",
                          "--set", "notify.max_attempts=5",
                          "--set", "notify.ca_file=" + os.path.join(tls_dir(), "ca.pem"),
                          ports=cls.ports, spool=cls.spool)
        cls.ports, cls.spool = cls.aggd.ports, cls.aggd.spool
        cls.aggd.own_spool = False
        # events count only once the rules are loaded
        h.wait_for(lambda: 'aggd_rules{status="active"} 6' in cls.aggd.get("/metrics")[2], 15,
                   what="rules loaded")

    @classmethod
    def tearDownClass(cls):
        rc = cls.aggd.stop()
        output = cls.aggd.output()
        cls.aggd.close()
        cls.smtp.stop()
        cls.recv.shutdown()
        cls.tls_recv.shutdown()
        cls.conn.close()
        cls.db.close()
        assert rc == 0, output

    @classmethod
    def q(cls, sql, params=()):
        with cls.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None

    @classmethod
    def setup_rows(cls):
        base = f"http://127.0.0.1:{cls.recv.server_address[1]}"
        cls.owner = cls.q("INSERT INTO users (email, hashed_password, role) VALUES "
                          "('owner@example.test', 'x', 'editor') RETURNING id")[0]["id"]
        for name, kind, target, secret in [
                ("hook", "webhook", base + "/hook", SECRET), ("chat", "slack", base + "/slack", None),
                ("ops", "email", "ops@example.test", None),
                ("esc1", "webhook", base + "/esc1", None), ("esc2", "webhook", base + "/esc2", None),
                ("flaky", "webhook", base + "/flaky", None),
                ("secure", "webhook",
                 f"https://127.0.0.1:{cls.tls_recv.server_address[1]}/secure", SECRET)]:
            cls.q("INSERT INTO notification_endpoints (name, kind, target, secret, owner_id) "
                  "VALUES (%s, %s, %s, %s, %s)", (name, kind, target, secret, cls.owner))
        levels = [{"after_minutes": 5, "channels": ["webhook:esc1"]},
                  {"after_minutes": 10, "channels": ["webhook:esc2"]}]
        cls.policy = cls.q("INSERT INTO alert_escalation_policies (name, levels, repeat_count) "
                           "VALUES ('oncall', %s, 0) RETURNING id", (json.dumps(levels),))[0]["id"]
        main = ["webhook:hook", "slack", "email"]
        cls.rules = {}
        for name, module, channels, for_s, keep_s, policy in [
                ("alpha errors", "alpha", main, 0, 0, cls.policy),
                ("escalating", "esc", ["webhook:hook"], 0, 0, cls.policy),
                ("spike", "spike", ["webhook:hook"], 60, 0, None),
                ("flapping", "flap", ["webhook:hook"], 0, 120, None),
                ("retried", "retry", ["webhook:flaky"], 0, 600, None),
                ("over tls", "tls", ["webhook:secure"], 0, 600, None)]:
            cls.rules[module] = cls.q(
                "INSERT INTO alert_rules (name, metric, threshold, operator, severity,"
                " notification_channels, escalation_policy_id, owner_id, for_seconds,"
                " keep_firing_seconds, cooldown_minutes) VALUES (%s, %s, 3, 'gt', 'high', %s,"
                " %s, %s, %s, %s, 0) RETURNING id",
                (name, "count{module=%s}[30s]" % module, channels, policy, cls.owner, for_s,
                 keep_s))[0]["id"]
        # an invalid expression is skipped, never a crash
        cls.q("INSERT INTO alert_rules (name, metric, threshold, operator, severity) VALUES "
              "('broken', 'count{module=}[1s]', 1, 'gt', 'low')")

    def send(self, module, n=5):
        body = "\n".join(json.dumps({"message": "boom", "level": "ERROR", "module": module})
                         for _ in range(n))
        status, _, text = h.request(self.ports["http"], "POST", "/v1/logs", body.encode(),
                                    {"Content-Type": "application/x-ndjson"})
        self.assertEqual(status, 202, text)

    def alerts(self, module):
        return self.q("SELECT * FROM alerts WHERE rule_id = %s ORDER BY id",
                      (self.rules[module],))

    def wait_alert(self, module, status=("active", "acknowledged"), n=1, timeout=15):
        def found():
            rows = [a for a in self.alerts(module) if a["status"] in status]
            return rows if len(rows) >= n else None
        try:
            return h.wait_for(found, timeout, what=f"{module} alert {status}")
        except AssertionError:
            raise AssertionError(self.aggd.output()[-3000:])

    def aggd_cli(self, *args):
        out = h.run_aggd("alerts", *args, "--set", f"database.url={self.db.url}")
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def test_alerts_end_to_end(self):
        for m in ("alpha", "esc", "spike", "flap", "retry"):
            self.send(m)
        alpha = self.wait_alert("alpha")[0]
        self.check_firing(alpha)
        self.check_escalation_and_ack(alpha)
        self.check_retries()
        self.check_flap_and_spike_and_resolve(alpha)
        self.check_restart_delivers_pending_once(alpha)

    def active_rules(self):
        m = re.search(r'aggd_rules\{status="active"\} (\d+)', self.aggd.get("/metrics")[2])
        return int(m.group(1)) if m else None

    def test_deactivated_rule_resolves_its_open_alert(self):
        """A rule deactivated while its alert is open: the reload resolves the alert
        (auto, with the reason) and notifies who was notified; the state is ok again."""
        before = self.active_rules()
        rule = self.rules["gone"] = self.q(
            "INSERT INTO alert_rules (name, metric, threshold, operator, severity,"
            " notification_channels, owner_id, keep_firing_seconds) VALUES ('retired',"
            " 'count{module=gone}[30s]', 3, 'gt', 'low', %s, %s, 600) RETURNING id",
            (["webhook:hook"], self.owner))[0]["id"]
        h.wait_for(lambda: self.active_rules() == before + 1, 10, what="rule loaded")
        self.send("gone")
        alert = self.wait_alert("gone")[0]
        h.wait_for(lambda: self.hook_notices("gone"), 10, what="firing hook")
        with self.assertRaises(psycopg2.errors.ForeignKeyViolation):  # alerts keep their rule
            self.q("DELETE FROM alert_rules WHERE id = %s", (rule,))
        self.q("UPDATE alert_rules SET is_active = false WHERE id = %s", (rule,))
        done = self.wait_alert("gone", status=("resolved",), timeout=10)[0]
        self.assertEqual(done["id"], alert["id"])
        self.assertEqual(done["resolution_type"], "auto")
        self.assertIsNotNone(done["resolved_at"])
        self.assertEqual(done["metric_value"], alert["metric_value"])
        self.assertEqual(done["context"]["resolved_reason"], "rule deactivated")
        state = self.q("SELECT state, alert_id FROM alert_rule_state WHERE rule_id = %s",
                       (rule,))[0]
        self.assertEqual((state["state"], state["alert_id"]), ("ok", None))
        notices = h.wait_for(lambda: [n for n in self.hook_notices("gone")
                                      if n["status"] == "resolved"], 10, what="resolved hook")
        self.assertEqual(len(notices), 1)
        self.assertEqual(notices[0]["context"]["resolved_reason"], "rule deactivated")
        h.wait_for(lambda: self.active_rules() == before, 10, what="rule unloaded")

    def test_https_webhook_verifies_a_private_ca(self):
        """notify.ca_file: the certificate of a receiver on a private CA is verified
        and the signed notice arrives over TLS."""
        self.send("tls")
        self.wait_alert("tls")
        posts = h.wait_for(lambda: self.tls_recv.by_path("/secure"), 15,
                           what="a notice over HTTPS")
        _, headers, body = posts[0]
        self.assertTrue(verify_signature(headers, body))
        self.assertEqual(json.loads(body)["status"], "firing")

    def check_firing(self, alpha):
        self.assertEqual(alpha["severity"], "high")
        self.assertEqual(alpha["escalation_level"], 0)
        self.assertIn("alpha errors", alpha["message"])
        self.assertIn("count{module=alpha}[30s]", alpha["message"])
        self.assertEqual(alpha["context"]["window_s"], 30)
        self.assertGreaterEqual(alpha["context"]["matched"], 5)
        self.assertEqual(alpha["context"]["escalation_policy"]["id"], self.policy)
        hooks = h.wait_for(lambda: [p for p in self.recv.by_path("/hook")
                                    if json.loads(p[2])["alert_id"] == alpha["id"]],
                           10, what="webhook")
        path, hdrs, body = hooks[0]
        self.assertTrue(verify_signature(hdrs, body), hdrs)
        doc = json.loads(body)
        self.assertEqual(doc["version"], "4")
        self.assertEqual(doc["status"], "firing")
        a = doc["alerts"][0]
        self.assertEqual(a["status"], "firing")
        self.assertEqual(a["labels"]["severity"], "high")
        self.assertIn("startsAt", a)
        self.assertIn("fingerprint", a)
        self.assertGreater(doc["metric_value"], 3)
        self.assertEqual(doc["alert_id"], alpha["id"])
        slack = h.wait_for(lambda: self.recv.by_path("/slack"), 10, what="slack")
        self.assertIn("text", json.loads(slack[0][2]))
        self.assertNotIn("webhook-signature", slack[0][1])
        for addr in ("ops@example.test", "owner@example.test"):
            mails = h.wait_for(lambda: self.mail.to(addr), 10, what=f"mail to {addr}")
            self.assertIsNotNone(header(mails[0], "Message-ID"))
            self.assertIn("alpha errors", mails[0].decode("utf-8", "replace"))
        # the outbox recorded every attempt, URLs cut to scheme://host
        rows = h.wait_for(lambda: self.q(
            "SELECT notifications_sent FROM alerts WHERE id = %s AND "
            "jsonb_array_length(notifications_sent) >= 4", (alpha["id"],)), 10, what="sent")
        sent = rows[0]["notifications_sent"]
        self.assertEqual({s["channel"] for s in sent}, {"webhook", "slack", "email"})
        for s in sent:
            self.assertEqual(s["result"], "delivered")
            self.assertNotIn("/hook", s["target"])
            self.assertNotIn("/slack", s["target"])

    def check_escalation_and_ack(self, alpha):
        esc = self.wait_alert("esc")[0]
        self.aggd_cli("ack", str(alpha["id"]))
        t0 = esc["created_at"]
        self.aggd_cli("escalate", "--now", (t0 + timedelta(minutes=4)).isoformat() + "Z")
        self.assertEqual(self.alerts("esc")[0]["escalation_level"], 0)
        self.aggd_cli("escalate", "--now", (t0 + timedelta(minutes=5, seconds=1)).isoformat() + "Z")
        self.assertEqual(self.alerts("esc")[0]["escalation_level"], 1)
        self.aggd_cli("escalate", "--now", (t0 + timedelta(minutes=15, seconds=2)).isoformat() + "Z")
        self.assertEqual(self.alerts("esc")[0]["escalation_level"], 2)
        e1 = h.wait_for(lambda: self.recv.by_path("/esc1"), 10, what="level 1")
        e2 = h.wait_for(lambda: self.recv.by_path("/esc2"), 10, what="level 2")
        self.assertEqual([json.loads(p[2])["escalation_level"] for p in e1], [1])
        self.assertEqual([json.loads(p[2])["escalation_level"] for p in e2], [2])
        for p in e1 + e2:  # the acknowledged alert never escalated
            self.assertEqual(json.loads(p[2])["alert_id"], esc["id"])
        a = self.q("SELECT * FROM alerts WHERE id = %s", (alpha["id"],))[0]
        self.assertEqual((a["status"], a["escalation_level"]), ("acknowledged", 0))
        # levels spent, no cooldown repeats (cooldown_minutes 0): nothing more
        self.aggd_cli("escalate", "--now", (t0 + timedelta(hours=5)).isoformat() + "Z")
        self.assertEqual(self.alerts("esc")[0]["escalation_level"], 2)

    def check_retries(self):
        h.wait_for(lambda: self.q("SELECT 1 FROM alert_notifications WHERE "
                                  "target LIKE '%%/flaky' AND status = 'delivered'"), 20,
                   what="flaky delivered")
        row = self.q("SELECT * FROM alert_notifications WHERE target LIKE '%%/flaky'")
        self.assertEqual(len(row), 1)
        self.assertEqual(row[0]["attempts"], 4)
        posts = self.recv.by_path("/flaky")
        self.assertEqual(len(posts), 4)
        self.assertEqual(len({p[1]["webhook-id"] for p in posts}), 1)  # constant across retries
        sent = self.alerts("retry")[0]["notifications_sent"]
        self.assertEqual([s["result"] for s in sent], ["retry"] * 3 + ["delivered"])
        self.assertEqual([s["status"] for s in sent], [500] * 3 + [200])

    def hook_notices(self, module):
        ids = {a["id"] for a in self.alerts(module)}
        return [json.loads(p[2]) for p in self.recv.by_path("/hook")
                if json.loads(p[2])["alert_id"] in ids]

    def check_flap_and_spike_and_resolve(self, alpha):
        # events stop: alpha's window empties, the alert resolves (it was acknowledged)
        resolved = self.wait_alert("alpha", status=("resolved",), timeout=45)[0]
        self.assertEqual(resolved["resolution_type"], "auto")
        self.assertIsNotNone(resolved["resolved_at"])
        notices = h.wait_for(lambda: [n for n in self.hook_notices("alpha")
                                      if n["status"] == "resolved"], 10, what="resolved hook")
        self.assertEqual(len(notices), 1)
        mails = h.wait_for(lambda: self.mail.to("ops@example.test")[1:], 10, what="resolved mail")
        first = self.mail.to("ops@example.test")[0]
        self.assertEqual(header(mails[0], "In-Reply-To"), header(first, "Message-ID"))
        # the flapping rule went recovering (keep_firing 120 s); a breach again is silent
        h.wait_for(lambda: self.q("SELECT 1 FROM alert_rule_state WHERE rule_id = %s AND "
                                  "state = 'recovering'", (self.rules["flap"],)), 10,
                   what="flap recovering")
        self.send("flap")
        h.wait_for(lambda: self.q("SELECT 1 FROM alert_rule_state WHERE rule_id = %s AND "
                                  "state = 'firing'", (self.rules["flap"],)), 10,
                   what="flap firing again")
        time.sleep(1)
        self.assertEqual(len(self.alerts("flap")), 1)
        self.assertEqual([n["status"] for n in self.hook_notices("flap")], ["firing"])
        # the spike lasted its 30 s window, under for_seconds 60: never fired
        self.assertEqual(self.alerts("spike"), [])
        self.assertEqual(self.q("SELECT state FROM alert_rule_state WHERE rule_id = %s",
                                (self.rules["spike"],))[0]["state"], "ok")
        # a breach after a manual resolve opens a new alert
        esc = self.alerts("esc")[0]
        self.aggd_cli("resolve", str(esc["id"]))
        self.aggd_cli("close", str(esc["id"]))
        self.send("esc")
        self.wait_alert("esc", timeout=20)
        self.assertEqual(len(self.alerts("esc")), 2)
        out = h.run_aggd("alerts", "close", str(alpha["id"] + 1000),
                         "--set", f"database.url={self.db.url}")
        self.assertEqual(out.returncode, 1)
        self.assertIn("does not exist", out.stderr)
        status, _, metrics = self.aggd.get("/metrics")
        self.assertIn('aggd_notification_attempts_total{channel="webhook",result="delivered"}',
                      metrics)
        self.assertIn('aggd_alert_rules_by_state{state="firing",severity="high"}', metrics)
        self.assertIn("aggd_rule_aggregates_bytes", metrics)
        self.assertIn("broken", self.aggd.output())  # logged, skipped

    def check_restart_delivers_pending_once(self, alpha):
        self.assertEqual(self.aggd.stop(), 0, self.aggd.output())
        self.aggd.close()
        # a notice queued while aggd was down, and one a crash left mid-send (lease over)
        for mid, status in (("msg_restart_pending", "pending"), ("msg_restart_sending", "sending")):
            self.q("INSERT INTO alert_notifications (message_id, alert_id, alert_created_at,"
                   " rule_id, notice, channel, endpoint_id, target, status, next_attempt_at,"
                   " payload) SELECT %s, alert_id, alert_created_at, rule_id, notice, channel,"
                   " endpoint_id, target, %s, now() AT TIME ZONE 'UTC', payload"
                   " FROM alert_notifications WHERE target LIKE '%%/hook' ORDER BY id LIMIT 1",
                   (mid, status))
        self.start_aggd()
        for mid in ("msg_restart_pending", "msg_restart_sending"):
            h.wait_for(lambda: [p for p in self.recv.by_path("/hook")
                                if p[1]["webhook-id"] == mid], 10, what=mid)
        time.sleep(1.5)
        for mid in ("msg_restart_pending", "msg_restart_sending"):
            self.assertEqual(len([p for p in self.recv.by_path("/hook")
                                  if p[1]["webhook-id"] == mid]), 1)
        # nothing already delivered went out again
        ids = [p[1]["webhook-id"] for p in self.recv.by_path("/hook")]
        self.assertEqual(len(ids), len(set(ids)))


if __name__ == "__main__":
    h.main()
