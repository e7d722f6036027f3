#!/usr/bin/env bash
# Runs examples/<LANG>/run.sh against a throwaway stack (PostgreSQL + ferry-broker with quick
# back-checks), as ctest does for each example whose toolchain is installed.
# Usage: scripts/example-test.sh python|go|node
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/pg.sh"
source "$root/scripts/stack.sh"
BROKER_ARGS="--txn-check-after-ms 300 --txn-check-interval-ms 300" ferry_stack_up
FERRY_BROKER="$BROKER" "$root/examples/$1/run.sh"
