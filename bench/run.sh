#!/usr/bin/env bash
# `make bench`: Ferry's standard workloads on this machine, durable settings (fsync and
# synchronous commit on), with its own PostgreSQL, ferry-broker and ferry-relay. Writes
# bench/RESULTS.md. Extra arguments go to ferry-bench (e.g. --only w1,w2 --messages 50000).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/pg.sh"
source "$root/scripts/stack.sh"
ferry_stack_up app
ferry_stack_topic w4
ferry_stack_relay app --batch-size 500
"$root/build/bin/ferry-bench" --broker "$BROKER" --broker-pid "$BROKER_PID" \
  --broker-database-url "$BROKER_DB" --app-database-url "$APP_DB_APP" \
  --out "$root/bench/RESULTS.md" "$@"
