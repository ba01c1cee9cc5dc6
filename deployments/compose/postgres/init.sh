#!/bin/sh
# Runs once, when the postgres-data volume is empty: the roles of Temporal
# and Tokenwarden, with passwords from compose secret files, and
# Tokenwarden's database (Temporal creates its own: temporal-schema).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v tw_password="$(cat /run/secrets/tokenwarden_db_password)" \
  -v temporal_password="$(cat /run/secrets/temporal_db_password)" <<'SQL'
CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_password';
CREATE ROLE tokenwarden LOGIN PASSWORD :'tw_password';
CREATE DATABASE tokenwarden OWNER tokenwarden;
SQL
