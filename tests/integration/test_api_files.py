"""Resumable file uploads over the JSON API against the real binary and PostgreSQL:
declaring (validation, derived file_type, default expiry), chunks in any order with a
retried one, the SHA-256 check, download (whole and ranged), an upload resumed across
a restart, the per-user quota, owners-only visibility, delete, and the expiry of
temporary files by the maintenance pass.
"""
import concurrent.futures
import hashlib
import http.client
import os
import random
import shutil
import socket
import tempfile
import time
import unittest

import apikit
import harness

MIB = 1024 * 1024
QUOTA = 64 * MIB  # uploads.max_bytes of these tests


class Files(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # the uploads directory outlives each daemon: restarts find the files again
        cls.uploads = tempfile.mkdtemp(prefix="aggd-uploads.")
        try:
            cls.env = apikit.ApiEnv(extra=cls.options())
        except BaseException:
            shutil.rmtree(cls.uploads, ignore_errors=True)
            raise
        env = cls.env
        cls.ids = dict(env.ids)
        cls.ids["other"] = env.add_user("other@example.com", "editor")
        env.tokens["other"] = env.add_token(cls.ids["other"])

    @classmethod
    def options(cls, quota=QUOTA):
        return ("--set", f"uploads.dir={cls.uploads}", "--set", f"uploads.max_bytes={quota}")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.env.close()
        finally:
            shutil.rmtree(cls.uploads, ignore_errors=True)

    def restart(self, quota=QUOTA):
        env = self.env
        ports = env.aggd.ports
        self.assertEqual(env.aggd.stop(), 0, env.aggd.output()[-3000:])
        out = env.aggd.output()
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
            self.assertNotIn(bad, out)
        env.aggd.close()
        env.aggd = harness.Aggd(env.db.url, *self.options(quota), ports=ports)

    def declare(self, who="editor", status=201, **body):
        body.setdefault("filename", "events.ndjson")
        body.setdefault("file_size", 10)
        code, doc, _ = self.env.call("POST", "/api/v1/files", body, who=who)
        self.assertEqual(code, status, doc)
        return doc

    def put(self, fid, n, data, who="editor", ctype="application/octet-stream"):
        return self.env.put_chunk(fid, n, data, who=who, ctype=ctype)

    def content(self, fid, who="editor", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.env.aggd.http_port, timeout=60)
        try:
            hdrs = {"Authorization": "Bearer " + self.env.tokens[who]}
            hdrs.update(headers or {})
            conn.request("GET", f"/api/v1/files/{fid}/content", headers=hdrs)
            resp = conn.getresponse()
            return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def upload(self, data, chunks, who="editor", order=None, **body):
        return self.env.upload(data, chunks, who=who, order=order, **body)

    def path(self, fid, suffix):
        return os.path.join(self.uploads, f"{fid}{suffix}")

    # ---- declaring ----

    def test_declare_refuses_bad_fields_naming_them(self):
        cases = [
            ({"file_size": 1}, 422, "filename"),
            ({"filename": "a/b.csv", "file_size": 1}, 422, "filename"),
            ({"filename": "..", "file_size": 1}, 422, "filename"),
            ({"filename": "c:\\x.csv", "file_size": 1}, 422, "filename"),
            ({"filename": "a\nb.csv", "file_size": 1}, 422, "filename"),
            ({"filename": "", "file_size": 1}, 422, "filename"),
            ({"file_size": 1, "filename": "a\u0000.csv"}, 422, "filename"),
            ({"filename": "a.csv", "file_size": 1, "metadata": {"k": "\u0000"}}, 422,
             "metadata"),
            ({"filename": "x" * 256, "file_size": 1}, 422, "filename"),
            ({"filename": "a.csv"}, 422, "file_size"),
            ({"filename": "a.csv", "file_size": -1}, 422, "file_size"),
            ({"filename": "a.csv", "file_size": 2 ** 53 + 1}, 422, "file_size"),
            ({"filename": "a.csv", "file_size": 1, "total_chunks": 0}, 422, "total_chunks"),
            # one 17 MiB chunk is over the 16 MiB limit
            ({"filename": "a.csv", "file_size": 17 * MIB}, 422, "total_chunks"),
            # 10 bytes in 6 chunks of 2: the last would be empty
            ({"filename": "a.csv", "file_size": 10, "total_chunks": 6}, 422, "total_chunks"),
            ({"filename": "a.csv", "file_size": 1, "file_hash": "AB" * 32}, 422, "file_hash"),
            ({"filename": "a.csv", "file_size": 1, "file_hash": "ab"}, 422, "file_hash"),
            ({"filename": "a.csv", "file_size": 1, "mime_type": "text"}, 422, "mime_type"),
            ({"filename": "a.csv", "file_size": 1, "mime_type": "text/x\r\nX-A: b"}, 422,
             "mime_type"),
            ({"filename": "a.csv", "file_size": 1, "pipeline_id": 999999}, 422, "pipeline_id"),
            ({"filename": "a.csv", "file_size": 1, "expires_at": "2001-01-01T00:00:00Z"}, 422,
             "expires_at"),
            ({"filename": "a.csv", "file_size": 1, "expires_at": "soon"}, 422, "expires_at"),
            ({"filename": "a.csv", "file_size": 1, "metadata": [1]}, 422, "metadata"),
            ({"filename": "a.csv", "file_size": 1, "status": "uploaded"}, 400, "status"),
            ({"filename": "a.csv", "file_size": 1, "owner_id": 1}, 400, "owner_id"),
            ({"filename": "a.csv", "file_size": 1, "colour": "red"}, 400, "colour"),
        ]
        before = os.listdir(self.uploads)
        for body, status, field in cases:
            with self.subTest(body=body):
                code, doc, _ = self.env.call("POST", "/api/v1/files", body, who="editor")
                self.assertEqual((code, doc["error"]["field"]), (status, field), doc)
        self.assertEqual(sorted(os.listdir(self.uploads)), sorted(before))

    def test_declare_creates_the_row_and_a_preallocated_part_file(self):
        p = self.env.ok("POST", "/api/v1/pipelines", {"name": "files", "source_config": {},
                                                      "destination_config": {}}, status=201)
        doc = self.declare(filename="app.log", file_size=12345, total_chunks=3,
                           mime_type="text/plain", metadata={"host": "a"}, pipeline_id=p["id"])
        fid = doc["id"]
        self.assertEqual((doc["status"], doc["uploaded_chunks"], doc["upload_progress"],
                          doc["total_chunks"], doc["file_path"], doc["owner_id"],
                          doc["pipeline_id"], doc["metadata"], doc["file_type"],
                          doc["is_temporary"], doc["file_hash"]),
                         ("uploading", 0, 0, 3, f"{fid}.data", self.ids["editor"], p["id"],
                          {"host": "a"}, "log", True, None))
        self.assertEqual(os.path.getsize(self.path(fid, ".part")), 12345)
        self.assertFalse(os.path.exists(self.path(fid, ".data")))
        # a temporary file without expires_at lives 24 h
        left = self.env.db.sql(
            f"SELECT extract(epoch FROM expires_at - created_at)::int FROM file_uploads "
            f"WHERE id = {fid}")
        self.assertEqual(int(left), 24 * 3600)
        self.assertTrue(doc["expires_at"].endswith("Z"))

    def test_file_type_comes_from_the_extension_then_the_mime_type(self):
        for body, want in [({"filename": "a.CSV"}, "csv"),
                           ({"filename": "a.jsonl"}, "ndjson"),
                           ({"filename": "a.json"}, "json"),
                           ({"filename": "messages.syslog"}, "syslog"),
                           ({"filename": "dump", "mime_type": "text/csv; charset=utf-8"}, "csv"),
                           ({"filename": "dump", "mime_type": "application/x-ndjson"},
                            "ndjson"),
                           ({"filename": "dump.bin"}, "binary"),
                           ({"filename": "dump.bin", "file_type": "syslog"}, "syslog")]:
            with self.subTest(body=body):
                self.assertEqual(self.declare(**body)["file_type"], want)

    def test_expires_at_given_or_none_for_kept_files(self):
        doc = self.declare(expires_at="2099-01-02T03:04:05+02:00")
        self.assertEqual(doc["expires_at"], "2099-01-02T01:04:05.000000Z")
        doc = self.declare(is_temporary=False)
        self.assertIsNone(doc["expires_at"])

    # ---- chunks ----

    def test_big_upload_in_shuffled_chunks_with_one_retried(self):
        data = os.urandom(50 * MIB)
        digest = hashlib.sha256(data).hexdigest()
        order = list(range(25))
        random.shuffle(order)
        order.insert(7, order[3])  # chunk order[3] twice
        doc, (code, last) = self.upload(data, 25, order=order, file_hash=digest,
                                        filename="big.bin", mime_type="application/x-big")
        self.assertEqual(code, 200, last)
        self.assertEqual((last["status"], last["uploaded_chunks"], last["upload_progress"],
                          last["file_hash"]), ("uploaded", 25, 100, digest))
        fid = doc["id"]
        self.assertEqual(self.env.scalar(
            f"SELECT count(*) FROM file_upload_chunks WHERE file_id = {fid}"), 25)
        self.assertFalse(os.path.exists(self.path(fid, ".part")))
        with open(self.path(fid, ".data"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), digest)
        code, body, hdrs = self.content(fid)
        self.assertEqual(code, 200)
        self.assertEqual((len(body), hashlib.sha256(body).hexdigest()), (len(data), digest))
        self.assertEqual(hdrs["content-type"], "application/x-big")
        self.assertEqual(hdrs["content-length"], str(len(data)))
        self.assertEqual(hdrs["content-disposition"],
                         "attachment; filename=\"big.bin\"; filename*=UTF-8''big.bin")
        # a single range
        code, body, hdrs = self.content(fid, headers={"Range": "bytes=1000-1999"})
        self.assertEqual((code, body, hdrs["content-range"]),
                         (206, data[1000:2000], f"bytes 1000-1999/{len(data)}"))
        code, body, _ = self.content(fid, headers={"Range": "bytes=-10"})
        self.assertEqual((code, body), (206, data[-10:]))
        code, _, hdrs = self.content(fid, headers={"Range": f"bytes={len(data)}-"})
        self.assertEqual((code, hdrs["content-range"]), (416, f"bytes */{len(data)}"))
        # done: no more chunks
        self.assertEqual(self.put(fid, 0, data[:2 * MIB])[0], 409)
        self.env.ok("DELETE", f"/api/v1/files/{fid}", who="editor", status=204)

    def test_chunk_sizes_ranges_and_media_type(self):
        doc = self.declare(file_size=10, total_chunks=4)  # chunks of 3, 3, 3, 1
        fid = doc["id"]
        code, err = self.put(fid, 0, b"ab")
        self.assertEqual((code, err["error"]["field"]), (422, "chunk"))
        self.assertEqual(self.put(fid, 3, b"abc")[0], 422)
        self.assertEqual(self.put(fid, 4, b"a")[0], 404)
        self.assertEqual(self.put(fid, 0, b"abc", ctype="application/json")[0], 415)
        code, doc = self.put(fid, 3, b"z", ctype=None)
        self.assertEqual((code, doc["uploaded_chunks"], doc["upload_progress"]), (200, 1, 25))
        self.assertEqual(self.content(fid)[0], 409)  # still uploading
        for n in (0, 1):
            self.assertEqual(self.put(fid, n, b"abc")[0], 200)
        code, doc = self.put(fid, 2, b"abc")
        self.assertEqual((code, doc["status"], doc["file_hash"]),
                         (200, "uploaded", hashlib.sha256(b"abcabcabcz").hexdigest()))
        self.assertEqual(self.content(fid)[1], b"abcabcabcz")

    def test_an_oversized_chunk_is_refused_before_its_body(self):
        doc = self.declare(file_size=10)
        with socket.create_connection(("127.0.0.1", self.env.aggd.http_port), timeout=10) as s:
            s.sendall((f"PUT /api/v1/files/{doc['id']}/chunks/0 HTTP/1.1\r\n"
                       "Host: x\r\nContent-Type: application/octet-stream\r\n"
                       f"Authorization: Bearer {self.env.tokens['editor']}\r\n"
                       f"Content-Length: {16 * MIB + 1}\r\n\r\n").encode())
            head = s.recv(4096).decode(errors="replace")
        self.assertTrue(head.startswith("HTTP/1.1 413"), head)

    def test_concurrent_last_chunks_complete_the_upload_once(self):
        data = os.urandom(4000)
        for _ in range(5):
            doc = self.declare(file_size=len(data), total_chunks=4)
            for n in (0, 1):
                self.assertEqual(self.put(doc["id"], n, data[n * 1000:(n + 1) * 1000])[0], 200)
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                replies = list(pool.map(lambda n: self.put(doc["id"], n,
                                                           data[n * 1000:(n + 1) * 1000]),
                                        (2, 3)))
            self.assertEqual(sorted((code, d["status"]) for code, d in replies),
                             [(200, "uploaded"), (200, "uploading")])
            self.assertEqual(self.content(doc["id"])[1], data)

    def test_an_empty_file_is_one_empty_chunk(self):
        doc, (code, last) = self.upload(b"", 1, filename="empty.txt")
        self.assertEqual((code, last["status"], last["file_hash"]),
                         (200, "uploaded", hashlib.sha256(b"").hexdigest()))
        code, body, hdrs = self.content(doc["id"])
        self.assertEqual((code, body, hdrs["content-length"]), (200, b"", "0"))

    def test_hash_mismatch_fails_the_upload(self):
        data = b"0123456789" * 100
        doc, (code, err) = self.upload(data, 2, file_hash="0" * 64)
        self.assertEqual((code, err["error"]["code"], err["error"]["field"]),
                         (422, "hash_mismatch", "file_hash"))
        self.assertIn(hashlib.sha256(data).hexdigest(), err["error"]["message"])
        got = self.env.ok("GET", f"/api/v1/files/{doc['id']}", who="editor")
        self.assertEqual(got["status"], "failed")
        self.assertEqual(self.content(doc["id"])[0], 409)
        self.assertEqual(self.put(doc["id"], 0, data[:500])[0], 409)

    def test_interrupted_upload_resumes_after_a_restart(self):
        data = os.urandom(3 * MIB + 17)
        doc = self.declare(file_size=len(data), total_chunks=8)
        size = -(-len(data) // 8)
        for n in range(0, 8, 2):
            self.assertEqual(self.put(doc["id"], n, data[n * size:(n + 1) * size])[0], 200)
        self.restart()
        got = self.env.ok("GET", f"/api/v1/files/{doc['id']}", who="editor")
        self.assertEqual((got["status"], got["uploaded_chunks"], got["upload_progress"]),
                         ("uploading", 4, 50))
        for n in range(1, 8, 2):
            code, last = self.put(doc["id"], n, data[n * size:(n + 1) * size])
            self.assertEqual(code, 200, last)
        self.assertEqual(last["status"], "uploaded")
        self.assertEqual(self.content(doc["id"])[1], data)

    def test_a_completion_lost_in_a_crash_is_resumed(self):
        # the last chunk renamed <id>.part to <id>.data, then aggd died before the
        # commit: the row still says uploading, without that chunk
        data = os.urandom(3000)
        doc, (code, _) = self.upload(data, 3)
        fid = doc["id"]
        self.assertEqual(code, 200)
        self.env.db.sql("UPDATE file_uploads SET status = 'uploading', file_hash = NULL, "
                        f"uploaded_chunks = 2, upload_progress = 66 WHERE id = {fid};"
                        f"DELETE FROM file_upload_chunks WHERE file_id = {fid} AND n = 1")
        os.utime(self.path(fid, ".data"), (time.time() - 3600, time.time() - 3600))
        self.restart()
        harness.wait_for(lambda: os.path.exists(self.path(fid, ".part")), 15,
                         what="the start-up pass")
        self.assertFalse(os.path.exists(self.path(fid, ".data")))
        self.assertEqual(self.content(fid)[0], 409)
        code, doc = self.put(fid, 1, data[1000:2000])
        self.assertEqual((code, doc["status"], doc["file_hash"]),
                         (200, "uploaded", hashlib.sha256(data).hexdigest()))
        self.assertEqual(self.content(fid)[1], data)

    # ---- quota, visibility, delete, expiry ----

    def test_quota_counts_every_file_of_the_caller(self):
        used = self.env.scalar("SELECT coalesce(sum(file_size), 0) FROM file_uploads "
                               f"WHERE owner_id = {self.ids['admin']}")
        room = QUOTA - used
        big = self.declare(who="admin", file_size=room - 100, total_chunks=4, is_temporary=False)
        err = self.declare(who="admin", file_size=101, status=413)
        self.assertEqual((err["error"]["code"], err["error"]["field"]),
                         ("quota_exceeded", "file_size"))
        self.declare(who="admin", file_size=100)  # exactly up to the quota
        self.declare(who="admin", file_size=1, status=413)
        self.declare(who="other", file_size=101)  # another user's own quota
        self.env.ok("DELETE", f"/api/v1/files/{big['id']}", who="admin", status=204)
        self.declare(who="admin", file_size=101)

    def test_a_file_the_disk_cannot_hold_is_507(self):
        vfs = os.statvfs(self.uploads)
        size = vfs.f_bavail * vfs.f_frsize + 1024 * MIB
        self.assertLess(size, 1000000 * 16 * MIB, "the disk is too big for this test")
        self.restart(quota=2 * size)
        try:
            err = self.declare(file_size=size, total_chunks=-(-size // (16 * MIB)), status=507)
            self.assertEqual(err["error"]["code"], "insufficient_storage")
        finally:
            self.restart()

    def test_files_are_their_owners_and_admins_only(self):
        doc, _ = self.upload(b"secret", 1, filename="mine.txt")
        fid = doc["id"]
        for who in ("other", "viewer"):
            with self.subTest(who=who):
                self.assertEqual(self.env.call("GET", f"/api/v1/files/{fid}", who=who)[0], 404)
                self.assertEqual(self.content(fid, who=who)[0], 404)
                items, _ = apikit.all_pages(self.env, "/api/v1/files", 50, who=who)
                self.assertNotIn(fid, [i["id"] for i in items])
        self.assertEqual(self.env.call("DELETE", f"/api/v1/files/{fid}", who="other")[0], 404)
        self.assertEqual(self.put(fid, 0, b"secret", who="other")[0], 404)
        self.assertEqual(self.env.ok("GET", f"/api/v1/files/{fid}")["owner_id"],
                         self.ids["editor"])
        self.assertEqual(self.content(fid, who="admin")[1], b"secret")

    def test_list_filters_and_pages(self):
        made = [self.declare(who="other", filename=f"f{i}.csv", file_size=1)["id"]
                for i in range(5)]
        self.upload(b"x", 1, who="other", filename="done.json")
        items, pages = apikit.all_pages(self.env, "/api/v1/files?file_type=csv", 2, who="other")
        self.assertEqual([i["id"] for i in items if i["id"] in made], made)
        self.assertGreaterEqual(pages, 3)
        items, _ = apikit.all_pages(self.env, "/api/v1/files?status=uploaded", 50, who="other")
        self.assertTrue(items)
        self.assertEqual({i["status"] for i in items}, {"uploaded"})
        self.assertEqual(self.env.call("GET", "/api/v1/files?status=lost", who="other")[0], 400)
        self.assertEqual(self.env.call("GET", "/api/v1/files?owner_id=1", who="other")[0], 400)

    def test_delete_removes_row_chunks_and_bytes_unless_a_job_runs(self):
        doc, _ = self.upload(b"abcdef", 2)
        fid = doc["id"]
        self.assertTrue(os.path.exists(self.path(fid, ".data")))
        job = self.env.scalar("INSERT INTO file_processing_jobs (file_id, job_type, status) "
                              f"VALUES ({fid}, 'validation', 'running') RETURNING id")
        code, err, _ = self.env.call("DELETE", f"/api/v1/files/{fid}", who="editor")
        self.assertEqual((code, err["error"]["code"]), (409, "busy"))
        self.env.db.sql(f"UPDATE file_processing_jobs SET status = 'completed' WHERE id = {job}")
        self.env.ok("DELETE", f"/api/v1/files/{fid}", who="editor", status=204)
        self.assertEqual(self.env.call("GET", f"/api/v1/files/{fid}", who="editor")[0], 404)
        self.assertEqual(self.env.scalar(
            f"SELECT count(*) FROM file_upload_chunks WHERE file_id = {fid}"), 0)
        self.assertFalse(os.path.exists(self.path(fid, ".data")))
        self.assertEqual(self.env.call("DELETE", f"/api/v1/files/{fid}", who="editor")[0], 404)

    def test_expired_temporary_files_and_orphans_disappear_at_start(self):
        gone, _ = self.upload(b"old bytes", 1, filename="old.txt")
        half = self.declare(file_size=4, total_chunks=2)
        kept, _ = self.upload(b"keep", 1, is_temporary=False)
        fresh, _ = self.upload(b"fresh", 1)
        for fid in (gone["id"], half["id"], kept["id"]):
            self.env.db.sql("UPDATE file_uploads SET expires_at = "
                            f"(now() AT TIME ZONE 'UTC') - interval '1 minute' WHERE id = {fid}")
        orphan = self.path(987654, ".data")
        with open(orphan, "wb") as f:
            f.write(b"left by a crash")
        os.utime(orphan, (time.time() - 3600, time.time() - 3600))
        self.restart()

        def swept():
            return (not os.path.exists(orphan) and not os.path.exists(self.path(gone["id"],
                                                                                 ".data")))
        harness.wait_for(swept, 15, what="the maintenance pass")
        for fid, code in ((gone["id"], 404), (half["id"], 404), (kept["id"], 200),
                          (fresh["id"], 200)):
            with self.subTest(file=fid):
                self.assertEqual(self.env.call("GET", f"/api/v1/files/{fid}", who="editor")[0],
                                 code)
        self.assertFalse(os.path.exists(self.path(half["id"], ".part")))
        self.assertEqual(self.content(kept["id"])[1], b"keep")
        self.assertEqual(self.content(fresh["id"])[1], b"fresh")

    def test_content_disposition_quotes_any_file_name(self):
        doc, _ = self.upload(b"q", 1, filename='we"ird naïve;.txt')
        _, _, hdrs = self.content(doc["id"])
        self.assertEqual(hdrs["content-disposition"],
                         "attachment; filename=\"we_ird na__ve;.txt\"; "
                         "filename*=UTF-8''we%22ird%20na%C3%AFve%3B.txt")
        self.assertEqual(hdrs["content-type"], "application/octet-stream")


if __name__ == "__main__":
    harness.main()
