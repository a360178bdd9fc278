"""A newcomer's first ten minutes: scripts/run.sh on a fresh checkout starts its own
PostgreSQL, creates an admin and two tokens in var/first-run.txt (mode 0600, not
printed), and README.md's block between the first-session markers then runs as it
stands in a second shell: the aggd CLI finds the database, HTTP ingest takes the
ingest token, and the events reach system_logs. A second start keeps the file.

The checkout is a temp directory holding copies of run.sh, pg.sh and deps.sh and
build/aggd (a link to the binary under test); run.sh runs with AGGD_SKIP_DEPS=1
and AGGD_SKIP_BUILD=1 and listeners on free ports, with no AGGD_* variable
inherited: everything the block needs comes from var/first-run.txt.
"""
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import unittest

import harness

SECRETS = ("ADMIN_PASSWORD", "API_TOKEN", "INGEST_TOKEN")


def readme_block():
    """The shell block between the first-session markers of README.md."""
    with open(os.path.join(harness.source_dir(), "README.md"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- first-session:begin -->\n```sh\n(.*?)```\n<!-- first-session:end -->",
                  text, re.S)
    assert m, "README.md has no ```sh block between the first-session markers"
    return m.group(1)


def newcomer_env():
    """The caller's environment without aggd's configuration variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AGGD_")}


class FirstSession(unittest.TestCase):
    def setUp(self):
        harness.env_or_skip("AGGD_TEST_PG_SH")  # the server binaries are there
        self.bin = harness.aggd_bin()
        self.root = tempfile.mkdtemp(prefix="aggd-first.")
        # 755: as root, pg.sh runs the cluster as user aggd, which must reach var/pg.
        os.chmod(self.root, 0o755)
        os.mkdir(os.path.join(self.root, "scripts"))
        for name in ("run.sh", "pg.sh", "deps.sh"):
            shutil.copy2(os.path.join(harness.source_dir(), "scripts", name),
                         os.path.join(self.root, "scripts", name))
        os.mkdir(os.path.join(self.root, "build"))
        os.symlink(self.bin, os.path.join(self.root, "build", "aggd"))
        self.port = harness.free_port()
        self.proc = None
        self.log_path = os.path.join(self.root, "run.log")

    def tearDown(self):
        self.stop()
        subprocess.run([os.path.join(self.root, "scripts", "pg.sh"), "stop",
                        os.path.join(self.root, "var", "pg")], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def start(self):
        env = newcomer_env()
        env.update(AGGD_SKIP_DEPS="1", AGGD_SKIP_BUILD="1")
        log = open(self.log_path, "a", encoding="utf-8")
        self.proc = subprocess.Popen(
            [os.path.join(self.root, "scripts", "run.sh"),
             "--set", f"listen.http=127.0.0.1:{self.port}", "--set", "listen.syslog_udp=",
             "--set", "listen.syslog_tcp=", "--set", "listen.json_tcp="],
            cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"run.sh exited {self.proc.returncode}:\n{self.log()}")
            try:
                return harness.request(self.port, "GET", "/readyz", timeout=2)[0] == 200
            except OSError:
                return False
        # initdb and the first migrations on a loaded machine: generous.
        harness.wait_for(healthy, 180, interval=0.2, what="run.sh's aggd to be ready")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        # run.sh execs aggd serve: this is aggd, which exits 0 on SIGTERM.
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise
        self.assertEqual(rc, 0, self.log())

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def first_run(self):
        """The variables var/first-run.txt sets, read by a shell."""
        out = subprocess.run(
            ["bash", "-c", ". var/first-run.txt && env -0"], cwd=self.root,
            env={"PATH": os.environ["PATH"]}, capture_output=True, check=True)
        pairs = (item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
        got = dict(pairs)
        # Only exported variables reach env; read the others explicitly.
        for name in ("BASE_URL", "API", "ADMIN_EMAIL") + SECRETS:
            got[name] = subprocess.run(
                ["bash", "-c", f'. var/first-run.txt && printf %s "${name}"'],
                cwd=self.root, env={"PATH": os.environ["PATH"]}, capture_output=True,
                text=True, check=True).stdout
        return got

    def test_readme_block_runs_against_run_sh(self):
        self.start()
        path = os.path.join(self.root, "var", "first-run.txt")
        mode = stat.S_IMODE(os.stat(path).st_mode)
        self.assertEqual(mode, 0o600, f"{path} is mode {mode:o}")
        creds = self.first_run()
        db = creds.get("AGGD_DATABASE_URL")
        self.assertTrue(db, "first-run.txt exports no AGGD_DATABASE_URL")
        self.assertEqual(creds["API"], f"http://127.0.0.1:{self.port}/api/v1")
        for name in SECRETS:
            self.assertGreaterEqual(len(creds[name]), 20, name)
            self.assertNotIn(creds[name], self.log(), f"run.sh printed {name}")

        env = newcomer_env()
        env["HOME"] = self.root
        done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + readme_block()],
                              cwd=self.root, env=env, capture_output=True, text=True,
                              timeout=180)
        out = done.stdout + done.stderr
        self.assertEqual(done.returncode, 0, out)
        self.assertIn('"accepted":2', out)       # the ingest token was taken
        self.assertIn('"token":', out)           # the admin's password logs in
        self.assertRegex(out, r"created user \d+ ops@example.com \(editor\)")

        def landed():
            return harness.psql(db, "SELECT count(*) FROM system_logs WHERE message IN "
                                    "('payment timeout', 'payment ok')") == "2"
        harness.wait_for(landed, 60, interval=0.2, what="the block's events in system_logs")
        self.assertEqual(harness.psql(db, "SELECT name FROM pipelines"), "orders")
        self.assertEqual(harness.psql(db, "SELECT status FROM pipeline_runs"), "running")

        # A second start keeps the account and the tokens; nothing is created twice.
        with open(path, encoding="utf-8") as f:
            before = f.read()
        self.stop()
        self.start()
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), before)
        status, _, body = harness.request(
            self.port, "GET", "/api/v1/logs?level=ERROR&module=billing",
            headers={"Authorization": "Bearer " + creds["API_TOKEN"]})
        self.assertEqual(status, 200, body)
        self.assertIn("payment timeout", body)
        self.assertEqual(harness.psql(db, "SELECT count(*) FROM users"), "2")


if __name__ == "__main__":
    harness.main()
