#!/usr/bin/env bash
# `make compose-test`: builds the images, starts docker-compose.yml, checks it like a user would,
# and stops everything it started. Works where no container registry is reachable: the Docker
# engine and the debian:bookworm base image come from scripts/docker-env.sh.
#
# Checks: every service healthy; a message produced through broker-1 is consumed through
# broker-2 (brokers share only PostgreSQL); orders placed by the order service reach the cart
# service through the outbox, the relay and the broker (ferry_inbox grows, declined orders
# never arrive); /metrics of both brokers and the relay answer; gRPC health is SERVING.
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
step() { printf '\n== %s\n' "$*"; }

finish() {
  local code=$?
  if [ $code -ne 0 ]; then
    echo "compose-test: FAILED; the services' last log lines:"
    compose logs --tail 20 2>/dev/null || true
  fi
  step "stopping the stack"
  compose down -v --remove-orphans || true
  ferry_docker_down
  exit $code
}
trap finish EXIT

step "Docker engine and base image"
ferry_docker_up
docker version --format 'engine {{.Server.Version}}'

step "building the images (deploy/ferry.Dockerfile, deploy/postgres.Dockerfile)"
start=$SECONDS
compose build
echo "built in $((SECONDS - start)) s"

step "starting: postgres, migrate, broker-1, broker-2, topics, relay, order-service, cart-service"
compose up -d
services="postgres broker-1 broker-2 relay order-service cart-service"
deadline=$((SECONDS + 300))
for s in $services; do
  id=$(compose ps -q "$s")
  until [ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy ]; do
    [ $SECONDS -lt $deadline ] || { echo "$s is not healthy after 300 s"; exit 1; }
    sleep 1
  done
  echo "$s: healthy"
done
for s in migrate topics; do
  id=$(compose ps -q "$s")
  code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
  echo "$s: exited $code"
  [ "$code" = 0 ]
done

ctl() { docker run --rm -i --network host --entrypoint ferryctl ferry/broker:dev "$@"; }
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
# Every message the cart service processed belongs to a committed order (declined ones rolled
# back with their outbox row, so they cannot arrive).
phantom=$(psql_shop "SELECT count(*) FROM ferry_inbox i WHERE NOT EXISTS (SELECT 1 FROM ferry_outbox o WHERE o.id::text = i.message_id)")
echo "processed messages without a committed outbox row: $phantom"
[ "$phantom" = 0 ]

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

echo
echo "compose-test: ok"
