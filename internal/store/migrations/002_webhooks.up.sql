-- One webhook endpoint per tenant. Its HMAC signing secret lives in Vault
-- (<prefix>/webhooks/<tenant>), never here: a database dump must not let
-- anyone forge events.

CREATE TABLE webhooks (
    tenant_id  text        PRIMARY KEY REFERENCES tenants (id),
    url        text        NOT NULL CHECK (url <> '' AND char_length(url) <= 2000),
    -- Event types to deliver; empty means every type, including types
    -- added later.
    events     text[]      NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
