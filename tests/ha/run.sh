#!/usr/bin/env bash
# High availability with pg_auto_failover (scripts/ha.sh): a monitor and three nodes, a real
# ferry-broker on the formation's multi-host URI, a producer that sends one message every
# 100 ms through `ferryctl produce` (which retries with the same dedup id while the database is
# away), and the primary's postmaster SIGKILLed KILLS times in a row, each time after the
# formation has healed (a different node becomes primary each time). Then: every acknowledged
# message is stored exactly once, and the longest produce (the unavailability a client sees)
# is reported. Prints "ha: ok ..." on success.
# WORK IN PROGRESS (issue 17), not part of `make test` yet: the first failover is quick, a
# second one soon after a node rejoined took minutes in one run (see the issue 17 notes).
# Needs Debian's postgresql-15-auto-failover and pg-auto-failover-cli.
#   tests/ha/run.sh [KILLS]    (default 3)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/pg.sh"
bin=${FERRY_BIN:-$root/build/bin}
kills=${1:-3}
dir=$(mktemp -d /tmp/ferry-ha.XXXXXX)
chmod 755 "$dir"
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill -9 "$broker_pid" 2>/dev/null || true
  [ -n "${producer_pid:-}" ] && kill "$producer_pid" 2>/dev/null || true
  "$root/scripts/ha.sh" stop "$dir/formation" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

base=$(ferry_pg_free_port)
uri=$("$root/scripts/ha.sh" start "$dir/formation" "$base")
uri=${uri/postgres:\/\//postgres://postgres@}   # the nodes trust the postgres role on loopback
"$PG_BIN/psql" -qX "$uri" -c "CREATE DATABASE ferry" >/dev/null
broker_uri=${uri/\/postgres\?//ferry?}
port=$(ferry_pg_free_port)
"$bin/ferry-broker" --database-url "$broker_uri" --listen "127.0.0.1:$port" \
  --health-interval-ms 200 >"$dir/broker.log" 2>&1 &
broker_pid=$!
ctl() { "$bin/ferryctl" --broker "127.0.0.1:$port" "$@"; }
for i in $(seq 1 100); do ctl health >/dev/null 2>&1 && break; sleep 0.1; done
ctl topic create ha --queues 2 >/dev/null

# The producer: value i, one at a time; a line per acknowledged message with its call's time.
(
  i=0
  while [ ! -f "$dir/stop" ]; do
    i=$((i + 1))
    start=$(date +%s%N)
    if ctl produce ha --value "$i" --retry-for 60 >/dev/null 2>>"$dir/producer.err"; then
      echo "$i $(( ($(date +%s%N) - start) / 1000000 ))" >>"$dir/acked"
    else
      echo "$i failed" >>"$dir/failed"
    fi
    sleep 0.1
  done
) &
producer_pid=$!

healed() {
  local state
  state=$("$root/scripts/ha.sh" state "$dir/formation" 2>/dev/null || true)
  [ "$(grep -c '| *primary *| *primary$' <<<"$state")" = 1 ] &&
    [ "$(grep -c '| *secondary *| *secondary$' <<<"$state")" = 2 ]
}

primaries=()
sleep 2
for k in $(seq 1 "$kills"); do
  primary=$("$root/scripts/ha.sh" primary "$dir/formation" "$base")
  node=$(basename "$primary")
  primaries+=("$node")
  "$root/scripts/ha.sh" kill "$dir/formation" "$node"   # keeper and postmaster: the machine dies
  killed_at=$(date +%s%N)
  for i in $(seq 1 900); do   # another node is promoted ...
    [ "$("$root/scripts/ha.sh" primary "$dir/formation" "$base" 2>/dev/null)" != "$primary" ] &&
      "$PG_BIN/psql" -qXAt "$broker_uri" -c "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.2
  done
  echo "ha: kill $k of $node: a new primary after $(( ($(date +%s%N) - killed_at) / 1000000 )) ms"
  "$root/scripts/ha.sh" run-node "$dir/formation" "$node"   # ... and the old one comes back
  for i in $(seq 1 900); do healed && break; sleep 0.2; done
  healed || { echo "ha: the formation did not heal after kill $k" >&2; "$root/scripts/ha.sh" state "$dir/formation" >&2; exit 1; }
  echo "ha: $node rejoined; healed $(( ($(date +%s%N) - killed_at) / 1000000 )) ms after the kill"
  sleep 2
done
touch "$dir/stop"
wait "$producer_pid"
producer_pid=""

# What is stored: every queue, paged.
for q in 0 1; do
  from=0
  while :; do
    page=$(ctl --json peek ha --queue "$q" --from "$from" --max 1000)
    [ -z "$page" ] && break
    echo "$page" >>"$dir/stored.json"
    from=$(( $(tail -1 <<<"$page" | sed 's/.*"offset":\([0-9]*\).*/\1/') + 1 ))
  done
done
python3 - "$dir" "${primaries[*]}" <<'PY'
import json, os, sys
d, primaries = sys.argv[1], sys.argv[2].split()
acked = {}
for line in open(d + "/acked"):
    v, ms = line.split()
    acked[v] = int(ms)
failed = [l.split()[0] for l in open(d + "/failed")] if os.path.exists(d + "/failed") else []
stored = [json.loads(l)["value"] for l in open(d + "/stored.json") if l.strip()]
lost = sorted(set(acked) - set(stored), key=int)
dups = len(stored) - len(set(stored))
phantom = sorted(set(stored) - set(acked) - set(failed), key=int)
worst = max(acked.values())
print(f"ha: acked={len(acked)} failed={len(failed)} stored={len(stored)} lost={len(lost)} "
      f"duplicates={dups} phantom={len(phantom)} primaries_killed={','.join(primaries)} "
      f"longest_produce_ms={worst}")
ok = not lost and dups == 0 and not phantom and not failed and len(set(primaries)) == len(primaries)
print("ha: ok" if ok else "ha: FAILED")
sys.exit(0 if ok else 1)
PY
