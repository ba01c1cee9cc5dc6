# Policy of the gateway's Vault identity (AppRole "tokenwarden-gateway"). The
# gateway faces the internet, so it gets what its requests need and no
# more: it reads access tokens, never a refresh token, ID token, password
# or authorization code. Each link keeps its secrets in four KV v2 secrets
# under secret/tokenwarden/links/<tenant>/<link>/:
#
#   access   the access token, its type, expiry and scopes   gateway: read
#   refresh  the whole token, refresh and ID token included  gateway: none
#   request  the authorization request the gateway built:    gateway: read, write
#            grant type, scopes, params, PKCE verifier,
#            nonce, redirect URI (no credential)
#   grant    the whole grant material: passwords, codes,     gateway: write only
#            device codes (handed to the worker)
#
# The earlier layout (one secret per link at tokens/<tenant>/<link> and
# grants/<tenant>/<link>) is not granted at all: the worker moves it
# (`tokenwarden migrate -vault`, and every worker at its start).
#
# Loaded by the dev stack from this file (embedded into the binary by
# policy.go); production operators load the same file with
#   vault policy write tokenwarden-gateway tokenwarden-gateway-policy.hcl
# (another mount or prefix: replace "secret/" and "tokenwarden" in the
# paths below).

# The token read: one Vault read of the hot path.
path "secret/data/tokenwarden/links/+/+/access" {
  capabilities = ["read"]
}

# Read back on a replayed link creation, a re-authorization and the OAuth
# callback, which completes the grant with the code.
path "secret/data/tokenwarden/links/+/+/request" {
  capabilities = ["create", "read", "update"]
}

# Grant material for the worker: written on link creation,
# re-authorization and callback, never read back.
path "secret/data/tokenwarden/links/+/+/grant" {
  capabilities = ["create", "update"]
}

# Wiping the secrets of a link whose workflow has ended (revoke). Deleting
# metadata destroys every version; it reveals nothing.
path "secret/metadata/tokenwarden/links/+/+/*" {
  capabilities = ["delete"]
}

# Webhook signing secrets: made, shown once, rotated and deleted through
# the API.
path "secret/data/tokenwarden/webhooks/*" {
  capabilities = ["create", "read", "update"]
}

path "secret/metadata/tokenwarden/webhooks/*" {
  capabilities = ["delete"]
}

# The catalog's client secrets (authorization URLs, device authorization,
# token verification) and the payload codec keys.
path "secret/data/tokenwarden/providers/*" {
  capabilities = ["read"]
}

path "secret/data/tokenwarden/codec" {
  capabilities = ["read"]
}
