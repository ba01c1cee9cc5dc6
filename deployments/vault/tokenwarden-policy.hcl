# Policy of the engine's own Vault identity (AppRole "tokenwarden"): full
# life-cycle of secrets under secret/tokenwarden/ in the KV v2 mount "secret",
# and nothing else. Loaded by the dev stack from this file (embedded into the
# binary by policy.go); production operators load the same file with
#   vault policy write tokenwarden tokenwarden-policy.hcl

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
