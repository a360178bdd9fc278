"""/metrics counts the same things the same way on every transport: known numbers of
good, bad and oversized events go in over syslog UDP, syslog TCP, JSON lines over TCP
and HTTP, and each counter's value is checked per transport. The kernel's UDP drops
are counted too: with aggd stopped (SIGSTOP) and a small listen.udp_rcvbuf, a burst
overflows the socket, and stored rows plus reported drops make exactly the burst."""
import gzip
import json
import os
import re
import signal
import socket
import time
import unittest
import uuid

import psycopg2

import harness as h

TRANSPORTS = ("syslog_udp", "syslog_tcp", "json_tcp", "http")
COUNTERS = ("aggd_events_received_total", "aggd_events_accepted_total",
            "aggd_events_rejected_total", "aggd_events_dropped_total",
            "aggd_frames_oversized_total", "aggd_bytes_received_total")
MAX_MESSAGE = 1024
# Not RFC 5424 (TIME-SECFRAC has at most 6 digits) and shaped like it: refused.
BAD_SYSLOG = b"<165>1 2003-08-24T05:14:15.000000003-07:00 host app - - - bad"

SAMPLE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$')


def metrics(aggd):
    """{(name, labels): value} of every sample on /metrics."""
    status, _, text = aggd.get("/metrics")
    assert status == 200, text
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def per_transport(values, name):
    return {t: values.get((name, f'transport="{t}"')) for t in TRANSPORTS}


def udp_series(values, name):
    """The one series of <name> with transport syslog_udp and a listener label."""
    found = [v for (n, labels), v in values.items()
             if n == name and 'transport="syslog_udp"' in labels and "listener=" in labels]
    assert len(found) == 1, (name, found)
    return found[0]


class DatabaseTest(unittest.TestCase):
    """A fresh database and one daemon per test."""

    extra = ()

    def setUp(self):
        self.db = h.Database()
        out = h.run_aggd("migrate", "up", "--set", f"database.url={self.db.url}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.aggd = h.Aggd(self.db.url, "--set", "ingest.http_auth=none",
                           "--set", "batch.max_ms=20", *self.extra)
        self.tag = uuid.uuid4().hex[:8]

    def tearDown(self):
        try:
            os.kill(self.aggd.proc.pid, signal.SIGCONT)
        except OSError:
            pass
        rc = self.aggd.stop()
        output = self.aggd.output()
        self.aggd.close()
        self.db.close()
        self.assertEqual(rc, 0, output)

    def count(self, sql, params=()):
        conn = psycopg2.connect(self.db.url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchone()[0]
        finally:
            conn.close()


class TransportCounters(DatabaseTest):
    extra = ("--set", f"ingest.max_message_bytes={MAX_MESSAGE}")

    def syslog(self, transport, i):
        return f"<14>1 - host app - - - {self.tag} {transport} {i}".encode()

    def oversized_syslog(self, transport):
        head = f"<14>1 - host app - - - {self.tag} {transport} big ".encode()
        return head + b"x" * (MAX_MESSAGE + 500 - len(head))

    def send_udp(self):
        datagrams = [self.syslog("udp", i) for i in range(7)]
        datagrams += [BAD_SYSLOG, BAD_SYSLOG, self.oversized_syslog("udp")]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in datagrams:
                s.sendto(d, ("127.0.0.1", self.aggd.ports["syslog_udp"]))
        return {"good": 7, "bad": 2, "oversized": 1, "bytes": sum(map(len, datagrams))}

    def send_tcp(self, port, frames):
        data = b"".join(f + b"\n" for f in frames)
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(data)
        return len(data)

    def send_syslog_tcp(self):
        frames = [self.syslog("tcp", i) for i in range(5)]
        frames += [BAD_SYSLOG] * 3 + [self.oversized_syslog("tcp")] * 2
        n = self.send_tcp(self.aggd.ports["syslog_tcp"], frames)
        return {"good": 5, "bad": 3, "oversized": 2, "bytes": n}

    def send_json_tcp(self):
        lines = [json.dumps({"message": f"{self.tag} json {i}"}).encode() for i in range(4)]
        lines += [b"this is not JSON", b"[1, 2]", b"", b"   "]  # blank lines are no events
        lines.append(json.dumps({"message": f"{self.tag} json big " + "x" * MAX_MESSAGE})
                     .encode())
        n = self.send_tcp(self.aggd.ports["json_tcp"], lines)
        return {"good": 4, "bad": 2, "oversized": 1, "bytes": n}

    def post(self, body, ctype="application/x-ndjson", encoding=None):
        headers = {"Content-Type": ctype}
        if encoding:
            headers["Content-Encoding"] = encoding
        return h.request(self.aggd.http_port, "POST", "/v1/logs", body=body, headers=headers)

    def send_http(self):
        sent = 0
        lines = [json.dumps({"message": f"{self.tag} http {i}"}) for i in range(3)]
        lines += ["not JSON", "42",
                  json.dumps({"message": f"{self.tag} http big " + "x" * MAX_MESSAGE})]
        body = ("\n".join(lines) + "\n").encode()
        status, _, text = self.post(body)
        self.assertEqual(status, 202, text)
        self.assertEqual(json.loads(text)["rejected"], 3, text)
        sent += len(body)
        # bytes as sent: before decompression
        body = gzip.compress("".join(json.dumps({"message": f"{self.tag} http gz {i}"}) + "\n"
                                     for i in range(2)).encode())
        status, _, text = self.post(body, encoding="gzip")
        self.assertEqual(status, 202, text)
        sent += len(body)
        # refused as a whole: bytes, no events; a wrong media type is refused on the
        # headers, before its body is read
        for body, ctype, want in ((b"plain text", "text/plain", 415),
                                  (b'{"message": ', "application/json", 400)):
            status, _, text = self.post(body, ctype=ctype)
            self.assertEqual(status, want, text)
            sent += len(body) if want != 415 else 0
        return {"good": 5, "bad": 2, "oversized": 1, "bytes": sent}

    def test_every_transport_counts_the_same_things(self):
        before = metrics(self.aggd)
        for name in COUNTERS:
            self.assertEqual(per_transport(before, name), dict.fromkeys(TRANSPORTS, 0.0), name)
        sent = {"syslog_udp": self.send_udp(), "syslog_tcp": self.send_syslog_tcp(),
                "json_tcp": self.send_json_tcp(), "http": self.send_http()}
        want = {}
        for t, s in sent.items():
            rejected = s["bad"] + s["oversized"]
            want[t] = {"aggd_events_received_total": s["good"] + rejected,
                       "aggd_events_accepted_total": s["good"],
                       "aggd_events_rejected_total": rejected,
                       "aggd_events_dropped_total": 0,
                       "aggd_frames_oversized_total": s["oversized"],
                       "aggd_bytes_received_total": s["bytes"]}

        def counted():
            values = metrics(self.aggd)
            got = {t: {name: values.get((name, f'transport="{t}"')) for name in COUNTERS}
                   for t in TRANSPORTS}
            return got if got == want else None
        try:
            h.wait_for(counted, 10, interval=0.1, what="the counters")
        except AssertionError:
            values = metrics(self.aggd)
            for t in TRANSPORTS:
                for name in COUNTERS:
                    with self.subTest(transport=t, counter=name):
                        self.assertEqual(values.get((name, f'transport="{t}"')), want[t][name])
            raise
        # what the counters say is what PostgreSQL holds
        h.wait_for(lambda: self.count("SELECT count(*) FROM system_logs WHERE message LIKE %s",
                                      (self.tag + " %",)) == sum(s["good"]
                                                                 for s in sent.values()),
                   15, what="the accepted rows")
        for t, s in sent.items():
            h.wait_for(lambda: self.count("SELECT count(*) FROM ingest_rejects "
                                          "WHERE transport = %s", (t,)) ==
                       s["bad"] + s["oversized"], 15, what=f"the rejects of {t}")
        # an oversized datagram's reject keeps its true size and its head
        big = len(self.oversized_syslog("udp"))
        self.assertEqual(self.count(
            "SELECT count(*) FROM ingest_rejects WHERE transport = 'syslog_udp' AND error = %s "
            "AND raw = %s", (f"datagram of {big} octets exceeds the maximum {MAX_MESSAGE}; "
                             "refused", self.oversized_syslog("udp")[:MAX_MESSAGE])), 1)
        values = metrics(self.aggd)
        self.assertGreater(udp_series(values, "aggd_udp_rcvbuf_bytes"), 0)
        self.assertEqual(udp_series(values, "aggd_udp_kernel_drops_total"), 0)


def rmem_max():
    with open("/proc/sys/net/core/rmem_max") as f:
        return int(f.read())


class KernelDrops(DatabaseTest):
    RCVBUF = 64 * 1024
    N = 5000
    extra = ("--set", "listen.udp_rcvbuf=64k")

    def test_datagrams_the_kernel_dropped_are_counted(self):
        values = metrics(self.aggd)
        rcvbuf = udp_series(values, "aggd_udp_rcvbuf_bytes")
        if os.geteuid() == 0 or rmem_max() >= self.RCVBUF:
            self.assertEqual(rcvbuf, 2 * self.RCVBUF)  # the kernel counts twice what it grants
        self.assertIn(f"receive buffer of UDP \"127.0.0.1:{self.aggd.ports['syslog_udp']}\": "
                      f"{int(rcvbuf)} bytes", self.aggd.output())
        self.assertEqual(udp_series(values, "aggd_udp_kernel_drops_total"), 0)

        os.kill(self.aggd.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(0.2)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(self.N):
                    s.sendto(f"<14>1 - h app - - - {self.tag} {i}".encode(),
                             ("127.0.0.1", self.aggd.ports["syslog_udp"]))
        finally:
            os.kill(self.aggd.proc.pid, signal.SIGCONT)

        def settled():
            v = metrics(self.aggd)
            accepted = v[("aggd_events_accepted_total", 'transport="syslog_udp"')]
            rows = self.count("SELECT count(*) FROM system_logs WHERE message LIKE %s",
                              (self.tag + " %",))
            return (rows, v) if rows == accepted and rows > 0 else None
        rows, values = h.wait_for(settled, 20, interval=0.2, what="the burst to land")
        time.sleep(0.5)  # nothing more comes
        values = metrics(self.aggd)
        drops = udp_series(values, "aggd_udp_kernel_drops_total")
        print(f"burst of {self.N}: {rows} stored, {int(drops)} dropped by the kernel")
        self.assertEqual(values[("aggd_events_dropped_total", 'transport="syslog_udp"')], 0)
        self.assertEqual(values[("aggd_events_received_total", 'transport="syslog_udp"')], rows)
        self.assertGreater(drops, 0)
        self.assertEqual(rows + drops, self.N)


if __name__ == "__main__":
    h.main()
