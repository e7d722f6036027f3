#!/usr/bin/env bash
# Regenerates ferrypb/ from the repository's proto/ (protoc-gen-go and protoc-gen-go-grpc:
# Debian's protoc-gen-go protoc-gen-go-grpc). The generated files are committed, so that the
# module builds with `go build` alone; test.sh checks that they match proto/.
# Usage: clients/go/gen.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto=$(cd "$here/../../proto" && pwd)
out=${1:-$here/ferrypb}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
map="Mferry/v1/broker.proto=github.com/ferry/ferry-go/ferrypb,Mferry/v1/admin.proto=github.com/ferry/ferry-go/ferrypb"
protoc -I "$proto" \
  --go_out="$tmp" --go_opt=paths=source_relative --go_opt="$map" \
  --go-grpc_out="$tmp" --go-grpc_opt=paths=source_relative --go-grpc_opt="$map" \
  "$proto"/ferry/v1/*.proto
mkdir -p "$out"
cp "$tmp"/ferry/v1/*.go "$out/"
