#!/usr/bin/env bash
# `make compose-test`: builds the images, starts docker-compose.yml, checks it like a user would,
# and stops everything it started; then the same for docker-compose.ha.yml (a pg_auto_failover
# formation), whose primary's container is killed during traffic. Works where no container registry is reachable: the Docker
# engine and the debian:bookworm base image come from scripts/docker-env.sh.
#
# Checks: every service healthy; a message produced through broker-1 is consumed through
# broker-2 (brokers share only PostgreSQL); orders placed by the order service reach the cart
# service through the outbox, the relay and the broker (ferry_inbox grows); every committed order
# is published exactly once and nothing else is (a declined order rolled back its outbox row:
# it must not be in the topic); /metrics of both brokers and the relay answer; health SERVING.
# HA stack: the same, plus a producer (ferryctl, retrying with the same dedup ids) running while
# the primary PostgreSQL's container is SIGKILLed: a standby is promoted, every acknowledged
# message is stored exactly once, orders keep flowing, the killed node rejoins.
# Ports are moved off the defaults so that a running `make run` is not disturbed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/docker-env.sh
source scripts/pg.sh

export FERRY_PG_PORT=${FERRY_PG_PORT:-$(ferry_pg_free_port)}
export FERRY_BROKER1_PORT=${FERRY_BROKER1_PORT:-17420} FERRY_BROKER2_PORT=${FERRY_BROKER2_PORT:-17421}
export FERRY_BROKER1_METRICS_PORT=19420 FERRY_BROKER2_METRICS_PORT=19421 FERRY_RELAY_METRICS_PORT=19422
export FERRY_PG_PASSWORD=compose-test
project=ferrycomposetest
compose() { docker-compose -p "$project" "$@"; }
compose_ha() { docker-compose -p "${project}ha" -f docker-compose.ha.yml "$@"; }
export FERRY_HA_PORT=17440 FERRY_HA_NODE1_PORT=17441 FERRY_HA_NODE2_PORT=17442 FERRY_HA_NODE3_PORT=17443
step() { printf '\n== %s\n' "$*"; }
wait_healthy() {   # COMPOSE-FUNCTION SERVICE...
  local fn=$1 s id deadline=$((SECONDS + 300))
  shift
  for s in "$@"; do
    id=$("$fn" ps -q "$s")
    until [ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy ]; do
      [ $SECONDS -lt $deadline ] || { echo "$s is not healthy after 300 s"; exit 1; }
      sleep 1
    done
    echo "$s: healthy"
  done
}

work=$(mktemp -d /tmp/ferry-compose-test.XXXXXX)
# This machine's own extra certificate authorities (an intercepting proxy in front of the npm
# registry) for the image build's npm ci (deploy/extra-ca/README.md); removed at the end.
extra_ca=()
for ca in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$ca" ] || continue
  cp "$ca" "deploy/extra-ca/ferry-compose-test-$(basename "$ca")"
  extra_ca+=("deploy/extra-ca/ferry-compose-test-$(basename "$ca")")
done
finish() {
  local code=$?
  rm -rf "$work"
  [ ${#extra_ca[@]} -eq 0 ] || rm -f "${extra_ca[@]}"
  if [ $code -ne 0 ]; then
    echo "compose-test: FAILED; the services' last log lines:"
    compose logs --tail 20 2>/dev/null || true
    compose_ha logs --tail 30 2>/dev/null || true
  fi
  step "stopping the stacks"
  compose down -v --remove-orphans || true
  compose_ha down -v --remove-orphans || true
  ferry_docker_down
  exit $code
}
trap finish EXIT

step "Docker engine and base image"
ferry_docker_up
docker version --format 'engine {{.Server.Version}}'

step "building the images (deploy/ferry.Dockerfile, deploy/postgres.Dockerfile, deploy/pg-auto-failover.Dockerfile)"
start=$SECONDS
compose build
compose_ha build monitor
echo "built in $((SECONDS - start)) s"

step "starting: postgres, migrate, broker-1, broker-2, topics, relay, order-service, cart-service"
compose up -d
wait_healthy compose postgres broker-1 broker-2 relay order-service cart-service
for s in migrate topics; do
  id=$(compose ps -q "$s")
  code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
  echo "$s: exited $code"
  [ "$code" = 0 ]
done


ctl() { docker run --rm -i --network host --entrypoint ferryctl ferry/broker:dev "$@"; }

# Every message in a topic, one JSON line each (ferryctl peek, every queue, paged).
peek_all() {   # BROKER TOPIC QUEUES
  local q from page
  for q in $(seq 0 $(($3 - 1))); do
    from=0
    while :; do
      page=$(ctl --broker "$1" --json peek "$2" --queue "$q" --from "$from" --max 1000)
      [ -n "$page" ] || break
      echo "$page"
      from=$(( $(tail -1 <<<"$page" | sed 's/.*"offset":\([0-9]*\).*/\1/') + 1 ))
    done
  done
}

# The orders topic against the shop's database, once the order service is stopped and the
# outbox drained: every committed order published exactly once, no other (a declined order's
# outbox row rolled back with it: if it were published, the relay would have invented a message).
check_orders() {   # COMPOSE-FUNCTION PSQL-FUNCTION
  local compose_fn=$1 psql_fn=$2 deadline
  "$compose_fn" stop order-service
  deadline=$((SECONDS + 60))
  until [ "$("$psql_fn" "SELECT count(*) FROM ferry_outbox WHERE status = 'pending'")" = 0 ]; do
    [ $SECONDS -lt $deadline ] || { echo "the outbox did not drain in 60 s"; exit 1; }
    sleep 1
  done
  "$psql_fn" "SELECT id FROM orders ORDER BY id" >"$work/orders.committed"
  peek_all "127.0.0.1:$FERRY_BROKER1_PORT" orders 4 >"$work/orders.topic"
  /usr/bin/python3 - "$work" <<'PY'
import json, sys
d = sys.argv[1]
committed = [int(l) for l in open(d + "/orders.committed") if l.strip()]
published = [json.loads(json.loads(l)["value"])["order"] for l in open(d + "/orders.topic") if l.strip()]
lost = sorted(set(committed) - set(published))
phantom = sorted(set(published) - set(committed))
dups = len(published) - len(set(published))
print(f"orders committed: {len(committed)}, published: {len(published)}, "
      f"lost: {len(lost)}, phantom: {len(phantom)}, duplicates: {dups}")
assert committed, "no order was committed"
assert not lost and not phantom and dups == 0, f"lost {lost[:5]} phantom {phantom[:5]}"
PY
  "$compose_fn" start order-service
}
psql_shop() {
  compose exec -T postgres psql -h /tmp -p "$FERRY_PG_PORT" -U postgres -d shop -tAc "$1"
}

step "a message produced through broker-1 is consumed through broker-2"
ctl --broker "127.0.0.1:$FERRY_BROKER1_PORT" topic create smoke --queues 2
echo "hello from compose-test" | ctl --broker "127.0.0.1:$FERRY_BROKER1_PORT" produce smoke
got=$(ctl --broker "127.0.0.1:$FERRY_BROKER2_PORT" consume smoke --group smoke --max 1 --wait-ms 5000)
echo "$got"
echo "$got" | grep -q '"value":"hello from compose-test"'

step "orders flow: order-service -> outbox -> relay -> broker -> cart-service (inbox)"
deadline=$((SECONDS + 60))
until [ "$(psql_shop "SELECT count(*) FROM ferry_inbox")" -ge 3 ]; do
  [ $SECONDS -lt $deadline ] || { echo "the cart service processed fewer than 3 orders in 60 s"; exit 1; }
  sleep 1
done
# One snapshot (the services keep running while we look).
psql_shop "SELECT 'orders committed: ' || (SELECT count(*) FROM orders)
  || E'\noutbox rows by status: ' || (SELECT string_agg(status || '=' || n, ', ')
                                      FROM (SELECT status, count(*) n FROM ferry_outbox GROUP BY 1) s)
  || E'\nprocessed by the cart service (inbox): ' || (SELECT count(*) FROM ferry_inbox)"
check_orders compose psql_shop
step "metrics and health"
for port in "$FERRY_BROKER1_METRICS_PORT" "$FERRY_BROKER2_METRICS_PORT" "$FERRY_RELAY_METRICS_PORT"; do
  /usr/bin/python3 - "$port" <<'PY'
import sys, urllib.request
port = sys.argv[1]
body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
lines = [l for l in body.splitlines() if l.startswith(("ferry_produced_messages_total",
         "ferry_relay_published_total", "ferry_consumer_lag_messages", "ferry_database_up",
         "ferry_relay_outbox_rows"))]
assert lines, f"no Ferry series on :{port}"
print(f":{port}/metrics", *lines[:4], sep="\n  ")
PY
done
ctl --broker "127.0.0.1:$FERRY_BROKER1_PORT" health
ctl --broker "127.0.0.1:$FERRY_BROKER2_PORT" health

step "stopping the simple stack"
compose down -v --remove-orphans

state() { compose_ha exec -T monitor pg_autoctl show state; }
primary() { state | awk -F'|' '$6 ~ /^ *(wait_)?primary *$/ && $7 ~ /^ *(wait_)?primary *$/ {gsub(/ /, "", $1); print $1}'; }
healed() { local st; st=$(state 2>/dev/null) || return 1
  [ "$(grep -c '| *primary *| *primary *$' <<<"$st")" = 1 ] &&
    [ "$(grep -c '| *secondary *| *secondary *$' <<<"$st")" = 2 ]; }
ha_url="postgresql://postgres@127.0.0.1:$FERRY_HA_NODE1_PORT,127.0.0.1:$FERRY_HA_NODE2_PORT,127.0.0.1:$FERRY_HA_NODE3_PORT"
psql_ha() {
  docker run --rm --network host --entrypoint psql ferry/pg-auto-failover:dev -qXAt \
    "$ha_url/shop?target_session_attrs=read-write&connect_timeout=2" -c "$1"
}

step "HA stack: monitor, node1-3 (pg_auto_failover), databases, migrate, brokers, relay, order/cart"
compose_ha up -d
wait_healthy compose_ha monitor node1 node2 node3 broker-1 broker-2 relay order-service cart-service
deadline=$((SECONDS + 120))
until healed; do [ $SECONDS -lt $deadline ] || { state; exit 1; }; sleep 1; done
state

step "HA: the primary's container is killed while a producer sends (ferryctl, retrying)"
brokers="ipv4:127.0.0.1:$FERRY_BROKER1_PORT,127.0.0.1:$FERRY_BROKER2_PORT"
ctl --broker "127.0.0.1:$FERRY_BROKER1_PORT" topic create ha-smoke --queues 2
docker run --rm --network host --entrypoint sh ferry/broker:dev -c "
  i=0; end=\$((\$(date +%s) + 75))
  while [ \$(date +%s) -lt \$end ]; do
    i=\$((i + 1))
    if ferryctl --broker '$brokers' produce ha-smoke --value \$i --retry-for 90 >/dev/null 2>&1
    then echo \"\$i ok\"; else echo \"\$i failed\"; fi
    sleep 0.1
  done" >"$work/produced" &
producer=$!
inbox_before=$(psql_ha "SELECT count(*) FROM ferry_inbox")
sleep 15
victim=$(primary)
echo "killing $victim (docker kill: SIGKILL to PostgreSQL and its keeper)"
compose_ha kill -s SIGKILL "$victim"
killed=$SECONDS
deadline=$((SECONDS + 120))
until p=$(primary) && [ -n "$p" ] && [ "$p" != "$victim" ]; do
  [ $SECONDS -lt $deadline ] || { echo "no new primary in 120 s"; state; exit 1; }
  sleep 0.5
done
echo "new primary: $p, $((SECONDS - killed)) s after the kill"
compose_ha start "$victim"
deadline=$((SECONDS + 180))
until healed; do [ $SECONDS -lt $deadline ] || { echo "the formation did not heal"; state; exit 1; }; sleep 1; done
echo "$victim rejoined as a standby, $((SECONDS - killed)) s after the kill"
state
wait "$producer"
peek_all "127.0.0.1:$FERRY_BROKER1_PORT" ha-smoke 2 >"$work/stored"
/usr/bin/python3 - "$work" <<'PY'
import json, sys
d = sys.argv[1]
acked, failed = set(), set()
for line in open(d + "/produced"):
    v, outcome = line.split()
    (acked if outcome == "ok" else failed).add(v)
stored = [json.loads(l)["value"] for l in open(d + "/stored") if l.strip()]
lost = acked - set(stored)
phantom = set(stored) - acked - failed
dups = len(stored) - len(set(stored))
print(f"acknowledged: {len(acked)}, failed: {len(failed)}, stored: {len(stored)}, lost: {len(lost)}, "
      f"phantom: {len(phantom)}, duplicates: {dups}")
assert acked and not lost and not phantom and dups == 0 and not failed
PY
deadline=$((SECONDS + 60))
until [ "$(psql_ha "SELECT count(*) FROM ferry_inbox")" -gt "$inbox_before" ]; do
  [ $SECONDS -lt $deadline ] || { echo "no order reached the cart service after the failover"; exit 1; }
  sleep 1
done
echo "orders processed by the cart service: $inbox_before before the kill, $(psql_ha "SELECT count(*) FROM ferry_inbox") now"
check_orders compose_ha psql_ha
ctl --broker "127.0.0.1:$FERRY_BROKER1_PORT" health
ctl --broker "127.0.0.1:$FERRY_BROKER2_PORT" health

echo
echo "compose-test: ok"
