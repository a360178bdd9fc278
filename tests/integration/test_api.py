"""The JSON API against the real binary and PostgreSQL: the role matrix, pipelines
with versions and runs, malformed bodies per resource, log search across monthly
partitions, and the live tail.
"""
import http.client
import json
import re
import socket
import time
import unittest

import apikit
import harness

ROLES = ("viewer", "editor", "admin")
RANK = {"viewer": 1, "editor": 2, "admin": 3}

PIPELINE = {"name": "orders", "source_config": {"kind": "s3"},
            "destination_config": {"kind": "pg"}}
TRANSFORMATION = {"name": "drop debug", "transformation_type": "filter",
                  "transformation_code": "level != 'DEBUG'", "config": {"field": "level"}}
CONNECTOR = {"name": "matrix", "connector_type": "postgres",
             "config": {"host": "db", "password": "matrix-pw"}}
MAPPING = {"name": "matrix", "source_schema": {"type": "object", "properties": {"a": {}}},
           "destination_schema": {"fields": [{"name": "b"}]}, "field_mappings": {"a": "b"}}
LAYOUT = {"name": "matrix", "layout_config": {"widgets": []}}
RULE = {"name": "errors", "metric": "count{level>=ERROR}[5m]", "threshold": 10,
        "operator": "gt", "severity": "high", "notification_channels": ["email", "webhook:ops"]}


class Api(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = apikit.ApiEnv()

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def new_alert(self, rule, status="active"):
        return self.env.scalar(
            "INSERT INTO alerts (rule_id, severity, status, metric_value, message) VALUES "
            f"({rule}, 'high', '{status}', 11, 'too many errors') RETURNING id")

    def new_pipeline(self, **over):
        return self.env.ok("POST", "/api/v1/pipelines", dict(PIPELINE, **over), status=201)

    # ---- roles ----

    def matrix(self):
        """(method, path, body, least role, status when allowed) for every route."""
        env = self.env
        p = self.new_pipeline()["id"]
        env.ok("PATCH", f"/api/v1/pipelines/{p}", {"name": "v1 made"})
        run = env.ok("POST", f"/api/v1/pipelines/{p}/runs", {}, status=201)["id"]
        pol = env.ok("POST", "/api/v1/escalation-policies",
                     {"name": "m", "levels": []}, status=201)["id"]
        ep = env.ok("POST", "/api/v1/notification-endpoints",
                    {"name": "matrix", "kind": "email", "target": "ops@example.com"},
                    status=201)["id"]
        tr = env.ok("POST", "/api/v1/transformations", TRANSFORMATION, status=201)["id"]
        rule = env.ok("POST", "/api/v1/alert-rules", RULE, status=201)["id"]
        alert = self.new_alert(rule)
        victim = env.add_user("victim@example.com", "viewer")
        # ---- c2 ----
        template = {"name": "matrix", "category": "etl", "is_public": True,
                    "template_config": dict(PIPELINE, name="from a template")}
        function = {"name": "fn_{who}", "display_name": "F", "category": "map",
                    "function_type": "sql", "function_code": "SELECT 1", "is_public": True}
        tpl = env.ok("POST", "/api/v1/pipeline-templates", template, who="editor",
                     status=201)["id"]
        fn = env.ok("POST", "/api/v1/transformation-functions",
                    dict(function, name="fn_matrix"), who="editor", status=201)["id"]
        # ---- c1 ----
        conn = env.ok("POST", "/api/v1/connectors", CONNECTOR, status=201)["id"]
        mapping = env.ok("POST", "/api/v1/schema-mappings", MAPPING, status=201)["id"]
        shared = env.ok("POST", "/api/v1/dashboard-layouts", dict(LAYOUT, is_shared=True),
                        who="admin", status=201)["id"]
        # ---- files ----
        # the editor's empty files (one chunk of 0 bytes): visible to it and admins only,
        # so the viewer's reads answer 404
        def editor_file(complete=False):
            f = env.ok("POST", "/api/v1/files", {"filename": "m.txt", "file_size": 0},
                       who="editor", status=201)["id"]
            if complete:
                env.ok("PUT", f"/api/v1/files/{f}/chunks/0", who="editor", status=200)
            return f
        f_read, f_chunk, f_gone = editor_file(True), editor_file(), editor_file()
        # ---- jobs ----
        # a file of the editor's: admins see it too, the viewer does not (404)
        jobs_file = env.scalar(
            "INSERT INTO file_uploads (filename, file_path, file_type, file_size, status,"
            f" owner_id) VALUES ('m.ndjson', 'matrix.data', 'ndjson', 0, 'uploaded',"
            f" {env.ids['editor']}) RETURNING id")
        job = env.scalar("INSERT INTO file_processing_jobs (file_id, job_type, status) VALUES"
                         f" ({jobs_file}, 'validation', 'completed') RETURNING id")
        return [
            ("GET", "/api/v1/users", None, "admin", 200),
            ("POST", "/api/v1/users", {"email": "new-{who}@example.com", "role": "viewer",
                                       "password": "pw-123456"}, "admin", 201),
            ("GET", f"/api/v1/users/{victim}", None, "admin", 200),
            ("PATCH", f"/api/v1/users/{victim}", {"full_name": "V"}, "admin", 200),
            ("DELETE", f"/api/v1/users/{victim}", None, "admin", 204),
            ("GET", f"/api/v1/users/{victim}/preferences", None, "admin", 200),
            ("PATCH", f"/api/v1/users/{victim}/preferences", {"theme": "dark"}, "admin", 200),
            ("GET", "/api/v1/pipelines", None, "viewer", 200),
            ("POST", "/api/v1/pipelines", PIPELINE, "editor", 201),
            ("GET", f"/api/v1/pipelines/{p}", None, "viewer", 200),
            ("PATCH", f"/api/v1/pipelines/{p}", {"schedule": "hourly"}, "editor", 200),
            ("DELETE", f"/api/v1/pipelines/{p}", None, "editor", 204),
            ("GET", f"/api/v1/pipelines/{p}/versions", None, "viewer", 200),
            ("POST", f"/api/v1/pipelines/{p}/versions/1/activate", None, "editor", 201),
            ("GET", f"/api/v1/pipelines/{p}/runs", None, "viewer", 200),
            ("POST", f"/api/v1/pipelines/{p}/runs", {}, "editor", 201),
            ("GET", f"/api/v1/pipelines/{p}/runs/{run}", None, "viewer", 200),
            ("PATCH", f"/api/v1/pipelines/{p}/runs/{run}", {"records_processed": 3}, "editor",
             200),
            ("GET", f"/api/v1/pipelines/{p}/runs/{run}/logs", None, "viewer", 200),
            ("GET", "/api/v1/transformations", None, "viewer", 200),
            ("POST", "/api/v1/transformations", TRANSFORMATION, "editor", 201),
            ("GET", f"/api/v1/transformations/{tr}", None, "viewer", 200),
            ("PATCH", f"/api/v1/transformations/{tr}", {"config": None}, "editor", 200),
            ("DELETE", f"/api/v1/transformations/{tr}", None, "editor", 204),
            ("GET", "/api/v1/escalation-policies", None, "viewer", 200),
            ("POST", "/api/v1/escalation-policies", {"name": "x", "levels": []}, "editor", 201),
            ("GET", f"/api/v1/escalation-policies/{pol}", None, "viewer", 200),
            ("PATCH", f"/api/v1/escalation-policies/{pol}", {"repeat_count": 1}, "editor", 200),
            ("DELETE", f"/api/v1/escalation-policies/{pol}", None, "editor", 204),
            ("GET", "/api/v1/notification-endpoints", None, "viewer", 200),
            ("POST", "/api/v1/notification-endpoints",
             {"name": "ep-{who}", "kind": "slack", "target": "https://hooks.example.com/x"},
             "editor", 201),
            ("GET", f"/api/v1/notification-endpoints/{ep}", None, "viewer", 200),
            ("PATCH", f"/api/v1/notification-endpoints/{ep}", {"target": "b@example.com"},
             "editor", 200),
            ("DELETE", f"/api/v1/notification-endpoints/{ep}", None, "editor", 204),
            ("GET", "/api/v1/alert-rules", None, "viewer", 200),
            ("POST", "/api/v1/alert-rules", RULE, "editor", 201),
            ("GET", f"/api/v1/alert-rules/{rule}", None, "viewer", 200),
            ("PATCH", f"/api/v1/alert-rules/{rule}", {"threshold": 7}, "editor", 200),
            ("DELETE", f"/api/v1/alert-rules/{rule}", None, "editor", 204),
            ("GET", "/api/v1/alerts", None, "viewer", 200),
            ("GET", f"/api/v1/alerts/{alert}", None, "viewer", 200),
            ("POST", f"/api/v1/alerts/{alert}/acknowledge", None, "editor", 200),
            # the second caller finds the first one's work done: 409
            ("POST", f"/api/v1/alerts/{alert}/resolve", None, "editor", (200, 409)),
            ("POST", f"/api/v1/alerts/{alert}/close", None, "editor", (200, 409)),
            ("GET", "/api/v1/logs", None, "viewer", 200),
            ("GET", "/api/v1/logs/tail", None, "viewer", 200),
            ("GET", "/api/v1/partitions", None, "admin", 200),
            # ---- c2 ----
            ("GET", "/api/v1/pipeline-templates", None, "viewer", 200),
            ("POST", "/api/v1/pipeline-templates", template, "editor", 201),
            ("GET", f"/api/v1/pipeline-templates/{tpl}", None, "viewer", 200),
            ("PATCH", f"/api/v1/pipeline-templates/{tpl}", {"tags": ["m"]}, "editor", 200),
            ("POST", f"/api/v1/pipeline-templates/{tpl}/instantiate", None, "editor", 201),
            # hard delete: the second caller finds it gone
            ("DELETE", f"/api/v1/pipeline-templates/{tpl}", None, "editor", (204, 404)),
            ("GET", "/api/v1/transformation-functions", None, "viewer", 200),
            ("POST", "/api/v1/transformation-functions", function, "editor", 201),
            ("GET", f"/api/v1/transformation-functions/{fn}", None, "viewer", 200),
            ("PATCH", f"/api/v1/transformation-functions/{fn}", {"tags": ["m"]}, "editor",
             200),
            ("DELETE", f"/api/v1/transformation-functions/{fn}", None, "editor", (204, 404)),
            # ---- c1 ----
            ("GET", "/api/v1/connectors", None, "viewer", 200),
            ("POST", "/api/v1/connectors", CONNECTOR, "editor", 201),
            ("GET", f"/api/v1/connectors/{conn}", None, "viewer", 200),
            ("PATCH", f"/api/v1/connectors/{conn}", {"config": {"password": "***"}}, "editor",
             200),
            ("DELETE", f"/api/v1/connectors/{conn}", None, "editor", 204),
            ("GET", "/api/v1/schema-mappings", None, "viewer", 200),
            ("POST", "/api/v1/schema-mappings", MAPPING, "editor", 201),
            ("GET", f"/api/v1/schema-mappings/{mapping}", None, "viewer", 200),
            ("PATCH", f"/api/v1/schema-mappings/{mapping}", {"transformation_rules": None},
             "editor", 200),
            ("DELETE", f"/api/v1/schema-mappings/{mapping}", None, "editor", 204),
            ("GET", "/api/v1/dashboard-layouts", None, "viewer", 200),
            ("POST", "/api/v1/dashboard-layouts", LAYOUT, "viewer", 201),
            # an admin's shared layout: readable by all, changed by its owner only (others'
            # private layouts are 404: test_api_catalog.py)
            ("GET", f"/api/v1/dashboard-layouts/{shared}", None, "viewer", 200),
            ("PATCH", f"/api/v1/dashboard-layouts/{shared}", {"name": "m"}, "admin", 200),
            ("DELETE", f"/api/v1/dashboard-layouts/{shared}", None, "admin", 204),
            # ---- files ----
            ("GET", "/api/v1/files", None, "viewer", 200),
            ("POST", "/api/v1/files", {"filename": "m-{who}.csv", "file_size": 0}, "editor",
             201),
            ("GET", f"/api/v1/files/{f_read}", None, "viewer", (200, 404)),
            ("GET", f"/api/v1/files/{f_read}/content", None, "viewer", (200, 404)),
            # the editor's empty chunk completes the file; the admin's comes too late
            ("PUT", f"/api/v1/files/{f_chunk}/chunks/0", None, "editor", (200, 409)),
            ("DELETE", f"/api/v1/files/{f_gone}", None, "editor", (204, 404)),
            # ---- jobs ----
            ("POST", f"/api/v1/files/{jobs_file}/jobs", {"job_type": "validation"}, "editor",
             201),
            ("GET", f"/api/v1/files/{jobs_file}/jobs", None, "viewer", (200, 404)),
            ("GET", f"/api/v1/jobs/{job}", None, "viewer", (200, 404)),
        ]

    def status_of(self, method, path, body, who):
        if path.endswith("/tail"):  # a stream: the status line is enough
            conn = http.client.HTTPConnection("127.0.0.1", self.env.aggd.http_port, timeout=10)
            hdrs = {} if who == "none" else {"Authorization": "Bearer " + self.env.tokens[who]}
            conn.request(method, path, headers=hdrs)
            status = conn.getresponse().status
            conn.close()
            return status, None
        if body is not None:
            body = json.loads(json.dumps(body).replace("{who}", who))
        code, doc, _ = self.env.call(method, path, body, who=who)
        return code, doc

    def test_role_matrix(self):
        matrix = self.matrix()

        def shape(path):
            return re.sub(r"/(\{[^}]+\}|\d+)(?=/|$)", "/{}", path)

        # login and logout have their own tests (test_api_login.py)
        registered = {(m.upper(), shape(p)) for m, p in apikit.registered_routes()
                      if "/auth/" not in p}
        self.assertGreater(len(registered), 40)
        self.assertEqual(registered - {(m, shape(p)) for m, p, _, _, _ in matrix}, set(),
                         "routes missing from the matrix")
        for method, path, body, least, allowed in matrix:
            for who in ("none", "expired", "inactive") + ROLES:
                with self.subTest(route=f"{method} {path}", who=who):
                    code, doc = self.status_of(method, path, body, who)
                    if who in ("none", "expired", "inactive"):
                        want = 401
                    elif RANK[who] >= RANK[least]:
                        want = allowed
                    else:
                        want = 403
                    if isinstance(want, tuple):
                        self.assertIn(code, want, doc)
                        continue
                    self.assertEqual(code, want, doc)
                    if want >= 400 and doc is not None:
                        self.assertIn(doc["error"]["code"], ("unauthorized", "forbidden"))

    def test_own_preferences_but_not_others(self):
        env = self.env
        me, other = env.ids["viewer"], env.ids["editor"]
        doc = env.ok("GET", f"/api/v1/users/{me}/preferences", who="viewer")
        self.assertEqual((doc["theme"], doc["language"], doc["timezone"], doc["time_format"],
                          doc["dashboard_refresh_interval"], doc["email_notifications"]),
                         ("light", "en", "UTC", "24h", 30, True))
        env.ok("PATCH", f"/api/v1/users/{me}/preferences", {"theme": "dark"}, who="viewer")
        self.assertEqual(env.ok("GET", f"/api/v1/users/{me}/preferences", who="viewer")
                         ["theme"], "dark")
        self.assertEqual(env.call("GET", f"/api/v1/users/{other}/preferences", who="viewer")[0],
                         403)
        self.assertEqual(env.call("GET", f"/api/v1/users/{me}", who="viewer")[0], 200)
        self.assertEqual(env.call("GET", f"/api/v1/users/{other}", who="viewer")[0], 403)

    def test_users_never_show_the_password_hash(self):
        env = self.env
        made = env.ok("POST", "/api/v1/users", {"email": "h@example.com", "role": "editor",
                                                "password": "s3cret-pass"}, status=201)
        listed = env.ok("GET", "/api/v1/users?role=editor")["items"]
        for doc in [made, env.ok("GET", f"/api/v1/users/{made['id']}")] + listed:
            self.assertNotIn("hashed_password", doc)
            self.assertNotIn("password", doc)
        stored = env.db.sql(f"SELECT hashed_password FROM users WHERE id = {made['id']}")
        self.assertTrue(stored.startswith("$argon2id$"), stored)

    def test_logout_revokes_the_token(self):
        env = self.env
        env.tokens["leaving"] = env.add_token(env.ids["viewer"])
        self.assertEqual(env.call("GET", "/api/v1/pipelines", who="leaving")[0], 200)
        self.assertEqual(env.call("POST", "/api/v1/auth/logout", who="leaving")[0], 204)
        self.assertEqual(env.call("GET", "/api/v1/pipelines", who="leaving")[0], 401)

    # ---- pipelines ----

    def test_pipeline_versions_and_activation(self):
        env = self.env
        p = self.new_pipeline(name="versioned")
        states = [p]
        for change in ({"name": "second"}, {"schedule": "daily"},
                       {"source_config": {"kind": "kafka"}, "description": "third"}):
            states.append(env.ok("PATCH", f"/api/v1/pipelines/{p['id']}", change))
        versions = env.ok("GET", f"/api/v1/pipelines/{p['id']}/versions")["items"]
        self.assertEqual([v["version_number"] for v in versions], [1, 2, 3])
        keys = ("name", "description", "source_config", "destination_config", "schedule")
        for v, before in zip(versions, states):
            self.assertEqual({k: v["snapshot"][k] for k in keys}, {k: before[k] for k in keys})
        made = env.ok("POST", f"/api/v1/pipelines/{p['id']}/versions/1/activate", status=201)
        self.assertEqual(made["version_number"], 4)
        self.assertEqual(made["snapshot"], versions[0]["snapshot"])
        now = env.ok("GET", f"/api/v1/pipelines/{p['id']}")
        self.assertEqual({k: now[k] for k in keys}, {k: states[0][k] for k in keys})
        active = [v["version_number"] for v in
                  env.ok("GET", f"/api/v1/pipelines/{p['id']}/versions")["items"]
                  if v["is_active"]]
        self.assertEqual(active, [4])
        self.assertEqual(env.call("POST", f"/api/v1/pipelines/{p['id']}/versions/9/activate")[0],
                         404)

    def test_runs_follow_the_transitions(self):
        env = self.env
        p = self.new_pipeline(name="runs")["id"]
        run = env.ok("POST", f"/api/v1/pipelines/{p}/runs", {}, status=201)
        self.assertEqual((run["status"], run["started_at"], run["completed_at"]),
                         ("pending", None, None))
        url = f"/api/v1/pipelines/{p}/runs/{run['id']}"
        for bad in ("completed", "failed", "pending"):
            code, doc, _ = env.call("PATCH", url, {"status": bad})
            self.assertEqual((code, doc["error"]["field"]), (409, "status"), bad)
        running = env.ok("PATCH", url, {"status": "running"})
        self.assertIsNotNone(running["started_at"])
        self.assertIsNone(running["completed_at"])
        self.assertEqual(env.call("PATCH", url, {"status": "pending"})[0], 409)
        done = env.ok("PATCH", url, {"status": "failed", "error_message": "disk full",
                                     "records_processed": 12})
        self.assertEqual((done["status"], done["error_message"], done["records_processed"]),
                         ("failed", "disk full", 12))
        self.assertIsNotNone(done["completed_at"])
        for bad in ("running", "completed"):
            self.assertEqual(env.call("PATCH", url, {"status": bad})[0], 409)
        other = self.new_pipeline(name="other")["id"]
        self.assertEqual(env.call("GET", f"/api/v1/pipelines/{other}/runs/{run['id']}")[0], 404)
        self.assertEqual(env.call("POST", "/api/v1/pipelines/999999/runs", {})[0], 404)

    def test_lists_page_without_gaps_or_repeats(self):
        env = self.env
        made = {self.new_pipeline(name=f"page-{i}")["id"] for i in range(7)}
        items, pages = apikit.all_pages(env, "/api/v1/pipelines", 3)
        ids = [i["id"] for i in items]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertTrue(made <= set(ids))
        self.assertEqual(ids, sorted(ids))
        self.assertGreaterEqual(pages, 3)
        for bad in ("limit=0", "limit=501", "limit=x", "cursor=%%%", "name=" + "n" * 300,
                    "colour=red", "is_active=maybe", "%ff%fe=1", "n%C3%A9" * 30 + "=1"):
            code, doc, _ = env.call("GET", "/api/v1/pipelines?" + bad)
            self.assertIn(code, (400, 422), bad)
            self.assertIsNotNone(doc["error"]["field"], bad)

    def test_soft_delete_keeps_the_row(self):
        env = self.env
        p = self.new_pipeline(name="soft")["id"]
        env.ok("DELETE", f"/api/v1/pipelines/{p}", status=204)
        self.assertFalse(env.ok("GET", f"/api/v1/pipelines/{p}")["is_active"])
        self.assertEqual(env.call("DELETE", "/api/v1/pipelines/999999")[0], 404)
        self.assertEqual(env.call("GET", "/api/v1/pipelines/abc")[0], 404)

    def test_endpoint_secret_is_write_only(self):
        env = self.env
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        doc = env.ok("POST", "/api/v1/notification-endpoints",
                     {"name": "signed", "kind": "webhook", "target": "https://h.example.com",
                      "secret": secret}, status=201)
        self.assertNotIn("secret", doc)
        self.assertTrue(doc["has_secret"])
        got = env.ok("GET", f"/api/v1/notification-endpoints/{doc['id']}")
        self.assertNotIn(secret, json.dumps(got))
        cleared = env.ok("PATCH", f"/api/v1/notification-endpoints/{doc['id']}",
                         {"secret": None})
        self.assertFalse(cleared["has_secret"])
        self.assertNotIn(secret, env.aggd.output())

    def test_alerts_filter_by_status_and_severity(self):
        env = self.env
        for sev, status in (("low", "active"), ("critical", "active"), ("critical", "closed")):
            env.db.sql("INSERT INTO alerts (severity, status, metric_value, message) VALUES "
                       f"('{sev}', '{status}', 2, 'f')")
        got = env.ok("GET", "/api/v1/alerts?status=active&severity=critical")["items"]
        self.assertTrue(got)
        self.assertTrue(all(a["status"] == "active" and a["severity"] == "critical"
                            for a in got))
        code, doc, _ = env.call("GET", "/api/v1/alerts?status=sleeping")
        self.assertEqual((code, doc["error"]["field"]), (400, "status"))

    def test_alert_actions_follow_the_lifecycle(self):
        env = self.env
        rule = env.ok("POST", "/api/v1/alert-rules", dict(RULE, name="life"), status=201)
        self.assertEqual((rule["metric"], rule["for_seconds"], rule["is_active"]),
                         (RULE["metric"], 0, True))
        alert = self.new_alert(rule["id"])
        url = f"/api/v1/alerts/{alert}"
        code, doc, _ = env.call("POST", url + "/close", who="editor")
        self.assertEqual((code, doc["error"]["code"]), (409, "invalid_transition"))
        code, doc, _ = env.call("POST", "/api/v1/alert-rules",
                                dict(RULE, metric="count{level>=LOUD}[5m]"))
        self.assertEqual((code, doc["error"]["field"]), (422, "metric"))
        self.assertIn("at 13", doc["error"]["message"])  # where LOUD starts
        acked = env.ok("POST", url + "/acknowledge", who="editor")
        self.assertEqual((acked["status"], acked["acknowledged_by"]),
                         ("acknowledged", env.ids["editor"]))
        self.assertIsNotNone(acked["acknowledged_at"])
        done = env.ok("POST", url + "/resolve", who="admin")
        self.assertEqual((done["status"], done["resolution_type"], done["resolved_by"]),
                         ("resolved", "manual", env.ids["admin"]))
        self.assertEqual(env.ok("POST", url + "/close", who="editor")["status"], "closed")
        self.assertEqual(env.call("POST", url + "/acknowledge", who="editor")[0], 409)
        self.assertEqual(env.call("POST", "/api/v1/alerts/999999/resolve")[0], 404)

    def test_transformation_round_trip(self):
        env = self.env
        made = env.ok("POST", "/api/v1/transformations", TRANSFORMATION, who="editor",
                      status=201)
        tid = made["id"]
        for k, v in TRANSFORMATION.items():
            self.assertEqual(made[k], v, k)
        self.assertEqual(made["owner_id"], env.ids["editor"])
        self.assertTrue(made["is_active"])
        self.assertEqual(env.ok("GET", f"/api/v1/transformations/{tid}", who="viewer"), made)
        changed = env.ok("PATCH", f"/api/v1/transformations/{tid}",
                         {"transformation_type": "map", "transformation_code": None},
                         who="editor")
        self.assertEqual((changed["transformation_type"], changed["transformation_code"]),
                         ("map", None))
        self.assertEqual((changed["name"], changed["config"]),
                         (TRANSFORMATION["name"], TRANSFORMATION["config"]))
        listed = env.ok("GET", "/api/v1/transformations?transformation_type=map")["items"]
        self.assertIn(tid, [t["id"] for t in listed])
        self.assertTrue(all(t["transformation_type"] == "map" for t in listed))
        env.ok("DELETE", f"/api/v1/transformations/{tid}", who="editor", status=204)
        self.assertFalse(env.ok("GET", f"/api/v1/transformations/{tid}")["is_active"])
        self.assertEqual(env.scalar("SELECT count(*) FROM transformations WHERE id = "
                                    f"{tid} AND NOT is_active"), 1)
        self.assertEqual(env.call("PATCH", "/api/v1/transformations/999999",
                                  {"name": "x"})[0], 404)

    # ---- malformed bodies ----

    def test_malformed_bodies(self):
        env = self.env
        p = self.new_pipeline(name="malformed")["id"]
        run = env.ok("POST", f"/api/v1/pipelines/{p}/runs", {}, status=201)["id"]
        env.ok("POST", "/api/v1/notification-endpoints",
               {"name": "taken", "kind": "email", "target": "a@example.com"}, status=201)
        viewer = env.ids["viewer"]
        cases = [
            ("POST", "/api/v1/pipelines", dict(PIPELINE, bogus=1), 400, "bogus"),
            ("POST", "/api/v1/pipelines", dict(PIPELINE, id=7), 400, "id"),
            ("POST", "/api/v1/pipelines", dict(PIPELINE, owner_id=1), 400, "owner_id"),
            ("POST", "/api/v1/pipelines", dict(PIPELINE, name=5), 422, "name"),
            ("POST", "/api/v1/pipelines", dict(PIPELINE, name="n" * 256), 422, "name"),
            ("POST", "/api/v1/pipelines", dict(PIPELINE, name=""), 422, "name"),
            ("POST", "/api/v1/pipelines", dict(PIPELINE, name=None), 422, "name"),
            ("POST", "/api/v1/pipelines", {"name": "x", "source_config": {}}, 422,
             "destination_config"),
            ("POST", "/api/v1/pipelines", dict(PIPELINE, source_config=[1]), 422,
             "source_config"),
            ("POST", "/api/v1/pipelines", dict(PIPELINE, is_active="yes"), 422, "is_active"),
            ("POST", "/api/v1/pipelines", dict(PIPELINE, schedule="s" * 101), 422, "schedule"),
            ("PATCH", f"/api/v1/pipelines/{p}", {"created_at": "2020-01-01"}, 400,
             "created_at"),
            ("POST", "/api/v1/users", {"email": "x@example.com", "role": "root",
                                       "password": "pw"}, 422, "role"),
            ("POST", "/api/v1/users", {"email": "nobody", "role": "viewer", "password": "pw"},
             422, "email"),
            ("POST", "/api/v1/users", {"email": "a" * 250 + "@b.com", "role": "viewer",
                                       "password": "pw"}, 422, "email"),
            ("POST", "/api/v1/users", {"email": "y@example.com", "role": "viewer"}, 422,
             "password"),
            ("POST", "/api/v1/users", {"email": "y@example.com", "role": "viewer",
                                       "password": ""}, 422, "password"),
            ("POST", "/api/v1/users", {"email": "y@example.com", "role": "viewer",
                                       "password": "pw", "hashed_password": "x"}, 400,
             "hashed_password"),
            ("POST", "/api/v1/users", {"email": "admin@example.com", "role": "viewer",
                                       "password": "pw-pw-pw"}, 409, "email"),
            ("PATCH", f"/api/v1/users/{viewer}", {"role": "owner"}, 422, "role"),
            ("PATCH", f"/api/v1/users/{viewer}", {"is_active": 1}, 422, "is_active"),
            ("PATCH", f"/api/v1/users/{viewer}/preferences", {"theme": "blue"}, 422, "theme"),
            ("PATCH", f"/api/v1/users/{viewer}/preferences", {"language": "l" * 11}, 422,
             "language"),
            ("PATCH", f"/api/v1/users/{viewer}/preferences",
             {"dashboard_refresh_interval": 0}, 422, "dashboard_refresh_interval"),
            ("PATCH", f"/api/v1/users/{viewer}/preferences",
             {"dashboard_refresh_interval": "30"}, 422, "dashboard_refresh_interval"),
            ("PATCH", f"/api/v1/users/{viewer}/preferences", {"custom_settings": [1]}, 422,
             "custom_settings"),
            ("PATCH", f"/api/v1/users/{viewer}/preferences", {"user_id": 1}, 400, "user_id"),
            ("POST", f"/api/v1/pipelines/{p}/runs", {"status": "running"}, 400, "status"),
            ("PATCH", f"/api/v1/pipelines/{p}/runs/{run}", {"status": "done"}, 422, "status"),
            ("PATCH", f"/api/v1/pipelines/{p}/runs/{run}", {"records_processed": -1}, 422,
             "records_processed"),
            ("PATCH", f"/api/v1/pipelines/{p}/runs/{run}", {"records_processed": 1.5}, 422,
             "records_processed"),
            ("PATCH", f"/api/v1/pipelines/{p}/runs/{run}", {"started_at": "now"}, 400,
             "started_at"),
            ("POST", "/api/v1/escalation-policies", {"levels": []}, 422, "name"),
            ("POST", "/api/v1/escalation-policies", {"name": "e", "levels": {}}, 422, "levels"),
            ("POST", "/api/v1/escalation-policies",
             {"name": "e", "levels": [{"after_minutes": 1}]}, 422, "levels"),
            ("POST", "/api/v1/escalation-policies",
             {"name": "e", "levels": [{"after_minutes": 1, "channels": ["email"], "x": 1}]},
             422, "levels"),
            ("POST", "/api/v1/escalation-policies",
             {"name": "e", "levels": [], "repeat_count": -1}, 422, "repeat_count"),
            ("POST", "/api/v1/notification-endpoints",
             {"name": "s", "kind": "sms", "target": "1"}, 422, "kind"),
            ("POST", "/api/v1/notification-endpoints",
             {"name": "s", "kind": "webhook", "target": "https://x", "secret": "hunter2"}, 422,
             "secret"),
            ("POST", "/api/v1/notification-endpoints",
             {"name": "s", "kind": "email", "target": ""}, 422, "target"),
            ("POST", "/api/v1/notification-endpoints",
             {"name": "taken", "kind": "email", "target": "b@example.com"}, 409, "name"),
            ("POST", "/api/v1/notification-endpoints",
             {"name": "s", "kind": "email", "target": "b@example.com", "has_secret": True},
             400, "has_secret"),
        ]
        tr = env.ok("POST", "/api/v1/transformations", TRANSFORMATION, status=201)["id"]
        cases += [
            ("POST", "/api/v1/transformations", dict(TRANSFORMATION, name=7), 422, "name"),
            ("POST", "/api/v1/transformations", dict(TRANSFORMATION, name="n" * 256), 422,
             "name"),
            ("POST", "/api/v1/transformations",
             dict(TRANSFORMATION, transformation_type="t" * 101), 422, "transformation_type"),
            ("POST", "/api/v1/transformations", dict(TRANSFORMATION, transformation_type=""),
             422, "transformation_type"),
            ("POST", "/api/v1/transformations", dict(TRANSFORMATION, config="level"), 422,
             "config"),
            ("POST", "/api/v1/transformations", dict(TRANSFORMATION, transformation_code=[1]),
             422, "transformation_code"),
            ("POST", "/api/v1/transformations", dict(TRANSFORMATION, language="python"), 400,
             "language"),
            ("POST", "/api/v1/transformations", dict(TRANSFORMATION, owner_id=1), 400,
             "owner_id"),
            ("POST", "/api/v1/transformations", {"name": "t"}, 422, "transformation_type"),
            ("POST", "/api/v1/transformations", {"transformation_type": "map"}, 422, "name"),
            ("PATCH", f"/api/v1/transformations/{tr}", {"is_active": "no"}, 422, "is_active"),
            ("PATCH", f"/api/v1/transformations/{tr}", {"name": None}, 422, "name"),
            ("PATCH", f"/api/v1/transformations/{tr}", {"updated_at": "2020-01-01"}, 400,
             "updated_at"),
        ]
        cases += [
            ("POST", "/api/v1/alert-rules", dict(RULE, metric="count{level>=LOUD}[5m]"), 422,
             "metric"),
            ("POST", "/api/v1/alert-rules", dict(RULE, metric="p95:duration_ms[5x]"), 422,
             "metric"),
            ("POST", "/api/v1/alert-rules", dict(RULE, metric="c" * 101), 422, "metric"),
            ("POST", "/api/v1/alert-rules", dict(RULE, operator="ge"), 422, "operator"),
            ("POST", "/api/v1/alert-rules", dict(RULE, severity="urgent"), 422, "severity"),
            ("POST", "/api/v1/alert-rules", dict(RULE, threshold="10"), 422, "threshold"),
            ("POST", "/api/v1/alert-rules", dict(RULE, notification_channels=["pager"]), 422,
             "notification_channels"),
            ("POST", "/api/v1/alert-rules", dict(RULE, notification_channels="email"), 422,
             "notification_channels"),
            ("POST", "/api/v1/alert-rules", dict(RULE, for_seconds=-1), 422, "for_seconds"),
            ("POST", "/api/v1/alert-rules", dict(RULE, escalation_policy_id=999999), 422,
             "escalation_policy_id"),
            ("POST", "/api/v1/alert-rules", {"name": "x"}, 422, "metric"),
        ]
        for method, path, body, want, field in cases:
            with self.subTest(method=method, path=path, body=body):
                code, doc, _ = env.call(method, path, body)
                self.assertEqual(code, want, doc)
                self.assertEqual(doc["error"]["field"], field, doc)
                self.assertTrue(doc["error"]["message"])

    def test_bodies_that_are_not_json_objects(self):
        env = self.env
        deep = '{"name":"d","source_config":' + "[" * 50000 + "]" * 50000 + "}"
        for raw in ("{not json", "[1,2]", "\"text\"", "{\"name\":\"a\"} trailing", deep,
                    "\xff\xfe{}"):
            with self.subTest(raw=raw):
                code, doc, _ = env.call("POST", "/api/v1/pipelines", raw=raw)
                self.assertEqual(code, 400, doc)
                self.assertEqual(doc["error"]["code"], "bad_json")
        code, doc, _ = env.call("POST", "/api/v1/pipelines",
                                raw=json.dumps(dict(PIPELINE, source_config={"k": "a\u0000b"})))
        self.assertEqual((code, doc["error"]["code"]), (422, "invalid_value"))
        code, _, _ = env.call("POST", "/api/v1/pipelines", raw="{}",
                              headers={"Content-Type": "text/plain"})
        self.assertEqual(code, 415)
        code, _, _ = env.call("POST", "/api/v1/pipelines",
                              raw=json.dumps(dict(PIPELINE, description="d" * 300000)))
        self.assertEqual(code, 413)

    # ---- logs ----

    def test_log_search_across_two_months(self):
        env = self.env
        env.db.sql("SELECT aggd_create_month_partition('system_logs', DATE '2024-01-15');"
                   "SELECT aggd_create_month_partition('system_logs', DATE '2024-02-15')")
        # 40 rows either side of the month boundary, several sharing a timestamp
        env.db.sql(
            "INSERT INTO system_logs (level, message, module, user_id, created_at) "
            "SELECT CASE WHEN g % 3 = 0 THEN 'ERROR' ELSE 'INFO' END,"
            "       CASE WHEN g % 10 = 0 THEN 'done 50% of it' ELSE 'row ' || g || ' 500x' END,"
            f"      'search', {env.ids['viewer']},"
            "       TIMESTAMP '2024-02-01 00:00:00' + (g / 3 - 7) * interval '1 hour'"
            "  FROM generate_series(1, 40) g")
        window = "since=2024-01-01T00:00:00Z&until=2024-03-01T00:00:00Z&module=search"
        items, pages = apikit.all_pages(env, "/api/v1/logs?" + window, 7, who="viewer")
        self.assertEqual(len(items), 40)
        self.assertEqual(len({i["id"] for i in items}), 40)
        self.assertGreaterEqual(pages, 6)
        keys = [(i["created_at"], i["id"]) for i in items]
        self.assertEqual(keys, sorted(keys, reverse=True))
        self.assertTrue(any(i["created_at"].startswith("2024-01") for i in items))
        self.assertTrue(any(i["created_at"].startswith("2024-02") for i in items))
        errors, _ = apikit.all_pages(env, "/api/v1/logs?level=ERROR&" + window, 5)
        self.assertEqual(len(errors), 13)
        pct, _ = apikit.all_pages(env, "/api/v1/logs?q=50%25&" + window, 50)
        self.assertEqual(sorted(i["message"] for i in pct), ["done 50% of it"] * 4)
        upper, _ = apikit.all_pages(env, "/api/v1/logs?q=DONE&" + window, 50)
        self.assertEqual(len(upper), 4)
        mine, _ = apikit.all_pages(env, f"/api/v1/logs?user_id={env.ids['viewer']}&" + window,
                                   50)
        self.assertEqual(len(mine), 40)
        self.assertEqual(env.ok("GET", "/api/v1/logs?module=search")["items"], [],
                         "the default window is the last 24 hours")
        for bad, field in (("since=yesterday", "since"), ("level=LOUD", "level"),
                           ("user_id=x", "user_id"), ("cursor=bm9wZQ", "cursor"),
                           ("since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z", "until"),
                           ("colour=red", "colour")):
            code, doc, _ = env.call("GET", "/api/v1/logs?" + bad)
            self.assertEqual((code, doc["error"]["field"]), (400, field), bad)

    def test_partitions_lists_attached_and_archived_months(self):
        env = self.env
        # a month ahead (maintenance archives past months, not future ones) and archived
        # months in state dropped (maintenance resumes the others)
        ahead = "date_trunc('month', now() AT TIME ZONE 'UTC' + interval '6 months')"
        month, start, end = env.db.sql(
            f"SELECT to_char({ahead}, 'YYYY-MM') || ' ' || to_char({ahead}, 'YYYY-MM-DD')"
            f" || ' ' || to_char({ahead} + interval '1 month', 'YYYY-MM-DD')").split()
        env.db.sql(f"SELECT aggd_create_month_partition('system_logs', DATE '{start}');"
                   "INSERT INTO system_logs (level, message, created_at) VALUES"
                   f" ('INFO', 'a', TIMESTAMP '{start} 00:00:01'),"
                   f" ('INFO', 'b', TIMESTAMP '{start} 00:00:02');"
                   "INSERT INTO partition_archives (table_name, month, state, row_count,"
                   " compressed_bytes) VALUES ('alerts', DATE '2023-05-01', 'dropped', 7, 1234),"
                   " ('alerts', DATE '2023-06-01', 'dropped', NULL, NULL)")
        code, doc, _ = env.call("GET", "/api/v1/partitions")
        self.assertEqual(code, 200, doc)
        keys = ["table", "month", "where", "archive_state", "rows", "bytes", "range"]
        for item in doc["items"]:
            self.assertEqual(list(item), keys)
        got = {(i["table"], i["month"]): i for i in doc["items"]}
        attached = got[("system_logs", month)]
        self.assertIsInstance(attached["bytes"], int)
        self.assertEqual(dict(attached, bytes=0), {
            "table": "system_logs", "month": month, "where": "attached",
            "archive_state": None, "rows": 2, "bytes": 0,
            "range": f"'{start} 00:00:00' .. '{end} 00:00:00'"})
        self.assertEqual(got[("alerts", "2023-05")], {
            "table": "alerts", "month": "2023-05", "where": "archived",
            "archive_state": "dropped", "rows": 7, "bytes": 1234, "range": None})
        self.assertEqual(got[("alerts", "2023-06")], {
            "table": "alerts", "month": "2023-06", "where": "archived",
            "archive_state": "dropped", "rows": None, "bytes": None, "range": None})
        months = [(i["table"], i["month"]) for i in doc["items"]]
        self.assertEqual(months, sorted(months))
        code, doc, _ = env.call("GET", "/api/v1/partitions", who="editor")
        self.assertEqual(code, 403, doc)

    def test_run_logs_are_those_of_its_correlation_id(self):
        env = self.env
        p = self.new_pipeline(name="run logs")["id"]
        run = env.ok("POST", f"/api/v1/pipelines/{p}/runs", {}, status=201)["id"]
        env.db.sql("SELECT aggd_create_month_partition('system_logs', DATE '2024-03-15');"
                   "INSERT INTO system_logs (level, message, correlation_id, created_at) VALUES "
                   f"('INFO', 'mine', '{run}', TIMESTAMP '2024-03-02 10:00'),"
                   f"('INFO', 'not mine', '{run}0', TIMESTAMP '2024-03-02 10:00')")
        got = env.ok("GET", f"/api/v1/pipelines/{p}/runs/{run}/logs")["items"]
        self.assertEqual([i["message"] for i in got], ["mine"])

    def test_tail_streams_events_sent_after_connecting(self):
        env = self.env
        conn = http.client.HTTPConnection("127.0.0.1", env.aggd.http_port, timeout=10)
        conn.request("GET", "/api/v1/logs/tail?module=tailed&level=ERROR",
                     headers={"Authorization": "Bearer " + env.tokens["viewer"]})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.getheader("Content-Type"), "text/event-stream")
        self.assertEqual(resp.readline().strip(), b": connected")
        lines = [{"level": "ERROR", "module": "tailed", "message": f"t{i}"} for i in range(3)]
        lines.insert(1, {"level": "INFO", "module": "tailed", "message": "quiet"})
        lines.insert(2, {"level": "ERROR", "module": "other", "message": "elsewhere"})
        body = "\n".join(json.dumps(x) for x in lines)
        code, doc, _ = env.call("POST", "/v1/logs", raw=body, who="ingest",
                                headers={"Content-Type": "application/x-ndjson"})
        self.assertEqual(code, 202, doc)
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            line = resp.readline().decode()
            if line.startswith("data: "):
                got.append(json.loads(line[6:]))
        self.__class__.open_tail = conn  # still streaming when aggd stops
        self.assertEqual([g["message"] for g in got], ["t0", "t1", "t2"])
        self.assertTrue(all(g["level"] == "ERROR" and g["module"] == "tailed" for g in got))
        code, doc, _ = env.call("GET", "/api/v1/logs/tail?limit=5")
        self.assertEqual((code, doc["error"]["field"]), (400, "limit"))


    def test_tail_tells_a_slow_client_what_it_lost(self):
        env = self.env
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", env.aggd.http_port))
        sock.sendall(b"GET /api/v1/logs/tail?module=flood HTTP/1.1\r\nHost: aggd\r\n"
                     b"Authorization: Bearer " + env.tokens["viewer"].encode() + b"\r\n\r\n")
        seen = b""
        while b": connected" not in seen:
            seen += sock.recv(4096)
        sent = 0
        for _ in range(10):  # ~10 MB of events that this client does not read
            lines = [json.dumps({"module": "flood", "message": f"{sent + i} " + "x" * 1000})
                     for i in range(1000)]
            code, doc, _ = env.call("POST", "/v1/logs", raw="\n".join(lines), who="ingest",
                                    headers={"Content-Type": "application/x-ndjson"})
            self.assertEqual(code, 202, doc)
            sent += 1000

        def drain():
            data = b""
            sock.settimeout(1.0)
            try:
                while True:
                    part = sock.recv(1 << 20)
                    if not part:
                        break
                    data += part
            except socket.timeout:
                pass
            return data

        data = seen + drain()
        # one more event, now that the client keeps up: the drop notice comes before it
        code, _, _ = env.call("POST", "/v1/logs", raw=json.dumps(
            {"module": "flood", "message": "last"}), who="ingest")
        self.assertEqual(code, 202)
        data += drain()
        sock.close()
        text = data.decode("utf-8", "replace")
        delivered = text.count("event: log\n")
        dropped = sum(int(n) for n in re.findall(r'event: dropped\ndata: \{"count":(\d+)\}',
                                                   text))
        self.assertGreater(dropped, 0, "the flood should have overrun the client")
        self.assertGreater(delivered, 0)
        self.assertEqual(delivered + dropped, sent + 1)
        self.assertIn('"message":"last"', text)


if __name__ == "__main__":
    harness.main()
