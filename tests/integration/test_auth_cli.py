#!/usr/bin/env python3
"""
tests/integration/test_auth_cli.py — `aggd user add` and `aggd token create` against a
real PostgreSQL: the rows they write (users, user_preferences, api_tokens), what they
print, and how they refuse bad input (exit 2 for usage, 1 for failures, one line on
stderr each).

The stored token hash is checked twice, independently of aggd: with Python's hashlib
and with PostgreSQL's own sha256().

Environment: see harness.py (AGGD_TEST_DATABASE_URL, AGGD_BIN); exits 77 without them.
Prints "N passed, M failed" last.
"""
import datetime
import hashlib
import re
import unittest
import uuid

import psycopg2

import harness as h

TOKEN_RE = re.compile(r"^aggd_[A-Za-z0-9_-]{43}$")
PREFERENCE_DEFAULTS = {
    "theme": "light", "language": "en", "timezone": "UTC", "date_format": "YYYY-MM-DD",
    "time_format": "24h", "notifications_enabled": True, "email_notifications": True,
    "dashboard_refresh_interval": 30, "accessibility_mode": False, "custom_settings": None,
}


def unique_email(tag="u"):
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


class AuthCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.db = h.Database()
        out = h.run_aggd("migrate", "up", "--set", f"database.url={cls.db.url}")
        if out.returncode != 0:
            cls.db.close()
            raise AssertionError(f"migrate up failed: {out.stderr}")
        cls.conn = psycopg2.connect(cls.db.url)
        cls.conn.autocommit = True

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        cls.db.close()

    # helpers

    def aggd(self, *args, input=None):
        return h.run_aggd(*args, "--set", f"database.url={self.db.url}", input=input)

    def query(self, sql, *params):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None

    def row(self, sql, *params):
        rows = self.query(sql, *params)
        self.assertEqual(len(rows), 1, f"{sql} {params}: {rows}")
        return rows[0]

    def utc_now(self):
        return self.row("SELECT now() AT TIME ZONE 'UTC'")[0]

    def assert_one_line_failure(self, out, code, *words):
        self.assertEqual(out.returncode, code, f"stdout={out.stdout!r} stderr={out.stderr!r}")
        lines = out.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, out.stderr)
        self.assertTrue(lines[0].startswith("aggd: "), lines[0])
        for w in words:
            self.assertIn(w, lines[0])
        self.assertEqual(out.stdout, "")

    def users_with(self, email):
        return self.row("SELECT count(*) FROM users WHERE email = %s", email)[0]

    def add_user(self, email, role="viewer", password="pw 1234", *extra):
        out = self.aggd("user", "add", "--email", email, "--role", role, *extra,
                        input=password + "\n")
        self.assertEqual(out.returncode, 0, out.stderr)
        m = re.fullmatch(rf"created user (\d+) {re.escape(email)} \({role}\)\n", out.stdout)
        self.assertIsNotNone(m, out.stdout)
        return int(m.group(1))

    def create_token(self, email, scope="ingest", *extra):
        out = self.aggd("token", "create", "--email", email, "--scope", scope, *extra)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertEqual(len(lines), 2, out.stdout)
        return lines

    # users

    def test_user_add_writes_the_user_with_an_argon2id_hash(self):
        email = unique_email("alice")
        before = self.utc_now()
        uid = self.add_user(email, "editor", "correct horse battery", "--name", "Alice Adams")
        row = self.row("SELECT id, email, full_name, role, is_active, is_verified,"
                       " hashed_password, created_at, updated_at FROM users WHERE email = %s",
                       email)
        self.assertEqual(row[:6], (uid, email, "Alice Adams", "editor", True, False))
        # libsodium's MODERATE limits: 256 MiB, 3 passes, one lane
        self.assertRegex(row[6], r"^\$argon2id\$v=19\$m=262144,t=3,p=1\$[A-Za-z0-9+/]+\$"
                                 r"[A-Za-z0-9+/]+$")
        self.assertNotIn("correct horse", row[6])
        after = self.utc_now()
        self.assertTrue(before - datetime.timedelta(seconds=1) <= row[7] <= after, row[7])
        self.assertTrue(before - datetime.timedelta(seconds=1) <= row[8] <= after, row[8])

    def test_user_add_creates_default_preferences(self):
        email = unique_email("prefs")
        uid = self.add_user(email)
        cols = list(PREFERENCE_DEFAULTS)
        rows = self.query(f"SELECT {', '.join(cols)} FROM user_preferences WHERE user_id = %s",
                          uid)
        self.assertEqual(len(rows), 1)
        self.assertEqual(dict(zip(cols, rows[0])), PREFERENCE_DEFAULTS)

    def test_user_add_without_name_stores_null(self):
        email = unique_email("noname")
        self.add_user(email, "admin")
        self.assertIsNone(self.row("SELECT full_name FROM users WHERE email = %s", email)[0])

    def test_user_add_hashes_are_salted(self):
        a, b = unique_email("salt"), unique_email("salt")
        self.add_user(a, password="same password")
        self.add_user(b, password="same password")
        ha = self.row("SELECT hashed_password FROM users WHERE email = %s", a)[0]
        hb = self.row("SELECT hashed_password FROM users WHERE email = %s", b)[0]
        self.assertNotEqual(ha, hb)

    def test_user_add_duplicate_email_fails_with_one_line(self):
        email = unique_email("dup")
        self.add_user(email)
        out = self.aggd("user", "add", "--email", email, "--role", "admin", input="x\n")
        self.assert_one_line_failure(out, 1, "already exists", email)
        self.assertEqual(self.users_with(email), 1)
        self.assertEqual(self.row("SELECT role FROM users WHERE email = %s", email)[0], "viewer")

    def test_user_add_bad_role_is_refused_naming_the_role(self):
        email = unique_email("role")
        out = self.aggd("user", "add", "--email", email, "--role", "root", input="pw\n")
        self.assertIn(out.returncode, (1, 2))
        self.assert_one_line_failure(out, out.returncode, "role", "root")
        self.assertEqual(self.users_with(email), 0)

    def test_user_add_empty_password_is_refused(self):
        for stdin in ("", "\n", "\r\n"):
            with self.subTest(stdin=stdin):
                email = unique_email("empty")
                out = self.aggd("user", "add", "--email", email, "--role", "viewer",
                                input=stdin)
                self.assert_one_line_failure(out, 1, "password is empty")
                self.assertEqual(self.users_with(email), 0)

    def test_user_add_reads_only_the_first_line(self):
        email = unique_email("lines")
        self.add_user(email, "viewer", "first line\nsecond line")
        self.assertEqual(self.users_with(email), 1)

    def test_user_add_bad_email_and_usage_errors_exit_2(self):
        cases = [
            (["user"], "usage"),
            (["user", "del", "--email", "a@b.c", "--role", "viewer"], "usage"),
            (["user", "add", "--role", "viewer"], "--email"),
            (["user", "add", "--email", "a@b.c"], "--role"),
            (["user", "add", "--email", "not-an-address", "--role", "viewer"], "email"),
            (["user", "add", "--email", "a b@c.d", "--role", "viewer"], "email"),
            (["user", "add", "--email", "a@b.c", "--role", "viewer", "--bogus", "1"], "--bogus"),
            (["user", "add", "--email", "a@b.c", "--email", "d@e.f", "--role", "viewer"],
             "twice"),
            (["user", "add", "--email", "a@b.c", "--role"], "--role"),
        ]
        for args, word in cases:
            with self.subTest(args=args):
                out = self.aggd(*args, input="pw\n")
                self.assert_one_line_failure(out, 2, word)

    # tokens

    def test_token_create_prints_token_last_and_stores_only_its_hash(self):
        email = unique_email("tok")
        uid = self.add_user(email, "editor")
        before = self.utc_now()
        first, token = self.create_token(email, "ingest", "--ttl-days", "7", "--name", "ci")
        after = self.utc_now()
        self.assertRegex(token, TOKEN_RE)
        m = re.match(r"created token (\d+) for (\S+) \(scope ingest, expires "
                     r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\)", first)
        self.assertIsNotNone(m, first)
        self.assertEqual(m.group(2), email)
        tid = int(m.group(1))
        row = self.row("SELECT id, user_id, name, token_hash, scopes, expires_at, last_used_at,"
                       " revoked_at, created_at FROM api_tokens WHERE id = %s", tid)
        self.assertEqual(row[1:3], (uid, "ci"))
        self.assertEqual(row[3], hashlib.sha256(token.encode()).hexdigest())
        self.assertEqual(row[4], ["ingest"])
        week = datetime.timedelta(days=7)
        self.assertTrue(before + week - datetime.timedelta(seconds=1) <= row[5] <= after + week,
                        row[5])
        self.assertEqual(row[5].strftime("%Y-%m-%dT%H:%M:%SZ"), m.group(3))
        self.assertIsNone(row[6])
        self.assertIsNone(row[7])
        self.assertTrue(before - datetime.timedelta(seconds=1) <= row[8] <= after, row[8])
        # the token itself is nowhere in the table
        dump = self.row("SELECT string_agg(t::text, ' ') FROM api_tokens t")[0]
        self.assertNotIn(token, dump)
        self.assertNotIn(token[5:], dump)

    def test_token_hash_matches_postgresql_sha256(self):
        email = unique_email("pgsha")
        self.add_user(email)
        _, token = self.create_token(email, "api")
        row = self.row("SELECT scopes FROM api_tokens"
                       " WHERE token_hash = encode(sha256(convert_to(%s, 'UTF8')), 'hex')",
                       token)
        self.assertEqual(row[0], ["api"])

    def test_token_create_default_ttl_comes_from_config(self):
        email = unique_email("ttl")
        self.add_user(email)
        for extra, days in (((), 30), (("--set", "auth.token_ttl_days=5"), 5)):
            with self.subTest(days=days):
                before = self.utc_now()
                first, token = self.create_token(email, "ingest", *extra)
                after = self.utc_now()
                expires = self.row("SELECT expires_at FROM api_tokens WHERE token_hash = %s",
                                   hashlib.sha256(token.encode()).hexdigest())[0]
                span = datetime.timedelta(days=days)
                self.assertTrue(before + span - datetime.timedelta(seconds=1) <= expires
                                <= after + span, (expires, days))

    def test_token_create_twice_gives_different_tokens(self):
        email = unique_email("two")
        self.add_user(email)
        _, a = self.create_token(email)
        _, b = self.create_token(email)
        self.assertNotEqual(a, b)
        self.assertEqual(self.row("SELECT count(*) FROM api_tokens t JOIN users u"
                                  " ON u.id = t.user_id WHERE u.email = %s", email)[0], 2)

    def test_token_create_unknown_email_fails(self):
        email = unique_email("ghost")
        out = self.aggd("token", "create", "--email", email, "--scope", "ingest")
        self.assert_one_line_failure(out, 1, "no user", email)

    def test_token_create_for_inactive_user_fails(self):
        email = unique_email("gone")
        uid = self.add_user(email)
        self.query("UPDATE users SET is_active = false WHERE id = %s", uid)
        out = self.aggd("token", "create", "--email", email, "--scope", "api")
        self.assert_one_line_failure(out, 1, "not active")
        self.assertEqual(self.row("SELECT count(*) FROM api_tokens WHERE user_id = %s",
                                  uid)[0], 0)

    def test_token_create_usage_errors_exit_2(self):
        cases = [
            (["token"], "usage"),
            (["token", "list"], "usage"),
            (["token", "create", "--scope", "ingest"], "--email"),
            (["token", "create", "--email", "a@b.c"], "--scope"),
            (["token", "create", "--email", "a@b.c", "--scope", "admin"], "scope"),
            (["token", "create", "--email", "a@b.c", "--scope", "api", "--ttl-days", "0"],
             "--ttl-days"),
            (["token", "create", "--email", "a@b.c", "--scope", "api", "--ttl-days", "3651"],
             "--ttl-days"),
            (["token", "create", "--email", "a@b.c", "--scope", "api", "--ttl-days", "7d"],
             "--ttl-days"),
            (["token", "create", "--email", "a@b.c", "--scope", "api", "extra"], "extra"),
        ]
        for args, word in cases:
            with self.subTest(args=args):
                out = self.aggd(*args)
                self.assert_one_line_failure(out, 2, word)

    def test_token_create_unreachable_database_fails_with_one_line(self):
        bad = h.with_dbname(self.db.url, "aggd_no_such_db_" + uuid.uuid4().hex[:6])
        out = h.run_aggd("token", "create", "--email", "a@b.c", "--scope", "api",
                         "--set", f"database.url={bad}")
        self.assert_one_line_failure(out, 1, "could not connect")


if __name__ == "__main__":
    h.main()
