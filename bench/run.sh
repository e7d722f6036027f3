#!/usr/bin/env bash
# `make bench`: Ferry's standard workloads on this machine, durable settings (fsync and
# synchronous commit on), with its own PostgreSQL, ferry-broker and ferry-relay. Writes
# bench/RESULTS.md. Extra arguments go to ferry-bench (e.g. --only w1,w2 --messages 50000).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/pg.sh"
dir=$(mktemp -d /tmp/ferry-bench.XXXXXX); chmod 755 "$dir"
port=$(ferry_pg_free_port); bport=$(ferry_pg_free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
            ferry_pg_stop "$dir"; rm -rf "$dir"; }
trap cleanup EXIT
ferry_pg_start "$dir" "$port" durable
for db in ferry app; do "$PG_BIN/createdb" -h "$dir" -p "$port" -U postgres "$db"; done
broker_db=$(ferry_pg_conninfo "$dir" "$port" ferry)
app_db=$(ferry_pg_conninfo "$dir" "$port" app)
"$root/build/bin/ferry-broker" --listen "127.0.0.1:$bport" --log-level warn --database-url "$broker_db" &
broker_pid=$!; pids+=($broker_pid)
"$root/build/bin/ferry-relay" migrate --log-level warn --database-url "$app_db"
until "$root/build/bin/ferryctl" --broker "127.0.0.1:$bport" topic list >/dev/null 2>&1; do sleep 0.1; done
"$root/build/bin/ferryctl" --broker "127.0.0.1:$bport" topic create w4 >/dev/null
"$root/build/bin/ferry-relay" --log-level ${RELAY_LOG_LEVEL:-warn} --broker "127.0.0.1:$bport" --batch-size 500 \
  --database-url "$app_db" & pids+=($!)
"$root/build/bin/ferry-bench" --broker "127.0.0.1:$bport" --broker-pid "$broker_pid" \
  --broker-database-url "$broker_db" --app-database-url "$app_db" \
  --out "$root/bench/RESULTS.md" "$@"
