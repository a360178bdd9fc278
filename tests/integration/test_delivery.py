"""What a sender is told matches what is stored: an application's own user ids are
never a reason to refuse an event, and ?wait=commit answers 200 only for rows that
are in system_logs."""
import json
import socket
import time
import unittest
import uuid

import psycopg2
import psycopg2.extras

import harness as h

UNKNOWN = 987654


class UserIdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.served = h.Served("--set", "ingest.http_auth=none", "--set", "batch.max_ms=50")
        cls.db, cls.aggd, cls.conn = cls.served.db, cls.served.aggd, cls.served.conn
        out = h.run_aggd("user", "add", "--email", "app@example.com", "--role", "viewer",
                         "--set", f"database.url={cls.db.url}", input="a long passphrase\n")
        assert out.returncode == 0, out.stderr
        with cls.conn.cursor() as cur:
            cur.execute("SELECT id FROM users WHERE email = 'app@example.com'")
            cls.user = cur.fetchone()[0]

    @classmethod
    def tearDownClass(cls):
        cls.served.close()

    def post(self, body, ctype="application/x-ndjson"):
        status, _, text = h.request(self.aggd.http_port, "POST", "/v1/logs?wait=commit",
                                    body=body, headers={"Content-Type": ctype})
        return status, json.loads(text)

    def rows(self, tag, n):
        def fetch():
            with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute("SELECT message, user_id, extra_data FROM system_logs "
                            "WHERE message LIKE %s ORDER BY id", (f"%{tag}%",))
                found = cur.fetchall()
            return found if len(found) >= n else None
        return h.wait_for(fetch, 10, what=f"{n} rows tagged {tag}")

    def rejects(self, tag):
        with self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM ingest_rejects WHERE convert_from(raw, 'UTF8') "
                        "LIKE %s", (f"%{tag}%",))
            return cur.fetchone()[0]

    def test_json_user_id_of_the_application_is_kept_in_extra_data(self):
        tag = uuid.uuid4().hex
        before = self.aggd.metric("aggd_events_user_id_unknown_total")
        body = "".join(json.dumps(e) + "\n" for e in [
            {"message": f"{tag} foreign", "user_id": UNKNOWN, "shop": "eu"},
            {"message": f"{tag} ours", "user_id": self.user},
            {"message": f"{tag} foreign again", "user_id": UNKNOWN},
        ])
        status, doc = self.post(body)
        self.assertEqual((status, doc), (200, {"accepted": 3, "rejected": 0, "refused": 0,
                                               "errors": []}))
        rows = {r["message"]: r for r in self.rows(tag, 3)}
        foreign = rows[f"{tag} foreign"]
        self.assertIsNone(foreign["user_id"])
        self.assertEqual(foreign["extra_data"], {"user_id": UNKNOWN, "shop": "eu"})
        self.assertIsNone(rows[f"{tag} foreign again"]["user_id"])
        self.assertEqual(rows[f"{tag} foreign again"]["extra_data"]["user_id"], UNKNOWN)
        self.assertEqual(rows[f"{tag} ours"]["user_id"], self.user)
        self.assertNotIn("user_id", rows[f"{tag} ours"]["extra_data"] or {})
        self.assertEqual(self.rejects(tag), 0)
        self.assertEqual(self.aggd.metric("aggd_events_user_id_unknown_total") - before, 2)

    def test_syslog_sd_param_user_id(self):
        tag = uuid.uuid4().hex
        line = (f'<14>1 2026-01-01T00:00:00Z host app 1 - [meta@32473 user_id="{UNKNOWN}"] '
                f'{tag} sd\n').encode()
        with socket.create_connection(("127.0.0.1", self.aggd.ports["syslog_tcp"])) as s:
            s.sendall(line)
        row = self.rows(tag, 1)[0]
        self.assertIsNone(row["user_id"])
        self.assertEqual(row["extra_data"]["user_id"], UNKNOWN)
        self.assertEqual(self.rejects(tag), 0)

    def test_otlp_enduser_id(self):
        tag = uuid.uuid4().hex
        doc = {"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{
            "logRecords": [
                {"timeUnixNano": str(int(time.time() * 1e9)),
                 "body": {"stringValue": f"{tag} otlp {k}"},
                 "attributes": [{"key": k, "value": {"stringValue": str(UNKNOWN)}}]}
                for k in ("enduser.id", "user.id")]}]}]}
        status, reply = self.post(json.dumps(doc), ctype="application/json")
        self.assertEqual(status, 200, reply)
        self.assertEqual(reply["refused"], 0)
        for row in self.rows(tag, 2):
            self.assertIsNone(row["user_id"], row)
            self.assertEqual(row["extra_data"]["user_id"], UNKNOWN, row)
        self.assertEqual(self.rejects(tag), 0)

    def test_a_user_deleted_meanwhile_does_not_cost_the_event(self):
        tag = uuid.uuid4().hex
        out = h.run_aggd("user", "add", "--email", f"{tag}@example.com", "--role", "viewer",
                         "--set", f"database.url={self.db.url}", input="a long passphrase\n")
        self.assertEqual(out.returncode, 0, out.stderr)
        with self.conn.cursor() as cur:
            cur.execute("DELETE FROM users WHERE email = %s RETURNING id",
                        (f"{tag}@example.com",))
            gone = cur.fetchone()[0]
        status, doc = self.post(json.dumps({"message": f"{tag} gone", "user_id": gone}) + "\n")
        self.assertEqual((status, doc["accepted"], doc["refused"]), (200, 1, 0))
        row = self.rows(tag, 1)[0]
        self.assertIsNone(row["user_id"])
        self.assertEqual(row["extra_data"]["user_id"], gone)


if __name__ == "__main__":
    h.main()
