#!/usr/bin/env bash
# Runs a client library's tests (clients/<LANG>/test.sh) against a throwaway stack: PostgreSQL,
# ferry-broker (back-checks after 300 ms), an application database `app` with the outbox tables
# and ferry-relay publishing from it. The tests are given:
#   FERRY_BROKER             the broker's address
#   FERRY_TEST_DATABASE_URL  the application database (ferry_outbox, ferry_inbox), a libpq URI
#   FERRY_TEST_BROKER_CTL    a command: `kill` SIGKILLs the broker, `start` starts it again on the
#                            same address and waits until it answers
#   FERRY_TEST_SECURE_BROKER a second broker on the same database with --auth and mutual TLS,
#   FERRY_TEST_SECURE_TOKEN  an admin token for it, FERRY_TEST_TLS_CA (its CA, which also signed)
#   FERRY_TEST_TLS_CLIENT_CERT / FERRY_TEST_TLS_CLIENT_KEY (a client certificate)
# Usage: scripts/client-test.sh python|go|node [ARGS...]   (ctest runs each one in make test)
#        scripts/client-test.sh LANG --bench [ARGS...]     clients/<LANG>/bench.sh instead
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lang=$1; shift
source "$root/scripts/pg.sh"
source "$root/scripts/stack.sh"
broker_args="--txn-check-after-ms 300 --txn-check-interval-ms 300"
BROKER_ARGS="$broker_args" ferry_stack_up app
ferry_stack_relay app
echo "$BROKER_PID" > "$STACK_DIR/broker.pid"
ctl="$STACK_DIR/broker-ctl"
cat > "$ctl" <<EOF
#!/usr/bin/env bash
set -euo pipefail
case "\$1" in
  kill)
    pid=\$(cat "$STACK_DIR/broker.pid")
    kill -9 "\$pid" 2>/dev/null || true
    while kill -0 "\$pid" 2>/dev/null && ! grep -q '^Z' <(ps -o stat= -p "\$pid" 2>/dev/null); do
      sleep 0.02
    done ;;
  start)
    "$FERRY_BIN/ferry-broker" --listen "$BROKER" --log-level warn --database-url "$BROKER_DB" \
      $broker_args >>"$STACK_DIR/broker.log" 2>&1 &
    echo \$! > "$STACK_DIR/broker.pid"
    until "$FERRY_BIN/ferryctl" --broker "$BROKER" topic list >/dev/null 2>&1; do sleep 0.05; done ;;
  *) echo "usage: broker-ctl kill|start" >&2; exit 2 ;;
esac
EOF
chmod +x "$ctl"
# The secure broker: a throwaway CA, a server certificate for 127.0.0.1 and a client one.
pki="$STACK_DIR/pki"; mkdir -p "$pki"
(
  cd "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ferry-test-ca" -keyout ca.key -out ca.pem 2>/dev/null
  for leaf in server client; do
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$leaf" -keyout "$leaf.key" -out "$leaf.csr" 2>/dev/null
  done
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > server.ext
  printf 'extendedKeyUsage=clientAuth\n' > client.ext
  for leaf in server client; do
    openssl x509 -req -in "$leaf.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile "$leaf.ext" -out "$leaf.pem" 2>/dev/null
  done
)
secure_token=$("$FERRY_BIN/ferry-broker" create-admin client-tests --database-url "$BROKER_DB" | tail -1)
secure="127.0.0.1:$(ferry_pg_free_port)"
"$FERRY_BIN/ferry-broker" --listen "$secure" --log-level warn --database-url "$BROKER_DB" --auth true \
  --tls-cert "$pki/server.pem" --tls-key "$pki/server.key" --tls-client-ca "$pki/ca.pem" &
secure_pid=$!; ferry_stack_pids+=($secure_pid)
until FERRY_TOKEN="$secure_token" "$FERRY_BIN/ferryctl" --broker "$secure" --tls-ca "$pki/ca.pem" \
    --tls-cert "$pki/client.pem" --tls-key "$pki/client.key" topic list >/dev/null 2>&1; do
  kill -0 "$secure_pid" 2>/dev/null || { echo "client-test: the --auth/TLS broker exited" >&2; exit 1; }
  sleep 0.1
done
export FERRY_TEST_SECURE_BROKER="$secure" FERRY_TEST_SECURE_TOKEN="$secure_token" \
  FERRY_TEST_TLS_CA="$pki/ca.pem" FERRY_TEST_TLS_CLIENT_CERT="$pki/client.pem" \
  FERRY_TEST_TLS_CLIENT_KEY="$pki/client.key"
# The restarted broker is not in stack.sh's list: stop it too.
trap 'kill "$(cat "$STACK_DIR/broker.pid")" 2>/dev/null || true; ferry_stack_down' EXIT
export FERRY_BROKER="$BROKER" FERRY_TEST_BROKER_CTL="$ctl"
export FERRY_TEST_DATABASE_URL="postgresql://postgres@/app?host=${STACK_DIR}&port=${STACK_PORT}"
if [ "${1:-}" = "--bench" ]; then
  shift
  "$root/clients/$lang/bench.sh" "$@"
else
  "$root/clients/$lang/test.sh" "$@"
fi
