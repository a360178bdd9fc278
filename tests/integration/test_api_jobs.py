"""File processing jobs against the real binary and PostgreSQL: the routes and who may
use them, validation of good and bad CSV, JSON, NDJSON and syslog, CSV to NDJSON
conversion, and extraction into system_logs, exactly once even when aggd is SIGKILLed
in the middle of a job and restarted.
"""
import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
import unittest

import apikit
import harness


class Jobs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="aggd-uploads.")
        cls.extra = ("--set", f"uploads.dir={cls.dir}")
        cls.env = apikit.ApiEnv(extra=cls.extra)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.env.close()
        finally:
            shutil.rmtree(cls.dir, ignore_errors=True)

    # ---- fixtures ----

    def new_file(self, name, data, owner="editor", status="uploaded", file_type=None,
                 mime=None):
        """A file of <owner> through the upload API: complete (in chunks of at most
        8 MiB), or only declared when <status> is "uploading"."""
        if isinstance(data, str):
            data = data.encode()
        body = {"filename": name}
        if file_type is not None:
            body["file_type"] = file_type
        if mime is not None:
            body["mime_type"] = mime
        if status == "uploading":
            return self.env.ok("POST", "/api/v1/files", dict(body, file_size=len(data)),
                               who=owner, status=201)["id"]
        doc, last = self.env.upload(data, max(1, -(-len(data) // (8 << 20))), who=owner,
                                    file_hash=hashlib.sha256(data).hexdigest(), **body)
        assert last[0] == 200 and last[1]["status"] == "uploaded", last
        return doc["id"]

    def new_job(self, fid, job_type, options=None, who="editor"):
        body = {"job_type": job_type}
        if options is not None:
            body["options"] = options
        return self.env.ok("POST", f"/api/v1/files/{fid}/jobs", body, who=who, status=201)

    def wait_job(self, jid, timeout=60, who="editor"):
        def ended():
            doc = self.env.ok("GET", f"/api/v1/jobs/{jid}", who=who)
            return doc if doc["status"] in ("completed", "failed") else None
        try:
            return harness.wait_for(ended, timeout, interval=0.1, what=f"job {jid}")
        except AssertionError:
            raise AssertionError(f"job {jid} did not end; aggd said:\n"
                                 f"{self.env.aggd.output()[-3000:]}")

    def run_job(self, fid, job_type, options=None):
        return self.wait_job(self.new_job(fid, job_type, options)["id"])

    def file_status(self, fid):
        return self.env.db.sql(f"SELECT status FROM file_uploads WHERE id = {fid}")

    # ---- routes and roles ----

    def test_create_list_and_read_by_role(self):
        env = self.env
        fid = self.new_file("app.ndjson", '{"message":"a"}\n')
        job = self.new_job(fid, "validation")
        self.assertEqual((job["file_id"], job["job_type"], job["status"], job["progress"]),
                         (fid, "validation", "pending", 0))
        self.assertEqual(job["result_data"], {"options": {"format": "ndjson"}})
        self.assertNotIn("options", job)
        # viewers may not create jobs; others than the owner and admins do not see the file
        self.assertEqual(env.call("POST", f"/api/v1/files/{fid}/jobs",
                                  {"job_type": "validation"}, who="viewer")[0], 403)
        admins = self.new_file("admin.ndjson", "{}\n", owner="admin")
        code, doc, _ = env.call("POST", f"/api/v1/files/{admins}/jobs",
                                {"job_type": "validation"}, who="editor")
        self.assertEqual((code, doc["error"]["code"]), (404, "not_found"))
        self.assertEqual(env.call("GET", f"/api/v1/files/{admins}/jobs", who="editor")[0], 404)
        self.assertEqual(env.call("GET", f"/api/v1/files/{fid}/jobs", who="viewer")[0], 404)
        self.assertEqual(env.call("GET", f"/api/v1/jobs/{job['id']}", who="viewer")[0], 404)
        self.assertEqual(env.call("GET", "/api/v1/jobs/999999", who="admin")[0], 404)
        self.assertEqual(env.call("GET", "/api/v1/files/999999/jobs", who="admin")[0], 404)
        # admins see and act on everyone's files
        self.new_job(fid, "extraction", who="admin")
        self.assertEqual(env.ok("GET", f"/api/v1/jobs/{job['id']}", who="admin")["id"],
                         job["id"])
        # lists: keyset pages, filters
        self.new_job(fid, "validation")
        items, pages = apikit.all_pages(env, f"/api/v1/files/{fid}/jobs", 1, who="editor")
        self.assertEqual((len(items), pages), (3, 3))
        self.assertEqual([i["id"] for i in items], sorted(i["id"] for i in items))
        only = env.ok("GET", f"/api/v1/files/{fid}/jobs?job_type=extraction", who="editor")
        self.assertEqual([i["job_type"] for i in only["items"]], ["extraction"])
        code, doc, _ = env.call("GET", f"/api/v1/files/{fid}/jobs?job_type=carving",
                                who="editor")
        self.assertEqual((code, doc["error"]["field"]), (400, "job_type"))
        code, doc, _ = env.call("GET", f"/api/v1/files/{fid}/jobs?owner=1", who="editor")
        self.assertEqual((code, doc["error"]["field"]), (400, "owner"))
        for j in items:
            self.wait_job(j["id"])
        done = env.ok("GET", f"/api/v1/files/{fid}/jobs?status=completed", who="editor")
        self.assertEqual(len(done["items"]), 3)

    def test_bodies_are_strict(self):
        env = self.env
        fid = self.new_file("strict.csv", "a,b\n1,2\n")
        cases = [
            ({}, 422, "job_type"),
            ({"job_type": "carving"}, 422, "job_type"),
            ({"job_type": 3}, 422, "job_type"),
            ({"job_type": "validation", "extra": 1}, 400, "extra"),
            ({"job_type": "validation", "options": []}, 422, "options"),
            ({"job_type": "validation", "options": {"speed": 1}}, 400, "options.speed"),
            ({"job_type": "validation", "options": {"format": "xml"}}, 422, "options.format"),
            ({"job_type": "validation", "options": {"format": 1}}, 422, "options.format"),
            ({"job_type": "conversion", "options": {"target": "csv"}}, 422, "options.target"),
            ({"job_type": "validation", "options": {"target": "ndjson"}}, 422,
             "options.target"),
            ({"job_type": "conversion", "options": {"format": "syslog"}}, 422,
             "options.target"),
        ]
        for body, status, field in cases:
            with self.subTest(body=body):
                code, doc, _ = env.call("POST", f"/api/v1/files/{fid}/jobs", body,
                                        who="editor")
                self.assertEqual((code, doc["error"]["field"]), (status, field), doc)
        # a format aggd cannot tell from the file names the option to give
        odd = self.new_file("blob.bin", "x", file_type="binary")
        code, doc, _ = env.call("POST", f"/api/v1/files/{odd}/jobs",
                                {"job_type": "extraction"}, who="editor")
        self.assertEqual((code, doc["error"]["field"]), (422, "options.format"))
        job = self.new_job(odd, "validation", {"format": "syslog"})
        self.assertEqual(job["result_data"]["options"], {"format": "syslog"})
        # the media type decides when the type does not
        by_mime = self.new_file("upload", "a\n", file_type="other", mime="text/csv")
        self.assertEqual(self.new_job(by_mime, "conversion")["result_data"]["options"],
                         {"format": "csv", "target": "ndjson"})
        # no job while the file is still uploading
        partial = self.new_file("partial.ndjson", "{}", status="uploading")
        code, doc, _ = env.call("POST", f"/api/v1/files/{partial}/jobs",
                                {"job_type": "validation"}, who="editor")
        self.assertEqual((code, doc["error"]["code"]), (409, "conflict"))

    # ---- validation ----

    def test_validation_of_each_format(self):
        cases = [
            ("good.csv", 'id,message\n1,"hello, world"\n2,"two\nlines"\n3,""\n', 3, 0, []),
            ("bad.csv", 'id,message\n1,ok\n2\n3,"open\n', 3, 2, [3, 4]),
            ("good.json", '[{"message":"a"},{"message":"b","level":"ERROR"}]', 2, 0, []),
            ("bad.json", '[{"message":"a"}, 3, {"line_number":"x"}]', 3, 2, [1, 2]),
            ("good.ndjson", '{"message":"a"}\n\n{"message":"b"}\r\n', 2, 0, []),
            ("bad.ndjson", '{"message":"a"}\nnot json\n[1]\n{"message":"d"}\n', 4, 2, [2, 3]),
            ("good.log", "<34>1 2026-01-02T03:04:05Z host app 1 - - hi\n"
                         "<13>Oct 11 22:14:15 mymachine su: hello\n", 2, 0, []),
        ]
        for name, data, records, invalid, where in cases:
            with self.subTest(file=name):
                fid = self.new_file(name, data, file_type="syslog" if name.endswith(".log")
                                    else None)
                job = self.run_job(fid, "validation")
                self.assertEqual(job["status"], "completed", job)
                self.assertEqual(job["progress"], 100)
                self.assertIsNotNone(job["completed_at"])
                res = job["result_data"]
                self.assertEqual((res["records"], res["valid"], res["invalid"]),
                                 (records, records - invalid, invalid), res)
                self.assertEqual(res["well_formed"], invalid == 0)
                key = "index" if name.endswith(".json") else "line"
                self.assertEqual([e[key] for e in res["errors"]], where, res)
                self.assertTrue(all(e["message"] for e in res["errors"]))
                self.assertEqual(self.file_status(fid), "completed")
        # a document that is not JSON at all
        fid = self.new_file("broken.json", '{"message": ')
        res = self.run_job(fid, "validation")["result_data"]
        self.assertEqual((res["valid"], res["invalid"], res["well_formed"]), (0, 1, False))
        # syslog lines that are not syslog
        fid = self.new_file("bad.log", "<34>1 2026-01-02T03:04:05Z h a - - - ok\n<999>x\n",
                            file_type="syslog")
        res = self.run_job(fid, "validation")["result_data"]
        self.assertEqual((res["records"], res["invalid"], res["errors"][0]["line"]), (2, 1, 2))

    def test_many_errors_keep_the_first_ten(self):
        fid = self.new_file("many.ndjson", "nope\n" * 25)
        res = self.run_job(fid, "validation")["result_data"]
        self.assertEqual((res["invalid"], len(res["errors"])), (25, 10))
        self.assertEqual([e["line"] for e in res["errors"]], list(range(1, 11)))

    def test_a_missing_file_fails_the_job(self):
        fid = self.new_file("gone.ndjson", "{}\n")
        os.unlink(os.path.join(self.dir, f"{fid}.data"))
        job = self.run_job(fid, "validation")
        self.assertEqual(job["status"], "failed")
        self.assertIn("cannot open the file", job["error_message"])
        self.assertEqual(self.file_status(fid), "failed")

    # ---- conversion ----

    def test_csv_converts_to_ndjson_in_a_new_file(self):
        env = self.env
        data = 'level,message,duration_ms\nINFO,"a, b",12\nERROR,"say ""hi""",\nbad\n'
        fid = self.new_file("export.csv", data)
        env.db.sql(f"UPDATE file_uploads SET is_temporary = false WHERE id = {fid}")
        job = self.run_job(fid, "conversion")
        self.assertEqual(job["status"], "completed", job)
        out = job["output_file_id"]
        self.assertIsNotNone(out)
        res = job["result_data"]
        self.assertEqual((res["records"], res["written"], res["invalid"], res["target"]),
                         (3, 2, 1, "ndjson"))
        with open(os.path.join(self.dir, f"{out}.data"), "rb") as f:
            body = f.read()
        lines = [json.loads(x) for x in body.decode().splitlines()]
        self.assertEqual(lines, [{"level": "INFO", "message": "a, b", "duration_ms": "12"},
                                 {"level": "ERROR", "message": 'say "hi"', "duration_ms": ""}])
        row = env.db.sql(
            "SELECT concat_ws('|', filename, file_path, file_type, file_size, mime_type,"
            " file_hash, status, upload_progress, total_chunks, uploaded_chunks, is_temporary,"
            f" owner_id) FROM file_uploads WHERE id = {out}")
        self.assertEqual(row.split("|"), [
            "export.ndjson", f"{out}.data", "ndjson", str(len(body)), "application/x-ndjson",
            hashlib.sha256(body).hexdigest(), "uploaded", "100", "1", "1", "f",
            str(env.ids["editor"])])
        self.assertFalse(os.path.exists(os.path.join(self.dir, f"{out}.data.tmp")))

    def test_json_array_converts_to_ndjson(self):
        fid = self.new_file("arr.json", '[{"a": [1, {"b": null}]}, {"c": "d"}]')
        job = self.run_job(fid, "conversion")
        with open(os.path.join(self.dir, f"{job['output_file_id']}.data"), "rb") as f:
            self.assertEqual(f.read(), b'{"a":[1,{"b":null}]}\n{"c":"d"}\n')

    def test_ndjson_converts_to_csv(self):
        env = self.env
        data = ('{"a": 1, "b": "x,y"}\n{"b": "q\\"r", "c": {"d": [1]}}\nnope\n\n'
                '{"a": null, "c": true}\n')
        fid = self.new_file("events.ndjson", data)
        job = self.run_job(fid, "conversion")
        self.assertEqual(job["status"], "completed", job)
        res = job["result_data"]
        self.assertEqual((res["options"]["target"], res["records"], res["written"],
                          res["invalid"], res["errors"][0]["line"]), ("csv", 4, 3, 1, 3))
        out = job["output_file_id"]
        with open(os.path.join(self.dir, f"{out}.data"), "rb") as f:
            body = f.read()
        self.assertEqual(body, b'a,b,c\r\n1,"x,y",\r\n,"q""r","{""d"":[1]}"\r\n,,true\r\n')
        self.assertEqual(env.db.sql("SELECT filename || ' ' || file_type || ' ' || mime_type ||"
                                    f" ' ' || file_hash FROM file_uploads WHERE id = {out}"),
                         f"events.csv csv text/csv {hashlib.sha256(body).hexdigest()}")
        # and back: the CSV validates, with as many rows
        res = self.run_job(out, "validation")["result_data"]
        self.assertEqual((res["format"], res["records"], res["invalid"]), ("csv", 3, 0))

    # ---- extraction ----

    def count_rows(self, tag):
        return tuple(int(x) for x in self.env.db.sql(
            "SELECT count(*) || ' ' || count(DISTINCT extra_data->>'uid') FROM system_logs"
            f" WHERE logger_name = '{tag}'").split())

    def test_extraction_survives_sigkill_exactly_once(self):
        env = self.env
        n = 100000
        tag = "bulk-kill"
        pad = "x" * 200
        data = "".join(json.dumps({"message": f"event {i} {pad}", "logger_name": tag,
                                   "level": "INFO", "uid": i}) + "\n" for i in range(n))
        fid = self.new_file("big.ndjson", data)
        jid = self.new_job(fid, "extraction")["id"]

        def midway():
            doc = env.ok("GET", f"/api/v1/jobs/{jid}", who="editor")
            self.assertNotEqual(doc["status"], "completed", "the job ended before the kill")
            return 5 <= doc["progress"] <= 95 or None
        harness.wait_for(midway, 120, interval=0.02, what="progress between 5 and 95")
        env.aggd.stop(signal.SIGKILL)
        before = self.count_rows(tag)
        self.assertLess(before[0], n)
        self.assertEqual(env.db.sql(f"SELECT status FROM file_processing_jobs WHERE id = {jid}"),
                         "running")
        env.aggd.close()
        env.aggd = harness.Aggd(env.db.url, *self.extra)
        job = self.wait_job(jid, timeout=240)
        self.assertEqual(job["status"], "completed", job)
        self.assertEqual(self.count_rows(tag), (n, n))
        res = job["result_data"]
        self.assertEqual((res["imported"], res["rejected"], res["offset"], res["lines"]),
                         (n, 0, len(data), n))
        self.assertEqual(job["progress"], 100)
        self.assertEqual(self.file_status(fid), "completed")

    def test_extraction_imports_good_lines_and_keeps_bad_ones(self):
        env = self.env
        tag = "bulk-bad"
        lines = [json.dumps({"message": f"m{i}", "logger_name": tag, "uid": i})
                 for i in range(50)]
        lines[10] = "this is not json"
        lines[20] = json.dumps({"message": "typed", "logger_name": tag, "line_number": "x"})
        lines[30] = "[1, 2]"
        # a row that decodes but PostgreSQL refuses (a constraint an operator added)
        lines[40] = json.dumps({"message": "poison-jobs", "logger_name": tag, "uid": 40})
        env.db.sql("ALTER TABLE system_logs ADD CONSTRAINT poison_jobs"
                   " CHECK (message <> 'poison-jobs') NOT VALID")
        try:
            fid = self.new_file("mixed.ndjson", "\n".join(lines) + "\n")
            job = self.run_job(fid, "extraction")
        finally:
            env.db.sql("ALTER TABLE system_logs DROP CONSTRAINT poison_jobs")
        self.assertEqual(job["status"], "completed", job)
        self.assertEqual((job["result_data"]["imported"], job["result_data"]["rejected"]),
                         (46, 4))
        self.assertEqual(self.count_rows(tag), (46, 46))
        peer = f"file {fid} job {job['id']}"
        self.assertEqual(env.scalar(f"SELECT count(*) FROM ingest_rejects WHERE peer = '{peer}'"),
                         4)
        raw = env.db.sql("SELECT convert_from(raw, 'UTF8') FROM ingest_rejects WHERE peer ="
                         f" '{peer}' AND raw = convert_to('this is not json', 'UTF8')")
        self.assertEqual(raw, "this is not json")
        error = env.db.sql("SELECT error FROM ingest_rejects WHERE peer ="
                           f" '{peer}' AND convert_from(raw, 'UTF8') LIKE '%poison-jobs%'")
        self.assertIn("check constraint", error)

    def test_shutdown_mid_job_is_prompt_and_the_job_resumes(self):
        env = self.env
        n = 60000
        tag = "bulk-term"
        data = "".join(json.dumps({"message": f"t{i} " + "y" * 200, "logger_name": tag,
                                   "uid": i}) + "\n" for i in range(n))
        fid = self.new_file("term.ndjson", data)
        jid = self.new_job(fid, "extraction")["id"]
        harness.wait_for(lambda: 5 <= env.ok("GET", f"/api/v1/jobs/{jid}")["progress"] <= 95,
                         120, interval=0.02, what="progress between 5 and 95")
        started = time.monotonic()
        self.assertEqual(env.aggd.stop(timeout=10), 0, env.aggd.output()[-3000:])
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(env.db.sql(f"SELECT status FROM file_processing_jobs WHERE id = {jid}"),
                         "running")
        env.aggd.close()
        env.aggd = harness.Aggd(env.db.url, *self.extra)
        job = self.wait_job(jid, timeout=240)
        self.assertEqual((job["status"], job["result_data"]["imported"]), ("completed", n))
        self.assertEqual(self.count_rows(tag), (n, n))

    def test_extraction_of_csv_and_syslog(self):
        env = self.env
        csv = ("level,message,logger_name,duration_ms,uid\n"
               "ERROR,disk full,bulk-csv,12,1\nINFO,\"multi\nline\",bulk-csv,,2\n"
               "INFO,short row\nERROR,\"never closed,bulk-csv,1,3\n")
        fid = self.new_file("rows.csv", csv)
        job = self.run_job(fid, "extraction")
        self.assertEqual((job["result_data"]["imported"], job["result_data"]["rejected"]),
                         (2, 2), job)
        self.assertEqual(job["result_data"]["lines"], 6)
        self.assertIn("never closed", env.db.sql(
            "SELECT string_agg(error, ' | ') FROM ingest_rejects WHERE peer ="
            f" 'file {fid} job {job['id']}'"))
        got = env.db.sql("SELECT string_agg(level || ':' || message || ':' ||"
                         " coalesce(duration_ms::text, '-'), ',' ORDER BY message)"
                         " FROM system_logs WHERE logger_name = 'bulk-csv'")
        self.assertEqual(got, "ERROR:disk full:12,INFO:multi\nline:-")
        # as the syslog listeners do: a line without PRI is a user.notice message
        log = ("<11>1 2026-01-02T03:04:05Z web bulk-syslog 7 - - failed\n"
               "bulk-syslog: no priority\n"
               '<14>1 2026-01-02T03:04:05Z web bulk-syslog - - - {"message": "as json",'
               ' "request_id": "r-17"}\n')
        fid = self.new_file("sys.log", log, file_type="syslog")
        job = self.run_job(fid, "extraction")
        self.assertEqual((job["result_data"]["imported"], job["result_data"]["rejected"]),
                         (3, 0), job)
        self.assertEqual(env.db.sql("SELECT string_agg(level || ' ' || message || ' ' ||"
                                    " coalesce(request_id, '-'), ',' ORDER BY message)"
                                    " FROM system_logs WHERE logger_name = 'bulk-syslog'"),
                         "INFO as json r-17,ERROR failed -,INFO no priority -")

    def test_extraction_of_a_json_array(self):
        fid = self.new_file("events.json", json.dumps(
            [{"message": "j1", "logger_name": "bulk-json"}, 5,
             {"message": "j2", "logger_name": "bulk-json", "created_at": "2001-01-01T00:00:00Z"}]))
        job = self.run_job(fid, "extraction")
        self.assertEqual((job["result_data"]["imported"], job["result_data"]["rejected"]),
                         (2, 1), job)
        # too old for the partitions: stored at the receive time, the original kept
        self.assertEqual(self.env.db.sql(
            "SELECT extra_data->>'original_timestamp' IS NOT NULL FROM system_logs"
            " WHERE message = 'j2'"), "t")


if __name__ == "__main__":
    harness.main()
