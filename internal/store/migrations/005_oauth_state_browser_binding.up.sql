-- Providers that may drop the OAuth state (redirect_state: path) carry it
-- in the redirect URI's path, and bind the flow to the browser that
-- started it: the gateway's start page sets a random cookie, of which only
-- the hash is kept, and the callback requires it.
--   browser_bound  the state is of that kind: only the bound callback may
--                  consume it;
--   auth_url       the provider's consent URL with a placeholder for the
--                  state (so that the state itself is still never stored);
--   started_at     when the start page bound a browser (once per state);
--   binding_hash   SHA-256 of that browser's cookie.
ALTER TABLE oauth_states
    ADD COLUMN browser_bound boolean NOT NULL DEFAULT false,
    ADD COLUMN auth_url      text,
    ADD COLUMN started_at    timestamptz,
    ADD COLUMN binding_hash  bytea CHECK (binding_hash IS NULL OR octet_length(binding_hash) = 32);
