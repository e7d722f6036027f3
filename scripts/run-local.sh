#!/usr/bin/env bash
# `make run`: a local PostgreSQL 15 cluster under .ferry/ (durable: fsync and synchronous
# commit on; the server runs as an unprivileged user on a unix socket and 127.0.0.1), then
# ferry-broker in the foreground. Ctrl-C stops the broker and then the database. The next run
# reuses the same data.
#   FERRY_PG_PORT  PostgreSQL port (default 7432)   FERRY_LISTEN  broker address (127.0.0.1:7420)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/pg.sh"

dir="$root/.ferry/pg"
port=${FERRY_PG_PORT:-7432}
listen=${FERRY_LISTEN:-127.0.0.1:7420}
mkdir -p "$root/.ferry"

if [ -f "$dir/data/postmaster.pid" ] && "$PG_BIN/pg_isready" -q -h "$dir" -p "$port"; then
  echo "run: PostgreSQL already running in $dir"
  started_here=""
else
  rm -f "$dir/data/postmaster.pid" 2>/dev/null || true   # stale after a crash
  ferry_pg_start "$dir" "$port" durable
  started_here=1
fi
stop_db() { [ -z "$started_here" ] || { echo "run: stopping PostgreSQL"; ferry_pg_stop "$dir"; }; }
trap stop_db EXIT

if ! "$PG_BIN/psql" -h "$dir" -p "$port" -U postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = 'ferry'" postgres | grep -q 1; then
  "$PG_BIN/createdb" -h "$dir" -p "$port" -U postgres ferry
fi
url=$(ferry_pg_conninfo "$dir" "$port" ferry)

cat <<MSG

  Ferry: PostgreSQL on $dir (port $port, database ferry); broker on $listen.
  In another terminal:
    build/bin/ferryctl topic create orders --queues 4
    echo hello | build/bin/ferryctl produce orders
    build/bin/ferryctl consume orders --group billing
    build/bin/ferryctl lag --group billing
    psql -h $dir -p $port -U postgres ferry -c 'SELECT * FROM group_lag'
  Ctrl-C stops the broker and the database.

MSG
# Not exec: the EXIT trap stops PostgreSQL after the broker has shut down.
"$root/build/bin/ferry-broker" --listen "$listen" --database-url "$url"
