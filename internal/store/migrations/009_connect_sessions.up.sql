-- Connect sessions: a backend asks for one (POST /v1/connect/sessions) and
-- hands its token to its frontend; the end-user's browser opens the
-- gateway's connect page with it and picks a provider. The token is a
-- bearer capability that travels through the browser, so only its SHA-256
-- is kept, as for API keys and OAuth states.
--   id         the session's public name (not a secret): logs, the API;
--   providers  the providers the page may offer (never empty: the gateway
--              fills in the catalog's when the caller names none);
--   link_id    set for a reconnect: the session re-authorizes that link;
--   scopes     for a new link, its scopes (empty: the provider's); for a
--              reconnect, the scopes to add (incremental consent);
--   used_at    when the end-user committed a choice: a session is spent
--              once, by one conditional UPDATE.
CREATE TABLE connect_sessions (
    hash       bytea       PRIMARY KEY CHECK (octet_length(hash) = 32),
    id         text        NOT NULL UNIQUE CHECK (id <> '' AND char_length(id) <= 64),
    tenant_id  text        NOT NULL REFERENCES tenants (id),
    user_id    text        NOT NULL CHECK (user_id <> '' AND char_length(user_id) <= 200),
    providers  text[]      NOT NULL CHECK (cardinality(providers) > 0),
    return_url text        CHECK (return_url IS NULL OR char_length(return_url) <= 2000),
    link_id    text,
    scopes     text[]      NOT NULL DEFAULT '{}',
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT connect_sessions_link_fkey FOREIGN KEY (tenant_id, link_id) REFERENCES links (tenant_id, id) ON DELETE CASCADE
);

-- Purging expired sessions.
CREATE INDEX connect_sessions_expires_idx ON connect_sessions (expires_at);
