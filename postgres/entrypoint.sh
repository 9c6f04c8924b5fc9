#!/usr/bin/env bash
# Entrypoint of the postgres image (see postgres/Dockerfile). On an empty data volume: initdb
# with POSTGRES_USER and POSTGRES_PASSWORD (password auth over TCP, trust only on the socket inside
# the container), then every /docker-entrypoint-initdb.d/*.sh with a server that listens on the
# socket only, so no client can connect before initialisation is complete. Then the server.
set -euo pipefail
: "${PGDATA:?}"
sock=/var/run/postgresql

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}"
  pwfile="$(mktemp)"
  trap 'rm -f "$pwfile"' EXIT
  printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $sock" -w start >/dev/null
  for script in /docker-entrypoint-initdb.d/*.sh; do
    [ -e "$script" ] || continue
    echo "postgres-entrypoint: running $script"
    PGHOST="$sock" bash "$script"
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres-entrypoint: initialised $PGDATA"
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' -k "$sock" "$@"
