-- A replayed POST /v1/links (same Idempotency-Key) must be the same
-- request. The gateway keeps a salted, iterated hash of the whole request
-- (credentials included, so never a plain digest) with the link, and
-- answers a replay whose hash differs with 422. Links created before this
-- migration have none and are compared on provider, user and grant only.
ALTER TABLE links ADD COLUMN idempotency_request_hash bytea;
