-- 0005_alert_notify: what the alert engine needs from the database beyond tables.
-- * NOTIFY aggd_rules on any change to alert_rules, alert_escalation_policies or
--   notification_endpoints, so a running aggd reloads its rules at once (it also
--   reloads on a timer, for changes made while it was not listening).
-- * aggd_alert_targets(channels, owner): the targets of notification channels
--   (DESIGN.md, Schema, last paragraph), in one place for firing and escalation.
-- No BEGIN/COMMIT: the migration runner wraps each file in one transaction.

CREATE FUNCTION aggd_notify_rules() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aggd_rules', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_alert_rules_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON alert_rules FOR EACH STATEMENT EXECUTE FUNCTION aggd_notify_rules();
CREATE TRIGGER trg_alert_escalation_policies_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON alert_escalation_policies FOR EACH STATEMENT EXECUTE FUNCTION aggd_notify_rules();
CREATE TRIGGER trg_notification_endpoints_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON notification_endpoints FOR EACH STATEMENT EXECUTE FUNCTION aggd_notify_rules();

-- Channels are a kind ('email', 'slack', 'webhook': every active endpoint of that
-- kind; 'email' also the owner's address when their preferences allow, a missing
-- preferences row meaning the seed default, on) or 'kind:name' (that endpoint, when
-- active). One row per distinct target; unknown channels give nothing.
CREATE FUNCTION aggd_alert_targets(p_channels text[], p_owner integer)
RETURNS TABLE (channel text, endpoint_id integer, target text)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (t.channel, t.target) t.channel, t.endpoint_id, t.target
      FROM (SELECT e.kind::text AS channel, e.id AS endpoint_id, e.target
              FROM notification_endpoints e
             WHERE e.is_active IS NOT FALSE
               AND (e.kind = ANY (p_channels) OR e.kind || ':' || e.name = ANY (p_channels))
            UNION ALL
            SELECT 'email', NULL, u.email
              FROM users u
              LEFT JOIN user_preferences p ON p.user_id = u.id
             WHERE u.id = p_owner AND 'email' = ANY (p_channels)
               AND u.is_active IS NOT FALSE
               AND coalesce(p.email_notifications, true)) t
     ORDER BY t.channel, t.target, t.endpoint_id NULLS LAST
$$;
