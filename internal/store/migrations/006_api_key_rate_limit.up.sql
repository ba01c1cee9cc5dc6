-- A per-key override of the gateway's request rate limit (requests per
-- second); NULL keeps the gateway's default (-rate-limit).
ALTER TABLE api_keys ADD COLUMN rate_limit double precision CHECK (rate_limit IS NULL OR rate_limit > 0);
