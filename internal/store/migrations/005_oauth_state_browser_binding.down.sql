ALTER TABLE oauth_states
    DROP COLUMN binding_hash,
    DROP COLUMN started_at,
    DROP COLUMN auth_url,
    DROP COLUMN browser_bound;
