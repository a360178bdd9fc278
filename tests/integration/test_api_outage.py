"""The API while PostgreSQL is down: 503 with Retry-After (never 500), and back to
normal once it returns. Runs on a private cluster that it stops and starts.
"""
import unittest

import apikit
import harness


class Outage(unittest.TestCase):
    def setUp(self):
        self.cluster = harness.Cluster()
        try:
            self.env = apikit.ApiEnv(admin=self.cluster.admin)
        except BaseException:
            self.cluster.close()
            raise

    def tearDown(self):
        try:
            self.cluster.start()
        except Exception:
            pass
        try:
            self.env.close()
        finally:
            self.cluster.close()

    def test_database_outage_answers_503_then_recovers(self):
        env = self.env
        env.ok("GET", "/api/v1/pipelines", who="editor")  # the token is now cached
        self.cluster.stop()
        for method, path, body, who in (
                ("GET", "/api/v1/pipelines", None, "editor"),
                ("POST", "/api/v1/pipelines", {"name": "p", "source_config": {},
                                               "destination_config": {}}, "editor"),
                ("GET", "/api/v1/logs", None, "editor"),
                ("POST", "/api/v1/auth/login", {"email": "admin@example.com",
                                                "password": apikit.PASSWORD}, None),
                ("GET", "/api/v1/pipelines", None, "viewer")):  # a token not cached
            with self.subTest(method=method, path=path, who=who):
                code, doc, headers = env.call(method, path, body, who=who)
                self.assertEqual(code, 503, doc)
                self.assertEqual(doc["error"]["code"], "unavailable")
                self.assertIn("retry-after", headers)
        self.cluster.start()
        harness.wait_for(lambda: env.call("GET", "/api/v1/pipelines", who="editor")[0] == 200,
                         30, interval=0.5, what="the API after PostgreSQL returned")
        env.ok("POST", "/api/v1/pipelines", {"name": "after", "source_config": {},
                                             "destination_config": {}}, who="editor",
               status=201)


if __name__ == "__main__":
    harness.main()
