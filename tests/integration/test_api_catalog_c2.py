"""Pipeline templates and transformation functions over the JSON API, against the real
binary and PostgreSQL: every route, who sees and changes which rows (public, built-in,
own, admin), the tags filter, instantiating a template into a pipeline (overrides,
validation, use_count under concurrent calls), function names and parameter schemas,
and use_count counted from transformations' config.function.
"""
import json
import threading
import unittest

import apikit
import harness

TEMPLATES = "/api/v1/pipeline-templates"
FUNCTIONS = "/api/v1/transformation-functions"
CONFIG = {"name": "orders to pg", "description": "nightly", "source_config": {"kind": "s3"},
          "destination_config": {"kind": "pg"}, "schedule": "daily"}


class Catalog(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = env = apikit.ApiEnv()
        env.ids["editor2"] = env.add_user("editor2@example.com", "editor")
        env.tokens["editor2"] = env.add_token(env.ids["editor2"])

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def template(self, who="editor", **over):
        body = {"name": "t", "category": "etl", "template_config": CONFIG}
        body.update(over)
        return self.env.ok("POST", TEMPLATES, body, who=who, status=201)

    def function(self, name, who="editor", **over):
        body = {"name": name, "display_name": name.title(), "category": "map",
                "function_type": "python", "function_code": "def f(x):\n    return x\n"}
        body.update(over)
        return self.env.ok("POST", FUNCTIONS, body, who=who, status=201)

    def error(self, method, path, body, who, status, field):
        code, doc, _ = self.env.call(method, path, body, who=who)
        self.assertEqual(code, status, doc)
        self.assertEqual(doc["error"]["field"], field, doc)
        return doc["error"]

    def use_count(self, table, row):
        return self.env.scalar(f"SELECT use_count FROM {table} WHERE id = {row}")

    def ids(self, path, who):
        return {t["id"] for t in apikit.all_pages(self.env, path, 200, who=who)[0]}

    # ---- templates ----

    def test_template_create_get_patch_list_delete(self):
        env = self.env
        t = self.template(name="crud", description="d", tags=["nightly", "s3"], is_public=True)
        self.assertEqual((t["owner_id"], t["use_count"], t["is_builtin"], t["is_public"],
                          t["tags"], t["template_config"], t["category"]),
                         (env.ids["editor"], 0, False, True, ["nightly", "s3"], CONFIG, "etl"))
        self.assertEqual(env.ok("GET", f"{TEMPLATES}/{t['id']}", who="viewer"), t)
        changed = env.ok("PATCH", f"{TEMPLATES}/{t['id']}",
                         {"category": "streaming", "tags": None, "description": None},
                         who="editor")
        self.assertEqual((changed["category"], changed["tags"], changed["description"]),
                         ("streaming", None, None))
        listed = env.ok("GET", f"{TEMPLATES}?category=streaming&is_public=true",
                        who="viewer")["items"]
        self.assertIn(t["id"], [x["id"] for x in listed])
        self.assertTrue(all(x["category"] == "streaming" for x in listed))
        self.assertEqual(env.call("DELETE", f"{TEMPLATES}/{t['id']}", who="editor")[0], 204)
        self.assertEqual(env.call("GET", f"{TEMPLATES}/{t['id']}")[0], 404)
        self.assertEqual(env.scalar(f"SELECT count(*) FROM pipeline_templates "
                                    f"WHERE id = {t['id']}"), 0)  # hard delete
        self.assertEqual(env.call("DELETE", f"{TEMPLATES}/{t['id']}")[0], 404)

    def test_template_bodies_are_strict(self):
        ok = {"name": "v", "category": "etl", "template_config": {}}
        cases = [
            ({"category": "etl", "template_config": {}}, 422, "name"),
            (dict(ok, name=""), 422, "name"),
            (dict(ok, name="n" * 256), 422, "name"),
            (dict(ok, category="batch"), 422, "category"),
            ({"name": "v", "template_config": {}}, 422, "category"),
            (dict(ok, template_config=[1]), 422, "template_config"),
            ({"name": "v", "category": "etl"}, 422, "template_config"),
            (dict(ok, tags="a"), 422, "tags"),
            (dict(ok, tags=[1]), 422, "tags"),
            (dict(ok, tags=["t" * 101]), 422, "tags"),
            (dict(ok, tags=[""]), 422, "tags"),
            (dict(ok, tags=[f"t{i}" for i in range(33)]), 422, "tags"),
            (dict(ok, is_public="yes"), 422, "is_public"),
            (dict(ok, use_count=5), 400, "use_count"),
            (dict(ok, owner_id=1), 400, "owner_id"),
            (dict(ok, id=1), 400, "id"),
            (dict(ok, bogus=1), 400, "bogus"),
        ]
        for body, status, field in cases:
            with self.subTest(body=body):
                self.error("POST", TEMPLATES, body, "editor", status, field)
        self.assertEqual(self.template(tags=[f"t{i}" for i in range(32)])["tags"][-1], "t31")
        t = self.template()
        self.error("PATCH", f"{TEMPLATES}/{t['id']}", {"use_count": 9}, "editor", 400,
                   "use_count")
        self.error("PATCH", f"{TEMPLATES}/{t['id']}", {"category": "x"}, "editor", 422,
                   "category")
        self.error("GET", f"{TEMPLATES}?tags={'x' * 101}", None, "viewer", 400, "tags")
        self.error("GET", f"{TEMPLATES}?use_count=1", None, "viewer", 400, "use_count")
        self.error("GET", f"{TEMPLATES}?is_builtin=maybe", None, "viewer", 400, "is_builtin")
        many = "&".join(f"tags=t{i}" for i in range(21))
        self.error("GET", f"{TEMPLATES}?{many}", None, "viewer", 400, "tags")

    def check_visibility(self, path, make):
        """Who reads and who changes the rows of <path>, made by make(who, **fields)."""
        env = self.env
        rows = {
            "admin_private": make("admin"),
            "admin_public": make("admin", is_public=True),
            "builtin": make("admin", is_builtin=True),
            "editor_private": make("editor"),
            "editor_public": make("editor", is_public=True),
        }
        ids = {k: v["id"] for k, v in rows.items()}
        readable = {
            "viewer": {"admin_public", "builtin", "editor_public"},
            "editor": {"admin_public", "builtin", "editor_private", "editor_public"},
            "editor2": {"admin_public", "builtin", "editor_public"},
            "admin": set(ids),
        }
        for who, can in readable.items():
            listed = self.ids(path, who)
            for name, row in ids.items():
                with self.subTest(who=who, row=name):
                    self.assertEqual(row in listed, name in can)
                    code = env.call("GET", f"{path}/{row}", who=who)[0]
                    self.assertEqual(code, 200 if name in can else 404)
        # writes: own non-built-in rows, or an admin; readable others 403, hidden 404
        writable = {"editor": {"editor_private", "editor_public"},
                    "editor2": set(), "admin": set(ids)}
        for who, can in writable.items():
            for name, row in ids.items():
                with self.subTest(who=who, write=name):
                    want = 200 if name in can else 403 if name in readable[who] else 404
                    code, doc, _ = env.call("PATCH", f"{path}/{row}",
                                            {"description": who}, who=who)
                    self.assertEqual(code, want, doc)
        for who in ("editor", "editor2"):
            code, _, _ = env.call("DELETE", f"{path}/{ids['builtin']}", who=who)
            self.assertEqual(code, 403)
        self.assertEqual(env.call("DELETE", f"{path}/{ids['admin_private']}",
                                  who="editor")[0], 404)
        self.assertEqual(env.call("DELETE", f"{path}/{ids['editor_public']}",
                                  who="editor2")[0], 403)
        self.assertEqual(env.call("DELETE", f"{path}/{ids['builtin']}", who="admin")[0], 204)
        self.assertEqual(env.call("DELETE", f"{path}/{ids['editor_private']}",
                                  who="editor")[0], 204)
        # only an admin makes a row built-in
        self.assertEqual(self.error("PATCH", f"{path}/{ids['editor_public']}",
                                    {"is_builtin": True}, "editor", 403,
                                    "is_builtin")["code"], "forbidden")
        self.assertEqual(env.ok("PATCH", f"{path}/{ids['editor_public']}",
                                {"is_builtin": False}, who="editor")["is_builtin"], False)
        made = env.ok("PATCH", f"{path}/{ids['editor_public']}", {"is_builtin": True})
        self.assertTrue(made["is_builtin"])
        self.assertEqual(env.call("PATCH", f"{path}/{ids['editor_public']}",
                                  {"description": "x"}, who="editor")[0], 403)
        self.assertEqual(env.call("GET", f"{path}/{ids['editor_public']}",
                                  who="viewer")[0], 200)

    def test_template_visibility_and_builtin_rules(self):
        self.check_visibility(TEMPLATES, lambda who, **kw: self.template(who, **kw))
        body = {"name": "b", "category": "etl", "template_config": {}, "is_builtin": True}
        self.error("POST", TEMPLATES, body, "editor", 403, "is_builtin")
        self.error("POST", TEMPLATES, dict(body, is_builtin=False), "viewer", 403, None)

    def test_tags_filter_needs_every_tag_given(self):
        a = self.template(tags=["tf-a", "tf-b"], is_public=True)["id"]
        b = self.template(tags=["tf-a"], is_public=True)["id"]
        c = self.template(tags=["tf-b", "other"], is_public=True)["id"]
        self.template(tags=None, is_public=True)
        self.assertEqual(self.ids(f"{TEMPLATES}?tags=tf-a", "viewer"), {a, b})
        self.assertEqual(self.ids(f"{TEMPLATES}?tags=tf-b", "viewer"), {a, c})
        self.assertEqual(self.ids(f"{TEMPLATES}?tags=tf-a&tags=tf-b", "viewer"), {a})
        self.assertEqual(self.ids(f"{TEMPLATES}?tags=tf-b&tags=other&tags=tf-a", "viewer"),
                         set())
        self.assertEqual(self.ids(f"{TEMPLATES}?tags=tf-a&category=etl&is_public=true",
                                  "viewer"), {a, b})
        # paging through a tag filter keeps it
        items, pages = apikit.all_pages(self.env, f"{TEMPLATES}?tags=tf-a", 1, who="viewer")
        self.assertEqual(({t["id"] for t in items}, pages), ({a, b}, 2))

    # ---- instantiate ----

    def test_instantiate_makes_the_callers_pipeline_with_overrides(self):
        env = self.env
        t = self.template(who="admin", is_public=True)
        path = f"{TEMPLATES}/{t['id']}/instantiate"
        p = env.ok("POST", path, None, who="editor", status=201)
        self.assertEqual((p["name"], p["source_config"], p["destination_config"],
                          p["schedule"], p["description"], p["owner_id"], p["is_active"]),
                         ("orders to pg", {"kind": "s3"}, {"kind": "pg"}, "daily", "nightly",
                          env.ids["editor"], True))
        self.assertEqual(env.ok("GET", f"/api/v1/pipelines/{p['id']}"), p)
        # top-level keys of the body replace the template's whole
        over = {"name": "mine", "source_config": {"bucket": "b"}, "schedule": None,
                "is_active": False}
        q = env.ok("POST", path, over, who="editor2", status=201)
        self.assertEqual((q["name"], q["source_config"], q["destination_config"],
                          q["schedule"], q["is_active"], q["owner_id"]),
                         ("mine", {"bucket": "b"}, {"kind": "pg"}, None, False,
                          env.ids["editor2"]))
        self.assertEqual(self.use_count("pipeline_templates", t["id"]), 2)
        self.assertEqual(env.ok("GET", f"{TEMPLATES}/{t['id']}")["template_config"], CONFIG)
        # admins instantiate anything, built-in templates are anyone's
        b = self.template(who="admin", is_builtin=True)
        env.ok("POST", f"{TEMPLATES}/{b['id']}/instantiate", {}, who="editor", status=201)
        own = self.template(who="editor")
        env.ok("POST", f"{TEMPLATES}/{own['id']}/instantiate", {}, who="admin", status=201)

    def test_instantiate_refusals(self):
        env = self.env

        def refused(template, body, status, field, who="editor"):
            before = env.scalar("SELECT count(*) FROM pipelines")
            uses = self.use_count("pipeline_templates", template)
            err = self.error("POST", f"{TEMPLATES}/{template}/instantiate", body, who, status,
                             field)
            self.assertEqual(env.scalar("SELECT count(*) FROM pipelines"), before)
            self.assertEqual(self.use_count("pipeline_templates", template), uses)
            return err

        nameless = {k: v for k, v in CONFIG.items() if k != "name"}
        t = self.template(template_config=nameless, is_public=True)["id"]
        err = refused(t, {}, 422, "name")
        self.assertEqual((err["code"], err["message"]),
                         ("missing", "name is required: give it in the body"))
        env.ok("POST", f"{TEMPLATES}/{t}/instantiate", {"name": "named"}, status=201)
        # the template's own mistakes are 422 naming the pipeline field
        bad = self.template(template_config=dict(CONFIG, source_config="s3"))["id"]
        err = refused(bad, {}, 422, "source_config")
        self.assertIn("template", err["message"])
        env.ok("POST", f"{TEMPLATES}/{bad}/instantiate", {"source_config": {}}, status=201)
        self.assertEqual(refused(self.template(template_config=dict(CONFIG, owner_id=3))["id"],
                                 {}, 422, "owner_id")["code"], "read_only")
        refused(self.template(template_config=dict(CONFIG, speed=3))["id"], {}, 422, "speed")
        refused(self.template(template_config=dict(CONFIG, name="n" * 256))["id"], {}, 422,
                "name")
        # the body's mistakes are the body's, as for POST pipelines
        refused(t, {"name": "x", "bogus": 1}, 400, "bogus")
        refused(t, {"name": 5}, 422, "name")
        refused(t, {"name": None}, 422, "name")
        refused(t, {"name": ""}, 422, "name")
        refused(t, {"name": "x", "owner_id": 1}, 400, "owner_id")
        code, doc, _ = env.call("POST", f"{TEMPLATES}/{t}/instantiate", raw="[1]",
                                who="editor")
        self.assertEqual((code, doc["error"]["code"]), (400, "bad_json"))
        # templates the caller cannot see are missing
        hidden = self.template(who="admin")["id"]
        refused(hidden, {"name": "x"}, 404, None)
        refused(hidden, {"name": "x"}, 403, None, who="viewer")
        refused(t, {"name": "x"}, 403, None, who="viewer")
        self.error("POST", f"{TEMPLATES}/999999/instantiate", {}, "editor", 404, None)

    def test_instantiate_counts_every_concurrent_use(self):
        env = self.env
        t = self.template(who="admin", is_public=True)["id"]
        codes = []

        def one(i):
            code, doc, _ = env.call("POST", f"{TEMPLATES}/{t}/instantiate",
                                    {"name": f"concurrent {i}"}, who="editor")
            codes.append((code, doc))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual([c for c, _ in codes], [201] * 20, codes)
        self.assertEqual(self.use_count("pipeline_templates", t), 20)
        self.assertEqual(env.scalar("SELECT count(*) FROM pipelines WHERE name LIKE "
                                    "'concurrent %'"), 20)

    # ---- functions ----

    def test_function_create_get_patch_list_delete(self):
        env = self.env
        schema = {"type": "object", "properties": {"field": {"type": "string"},
                                                   "n": {"type": ["integer", "null"]}},
                  "required": ["field"]}
        f = self.function("crud_fn", parameters=schema, example_usage="crud_fn(x)",
                          tags=["text"], category="filter", function_type="sql")
        self.assertEqual((f["name"], f["display_name"], f["parameters"], f["use_count"],
                          f["owner_id"], f["tags"], f["is_public"]),
                         ("crud_fn", "Crud_Fn", schema, 0, env.ids["editor"], ["text"], False))
        self.assertEqual(env.ok("GET", f"{FUNCTIONS}/{f['id']}", who="editor"), f)
        changed = env.ok("PATCH", f"{FUNCTIONS}/{f['id']}",
                         {"parameters": None, "is_public": True, "function_code": "SELECT 1"},
                         who="editor")
        self.assertEqual((changed["parameters"], changed["function_code"]),
                         (None, "SELECT 1"))
        for q in ("name=crud_fn", "category=filter&function_type=sql", "tags=text"):
            self.assertIn(f["id"], self.ids(f"{FUNCTIONS}?{q}", "viewer"), q)
        self.assertNotIn(f["id"], self.ids(f"{FUNCTIONS}?function_type=python", "viewer"))
        self.assertEqual(env.call("DELETE", f"{FUNCTIONS}/{f['id']}", who="editor")[0], 204)
        self.assertEqual(env.scalar(f"SELECT count(*) FROM transformation_functions "
                                    f"WHERE id = {f['id']}"), 0)
        self.function("crud_fn")  # the name is free again

    def test_function_names_are_unique_code_identifiers(self):
        for name in ("1abc", "a-b", "a b", "", "naïve", "a.b", "x" * 256):
            with self.subTest(name=name):
                self.error("POST", FUNCTIONS, {"name": name, "display_name": "d",
                                               "category": "map", "function_type": "sql",
                                               "function_code": "c"}, "editor", 422, "name")
        for name in ("_", "_x1", "Abc_9", "x" * 255):
            self.function(name)
        err = self.error("POST", FUNCTIONS, {"name": "Abc_9", "display_name": "d",
                                             "category": "map", "function_type": "sql",
                                             "function_code": "c"}, "admin", 409, "name")
        self.assertEqual(err["message"], "name already exists")
        f = self.function("fixed_name")
        self.assertEqual(self.error("PATCH", f"{FUNCTIONS}/{f['id']}", {"name": "other"},
                                    "editor", 400, "name")["code"], "read_only")

    def test_function_bodies_are_strict(self):
        ok = {"name": "strict_fn", "display_name": "S", "category": "map",
              "function_type": "python", "function_code": "x"}
        cases = [
            (dict(ok, category="reduce"), 422, "category"),
            (dict(ok, function_type="lua"), 422, "function_type"),
            (dict(ok, function_code=""), 422, "function_code"),
            (dict(ok, function_code="  \n"), 422, "function_code"),
            ({k: v for k, v in ok.items() if k != "function_code"}, 422, "function_code"),
            ({k: v for k, v in ok.items() if k != "display_name"}, 422, "display_name"),
            ({k: v for k, v in ok.items() if k != "function_type"}, 422, "function_type"),
            (dict(ok, display_name="d" * 256), 422, "display_name"),
            (dict(ok, parameters=[]), 422, "parameters"),
            (dict(ok, use_count=0), 400, "use_count"),
            (dict(ok, extra=0), 400, "extra"),
        ]
        for body, status, field in cases:
            with self.subTest(body=body):
                self.error("POST", FUNCTIONS, body, "editor", status, field)

    def test_function_parameters_must_be_a_json_schema(self):
        good = [{}, {"type": "object"}, {"type": ["string", "null"]},
                {"properties": {}}, {"properties": {"a": {}}, "required": []},
                {"type": "object", "properties": {"a": {"type": "object", "properties": {
                    "b": {"type": "array"}}, "required": ["b"]}}, "required": ["a"]},
                {"title": "free keywords pass", "additionalProperties": False}]
        for i, schema in enumerate(good):
            with self.subTest(good=schema):
                self.assertEqual(self.function(f"schema_ok_{i}", parameters=schema)
                                 ["parameters"], schema)
        bad = [({"type": "str"}, "parameters.type"),
               ({"type": 1}, "parameters.type"),
               ({"type": []}, "parameters.type"),
               ({"type": ["string", "text"]}, "parameters.type"),
               ({"properties": []}, "parameters.properties"),
               ({"properties": {"a": 1}}, "parameters.properties.a"),
               ({"properties": {"a": {"type": "float"}}}, "parameters.properties.a.type"),
               ({"properties": {"a": {"properties": {"b": {"required": ["c"]}}}}},
                "parameters.properties.a.properties.b.required"),
               ({"required": "a"}, "parameters.required"),
               ({"required": [1]}, "parameters.required"),
               ({"required": ["a"]}, "parameters.required"),
               ({"properties": {"a": {}}, "required": ["a", "b"]}, "parameters.required")]
        for schema, where in bad:
            with self.subTest(bad=schema):
                err = self.error("POST", FUNCTIONS, {"name": "schema_bad",
                                                     "display_name": "d", "category": "map",
                                                     "function_type": "sql",
                                                     "function_code": "c",
                                                     "parameters": schema}, "editor", 422,
                                 "parameters")
                self.assertTrue(err["message"].startswith(where + " "), err)
        f = self.function("schema_patch", parameters={"type": "object"})
        self.error("PATCH", f"{FUNCTIONS}/{f['id']}", {"parameters": {"type": "x"}}, "editor",
                   422, "parameters")

    def test_function_visibility_and_builtin_rules(self):
        n = iter(range(100))
        self.check_visibility(FUNCTIONS,
                              lambda who, **kw: self.function(f"vis_{next(n)}", who, **kw))

    # ---- use_count from transformations ----

    def test_transformations_count_the_function_they_name(self):
        env = self.env
        pub = self.function("uses_public", who="admin", is_public=True)["id"]
        mine = self.function("uses_mine", who="editor")["id"]
        hidden = self.function("uses_hidden", who="admin")["id"]
        builtin = self.function("uses_builtin", who="admin", is_builtin=True)["id"]
        fn = "transformation_functions"

        def make(config, who="editor"):
            return env.call("POST", "/api/v1/transformations",
                            {"name": "t", "transformation_type": "map", "config": config},
                            who=who)

        code, tr, _ = make({"function": "uses_public", "args": {"x": 1}})
        self.assertEqual(code, 201, tr)
        self.assertEqual(tr["config"], {"function": "uses_public", "args": {"x": 1}})
        self.assertEqual(self.use_count(fn, pub), 1)
        self.assertEqual(make({"function": "uses_mine"})[0], 201)
        self.assertEqual(make({"function": "uses_builtin"}, who="editor2")[0], 201)
        self.assertEqual((self.use_count(fn, mine), self.use_count(fn, builtin)), (1, 1))
        self.assertEqual(make({"other": 1})[0], 201)
        self.assertEqual(make(None)[0], 201)
        # unknown, invisible or not a name: 422 on config.function, nothing made
        before = env.scalar("SELECT count(*) FROM transformations")
        for config, who in (({"function": "no_such_fn"}, "editor"),
                            ({"function": "uses_hidden"}, "editor"),
                            ({"function": "uses_mine"}, "editor2"),
                            ({"function": 7}, "editor"), ({"function": None}, "editor"),
                            ({"function": ["uses_public"]}, "editor")):
            with self.subTest(config=config, who=who):
                code, doc, _ = make(config, who)
                self.assertEqual((code, doc["error"]["field"]), (422, "config.function"), doc)
        self.assertEqual(env.scalar("SELECT count(*) FROM transformations"), before)
        self.assertEqual(self.use_count(fn, hidden), 0)
        self.assertEqual(make({"function": "uses_hidden"}, who="admin")[0], 201)
        self.assertEqual(self.use_count(fn, hidden), 1)
        # an update counts only a change of function
        path = f"/api/v1/transformations/{tr['id']}"
        env.ok("PATCH", path, {"config": {"function": "uses_public", "args": {}}}, who="editor")
        env.ok("PATCH", path, {"name": "renamed"}, who="editor")
        self.assertEqual(self.use_count(fn, pub), 1)
        env.ok("PATCH", path, {"config": {"function": "uses_mine"}}, who="editor")
        self.assertEqual((self.use_count(fn, pub), self.use_count(fn, mine)), (1, 2))
        self.error("PATCH", path, {"config": {"function": "uses_hidden"}}, "editor", 422,
                   "config.function")
        self.assertEqual(env.ok("GET", path)["config"], {"function": "uses_mine"})
        env.ok("PATCH", path, {"config": None}, who="editor")
        env.ok("PATCH", path, {"config": {"function": "uses_public"}}, who="editor")
        self.assertEqual(self.use_count(fn, pub), 2)
        self.error("PATCH", "/api/v1/transformations/999999",
                   {"config": {"function": "uses_public"}}, "editor", 404, None)
        self.assertEqual(self.use_count(fn, pub), 2)
        self.assertEqual(self.use_count(fn, hidden), 1)
        self.assertEqual(json.loads(env.db.sql(
            f"SELECT config::text FROM transformations WHERE id = {tr['id']}")),
            {"function": "uses_public"})


if __name__ == "__main__":
    harness.main()
