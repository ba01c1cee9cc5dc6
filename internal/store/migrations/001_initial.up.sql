-- Tokenwarden's metadata and audit trail. Token material never lands here:
-- it lives in Vault, and rows only carry the Vault path that holds it.

CREATE TABLE tenants (
    id         text        PRIMARY KEY CHECK (id <> '' AND char_length(id) <= 128),
    name       text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Single-tenant deployments need a tenant before the first API key exists.
INSERT INTO tenants (id, name) VALUES ('default', 'Default tenant');

CREATE TABLE api_keys (
    id           text        PRIMARY KEY,
    tenant_id    text        NOT NULL REFERENCES tenants (id),
    name         text        NOT NULL DEFAULT '',
    -- First characters of the key, enough for a human to tell keys apart.
    prefix       text        NOT NULL,
    -- SHA-256 of the whole key; the key itself is shown once and forgotten.
    hash         bytea       NOT NULL CHECK (octet_length(hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CONSTRAINT api_keys_hash_key UNIQUE (hash)
);

CREATE INDEX api_keys_tenant_created_idx ON api_keys (tenant_id, created_at, id);

CREATE TABLE links (
    id                 text        PRIMARY KEY,
    tenant_id          text        NOT NULL REFERENCES tenants (id),
    provider           text        NOT NULL CHECK (provider <> ''),
    user_id            text        NOT NULL CHECK (user_id <> ''),
    grant_type         text        NOT NULL CHECK (grant_type <> ''),
    scopes             text[]      NOT NULL DEFAULT '{}',
    status             text        NOT NULL CHECK (status <> ''),
    vault_path         text        NOT NULL CHECK (vault_path <> ''),
    -- Non-secret provider extras only.
    metadata           jsonb       NOT NULL DEFAULT '{}',
    expires_at         timestamptz,
    refresh_expires_at timestamptz,
    next_refresh_at    timestamptz,
    last_error         text,
    refresh_count      integer     NOT NULL DEFAULT 0 CHECK (refresh_count >= 0),
    -- Sequence number of the workflow state last written. Updates carry a
    -- higher one, so a retried or delayed activity cannot roll state back.
    state_seq          bigint      NOT NULL DEFAULT 0,
    idempotency_key    text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- NULL keys are distinct, so links created without a key never collide.
    CONSTRAINT links_tenant_idempotency_key UNIQUE (tenant_id, idempotency_key),
    -- Lets child tables reference (tenant_id, id), so a child row can never
    -- claim a tenant other than its link's.
    CONSTRAINT links_tenant_id_key UNIQUE (tenant_id, id)
);

-- Keyset pagination by (created_at, id) within a tenant, with or without
-- one equality filter.
CREATE INDEX links_tenant_created_idx ON links (tenant_id, created_at, id);
CREATE INDEX links_tenant_provider_created_idx ON links (tenant_id, provider, created_at, id);
CREATE INDEX links_tenant_status_created_idx ON links (tenant_id, status, created_at, id);
CREATE INDEX links_tenant_user_created_idx ON links (tenant_id, user_id, created_at, id);

CREATE TABLE link_events (
    -- Chosen by the caller and deterministic (workflow ID + sequence), so a
    -- retried activity re-inserts the same ID and is ignored.
    id          text        PRIMARY KEY CHECK (id <> ''),
    link_id     text        NOT NULL,
    tenant_id   text        NOT NULL,
    type        text        NOT NULL CHECK (type <> ''),
    from_status text,
    to_status   text,
    detail      jsonb       NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL DEFAULT now(),
    -- No cascade (nor from tenants): deleting a link or tenant must not
    -- silently erase the audit trail; purging it is a deliberate act.
    CONSTRAINT link_events_link_fkey FOREIGN KEY (tenant_id, link_id) REFERENCES links (tenant_id, id)
);

CREATE INDEX link_events_link_occurred_idx ON link_events (tenant_id, link_id, occurred_at, id);

CREATE TABLE oauth_states (
    -- SHA-256 of the state parameter. The value travels through the user's
    -- browser and is a bearer capability for the callback, so only its hash
    -- is kept.
    hash       bytea       PRIMARY KEY CHECK (octet_length(hash) = 32),
    link_id    text        NOT NULL,
    tenant_id  text        NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    return_url text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT oauth_states_link_fkey FOREIGN KEY (tenant_id, link_id) REFERENCES links (tenant_id, id) ON DELETE CASCADE
);

-- Purging expired states.
CREATE INDEX oauth_states_expires_idx ON oauth_states (expires_at);
