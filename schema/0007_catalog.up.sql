-- 0007_catalog: what the API's connectors and dashboard layouts need of the database
-- (api/connectors.c, api/layouts.c; docs/catalog.md).
-- No BEGIN/COMMIT: the migration runner wraps each file in one transaction.

-- Connectors: <v> with every stored secret (an object {"$aggd_secret": "v1:…"} that
-- aggd wrote in place of a secret leaf) replaced by the string "***". Answers show
-- this, never the stored form.
CREATE FUNCTION aggd_mask_secrets(v jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    IF jsonb_typeof(v) = 'object' THEN
        IF v ? '$aggd_secret' AND (SELECT count(*) FROM jsonb_object_keys(v)) = 1 THEN
            RETURN '"***"'::jsonb;
        END IF;
        RETURN (SELECT coalesce(jsonb_object_agg(e.key, aggd_mask_secrets(e.value)), '{}')
                  FROM jsonb_each(v) AS e);
    ELSIF jsonb_typeof(v) = 'array' THEN
        RETURN (SELECT coalesce(jsonb_agg(aggd_mask_secrets(e.value) ORDER BY e.n), '[]')
                  FROM jsonb_array_elements(v) WITH ORDINALITY AS e(value, n));
    END IF;
    RETURN v;
END
$$;

-- Dashboard layouts: one default per user. Rows from before this migration keep the
-- newest of their user's defaults.
UPDATE dashboard_layouts d SET is_default = false
 WHERE is_default AND EXISTS (SELECT 1 FROM dashboard_layouts o
                               WHERE o.user_id = d.user_id AND o.is_default AND o.id > d.id);
CREATE UNIQUE INDEX dashboard_layouts_is_default_key ON dashboard_layouts (user_id)
    WHERE is_default;

-- Dashboard layouts: version counts the updates that changed something (any column
-- but version and updated_at); whatever an UPDATE says about version is ignored.
CREATE FUNCTION aggd_dashboard_layout_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version;
    IF to_jsonb(NEW) - 'version' - 'updated_at' IS DISTINCT FROM
       to_jsonb(OLD) - 'version' - 'updated_at' THEN
        NEW.version := coalesce(OLD.version, 1) + 1;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER trg_dashboard_layouts_version BEFORE UPDATE ON dashboard_layouts
    FOR EACH ROW EXECUTE FUNCTION aggd_dashboard_layout_version();
