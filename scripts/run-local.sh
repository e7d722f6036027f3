#!/usr/bin/env bash
# `make run`: a local PostgreSQL 15 cluster under .ferry/ (durable: fsync and synchronous
# commit on; the server runs as an unprivileged user on a unix socket and 127.0.0.1), with the
# broker's database `ferry` and a demo application database `demo` holding ferry_outbox; then
# ferry-broker and ferry-relay (publishing demo's outbox, answering back-checks of producer
# group `demo`). Ctrl-C stops relay, broker, then the database. The next run reuses the data.
#   FERRY_PG_PORT  PostgreSQL port (default 7432)   FERRY_LISTEN  broker address (127.0.0.1:7420)
#   FERRY_CONSOLE_LISTEN  the web console's address (127.0.0.1:7480)
# `make run-ha` (scripts/run-local.sh --ha): the same on a pg_auto_failover formation under
# .ferry/ha (scripts/ha.sh: a monitor on 7440 and three nodes on 7441-7443, synchronous
# replication), with a second broker on 127.0.0.1:7421; both brokers and the relay use the
# formation's multi-host URL and follow its primary.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/pg.sh"

ha=""
[ "${1:-}" = "--ha" ] && ha=1
listen=${FERRY_LISTEN:-127.0.0.1:7420}
console=${FERRY_CONSOLE_LISTEN:-127.0.0.1:7480}
mkdir -p "$root/.ferry"
chmod 755 "$root/.ferry"

if [ -n "$ha" ]; then
  dir="$root/.ferry/ha"
  base=${FERRY_HA_PORT:-7440}
  echo "run: starting the pg_auto_failover formation in $dir (about 15 s the first time)"
  uri=$("$root/scripts/ha.sh" start "$dir" "$base")
  stop_db() { echo "run: stopping the formation"; "$root/scripts/ha.sh" stop "$dir"; }
  trap stop_db EXIT
  uri=${uri/postgres:\/\//postgres://postgres@}   # the nodes trust the postgres role on loopback
  url_of() { local u=${uri/\/postgres\?//$1?}; echo "${u/sslmode=prefer/sslmode=disable}&connect_timeout=2"; }
  for db in ferry demo; do
    "$PG_BIN/psql" -qXAt "$(url_of postgres)" -c "SELECT 1 FROM pg_database WHERE datname = '$db'" |
      grep -q 1 || "$PG_BIN/psql" -qX "$(url_of postgres)" -c "CREATE DATABASE $db"
  done
  url=$(url_of ferry)
  app_url=$(url_of demo)
  where="a pg_auto_failover formation in $dir (monitor on $base, nodes on $((base + 1))-$((base + 3)))"
else
  dir="$root/.ferry/pg"
  port=${FERRY_PG_PORT:-7432}
  if [ -f "$dir/data/postmaster.pid" ] && "$PG_BIN/pg_isready" -q -h "$dir" -p "$port"; then
    echo "run: PostgreSQL already running in $dir"
    started_here=""
  else
    rm -f "$dir/data/postmaster.pid" 2>/dev/null || true   # stale after a crash
    ferry_pg_start "$dir" "$port" deploy
    started_here=1
  fi
  stop_db() { [ -z "$started_here" ] || { echo "run: stopping PostgreSQL"; ferry_pg_stop "$dir"; }; }
  trap stop_db EXIT
  for db in ferry demo; do
    if ! "$PG_BIN/psql" -h "$dir" -p "$port" -U postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = '$db'" postgres | grep -q 1; then
      "$PG_BIN/createdb" -h "$dir" -p "$port" -U postgres "$db"
    fi
  done
  url=$(ferry_pg_conninfo "$dir" "$port" ferry)
  app_url=$(ferry_pg_conninfo "$dir" "$port" demo)
  where="PostgreSQL on $dir (port $port)"
fi
"$root/build/bin/ferry-relay" migrate --database-url "$app_url"

cat <<MSG

  Ferry: $where; databases ferry and demo; broker on $listen;
  ferry-relay publishing demo.ferry_outbox.
  Console: http://$console/  (no --auth here: everyone may do everything; see README "Console")
  In another terminal:
    build/bin/ferryctl topic create orders --queues 4
    echo hello | build/bin/ferryctl produce orders
    build/bin/ferryctl consume orders --group billing
    psql "$app_url" \\
      -c "INSERT INTO ferry_outbox (topic, key, payload) VALUES ('orders', 'order-1', 'from the outbox')"
    build/bin/ferryctl consume orders --group billing --wait-ms 2000
    psql "$app_url" -c 'SELECT * FROM ferry_outbox_health'
  Metrics: broker http://127.0.0.1:9420/metrics, relay http://127.0.0.1:9422/metrics (and /healthz).
  Ctrl-C stops the relay, the broker and the database.
MSG
[ -z "$ha" ] || cat <<MSG
  High availability: a second broker on 127.0.0.1:7421. Watch and break the formation:
    scripts/ha.sh state .ferry/ha
    scripts/ha.sh kill .ferry/ha \$(scripts/ha.sh primary .ferry/ha)    # the primary dies
    scripts/ha.sh run-node .ferry/ha node1                              # it comes back
  A standby is promoted about 20 s after the kill; meanwhile calls answer UNAVAILABLE and
  health reads NOT_SERVING; ferryctl produce retries with the same dedup ids by itself.
MSG
echo
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  stop_db
}
trap stop_all EXIT
trap 'exit 130' INT TERM
"$root/build/bin/ferry-broker" --listen "$listen" --database-url "$url" \
  --metrics-listen 127.0.0.1:9420 --console-listen "$console" &
pids+=($!)
if [ -n "$ha" ]; then
  "$root/build/bin/ferry-broker" --listen 127.0.0.1:7421 --database-url "$url" \
    --metrics-listen 127.0.0.1:9421 --console-listen 127.0.0.1:7481 &
  pids+=($!)
fi
for i in $(seq 1 100); do   # the relay starts once the broker answers
  "$root/build/bin/ferryctl" --broker "$listen" topic list >/dev/null 2>&1 && break
  sleep 0.1
done
"$root/build/bin/ferry-relay" --database-url "$app_url" --broker "$listen" --producer-group demo \
  --metrics-listen 127.0.0.1:9422 &
pids+=($!)
wait -n "${pids[@]}" || true   # either one stopping ends the run
