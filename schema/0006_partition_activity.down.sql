-- 0006_partition_activity down: drops everything 0006_partition_activity.up.sql created.
DROP FUNCTION aggd_note_received(text, date);
DROP TABLE partition_activity;
