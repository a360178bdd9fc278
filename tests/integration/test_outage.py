"""A PostgreSQL outage with the default settings (token auth on HTTP): aggd keeps
accepting over every transport into its spool, its memory stays bounded, and every
acknowledged event lands exactly once when PostgreSQL returns."""
import json
import os
import socket
import threading
import time
import unittest
import uuid

import psycopg2

import harness as h

OUTAGE_SECONDS = int(os.environ.get("AGGD_OUTAGE_SECONDS", "60"))
RSS_LIMIT_MIB = 160
SANITIZED = h.SANITIZED
rss_mib = h.rss_mib


class Sender(threading.Thread):
    """Sends events with unique ids in correlation_id until stopped. <send> takes a
    list of ids and returns those the transport acknowledged."""

    def __init__(self, name, run_id, send, batch, pause):
        super().__init__(daemon=True)
        self.label, self.run_id, self.send = name, run_id, send
        self.batch, self.pause = batch, pause
        self.acked, self.sent, self.refused = [], 0, 0
        self.halt = threading.Event()
        self.error = None

    def run(self):
        n = 0
        try:
            while not self.halt.is_set():
                ids = [f"{self.run_id}-{self.label}-{n + i}" for i in range(self.batch)]
                n += self.batch
                self.sent += len(ids)
                got = self.send(ids)
                self.acked.extend(got)
                self.refused += len(ids) - len(got)
                time.sleep(self.pause)
        except Exception as e:  # reported by the test
            self.error = e

    def stop(self):
        self.halt.set()
        self.join(60)


class OutageTest(unittest.TestCase):
    def setUp(self):
        self.cluster = h.Cluster()
        self.db = h.Database(self.cluster.admin)
        self.run_id = "o" + uuid.uuid4().hex[:10]
        url = f"database.url={self.db.url}"
        self.assertEqual(h.run_aggd("migrate", "up", "--set", url).returncode, 0)
        out = h.run_aggd("user", "add", "--email", "ship@example.com", "--role", "editor",
                         "--set", url, input="a long passphrase\n")
        self.assertEqual(out.returncode, 0, out.stderr)
        out = h.run_aggd("token", "create", "--email", "ship@example.com", "--scope", "ingest",
                         "--set", url)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.token = out.stdout.strip().splitlines()[-1]
        # the defaults, ingest.http_auth = token included
        self.aggd = h.Aggd(self.db.url)

    def tearDown(self):
        self.aggd.close()
        self.cluster.start()
        self.db.close()
        self.cluster.close()

    def http_send(self, ids):
        body = "".join(json.dumps({"message": "outage", "correlation_id": i}) + "\n"
                       for i in ids)
        try:
            status, _, text = h.request(
                self.aggd.ports["http"], "POST", "/v1/logs", body=body, timeout=10,
                headers={"Content-Type": "application/x-ndjson",
                         "Authorization": f"Bearer {self.token}"})
        except OSError:
            return []
        if status != 202:
            self.http_statuses.append(status)
            return []
        return ids[:len(ids) - len(json.loads(text)["errors"])]

    def stream_sender(self, port, line):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.settimeout(30)
        self.sockets.append(sock)

        def send(ids):
            sock.sendall(b"".join(line(i) for i in ids))
            return ids  # TCP: checked once the connection is closed cleanly
        return send

    def udp_sender(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sockets.append(sock)

        def send(ids):
            for i in ids:
                sock.sendto(f"<14>1 - h app - - [x correlation_id=\"{i}\"] outage".encode(),
                            ("127.0.0.1", self.aggd.ports["syslog_udp"]))
            return ids
        return send

    def stored(self):
        with psycopg2.connect(self.db.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT correlation_id, count(*) FROM system_logs "
                        "WHERE correlation_id LIKE %s GROUP BY 1", (self.run_id + "-%",))
            return dict(cur.fetchall())

    def test_outage_keeps_every_transport_accepting_and_loses_nothing(self):
        self.http_statuses, self.sockets = [], []
        # a token checked once while PostgreSQL is up is cached
        self.assertEqual(len(self.http_send([f"{self.run_id}-warmup"])), 1, self.http_statuses)
        ports = self.aggd.ports
        senders = [
            Sender("http", self.run_id, self.http_send, 50, 0.01),
            Sender("tcp", self.run_id, self.stream_sender(
                ports["syslog_tcp"],
                lambda i: f"<14>1 - h app - - [x correlation_id=\"{i}\"] outage\n".encode()),
                50, 0.01),
            Sender("json", self.run_id, self.stream_sender(
                ports["json_tcp"],
                lambda i: (json.dumps({"message": "outage", "correlation_id": i}) + "\n").encode()),
                50, 0.01),
            Sender("udp", self.run_id, self.udp_sender(), 20, 0.01),
        ]
        self.cluster.stop()
        started = time.monotonic()
        for s in senders:
            s.start()
        peak = 0.0
        while time.monotonic() - started < OUTAGE_SECONDS:
            time.sleep(1)
            peak = max(peak, rss_mib(self.aggd.proc.pid))
            self.assertIsNone(self.aggd.proc.poll(), self.aggd.output()[-3000:])
        for s in senders:
            s.stop()
        for sock in self.sockets:
            sock.close()
        _, _, metrics = self.aggd.get("/metrics")
        spool = [l for l in metrics.splitlines() if l.startswith("aggd_spool_bytes ")]
        print(f"outage of {OUTAGE_SECONDS} s: " + ", ".join(
            f"{s.label} sent {s.sent} acked {len(s.acked)}" for s in senders) +
            f"; peak RSS {peak:.0f} MiB; {spool}")
        for s in senders:
            self.assertIsNone(s.error, f"{s.label}: {s.error}")
        http = senders[0]
        self.assertEqual(http.refused, 0, f"HTTP refused during the outage: "
                         f"{sorted(set(self.http_statuses))}")
        # paced at about 5000 events/s each: far more than the writers' batches hold
        for s in senders[:3]:
            self.assertGreater(len(s.acked), 1000 * OUTAGE_SECONDS, f"{s.label} was held back")
        if not SANITIZED:
            self.assertLess(peak, RSS_LIMIT_MIB, "memory grew with the outage")

        self.cluster.start()

        def landed():
            got = self.stored()
            return got if all(i in got for s in senders[:3] for i in s.acked) else None
        try:
            counts = h.wait_for(landed, 300, interval=2, what="every acknowledged event")
        except AssertionError:
            counts = self.stored()
        for s in senders[:3]:
            missing = [i for i in s.acked if i not in counts]
            self.assertEqual(missing, [], f"{s.label}: acknowledged but lost {missing[:5]}")
        dups = {i: c for i, c in counts.items() if c > 1}
        self.assertEqual(dups, {}, "stored more than once")
        udp = [i for i in counts if "-udp-" in i]
        print(f"udp: sent {senders[3].sent}, stored {len(udp)}")
        self.assertGreater(len(udp), 0)
        self.assertEqual(self.aggd.stop(), 0, self.aggd.output()[-3000:])


if __name__ == "__main__":
    h.main()
