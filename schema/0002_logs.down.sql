-- 0002_logs down: drops everything 0002_logs.up.sql created. Dropping
-- system_logs drops all its month partitions. No CASCADE (see 0001 down).

DROP TABLE partition_archives;
DROP TABLE ingest_rejects;
DROP TABLE ingest_checkpoints;
DROP FUNCTION aggd_create_month_partition(text, date);
DROP TABLE system_logs;
