"""Small hostile inputs against the real binary: path ids that are not plain digits as
sent (an encoded NUL, encoded digits, signs, spaces) are refused on every {id} route
instead of being read as another id; `aggd config check` accepts a file that starts
with a UTF-8 BOM and never echoes control bytes from a bad file to the terminal."""
import os
import tempfile
import unittest

import apikit
import harness


class PathIds(unittest.TestCase):
    def setUp(self):
        self.env = apikit.ApiEnv()

    def tearDown(self):
        self.env.close()

    def test_ids_that_are_not_plain_digits_are_refused(self):
        uid = self.env.ids["editor"]
        self.assertEqual(self.env.call("GET", f"/api/v1/users/{uid}")[0], 200)
        pid = self.env.ok("POST", "/api/v1/pipelines", {"name": "p1", "source_config": {},
                                                        "destination_config": {}})["id"]
        self.assertEqual(self.env.call("GET", f"/api/v1/pipelines/{pid}")[0], 200)
        self.assertEqual(self.env.call("GET", f"/api/v1/pipelines/{pid}/versions")[0], 200)
        # each of these used to be read as uid or pid, or is no id at all
        for bad in (f"{uid}%005", f"{uid}%00", f"{pid}%00{pid}", f"{uid}%20", f"+{uid}",
                    f"{uid}x", f"%3{pid % 10}" if pid < 10 else f"{pid}%2F", "-1", "0",
                    "99999999999999999999"):
            for path in (f"/api/v1/users/{bad}", f"/api/v1/users/{bad}/preferences",
                         f"/api/v1/pipelines/{bad}", f"/api/v1/pipelines/{bad}/versions"):
                code, doc, _ = self.env.call("GET", path)
                self.assertIn(code, (400, 404), (path, code, doc))
                self.assertIn("error", doc, path)
        # a leading zero is still the same id
        self.assertEqual(self.env.call("GET", f"/api/v1/users/0{uid}")[0], 200)


class ConfigCheck(unittest.TestCase):
    def check(self, text):
        with tempfile.NamedTemporaryFile("wb", suffix=".conf", delete=False) as f:
            f.write(text)
        try:
            return harness.run_aggd("config", "check", "-c", f.name)
        finally:
            os.unlink(f.name)

    def test_a_file_starting_with_a_utf8_bom_is_accepted(self):
        out = self.check(b"\xef\xbb\xbflog.level = debug\nbatch.max_rows = 500\n")
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_errors_do_not_echo_control_bytes(self):
        out = self.check(b"log.level = info\n\x1b[2J\x1b]0;pwned\x07 = 1\n")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(r"\x1b[2J\x1b]0;pwned\x07", out.stderr)
        self.assertNotIn("\x1b", out.stderr + out.stdout)
        self.assertNotIn("\x07", out.stderr + out.stdout)
        out = self.check(b"log.level = \x1b[31mloud\n")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(r"\x1b[31mloud", out.stderr)
        self.assertNotIn("\x1b", out.stderr + out.stdout)


if __name__ == "__main__":
    harness.main()
