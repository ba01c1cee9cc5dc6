#!/bin/sh
# One-shot (service temporal-schema): creates Temporal's databases on the
# first start and applies schema upgrades on every later one.
set -eu
SQL_PASSWORD=$(cat /run/secrets/temporal_db_password)
export SQL_PASSWORD
tool() { temporal-sql-tool --plugin postgres12 --ep postgresql -p 5432 -u temporal "$@"; }
schema=/etc/temporal/schema/postgresql/v12
for db in temporal temporal_visibility; do
  dir=temporal
  [ "$db" = temporal_visibility ] && dir=visibility
  # create-database and setup-schema -v 0.0 fail once done; update-schema
  # below fails if they really failed.
  tool --db "$db" create-database 2>/dev/null || echo "database $db exists"
  tool --db "$db" setup-schema -v 0.0 2>/dev/null || echo "schema of $db is set up"
  tool --db "$db" update-schema -d "$schema/$dir/versioned"
done
echo "Temporal schema is up to date"
