-- 0005_alert_notify down: the targets function and the reload triggers.
DROP FUNCTION aggd_alert_targets(text[], integer);
DROP TRIGGER trg_notification_endpoints_notify ON notification_endpoints;
DROP TRIGGER trg_alert_escalation_policies_notify ON alert_escalation_policies;
DROP TRIGGER trg_alert_rules_notify ON alert_rules;
DROP FUNCTION aggd_notify_rules();
