#!/usr/bin/env bash
# Installs @grpc/grpc-js and @grpc/proto-loader from npm (package-lock.json pins them) unless
# present, and runs the example against $FERRY_BROKER.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if [ ! -d node_modules/@grpc/grpc-js ] || [ ! -d node_modules/@grpc/proto-loader ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
exec node ferry_example.js
