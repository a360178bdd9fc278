-- 0007_catalog down: drops everything 0007_catalog.up.sql created (the defaults it
-- cleared stay cleared).
DROP TRIGGER trg_dashboard_layouts_version ON dashboard_layouts;
DROP FUNCTION aggd_dashboard_layout_version();
DROP INDEX dashboard_layouts_is_default_key;
DROP FUNCTION aggd_mask_secrets(jsonb);
