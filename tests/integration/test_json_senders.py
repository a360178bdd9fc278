"""JSON as real loggers write it, end to end: the exact lines of pino, bunyan, winston,
python-json-logger, structlog and an OpenTelemetry exporter posted to /v1/logs, their
error objects, logger names and user ids checked column by column in system_logs
(docs/json-mapping.md). Also the escapes and numbers yajl got wrong."""
import json
import socket
import unittest
import uuid
from datetime import datetime, timedelta, timezone

import psycopg2
import psycopg2.extras

import harness as h

# Inside the accept window whatever today is.
BASE = (datetime.now(timezone.utc) - timedelta(days=1)).replace(
    hour=10, minute=0, second=0, microsecond=123000, tzinfo=None)
BASE_MS = int(BASE.replace(tzinfo=timezone.utc).timestamp() * 1000)
BASE_ISO = BASE.strftime("%Y-%m-%dT%H:%M:%S.123Z")

COLUMNS = ("level, message, logger_name, user_id, memory_usage_mb, exception_type, "
           "exception_message, stack_trace, extra_data, created_at")

NODE_STACK = ("TypeError: Cannot read properties of undefined (reading 'id')\n"
              "    at charge (/app/pay.js:12:19)\n"
              "    at process.processTicksAndRejections "
              "(node:internal/process/task_queues:95:5)")
PY_TRACEBACK = ("Traceback (most recent call last):\n"
                "  File \"/app/pay.py\", line 10, in charge\n"
                "    amount = int(raw)\n"
                "ValueError: invalid literal for int() with base 10: 'abc'")


class JsonSendersTest(unittest.TestCase):
    """One daemon for the whole class; each test marks its events with a unique tag."""

    @classmethod
    def setUpClass(cls):
        cls.served = h.Served("--set", "ingest.http_auth=none", "--set", "batch.max_ms=50")
        cls.db, cls.aggd, cls.conn = cls.served.db, cls.served.aggd, cls.served.conn

    @classmethod
    def tearDownClass(cls):
        cls.served.close()

    def post(self, body, ctype="application/x-ndjson", want_accepted=1):
        """POSTs the bytes <body> with ?wait=commit: every event must be committed."""
        if isinstance(body, str):
            body = body.encode()
        status, _, text = h.request(self.aggd.http_port, "POST", "/v1/logs?wait=commit",
                                    body=body, headers={"Content-Type": ctype})
        self.assertEqual(status, 200, text)
        answer = json.loads(text)
        self.assertEqual((answer["accepted"], answer["rejected"]), (want_accepted, 0), text)

    def row(self, where, params=()):
        with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(f"SELECT {COLUMNS} FROM system_logs WHERE {where} ORDER BY id", params)
            rows = cur.fetchall()
        self.assertEqual(len(rows), 1, f"rows where {where} {params}: {rows}")
        return rows[0]

    def rejects(self, tag):
        with self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM ingest_rejects WHERE raw LIKE %s", (f"%{tag}%",))
            return cur.fetchone()[0]

    # ---- Node.js loggers ----------------------------------------------------------

    def test_pino_error_with_name(self):
        # pino({name: "checkout"}).error(err): the std err serializer, msg = err.message
        tag = uuid.uuid4().hex
        line = json.dumps({
            "level": 50, "time": BASE_MS, "pid": 4242, "hostname": "web-1",
            "name": "checkout",
            "err": {"type": "TypeError",
                    "message": "Cannot read properties of undefined (reading 'id')",
                    "stack": NODE_STACK, "code": "E_PAY"},
            "msg": f"{tag} Cannot read properties of undefined (reading 'id')"},
            separators=(",", ":")) + "\n"
        self.post(line)
        row = self.row("message LIKE %s", (f"{tag} %",))
        self.assertEqual(row["level"], "ERROR")
        self.assertEqual(row["logger_name"], "checkout")
        self.assertEqual(row["exception_type"], "TypeError")
        self.assertEqual(row["exception_message"],
                         "Cannot read properties of undefined (reading 'id')")
        self.assertEqual(row["stack_trace"], NODE_STACK)
        self.assertEqual(row["created_at"], BASE)
        # what of err filled no column stays under err
        self.assertEqual(row["extra_data"],
                         {"pid": 4242, "hostname": "web-1", "err": {"code": "E_PAY"}})

    def test_bunyan_error(self):
        # bunyan.createLogger({name: "billing", serializers: bunyan.stdSerializers})
        tag = uuid.uuid4().hex
        stack = ("Error: connect ECONNREFUSED 127.0.0.1:5432\n    at "
                 "TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)")
        line = json.dumps({
            "name": "billing", "hostname": "web-2", "pid": 77, "level": 50,
            "err": {"message": "connect ECONNREFUSED 127.0.0.1:5432", "name": "Error",
                    "stack": stack, "code": "ECONNREFUSED"},
            "msg": f"{tag} db down", "time": BASE_ISO, "v": 0},
            separators=(",", ":")) + "\n"
        self.post(line)
        row = self.row("message = %s", (f"{tag} db down",))
        self.assertEqual(row["level"], "ERROR")
        self.assertEqual(row["logger_name"], "billing")
        self.assertEqual(row["exception_type"], "Error")
        self.assertEqual(row["exception_message"], "connect ECONNREFUSED 127.0.0.1:5432")
        self.assertEqual(row["stack_trace"], stack)
        self.assertEqual(row["created_at"], BASE)
        self.assertEqual(row["extra_data"], {"hostname": "web-2", "pid": 77,
                                             "err": {"code": "ECONNREFUSED"}, "v": 0})

    def test_winston_error_with_stack(self):
        # format.combine(format.timestamp(), format.errors({stack: true}), format.json())
        tag = uuid.uuid4().hex
        stack = (f"Error: {tag} boom\n    at Object.<anonymous> (/app/index.js:5:14)\n"
                 "    at Module._compile (node:internal/modules/cjs/loader:1256:14)")
        line = json.dumps({"level": "error", "message": f"{tag} boom", "stack": stack,
                           "timestamp": BASE_ISO}, separators=(",", ":")) + "\n"
        self.post(line)
        row = self.row("message = %s", (f"{tag} boom",))
        self.assertEqual(row["level"], "ERROR")
        self.assertEqual(row["stack_trace"], stack)
        self.assertEqual(row["exception_type"], "Error")        # from the stack's first line
        self.assertEqual(row["exception_message"], f"{tag} boom")
        self.assertIsNone(row["extra_data"])

    # ---- Python loggers -----------------------------------------------------------

    def test_python_json_logger_exc_info(self):
        # JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"), logger.exception()
        tag = uuid.uuid4().hex
        line = json.dumps({"asctime": "2024-01-02 03:04:05,123", "levelname": "ERROR",
                           "name": "shop.payments", "message": f"{tag} payment failed",
                           "exc_info": PY_TRACEBACK}) + "\n"
        self.post(line)
        row = self.row("message = %s", (f"{tag} payment failed",))
        self.assertEqual(row["level"], "ERROR")
        self.assertEqual(row["logger_name"], "shop.payments")
        self.assertEqual(row["stack_trace"], PY_TRACEBACK)
        self.assertEqual(row["exception_type"], "ValueError")   # the traceback's last line
        self.assertEqual(row["exception_message"],
                         "invalid literal for int() with base 10: 'abc'")
        self.assertEqual(row["extra_data"], {"asctime": "2024-01-02 03:04:05,123"})

    def test_structlog_exception(self):
        # JSONRenderer after add_logger_name, add_log_level, format_exc_info
        tag = uuid.uuid4().hex
        trace = ("Traceback (most recent call last):\n  File \"/app/pay.py\", line 3, in "
                 "<module>\n    1/0\n    ~^~\nZeroDivisionError: division by zero\n")
        line = json.dumps({"event": f"{tag} payment failed", "logger": "shop",
                           "level": "error", "timestamp": BASE_ISO,
                           "exception": trace}) + "\n"
        self.post(line)
        row = self.row("extra_data->>'event' = %s", (f"{tag} payment failed",))
        self.assertEqual(row["logger_name"], "shop")
        self.assertEqual(row["stack_trace"], trace)
        self.assertEqual(row["exception_type"], "ZeroDivisionError")
        self.assertEqual(row["exception_message"], "division by zero")

    # ---- OpenTelemetry --------------------------------------------------------------

    def test_otlp_exception_attributes_and_enduser_id(self):
        # @opentelemetry/exporter-logs-otlp-http, JSON encoding
        tag = uuid.uuid4().hex
        ns = str(BASE_MS * 1000000)
        body = json.dumps({"resourceLogs": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "checkout"}}],
                "droppedAttributesCount": 0},
            "scopeLogs": [{"scope": {"name": "checkout-logger", "version": "1.0.0"},
                           "logRecords": [{
                "timeUnixNano": ns, "observedTimeUnixNano": ns,
                "severityNumber": 17, "severityText": "ERROR",
                "body": {"stringValue": f"{tag} charge failed"},
                "attributes": [
                    {"key": "exception.type", "value": {"stringValue": "TypeError"}},
                    {"key": "exception.message",
                     "value": {"stringValue": "Cannot read properties of undefined"}},
                    {"key": "exception.stacktrace", "value": {"stringValue": NODE_STACK}},
                    {"key": "enduser.id", "value": {"stringValue": "u-123"}}],
                "droppedAttributesCount": 0, "flags": 1,
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": "eee19b7ec3c1b174"}]}]}]})
        self.post(body, ctype="application/json")
        row = self.row("message = %s", (f"{tag} charge failed",))
        self.assertEqual(row["logger_name"], "checkout-logger")
        self.assertEqual(row["exception_type"], "TypeError")
        self.assertEqual(row["exception_message"], "Cannot read properties of undefined")
        self.assertEqual(row["stack_trace"], NODE_STACK)
        self.assertIsNone(row["user_id"])
        self.assertEqual(row["extra_data"]["user_id"], "u-123")
        self.assertEqual(row["extra_data"]["attributes"]["enduser.id"], "u-123")
        self.assertEqual(row["created_at"], BASE)

    # ---- user ids that are not aggd users' --------------------------------------------

    def test_user_id_that_is_not_an_integer_is_kept_in_extra_data(self):
        tag = uuid.uuid4().hex
        values = ["u-123", "550e8400-e29b-41d4-a716-446655440000", 2147483648, 7.5,
                  -99999999999999999999]
        body = "".join(json.dumps({"msg": f"{tag} {i}", "user_id": v}) + "\n"
                       for i, v in enumerate(values))
        before = self.aggd.metric("aggd_events_user_id_not_integer_total")
        self.post(body, want_accepted=len(values))
        self.assertEqual(self.aggd.metric("aggd_events_user_id_not_integer_total") - before,
                         len(values))
        for i, v in enumerate(values):
            row = self.row("message = %s", (f"{tag} {i}",))
            self.assertIsNone(row["user_id"])
            self.assertEqual(row["extra_data"], {"user_id": v})   # its JSON type as sent
        self.assertEqual(self.rejects(tag), 0)

    def test_syslog_sd_user_id_that_is_not_an_integer_is_kept(self):
        tag = uuid.uuid4().hex
        msg = f'<14>1 {BASE_ISO} host app - - [meta user_id="u-987"] {tag} paid'
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(msg.encode(), ("127.0.0.1", self.aggd.ports["syslog_udp"]))
        h.wait_for(lambda: self.count_rows(f"{tag} paid"), 10, what="the syslog row")
        row = self.row("message = %s", (f"{tag} paid",))
        self.assertIsNone(row["user_id"])
        self.assertEqual(row["extra_data"]["user_id"], "u-987")
        # stored once: extra_data.user_id has it, sd_order says where it was
        self.assertNotIn("sd", row["extra_data"])
        self.assertEqual(row["extra_data"]["sd_order"], "[meta=n")

    def count_rows(self, message):
        with self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM system_logs WHERE message = %s", (message,))
            return cur.fetchone()[0]

    # ---- escapes and numbers ----------------------------------------------------------

    def test_unpaired_surrogate_becomes_replacement_character(self):
        tag = uuid.uuid4().hex
        body = (f'{{"msg":"{tag} \\ud800\\u0041","k":"\\udc00z","pair":"\\ud83d\\ude00"}}\n'
                f'{{"msg":"{tag} end\\ud800"}}\n')
        self.post(body, want_accepted=2)
        row = self.row("message LIKE %s", (f"{tag} %A",))
        self.assertEqual(row["message"], f"{tag} \ufffdA")   # the A stays
        self.assertEqual(row["extra_data"], {"k": "\ufffdz", "pair": "\U0001F600"})
        self.assertEqual(self.row("message LIKE %s", (f"{tag} end%",))["message"],
                         f"{tag} end\ufffd")
        # a JSON document too
        self.post(f'[{{"msg":"{tag} doc\\ud800\\u0041"}}]', ctype="application/json")
        self.assertEqual(self.row("message LIKE %s", (f"{tag} doc%",))["message"],
                         f"{tag} doc\ufffdA")

    def test_subnormal_number_is_a_number(self):
        tag = uuid.uuid4().hex
        self.post(f'{{"msg":"{tag}","memory_usage_mb":5e-324,"x":5e-324}}\n')
        row = self.row("message = %s", (tag,))
        self.assertEqual(row["memory_usage_mb"], 5e-324)
        self.assertEqual(row["extra_data"], {"x": 5e-324})


if __name__ == "__main__":
    h.main()
