#!/usr/bin/env bash
# Runs a command with a temporary PostgreSQL 15 cluster (removed afterwards) and exports
# FERRY_TEST_PG, a libpq conninfo for its `postgres` database. Tests create and drop their own
# databases in it. Usage: scripts/with-test-postgres.sh ctest --test-dir build
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/pg.sh"

dir=$(mktemp -d /tmp/ferry-test-pg.XXXXXX)
chmod 755 "$dir"
cleanup() { ferry_pg_stop "$dir"; rm -rf "$dir"; }
trap cleanup EXIT INT TERM

started=""
for try in 1 2 3 4 5; do
  port=$(ferry_pg_free_port)
  if ferry_pg_start "$dir" "$port" fast; then started=1; break; fi
  grep -q 'already in use' "$dir/server.log" 2>/dev/null || exit 1
done
[ -n "$started" ] || { echo "with-test-postgres: no free port" >&2; exit 1; }
export FERRY_TEST_PG
FERRY_TEST_PG=$(ferry_pg_conninfo "$dir" "$port" postgres)
echo "with-test-postgres: PostgreSQL on $dir port $port"
"$@"
