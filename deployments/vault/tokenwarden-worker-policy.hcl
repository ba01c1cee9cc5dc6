# Policy of the worker's Vault identity (AppRole "tokenwarden-worker"): the
# full life-cycle of the engine's secrets under secret/tokenwarden/ in the
# KV v2 mount "secret", and nothing else. The worker is the one process that
# reads refresh tokens and stored credentials (passwords, codes); it also
# moves the secrets of the earlier layout (one secret per link under
# tokens/ and grants/) to the per-link layout (links/), listing the tree to
# find them. The internet-facing
# gateway has a policy of its own, tokenwarden-gateway-policy.hcl.
#
# Loaded by the dev stack from this file (embedded into the binary by
# policy.go); production operators load the same file with
#   vault policy write tokenwarden-worker tokenwarden-worker-policy.hcl
# (another mount or prefix: replace "secret/" and "tokenwarden" in the
# paths below).

path "secret/data/tokenwarden/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "secret/metadata/tokenwarden/*" {
  capabilities = ["read", "update", "delete", "list"]
}

# Listing the top of the tree needs the folder itself, without the glob.
path "secret/metadata/tokenwarden" {
  capabilities = ["list"]
}

# Soft-delete and undelete of chosen versions, and destroying a version's
# data for good when a link is revoked.
path "secret/delete/tokenwarden/*" {
  capabilities = ["update"]
}

path "secret/undelete/tokenwarden/*" {
  capabilities = ["update"]
}

path "secret/destroy/tokenwarden/*" {
  capabilities = ["update"]
}
