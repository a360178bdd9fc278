-- 0004_auth: API and ingest tokens. A token is 32 random bytes shown once;
-- only its hex SHA-256 is stored. scopes holds 'ingest' and/or 'api'.
-- No BEGIN/COMMIT: the migration runner wraps each file in one transaction.

CREATE TABLE api_tokens (
    id           serial PRIMARY KEY,
    user_id      integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         varchar(255),
    token_hash   varchar(64) NOT NULL UNIQUE,
    scopes       varchar(20)[] NOT NULL,
    expires_at   timestamp,
    last_used_at timestamp,
    revoked_at   timestamp,
    created_at   timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX idx_api_tokens_user_id ON api_tokens (user_id);
