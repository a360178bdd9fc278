-- 0004_auth down: drops everything 0004_auth.up.sql created.

DROP TABLE api_tokens;
