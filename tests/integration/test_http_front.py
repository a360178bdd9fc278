"""The HTTP front against hostile clients: bodies refused from their headers (token,
route, method, media type, length, budget), header and body deadlines, descriptor
exhaustion, and request smuggling, against the real aggd with raw sockets."""
import os
import re
import resource
import secrets
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import apikit  # noqa: E402
import harness as h  # noqa: E402

MIB = 1 << 20
SANITIZED = h.SANITIZED
rss_mib = h.rss_mib
cpu_s = h.cpu_s


def read_all(sock, timeout=10):
    """Everything <sock> receives until the peer closes (or <timeout>): (bytes, closed)."""
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return out, True
            out += data
    except ConnectionResetError:
        return out, True
    except socket.timeout:
        return out, False


def status_line(sock, timeout=15):
    """The first line the server sends on <sock> (b"" when it closes first)."""
    sock.settimeout(timeout)
    out = b""
    try:
        while b"\r\n" not in out:
            data = sock.recv(4096)
            if not data:
                break
            out += data
    except (ConnectionResetError, socket.timeout):
        pass
    return out.split(b"\r\n", 1)[0]


def flood(sock, total, stop):
    """Sends <total> bytes of body on <sock> until the server stops reading."""
    chunk = b"x" * (256 * 1024)
    sent = 0
    try:
        while sent < total and not stop.is_set():
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass


class BodiesBeforeReading(unittest.TestCase):
    """What the headers already refuse is answered before the body is read."""

    @classmethod
    def setUpClass(cls):
        cls.env = apikit.ApiEnv(extra=("--set", "listen.http_inflight_body_bytes=1MiB"))
        cls.port = cls.env.aggd.http_port

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def head(self, path, length, token=None, ctype="application/x-ndjson", extra=b""):
        auth = b"Authorization: Bearer %s\r\n" % token.encode() if token else b""
        return (b"POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: %s\r\nContent-Length: %d\r\n"
                b"%s\r\n" % (path.encode(), auth, ctype.encode(), length, extra))

    def test_bad_tokens_with_big_bodies_are_refused_without_reading_them(self):
        pid = self.env.aggd.proc.pid
        before = rss_mib(pid)
        stop = threading.Event()
        socks, senders = [], []
        # well-formed tokens nobody issued (each needs a database lookup), or none
        for i in range(30):
            token = None if i % 3 == 0 else "aggd_" + secrets.token_urlsafe(32)[:43]
            path = "/v1/logs" if i % 2 == 0 else "/api/v1/pipelines"
            s = socket.create_connection(("127.0.0.1", self.port), timeout=15)
            s.sendall(self.head(path, 15 * MIB, token))
            socks.append(s)
            t = threading.Thread(target=flood, args=(s, 15 * MIB, stop), daemon=True)
            t.start()
            senders.append(t)
        started = time.monotonic()
        try:
            lines = [status_line(s) for s in socks]
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            for s in socks:
                s.close()
            for t in senders:
                t.join(10)
        for line in lines:
            self.assertTrue(line.startswith(b"HTTP/1.1 401"), lines)
        self.assertLess(elapsed, 20)
        grown = rss_mib(pid) - before
        if not SANITIZED:
            self.assertLess(grown, 48, f"RSS grew by {grown:.0f} MiB")
        self.assertEqual(self.env.aggd.get("/healthz")[0], 200)

    def test_route_method_length_and_media_type_are_refused_from_the_headers(self):
        token = self.env.tokens["ingest"]
        cases = [
            (self.head("/v1/nothing", 15 * MIB, token), b"HTTP/1.1 404"),
            (b"PUT /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (15 * MIB),
             b"HTTP/1.1 405"),
            (self.head("/v1/logs", 15 * MIB, token, ctype="text/plain"), b"HTTP/1.1 415"),
            # the API reads 256 KiB at most, not ingest's 16 MiB
            (self.head("/api/v1/auth/login", 300 * 1024, ctype="application/json"),
             b"HTTP/1.1 413"),
            (b"BREW /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
             b"HTTP/1.1 501"),
        ]
        for head, want in cases:
            with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
                s.sendall(head)  # and no body: the answer must not wait for one
                out, closed = read_all(s)
                self.assertTrue(out.startswith(want), (head, out))
                self.assertTrue(closed, head)
                self.assertIn(b"Connection: close", out)
        # a 405 says what is allowed
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
            s.sendall(cases[1][0])
            self.assertIn(b"Allow: POST", read_all(s)[0])

    def test_a_good_token_still_sends_its_body(self):
        body = b'{"message": "front ok"}\n'
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
            s.sendall(self.head("/v1/logs", len(body), self.env.tokens["ingest"],
                                extra=b"Connection: close\r\n") + body)
            out, closed = read_all(s)
        self.assertTrue(out.startswith(b"HTTP/1.1 202"), out)
        self.assertTrue(closed)
        # chunked, and a request after it on the same connection: the guard frames the
        # chunks as evhttp does, so the second head is found where it starts
        auth = b"Bearer " + self.env.tokens["ingest"].encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
            s.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth +
                      b"\r\nContent-Type: application/x-ndjson\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n"
                      b"c\r\n{\"message\": \r\n11\r\n\"front chunked\"}\n\r\n0\r\n\r\n"
                      b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out, closed = read_all(s)
        self.assertEqual(re.findall(rb"HTTP/1\.1 (\d{3}) ", out), [b"202", b"200"], out)
        self.assertIn(b'"accepted":1', out)
        # 100-continue: the client learns of the refusal without sending its body
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
            s.sendall(self.head("/v1/logs", len(body), "aggd_" + "A" * 43,
                                extra=b"Expect: 100-continue\r\n"))
            self.assertTrue(status_line(s).startswith(b"HTTP/1.1 401"))

    def test_bodies_over_the_in_flight_budget_wait_for_a_503(self):
        token = self.env.tokens["ingest"]
        # the token's verdict cached, so that a's body is admitted as its head arrives
        status, _, text = h.request(self.port, "POST", "/v1/logs", body=b'{"message": "w"}',
                                    headers={"Authorization": f"Bearer {token}",
                                             "Content-Type": "application/json"})
        self.assertEqual(status, 202, text)
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as a:
            # 800 KiB of a 1 MiB budget, announced and not yet sent
            a.sendall(self.head("/v1/logs", 800 * 1024, token))
            time.sleep(0.5)  # a's body is admitted
            with socket.create_connection(("127.0.0.1", self.port), timeout=15) as b:
                b.sendall(self.head("/v1/logs", 800 * 1024, token))
                out, closed = read_all(b)
            self.assertTrue(out.startswith(b"HTTP/1.1 503"), out)
            self.assertIn(b"Retry-After: 1", out)
            self.assertTrue(closed)
            a.sendall((b'{"message": "budget"}\n' * 40000)[:800 * 1024])
            self.assertTrue(status_line(a).startswith(b"HTTP/1.1 "))


class Smuggling(unittest.TestCase):
    """RFC 9112 6.3: a length said twice, or both ways, is refused with 400 and a close."""

    @classmethod
    def setUpClass(cls):
        cls.aggd = h.Aggd("postgresql:///nonexistent?host=/nonexistent",
                          "--set", "ingest.http_auth=none")

    @classmethod
    def tearDownClass(cls):
        cls.aggd.stop()
        cls.aggd.close()

    def one_answer(self, data):
        with socket.create_connection(("127.0.0.1", self.aggd.http_port), timeout=15) as s:
            s.sendall(data)
            out, closed = read_all(s)
        self.assertTrue(closed, data)
        self.assertEqual(out.count(b"HTTP/1.1 "), 1, out)
        return out

    def test_two_content_lengths_are_refused(self):
        second = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        for a, b in ((5, 40), (5, 5)):
            head = (b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (a, b))
            out = self.one_answer(head + b"hello" + second)
            self.assertTrue(out.startswith(b"HTTP/1.1 400"), out)
            self.assertIn(b"Content-Length is given more than once", out)

    def test_content_length_with_transfer_encoding_is_refused(self):
        out = self.one_answer(
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out)

    def test_other_transfer_codings_and_folded_headers_are_refused(self):
        for head in (b"Transfer-Encoding: gzip, chunked\r\n",
                     b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                     b"X-A: 1\r\n folded: 2\r\n",
                     b"Content-Length : 5\r\n"):
            out = self.one_answer(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n"
                                  b"hello")
            self.assertTrue(out.startswith(b"HTTP/1.1 400"), (head, out))

    def test_pipelined_requests_are_still_answered_in_order(self):
        with socket.create_connection(("127.0.0.1", self.aggd.http_port), timeout=15) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out, closed = read_all(s)
        self.assertTrue(closed)
        self.assertEqual(re.findall(rb"HTTP/1\.1 (\d{3}) ", out), [b"200", b"404", b"200"], out)


class SlowClients(unittest.TestCase):
    """Deadlines from a request's first byte, not reset by each byte."""

    @classmethod
    def setUpClass(cls):
        cls.aggd = h.Aggd("postgresql:///nonexistent?host=/nonexistent",
                          "--set", "ingest.http_auth=none",
                          "--set", "listen.http_header_timeout_ms=1500",
                          "--set", "listen.http_body_timeout_ms=1500")

    @classmethod
    def tearDownClass(cls):
        cls.aggd.stop()
        cls.aggd.close()

    def drip(self, prefix, drip):
        """Sends <prefix>, then one byte of <drip> every 0.3 s: seconds until closed."""
        with socket.create_connection(("127.0.0.1", self.aggd.http_port), timeout=15) as s:
            started = time.monotonic()
            s.sendall(prefix)
            for byte in drip:
                time.sleep(0.3)
                try:
                    s.sendall(bytes([byte]))
                except OSError:
                    break
                if time.monotonic() - started > 20:
                    break
            out, closed = read_all(s, timeout=5)
            self.assertTrue(closed, "still open after the deadline")
            return time.monotonic() - started, out

    def test_a_slow_head_is_cut_at_the_header_deadline(self):
        elapsed, out = self.drip(b"G", b"ET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100)
        self.assertGreater(elapsed, 1.2)
        self.assertLess(elapsed, 12)
        self.assertNotIn(b"200 OK", out)

    def test_a_slow_body_is_cut_at_the_body_deadline(self):
        elapsed, _ = self.drip(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: "
                               b"application/json\r\nContent-Length: 200\r\n\r\n", b"a" * 100)
        self.assertGreater(elapsed, 1.2)
        self.assertLess(elapsed, 12)
        self.assertEqual(self.aggd.get("/healthz")[0], 200)


class DescriptorExhaustion(unittest.TestCase):
    """Out of descriptors, aggd neither spins nor floods its log, and recovers."""

    LIMIT = 200

    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # aggd inherits the lowered limit; the test keeps its own
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.LIMIT, hard))
        try:
            self.aggd = h.Aggd("postgresql:///nonexistent?host=/nonexistent",
                               "--set", "ingest.http_auth=none",
                               "--set", "database.pool_size=4",
                               "--set", "database.pool_overflow=0")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.aggd.stop()
        self.aggd.close()

    def connect_many(self, port, n):
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            self.socks.append(s)

    def test_held_connections_neither_spin_nor_flood_and_aggd_recovers(self):
        pid = self.aggd.proc.pid
        self.assertIn("listen.max_connections lowered", self.aggd.output())
        lines_before = len(self.aggd.output().splitlines())
        # more than the descriptors left: the TCP listeners and HTTP together
        self.connect_many(self.aggd.ports["syslog_tcp"], 150)
        self.connect_many(self.aggd.http_port, 150)
        time.sleep(1)
        cpu = cpu_s(pid)
        time.sleep(3)
        self.assertLess(cpu_s(pid) - cpu, 1.0, "aggd spins while out of descriptors")
        for s in self.socks[:230]:  # every syslog one, and most HTTP ones
            s.close()
        del self.socks[:230]
        h.wait_for(lambda: self.try_health(), 20, interval=0.5, what="/healthz again")
        lines = self.aggd.output().splitlines()[lines_before:]
        self.assertLess(len(lines), 40, "\n".join(lines[:40]))

    def try_health(self):
        try:
            return h.request(self.aggd.http_port, "GET", "/healthz", timeout=2)[0] == 200
        except OSError:
            return False


if __name__ == "__main__":
    h.main()
