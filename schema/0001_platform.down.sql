-- 0001_platform down: drops everything 0001_platform.up.sql created, children
-- before parents. Dropping a table drops its indexes, triggers and serial
-- sequences. No CASCADE: anything unexpected depending on these objects makes
-- the migration fail instead of being silently destroyed.

DROP TABLE dashboard_layouts;
DROP TABLE user_preferences;
DROP TABLE file_processing_jobs;
DROP TABLE file_uploads;
DROP TABLE schema_mappings;
DROP TABLE transformation_functions;
DROP TABLE pipeline_versions;
DROP TABLE pipeline_templates;
DROP TABLE transformations;
DROP TABLE connectors;
DROP TABLE pipeline_runs;
DROP TABLE pipelines;
DROP TABLE users;

DROP FUNCTION aggd_set_updated_at();
