"""TLS against the real binary and real clients: syslog over TLS (RFC 5425) from
`openssl s_client` and rsyslog's omfwd with the gtls driver, HTTPS (health, API,
ingest) from curl and Python, client certificates (mTLS) on both listeners, and a
certificate replaced on disk served after SIGHUP without a restart. A throw-away CA
and certificates are made with the openssl CLI for each class.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
import uuid

import apikit
import harness


def openssl(cwd, *args):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class Pki:
    """A CA ("ca"), another CA ("other"), a server certificate for 127.0.0.1 and
    client certificates signed by each CA, as PEM files in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="aggd-tls.")
        for ca in ("ca", "other"):
            openssl(self.dir, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{ca}.key", "-out",
                    f"{ca}.pem", "-days", "2", "-subj", f"/CN=aggd test {ca}")
        self.leaf("server", "ca", 1001, san="IP:127.0.0.1")
        self.leaf("client", "ca", 2001)
        self.leaf("stranger", "other", 3001)

    def path(self, name):
        return os.path.join(self.dir, name)

    def leaf(self, name, ca, serial, san=None):
        """<name>.pem and <name>.key signed by <ca> with <serial>."""
        openssl(self.dir, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                f"/CN=aggd {name} {serial}")
        args = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
                f"{ca}.key", "-set_serial", str(serial), "-days", "2", "-out", f"{name}.pem"]
        if san:
            with open(self.path(f"{name}.ext"), "w", encoding="ascii") as f:
                f.write(f"subjectAltName={san}\n")
            args += ["-extfile", f"{name}.ext"]
        openssl(self.dir, *args)

    def der(self, name):
        with open(self.path(f"{name}.pem"), encoding="ascii") as f:
            return ssl.PEM_cert_to_DER_cert(f.read())

    def context(self, client=None):
        """A client context trusting "ca", presenting <client>'s certificate if given."""
        ctx = ssl.create_default_context(cafile=self.path("ca.pem"))
        if client:
            ctx.load_cert_chain(self.path(f"{client}.pem"), self.path(f"{client}.key"))
        return ctx

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def tls_args(pki, ports, cert="server", client_ca=False):
    args = ["--set", f"listen.syslog_tls=127.0.0.1:{ports['syslog_tls']}",
            "--set", f"listen.https=127.0.0.1:{ports['https']}",
            "--set", f"tls.cert_file={pki.path(cert + '.pem')}",
            "--set", f"tls.key_file={pki.path(cert + '.key')}"]
    if client_ca:
        args += ["--set", f"tls.client_ca_file={pki.path('ca.pem')}"]
    return args


def frame(msg):
    """An RFC 5425 frame: MSG-LEN SP SYSLOG-MSG."""
    data = msg.encode()
    return str(len(data)).encode() + b" " + data


def syslog_msg(text):
    return f"<14>1 2026-01-02T03:04:05Z host tlstest - - - {text}"


class TlsCase(unittest.TestCase):
    client_ca = False

    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.ports = {"syslog_tls": harness.free_port(), "https": harness.free_port()}
        try:
            cls.env = apikit.ApiEnv(extra=tls_args(cls.pki, cls.ports,
                                                   client_ca=cls.client_ca))
        except BaseException:
            cls.pki.close()
            raise
        cls.aggd = cls.env.aggd

    @classmethod
    def tearDownClass(cls):
        cls.env.close()
        cls.pki.close()

    def count(self, text):
        return int(self.env.db.sql(
            f"SELECT count(*) FROM system_logs WHERE message = '{text}'"))

    def wait_rows(self, text, n=1):
        try:
            harness.wait_for(lambda: self.count(text) >= n, 15, what=f"{text!r} stored")
        except AssertionError:
            raise AssertionError(f"{text!r} not stored; aggd said:\n"
                                 f"{self.aggd.output()[-3000:]}")

    def send_tls(self, data, client=None):
        """Sends <data> over syslog TLS and closes (close_notify) the connection."""
        ctx = self.pki.context(client)
        with socket.create_connection(("127.0.0.1", self.ports["syslog_tls"]), 10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(data)
                s.unwrap()

    def https(self, method, path, body=None, headers=None, client=None):
        conn = http.client.HTTPSConnection("127.0.0.1", self.ports["https"], timeout=20,
                                           context=self.pki.context(client))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def curl(self, *args):
        return subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert",
                               self.pki.path("ca.pem"), *args],
                              capture_output=True, text=True, timeout=30)

    def s_client(self, data, *args):
        """openssl s_client sending <data> to the syslog TLS port, ending at its EOF."""
        return subprocess.run(["openssl", "s_client", "-connect",
                               f"127.0.0.1:{self.ports['syslog_tls']}", "-CAfile",
                               self.pki.path("ca.pem"), "-verify_return_error", "-quiet",
                               "-no_ign_eof", *args],
                              input=data, capture_output=True, timeout=30)


class TlsListeners(TlsCase):
    def test_syslog_tls_from_openssl_s_client_octet_counted_and_lf_framed(self):
        tag = uuid.uuid4().hex[:8]
        counted, lf = f"counted {tag}", f"lf {tag}"
        out = self.s_client(frame(syslog_msg(counted)) + syslog_msg(lf).encode() + b"\n")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.wait_rows(counted)
        self.wait_rows(lf)
        _, _, text = self.aggd.get("/metrics")
        self.assertIn('aggd_connections{transport="syslog_tls"}', text)

    def test_syslog_tls_many_frames_on_one_connection(self):
        tag = uuid.uuid4().hex[:8]
        self.send_tls(b"".join(frame(syslog_msg(f"bulk {tag}")) for _ in range(500)))
        self.wait_rows(f"bulk {tag}", 500)

    @unittest.skipUnless(shutil.which("rsyslogd"), "rsyslogd not installed (scripts/deps.sh)")
    def test_rsyslog_omfwd_gtls_lands(self):
        tag = uuid.uuid4().hex[:8]
        work = tempfile.mkdtemp(prefix="aggd-rsyslog.")
        inport = harness.free_port(socket.SOCK_DGRAM)
        conf = os.path.join(work, "rsyslog.conf")
        with open(conf, "w", encoding="ascii") as f:
            f.write(f"""
global(workDirectory="{work}" defaultNetstreamDriverCAFile="{self.pki.path('ca.pem')}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{inport}")
action(type="omfwd" target="127.0.0.1" port="{self.ports['syslog_tls']}" protocol="tcp"
       streamDriver="gtls" streamDriverMode="1" streamDriverAuthMode="x509/certvalid"
       tcp_framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
""")
        proc = subprocess.Popen(["rsyslogd", "-n", "-f", conf, "-i",
                                 os.path.join(work, "pid")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            def sent_and_stored():
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.sendto(f"<14>Jan  2 03:04:05 host app: rsyslog {tag}".encode(),
                             ("127.0.0.1", inport))
                time.sleep(0.5)
                return self.count(f"rsyslog {tag}") > 0
            harness.wait_for(sent_and_stored, 30, interval=0.1, what="rsyslog's event stored")
        finally:
            proc.terminate()
            proc.communicate(timeout=15)
            shutil.rmtree(work, ignore_errors=True)

    def test_https_serves_health_metrics_and_the_api(self):
        out = self.curl(f"https://127.0.0.1:{self.ports['https']}/healthz")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout), {"status": "ok"})
        status, text = self.https("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("aggd_events_received_total", text)
        status, text = self.https("GET", "/api/v1/users", headers={
            "Authorization": "Bearer " + self.env.tokens["admin"]})
        self.assertEqual(status, 200, text)
        self.assertIn("admin@example.com", text)
        status, _ = self.https("GET", "/api/v1/users")
        self.assertEqual(status, 401)

    def test_https_ingest_with_a_token_lands(self):
        tag = uuid.uuid4().hex[:8]
        body = "".join(json.dumps({"message": f"https {tag}", "level": "INFO"}) + "\n"
                       for _ in range(3000))  # larger than one TLS record or socket read
        out = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert",
                              self.pki.path("ca.pem"), "-H",
                              "Authorization: Bearer " + self.env.tokens["ingest"], "-H",
                              "Content-Type: application/x-ndjson", "--data-binary", "@-",
                              f"https://127.0.0.1:{self.ports['https']}/v1/logs"],
                             input=body, capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["accepted"], 3000, out.stdout)
        self.wait_rows(f"https {tag}", 3000)

    def test_https_guard_still_refuses_from_the_head(self):
        status, text = self.https("POST", "/v1/logs", body="x" * 10,
                                  headers={"Content-Type": "application/x-ndjson",
                                           "Authorization": "Bearer wrong"})
        self.assertEqual(status, 401, text)

    def test_https_keeps_a_connection_for_several_requests(self):
        conn = http.client.HTTPSConnection("127.0.0.1", self.ports["https"], timeout=20,
                                           context=self.pki.context())
        try:
            for _ in range(5):
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                resp.read()
        finally:
            conn.close()

    def test_plaintext_on_the_tls_ports_gets_nothing(self):
        tag = uuid.uuid4().hex[:8]
        with socket.create_connection(("127.0.0.1", self.ports["https"]), 10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            s.settimeout(10)
            reply = b""
            try:
                while chunk := s.recv(4096):
                    reply += chunk
            except OSError:
                pass
        self.assertNotIn(b"HTTP/1.1 200", reply)
        with socket.create_connection(("127.0.0.1", self.ports["syslog_tls"]), 10) as s:
            s.sendall(frame(syslog_msg(f"plain {tag}")))
        self.send_tls(frame(syslog_msg(f"after plain {tag}")))
        self.wait_rows(f"after plain {tag}")
        self.assertEqual(self.count(f"plain {tag}"), 0)

    def test_tls_1_2_at_least_and_no_compression(self):
        with socket.create_connection(("127.0.0.1", self.ports["https"]), 10) as raw:
            with self.pki.context().wrap_socket(raw, server_hostname="127.0.0.1") as s:
                self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))
                self.assertIsNone(s.compression())
        out = subprocess.run(["openssl", "s_client", "-connect",
                              f"127.0.0.1:{self.ports['https']}", "-tls1_1", "-cipher",
                              "DEFAULT@SECLEVEL=0"],
                             input=b"", capture_output=True, timeout=30)
        self.assertNotEqual(out.returncode, 0, out.stdout)


class MutualTls(TlsCase):
    client_ca = True

    def test_https_needs_a_client_certificate_of_the_ca(self):
        url = f"https://127.0.0.1:{self.ports['https']}/healthz"
        self.assertNotEqual(self.curl(url).returncode, 0)
        self.assertNotEqual(self.curl("--cert", self.pki.path("stranger.pem"), "--key",
                                      self.pki.path("stranger.key"), url).returncode, 0)
        out = self.curl("--cert", self.pki.path("client.pem"), "--key",
                        self.pki.path("client.key"), url)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout), {"status": "ok"})
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            self.https("GET", "/healthz")
        self.assertEqual(self.https("GET", "/healthz", client="client")[0], 200)

    def test_syslog_tls_needs_a_client_certificate_of_the_ca(self):
        tag = uuid.uuid4().hex[:8]
        self.s_client(frame(syslog_msg(f"anonymous {tag}")))
        self.s_client(frame(syslog_msg(f"stranger {tag}")), "-cert",
                      self.pki.path("stranger.pem"), "-key", self.pki.path("stranger.key"))
        try:
            self.send_tls(frame(syslog_msg(f"python anonymous {tag}")))
        except (ssl.SSLError, ConnectionError):
            pass
        out = self.s_client(frame(syslog_msg(f"known {tag}")), "-cert",
                            self.pki.path("client.pem"), "-key", self.pki.path("client.key"))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.wait_rows(f"known {tag}")
        self.send_tls(frame(syslog_msg(f"python known {tag}")), client="client")
        self.wait_rows(f"python known {tag}")
        for who in ("anonymous", "stranger", "python anonymous"):
            self.assertEqual(self.count(f"{who} {tag}"), 0, who)


class CertificateReload(TlsCase):
    def served(self, port):
        with socket.create_connection(("127.0.0.1", port), 10) as raw:
            with self.pki.context().wrap_socket(raw, server_hostname="127.0.0.1") as s:
                return s.getpeercert(binary_form=True)

    def hup_and_wait(self, needle):
        before = self.aggd.output().count(needle)
        self.aggd.proc.send_signal(signal.SIGHUP)
        harness.wait_for(lambda: self.aggd.output().count(needle) > before, 15,
                         what=f"log line {needle!r}")

    def test_sighup_serves_a_replaced_certificate_and_keeps_it_on_a_bad_one(self):
        tag = uuid.uuid4().hex[:8]
        old = self.pki.der("server")
        for port in self.ports.values():
            self.assertEqual(self.served(port), old)
        # a connection opened before the reload keeps working after it
        ctx = self.pki.context()
        raw = socket.create_connection(("127.0.0.1", self.ports["syslog_tls"]), 10)
        early = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        try:
            early.sendall(frame(syslog_msg(f"before {tag}")))
            self.wait_rows(f"before {tag}")
            self.pki.leaf("server", "ca", 1002, san="IP:127.0.0.1")  # same paths
            new = self.pki.der("server")
            self.assertNotEqual(new, old)
            self.hup_and_wait("TLS certificate reloaded")
            for port in self.ports.values():
                self.assertEqual(self.served(port), new)
            early.sendall(frame(syslog_msg(f"after {tag}")))
            self.wait_rows(f"after {tag}")
        finally:
            early.close()
        with open(self.pki.path("server.pem"), "w", encoding="ascii") as f:
            f.write("not a certificate\n")
        self.hup_and_wait("TLS certificate reload refused")
        self.assertIn("tls.cert_file", self.aggd.output().split("reload refused")[-1])
        for port in self.ports.values():
            self.assertEqual(self.served(port), new)
        self.assertEqual(self.https("GET", "/healthz")[0], 200)


class Config(unittest.TestCase):
    def test_a_tls_listener_needs_a_certificate_and_a_readable_key(self):
        out = harness.run_aggd("config", "check", "--set", "listen.https=127.0.0.1:8443")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("tls.cert_file", out.stderr)
        pki = Pki()
        try:
            db = harness.Database()
            try:
                out = harness.run_aggd(
                    "serve", "--migrate", "--set", f"database.url={db.url}",
                    "--set", "listen.http=",
                    "--set", "listen.syslog_udp=", "--set", "listen.syslog_tcp=",
                    "--set", "listen.json_tcp=",
                    "--set", f"listen.https=127.0.0.1:{harness.free_port()}",
                    "--set", f"tls.cert_file={pki.path('server.pem')}",
                    "--set", f"tls.key_file={pki.path('client.key')}", timeout=30)
            finally:
                db.close()
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("tls.key_file", out.stderr)
            self.assertIn(pki.path("client.key"), out.stderr)
        finally:
            pki.close()

    def test_config_check_reads_the_certificate_files(self):
        pki = Pki()
        try:
            tls = ("--set", "listen.https=127.0.0.1:8443",
                   "--set", f"tls.cert_file={pki.path('server.pem')}")
            out = harness.run_aggd("config", "check", *tls,
                                   "--set", f"tls.key_file={pki.path('client.key')}")
            self.assertEqual(out.returncode, 1, out.stdout)
            self.assertIn("tls.key_file", out.stderr)
            self.assertIn(pki.path("client.key"), out.stderr)
            out = harness.run_aggd("config", "check", *tls,
                                   "--set", f"tls.key_file={pki.path('server.key')}")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("listen.https = 127.0.0.1:8443", out.stdout)
        finally:
            pki.close()


if __name__ == "__main__":
    harness.main()
