"""Connectors (secrets sealed at rest, answered "***"), schema mappings (fields checked
against both schemas) and dashboard layouts (scope, one default per user, versions
with If-Match and ETag) against the real binary and PostgreSQL.
"""
import base64
import concurrent.futures
import ctypes
import ctypes.util
import json
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

import apikit
import harness

SECRETS = ("pl41n-db-pass", "tok-3141", "key-2718", "arr-secret-1", "arr-secret-2",
           "rotated-pass", "aws-abc-123", "never-stored-9")


def sodium_open(key, stored):
    """The plaintext of aggd's stored form "v1:" + base64(nonce | box), opened with
    libsodium itself (through ctypes): aggd's format is plain secretbox."""
    lib = ctypes.CDLL(ctypes.util.find_library("sodium"))
    assert lib.sodium_init() >= 0
    assert stored.startswith("v1:"), stored
    raw = base64.b64decode(stored[3:])
    nonce, box = raw[:24], raw[24:]
    out = ctypes.create_string_buffer(len(box) - 16)
    rc = lib.crypto_secretbox_open_easy(out, box, ctypes.c_ulonglong(len(box)), nonce, key)
    assert rc == 0, "secretbox did not open"
    return out.raw.decode()


class Catalog(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="aggd-catalog.")
        cls.key_file = os.path.join(cls.dir, "keys", "secrets.key")
        # at debug level, so that the log check below covers every line aggd may write
        cls.env = apikit.ApiEnv(extra=("--set", f"secrets.key_file={cls.key_file}",
                                       "--set", "log.level=debug"))

    @classmethod
    def tearDownClass(cls):
        out = cls.env.aggd.output()
        cls.env.close()
        shutil.rmtree(cls.dir, ignore_errors=True)
        for s in SECRETS:  # nothing the tests sent as a secret reached aggd's log
            assert s not in out, f"{s} in aggd's log"

    def stored(self, cid):
        return json.loads(self.env.db.sql(f"SELECT config::text FROM connectors WHERE id = {cid}"))

    def assert_no_plaintext(self, *docs):
        text = json.dumps(docs) + self.env.db.sql("SELECT coalesce(string_agg(config::text, ''),"
                                                  " '') FROM connectors")
        for s in SECRETS:
            self.assertNotIn(s, text)

    # ---- connectors ----

    def test_key_file_is_made_0600(self):
        st = os.stat(self.key_file)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_size, 32)

    def test_aggd_refuses_a_bad_key_file(self):
        for content, mode, why in ((b"x" * 31, 0o600, "exactly 32 bytes"),
                                   (b"x" * 32, 0o644, "group or others")):
            path = os.path.join(self.dir, "bad.key")
            with open(path, "wb") as f:
                f.write(content)
            os.chmod(path, mode)
            aggd = harness.Aggd(self.env.db.url, "--set", f"secrets.key_file={path}",
                                wait_healthy=False)
            try:
                code = aggd.proc.wait(timeout=15)
                self.assertNotEqual(code, 0)
                self.assertIn(why, aggd.output())
                self.assertIn(path, aggd.output())
            finally:
                aggd.close()

    def test_secrets_are_sealed_masked_and_kept(self):
        env = self.env
        config = {"host": "db.example.com", "db_password": "pl41n-db-pass",
                  "auth": {"Refresh-Token": "tok-3141", "api_key": "key-2718", "user": "u"},
                  "replicas": [{"host": "r1", "password": "arr-secret-1"},
                               {"host": "r2", "nested": [{"client_secret": "arr-secret-2"}]}],
                  "AWS_SECRET_ACCESS_KEY": "aws-abc-123", "tokens_max": 5}
        made = env.ok("POST", "/api/v1/connectors",
                      {"name": "warehouse", "connector_type": "postgres", "config": config},
                      who="editor", status=201)
        cid = made["id"]
        want = {"host": "db.example.com", "db_password": "***",
                "auth": {"Refresh-Token": "***", "api_key": "***", "user": "u"},
                "replicas": [{"host": "r1", "password": "***"},
                             {"host": "r2", "nested": [{"client_secret": "***"}]}],
                "AWS_SECRET_ACCESS_KEY": "***", "tokens_max": 5}
        self.assertEqual(made["config"], want)
        self.assertTrue(made["has_secret"])
        self.assertEqual(made["owner_id"], env.ids["editor"])
        got = env.ok("GET", f"/api/v1/connectors/{cid}", who="viewer")
        self.assertEqual((got["config"], got["has_secret"]), (want, True))
        listed = env.ok("GET", "/api/v1/connectors?connector_type=postgres", who="viewer")
        self.assertIn(want, [c["config"] for c in listed["items"]])
        self.assert_no_plaintext(made, got, listed)

        # the stored form is libsodium's secretbox under the key file's key
        with open(self.key_file, "rb") as f:
            key = f.read()
        stored = self.stored(cid)
        self.assertEqual(sodium_open(key, stored["db_password"]["$aggd_secret"]),
                         "pl41n-db-pass")
        self.assertEqual(sodium_open(key, stored["replicas"][1]["nested"][0]["client_secret"]
                                     ["$aggd_secret"]), "arr-secret-2")
        self.assertEqual(stored["tokens_max"], 5)

        # PATCH: left out and "***" keep, null removes, a new value replaces
        patch = {"host": "db2.example.com", "db_password": "***",
                 "auth": {"api_key": None, "user": "v"},
                 "replicas": [{"host": "r1b"}],
                 "AWS_SECRET_ACCESS_KEY": "rotated-pass"}
        doc = env.ok("PATCH", f"/api/v1/connectors/{cid}", {"config": patch}, who="editor")
        self.assertEqual(doc["config"], {
            "host": "db2.example.com", "db_password": "***",
            "auth": {"user": "v", "Refresh-Token": "***"},
            "replicas": [{"host": "r1b", "password": "***"}],
            "AWS_SECRET_ACCESS_KEY": "***"})
        after = self.stored(cid)
        self.assertEqual(after["db_password"], stored["db_password"])
        self.assertEqual(after["auth"]["Refresh-Token"], stored["auth"]["Refresh-Token"])
        self.assertEqual(after["replicas"][0]["password"], stored["replicas"][0]["password"])
        self.assertNotIn("api_key", after["auth"])
        self.assertEqual(sodium_open(key, after["AWS_SECRET_ACCESS_KEY"]["$aggd_secret"]),
                         "rotated-pass")
        self.assert_no_plaintext(doc)

        # a PATCH without config leaves it alone; removing every secret: has_secret false
        env.ok("PATCH", f"/api/v1/connectors/{cid}", {"name": "renamed"}, who="editor")
        self.assertEqual(self.stored(cid), after)
        doc = env.ok("PATCH", f"/api/v1/connectors/{cid}", {"config": {
            "db_password": None, "auth": {"Refresh-Token": None}, "replicas": [],
            "AWS_SECRET_ACCESS_KEY": None}}, who="editor")
        self.assertEqual(doc["config"], {"auth": {}, "replicas": []})
        self.assertFalse(doc["has_secret"])

    def test_connector_without_secrets(self):
        doc = self.env.ok("POST", "/api/v1/connectors",
                          {"name": "plain", "connector_type": "s3",
                           "config": {"bucket": "logs", "region": "eu"}}, status=201)
        self.assertEqual((doc["config"], doc["has_secret"]),
                         ({"bucket": "logs", "region": "eu"}, False))

    def test_secret_leaves_must_be_strings(self):
        env = self.env
        for config, field in (({"auth": {"password": 1234}}, "config.auth.password"),
                              ({"list": [{"x": 1}, {"token": {"v": 1}}]}, "config.list[1].token"),
                              ({"credentials": ["never-stored-9"]}, "config.credentials")):
            code, doc, _ = env.call("POST", "/api/v1/connectors",
                                    {"name": "bad", "connector_type": "x", "config": config})
            self.assertEqual((code, doc["error"]["field"]), (422, field), doc)
            self.assertNotIn("never-stored-9", json.dumps(doc))
        code, doc, _ = env.call("POST", "/api/v1/connectors",
                                {"name": "bad", "connector_type": "x",
                                 "config": {"a": {"password": "***"}}})
        self.assertEqual((code, doc["error"]["field"]), (422, "config.a.password"), doc)
        code, doc, _ = env.call("POST", "/api/v1/connectors",
                                {"name": "bad", "connector_type": "x",
                                 "config": {"a": {"$aggd_secret": "v1:AAAA"}}})
        self.assertEqual((code, doc["error"]["field"]), (422, "config.a.$aggd_secret"), doc)

    def test_errors_never_echo_a_secret(self):
        env = self.env
        bodies = [
            {"name": "n" * 300, "connector_type": "x", "config": {"password": "never-stored-9"}},
            {"name": "n", "config": {"password": "never-stored-9"}},
            {"name": "n", "connector_type": "x", "config": {"password": "never-stored-9"},
             "extra": 1},
        ]
        for body in bodies:
            code, doc, _ = env.call("POST", "/api/v1/connectors", body)
            self.assertIn(code, (400, 422))
            self.assertNotIn("never-stored-9", json.dumps(doc))
        raw = '{"name":"n","connector_type":"x","config":{"password":"never-stored-9" ,,}}'
        code, doc, _ = env.call("POST", "/api/v1/connectors", raw=raw)
        self.assertEqual(code, 400)
        self.assertNotIn("never-stored-9", json.dumps(doc))
        self.assertEqual(env.scalar("SELECT count(*) FROM connectors WHERE config::text LIKE "
                                    "'%never-stored%'"), 0)

    def test_connectors_filter_and_soft_delete(self):
        env = self.env
        cid = env.ok("POST", "/api/v1/connectors", {"name": "k", "connector_type": "kafka",
                                                    "config": {"brokers": ["b1"]}},
                     status=201)["id"]
        self.assertEqual([c["id"] for c in env.ok("GET", "/api/v1/connectors?connector_type="
                                                  "kafka")["items"]], [cid])
        env.ok("DELETE", f"/api/v1/connectors/{cid}", who="editor", status=204)
        self.assertFalse(env.ok("GET", f"/api/v1/connectors/{cid}")["is_active"])
        self.assertNotIn(cid, [c["id"] for c in env.ok(
            "GET", "/api/v1/connectors?connector_type=kafka&is_active=true")["items"]])
        self.assertEqual(env.call("PATCH", "/api/v1/connectors/999999",
                                  {"config": {"password": "x"}})[0], 404)
        self.assertEqual(env.call("GET", "/api/v1/connectors?config=1")[0], 400)

    # ---- schema mappings ----

    SRC = {"type": "object", "properties": {
        "user": {"type": "object", "properties": {"mail": {"type": "string"},
                                                  "name": {"type": "string"}}},
        "tags": {"type": "array", "items": {"type": "object",
                                            "properties": {"key": {"type": "string"}}}},
        "ts": {"type": "string"}}}
    DST = {"fields": [{"name": "email", "type": "string"},
                      {"name": "meta", "type": "record", "fields": [{"name": "tag"}]},
                      {"name": "event.time", "type": "timestamp"}]}

    def new_mapping(self, **over):
        body = dict({"name": "users", "source_schema": self.SRC,
                     "destination_schema": self.DST,
                     "field_mappings": {"user.mail": "email", "tags.key": "meta.tag",
                                        "ts": "event.time"}}, **over)
        return self.env.ok("POST", "/api/v1/schema-mappings", body, who="editor", status=201)

    def test_mapping_fields_must_exist_on_both_sides(self):
        env = self.env
        made = self.new_mapping()
        self.assertEqual(made["field_mappings"]["ts"], "event.time")
        self.assertEqual(made["owner_id"], env.ids["editor"])
        for mappings, message in (
                ({"user.mail": "email", "user.phone": "email"},
                 'source field "user.phone" is not in source_schema'),
                ({"user": "emails"}, 'destination field "emails" is not in destination_schema'),
                ({"user.mail.x": "email"}, 'source field "user.mail.x" is not in source_schema'),
                ({"user.name": "meta.nope"},
                 'destination field "meta.nope" is not in destination_schema')):
            code, doc, _ = env.call("POST", "/api/v1/schema-mappings",
                                    {"name": "bad", "source_schema": self.SRC,
                                     "destination_schema": self.DST,
                                     "field_mappings": mappings})
            self.assertEqual((code, doc["error"]["field"], doc["error"]["message"]),
                             (422, "field_mappings", message))

    def test_mapping_shapes_are_checked(self):
        env = self.env
        for body, field in (
                ({"source_schema": {"type": "string"}}, "source_schema"),
                ({"destination_schema": {"fields": [{"type": "x"}]}}, "destination_schema"),
                ({"field_mappings": {"user.mail": 3}}, "field_mappings"),
                ({"field_mappings": [{"source": "a", "destination": "b"}]}, "field_mappings"),
                ({"transformation_rules": []}, "transformation_rules")):
            doc = dict({"name": "x", "source_schema": self.SRC, "destination_schema": self.DST,
                        "field_mappings": {}}, **body)
            code, err, _ = env.call("POST", "/api/v1/schema-mappings", doc)
            self.assertEqual((code, err["error"]["field"]), (422, field), err)

    def test_mapping_patch_is_checked_against_the_stored_row(self):
        env = self.env
        mid = self.new_mapping(name="patched")["id"]
        # dropping mapped source fields: refused (jsonb keeps the shorter keys first)
        code, doc, _ = env.call("PATCH", f"/api/v1/schema-mappings/{mid}",
                                {"source_schema": {"type": "object",
                                                   "properties": {"ts": {}, "tags": {}}}})
        self.assertEqual((code, doc["error"]["message"]),
                         (422, 'source field "tags.key" is not in source_schema'))
        code, doc, _ = env.call("PATCH", f"/api/v1/schema-mappings/{mid}",
                                {"field_mappings": {"ts": "time"}})
        self.assertEqual((code, doc["error"]["message"]),
                         (422, 'destination field "time" is not in destination_schema'))
        # the same changes together agree
        doc = env.ok("PATCH", f"/api/v1/schema-mappings/{mid}",
                     {"source_schema": {"type": "object", "properties": {"ts": {}}},
                      "field_mappings": {"ts": "event.time"},
                      "transformation_rules": {"ts": "iso8601"}})
        self.assertEqual(doc["field_mappings"], {"ts": "event.time"})
        doc = env.ok("PATCH", f"/api/v1/schema-mappings/{mid}",
                     {"destination_schema": {"fields": [{"name": "event.time"}]}})
        self.assertEqual(doc["destination_schema"], {"fields": [{"name": "event.time"}]})
        env.ok("DELETE", f"/api/v1/schema-mappings/{mid}", who="editor", status=204)
        self.assertFalse(env.ok("GET", f"/api/v1/schema-mappings/{mid}",
                                who="viewer")["is_active"])
        self.assertEqual(env.call("PATCH", "/api/v1/schema-mappings/999999",
                                  {"field_mappings": {}})[0], 404)

    # ---- dashboard layouts ----

    def layout(self, who, **over):
        body = dict({"name": f"{who} board", "layout_config": {"widgets": []}}, **over)
        code, doc, hdrs = self.env.call("POST", "/api/v1/dashboard-layouts", body, who=who)
        self.assertEqual(code, 201, doc)
        self.assertEqual(hdrs.get("etag"), f'"{doc["version"]}"')
        return doc

    def test_layouts_are_private_unless_shared(self):
        env = self.env
        mine = self.layout("viewer", name="private")
        shared = self.layout("viewer", name="shared", is_shared=True)
        self.assertEqual((mine["user_id"], mine["version"]), (env.ids["viewer"], 1))
        url = "/api/v1/dashboard-layouts"
        self.assertEqual(env.call("GET", f"{url}/{mine['id']}", who="editor")[0], 404)
        self.assertEqual(env.call("PATCH", f"{url}/{mine['id']}", {"name": "x"},
                                  who="editor")[0], 404)
        self.assertEqual(env.call("DELETE", f"{url}/{mine['id']}", who="editor")[0], 404)
        self.assertEqual(env.call("GET", f"{url}/{shared['id']}", who="editor")[0], 200)
        self.assertEqual(env.call("PATCH", f"{url}/{shared['id']}", {"name": "x"},
                                  who="editor")[0], 403)
        self.assertEqual(env.call("DELETE", f"{url}/{shared['id']}", who="editor")[0], 403)
        seen = {d["id"] for d in apikit.all_pages(env, url, 2, who="editor")[0]}
        self.assertIn(shared["id"], seen)
        self.assertNotIn(mine["id"], seen)
        self.assertIn(mine["id"], {d["id"] for d in env.ok("GET", url, who="viewer")["items"]})
        # an admin sees and changes anyone's
        self.assertEqual(env.ok("PATCH", f"{url}/{mine['id']}", {"description": "by admin"},
                                who="admin")["description"], "by admin")
        env.ok("DELETE", f"{url}/{mine['id']}", who="viewer", status=204)
        self.assertEqual(env.call("GET", f"{url}/{mine['id']}", who="admin")[0], 404)
        self.assertEqual(env.call("POST", url, {"name": "v", "layout_config": {},
                                                "version": 3}, who="viewer")[0], 400)
        self.assertEqual(env.call("POST", url, {"name": "v", "layout_config": {},
                                                "user_id": 1}, who="viewer")[0], 400)

    def defaults(self, who):
        return [d["id"] for d in env_items(self.env, "/api/v1/dashboard-layouts?is_default=true",
                                           who) if d["user_id"] == self.env.ids[who]]

    def test_one_default_per_user(self):
        env = self.env
        a = self.layout("editor", is_default=True)
        b = self.layout("editor", is_default=True)
        self.assertEqual(self.defaults("editor"), [b["id"]])
        env.ok("PATCH", f"/api/v1/dashboard-layouts/{a['id']}", {"is_default": True},
               who="editor")
        self.assertEqual(self.defaults("editor"), [a["id"]])
        other = self.layout("admin", is_default=True)  # another user's default stays
        self.assertEqual(self.defaults("editor"), [a["id"]])
        self.assertEqual(self.defaults("admin"), [other["id"]])

        def make(i):
            body = {"name": f"race {i}", "layout_config": {}, "is_default": True}
            return env.call("POST", "/api/v1/dashboard-layouts", body, who="editor")[0]

        def flip(i):
            return env.call("PATCH", f"/api/v1/dashboard-layouts/{(a, b)[i % 2]['id']}",
                            {"is_default": True}, who="editor")[0]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(make, range(16))) + list(pool.map(flip, range(16)))
        self.assertEqual(codes, [201] * 16 + [200] * 16)
        self.assertEqual(env.scalar("SELECT count(*) FROM dashboard_layouts WHERE user_id = "
                                    f"{env.ids['editor']} AND is_default"), 1)
        # the database's own guarantee
        with self.assertRaises(subprocess.CalledProcessError) as caught:
            harness.psql(env.db.url, "UPDATE dashboard_layouts SET is_default = true "
                                     f"WHERE user_id = {env.ids['editor']}")
        self.assertIn("dashboard_layouts_is_default_key", caught.exception.stderr)

    def test_versions_and_preconditions(self):
        env = self.env
        lid = self.layout("viewer", name="versioned")["id"]
        url = f"/api/v1/dashboard-layouts/{lid}"

        def patch(body, **hdrs):
            return env.call("PATCH", url, body, who="viewer", headers=hdrs)

        code, doc, hdrs = patch({"name": "v2"})
        self.assertEqual((code, doc["version"], hdrs["etag"]), (200, 2, '"2"'))
        code, doc, hdrs = patch({})  # no change: no new version
        self.assertEqual((code, doc["version"], hdrs["etag"]), (200, 2, '"2"'))
        code, doc, _ = patch({"name": "v2"}, **{"If-Match": '"2"'})  # same value: no change
        self.assertEqual((code, doc["version"]), (200, 2))
        code, doc, _ = patch({"name": "stale"}, **{"If-Match": '"1"'})
        self.assertEqual((code, doc["error"]["code"]), (409, "version_conflict"))
        code, doc, _ = patch({"name": "stale", "version": 1})
        self.assertEqual((code, doc["error"]["code"]), (409, "version_conflict"))
        code, doc, _ = patch({"name": "stale", "version": 2}, **{"If-Match": '"1"'})
        self.assertEqual(code, 409)
        self.assertEqual(env.ok("GET", url, who="viewer")["name"], "v2")
        code, doc, hdrs = patch({"name": "v3", "version": 2})
        self.assertEqual((code, doc["version"], doc["name"], hdrs["etag"]), (200, 3, "v3", '"3"'))
        code, doc, _ = patch({"layout_config": {"widgets": [1]}}, **{"If-Match": '"3"'})
        self.assertEqual((code, doc["version"]), (200, 4))
        code, doc, _ = patch({"name": "any"}, **{"If-Match": "*"})
        self.assertEqual((code, doc["version"]), (200, 5))
        for bad in ("3", '"x"', '"0"', 'W/"5"'):
            code, doc, _ = patch({"name": "bad"}, **{"If-Match": bad})
            self.assertEqual((code, doc["error"]["field"]), (400, "If-Match"), bad)
        _, _, hdrs = env.call("GET", url, who="viewer")
        self.assertEqual(hdrs["etag"], '"5"')


def env_items(env, path, who):
    return apikit.all_pages(env, path, 100, who=who)[0]


if __name__ == "__main__":
    harness.main()
