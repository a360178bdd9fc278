"""Helpers for the JSON API tests: a migrated database with users of each role and
their tokens made through SQL (one Argon2id hash, made once by `aggd user add`),
and JSON requests against a running aggd.
"""
import base64
import hashlib
import http.client
import importlib.util
import json
import os
import secrets

import harness

PASSWORD = "correct horse battery staple"


def new_token():
    """A token in aggd's format and the hex SHA-256 stored for it."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    token = "aggd_" + raw
    return token, hashlib.sha256(token.encode()).hexdigest()


class ApiEnv:
    """A database with users admin/editor/viewer (password PASSWORD), an inactive
    user, api tokens for each (plus an expired one), and an ingest token; and aggd."""

    def __init__(self, start=True, extra=(), admin=None):
        self.db = harness.Database(admin)
        try:
            out = harness.run_aggd("migrate", "up", "--set", f"database.url={self.db.url}")
            assert out.returncode == 0, out.stderr
            # this month's partitions now, not when aggd's first maintenance pass runs
            self.db.sql("SELECT aggd_create_month_partition('alerts', current_date);"
                        "SELECT aggd_create_month_partition('system_logs', current_date)")
            out = harness.run_aggd("user", "add", "--email", "admin@example.com", "--role",
                                   "admin", "--set", f"database.url={self.db.url}",
                                   input=PASSWORD + "\n")
            assert out.returncode == 0, out.stderr
            self.ids = {"admin": self.scalar("SELECT id FROM users WHERE email = "
                                             "'admin@example.com'")}
            for role in ("editor", "viewer"):
                self.ids[role] = self.add_user(f"{role}@example.com", role)
            self.ids["inactive"] = self.add_user("gone@example.com", "editor", active=False)
            self.tokens = {role: self.add_token(self.ids[role]) for role in
                           ("admin", "editor", "viewer", "inactive")}
            self.tokens["expired"] = self.add_token(self.ids["admin"], expired=True)
            self.tokens["ingest"] = self.add_token(self.ids["admin"], scope="ingest")
            self.aggd = harness.Aggd(self.db.url, *extra) if start else None
        except BaseException:
            self.db.close()
            raise

    def scalar(self, sql):
        return int(self.db.sql(sql))

    def add_user(self, email, role, active=True, hashed=None):
        if hashed is None:
            hashed = self.db.sql("SELECT hashed_password FROM users WHERE email = "
                                 "'admin@example.com'")
        return self.scalar(
            "INSERT INTO users (email, hashed_password, role, is_active) VALUES "
            f"('{email}', '{hashed}', '{role}', {str(active).lower()}) RETURNING id")

    def add_token(self, user_id, expired=False, scope="api"):
        token, digest = new_token()
        when = "- interval '1 day'" if expired else "+ interval '1 day'"
        self.db.sql("INSERT INTO api_tokens (user_id, token_hash, scopes, expires_at) VALUES "
                    f"({user_id}, '{digest}', ARRAY['{scope}'], "
                    f"(now() AT TIME ZONE 'UTC') {when})")
        return token

    def login(self, email, password, source=None):
        """POST /api/v1/auth/login without a token, from <source> (an address) if given."""
        return self.call("POST", "/api/v1/auth/login", {"email": email, "password": password},
                         who=None, source=source)

    def call(self, method, path, body=None, who="admin", raw=None, headers=None,
             source=None):
        """(status, parsed JSON or None, headers) of one request as <who>."""
        hdrs = {"Content-Type": "application/json"}
        if who is not None and who != "none":
            hdrs["Authorization"] = "Bearer " + self.tokens[who]
        hdrs.update(headers or {})
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        conn = http.client.HTTPConnection("127.0.0.1", self.aggd.http_port, timeout=30,
                                          source_address=(source, 0) if source else None)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read().decode()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text
            return resp.status, parsed, {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def ok(self, method, path, body=None, who="admin", status=None):
        code, doc, _ = self.call(method, path, body, who)
        if status is not None:
            assert code == status, f"{method} {path}: {code} {doc}"
        else:
            assert 200 <= code < 300, f"{method} {path}: {code} {doc}"
        return doc

    def put_chunk(self, fid, n, data, who="editor", ctype="application/octet-stream"):
        """(status, parsed JSON or None) of PUT files/<fid>/chunks/<n> with raw <data>
        (no Content-Type when <ctype> is None)."""
        hdrs = {"Content-Type": ctype} if ctype else {}
        conn = http.client.HTTPConnection("127.0.0.1", self.aggd.http_port, timeout=60)
        try:
            hdrs["Authorization"] = "Bearer " + self.tokens[who]
            conn.putrequest("PUT", f"/api/v1/files/{fid}/chunks/{n}", skip_accept_encoding=True)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
            resp = conn.getresponse()
            text = resp.read()
            return resp.status, json.loads(text) if text else None
        finally:
            conn.close()

    def upload(self, data, chunks, who="editor", order=None, **body):
        """Declares (POST files with <body>) and uploads <data> in <chunks> chunks, in
        <order> if given; the declared row and the last chunk's (status, doc)."""
        body.setdefault("filename", "events.ndjson")
        doc = self.ok("POST", "/api/v1/files",
                      dict(body, file_size=len(data), total_chunks=chunks), who=who, status=201)
        size = -(-len(data) // chunks) if data else 0
        last = None
        for n in order if order is not None else range(chunks):
            last = self.put_chunk(doc["id"], n, data[n * size:(n + 1) * size], who=who)
        return doc, last

    def close(self):
        """Stops aggd, which must exit cleanly (sanitizers quiet), and drops the database."""
        try:
            if self.aggd is not None:
                code = self.aggd.stop()
                out = self.aggd.output()
                self.aggd.close()
                for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
                    assert bad not in out, out[out.find(bad) - 200:][:4000]
                assert code == 0, f"aggd exited with {code}:\n{out[-3000:]}"
        finally:
            self.db.close()


def all_pages(env, path, limit, who="admin"):
    """Every item of a list route, page by page; also the number of pages."""
    items, pages, cursor = [], 0, None
    while True:
        sep = "&" if "?" in path else "?"
        url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        doc = env.ok("GET", url, who=who)
        items += doc["items"]
        pages += 1
        cursor = doc["next_cursor"]
        if cursor is None:
            return items, pages
        assert pages < 1000, "pagination does not end"


def registered_routes():
    """{(method, path)} of api/routes.c, read as scripts/check-openapi.py reads it."""
    spec = importlib.util.spec_from_file_location(
        "check_openapi", source_path("scripts", "check-openapi.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.code_routes(source_path("api", "routes.c"))


def source_path(*parts):
    return os.path.join(harness.source_dir(), *parts)
