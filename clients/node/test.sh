#!/usr/bin/env bash
# The Node client's tests (scripts/client-test.sh node starts the stack): installs the pinned
# packages from npm (package-lock.json) unless present, type-checks index.d.ts, runs node:test.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/@grpc/grpc-js ] || [ ! -d node_modules/pg ] || [ ! -d node_modules/typescript ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npx --no-install tsc --noEmit --strict --types node test/types-check.ts
if [ $# -eq 0 ]; then
  # The README's opening example, as written (require('ferry-client') resolves to this package).
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/node_modules" && ln -s "$PWD" "$tmp/node_modules/ferry-client"
  awk '/^```js/{f=1; next} /^```/{if (f) exit} f' README.md > "$tmp/readme.js"
  out=$(node "$tmp/readme.js")
  echo "README example: $out"
  grep -q "order-1 order 1 created" <<<"$out" || { echo "the README example did not receive its message" >&2; exit 1; }
fi
exec node --test --test-concurrency=1 "${@:-test/}"
