#!/usr/bin/env bash
# Makes sure PostgreSQL's server programs (initdb, postgres) are there, for
# `make dev` and `make test`. They come from Debian's packages; devstack
# also looks in /usr/lib/postgresql/*/bin, where Debian keeps them off PATH.
set -euo pipefail
if command -v initdb >/dev/null || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "postgres: installing PostgreSQL from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
else
  echo "postgres: PostgreSQL server programs (initdb, postgres) not found: install PostgreSQL 15 (apt-get install postgresql)" >&2
  exit 1
fi
