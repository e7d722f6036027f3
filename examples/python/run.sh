#!/usr/bin/env bash
# Generates the Python stubs from proto/ (protoc + Debian's grpc_python_plugin, the same gRPC
# version as python3-grpcio) and runs the example against $FERRY_BROKER.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
gen=${FERRY_PY_GEN:-$root/build/examples/python}
mkdir -p "$gen"
protoc -I "$root/proto" --python_out="$gen" --grpc_out="$gen" \
  --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin "$root"/proto/ferry/v1/*.proto
FERRY_PY_GEN="$gen" exec /usr/bin/python3 "$here/ferry_example.py"
