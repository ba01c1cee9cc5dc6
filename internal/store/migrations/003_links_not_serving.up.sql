-- The gateway polls, every second, the links whose status means "serve no
-- token" (store.LinksNotServing); this index keeps that poll off the rest
-- of the table however many links there are.
CREATE INDEX links_not_serving_updated_idx ON links (updated_at)
    WHERE status IN ('reauth_required', 'failed', 'revoked');
