"""docs/openapi.yaml agrees with api/routes.c and with what the running binary answers
(scripts/check-openapi.py), and the check does catch a drift.
"""
import os
import subprocess
import sys
import tempfile
import unittest

import apikit
import harness

SCRIPT = apikit.source_path("scripts", "check-openapi.py")


def check(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


class OpenApi(unittest.TestCase):
    def test_document_matches_the_route_table(self):
        out = check()
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_document_matches_the_running_server(self):
        env = apikit.ApiEnv()
        try:
            out = check("--server", f"http://127.0.0.1:{env.aggd.http_port}")
            self.assertEqual(out.returncode, 0, out.stderr)
        finally:
            env.close()

    def test_a_route_missing_from_the_document_is_reported(self):
        with open(apikit.source_path("docs", "openapi.yaml"), encoding="utf-8") as f:
            text = f.read()
        drifted = text.replace("  /api/v1/partitions:\n", "  /api/v1/partition-list:\n")
        self.assertNotEqual(drifted, text)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(drifted)
        try:
            out = check("--doc", f.name)
        finally:
            os.unlink(f.name)
        self.assertEqual(out.returncode, 1)
        self.assertIn("GET /api/v1/partitions: registered but not in", out.stderr)
        self.assertIn("GET /api/v1/partition-list: documented but not registered", out.stderr)


if __name__ == "__main__":
    harness.main()
