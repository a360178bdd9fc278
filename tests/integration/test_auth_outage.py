"""HTTP ingest with the default token auth while PostgreSQL is down: a token seen valid
before the outage keeps getting 202, an unknown token and a token revoked before the
outage do not, and every acknowledged event is in system_logs exactly once after
PostgreSQL returns. Runs on a private cluster that it stops and starts.

AGGD_TEST_OUTAGE_S sets how long the outage lasts (default 60 s)."""
import hashlib
import json
import os
import time
import unittest
import uuid

import harness as h

OUTAGE_S = float(os.environ.get("AGGD_TEST_OUTAGE_S", "60"))
FRESH_S = 30  # how long a token check is cached while PostgreSQL answers


class AuthOutage(unittest.TestCase):
    def setUp(self):
        self.cluster = h.Cluster()
        self.db = None
        self.aggd = None
        try:
            self.db = h.Database(self.cluster.admin)
            url = f"database.url={self.db.url}"
            for args, stdin in ((("migrate", "up"), None),
                                (("user", "add", "--email", "ops@example.com", "--role",
                                  "admin"), "pw-ops\n")):
                out = h.run_aggd(*args, "--set", url, input=stdin)
                self.assertEqual(out.returncode, 0, out.stderr)
            self.good, self.revoked = (self.create_token(url) for _ in range(2))
            # default ingest.http_auth = token
            self.aggd = h.Aggd(self.db.url, "--set", "batch.max_ms=20")
        except BaseException:
            self.tearDown()
            raise
        self.run_id = "a" + uuid.uuid4().hex[:10]
        self.sent = 0
        self.acked = []

    def tearDown(self):
        if self.aggd is not None:
            self.aggd.close()
        try:
            self.cluster.start()
        except Exception:
            pass
        if self.db is not None:
            self.db.close()
        self.cluster.close()

    def create_token(self, url):
        out = h.run_aggd("token", "create", "--email", "ops@example.com", "--scope", "ingest",
                         "--set", url)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout.strip().splitlines()[-1]

    def send(self, token, n=10):
        """POSTs <n> events with fresh ids; (status, headers). Acknowledged ids are kept."""
        ids = [f"{self.run_id}-{self.sent + i}" for i in range(n)]
        self.sent += n
        body = "".join(json.dumps({"message": "auth outage", "correlation_id": i}) + "\n"
                       for i in ids)
        status, headers, text = h.request(
            self.aggd.http_port, "POST", "/v1/logs", body=body, timeout=30,
            headers={"Content-Type": "application/x-ndjson",
                     "Authorization": f"Bearer {token}"})
        if 200 <= status < 300:
            self.assertEqual(json.loads(text)["accepted"], n, text)
            self.acked.extend(ids)
        return status, headers

    def stored(self):
        return h.correlation_counts(self.db.url, self.run_id + "-")

    def test_a_token_seen_valid_keeps_ingesting_while_postgresql_is_down(self):
        unknown = "aggd_" + (uuid.uuid4().hex + uuid.uuid4().hex)[:43]
        self.assertEqual(self.send(self.good)[0], 202)
        self.assertEqual(self.send(self.revoked)[0], 202)
        used = time.monotonic()
        self.db.sql("UPDATE api_tokens SET revoked_at = now() AT TIME ZONE 'UTC' "
                    f"WHERE token_hash = '{hashlib.sha256(self.revoked.encode()).hexdigest()}'")
        # the revocation is seen once the cached check is out of date
        h.wait_for(lambda: self.send(self.revoked)[0] == 401, FRESH_S + 15, interval=1,
                   what="the revoked token refused")
        self.assertEqual(self.send(unknown)[0], 401)
        # the good token's check is now out of date too: no fresh verdict to lean on
        time.sleep(max(0.0, used + FRESH_S + 1 - time.monotonic()))

        self.cluster.stop()
        status, _ = self.send(self.good)
        self.assertEqual(status, 202, self.aggd.output()[-2000:])
        # a token never seen: we cannot tell now, retry later
        status, headers = self.send("aggd_" + (uuid.uuid4().hex + uuid.uuid4().hex)[:43])
        self.assertEqual(status, 503)
        self.assertIn("retry-after", headers)
        # refused before the outage: 401 while the refusal is fresh (5 s), then 503
        for token in (unknown, self.revoked):
            self.assertIn(self.send(token)[0], (401, 503))
        time.sleep(5)
        for token in (unknown, self.revoked):
            self.assertEqual(self.send(token)[0], 503)
        self.assertEqual(self.send("aggd_short")[0], 401)  # not a token at all
        statuses = {}
        end = time.monotonic() + OUTAGE_S
        while time.monotonic() < end:
            status, _ = self.send(self.good)
            statuses[status] = statuses.get(status, 0) + 1
            time.sleep(0.2)
        print(f"during a {OUTAGE_S:.0f} s outage: {statuses}")
        self.assertEqual(list(statuses), [202])
        self.assertGreater(len(self.acked), 0)

        self.cluster.start()
        h.wait_for(lambda: set(self.stored()) >= set(self.acked), 60, interval=0.5,
                   what="every acknowledged event stored")
        time.sleep(1)  # nothing arrives twice later
        counts = self.stored()
        self.assertEqual([i for i in self.acked if i not in counts], [])
        self.assertEqual({i: c for i, c in counts.items() if c > 1}, {})
        self.assertEqual(set(counts), set(self.acked))
        # and PostgreSQL decides again
        h.wait_for(lambda: self.send(unknown)[0] == 401, 15, interval=0.5,
                   what="the unknown token refused again")
        self.assertEqual(self.send(self.revoked)[0], 401)
        self.assertEqual(self.send(self.good)[0], 202)


if __name__ == "__main__":
    h.main()
