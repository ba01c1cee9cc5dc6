#!/usr/bin/env bash
# Creates the database passwords of the compose stack in ./secrets (random,
# never printed) and the engine's pgpass file. Existing files are kept, so a
# re-run never changes a password PostgreSQL already has. The AppRole files
# (tokenwarden_role_id, tokenwarden_secret_id of the worker,
# tokenwarden_gateway_role_id, tokenwarden_gateway_secret_id of the
# gateway) come from Vault after its init: README.md, "Vault".
set -euo pipefail
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 0700 secrets
gen() {
  local f=secrets/$1
  if [[ ! -s $f ]]; then
    head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$f"
    echo "created $f"
  fi
}
gen postgres_password
gen temporal_db_password
gen tokenwarden_db_password
printf 'postgresql:5432:tokenwarden:tokenwarden:%s\n' "$(cat secrets/tokenwarden_db_password)" >secrets/tokenwarden_pgpass
# Bind-mounted secrets keep these modes: the containers' non-root users
# (postgres, temporal, vault, 65532) must read them; the 0700 directory
# keeps other users of this machine out.
touch secrets/tokenwarden_role_id secrets/tokenwarden_secret_id \
  secrets/tokenwarden_gateway_role_id secrets/tokenwarden_gateway_secret_id
chmod 0644 secrets/*
echo "secrets in $(pwd)/secrets; fill the AppRole files (tokenwarden_*role_id, tokenwarden_*secret_id) after Vault's init (README.md)"
