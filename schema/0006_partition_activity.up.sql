-- 0006_partition_activity: when each month of system_logs and alerts last received
-- rows, on PostgreSQL's clock, so maintenance never archives a month still being
-- written (partitions.archive_grace_hours; docs/partitions.md, Grace).
-- No BEGIN/COMMIT: the migration runner wraps each file in one transaction.

-- One row per (table, month). aggd's writers note a month before their COPY into it
-- (at most once a minute per writer thread and month), the alert engine before it
-- inserts an alert. Rows inserted by other means than aggd are not noted.
CREATE TABLE partition_activity (
    table_name       varchar(63) NOT NULL,
    month            date NOT NULL,
    last_received_at timestamp NOT NULL,
    PRIMARY KEY (table_name, month)
);

-- Notes that <p_table>'s month of <p_month> receives rows now (PostgreSQL's clock,
-- UTC; the latest note wins, so a clock set back does not pin a month forever).
CREATE FUNCTION aggd_note_received(p_table text, p_month date) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO partition_activity (table_name, month, last_received_at)
    VALUES (p_table, date_trunc('month', p_month)::date, now() AT TIME ZONE 'UTC')
    ON CONFLICT (table_name, month)
    DO UPDATE SET last_received_at = excluded.last_received_at
$$;
