-- 0003_alerting: the seed's alert_rules and alerts (alerts partitioned by
-- month on created_at), the escalation policies and notification endpoints
-- the seed refers to but does not define, and aggd's rule state and
-- notification outbox (DESIGN.md, Rules).
-- No BEGIN/COMMIT: the migration runner wraps each file in one transaction.

-- levels: [{"after_minutes": N, "channels": ["email", "slack:ops", ...]}, ...]
CREATE TABLE alert_escalation_policies (
    id           serial PRIMARY KEY,
    name         varchar(255) NOT NULL,
    description  text,
    levels       jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(levels) = 'array'),
    repeat_count integer NOT NULL DEFAULT 0 CHECK (repeat_count >= 0),
    is_active    boolean DEFAULT true,
    owner_id     integer REFERENCES users (id) ON DELETE RESTRICT,
    created_at   timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at   timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

-- secret: "whsec_<base64 key>", the Standard Webhooks signing key.
CREATE TABLE notification_endpoints (
    id         serial PRIMARY KEY,
    name       varchar(255) NOT NULL UNIQUE,
    kind       varchar(20) NOT NULL CHECK (kind IN ('email', 'slack', 'webhook')),
    target     text NOT NULL,
    secret     text,
    is_active  boolean DEFAULT true,
    owner_id   integer REFERENCES users (id) ON DELETE RESTRICT,
    created_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

-- The seed's alert_rules, plus aggd's for_seconds and keep_firing_seconds.
CREATE TABLE alert_rules (
    id                    serial PRIMARY KEY,
    name                  varchar(255) NOT NULL,
    description           text,
    metric                varchar(100) NOT NULL,
    threshold             double precision NOT NULL,
    operator              varchar(20) NOT NULL,
    severity              varchar(20) NOT NULL,
    is_active             boolean DEFAULT true,
    cooldown_minutes      integer DEFAULT 60,
    notification_channels varchar[],
    escalation_policy_id  integer REFERENCES alert_escalation_policies (id) ON DELETE RESTRICT,
    owner_id              integer REFERENCES users (id) ON DELETE RESTRICT,
    created_at            timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at            timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    for_seconds           integer NOT NULL DEFAULT 0 CHECK (for_seconds >= 0),
    keep_firing_seconds   integer NOT NULL DEFAULT 0 CHECK (keep_firing_seconds >= 0)
);
CREATE INDEX idx_alert_rules_is_active ON alert_rules (is_active);
CREATE INDEX idx_alert_rules_metric ON alert_rules (metric);

-- Partitioned like system_logs (see 0002_logs): PK (id, created_at), indexes
-- on the parent, no DEFAULT partition, no foreign key pointing into it.
CREATE TABLE alerts (
    id                 serial,
    rule_id            integer REFERENCES alert_rules (id) ON DELETE RESTRICT,
    severity           varchar(20) NOT NULL,
    status             varchar(20) NOT NULL,
    metric_value       double precision NOT NULL,
    message            text NOT NULL,
    context            jsonb,
    acknowledged_by    integer REFERENCES users (id) ON DELETE SET NULL,
    acknowledged_at    timestamp,
    resolved_by        integer REFERENCES users (id) ON DELETE SET NULL,
    resolved_at        timestamp,
    resolution_type    varchar(20),
    escalation_level   integer DEFAULT 0,
    last_escalated_at  timestamp,
    notifications_sent jsonb,
    created_at         timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at         timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_alerts_rule_id ON alerts (rule_id);
CREATE INDEX idx_alerts_status ON alerts (status);
CREATE INDEX idx_alerts_severity ON alerts (severity);
CREATE INDEX idx_alerts_created_at ON alerts (created_at);

-- The evaluator's per-rule state, so a restart neither forgets nor repeats.
-- (alert_id, alert_created_at) is the open alert: plain columns, since alerts
-- is partitioned and must stay detachable.
CREATE TABLE alert_rule_state (
    rule_id          integer PRIMARY KEY REFERENCES alert_rules (id) ON DELETE CASCADE,
    state            varchar(20) NOT NULL DEFAULT 'ok'
                     CHECK (state IN ('ok', 'pending', 'firing', 'recovering')),
    since            timestamp NOT NULL,
    alert_id         integer,
    alert_created_at timestamp,
    last_value       double precision,
    last_eval_at     timestamp,
    last_notified_at timestamp,
    updated_at       timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

-- The durable notification outbox: one row per notice and target, written in
-- the transaction of the state change that causes it. message_id is stable
-- across retries (the webhook-id / Message-ID). alert_id, alert_created_at
-- and rule_id are plain columns, for the same reason as in alert_rule_state.
CREATE TABLE alert_notifications (
    id               bigserial PRIMARY KEY,
    message_id       varchar(64) NOT NULL UNIQUE,
    alert_id         integer NOT NULL,
    alert_created_at timestamp NOT NULL,
    rule_id          integer,
    notice           varchar(20) NOT NULL
                     CHECK (notice IN ('firing', 'resolved', 'escalation', 'repeat')),
    channel          varchar(20) NOT NULL CHECK (channel IN ('email', 'slack', 'webhook')),
    endpoint_id      integer REFERENCES notification_endpoints (id) ON DELETE SET NULL,
    target           text NOT NULL,
    status           varchar(20) NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamp NOT NULL,
    last_result      text,
    last_status      integer,
    payload          jsonb,
    created_at       timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at       timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_alert_notifications_status_next_attempt_at
    ON alert_notifications (status, next_attempt_at);
CREATE INDEX idx_alert_notifications_alert_id ON alert_notifications (alert_id);

-- A BEFORE ROW trigger on the partitioned alerts is cloned onto every
-- partition, present and future.
CREATE TRIGGER trg_alert_escalation_policies_updated_at BEFORE UPDATE ON alert_escalation_policies
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_notification_endpoints_updated_at BEFORE UPDATE ON notification_endpoints
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_alert_rules_updated_at BEFORE UPDATE ON alert_rules
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_alerts_updated_at BEFORE UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_alert_rule_state_updated_at BEFORE UPDATE ON alert_rule_state
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
CREATE TRIGGER trg_alert_notifications_updated_at BEFORE UPDATE ON alert_notifications
    FOR EACH ROW EXECUTE FUNCTION aggd_set_updated_at();
