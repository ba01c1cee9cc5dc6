ALTER TABLE links DROP COLUMN idempotency_request_hash;
