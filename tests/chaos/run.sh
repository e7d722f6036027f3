#!/usr/bin/env bash
# `make chaos` (and a short run in `make test`): each scenario on its own durable PostgreSQL
# cluster, with real ferry-broker / ferry-relay processes and real faults; ferry-chaos checks
# the recorded history and prints the table. Exit 1 if any scenario finds a violation.
# Usage: tests/chaos/run.sh [SECONDS] [SCENARIO...]   (default 60 s each, every scenario)
# The ha-* scenarios run on a pg_auto_failover formation (scripts/ha.sh: monitor + 3 nodes) and
# kill nodes rather than run for SECONDS: 3 kills (1 when SECONDS < 30, inside `make test`).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/pg.sh"
seconds=${1:-60}
shift || true
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] ||
  scenarios=(broker-kill pg-restart network-cut failover relay-kill ha-primary-kill ha-standby-kill
             ha-partition)
kills=3
[ "$seconds" -ge 30 ] || kills=1
bin=${FERRY_BIN:-$root/build/bin}
logs=$(mktemp -d /tmp/ferry-chaos-logs.XXXXXX)
chmod 755 "$logs"
failed=0
results=()
figures=()
for scenario in "${scenarios[@]}"; do
  dir=$(mktemp -d /tmp/ferry-chaos-pg.XXXXXX)
  chmod 755 "$dir"
  port=$(ferry_pg_free_port 4)   # ha-*: the monitor and three nodes
  extra=()
  standby=""
  formation=""
  if [[ $scenario == ha-* ]]; then
    formation="$dir/formation"
    if [ "$scenario" = ha-partition ]; then   # ferry-chaos starts it behind its proxies
      # After the partition heals, the old primary is demoted and rewound and every connection
      # that waited on it breaks; the outbox path took up to 36 s to deliver everything.
      extra=(--ha-dir "$formation" --kills 1 --heal-bound 90)
    else
      "$root/scripts/ha.sh" start "$formation" "$port" >/dev/null
      extra=(--ha-dir "$formation" --kills "$kills")
    fi
  elif [ "$scenario" = failover ]; then
    # A primary whose every commit waits for its synchronous standby's flush: an acknowledged
    # Produce is on two nodes. The fault kills the primary and promotes the standby.
    FERRY_PG_OPTS="-c wal_level=replica -c max_wal_senders=5 -c synchronous_standby_names=standby1" \
      ferry_pg_start "$dir" "$port" durable
    standby=$(mktemp -d /tmp/ferry-chaos-standby.XXXXXX)
    chmod 755 "$standby"
    sport=$(ferry_pg_free_port)
    ferry_pg_standby "$dir" "$port" "$standby" "$sport" standby1
    extra=(--standby-dir "$standby" --standby-port "$sport")
  else
    ferry_pg_start "$dir" "$port" durable
  fi
  echo "chaos: $scenario for ${seconds}s (PostgreSQL on $dir:$port, logs in $logs)"
  if ! out=$("$bin/ferry-chaos" --scenario "$scenario" --seconds "$seconds" \
       --pg-dir "$dir" --pg-port "$port" --root "$root" --log-dir "$logs" "${extra[@]}" 2>&1); then
    failed=1
  fi
  if [ -n "$standby" ]; then ferry_pg_stop "$standby"; rm -rf "$standby"; fi
  echo "$out" | sed 's/^/  /'
  results+=("$(echo "$out" | grep -E "^$scenario(/relay)? " || echo "$scenario  (no result: see above)")")
  figures+=("$(echo "$out" | grep -E "^(failover|standby|partition) [0-9]+: " | sed "s/^/$scenario /" || true)")
  header=$(echo "$out" | grep -E '^scenario ' || true)
  if [ -n "$formation" ]; then
    [ $failed -eq 0 ] || cp "$formation"/*.log "$logs/" 2>/dev/null || true
    "$root/scripts/ha.sh" stop "$formation"
  fi
  ferry_pg_stop "$dir"
  rm -rf "$dir"
done
echo
echo "${header:-scenario ...}"
printf '%s\n' "${results[@]}"
printf '%s\n' "${figures[@]}" | grep -v '^$' || true
[ $failed -eq 0 ] && { echo "chaos: ok"; rm -rf "$logs"; } || echo "chaos: FAILED (logs in $logs)"
exit $failed
