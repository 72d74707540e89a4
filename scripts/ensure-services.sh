#!/usr/bin/env bash
# Makes sure the local PostgreSQL and NATS (with JetStream) that foodseg's tests and
# demo use are running, starting them when they are installed but down, and creates the
# `foodseg` database. Honours DATABASE_URL / NATS_URL only for the checks' host and port.
set -euo pipefail

pg_host=127.0.0.1 pg_port=5432 nats_host=127.0.0.1 nats_port=4222

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do
    port_open "$1" "$2" && return 0
    sleep 0.5
  done
  echo "ensure-services: $3 did not come up on $1:$2" >&2
  return 1
}

if ! port_open "$pg_host" "$pg_port"; then
  echo "ensure-services: starting PostgreSQL" >&2
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  else
    echo "ensure-services: PostgreSQL is not running and pg_ctlcluster is not installed" >&2
    exit 1
  fi
  wait_port "$pg_host" "$pg_port" PostgreSQL
fi

if ! port_open "$nats_host" "$nats_port"; then
  echo "ensure-services: starting nats-server with JetStream" >&2
  nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec "$nats_bin" -- \
    -a "$nats_host" -p "$nats_port" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port "$nats_host" "$nats_port" NATS
fi

# The database the services use by default (tests create their own per-test databases).
for user in postgres root; do
  if psql -h "$pg_host" -p "$pg_port" -U "$user" -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
    exists=$(psql -h "$pg_host" -p "$pg_port" -U "$user" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'foodseg'")
    [ "$exists" = 1 ] || psql -h "$pg_host" -p "$pg_port" -U "$user" -d postgres -qc 'CREATE DATABASE foodseg'
    break
  fi
done
