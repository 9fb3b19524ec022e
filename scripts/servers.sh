#!/usr/bin/env bash
# Throwaway redis-server and PostgreSQL 15 for tests and benchmarks, on free ports, with all
# their files in one directory.
#
#   scripts/servers.sh start DIR          start both; writes DIR/env (the SLUICE_* URLs)
#   scripts/servers.sh stop DIR           stop both and remove DIR (unless KEEP_SERVERS_DIR is set)
#   scripts/servers.sh restart-redis DIR  start redis again on its port with its data (after a kill)
#   scripts/servers.sh restart-postgres DIR  start PostgreSQL again on its port with its data (after a kill)
#   scripts/servers.sh kill-redis DIR     kill -9 redis-server (the chaos test)
#   scripts/servers.sh kill-postgres DIR  kill -9 every process of the PostgreSQL server, as a
#                                         crashed container would lose them (the chaos test)
#
# SLUICE_REDIS_APPENDFSYNC (at start): redis's appendfsync, `everysec` by default; `always` is
# what docs/deploying.md recommends for zero loss (the chaos test runs with it).
# SLUICE_PG_SYNCHRONOUS_COMMIT (at start): `off` by default, `on` for the chaos test. Both are
# kept in DIR for restarts.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin   # absolute: a pg_ctl elsewhere on PATH may be a wrapper

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# PostgreSQL refuses to run as root: run its tools as the postgres user the package creates.
as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_redis() {
  local dir=$1 port fsync
  port=$(cat "$dir/redis.port")
  # AOF on, so a restart keeps the streams; fsync every second is the tests' trade-off
  # (a graceful shutdown flushes everything).
  [[ -f "$dir/redis.appendfsync" ]] || echo "${SLUICE_REDIS_APPENDFSYNC:-everysec}" >"$dir/redis.appendfsync"
  fsync=$(cat "$dir/redis.appendfsync")
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/redis" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --save '' --appendonly yes --appendfsync "$fsync" --databases 64 </dev/null >/dev/null 2>&1
  # (stdio to /dev/null: a daemon that inherits a caller's pipe keeps that caller waiting)
  for _ in $(seq 1 100); do
    [[ $(redis-cli -p "$port" ping 2>/dev/null || true) == PONG ]] && return 0
    sleep 0.1
  done
  echo "redis-server did not answer on port $port; see $dir/redis.log" >&2
  return 1
}

start_postgres() {
  local dir=$1 pg_port commit
  pg_port=$(cat "$dir/pg.port")
  [[ -f "$dir/pg.synchronous_commit" ]] || echo "${SLUICE_PG_SYNCHRONOUS_COMMIT:-off}" >"$dir/pg.synchronous_commit"
  commit=$(cat "$dir/pg.synchronous_commit")
  # Durability settings off: these clusters are thrown away, and the tests measure Sluice.
  # fsync off loses nothing when only the server's processes die (what was written is in the
  # kernel's page cache); synchronous_commit off does (a commit is answered before its WAL is
  # written), so the chaos test, which kills PostgreSQL, sets SLUICE_PG_SYNCHRONOUS_COMMIT=on.
  as_postgres "$PG_BIN/pg_ctl" -D "$dir/pg" -l "$dir/pgsock/pg.log" -w -t 60 \
    -o "-p $pg_port -k $dir/pgsock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=$commit -c full_page_writes=off -c max_connections=300" \
    start >/dev/null
}

start() {
  local dir=$1
  mkdir -p "$dir/redis" "$dir/pg" "$dir/pgsock"
  chmod 755 "$dir"
  free_port >"$dir/redis.port"
  free_port >"$dir/pg.port"
  local pg_port
  pg_port=$(cat "$dir/pg.port")
  start_redis "$dir"

  if [[ $(id -u) -eq 0 ]]; then chown postgres:postgres "$dir/pg" "$dir/pgsock"; fi
  as_postgres "$PG_BIN/initdb" -D "$dir/pg" -U sluice --auth=trust -E UTF8 --no-locale >/dev/null
  start_postgres "$dir"
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$pg_port" -U sluice sluice
  "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$pg_port" -q

  {
    echo "export SLUICE_REDIS_URL=redis://127.0.0.1:$(cat "$dir/redis.port")/0"
    echo "export SLUICE_DATABASE_URL=postgres://sluice@127.0.0.1:$pg_port/sluice"
  } >"$dir/env"
  cat "$dir/env"
}

stop() {
  local dir=$1
  if [[ -f "$dir/pg/PG_VERSION" ]]; then
    as_postgres timeout 30 "$PG_BIN/pg_ctl" -D "$dir/pg" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
  fi
  if [[ -f "$dir/redis.port" ]]; then
    timeout 10 redis-cli -p "$(cat "$dir/redis.port")" shutdown nosave >/dev/null 2>&1 || true
  fi
  if [[ -f "$dir/redis.pid" ]] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then
    kill -9 "$(cat "$dir/redis.pid")" 2>/dev/null || true
  fi
  [[ -n "${KEEP_SERVERS_DIR:-}" ]] || rm -rf "$dir"
}

kill_redis() {
  local dir=$1
  kill -9 "$(cat "$dir/redis.pid")"
  while kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; do sleep 0.05; done
}

kill_postgres() {
  local dir=$1 postmaster
  postmaster=$(head -1 "$dir/pg/postmaster.pid")
  # The backends first (they would keep the shared memory of a dead postmaster in use).
  pkill -9 -P "$postmaster" || true
  kill -9 "$postmaster"
  while kill -0 "$postmaster" 2>/dev/null || pgrep -P "$postmaster" >/dev/null; do sleep 0.05; done
}

case "${1:-}" in
  start) start "${2:?usage: servers.sh start DIR}" ;;
  stop) stop "${2:?usage: servers.sh stop DIR}" ;;
  restart-redis) start_redis "${2:?usage: servers.sh restart-redis DIR}" ;;
  restart-postgres) start_postgres "${2:?usage: servers.sh restart-postgres DIR}" ;;
  kill-redis) kill_redis "${2:?usage: servers.sh kill-redis DIR}" ;;
  kill-postgres) kill_postgres "${2:?usage: servers.sh kill-postgres DIR}" ;;
  *) echo "usage: servers.sh start|stop|restart-redis|restart-postgres|kill-redis|kill-postgres DIR" >&2; exit 2 ;;
esac
