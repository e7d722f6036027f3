#!/usr/bin/env bash
# The Node client's benchmark (scripts/client-test.sh node --bench starts the stack).
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules/@grpc/grpc-js ] || npm ci --no-audit --no-fund --loglevel=error
exec node bench.js "$@"
