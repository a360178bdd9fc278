#!/usr/bin/env python3
"""
tests/integration/test_schema.py — the migrated schema against the platform's
schema document, and `aggd migrate` up/down/status against a real PostgreSQL.

Expectations for the platform tables come from parsing tests/data/
database-schema.md (a verbatim copy of seed/database-schema.md): every table,
column, type, NOT NULL, DEFAULT, UNIQUE, FK and named index it lists. The
ON DELETE actions come from the table in docs/schema.md. aggd's own additions
(DESIGN.md, Schema and Rules) are listed below in AGGD_TABLES.

Environment:
  AGGD_TEST_DATABASE_URL  libpq URI of an admin database (unset: exit 77, skip)
  AGGD_BIN                the aggd binary (default: <source>/build/aggd)
  AGGD_SOURCE_DIR         the repository root (default: two levels above this file)
Needs psql and pg_dump on PATH. Every database it creates is dropped at exit.
Prints "N passed, M failed" last; exits non-zero on any failure.
"""

import atexit
import json
import os
import re
import secrets
import subprocess
import sys
import time
import unittest

ADMIN_URL = os.environ.get("AGGD_TEST_DATABASE_URL", "")
SOURCE_DIR = os.path.abspath(os.environ.get("AGGD_SOURCE_DIR") or
                             os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
AGGD_BIN = os.environ.get("AGGD_BIN") or os.path.join(SOURCE_DIR, "build", "aggd")
SEED_DOC = os.path.join(SOURCE_DIR, "tests", "data", "database-schema.md")
SCHEMA_DOC = os.path.join(SOURCE_DIR, "docs", "schema.md")
SCHEMA_DIR = os.path.join(SOURCE_DIR, "schema")

TIMEOUT_S = 120
UTC_NOW_DEFAULT = "(now() AT TIME ZONE 'UTC'::text)"
TS = "timestamp without time zone"

# Seed type -> format_type() spelling. VARCHAR(n) is handled in map_type().
SEED_TYPES = {
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "TEXT": "text",
    "JSONB": "jsonb",
    "BOOLEAN": "boolean",
    "TIMESTAMP": TS,
    "FLOAT": "double precision",
    "VARCHAR": "character varying",
    "ARRAY(VARCHAR)": "character varying[]",
}

# The columns aggd adds to seed tables (DESIGN.md, Rules): type, not null, default.
AGGD_SEED_EXTRAS = {
    ("alert_rules", "for_seconds"): ("integer", True, "0"),
    ("alert_rules", "keep_firing_seconds"): ("integer", True, "0"),
}

# aggd's own tables (DESIGN.md, Schema): column -> (type, not null).
V = "character varying"
AGGD_TABLES = {
    "alert_escalation_policies": {
        "id": ("integer", True), "name": (V + "(255)", True), "description": ("text", False),
        "levels": ("jsonb", True), "repeat_count": ("integer", True),
        "is_active": ("boolean", False), "owner_id": ("integer", False),
        "created_at": (TS, True), "updated_at": (TS, True)},
    "notification_endpoints": {
        "id": ("integer", True), "name": (V + "(255)", True), "kind": (V + "(20)", True),
        "target": ("text", True), "secret": ("text", False), "is_active": ("boolean", False),
        "owner_id": ("integer", False), "created_at": (TS, True), "updated_at": (TS, True)},
    "api_tokens": {
        "id": ("integer", True), "user_id": ("integer", True), "name": (V + "(255)", False),
        "token_hash": (V + "(64)", True), "scopes": (V + "(20)[]", True),
        "expires_at": (TS, False), "last_used_at": (TS, False), "revoked_at": (TS, False),
        "created_at": (TS, True)},
    "alert_rule_state": {
        "rule_id": ("integer", True), "state": (V + "(20)", True), "since": (TS, True),
        "alert_id": ("integer", False), "alert_created_at": (TS, False),
        "last_value": ("double precision", False), "last_eval_at": (TS, False),
        "last_notified_at": (TS, False), "updated_at": (TS, True)},
    "alert_notifications": {
        "id": ("bigint", True), "message_id": (V + "(64)", True), "alert_id": ("integer", True),
        "alert_created_at": (TS, True), "rule_id": ("integer", False),
        "notice": (V + "(20)", True), "channel": (V + "(20)", True),
        "endpoint_id": ("integer", False), "target": ("text", True),
        "status": (V + "(20)", True), "attempts": ("integer", True),
        "next_attempt_at": (TS, True), "last_result": ("text", False),
        "last_status": ("integer", False), "payload": ("jsonb", False),
        "created_at": (TS, True), "updated_at": (TS, True)},
    "ingest_checkpoints": {
        "stream": (V + "(100)", True), "position": ("bigint", True),
        "committed_rows": ("bigint", True), "updated_at": (TS, True)},
    "ingest_rejects": {
        "id": ("bigint", True), "received_at": (TS, True), "transport": (V + "(20)", True),
        "peer": (V + "(100)", False), "error": ("text", True), "raw": ("bytea", True),
        "spool_position": ("bigint", False), "created_at": (TS, True)},
    "partition_archives": {
        "id": ("integer", True), "table_name": (V + "(63)", True), "month": ("date", True),
        "state": (V + "(20)", True), "file_path": ("text", False),
        "manifest_path": ("text", False), "row_count": ("bigint", False),
        "sha256": ("character(64)", False), "compressed_bytes": ("bigint", False),
        "min_created_at": (TS, False), "max_created_at": (TS, False),
        "min_id": ("bigint", False), "max_id": ("bigint", False), "error": ("text", False),
        "created_at": (TS, True), "updated_at": (TS, True)},
    "partition_activity": {
        "table_name": (V + "(63)", True), "month": ("date", True),
        "last_received_at": (TS, True)},
    "file_upload_chunks": {
        "file_id": ("integer", True), "n": ("integer", True), "received_at": (TS, True)},
    "schema_migrations": {
        "version": ("integer", True), "name": (V + "(255)", True), "applied_at": (TS, True)},
}
AGGD_UNIQUES = {
    "notification_endpoints": [["name"]],
    "api_tokens": [["token_hash"]],
    "alert_notifications": [["message_id"]],
    "partition_archives": [["table_name", "month"]],
    "partition_activity": [["table_name", "month"]],
}
AGGD_INDEXES = {
    "idx_pipeline_runs_pipeline_id_status": ("pipeline_runs", ["pipeline_id", "status"]),
    "idx_ingest_rejects_created_at": ("ingest_rejects", ["created_at"]),
    "idx_alert_notifications_status_next_attempt_at":
        ("alert_notifications", ["status", "next_attempt_at"]),
    "idx_alert_notifications_alert_id": ("alert_notifications", ["alert_id"]),
    "idx_api_tokens_user_id": ("api_tokens", ["user_id"]),
}
# DESIGN.md, Schema: partitioned by month on created_at, PK (id, created_at).
PARTITIONED = ("system_logs", "alerts")

ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL",
             "d": "SET DEFAULT"}


# --------------------------------------------------------------------------
# The seed document
# --------------------------------------------------------------------------

class ParseError(Exception):
    pass


class Column:
    def __init__(self, name, type_, pk, unique, not_null, default, fk):
        self.name, self.type, self.pk, self.unique = name, type_, pk, unique
        self.not_null, self.default, self.fk = not_null, default, fk


class Table:
    def __init__(self, name):
        self.name = name
        self.columns = []        # [Column]
        self.indexes = []        # [(name, [cols])]
        self.uniques = []        # [[cols]] from **Unique Constraint**
        self.partition_key = None


_CONSTRAINT = re.compile(
    r"\s*(?:(PRIMARY KEY)|(NOT NULL)|(NULL)|(UNIQUE)|DEFAULT\s+('[^']*'|[^,\s]+)"
    r"|FK\((\w+)\.(\w+)\))\s*(?:,|$)")


def parse_constraints(text, where):
    out = {"pk": False, "unique": False, "not_null": False, "default": None, "fk": None}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _CONSTRAINT.match(text, pos)
        if not m or m.end() == pos:
            raise ParseError("%s: cannot parse constraint %r" % (where, text[pos:]))
        pk, nn, _null, uq, default, fk_t, fk_c = m.groups()
        out["pk"] |= bool(pk)
        out["not_null"] |= bool(nn)
        out["unique"] |= bool(uq)
        if default is not None:
            out["default"] = default
        if fk_t:
            out["fk"] = (fk_t, fk_c)
        pos = m.end()
    return out


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_seed(path):
    """{table: Table} for every '### name' section holding a column table."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    tables = {}
    cur = None
    in_columns = False
    in_indexes = False
    for n, line in enumerate(lines, 1):
        where = "%s:%d" % (os.path.basename(path), n)
        if line.startswith("#"):
            cur, in_columns, in_indexes = None, False, False
            m = re.match(r"^###\s+(\S+)\s*$", line)
            if m and re.fullmatch(r"[a-z_][a-z0-9_]*", m.group(1)):
                cur = Table(m.group(1))
            continue
        if cur is None:
            continue
        if line.startswith("|"):
            row = cells(line)
            if row[:2] == ["Column", "Type"]:
                in_columns = True
                tables[cur.name] = cur
                continue
            if not in_columns or set("".join(row)) <= set("-: "):
                continue
            if len(row) != 4:
                raise ParseError("%s: expected 4 cells, got %r" % (where, row))
            c = parse_constraints(row[2], where)
            cur.columns.append(Column(row[0], row[1], c["pk"], c["unique"], c["not_null"],
                                      c["default"], c["fk"]))
            continue
        in_columns = False
        if line.startswith("**"):
            in_indexes = line.startswith("**Indexes**")
            m = re.match(r"^\*\*Unique Constraint\*\*:\s*`\(([^)]*)\)`", line)
            if m:
                cur.uniques.append([c.strip() for c in m.group(1).split(",")])
            m = re.match(r"^\*\*Partitioning\*\*:\s*Table partitioned by `(\w+)`", line)
            if m:
                cur.partition_key = m.group(1)
            continue
        if in_indexes and line.startswith("- "):
            m = re.match(r"^- `(\w+)` on `\(?([\w, ]+?)\)?`\s*$", line)
            if not m:
                raise ParseError("%s: cannot parse index line %r" % (where, line))
            cur.indexes.append((m.group(1), [c.strip() for c in m.group(2).split(",")]))
        elif line.strip():
            in_indexes = False
    return tables


def map_type(seed_type):
    m = re.fullmatch(r"VARCHAR\((\d+)\)", seed_type)
    if m:
        return "character varying(%s)" % m.group(1)
    if seed_type not in SEED_TYPES:
        raise ParseError("unknown seed type %r" % seed_type)
    return SEED_TYPES[seed_type]


def normalize_default(expr):
    """'light'::character varying -> 'light'; TRUE -> true; (0) -> 0."""
    if expr is None:
        return None
    e = expr.strip()
    while e.startswith("(") and e.endswith(")"):
        e = e[1:-1].strip()
    e = re.sub(r"::[a-z ]+(\(\d+\))?(\[\])?$", "", e)
    return e if e.startswith("'") else e.lower()


def parse_on_delete_doc(path):
    """{(table, column): (ref_table, ref_column, action)} from docs/schema.md."""
    row = re.compile(r"^\|\s*`(\w+)\.(\w+)`\s*→\s*`(\w+)\.(\w+)`\s*\|\s*"
                     r"(CASCADE|RESTRICT|SET NULL|NO ACTION|SET DEFAULT)\s*\|")
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = row.match(line)
            if m:
                out[(m.group(1), m.group(2))] = (m.group(3), m.group(4), m.group(5))
    return out


def migration_files():
    """[(version, name)] from schema/NNNN_name.up.sql."""
    out = []
    for f in sorted(os.listdir(SCHEMA_DIR)):
        m = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.up\.sql", f)
        if m:
            out.append((int(m.group(1)), m.group(2)))
    return out


# --------------------------------------------------------------------------
# PostgreSQL through psql / pg_dump
# --------------------------------------------------------------------------

def _pg_env():
    env = dict(os.environ)
    # Fixed output formats for what we compare (partition bounds, timestamps).
    env["PGOPTIONS"] = (env.get("PGOPTIONS", "") +
                        " -c datestyle=ISO -c timezone=UTC -c client_min_messages=warning")
    return env


class PsqlError(Exception):
    pass


def psql_run(url, sql):
    """Runs <sql> (one or more statements, autocommit) with psql; the CompletedProcess."""
    return subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url],
                          input=sql, capture_output=True, text=True, env=_pg_env(),
                          timeout=TIMEOUT_S)


def psql(url, sql):
    """Like psql_run(), but raises PsqlError on failure; returns stdout."""
    p = psql_run(url, sql)
    if p.returncode != 0:
        raise PsqlError("psql failed (%d): %s\nSQL: %s" % (p.returncode, p.stderr.strip(), sql))
    return p.stdout


def query(url, sql):
    """Rows of <sql> (one SELECT) as a list of dicts."""
    out = psql(url, "SELECT coalesce(json_agg(q), '[]') FROM (%s) q;" % sql)
    return json.loads(out)


def value(url, sql):
    rows = query(url, sql)
    if len(rows) != 1 or len(rows[0]) != 1:
        raise PsqlError("expected one value from %s, got %r" % (sql, rows))
    return next(iter(rows[0].values()))


def with_dbname(url, dbname):
    """<url> pointing at database <dbname> (libpq URI, or key=value conninfo)."""
    m = re.match(r"^(postgres(?:ql)?://[^/?#]*)(/[^?#]*)?(\?[^#]*)?$", url)
    if not m:
        return "%s dbname='%s'" % (url, dbname)
    query_ = m.group(3) or ""
    if query_:
        kept = [kv for kv in query_[1:].split("&") if not kv.startswith("dbname=")]
        query_ = "?" + "&".join(kept) if kept else ""
    return "%s/%s%s" % (m.group(1), dbname, query_)


_created = []


def create_database(tag):
    name = "aggd_test_%s_%d_%s" % (tag, os.getpid(), secrets.token_hex(3))
    psql(ADMIN_URL, "CREATE DATABASE %s TEMPLATE template0;" % name)
    _created.append(name)
    return name, with_dbname(ADMIN_URL, name)


def drop_database(name):
    if name in _created:
        _created.remove(name)
        psql_run(ADMIN_URL, "DROP DATABASE IF EXISTS %s WITH (FORCE);" % name)


@atexit.register
def _drop_leftovers():
    for name in list(_created):
        drop_database(name)


def aggd(url, *args):
    """Runs `aggd <args> --set database.url=<url>`; returns CompletedProcess."""
    if not os.access(AGGD_BIN, os.X_OK):
        raise AssertionError("aggd binary not found at %s (set AGGD_BIN)" % AGGD_BIN)
    return subprocess.run([AGGD_BIN, *args, "--set", "database.url=" + url],
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def pg_dump(url):
    p = subprocess.run(["pg_dump", "--schema-only", "--no-owner", "-d", url],
                       capture_output=True, text=True, env=_pg_env(), timeout=TIMEOUT_S)
    if p.returncode != 0:
        raise PsqlError("pg_dump failed: %s" % p.stderr.strip())
    # pg_dump >= 15.14 brackets its output with a random \restrict key.
    return "".join(l for l in p.stdout.splitlines(True)
                   if not re.match(r"^\\(un)?restrict ", l))


# Catalog queries over the public schema; partitions are left out (they
# inherit from their parent, which is what is checked).
Q_COLUMNS = """
SELECT c.relname AS tbl, a.attname AS col, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS def,
       a.attidentity <> '' AS identity
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND a.attnum > 0 AND NOT a.attisdropped"""

Q_CONSTRAINTS = """
SELECT con.conname AS name, con.contype AS type, c.relname AS tbl,
       array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n
              ORDER BY k.o) AS cols,
       r.relname AS ref_tbl, r.relkind AS ref_kind,
       array(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n
              ORDER BY k.o) AS ref_cols,
       con.confdeltype AS on_delete
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class r ON r.oid = con.confrelid
 WHERE n.nspname = 'public' AND NOT c.relispartition"""

Q_INDEXES = """
SELECT i.relname AS name, t.relname AS tbl, x.indisunique AS is_unique,
       array(SELECT pg_get_indexdef(x.indexrelid, k, true)
               FROM generate_series(1, x.indnatts) k ORDER BY k) AS cols,
       x.indpred IS NOT NULL AS partial
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = 'public' AND NOT t.relispartition"""

Q_PARTITIONED = """
SELECT c.relname AS tbl, pg_get_partkeydef(c.oid) AS key, p.partdefid <> 0 AS has_default
  FROM pg_partitioned_table p
  JOIN pg_class c ON c.oid = p.partrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public'"""

Q_TRIGGERS = """
SELECT t.tgname AS name, c.relname AS tbl, f.proname AS func, t.tgtype AS type
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_proc f ON f.oid = t.tgfoid
 WHERE n.nspname = 'public' AND NOT t.tgisinternal AND NOT c.relispartition"""


class Catalog:
    def __init__(self, url):
        self.columns = {}
        for r in query(url, Q_COLUMNS):
            self.columns.setdefault(r["tbl"], {})[r["col"]] = r
        self.constraints = query(url, Q_CONSTRAINTS)
        self.indexes = {r["name"]: r for r in query(url, Q_INDEXES)}
        self.partitioned = {r["tbl"]: r for r in query(url, Q_PARTITIONED)}
        self.triggers = query(url, Q_TRIGGERS)

    def cons(self, table, type_):
        return [c for c in self.constraints if c["tbl"] == table and c["type"] == type_]

    def has_unique(self, table, cols):
        return any(c["cols"] == cols for c in self.cons(table, "u") + self.cons(table, "p"))


class DatabaseCase(unittest.TestCase):
    """A fresh database per class, dropped afterwards whatever happens."""
    tag = "db"

    @classmethod
    def setUpClass(cls):
        cls.dbname, cls.url = create_database(cls.tag)
        cls.addClassCleanup(drop_database, cls.dbname)

    @classmethod
    def migrate(cls, *args):
        return aggd(cls.url, "migrate", *args)

    def assertRan(self, proc, what):
        self.assertEqual(proc.returncode, 0, "%s exited %d: %s" %
                         (what, proc.returncode, proc.stderr.strip()))


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

class T1SeedDocument(unittest.TestCase):
    """The parser reads the document it claims to (so no check passes vacuously)."""

    def test_every_column_table_is_parsed(self):
        with open(SEED_DOC, encoding="utf-8") as f:
            text = f.read()
        tables = parse_seed(SEED_DOC)
        self.assertEqual(len(tables), len(re.findall(r"^\| Column \| Type \|", text, re.M)))
        for must in ("users", "pipelines", "system_logs", "alerts", "alert_rules"):
            self.assertIn(must, tables)
        for t in tables.values():
            with self.subTest(table=t.name):
                self.assertTrue(t.columns and t.indexes, t.name)
                self.assertEqual([c.name for c in t.columns if c.pk], ["id"])
                for c in t.columns:
                    map_type(c.type)
        self.assertEqual(sorted(t.name for t in tables.values() if t.partition_key),
                         sorted(PARTITIONED))

    def test_migration_files_are_paired_and_transaction_free(self):
        migs = migration_files()
        self.assertEqual([v for v, _ in migs], list(range(1, len(migs) + 1)))
        for v, name in migs:
            for kind in ("up", "down"):
                path = os.path.join(SCHEMA_DIR, "%04d_%s.%s.sql" % (v, name, kind))
                with self.subTest(file=os.path.basename(path)):
                    with open(path, encoding="utf-8") as f:
                        sql = f.read()
                    self.assertNotRegex(
                        sql, re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION)\s*;",
                                        re.I | re.M))
                    self.assertNotRegex(sql, re.compile(r"\bschema_migrations\b", re.I))


@unittest.skipUnless(ADMIN_URL, "AGGD_TEST_DATABASE_URL is not set")
class T2Conformance(DatabaseCase):
    """`migrate up` on a fresh database yields the seed's schema plus aggd's."""
    tag = "conf"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        p = cls.migrate("up")
        if p.returncode != 0:
            raise AssertionError("migrate up exited %d: %s" % (p.returncode, p.stderr.strip()))
        cls.seed = parse_seed(SEED_DOC)
        cls.cat = Catalog(cls.url)

    def test_schema_migrations_records_every_file(self):
        rows = query(self.url, "SELECT version, name FROM schema_migrations ORDER BY version")
        self.assertEqual([(r["version"], r["name"]) for r in rows], migration_files())

    def test_seed_tables_exist(self):
        for t in self.seed:
            with self.subTest(table=t):
                self.assertIn(t, self.cat.columns)

    def test_seed_columns(self):
        for t in self.seed.values():
            actual = self.cat.columns.get(t.name, {})
            for c in t.columns:
                with self.subTest(column="%s.%s" % (t.name, c.name)):
                    self.assertIn(c.name, actual)
                    a = actual[c.name]
                    self.assertEqual(a["type"], map_type(c.type))
                    self.assertEqual(a["not_null"], c.not_null or c.pk)
                    if c.default is not None:
                        self.assertEqual(normalize_default(a["def"]),
                                         normalize_default(c.default))
                    elif c.pk:
                        # serial/bigserial, or an identity column
                        self.assertTrue(a["identity"] or
                                        re.fullmatch(r"nextval\('.*'::regclass\)", a["def"] or ""),
                                        "%s.%s gets no automatic value" % (t.name, c.name))
                    elif c.name in ("created_at", "updated_at"):
                        self.assertEqual(a["def"], UTC_NOW_DEFAULT)
                    else:
                        self.assertIsNone(a["def"], "default the seed does not give")

    def test_seed_tables_have_no_extra_columns(self):
        for t in self.seed.values():
            with self.subTest(table=t.name):
                extra = set(self.cat.columns.get(t.name, {})) - {c.name for c in t.columns}
                self.assertEqual(extra, {c for (tb, c) in AGGD_SEED_EXTRAS if tb == t.name})

    def test_seed_primary_keys(self):
        for t in self.seed.values():
            with self.subTest(table=t.name):
                pk = [c.name for c in t.columns if c.pk]
                if t.partition_key:
                    pk.append(t.partition_key)
                self.assertEqual([c["cols"] for c in self.cat.cons(t.name, "p")], [pk])

    def test_seed_unique_constraints(self):
        for t in self.seed.values():
            wanted = [[c.name] for c in t.columns if c.unique] + t.uniques
            for cols in wanted:
                with self.subTest(table=t.name, unique=cols):
                    self.assertTrue(self.cat.has_unique(t.name, cols))

    def test_seed_foreign_keys(self):
        for t in self.seed.values():
            for c in t.columns:
                if not c.fk:
                    continue
                with self.subTest(fk="%s.%s" % (t.name, c.name)):
                    refs = [(k["ref_tbl"], k["ref_cols"]) for k in self.cat.cons(t.name, "f")
                            if k["cols"] == [c.name]]
                    self.assertEqual(refs, [(c.fk[0], [c.fk[1]])])

    def test_foreign_keys_match_docs_on_delete_table(self):
        documented = parse_on_delete_doc(SCHEMA_DOC)
        self.assertTrue(documented, "no ON DELETE table in docs/schema.md")
        actual = {}
        for k in self.cat.constraints:
            if k["type"] == "f":
                self.assertEqual(len(k["cols"]), 1, k["name"])
                actual[(k["tbl"], k["cols"][0])] = (k["ref_tbl"], k["ref_cols"][0],
                                                    ON_DELETE[k["on_delete"]])
        for key in sorted(set(documented) | set(actual)):
            with self.subTest(fk="%s.%s" % key):
                self.assertEqual(actual.get(key), documented.get(key))

    def test_no_foreign_key_points_into_a_partitioned_table(self):
        into = [k["name"] for k in self.cat.constraints if k["type"] == "f" and
                k["ref_kind"] == "p"]
        self.assertEqual(into, [])

    def test_no_check_constraints_on_seed_columns(self):
        for t in self.seed.values():
            seed_cols = {c.name for c in t.columns}
            for k in self.cat.cons(t.name, "c"):
                with self.subTest(check=k["name"]):
                    self.assertFalse(seed_cols & set(k["cols"]), k["name"])

    def test_seed_indexes(self):
        for t in self.seed.values():
            for name, cols in t.indexes:
                with self.subTest(index=name):
                    self.assertIn(name, self.cat.indexes)
                    ix = self.cat.indexes[name]
                    self.assertEqual((ix["tbl"], ix["cols"], ix["partial"]),
                                     (t.name, cols, False))

    def test_aggd_indexes(self):
        for name, (table, cols) in AGGD_INDEXES.items():
            with self.subTest(index=name):
                self.assertIn(name, self.cat.indexes)
                ix = self.cat.indexes[name]
                self.assertEqual((ix["tbl"], ix["cols"], ix["partial"]), (table, cols, False))

    def test_partitioned_by_month_on_created_at(self):
        for t in PARTITIONED:
            with self.subTest(table=t):
                self.assertIn(t, self.cat.partitioned)
                self.assertEqual(self.cat.partitioned[t]["key"], "RANGE (created_at)")
                self.assertEqual([c["cols"] for c in self.cat.cons(t, "p")],
                                 [["id", "created_at"]])
        self.assertEqual(sorted(self.cat.partitioned), sorted(PARTITIONED))

    def test_no_default_partition(self):
        for t, p in self.cat.partitioned.items():
            with self.subTest(table=t):
                self.assertFalse(p["has_default"])

    def test_aggd_tables(self):
        for t, cols in AGGD_TABLES.items():
            actual = self.cat.columns.get(t)
            with self.subTest(table=t):
                self.assertIsNotNone(actual, "missing table %s" % t)
                self.assertEqual(sorted(actual), sorted(cols))
            for c, (type_, not_null) in cols.items():
                with self.subTest(column="%s.%s" % (t, c)):
                    self.assertIn(c, actual or {})
                    self.assertEqual((actual[c]["type"], actual[c]["not_null"]),
                                     (type_, not_null))
        for t, uniques in AGGD_UNIQUES.items():
            for cols in uniques:
                with self.subTest(table=t, unique=cols):
                    self.assertTrue(self.cat.has_unique(t, cols))

    def test_aggd_columns_on_seed_tables(self):
        for (t, c), (type_, not_null, default) in AGGD_SEED_EXTRAS.items():
            with self.subTest(column="%s.%s" % (t, c)):
                a = self.cat.columns.get(t, {}).get(c)
                self.assertIsNotNone(a)
                self.assertEqual((a["type"], a["not_null"], normalize_default(a["def"])),
                                 (type_, not_null, default))

    def test_timestamps_default_to_utc_now(self):
        for t, cols in self.cat.columns.items():
            for c in ("created_at", "updated_at"):
                if c in cols:
                    with self.subTest(column="%s.%s" % (t, c)):
                        self.assertEqual(cols[c]["def"], UTC_NOW_DEFAULT)

    def test_updated_at_triggers(self):
        row_before_update = 1 | 2 | 16      # TRIGGER_TYPE_ROW | _BEFORE | _UPDATE
        found = {(tr["tbl"], tr["name"]): tr for tr in self.cat.triggers}
        for t, cols in sorted(self.cat.columns.items()):
            if "updated_at" not in cols:
                continue
            with self.subTest(table=t):
                tr = found.get((t, "trg_%s_updated_at" % t))
                self.assertIsNotNone(tr, "no trg_%s_updated_at" % t)
                self.assertEqual((tr["func"], tr["type"]),
                                 ("aggd_set_updated_at", row_before_update))

    def test_updated_at_trigger_bumps_on_update(self):
        psql(self.url, "INSERT INTO users (email, hashed_password, role, created_at, updated_at)"
                       " VALUES ('trigger@example.org', 'x', 'viewer',"
                       "         '2000-01-01', '2000-01-01');")
        psql(self.url, "UPDATE users SET full_name = 'T' WHERE email = 'trigger@example.org';")
        r = query(self.url, "SELECT created_at = '2000-01-01' AS created_kept,"
                            " updated_at > '2000-01-01' AS bumped,"
                            " abs(extract(epoch FROM updated_at - (now() AT TIME ZONE 'UTC')))"
                            "   < 300 AS utc_now"
                            " FROM users WHERE email = 'trigger@example.org'")
        self.assertEqual(r, [{"created_kept": True, "bumped": True, "utc_now": True}])

    def test_updated_at_trigger_reaches_alerts_partitions(self):
        psql(self.url, "SELECT aggd_create_month_partition('alerts', '2026-02-01');")
        psql(self.url, "INSERT INTO alerts (severity, status, metric_value, message, created_at,"
                       " updated_at)"
                       " VALUES ('high', 'active', 1, 'm', '2026-02-10', '2000-01-01');")
        psql(self.url, "UPDATE alerts SET status = 'resolved' WHERE message = 'm';")
        r = query(self.url, "SELECT tableoid::regclass::text AS part,"
                            " updated_at > '2000-01-01' AS bumped FROM alerts WHERE message = 'm'")
        self.assertEqual(r, [{"part": "alerts_2026_02", "bumped": True}])

    def test_note_received_keeps_one_row_per_month_at_utc_now(self):
        psql(self.url, "SELECT aggd_note_received('system_logs', '2026-03-17');")
        psql(self.url, "UPDATE partition_activity SET last_received_at = '2000-01-01';")
        psql(self.url, "SELECT aggd_note_received('system_logs', '2026-03-02');")
        r = query(self.url, "SELECT to_char(month, 'YYYY-MM-DD') AS month,"
                            " abs(extract(epoch FROM last_received_at -"
                            "     (now() AT TIME ZONE 'UTC'))) < 300 AS utc_now"
                            " FROM partition_activity WHERE table_name = 'system_logs'"
                            " AND month BETWEEN '2026-03-01' AND '2026-03-31'")
        self.assertEqual(r, [{"month": "2026-03-01", "utc_now": True}])

    def test_month_partition_covers_exactly_the_month(self):
        make = "SELECT aggd_create_month_partition('system_logs', '2026-02-17')"
        self.assertEqual(value(self.url, make), "system_logs_2026_02")
        self.assertEqual(value(self.url, make), "system_logs_2026_02")   # twice: no error
        r = query(self.url, "SELECT inhparent::regclass::text AS parent,"
                            " pg_get_expr(c.relpartbound, c.oid) AS bound"
                            " FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid"
                            " WHERE c.relname = 'system_logs_2026_02'")
        self.assertEqual(r, [{"parent": "system_logs", "bound": "FOR VALUES FROM "
                              "('2026-02-01 00:00:00') TO ('2026-03-01 00:00:00')"}])
        psql(self.url, "INSERT INTO system_logs (level, message, created_at)"
                       " VALUES ('INFO', 'first', '2026-02-01 00:00:00'),"
                       " ('INFO', 'last', '2026-02-28 23:59:59.999999');")
        rows = query(self.url, "SELECT message, tableoid::regclass::text AS part FROM system_logs"
                               " WHERE message IN ('first', 'last') ORDER BY created_at")
        self.assertEqual(rows, [{"message": "first", "part": "system_logs_2026_02"},
                                {"message": "last", "part": "system_logs_2026_02"}])
        for outside in ("2026-01-31 23:59:59.999999", "2026-03-01 00:00:00"):
            with self.subTest(created_at=outside):
                p = psql_run(self.url, "INSERT INTO system_logs (level, message, created_at)"
                                       " VALUES ('INFO', 'x', '%s');" % outside)
                self.assertNotEqual(p.returncode, 0)
                self.assertIn("no partition", p.stderr)
        # The partition carries a copy of every index of its parent.
        self.assertEqual(
            value(self.url, "SELECT count(*) FROM pg_index"
                            " WHERE indrelid = 'system_logs'::regclass"),
            value(self.url, "SELECT count(*) FROM pg_index x JOIN pg_inherits i"
                            " ON i.inhrelid = x.indexrelid"
                            " WHERE x.indrelid = 'system_logs_2026_02'::regclass"))

    def test_month_partition_concurrent_callers_both_succeed(self):
        # The first caller holds the new partition (and its lock on the parent)
        # uncommitted while the second one tries: the second must wait, lose
        # the race quietly, and return the name.
        first = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_pg_env())
        first.stdin.write("BEGIN;\n"
                          "SELECT aggd_create_month_partition('system_logs', '2026-05-01');\n"
                          "SELECT pg_sleep(2);\nCOMMIT;\n")
        first.stdin.flush()
        holding = ("SELECT count(*) FROM pg_locks WHERE locktype = 'relation' AND granted"
                   " AND relation = 'system_logs'::regclass AND mode = 'AccessExclusiveLock'"
                   " AND database = (SELECT oid FROM pg_database"
                   "                  WHERE datname = current_database())")
        deadline = time.monotonic() + 30
        while value(self.url, holding) == 0 and first.poll() is None:
            self.assertLess(time.monotonic(), deadline, "first caller never took the lock")
            time.sleep(0.05)
        second = psql_run(self.url,
                          "SELECT aggd_create_month_partition('system_logs', '2026-05-31');")
        out1, err1 = first.communicate(timeout=TIMEOUT_S)
        self.assertEqual(first.returncode, 0, err1)
        self.assertEqual(second.returncode, 0, second.stderr)
        self.assertIn("system_logs_2026_05", out1)
        self.assertEqual(second.stdout.strip(), "system_logs_2026_05")
        self.assertEqual(value(self.url, "SELECT count(*) FROM pg_inherits"
                                         " WHERE inhrelid = 'system_logs_2026_05'::regclass"), 1)

    def test_month_partition_refuses_a_table_that_is_not_partitioned(self):
        for parent in ("users", "no_such_table"):
            with self.subTest(parent=parent):
                p = psql_run(self.url, "SELECT aggd_create_month_partition('%s', '2026-02-01');"
                             % parent)
                self.assertNotEqual(p.returncode, 0)
                self.assertIn("not a partitioned table", p.stderr)
        self.assertIsNone(value(self.url, "SELECT to_regclass('users_2026_02')"))


@unittest.skipUnless(ADMIN_URL, "AGGD_TEST_DATABASE_URL is not set")
class T3MigrateCommands(DatabaseCase):
    """status, idempotent up, and an exactly reversible down."""
    tag = "cli"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        p = cls.migrate("up")
        if p.returncode != 0:
            raise AssertionError("migrate up exited %d: %s" % (p.returncode, p.stderr.strip()))
        cls.dump = pg_dump(cls.url)

    def applied(self):
        return query(self.url, "SELECT version, name, applied_at FROM schema_migrations"
                               " ORDER BY version")

    def test_1_status_mentions_every_version(self):
        p = self.migrate("status")
        self.assertRan(p, "migrate status")
        lines = p.stdout.splitlines()
        for v, name in migration_files():
            with self.subTest(version=v):
                number = re.compile(r"(?<!\d)0*%d(?!\d)" % v)
                self.assertTrue(any(number.search(l) and name in l for l in lines),
                                "no line with %d and %s in:\n%s" % (v, name, p.stdout))

    def test_2_up_again_changes_nothing(self):
        before = self.applied()
        self.assertRan(self.migrate("up"), "second migrate up")
        self.assertEqual(self.applied(), before)
        self.assertEqual(pg_dump(self.url), self.dump)

    def test_3_down_all_leaves_only_schema_migrations(self):
        n = len(migration_files())
        self.assertRan(self.migrate("down", str(n)), "migrate down %d" % n)
        self.assertEqual(self.applied(), [])
        left = query(self.url, """
            SELECT 'relation ' || c.relname AS obj FROM pg_class c
             WHERE c.relnamespace = 'public'::regnamespace
               AND c.relname NOT IN ('schema_migrations', 'schema_migrations_pkey')
            UNION ALL
            SELECT 'function ' || p.proname FROM pg_proc p
             WHERE p.pronamespace = 'public'::regnamespace
            UNION ALL
            SELECT 'type ' || t.typname FROM pg_type t
             WHERE t.typnamespace = 'public'::regnamespace
               AND t.typname NOT IN ('schema_migrations', '_schema_migrations')
            UNION ALL
            SELECT 'schema ' || nspname FROM pg_namespace
             WHERE nspname NOT IN ('public', 'information_schema') AND nspname !~ '^pg_'""")
        self.assertEqual([r["obj"] for r in left], [])
        self.assertEqual(value(self.url, "SELECT to_regclass('public.schema_migrations')::text"),
                         "schema_migrations")

    def test_4_up_after_down_gives_the_same_schema(self):
        self.assertRan(self.migrate("up"), "migrate up after down")
        self.assertEqual(pg_dump(self.url), self.dump)


@unittest.skipUnless(ADMIN_URL, "AGGD_TEST_DATABASE_URL is not set")
class T4ConcurrentMigrate(DatabaseCase):
    """Two `migrate up` at once on a fresh database: both succeed, each file runs once."""
    tag = "conc"

    def test_concurrent_up_applies_each_migration_once(self):
        if not os.access(AGGD_BIN, os.X_OK):
            self.fail("aggd binary not found at %s (set AGGD_BIN)" % AGGD_BIN)
        cmd = [AGGD_BIN, "migrate", "up", "--set", "database.url=" + self.url]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        for i, p in enumerate(procs):
            _, err = p.communicate(timeout=TIMEOUT_S)
            self.assertEqual(p.returncode, 0, "migrate up #%d: %s" % (i + 1, err.strip()))
        rows = query(self.url, "SELECT version, count(*) AS n FROM schema_migrations"
                               " GROUP BY version ORDER BY version")
        self.assertEqual([(r["version"], r["n"]) for r in rows],
                         [(v, 1) for v, _ in migration_files()])


# --------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------

class CountingResult(unittest.TextTestResult):
    """Counts checks: each subtest, and each test without subtests."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = 0
        self.failed = 0
        self._with_subtests = set()

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        self._with_subtests.add(test.id())
        if err is None:
            self.passed += 1
        else:
            self.failed += 1

    def addSuccess(self, test):
        super().addSuccess(test)
        if test.id() not in self._with_subtests:
            self.passed += 1

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.failed += 1

    def addError(self, test, err):
        super().addError(test, err)
        self.failed += 1

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.failed += 1


def main():
    if not ADMIN_URL:
        print("skip: AGGD_TEST_DATABASE_URL is not set", file=sys.stderr)
        return 77
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in
                               (T1SeedDocument, T2Conformance, T3MigrateCommands,
                                T4ConcurrentMigrate))
    if len(sys.argv) > 1:                  # e.g. T2Conformance.test_seed_indexes
        suite = loader.loadTestsFromNames(sys.argv[1:], sys.modules[__name__])
    result = unittest.TextTestRunner(resultclass=CountingResult, verbosity=2,
                                     stream=sys.stdout).run(suite)
    print("%d passed, %d failed" % (result.passed, result.failed))
    return 0 if result.failed == 0 and result.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
