-- 0008_file_upload_chunks: which chunks of a resumable upload are on disk (api/files.c).
-- A chunk's row is written only after its bytes were fdatasync'd into "<id>.part", so
-- uploaded_chunks (a count of these rows) survives a restart; the PRIMARY KEY makes a
-- retried chunk a no-op (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE file_upload_chunks (
    file_id     integer NOT NULL REFERENCES file_uploads (id) ON DELETE CASCADE,
    n           integer NOT NULL,
    received_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    PRIMARY KEY (file_id, n)
);
