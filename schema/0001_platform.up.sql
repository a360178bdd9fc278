-- 0001_platform: the platform's core, advanced-feature, file-processing and
-- user-preference tables, exactly as seed/database-schema.md writes them.
--
-- Conventions (docs/schema.md): INTEGER PK -> serial; TIMESTAMP -> timestamp
-- without time zone holding UTC; NOT NULL only where the seed says so; the
-- only defaults beyond the seed are serial ids and created_at/updated_at =
-- now() in UTC. No CHECKs on seed tables: the API validates enums. ON DELETE
-- choices and their reasons are in docs/schema.md.
-- No BEGIN/COMMIT: the migration runner wraps each file in one transaction.

-- Keeps updated_at honest whatever client writes the row (aggd or the
-- platform's SQLAlchemy models).
CREATE FUNCTION aggd_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now() AT TIME ZONE 'UTC';
    RETURN NEW;
END
$$;

-- Core tables

CREATE TABLE users (
    id              serial PRIMARY KEY,
    email           varchar(255) NOT NULL UNIQUE,
    hashed_password varchar NOT NULL,
    full_name       varchar(255),
    role            varchar(50) NOT NULL,
    is_active       boolean DEFAULT true,
    is_verified     boolean DEFAULT false,
    created_at      timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at      timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_users_email ON users (email);
CREATE INDEX idx_users_role ON users (role);
CREATE INDEX idx_users_is_active ON users (is_active);

CREATE TABLE pipelines (
    id                    serial PRIMARY KEY,
    name                  varchar(255) NOT NULL,
    description           text,
    source_config         jsonb NOT NULL,
    transformation_config jsonb,
    destination_config    jsonb NOT NULL,
    schedule              varchar(100),
    is_active             boolean DEFAULT true,
    visual_definition     jsonb,
    owner_id              integer REFERENCES users (id) ON DELETE RESTRICT,
    created_at            timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at            timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_pipelines_owner_id ON pipelines (owner_id);
CREATE INDEX idx_pipelines_is_active ON pipelines (is_active);
CREATE INDEX idx_pipelines_name ON pipelines (name);

CREATE TABLE pipeline_runs (
    id                serial PRIMARY KEY,
    pipeline_id       integer REFERENCES pipelines (id) ON DELETE CASCADE,
    status            varchar(50) NOT NULL,
    started_at        timestamp,
    completed_at      timestamp,
    records_processed integer DEFAULT 0,
    error_message     text,
    execution_log     jsonb,
    created_at        timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_pipeline_runs_pipeline_id ON pipeline_runs (pipeline_id);
CREATE INDEX idx_pipeline_runs_status ON pipeline_runs (status);
CREATE INDEX idx_pipeline_runs_started_at ON pipeline_runs (started_at);
-- The seed's "Indexing Strategy" composite: runs of a pipeline by status.
CREATE INDEX idx_pipeline_runs_pipeline_id_status ON pipeline_runs (pipeline_id, status);

CREATE TABLE connectors (
    id             serial PRIMARY KEY,
    name           varchar(255) NOT NULL,
    connector_type varchar(100) NOT NULL,
    config         jsonb NOT NULL,
    is_active      boolean DEFAULT true,
    owner_id       integer REFERENCES users (id) ON DELETE RESTRICT,
    created_at     timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at     timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_connectors_owner_id ON connectors (owner_id);
CREATE INDEX idx_connectors_type ON connectors (connector_type);
CREATE INDEX idx_connectors_is_active ON connectors (is_active);

CREATE TABLE transformations (
    id                  serial PRIMARY KEY,
    name                varchar(255) NOT NULL,
    transformation_type varchar(100) NOT NULL,
    transformation_code text,
    config              jsonb,
    is_active           boolean DEFAULT true,
    owner_id            integer REFERENCES users (id) ON DELETE RESTRICT,
    created_at          timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at          timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_transformations_owner_id ON transformations (owner_id);
CREATE INDEX idx_transformations_type ON transformations (transformation_type);

-- Advanced feature tables

CREATE TABLE pipeline_templates (
    id              serial PRIMARY KEY,
    name            varchar(255) NOT NULL,
    description     text,
    category        varchar(100) NOT NULL,
    template_config jsonb NOT NULL,
    is_builtin      boolean DEFAULT false,
    is_public       boolean DEFAULT false,
    use_count       integer DEFAULT 0,
    tags            varchar[],
    owner_id        integer REFERENCES users (id) ON DELETE RESTRICT,
    created_at      timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at      timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_pipeline_templates_category ON pipeline_templates (category);
CREATE INDEX idx_pipeline_templates_is_builtin ON pipeline_templates (is_builtin);
CREATE INDEX idx_pipeline_templates_use_count ON pipeline_templates (use_count);

CREATE TABLE pipeline_versions (
    id                 serial PRIMARY KEY,
    pipeline_id        integer REFERENCES pipelines (id) ON DELETE CASCADE,
    version_number     integer NOT NULL,
    version_name       varchar(255),
    change_description text,
    snapshot           jsonb NOT NULL,
    is_active          boolean DEFAULT false,
    created_by         integer REFERENCES users (id) ON DELETE SET NULL,
    created_at         timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    UNIQUE (pipeline_id, version_number)
);
CREATE INDEX idx_pipeline_versions_pipeline_id ON pipeline_versions (pipeline_id);
CREATE INDEX idx_pipeline_versions_is_active ON pipeline_versions (is_active);
CREATE INDEX idx_pipeline_versions_version_number ON pipeline_versions (version_number);

CREATE TABLE transformation_functions (
    id            serial PRIMARY KEY,
    name          varchar(255) NOT NULL UNIQUE,
    display_name  varchar(255) NOT NULL,
    description   text,
    category      varchar(100) NOT NULL,
    function_type varchar(50) NOT NULL,
    function_code text NOT NULL,
    parameters    jsonb,
    example_usage text,
    is_builtin    boolean DEFAULT false,
    is_public     boolean DEFAULT false,
    use_count     integer DEFAULT 0,
    tags          varchar[],
    owner_id      integer REFERENCES users (id) ON DELETE RESTRICT,
    created_at    timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at    timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_transformation_functions_name ON transformation_functions (name);
CREATE INDEX idx_transformation_functions_category ON transformation_functions (category);
CREATE INDEX idx_transformation_functions_is_builtin ON transformation_functions (is_builtin);

CREATE TABLE schema_mappings (
    id                   serial PRIMARY KEY,
    name                 varchar(255) NOT NULL,
    source_schema        jsonb NOT NULL,
    destination_schema   jsonb NOT NULL,
    field_mappings       jsonb NOT NULL,
    transformation_rules jsonb,
    is_active            boolean DEFAULT true,
    owner_id             integer REFERENCES users (id) ON DELETE RESTRICT,
    created_at           timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at           timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_schema_mappings_owner_id ON schema_mappings (owner_id);

-- File processing tables

CREATE TABLE file_uploads (
    id              serial PRIMARY KEY,
    filename        varchar(255) NOT NULL,
    file_path       varchar(500) NOT NULL,
    file_type       varchar(50) NOT NULL,
    file_size       bigint NOT NULL,
    mime_type       varchar(100),
    file_hash       varchar(64),
    status          varchar(50) NOT NULL,
    upload_progress integer DEFAULT 0,
    total_chunks    integer DEFAULT 1,
    uploaded_chunks integer DEFAULT 0,
    metadata        jsonb,
    is_temporary    boolean DEFAULT true,
    expires_at      timestamp,
    owner_id        integer REFERENCES users (id) ON DELETE RESTRICT,
    pipeline_id     integer REFERENCES pipelines (id) ON DELETE SET NULL,
    created_at      timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at      timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_file_uploads_owner_id ON file_uploads (owner_id);
CREATE INDEX idx_file_uploads_pipeline_id ON file_uploads (pipeline_id);
CREATE INDEX idx_file_uploads_file_hash ON file_uploads (file_hash);
CREATE INDEX idx_file_uploads_expires_at ON file_uploads (expires_at);
CREATE INDEX idx_file_uploads_status ON file_uploads (status);

CREATE TABLE file_processing_jobs (
    id             serial PRIMARY KEY,
    file_id        integer REFERENCES file_uploads (id) ON DELETE CASCADE,
    job_type       varchar(100) NOT NULL,
    status         varchar(50) NOT NULL,
    progress       integer DEFAULT 0,
    result_data    jsonb,
    error_message  text,
    output_file_id integer REFERENCES file_uploads (id) ON DELETE SET NULL,
    created_at     timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    completed_at   timestamp
);
CREATE INDEX idx_file_processing_jobs_file_id ON file_processing_jobs (file_id);
CREATE INDEX idx_file_processing_jobs_status ON file_processing_jobs (status);

-- User preference tables

CREATE TABLE user_preferences (
    id                         serial PRIMARY KEY,
    user_id                    integer UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    theme                      varchar(20) DEFAULT 'light',
    language                   varchar(10) DEFAULT 'en',
    timezone                   varchar(50) DEFAULT 'UTC',
    date_format                varchar(20) DEFAULT 'YYYY-MM-DD',
    time_format                varchar(20) DEFAULT '24h',
    notifications_enabled      boolean DEFAULT true,
    email_notifications        boolean DEFAULT true,
    dashboard_refresh_interval integer DEFAULT 30,
    accessibility_mode         boolean DEFAULT false,
    custom_settings            jsonb,
    created_at                 timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at                 timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_user_preferences_user_id ON user_preferences (user_id);

CREATE TABLE dashboard_layouts (
    id            serial PRIMARY KEY,
    user_id       integer REFERENCES users (id) ON DELETE CASCADE,
    name          varchar(255) NOT NULL,
    description   text,
    layout_config jsonb NOT NULL,
    is_default    boolean DEFAULT false,
    is_shared     boolean DEFAULT false,
    version       integer DEFAULT 1,
    created_at    timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at    timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_dashboard_layouts_user_id ON dashboard_layouts (user_id);
CREATE INDEX idx_dashboard_layouts_is_default ON dashboard_layouts (is_default);

-- updated_at triggers: every table above with an updated_at column.

CREATE TRIGGER trg_users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_pipelines_updated_at BEFORE UPDATE ON pipelines
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_connectors_updated_at BEFORE UPDATE ON connectors
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_transformations_updated_at BEFORE UPDATE ON transformations
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_pipeline_templates_updated_at BEFORE UPDATE ON pipeline_templates
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_transformation_functions_updated_at BEFORE UPDATE ON transformation_functions
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_schema_mappings_updated_at BEFORE UPDATE ON schema_mappings
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_file_uploads_updated_at BEFORE UPDATE ON file_uploads
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_user_preferences_updated_at BEFORE UPDATE ON user_preferences
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_dashboard_layouts_updated_at BEFORE UPDATE ON dashboard_layouts
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
