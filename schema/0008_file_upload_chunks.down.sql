-- 0008_file_upload_chunks down: drops everything 0008_file_upload_chunks.up.sql created.
DROP TABLE file_upload_chunks;
