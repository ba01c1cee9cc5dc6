-- OpenID Connect sign-ins are checked at the exchange (ID tokens):
--   oauth_states.nonce  the nonce the authorization request sent; the ID
--                       token must carry it back. Not a secret (it rides
--                       in the authorization URL), but single-use like
--                       the state. NULL for providers without ID tokens.
--   links.subject       the sub claim of the link's verified ID token:
--                       who consented, as a stable ID at the provider. A
--                       re-authorization by another end-user is refused
--                       unless the caller allows it. NULL until known.
ALTER TABLE oauth_states
    ADD COLUMN nonce text CHECK (nonce IS NULL OR char_length(nonce) <= 200);
ALTER TABLE links
    ADD COLUMN subject text CHECK (subject IS NULL OR char_length(subject) <= 255);
