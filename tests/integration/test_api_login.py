"""POST /api/v1/auth/login against the real binary: Argon2id, the bcrypt upgrade, wrong
passwords and unknown emails answered alike, and the per-email / per-address rate limit.
"""
import time
import unittest
import warnings

import apikit
import harness

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # an independent bcrypt: libxcrypt through Python


class Login(unittest.TestCase):
    def setUp(self):
        self.env = apikit.ApiEnv()

    def tearDown(self):
        self.env.close()

    def login(self, email, password, source=None):
        return self.env.login(email, password, source)

    def use(self, token, path="/api/v1/pipelines"):
        self.env.tokens["session"] = token
        return self.env.call("GET", path, who="session")[0]

    def test_argon2id_login_gives_a_working_token(self):
        code, doc, _ = self.login("admin@example.com", apikit.PASSWORD)
        self.assertEqual(code, 200, doc)
        self.assertTrue(doc["token"].startswith("aggd_"))
        self.assertRegex(doc["expires_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual((doc["user"]["email"], doc["user"]["role"]),
                         ("admin@example.com", "admin"))
        self.assertNotIn("hashed_password", doc["user"])
        self.assertEqual(self.use(doc["token"], "/api/v1/users"), 200)
        days = self.env.db.sql("SELECT round(extract(epoch FROM expires_at - created_at) / 86400)"
                               " FROM api_tokens WHERE name = 'login'")
        self.assertEqual(days, "30")
        self.assertNotIn(apikit.PASSWORD, self.env.aggd.output())
        self.assertNotIn(doc["token"], self.env.aggd.output())

    def test_bcrypt_hash_is_upgraded_to_argon2id(self):
        hashed = crypt.crypt("legacy-pw", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))
        self.assertTrue(hashed.startswith("$2b$"), hashed)
        self.env.add_user("old@example.com", "viewer", hashed=hashed)
        code, doc, _ = self.login("old@example.com", "legacy-pw")
        self.assertEqual(code, 200, doc)
        stored = self.env.db.sql("SELECT hashed_password FROM users "
                                 "WHERE email = 'old@example.com'")
        self.assertTrue(stored.startswith("$argon2id$"), stored)
        self.assertEqual(self.login("old@example.com", "legacy-pw")[0], 200)
        self.assertEqual(self.login("old@example.com", "wrong")[0], 401)

    def test_wrong_password_and_unknown_email_look_alike(self):
        self.login("nobody@example.com", "warm-up")  # the dummy hash is made once
        t0 = time.monotonic()
        wrong = self.login("admin@example.com", "not it")
        t1 = time.monotonic()
        unknown = self.login("nobody@example.com", "not it")
        t2 = time.monotonic()
        self.assertEqual((wrong[0], unknown[0]), (401, 401))
        self.assertEqual(wrong[1], unknown[1])
        self.assertEqual(wrong[1]["error"]["code"], "invalid_credentials")
        # both verify one Argon2id hash: neither answers much faster than the other
        self.assertGreater(t2 - t1, (t1 - t0) * 0.5)
        self.assertGreater(t1 - t0, (t2 - t1) * 0.5)

    def test_admin_sets_a_new_password(self):
        uid = self.env.ids["editor"]
        doc = self.env.ok("PATCH", f"/api/v1/users/{uid}", {"password": "a new one!"})
        self.assertNotIn("password", doc)
        stored = self.env.db.sql(f"SELECT hashed_password FROM users WHERE id = {uid}")
        self.assertTrue(stored.startswith("$argon2id$"))
        self.assertEqual(self.login("editor@example.com", "a new one!")[0], 200)
        self.assertEqual(self.login("editor@example.com", apikit.PASSWORD)[0], 401)

    def test_inactive_user_cannot_log_in(self):
        code, doc, _ = self.login("gone@example.com", apikit.PASSWORD)
        self.assertEqual((code, doc["error"]["code"]), (401, "invalid_credentials"))

    def test_bad_login_bodies(self):
        for body, field in (({"email": "a@example.com"}, "password"),
                            ({"password": "x"}, "email"),
                            ({"email": 1, "password": "x"}, "email"),
                            ({"email": "a@example.com", "password": "x", "otp": 1}, "otp")):
            code, doc, _ = self.env.call("POST", "/api/v1/auth/login", body, who=None)
            self.assertIn(code, (400, 422), body)
            self.assertEqual(doc["error"]["field"], field)

    def test_failures_are_rate_limited_per_email_and_per_address(self):
        for _ in range(5):
            self.assertEqual(self.login("admin@example.com", "guess")[0], 401)
        code, doc, headers = self.login("admin@example.com", apikit.PASSWORD)
        self.assertEqual((code, doc["error"]["code"]), (429, "too_many_attempts"))
        self.assertGreater(int(headers["retry-after"]), 0)
        # the same email from another address: still limited
        self.assertEqual(self.login("admin@example.com", apikit.PASSWORD, "127.0.0.2")[0], 429)
        # another email from the same address: the address is limited
        self.assertEqual(self.login("editor@example.com", apikit.PASSWORD)[0], 429)
        # another email from another address: fine
        self.assertEqual(self.login("editor@example.com", apikit.PASSWORD, "127.0.0.3")[0],
                         200)


if __name__ == "__main__":
    harness.main()
