#!/usr/bin/env bash
# A COMMIT whose wait for the synchronous standby is cancelled is committed on the primary
# only, and PostgreSQL answers it with success plus a WARNING. Ferry never cancels a statement;
# when someone else does (a statement_timeout on the broker's role, pg_cancel_backend), the
# Produce must not answer OK. Here: a private PostgreSQL whose synchronous standby never comes
# ("nobody"), a Produce waiting in SyncRep, an operator's pg_cancel_backend: ferryctl must fail
# with UNAVAILABLE and the "outcome is unknown: retry with the same dedup ids" message, and the
# broker's health must read NOT_SERVING (it cannot commit). Prints "sync-cancel: ok".
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/pg.sh"
bin=${FERRY_BIN:-$root/build/bin}
dir=$(mktemp -d /tmp/ferry-sync-cancel.XXXXXX)
chmod 755 "$dir"
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill -9 "$broker_pid" 2>/dev/null || true
  ferry_pg_stop "$dir" || true
  [ -n "${FERRY_KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
pgport=$(ferry_pg_free_port)
ferry_pg_start "$dir" "$pgport" durable
psql_() { ferry_pg_run "$PG_BIN/psql" -qXAt -h "$dir" -p "$pgport" -U postgres "$@"; }
psql_ -d postgres -c "CREATE DATABASE ferry"
port=$(ferry_pg_free_port)
"$bin/ferry-broker" --database-url "$(ferry_pg_conninfo "$dir" "$pgport" ferry)" \
  --listen "127.0.0.1:$port" --health-interval-ms 200 >"$dir/broker.log" 2>&1 &
broker_pid=$!
ctl() { "$bin/ferryctl" --broker "127.0.0.1:$port" "$@"; }
for i in $(seq 1 100); do ctl health >/dev/null 2>&1 && break; sleep 0.1; done
ctl topic create t --queues 1 >/dev/null
ctl produce t --value before >/dev/null

# From now on every commit waits for a standby that never comes.
psql_ -d postgres -c "ALTER SYSTEM SET synchronous_standby_names = 'nobody'" -c "SELECT pg_reload_conf()" >/dev/null
ctl produce t --value waiting --dedup-id w1 --retry-for 0 >"$dir/out" 2>&1 &
producer=$!
waiting=""
for i in $(seq 1 100); do
  waiting=$(psql_ -d postgres -c "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'
                                   AND application_name LIKE 'ferry-broker%' AND query NOT LIKE '%ferry.health%'" | head -1)
  [ -n "$waiting" ] && break
  sleep 0.1
done
[ -n "$waiting" ] || { echo "sync-cancel: no Produce waited for the standby" >&2; cat "$dir/out" >&2; exit 1; }
for i in $(seq 1 50); do   # the probe's own commit waits too, and gives up after 1 s
  health_while_waiting=$(ctl health 2>&1 || true)
  grep -q "NOT_SERVING" <<<"$health_while_waiting" && break
  sleep 0.1
done
psql_ -d postgres -c "SELECT pg_cancel_backend($waiting)" >/dev/null
rc=0
wait "$producer" || rc=$?
out=$(cat "$dir/out")
echo "sync-cancel: produce exit $rc: $out"
echo "sync-cancel: health while no standby confirms: $health_while_waiting"
[ "$rc" != 0 ] || { echo "sync-cancel: FAILED: the Produce answered OK" >&2; exit 1; }
grep -q "UNAVAILABLE" <<<"$out" && grep -q "outcome is unknown" <<<"$out" ||
  { echo "sync-cancel: FAILED: not the outcome-unknown answer" >&2; exit 1; }
grep -q "NOT_SERVING" <<<"$health_while_waiting" ||
  { echo "sync-cancel: FAILED: health was not NOT_SERVING" >&2; exit 1; }
# The standby requirement goes away: health comes back by itself, and the retry with the same
# dedup id is answered as the duplicate it is (stored once).
psql_ -d postgres -c "ALTER SYSTEM RESET synchronous_standby_names" -c "SELECT pg_reload_conf()" >/dev/null
for i in $(seq 1 50); do ctl health >/dev/null 2>&1 && break; sleep 0.2; done
ctl health >/dev/null || { echo "sync-cancel: FAILED: health did not come back" >&2; exit 1; }
ctl produce t --value waiting --dedup-id w1 >/dev/null
count=$(ctl --json peek t --queue 0 --max 100 | grep -c '"value":"waiting"' || true)
[ "$count" = 1 ] || { echo "sync-cancel: FAILED: stored $count times" >&2; exit 1; }
echo "sync-cancel: ok"
