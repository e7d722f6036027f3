#!/usr/bin/env bash
# A pg_auto_failover formation on this machine (Debian's postgresql-15-auto-failover and
# pg-auto-failover-cli): a monitor and three PostgreSQL nodes with keepers, synchronous
# replication, run as an unprivileged user (`postgres` when called as root) under DIR, on
# 127.0.0.1 ports BASE (monitor) and BASE+1..BASE+3 (nodes). For `make run-ha` and the HA tests.
#   scripts/ha.sh start DIR BASE   create (first time) and start; waits for a primary and two
#                                  secondaries; prints the formation's multi-host URI
#   scripts/ha.sh uri DIR          the URI brokers and relays use (target_session_attrs=read-write)
#   scripts/ha.sh state DIR        pg_autoctl show state
#   scripts/ha.sh primary DIR      the name of the current primary (node1..node3), if any
#   scripts/ha.sh secondary DIR    the name of a secondary, if any
#   scripts/ha.sh healthy DIR      exit 0 when there is a primary and two secondaries
#   scripts/ha.sh kill DIR NODE    SIGKILL a node's keeper and postmaster (the machine dies)
#   scripts/ha.sh run-node DIR NODE  start a node's keeper again (it rejoins as a secondary)
#   scripts/ha.sh stop DIR         stop keepers and servers
set -euo pipefail
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?usage: ha.sh start|uri|state|primary|stop DIR [BASE]}
dir=${2:?DIR}
base=${3:-7440}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

as_owner() {   # pg_autoctl with its configuration kept under DIR, as the unprivileged owner
  local env=(XDG_CONFIG_HOME="$dir/config" XDG_DATA_HOME="$dir/share" XDG_RUNTIME_DIR="$dir/run"
             PG_CONFIG="$PG_BIN/pg_config")
  if [ "$(id -u)" = 0 ]; then
    (cd /tmp && runuser -u postgres -- env "${env[@]}" "$@")
  else
    (cd /tmp && env "${env[@]}" "$@")
  fi
}


# A keeper in its own process group (pgid in DIR/NAME.pgid), so that `kill` takes it, its
# sub-processes and its PostgreSQL down at once, like a machine that dies.
run_keeper() {
  as_owner bash -c "nohup setsid pg_autoctl run --pgdata '$dir/$1' >>'$dir/$1.log' 2>&1 & echo \$! >'$dir/$1.pgid'"
}

# PostgreSQL's backends and walsenders each run in a process group of their own (setsid), and
# outlive a killed postmaster until they notice. So: the keeper's group (keeper, postmaster) is
# stopped, then it, the postmaster and every child of the postmaster are killed at once, as
# when the machine loses power.
kill_node() {
  local pm="" group=""
  [ -f "$dir/$1.pgid" ] && group=$(cat "$dir/$1.pgid")
  [ -f "$dir/$1/postmaster.pid" ] && pm=$(head -1 "$dir/$1/postmaster.pid")
  [ -z "$group" ] || kill -STOP -- "-$group" 2>/dev/null || true
  [ -z "$pm" ] || kill -STOP "$pm" 2>/dev/null || true
  # shellcheck disable=SC2046
  [ -z "$pm" ] || kill -9 "$pm" $(pgrep -P "$pm") 2>/dev/null || true
  [ -z "$group" ] || kill -9 -- "-$group" 2>/dev/null || true
}

# Failover timings tuned for a broker (the defaults are for a database behind an application
# that can wait half a minute). A dead primary is noticed when its keeper has not reported for
# NODE_UNHEALTHY_MS and the monitor's health checks (every second, 1 s timeout, 2 retries
# 500 ms apart) fail; the standby with the most WAL is then promoted, after the old primary
# said it has demoted or PRIMARY_DEMOTE_MS passed. That wait is the fence: a primary cut off
# from the monitor and from every standby demotes itself after NETWORK_PARTITION_TIMEOUT_S
# (keeper setting), so PRIMARY_DEMOTE_MS must stay above it, or two primaries could overlap.
NODE_UNHEALTHY_MS=${FERRY_HA_NODE_UNHEALTHY_MS:-5000}
PRIMARY_DEMOTE_MS=${FERRY_HA_PRIMARY_DEMOTE_MS:-10000}
NETWORK_PARTITION_TIMEOUT_S=${FERRY_HA_NETWORK_PARTITION_TIMEOUT_S:-6}

tune_monitor() {
  local settings=(
    "pgautofailover.node_considered_unhealthy_timeout = $NODE_UNHEALTHY_MS"
    "pgautofailover.health_check_period = 1000"
    "pgautofailover.health_check_timeout = 1000"
    "pgautofailover.health_check_max_retries = 2"
    "pgautofailover.health_check_retry_delay = 500"
    "pgautofailover.primary_demote_timeout = $PRIMARY_DEMOTE_MS"
  )
  local args=() s
  for s in "${settings[@]}"; do args+=(-c "ALTER SYSTEM SET $s"); done
  as_owner "$PG_BIN/psql" -qX -h 127.0.0.1 -p "$base" -d pg_auto_failover "${args[@]}" \
    -c "SELECT pg_reload_conf()" >/dev/null
}

formation_uri() {
  as_owner pg_autoctl show uri --pgdata "$dir/monitor" --formation default
}

healthy() {   # one node primary and two secondaries, reported and assigned (healed)
  local state
  state=$(as_owner pg_autoctl show state --pgdata "$dir/monitor" 2>/dev/null || true)
  [ "$(grep -c '| *primary *| *primary$' <<<"$state")" = 1 ] &&
    [ "$(grep -c '| *secondary *| *secondary$' <<<"$state")" = 2 ]
}

node_args() {   # PostgreSQL listens on 127.0.0.1 only; connections from loopback are trusted
  echo --listen 127.0.0.1 --auth trust --no-ssl --pgctl "$PG_BIN/pg_ctl"
}

# With FERRY_HA_ADVERTISE=1 (the chaos suite's partition scenario), node N is known to the
# monitor and to the other nodes as 127.0.0.(10+N) and reaches the monitor at 127.0.0.(20+N):
# addresses where the test runs TCP proxies it can cut, while brokers still reach every node
# directly on 127.0.0.1.
node_host() { if [ -n "${FERRY_HA_ADVERTISE:-}" ]; then echo "127.0.0.$((10 + $1))"; else echo 127.0.0.1; fi; }
monitor_uri_for() {
  local host=127.0.0.1
  [ -z "${FERRY_HA_ADVERTISE:-}" ] || host="127.0.0.$((20 + $1))"
  echo "postgres://autoctl_node@$host:$base/pg_auto_failover?sslmode=disable"
}

case "$cmd" in
  start)
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    as_owner mkdir -p "$dir/run"
    if [ ! -f "$dir/monitor/PG_VERSION" ]; then
      # shellcheck disable=SC2046
      as_owner pg_autoctl create monitor --pgdata "$dir/monitor" --pgport "$base" \
        --hostname 127.0.0.1 $(node_args) \
        >"$dir/monitor-create.log" 2>&1 || { tail -20 "$dir/monitor-create.log" >&2; exit 1; }
    fi
    run_keeper monitor
    for i in $(seq 1 100); do
      "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$base" && break
      sleep 0.2
    done
    tune_monitor
    for n in 1 2 3; do
      if [ -f "$dir/node$n/PG_VERSION" ]; then
        run_keeper "node$n"
      else
        # One at a time: the first becomes the primary, the others clone it. Created without
        # running, so that the keeper's own setting is in place before it starts (a reload
        # during its start-up killed its node-active service once).
        # shellcheck disable=SC2046
        as_owner bash -c "pg_autoctl create postgres --pgdata '$dir/node$n' \
          --pgport $((base + n)) --hostname $(node_host $n) $(node_args) \
          --monitor '$(monitor_uri_for $n)' --name node$n >>'$dir/node$n.log' 2>&1" ||
          { tail -20 "$dir/node$n.log" >&2; exit 1; }
        as_owner pg_autoctl config set --pgdata "$dir/node$n" timeout.network_partition_timeout \
          "$NETWORK_PARTITION_TIMEOUT_S" >/dev/null
        run_keeper "node$n"
        for i in $(seq 1 300); do
          [ -f "$dir/node$n/postmaster.pid" ] && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p $((base + n)) && break
          sleep 0.2
        done
      fi
    done
    for i in $(seq 1 600); do
      healthy && { formation_uri; exit 0; }
      sleep 0.2
    done
    echo "ha: the formation did not reach primary + 2 secondaries:" >&2
    as_owner pg_autoctl show state --pgdata "$dir/monitor" >&2 || true
    exit 1
    ;;
  uri) formation_uri ;;
  kill)
    node=${3:?NODE}
    kill_node "$node"
    ;;
  run-node)
    node=${3:?NODE}
    run_keeper "$node"
    ;;
  state) as_owner pg_autoctl show state --pgdata "$dir/monitor" ;;
  primary)   # the node that is primary now (reported and assigned), or nothing during a switch
    as_owner pg_autoctl show state --pgdata "$dir/monitor" |
      awk -F'|' '$6 ~ /^ *(wait_)?primary *$/ && $7 ~ /^ *(wait_)?primary *$/ {gsub(/ /, "", $1); print $1}'
    ;;
  secondary)   # a node that is secondary now, if any
    as_owner pg_autoctl show state --pgdata "$dir/monitor" |
      awk -F'|' '$6 ~ /^ *secondary *$/ && $7 ~ /^ *secondary *$/ {gsub(/ /, "", $1); print $1}' | head -1
    ;;
  healthy) healthy ;;
  stop)
    for d in "$dir"/node1 "$dir"/node2 "$dir"/node3 "$dir"/monitor; do
      [ -d "$d" ] && as_owner pg_autoctl stop --pgdata "$d" >/dev/null 2>&1 || true
    done
    for i in $(seq 1 50); do
      alive=""
      for n in node1 node2 node3 monitor; do
        [ -f "$dir/$n.pgid" ] && kill -0 -- "-$(cat "$dir/$n.pgid")" 2>/dev/null && alive=1
      done
      [ -z "$alive" ] && exit 0
      sleep 0.2
    done
    for n in node1 node2 node3 monitor; do kill_node "$n"; done
    ;;
  *) echo "ha.sh: unknown command $cmd" >&2; exit 2 ;;
esac
