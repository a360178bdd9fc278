"""Shared helpers for aggd's integration tests: databases, private clusters, the
real aggd binary, HTTP, and a unittest runner that prints 'N passed, N failed'.

Environment (set by scripts/test.sh): AGGD_TEST_DATABASE_URL (admin database of a
running cluster), AGGD_BIN (the binary), AGGD_TEST_PG_SH (scripts/pg.sh). Without
them a test exits 77 (skipped), which scripts/test.sh counts as a failure.
"""
import fcntl
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import uuid

SKIP = 77


def env_or_skip(name):
    value = os.environ.get(name)
    if not value:
        print(f"{name} is not set: skipping", file=sys.stderr)
        sys.exit(SKIP)
    return value


def aggd_bin():
    return env_or_skip("AGGD_BIN")


def admin_url():
    return env_or_skip("AGGD_TEST_DATABASE_URL")


def source_dir():
    return os.environ.get("AGGD_SOURCE_DIR") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def with_dbname(url, dbname):
    """The libpq URI <url> pointing at database <dbname> instead."""
    parts = urllib.parse.urlsplit(url)
    # urlunsplit would drop the empty host of postgresql:///db?host=/socket/dir
    query = "?" + parts.query if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}/{dbname}{query}"


def psql(url, sql, *args):
    """Runs <sql> with psql; returns stdout (unaligned, tuples only)."""
    out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-A", "-t",
                          "-d", url, "-c", sql, *args],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def correlation_counts(url, prefix):
    """{correlation_id: rows} of the system_logs rows whose correlation_id starts with
    <prefix>: an id counted twice was stored twice."""
    import psycopg2  # only the tests that store events need it
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT correlation_id, count(*) FROM system_logs "
                        "WHERE correlation_id LIKE %s GROUP BY 1", (prefix + "%",))
            return dict(cur.fetchall())
    finally:
        conn.close()


class Database:
    """A fresh database in the cluster of <admin>, dropped on close()."""

    def __init__(self, admin=None):
        self.admin = admin or admin_url()
        self.name = "aggd_t_" + uuid.uuid4().hex[:12]
        psql(self.admin, f'CREATE DATABASE "{self.name}" TEMPLATE template0')
        self.url = with_dbname(self.admin, self.name)

    def sql(self, sql):
        return psql(self.url, sql)

    def close(self):
        psql(self.admin, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Cluster:
    """A private PostgreSQL cluster (for tests that stop and start the server)."""

    def __init__(self):
        self.pg_sh = env_or_skip("AGGD_TEST_PG_SH")
        self.dir = tempfile.mkdtemp(prefix="aggd-pgt.")
        os.chmod(self.dir, 0o755)
        self._run("init")
        self.start()
        self.admin = self._run("url", "postgres").strip()

    def _run(self, verb, *args):
        return subprocess.run([self.pg_sh, verb, self.dir, *args], check=True,
                              capture_output=True, text=True).stdout

    def start(self):
        self._run("start")

    def stop(self):
        self._run("stop")

    def close(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# ASan keeps up to 256 MiB of freed memory in quarantine: under the sanitizers the
# resident size says nothing about aggd's own, so RSS bounds are checked on the plain build.
SANITIZED = os.environ.get("AGGD_SANITIZE") in ("1", "ON")


def rss_mib(pid):
    """Resident size of <pid> in MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid):
    """User + system CPU seconds of <pid> so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_aggd(*args, env=None, timeout=60, input=None):
    """Runs an aggd subcommand to completion; returns the CompletedProcess."""
    return subprocess.run([aggd_bin(), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, input=input)


def request(port, method, path, body=None, headers=None, timeout=10):
    """One HTTP request to 127.0.0.1:<port>; returns (status, headers dict, body str)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read().decode("utf-8", "replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pass_sockets(fds):
    """In the child before exec: <fds> onto descriptors 3, 4, ... (sd_listen_fds)."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100 + len(fds)) for fd in fds]
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i)


class Aggd:
    """The real daemon on free ports, its stderr kept in a file."""

    def __init__(self, db_url, *extra, env=None, wait_healthy=True, ports=None, spool=None,
                 sockets=None):
        """<ports> (dict: http, syslog_udp, syslog_tcp, json_tcp) and <spool> (a dir) let
        a restarted daemon take over; by default both are fresh. <sockets> (a list of
        socket objects) are passed as systemd's socket activation does: descriptors 3
        onwards, LISTEN_FDS, LISTEN_PID."""
        self.ports = ports or {"http": free_port(), "syslog_udp": free_port(socket.SOCK_DGRAM),
                               "syslog_tcp": free_port(), "json_tcp": free_port()}
        self.http_port = self.ports["http"]
        self.spool = spool or tempfile.mkdtemp(prefix="aggd-spool.")
        self.own_spool = spool is None
        # beside the spool, so a restart on the same spool finds them again
        self.uploads = self.spool.rstrip("/") + ".uploads"
        self.secrets_key = self.spool.rstrip("/") + ".secrets.key"
        self.log = tempfile.NamedTemporaryFile(prefix="aggd-log.", suffix=".txt", delete=False)
        args = [aggd_bin(), "serve",
                "--set", f"database.url={db_url}",
                "--set", f"spool.dir={self.spool}",
                "--set", f"uploads.dir={self.uploads}",
                "--set", f"secrets.key_file={self.secrets_key}",
                "--set", f"listen.http=127.0.0.1:{self.ports['http']}",
                "--set", f"listen.syslog_udp=127.0.0.1:{self.ports['syslog_udp']}",
                "--set", f"listen.syslog_tcp=127.0.0.1:{self.ports['syslog_tcp']}",
                "--set", f"listen.json_tcp=127.0.0.1:{self.ports['json_tcp']}",
                *extra]
        full_env = dict(os.environ)
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.pop("JOURNAL_STREAM", None)
        full_env.update(env or {})
        launch = {}
        if sockets:
            fds = [sk.fileno() for sk in sockets]
            full_env["LISTEN_FDS"] = str(len(fds))
            # LISTEN_PID must be aggd's own pid: the shell's, which exec keeps
            args = ["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"', *args]
            launch = {"preexec_fn": lambda: pass_sockets(fds),
                      "pass_fds": tuple(range(3, 3 + len(fds)))}
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=full_env, **launch)
        if wait_healthy:
            wait_for(self.healthy, 15, what="aggd /healthz")

    def healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"aggd exited with {self.proc.returncode}:\n{self.output()}")
        try:
            return self.get("/healthz")[0] == 200
        except OSError:
            return False

    def get(self, path, **kw):
        return request(self.http_port, "GET", path, **kw)

    def metric(self, name):
        """The value of the unlabelled metric <name> in /metrics."""
        _, _, text = self.get("/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")

    def output(self):
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.unlink(self.log.name)
        if self.own_spool:
            shutil.rmtree(self.spool, ignore_errors=True)
            shutil.rmtree(self.uploads, ignore_errors=True)
            if os.path.exists(self.secrets_key):
                os.unlink(self.secrets_key)


class Served:
    """A fresh migrated database and the real aggd serving it (ready for ingest), with
    an autocommit psycopg2 connection to the database. <args> go to Aggd."""

    def __init__(self, *args):
        import psycopg2  # only the tests that use a connection need it

        self.db = Database()
        out = run_aggd("migrate", "up", "--set", f"database.url={self.db.url}")
        assert out.returncode == 0, out.stderr
        self.aggd = Aggd(self.db.url, *args)
        wait_for(lambda: self.aggd.get("/readyz")[0] == 200, 15, what="ready")
        self.conn = psycopg2.connect(self.db.url)
        self.conn.autocommit = True

    def rows(self, columns, where, params=(), n=1, timeout=10):
        """Waits until SELECT <columns> FROM system_logs WHERE <where> finds at least
        <n> rows; returns them (ordered by id) as dicts."""
        import psycopg2.extras

        def fetch():
            with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(f"SELECT {columns} FROM system_logs WHERE {where} ORDER BY id",
                            params)
                found = cur.fetchall()
            return found if len(found) >= n else None
        try:
            return wait_for(fetch, timeout, what=f"{n} rows where {where}")
        except AssertionError:
            raise AssertionError(f"no {n} rows where {where} {params}; aggd said:\n"
                                 f"{self.aggd.output()[-3000:]}")

    def count(self, sql, params=()):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()[0]

    def close(self):
        """Stops aggd (it must exit 0) and drops the database."""
        self.conn.close()
        rc = self.aggd.stop()
        output = self.aggd.output()
        self.aggd.close()
        self.db.close()
        assert rc == 0, output


def main():
    """unittest.main, ending with the 'N passed, N failed' line."""
    program = unittest.main(exit=False, verbosity=2)
    result = program.result
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or result.testsRun == 0 else 0)
