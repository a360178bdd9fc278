"""Syslog as real senders write it, end to end against the real aggd: Python's
logging.handlers.SysLogHandler over TCP (NUL-terminated frames, multi-line
tracebacks), rsyslog's forwarding templates (a leading SP in RFC 5424 MSG, the TAG
without ':' of a relayed RFC 5424 message), RFC 3164 times in a configured zone,
and JSON in MSG as pino-syslog, winston-syslog, bunyan-syslog and nginx send it."""
import json
import logging
import logging.handlers
import os
import socket
import subprocess
import time
import unittest
import uuid
from datetime import datetime, timedelta, timezone

import harness as h

# Inside the accept window (partitions.accept_past_months) whatever today is.
BASE = (datetime.now(timezone.utc) - timedelta(days=1)).replace(
    hour=10, minute=0, second=0, microsecond=0, tzinfo=None)


def bsd(dt):
    """An RFC 3164 timestamp as rsyslog writes it: "Dec  3 10:00:00"."""
    return dt.strftime("%b ") + f"{dt.day:2d}" + dt.strftime(" %H:%M:%S")


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


COLUMNS = "level, message, logger_name, module, request_id, extra_data, created_at"


class Daemon(h.Served):
    """A daemon for these tests: fast batches, <sets> added to its config."""

    def __init__(self, *sets):
        args = ["--set", "batch.max_ms=50"]
        for s in sets:
            args += ["--set", s]
        super().__init__(*args)
        self.ports = self.aggd.ports

    def rows(self, where, params=(), n=1, timeout=10):
        return super().rows(COLUMNS, where, params, n, timeout)

    def tcp(self, data):
        with socket.create_connection(("127.0.0.1", self.ports["syslog_tcp"])) as s:
            s.sendall(data)

    def udp(self, data):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(data, ("127.0.0.1", self.ports["syslog_udp"]))


class SendersTest(unittest.TestCase):
    """One daemon (UTC) for the class; each test marks its events with a unique tag."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    # ---- Python's logging over TCP: "<PRI>text\0" ----------------------------

    def python_logger(self, tag):
        handler = logging.handlers.SysLogHandler(
            address=("127.0.0.1", self.d.ports["syslog_tcp"]), socktype=socket.SOCK_STREAM)
        handler.setFormatter(logging.Formatter("pyapp: %(message)s"))
        log = logging.getLogger("senders." + tag)
        log.propagate = False
        log.setLevel(logging.DEBUG)
        log.addHandler(handler)
        return log, handler

    def test_python_sysloghandler_tcp_five_events_and_a_traceback(self):
        tag = uuid.uuid4().hex
        log, handler = self.python_logger(tag)
        try:
            log.info("%s one", tag)
            # the connection stays open: a frame held at its NUL is taken after a pause
            self.d.rows("message = %s", (f"{tag} one",))
            log.warning("%s two", tag)
            try:
                raise ValueError(f"{tag} bad value")
            except ValueError:
                log.exception("%s three", tag)
            log.error("%s four", tag)
            log.debug("%s five", tag)
            rows = self.d.rows("message LIKE %s", (f"{tag} %",), n=5)
        finally:
            handler.close()
        time.sleep(0.5)
        rows = self.d.rows("message LIKE %s", (f"{tag} %",), n=5)
        self.assertEqual(len(rows), 5, [r["message"] for r in rows])
        self.assertEqual([r["message"].split("\n")[0] for r in rows],
                         [f"{tag} {w}" for w in ("one", "two", "three", "four", "five")])
        self.assertEqual([r["level"] for r in rows],
                         ["INFO", "WARNING", "ERROR", "ERROR", "DEBUG"])
        self.assertTrue(all(r["logger_name"] == "pyapp" for r in rows))
        tb = rows[2]["message"]
        self.assertIn("\nTraceback (most recent call last):\n", tb)
        self.assertIn('  File "', tb)
        self.assertTrue(tb.endswith(f"ValueError: {tag} bad value"), tb)
        self.assertNotIn("\x00", "".join(r["message"] for r in rows))
        self.assertEqual(self.d.count("SELECT count(*) FROM ingest_rejects "
                                      "WHERE encode(raw, 'escape') LIKE %s",
                                      (f"%{tag}%",)), 0)

    def test_python_sysloghandler_tcp_burst_in_one_write(self):
        # five frames in one segment, the traceback first among them after a
        # first event: NUL-framing is known from the first NUL before '<'
        tag = uuid.uuid4().hex
        frames = [f"<14>pyapp: {tag} a", f"<11>pyapp: {tag} b\nTraceback (most recent call "
                  "last):\n  File \"x.py\", line 1, in <module>\nKeyError: 'k'",
                  f"<12>pyapp: {tag} c", f"<13>pyapp: {tag} d", f"<15>pyapp: {tag} e"]
        self.d.tcp("\0".join(frames).encode() + b"\0")
        rows = self.d.rows("message LIKE %s", (f"{tag} %",), n=5)
        self.assertEqual(len(rows), 5)
        self.assertEqual(rows[1]["message"], frames[1][len("<11>pyapp: "):])

    # ---- rsyslog's forwarding templates ---------------------------------------

    def test_rsyslog_protocol23_format_leading_space_is_not_stored(self):
        # RSYSLOG_SyslogProtocol23Format of a message logged via the local socket:
        # "%STRUCTURED-DATA% %msg%" and %msg% starts with the SP after "tag:"
        tag = uuid.uuid4().hex
        line = f"<13>1 {iso(BASE)} web01 myapp - - -  {tag} hello\n".encode()
        self.d.tcp(line)
        self.d.udp(line.replace(b"hello", b"udp"))
        rows = self.d.rows("message LIKE %s", (f"{tag} %",), n=2)
        self.assertEqual(sorted(r["message"] for r in rows), [f"{tag} hello", f"{tag} udp"])
        self.assertEqual(rows[0]["logger_name"], "myapp")

    def test_rsyslog_traditional_forward_format_of_an_rfc5424_message(self):
        # RSYSLOG_TraditionalForwardFormat: "<PRI>%TIMESTAMP% %HOSTNAME% %syslogtag%
        # %msg%", the TAG emulated from APP-NAME [PROCID] without ':'
        tag = uuid.uuid4().hex
        ts = bsd(BASE)
        self.d.tcp(f"<14>{ts} web01 myapp {tag} hello world\n"
                   f"<14>{ts} web01 myapp[123] {tag} with pid\n"
                   f"<34>{ts} host just {tag} a message\n".encode())
        rows = self.d.rows("message LIKE %s", (f"%{tag} %",), n=3)
        self.assertEqual(rows[0]["logger_name"], "myapp")
        self.assertEqual(rows[0]["message"], f"{tag} hello world")
        self.assertEqual(rows[0]["extra_data"]["syslog"]["hostname"], "web01")
        self.assertEqual(rows[0]["created_at"], BASE)
        self.assertEqual(rows[1]["logger_name"], "myapp")
        self.assertEqual(rows[1]["extra_data"]["syslog"]["procid"], "123")
        self.assertEqual(rows[1]["message"], f"{tag} with pid")
        # a message without TAG keeps all its text
        self.assertIsNone(rows[2]["logger_name"])
        self.assertEqual(rows[2]["message"], f"just {tag} a message")

    # ---- JSON in MSG -------------------------------------------------------

    def test_json_msg_of_pino_winston_bunyan_and_nginx(self):
        tag = uuid.uuid4().hex
        when = BASE + timedelta(minutes=5)
        ms = int(when.replace(tzinfo=timezone.utc).timestamp() * 1000)
        pino = ('<134>1 ' + iso(BASE) + ' host app 1234 - - '
                + json.dumps({"level": 30, "time": ms, "pid": 1234, "hostname": "host",
                              "msg": f"{tag} pino"}, separators=(",", ":")))
        winston = (f"<134>{bsd(BASE)} host node[4321]: "
                   + json.dumps({"level": "warn", "message": f"{tag} winston",
                                 "user": "ann"}, separators=(",", ":")))
        bunyan = (f"<134>{bsd(BASE)} host api[99]: "
                  + json.dumps({"name": "api", "hostname": "host", "pid": 99, "level": 50,
                                "msg": f"{tag} bunyan", "time": iso(when), "v": 0},
                               separators=(",", ":")))
        nginx = (f"<190>{bsd(BASE)} web nginx: "
                 + json.dumps({"remote_addr": "1.2.3.4", "request": f"GET /{tag} HTTP/1.1",
                               "status": 200}, separators=(",", ":")))
        self.d.udp(pino.encode())
        self.d.tcp((winston + "\n" + bunyan + "\n").encode())
        self.d.udp(nginx.encode())
        rows = {r["message"]: r for r in self.d.rows("message LIKE %s", (f"{tag} %",), n=3)}

        r = rows[f"{tag} pino"]
        self.assertEqual(r["level"], "INFO")
        self.assertEqual(r["created_at"], when)            # the JSON's time wins
        self.assertEqual(r["logger_name"], "app")           # APP-NAME: the JSON has none
        self.assertEqual(r["extra_data"]["pid"], 1234)
        self.assertEqual(r["extra_data"]["hostname"], "host")
        self.assertEqual(r["extra_data"]["syslog"]["procid"], "1234")
        self.assertEqual(r["extra_data"]["syslog"]["facility"], 16)

        r = rows[f"{tag} winston"]
        self.assertEqual(r["level"], "WARNING")             # the JSON's level wins
        self.assertEqual(r["created_at"], BASE)             # the header's time
        self.assertEqual(r["logger_name"], "node")
        self.assertEqual(r["extra_data"]["user"], "ann")
        self.assertEqual(r["extra_data"]["syslog"]["procid"], "4321")

        r = rows[f"{tag} bunyan"]
        self.assertEqual(r["level"], "ERROR")
        self.assertEqual(r["created_at"], when)
        self.assertEqual(r["extra_data"]["v"], 0)

        r = self.d.rows("extra_data->>'request' = %s", (f"GET /{tag} HTTP/1.1",))[0]
        self.assertEqual(r["message"], "")                  # as JSON ingest: no message
        self.assertEqual(r["level"], "INFO")                # PRI 190: local7.info
        self.assertEqual(r["logger_name"], "nginx")
        self.assertEqual(r["extra_data"]["status"], 200)
        self.assertEqual(r["extra_data"]["remote_addr"], "1.2.3.4")
        self.assertEqual(r["extra_data"]["syslog"]["hostname"], "web")
        self.assertEqual(r["created_at"], BASE)

    def test_json_msg_that_is_not_valid_stays_text(self):
        tag = uuid.uuid4().hex
        bad = [f'{{"msg":"{tag} cut"', f'{{"line_number":"{tag} x"}}', f"[1, \"{tag} array\"]"]
        self.d.tcp("".join(f"<14>{bsd(BASE)} host app: {b}\n" for b in bad).encode())
        rows = self.d.rows("message LIKE %s", (f"%{tag}%",), n=3)
        self.assertEqual([r["message"] for r in rows], bad)
        self.assertEqual(self.d.count("SELECT count(*) FROM ingest_rejects "
                                      "WHERE encode(raw, 'escape') LIKE %s",
                                      (f"%{tag}%",)), 0)


class ZoneTest(unittest.TestCase):
    """listen.syslog_3164_timezone: a daemon reading RFC 3164 times in Berlin."""

    @classmethod
    def setUpClass(cls):
        if not os.path.exists("/usr/share/zoneinfo/Europe/Berlin"):
            raise unittest.SkipTest("no tzdata")
        cls.d = Daemon("listen.syslog_3164_timezone=Europe/Berlin",
                       "partitions.retention_months=1200",
                       "partitions.accept_past_months=1200")

    @classmethod
    def tearDownClass(cls):
        cls.d.close()

    def test_logger_rfc3164_in_berlin_lands_at_the_right_instant(self):
        for transport in ("--udp", "--tcp"):
            tag = uuid.uuid4().hex
            port = self.d.ports["syslog_udp" if transport == "--udp" else "syslog_tcp"]
            subprocess.run(["logger", "--server", "127.0.0.1", "--port", str(port), transport,
                            "--rfc3164", "-t", "bsdapp", f"{tag} hello"], check=True,
                           env=dict(os.environ, TZ="Europe/Berlin"), timeout=10)
            row = self.d.rows("message = %s", (f"{tag} hello",))[0]
            now = self.d.count("SELECT now() AT TIME ZONE 'UTC'")
            self.assertLess(abs((row["created_at"] - now).total_seconds()), 60, transport)

    def test_summer_and_winter_dates_take_their_own_offset(self):
        tag = uuid.uuid4().hex
        self.d.udp(f"<13>Jul  1 2024 12:00:00 host app: {tag} summer".encode())
        self.d.tcp(f"<13>2024-01-15T12:00:00 host app: {tag} winter\n"
                   f"<13>2024-07-01T12:00:00+00:00 host app: {tag} zoned\n"
                   f"<13>1 2024-07-01T12:00:00Z host app - - - {tag} rfc5424\n".encode())
        rows = {r["message"]: r["created_at"]
                for r in self.d.rows("message LIKE %s", (f"{tag} %",), n=4)}
        self.assertEqual(rows[f"{tag} summer"], datetime(2024, 7, 1, 10, 0))   # CEST
        self.assertEqual(rows[f"{tag} winter"], datetime(2024, 1, 15, 11, 0))  # CET
        self.assertEqual(rows[f"{tag} zoned"], datetime(2024, 7, 1, 12, 0))
        self.assertEqual(rows[f"{tag} rfc5424"], datetime(2024, 7, 1, 12, 0))

    def test_unknown_zone_is_a_config_error_naming_the_key(self):
        out = h.run_aggd("config", "check", "--set", "listen.syslog_3164_timezone=Mars/Olympus")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("listen.syslog_3164_timezone", out.stderr)
        self.assertIn("Mars/Olympus", out.stderr)
        out = h.run_aggd("config", "check", "--set", "listen.syslog_3164_timezone=Asia/Tokyo")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("listen.syslog_3164_timezone = Asia/Tokyo", out.stdout)


if __name__ == "__main__":
    h.main()
