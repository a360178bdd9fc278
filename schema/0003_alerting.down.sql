-- 0003_alerting down: drops everything 0003_alerting.up.sql created, children
-- before parents. Dropping alerts drops all its month partitions. No CASCADE
-- (see 0001 down).

DROP TABLE alert_notifications;
DROP TABLE alert_rule_state;
DROP TABLE alerts;
DROP TABLE alert_rules;
DROP TABLE notification_endpoints;
DROP TABLE alert_escalation_policies;
