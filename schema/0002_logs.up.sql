-- 0002_logs: the seed's system_logs, partitioned by month on created_at, the
-- partition helper, and aggd's ingest and archive bookkeeping tables.
-- No BEGIN/COMMIT: the migration runner wraps each file in one transaction.

-- The primary key must contain the partition key, hence (id, created_at).
-- Indexes are created on the parent: every partition gets its own copy.
-- No DEFAULT partition, ever (DESIGN.md, Partitions and archive): it would
-- forbid DETACH ... CONCURRENTLY and trap late rows. Nothing may reference
-- this table by foreign key: that would block detaching months.
CREATE TABLE system_logs (
    id                bigserial,
    level             varchar(20) NOT NULL,
    message           text NOT NULL,
    logger_name       varchar(255),
    module            varchar(255),
    function_name     varchar(255),
    line_number       integer,
    correlation_id    varchar(100),
    user_id           integer REFERENCES users (id) ON DELETE SET NULL,
    request_id        varchar(100),
    request_method    varchar(10),
    request_path      varchar(500),
    request_ip        varchar(45),
    duration_ms       integer,
    memory_usage_mb   double precision,
    exception_type    varchar(255),
    exception_message text,
    stack_trace       text,
    extra_data        jsonb,
    created_at        timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_system_logs_level ON system_logs (level);
CREATE INDEX idx_system_logs_correlation_id ON system_logs (correlation_id);
CREATE INDEX idx_system_logs_created_at ON system_logs (created_at);
CREATE INDEX idx_system_logs_user_id ON system_logs (user_id);

-- Creates, if missing, the month partition <p_parent>_YYYY_MM of the
-- partitioned table <p_parent> (a bare name, resolved through search_path;
-- the partition goes into the parent's schema) holding [first day of
-- p_month's month, first day of the next month), and returns its name.
-- Idempotent, and safe when two sessions race: the loser's duplicate_table or
-- unique_violation is caught and the name returned. When the partition
-- already exists it returns without locking the parent; creating one takes
-- an ACCESS EXCLUSIVE lock on the parent until commit, so callers should set
-- lock_timeout. Raises when p_parent is not a partitioned table, and when a
-- relation of the partition's name exists but is not a partition of p_parent
-- (e.g. a detached month still being archived).
CREATE FUNCTION aggd_create_month_partition(p_parent text, p_month date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_parent oid;
    v_schema name;
    v_from   date;
    v_to     date;
    v_name   text;
    v_part   oid;
BEGIN
    IF p_parent IS NULL OR p_month IS NULL THEN
        RAISE EXCEPTION 'partition parent and month must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    SELECT c.oid, n.nspname INTO v_parent, v_schema
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = to_regclass(format('%I', p_parent))
       AND c.relkind = 'p';
    IF NOT FOUND THEN
        RAISE EXCEPTION '"%" is not a partitioned table', p_parent
            USING ERRCODE = 'wrong_object_type';
    END IF;

    v_from := date_trunc('month', p_month)::date;
    v_to := (v_from + interval '1 month')::date;
    v_name := p_parent || '_' || to_char(v_from, 'YYYY_MM');
    IF octet_length(v_name) > 63 THEN
        RAISE EXCEPTION 'partition name "%" is longer than 63 bytes', v_name
            USING ERRCODE = 'name_too_long';
    END IF;

    v_part := to_regclass(format('%I.%I', v_schema, v_name));
    IF v_part IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM pg_inherits
                    WHERE inhrelid = v_part AND inhparent = v_parent) THEN
            RETURN v_name;
        END IF;
        RAISE EXCEPTION '"%" exists but is not a partition of "%"', v_name, p_parent
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    BEGIN
        -- Bounds as ISO dates: read the same whatever the session's DateStyle.
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
                       v_schema, v_name, v_schema, p_parent,
                       to_char(v_from, 'YYYY-MM-DD'), to_char(v_to, 'YYYY-MM-DD'));
    EXCEPTION
        WHEN duplicate_table OR unique_violation THEN
            NULL;   -- another session created it first
    END;
    RETURN v_name;
END
$$;

-- One row per ingest stream: the spool position whose events are committed.
-- The writer advances it in the same transaction as the COPY of the batch.
CREATE TABLE ingest_checkpoints (
    stream         varchar(100) PRIMARY KEY,
    position       bigint NOT NULL DEFAULT 0,
    committed_rows bigint NOT NULL DEFAULT 0,
    updated_at     timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

-- Events that could not be parsed or stored, kept raw for inspection.
CREATE TABLE ingest_rejects (
    id             bigserial PRIMARY KEY,
    received_at    timestamp NOT NULL,
    transport      varchar(20) NOT NULL,
    peer           varchar(100),
    error          text NOT NULL,
    raw            bytea NOT NULL,
    spool_position bigint,
    created_at     timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_ingest_rejects_created_at ON ingest_rejects (created_at);

-- One row per archived month of a partitioned table; state records the last
-- step done, so a crashed archive run resumes where it stopped.
CREATE TABLE partition_archives (
    id               serial PRIMARY KEY,
    table_name       varchar(63) NOT NULL,
    month            date NOT NULL,
    state            varchar(20) NOT NULL
                     CHECK (state IN ('detached', 'exported', 'verified', 'dropped',
                                      'restored', 'failed')),
    file_path        text,
    manifest_path    text,
    row_count        bigint,
    sha256           char(64),
    compressed_bytes bigint,
    min_created_at   timestamp,
    max_created_at   timestamp,
    min_id           bigint,
    max_id           bigint,
    error            text,
    created_at       timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at       timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    UNIQUE (table_name, month)
);

CREATE TRIGGER trg_ingest_checkpoints_updated_at BEFORE UPDATE ON ingest_checkpoints
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_partition_archives_updated_at BEFORE UPDATE ON partition_archives
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
