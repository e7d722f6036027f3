#!/usr/bin/env bash
# A pg_auto_failover formation on this machine (Debian's postgresql-15-auto-failover and
# pg-auto-failover-cli): a monitor and three PostgreSQL nodes with keepers, synchronous
# replication, run as an unprivileged user (`postgres` when called as root) under DIR, on
# 127.0.0.1 ports BASE (monitor) and BASE+1..BASE+3 (nodes). For `make run-ha` and the HA tests.
#   scripts/ha.sh start DIR BASE   create (first time) and start; waits for a primary and two
#                                  secondaries; prints the formation's multi-host URI
#   scripts/ha.sh uri DIR          the URI brokers and relays use (target_session_attrs=read-write)
#   scripts/ha.sh state DIR        pg_autoctl show state
#   scripts/ha.sh primary DIR      the data directory of the current primary
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

monitor_uri() { echo "postgres://autoctl_node@127.0.0.1:$base/pg_auto_failover?sslmode=disable"; }

formation_uri() {
  as_owner pg_autoctl show uri --pgdata "$dir/monitor" --formation default
}

node_args() {
  echo --hostname 127.0.0.1 --auth trust --no-ssl --pgctl "$PG_BIN/pg_ctl"
}

case "$cmd" in
  start)
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    as_owner mkdir -p "$dir/run"
    if [ ! -f "$dir/monitor/PG_VERSION" ]; then
      # shellcheck disable=SC2046
      as_owner pg_autoctl create monitor --pgdata "$dir/monitor" --pgport "$base" $(node_args) \
        >"$dir/monitor-create.log" 2>&1 || { tail -20 "$dir/monitor-create.log" >&2; exit 1; }
    fi
    as_owner bash -c "nohup pg_autoctl run --pgdata '$dir/monitor' >>'$dir/monitor.log' 2>&1 &"
    for i in $(seq 1 100); do
      "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$base" && break
      sleep 0.2
    done
    for n in 1 2 3; do
      if [ -f "$dir/node$n/PG_VERSION" ]; then
        as_owner bash -c "nohup pg_autoctl run --pgdata '$dir/node$n' >>'$dir/node$n.log' 2>&1 &"
      else
        # One at a time: the first becomes the primary, the others clone it.
        # shellcheck disable=SC2046
        as_owner bash -c "nohup pg_autoctl create postgres --pgdata '$dir/node$n' \
          --pgport $((base + n)) $(node_args) --monitor '$(monitor_uri)' --name node$n \
          --run >>'$dir/node$n.log' 2>&1 &"
        for i in $(seq 1 300); do
          [ -f "$dir/node$n/postmaster.pid" ] && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p $((base + n)) && break
          sleep 0.2
        done
      fi
    done
    for i in $(seq 1 600); do
      state=$(as_owner pg_autoctl show state --pgdata "$dir/monitor" 2>/dev/null || true)
      if [ "$(grep -c '| *primary *| *primary$' <<<"$state")" = 1 ] &&
         [ "$(grep -c '| *secondary *| *secondary$' <<<"$state")" = 2 ]; then
        formation_uri
        exit 0
      fi
      sleep 0.2
    done
    echo "ha: the formation did not reach primary + 2 secondaries:" >&2
    as_owner pg_autoctl show state --pgdata "$dir/monitor" >&2 || true
    exit 1
    ;;
  uri) formation_uri ;;
  kill)
    node=${3:?NODE}
    pkill -9 -f "pg_autoctl.*$dir/$node( |\$)" || true
    [ -f "$dir/$node/postmaster.pid" ] && kill -9 "$(head -1 "$dir/$node/postmaster.pid")" 2>/dev/null || true
    ;;
  run-node)
    node=${3:?NODE}
    as_owner bash -c "nohup pg_autoctl run --pgdata '$dir/$node' >>'$dir/$node.log' 2>&1 &"
    ;;
  state) as_owner pg_autoctl show state --pgdata "$dir/monitor" ;;
  primary)
    port=$(as_owner pg_autoctl show state --pgdata "$dir/monitor" |
           awk -F'|' '$6 ~ /primary/ && $7 ~ /primary/ {split($3, hp, ":"); gsub(/ /, "", hp[2]); print hp[2]}')
    echo "$dir/node$((port - base))"
    ;;
  stop)
    for d in "$dir"/node1 "$dir"/node2 "$dir"/node3 "$dir"/monitor; do
      [ -d "$d" ] && as_owner pg_autoctl stop --pgdata "$d" >/dev/null 2>&1 || true
    done
    for i in $(seq 1 100); do
      pgrep -f "pg_autoctl.*$dir" >/dev/null || exit 0
      sleep 0.2
    done
    pkill -9 -f "pg_autoctl.*$dir" || true
    for d in "$dir"/node1 "$dir"/node2 "$dir"/node3 "$dir"/monitor; do
      [ -f "$d/postmaster.pid" ] && kill -9 "$(head -1 "$d/postmaster.pid")" 2>/dev/null || true
    done
    ;;
  *) echo "ha.sh: unknown command $cmd" >&2; exit 2 ;;
esac
