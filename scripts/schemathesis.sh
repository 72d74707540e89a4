#!/usr/bin/env bash
# Schemathesis against a live api: the api binary on a throwaway database and its own
# NATS subjects, an operator key so the guarded routes are exercised too, and a bounded
# number of generated requests per operation. Passes when no answer is a 5xx and every
# answer (status, content type, body) matches the OpenAPI document.
#
#   scripts/schemathesis.sh [max-examples]      # default 25
#
# Needs the local Postgres and NATS (`just services`), python3, and target/debug/foodseg-api
# (built by `cargo test` / `cargo build -p foodseg-api`). Schemathesis is installed from
# PyPI into .cache/schemathesis-venv once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

examples="${1:-25}"
venv=.cache/schemathesis-venv
if [[ ! -x "$venv/bin/st" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis==4.32.5'
fi

server="${SCHEMATHESIS_SERVER_URL:-postgres://postgres@127.0.0.1:5432}"
db="foodseg_schemathesis_$$"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export DATABASE_URL="$server/$db"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
export FOODSEG_NATS_PREFIX="schemathesis$$"
export FOODSEG_API_ADDR="127.0.0.1:$port"
export OTEL_SDK_DISABLED=true
export RUST_LOG=warn

psql "$server/postgres" -qc "CREATE DATABASE $db"
api_pid=""
cleanup() {
  [[ -n "$api_pid" ]] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null || true
  psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
}
trap cleanup EXIT

token=$(target/debug/foodseg-api keys create --name schemathesis --scope operator --scope submit 2>/dev/null)
target/debug/foodseg-api > ".cache/schemathesis-api.log" 2>&1 &
api_pid=$!
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
  sleep 0.5
done

"$venv/bin/st" run "http://127.0.0.1:$port/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$examples" \
  --header "Authorization: Bearer $token" \
  --seed 1 \
  --no-color
