#!/usr/bin/env bash
# `make bench`: Ferry's standard workloads on this machine, durable settings (fsync and
# synchronous commit on), with its own PostgreSQL, ferry-broker and ferry-relay. Writes
# bench/RESULTS.md. Extra arguments go to ferry-bench (e.g. --only w1,w2 --messages 50000).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/pg.sh"
source "$root/scripts/stack.sh"
if [ -n "${FERRY_BENCH_PROFILE:-}" ]; then
  # Profile mode: pg_stat_statements on; the statements with the most total time are printed
  # at the end (the settings are reported in RESULTS.md, so do not record figures this way).
  export FERRY_PG_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all${FERRY_BENCH_EXPLAIN_MS:+ -c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=$FERRY_BENCH_EXPLAIN_MS -c auto_explain.log_analyze=on}"
fi
ferry_stack_up app
ferry_stack_topic w4
ferry_stack_relay app --batch-size 500
"$root/build/bin/ferry-bench" --broker "$BROKER" --broker-pid "$BROKER_PID" \
  --broker-database-url "$BROKER_DB" --app-database-url "$APP_DB_APP" \
  --out "${FERRY_BENCH_OUT:-$root/bench/RESULTS.md}" "$@"
if [ -n "${FERRY_BENCH_PROFILE:-}" ]; then
  for db in ferry app; do
    echo "== $db: statements by total time (ms) =="
    "$PG_BIN/psql" -X -q -h "$STACK_DIR" -p "$STACK_PORT" -U postgres -d "$db" -P pager=off -c \
      "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c \
      "SELECT calls, round(total_exec_time) AS total_ms, round(mean_exec_time::numeric, 3) AS mean_ms,
              rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS query
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$db')
         ORDER BY total_exec_time DESC LIMIT 15"
  done
  # FERRY_BENCH_EXPLAIN_MS=N also logs the plan of every statement slower than N ms.
  if [ -n "${FERRY_BENCH_EXPLAIN_MS:-}" ]; then grep -A25 "duration:" "$STACK_DIR/server.log" | head -200; fi
fi
