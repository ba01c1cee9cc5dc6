ALTER TABLE links DROP COLUMN subject;
ALTER TABLE oauth_states DROP COLUMN nonce;
