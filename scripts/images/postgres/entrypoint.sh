#!/bin/bash
# First start: a cluster whose superuser is POSTGRES_USER (password POSTGRES_PASSWORD, required
# over the network) and a database POSTGRES_DB, as the official image makes them.
set -euo pipefail
if [[ $1 == postgres && ! -s $PGDATA/PG_VERSION ]]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
  user=${POSTGRES_USER:-postgres}
  initdb -D "$PGDATA" -U "$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  db=${POSTGRES_DB:-$user}
  if [[ $db != postgres ]]; then
    printf 'CREATE DATABASE "%s"\n' "${db//\"/\"\"}" | postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
fi
if [[ $1 == postgres ]]; then shift; exec postgres -c listen_addresses='*' "$@"; fi
exec "$@"
