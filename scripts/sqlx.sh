#!/usr/bin/env bash
# The compile-time checked queries' offline data (.sqlx/), against a database migrated
# from scratch:
#
#   scripts/sqlx.sh check     # .sqlx/ agrees with the migrations and every query (lint)
#   scripts/sqlx.sh prepare   # regenerate .sqlx/ after changing a query or a migration
#
# Builds use .sqlx/ (SQLX_OFFLINE=true in .cargo/config.toml), so they need no database.
# Needs sqlx-cli (`just sqlx-cli` installs it) and the local Postgres.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-check}"
server="${SQLX_SERVER_URL:-postgres://postgres@127.0.0.1:5432}"
export DATABASE_URL="$server/foodseg_sqlx_$$"

sqlx database create
trap 'sqlx database drop -y -f >/dev/null 2>&1 || true' EXIT
sqlx migrate run --source migrations >/dev/null

case "$mode" in
  check) cargo sqlx prepare --workspace --check -- --all-targets ;;
  prepare) cargo sqlx prepare --workspace -- --all-targets ;;
  *) echo "usage: scripts/sqlx.sh check|prepare" >&2; exit 2 ;;
esac
