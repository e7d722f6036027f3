# Source this file (after scripts/pg.sh). A throwaway Ferry stack for demos and benchmarks:
#   ferry_stack_up [DATABASE...]   PostgreSQL (deploy/postgresql.conf) with database `ferry` and the named
#                                  application databases (ferry_outbox applied), ferry-broker on
#                                  a free port. Sets STACK_DIR, STACK_PORT, BROKER, BROKER_DB,
#                                  BROKER_PID, and APP_DB_<NAME> for each application database.
#   ferry_stack_relay DB [ARGS...] starts ferry-relay on that application database
#   ferry_stack_topic NAME         creates a topic with 4 queues
# Everything is stopped and removed on exit.
ferry_stack_pids=()
ferry_stack_down() {
  for p in "${ferry_stack_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ferry_pg_stop "$STACK_DIR"
  rm -rf "$STACK_DIR"
}

ferry_stack_up() {
  local root db
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  FERRY_BIN="${FERRY_BIN:-$root/build/bin}"  # another build's binaries, for A/B runs
  STACK_DIR=$(mktemp -d /tmp/ferry-stack.XXXXXX); chmod 755 "$STACK_DIR"
  trap ferry_stack_down EXIT
  STACK_PORT=$(ferry_pg_free_port)
  ferry_pg_start "$STACK_DIR" "$STACK_PORT" deploy
  "$PG_BIN/createdb" -h "$STACK_DIR" -p "$STACK_PORT" -U postgres ferry
  BROKER_DB=$(ferry_pg_conninfo "$STACK_DIR" "$STACK_PORT" ferry)
  for db in "$@"; do
    "$PG_BIN/createdb" -h "$STACK_DIR" -p "$STACK_PORT" -U postgres "$db"
    printf -v "APP_DB_${db^^}" '%s' "$(ferry_pg_conninfo "$STACK_DIR" "$STACK_PORT" "$db")"
    local var="APP_DB_${db^^}"
    "$FERRY_BIN/ferry-relay" migrate --log-level warn --database-url "${!var}"
  done
  BROKER="127.0.0.1:$(ferry_pg_free_port)"
  # shellcheck disable=SC2086  # BROKER_ARGS: extra broker flags, e.g. "--group-commit false"
  "$FERRY_BIN/ferry-broker" --listen "$BROKER" --log-level warn --database-url "$BROKER_DB" \
    ${BROKER_ARGS:-} &
  BROKER_PID=$!; ferry_stack_pids+=($BROKER_PID)
  until "$FERRY_BIN/ferryctl" --broker "$BROKER" topic list >/dev/null 2>&1; do sleep 0.1; done
}

ferry_stack_relay() {
  local var="APP_DB_${1^^}"; shift
  "$FERRY_BIN/ferry-relay" --log-level "${RELAY_LOG_LEVEL:-warn}" --broker "$BROKER" \
    --database-url "${!var}" "$@" &
  ferry_stack_pids+=($!)
}

ferry_stack_topic() {
  "$FERRY_BIN/ferryctl" --broker "$BROKER" topic create "$1" --queues 4 >/dev/null
}
