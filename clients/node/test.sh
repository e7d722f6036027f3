#!/usr/bin/env bash
# The Node client's tests (scripts/client-test.sh node starts the stack): installs the pinned
# packages from npm (package-lock.json) unless present, type-checks index.d.ts, runs node:test.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/@grpc/grpc-js ] || [ ! -d node_modules/pg ] || [ ! -d node_modules/typescript ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npx --no-install tsc --noEmit --strict --types node test/types-check.ts
exec node --test --test-concurrency=1 "${@:-test/}"
