#!/usr/bin/env bash
# Installs ferry-client from this checkout (clients/node, with its pinned @grpc packages from
# npm) unless present, and runs the example against $FERRY_BROKER.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
[ -d ../../clients/node/node_modules/@grpc/grpc-js ] || (cd ../../clients/node && npm ci --no-audit --no-fund --loglevel=error)
if [ ! -e node_modules/ferry-client ]; then
  npm install --no-audit --no-fund --loglevel=error
fi
exec node ferry_example.js
