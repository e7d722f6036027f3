#!/usr/bin/env bash
# Relay throughput and latency on this machine, durable settings (fsync and synchronous commit
# on). Starts its own PostgreSQL, broker and one relay; pgbench plays the application.
#   bench/relay.sh            # throughput: 20,000 rows, 4 connections, transactions of 10 rows
#                             # latency:    500 rows/s for 10 s, transactions of 1 row
#                             # backlog:    20,000 rows on 12 keys written before a relay
#                             #             starts (a broker outage), then drained
# Prints rows/s and commit-to-sent latency (sent_at - created_at, from the outbox itself).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/pg.sh"
source "$root/scripts/stack.sh"
ferry_stack_up app backlog
ferry_stack_topic bench
ferry_stack_relay app --batch-size 500
dir=$STACK_DIR; port=$STACK_PORT
psql=("$PG_BIN/psql" -h "$dir" -p "$port" -U postgres -Atq app)
wait_sent() {
  until [ "$("${psql[@]}" -c "SELECT count(*) FROM ferry_outbox WHERE status <> 'sent'")" = 0 ]; do sleep 0.05; done
}
report() {
  "${psql[@]}" -F ' ' -c "SELECT count(*) AS rows,
    round(count(*) / extract(epoch FROM max(sent_at) - min(created_at))) AS rows_per_s,
    round(1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY sent_at - created_at))::numeric, 1) AS p50_ms,
    round(1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY sent_at - created_at))::numeric, 1) AS p99_ms,
    round(1000 * extract(epoch FROM max(sent_at - created_at))::numeric, 1) AS max_ms
    FROM ferry_outbox"
}
echo "INSERT INTO ferry_outbox (topic, payload) SELECT 'bench', convert_to(repeat('x', 256), 'UTF8') FROM generate_series(1, 10);" > "$dir/ten.sql"
echo "INSERT INTO ferry_outbox (topic, payload) VALUES ('bench', convert_to(repeat('x', 256), 'UTF8'));" > "$dir/one.sql"
echo "== throughput: pgbench -c 4 -t 500, 10 rows per transaction (20,000 rows)"
"$PG_BIN/pgbench" -h "$dir" -p "$port" -U postgres -n -c 4 -j 2 -t 500 -f "$dir/ten.sql" app >/dev/null
wait_sent; echo "rows rows/s p50_ms p99_ms max_ms"; report
"${psql[@]}" -c "DELETE FROM ferry_outbox" >/dev/null
echo "== latency: pgbench --rate 500 -T 10, 1 row per transaction"
"$PG_BIN/pgbench" -h "$dir" -p "$port" -U postgres -n -c 2 -j 2 -R 500 -T 10 -f "$dir/one.sql" app >/dev/null
wait_sent; echo "rows rows/s p50_ms p99_ms max_ms"; report
echo "== backlog: 20,000 rows on 12 keys waiting, then a relay starts"
psql_backlog=("$PG_BIN/psql" -h "$dir" -p "$port" -U postgres -Atq backlog)
"${psql_backlog[@]}" -c "INSERT INTO ferry_outbox (topic, key, payload) SELECT 'bench', 'k' || (g % 12),
  convert_to(repeat('x', 256), 'UTF8') FROM generate_series(1, 20000) g"
start=$("${psql_backlog[@]}" -c "SELECT now()")
ferry_stack_relay backlog --batch-size 500
until [ "$("${psql_backlog[@]}" -c "SELECT count(*) FROM ferry_outbox WHERE status <> 'sent'")" = 0 ]; do sleep 0.05; done
echo "rows drain_s rows_per_s"
"${psql_backlog[@]}" -F ' ' -c "SELECT count(*), round(extract(epoch FROM max(sent_at) - '$start')::numeric, 2),
  round(count(*) / extract(epoch FROM max(sent_at) - '$start')) FROM ferry_outbox"
