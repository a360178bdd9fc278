"""A syslog message's STRUCTURED-DATA stored once: the params that fill columns are
left out of extra_data.sd, and the SD is rebuilt from the stored row (columns +
extra_data.sd + extra_data.sd_order) exactly as it was sent: element order, param
order, repeated params, values. The procedure is docs/json-mapping.md's "Structured
data stored once"; rebuild_sd() below is that procedure."""
import json
import os
import random
import socket
import unittest
from collections import Counter

import harness as h

CONFORMANCE = os.path.join(h.source_dir(), "tests", "data", "conformance", "rfc5424.jsonl")

# sd_order's letter for a param taken from its column
CODES = {"a": "message", "b": "logger_name", "c": "module", "d": "function_name",
         "e": "correlation_id", "f": "request_id", "g": "request_method",
         "h": "request_path", "i": "request_ip", "j": "exception_type",
         "k": "exception_message", "l": "stack_trace", "m": "line_number", "n": "user_id",
         "o": "duration_ms", "p": "memory_usage_mb", "q": "level"}

# every column as PostgreSQL prints it (::text), and extra_data
SELECT = ", ".join(f"{c}::text AS {c}" for c in CODES.values()) + ", extra_data::text AS extra"


def column_text(row, extra, column):
    """The text of <column> as the SD param that filled it was written."""
    value = row[column]
    if column == "user_id" and value is None:
        # not an INTEGER, or no aggd user's: kept as extra_data.user_id
        kept = extra["user_id"]
        return kept if isinstance(kept, str) else json.dumps(kept)
    return value


def rebuild_sd(row):
    """[(SD-ID, [(PARAM-NAME, value), ...]), ...] of a stored row, or None (NILVALUE)."""
    extra = json.loads(row["extra"]) if row["extra"] else {}
    sd = extra.get("sd", {})
    order = extra.get("sd_order")
    if order is None:
        if "sd" not in extra:
            return None
        # no sd_order: SD-IDs and names in byte order, each value once
        return [(sid, [(name, v) for name in sorted(sd[sid])
                       for v in (sd[sid][name] if isinstance(sd[sid][name], list)
                                 else [sd[sid][name]])])
                for sid in sorted(sd)]
    ids = sorted(sd)
    out = []
    for entry in order.split(" "):
        ref, _, tokens = entry.partition("=")
        if ref.startswith("["):  # every param of it is in a column
            sid, params = ref[1:], {}
        else:
            sid = ids[int(ref)]
            params = sd[sid]
        names, used, plist, i = sorted(params), Counter(), [], 0
        while i < len(tokens):
            t = tokens[i]
            if t in CODES:
                plist.append((CODES[t], column_text(row, extra, CODES[t])))
                i += 1
                continue
            if t == "(":
                close = tokens.index(")", i)
                k, i = int(tokens[i + 1:close]), close + 1
            else:
                k, i = int(t, 36), i + 1
            name = names[k]
            values = params[name] if isinstance(params[name], list) else [params[name]]
            plist.append((name, values[used[name]]))
            used[name] += 1
        out.append((sid, plist))
    return out


def unescape(v):
    r"""RFC 5424 6.3.3: \" \\ \] lose the backslash, any other backslash stays."""
    out, i = [], 0
    while i < len(v):
        if v[i] == "\\" and i + 1 < len(v) and v[i + 1] in '"\\]':
            out.append(v[i + 1])
            i += 2
        else:
            out.append(v[i])
            i += 1
    return "".join(out)


def sent_sd(msg):
    """The STRUCTURED-DATA of RFC 5424 message <msg> (str), as rebuild_sd gives it."""
    i = 0
    for _ in range(6):  # PRI VERSION, TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID
        i = msg.index(" ", i) + 1
    if msg[i] == "-":
        return None
    out = []
    while i < len(msg) and msg[i] == "[":
        j = i + 1
        while msg[j] not in " ]":
            j += 1
        sid, plist, i = msg[i + 1:j], [], j
        while msg[i] == " ":
            eq = msg.index("=", i)
            name, j = msg[i + 1:eq], eq + 2
            while msg[j] != '"':
                j += 2 if msg[j] == "\\" else 1
            plist.append((name, unescape(msg[eq + 2:j])))
            i = j + 1
        out.append((sid, plist))
        i += 1
    return out


def frozen(sd):
    return None if sd is None else tuple((sid, tuple(p)) for sid, p in sd)


# Hand-made: repeats, escapes, UTF-8, empty values, elements with only column params,
# values a column cannot give back, a JSON MSG (the SD stays whole).
HAND_MADE = [
    r'[r@1 a="1" a="2" request_id="x" a="3" request_id="y"][s@1 request_id="z"]',
    r'[e@1 v="q\"uote" w="back\\slash" x="br\]acket" y="lone\x" correlation_id="c\"\\\]"]',
    '[u@1 city="Zürich" note="中文 😀" module="modülé"]',
    r'[empty@1 e="" request_path=""][none@1]',
    r'[only@1 correlation_id="c-1" request_id="r-1" duration_ms="12" line_number="-3"]',
    r'[num@1 line_number="07" duration_ms="7.5" memory_usage_mb="2.50" level="error"]',
    r'[num@2 memory_usage_mb="0.0001" level="ERROR" user_id="u-17" request_method="GETGETGETGE"]',
    r'[fk@1 user_id="42"][z@1 b="2" a="1"][a@1 message="from sd" logger_name="sdlog"]',
]


# Values each column accepts (a refused one rejects the event): some it gives back
# exactly, some not (they stay in sd).
TYPED = {"line_number": ["7", "-3", "07", "12.0", "0"],
         "duration_ms": ["12", "12.4", "0", "-0", "+5"],
         "memory_usage_mb": ["2.5", "2.50", "0.0001", "1e3", "100", "0.00001"],
         "user_id": ["42", "u-1", "07", ""],
         "level": ["ERROR", "error", "3", "INFO", "Warning"],
         "created_at": ["2026-12-03T10:00:00Z"]}
TEXT_COLUMNS = [c for c in CODES.values() if c not in TYPED]
CHARS = ["a", "Z", " ", '"', "\\", "]", "[", "=", "é", "中", "😀", "-"]


def escape(v):
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def random_sd(rnd):
    """An SD of 1-4 elements with 0-6 params each: column names (some repeated),
    other names, values with escapes and UTF-8, some over a VARCHAR limit."""
    ids = rnd.sample(["e1@1", "A@2", "zeta", "0", "m@32473", "b"], rnd.randint(1, 4))
    out = []
    for sid in ids:
        params = []
        for _ in range(rnd.randint(0, 6)):
            name = rnd.choice(TEXT_COLUMNS + list(TYPED) + ["a", "b", "zz", "Tag", "x.y"])
            if name in TYPED:
                value = rnd.choice(TYPED[name])
            elif name == "message":
                value = "m" + "".join(rnd.choice(CHARS) for _ in range(rnd.randint(0, 5)))
            else:
                value = "".join(rnd.choice(CHARS) for _ in range(rnd.randint(0, 12)))
            params.append(f' {name}="{escape(value)}"')
        out.append(f"[{sid}{''.join(params)}]")
    return "".join(out)


class SdRebuildTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.served = h.Served("--set", "ingest.http_auth=none", "--set", "batch.max_ms=50")
        cls.port = cls.served.aggd.ports["syslog_tcp"]

    @classmethod
    def tearDownClass(cls):
        cls.served.close()

    def send(self, frames):
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(b"".join(b"%d %s" % (len(f), f) for f in frames))

    def stored(self, where, n):
        return self.served.rows(SELECT, where, n=n, timeout=30)

    def test_sd_of_conformance_vectors_rebuilds_from_the_row(self):
        frames, want = [], Counter()
        with open(CONFORMANCE, encoding="utf-8") as f:
            for line in f:
                v = json.loads(line)
                if not v["valid"]:
                    continue
                raw = bytes.fromhex(v["input_hex"]) if "input_hex" in v else v["input"].encode()
                text = raw.decode("utf-8", "replace")
                sd = sent_sd(text)
                if sd is not None and "\ufffd" in text[:text.find("] ") + 1]:
                    continue  # invalid UTF-8 in the SD: jsonb holds U+FFFD, never the bytes
                frames.append(raw)
                want[frozen(sd)] += 1
        self.assertGreater(sum(n for sd, n in want.items() if sd is not None), 40)
        # every row after the last one stored so far is one of them
        last = self.served.count("SELECT coalesce(max(id), 0) FROM system_logs")
        self.send(frames)
        rows = self.stored(f"id > {last}", len(frames))
        got = Counter(frozen(rebuild_sd(r)) for r in rows)
        self.assertEqual(len(rows), len(frames))
        self.assertEqual(got, want, f"missing {want - got}\nextra {got - want}")

    def test_random_sd_rebuilds_from_the_row(self):
        rnd, frames, want = random.Random(15), [], Counter()
        for i in range(400):
            msg = f"<14>1 2026-12-03T10:00:00Z random.host app - - {random_sd(rnd)} hello"
            frames.append(msg.encode())
            want[frozen(sent_sd(msg))] += 1
        self.send(frames)
        rows = self.stored("extra_data->'syslog'->>'hostname' = 'random.host'", len(frames))
        got = Counter(frozen(rebuild_sd(r)) for r in rows)
        self.assertEqual(got, want, f"missing {want - got}\nextra {got - want}")
        # and the columns' params were left out of sd in most of them
        self.assertGreater(sum('"sd_order"' in r["extra"] for r in rows), 300)

    def test_hand_made_sd_rebuilds_from_the_row_and_is_stored_once(self):
        frames, want = [], Counter()
        for i, sd in enumerate(HAND_MADE):
            msg = f"<14>1 2026-12-03T10:00:00Z handmade.host app{i} - - {sd} hello {i}"
            frames.append(msg.encode())
            want[frozen(sent_sd(msg))] += 1
        msg = '<14>1 - handmade.host json - - [j@1 request_id="r1"] {"request_id":"j1"}'
        frames.append(msg.encode())
        want[frozen(sent_sd(msg))] += 1
        self.send(frames)
        rows = self.stored("extra_data->'syslog'->>'hostname' = 'handmade.host'", len(frames))
        got = Counter(frozen(rebuild_sd(r)) for r in rows)
        self.assertEqual(got, want, f"missing {want - got}\nextra {got - want}")
        by_sd = {r["extra"]: r for r in rows}
        only = next(r for r in rows if "[only@1=" in r["extra"])
        self.assertEqual(only["correlation_id"], "c-1")
        self.assertNotIn('"sd"', only["extra"])  # every param of it is in a column
        fk = next(r for r in rows if "fk@1" in r["extra"])
        self.assertIsNone(fk["user_id"])  # no aggd user 42: kept in extra_data.user_id
        self.assertIn('"user_id": 42', fk["extra"])
        repeated = next(r for r in rows if "r@1" in r["extra"])
        self.assertEqual(json.loads(repeated["extra"])["sd"]["r@1"],
                         {"a": ["1", "2", "3"], "request_id": ["x", "y"]})
        self.assertEqual(repeated["request_id"], "z")
        self.assertEqual(len(by_sd), len(rows))


if __name__ == "__main__":
    unittest.main()
