#!/usr/bin/env bash
# `make demo`: the order/cart example end to end on a temporary PostgreSQL, with ferry-broker
# and ferry-relay. Prints what happened; stops everything at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/pg.sh"
dir=$(mktemp -d /tmp/ferry-demo.XXXXXX); chmod 755 "$dir"
port=$(ferry_pg_free_port); bport=$(ferry_pg_free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
            ferry_pg_stop "$dir"; rm -rf "$dir"; }
trap cleanup EXIT
ferry_pg_start "$dir" "$port" durable
for db in ferry shop; do "$PG_BIN/createdb" -h "$dir" -p "$port" -U postgres "$db"; done
shop=$(ferry_pg_conninfo "$dir" "$port" shop)
echo "demo: PostgreSQL, ferry-broker on 127.0.0.1:$bport, ferry-relay on database shop"
"$root/build/bin/ferry-broker" --listen "127.0.0.1:$bport" --log-level warn \
  --database-url "$(ferry_pg_conninfo "$dir" "$port" ferry)" & pids+=($!)
"$root/build/bin/ferry-relay" migrate --log-level warn --database-url "$shop"
until "$root/build/bin/ferryctl" --broker "127.0.0.1:$bport" topic create orders --queues 4 >/dev/null 2>&1; do sleep 0.1; done
"$root/build/bin/ferry-relay" --log-level warn --broker "127.0.0.1:$bport" --database-url "$shop" & pids+=($!)
"$root/build/bin/order-cart-demo" --database-url "$shop" --broker "127.0.0.1:$bport"
