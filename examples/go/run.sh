#!/usr/bin/env bash
# Builds the Go example offline in GOPATH mode (Debian's golang-go, golang-google-grpc-dev and
# the protobuf Go packages under /usr/share/gocode; stubs from proto/ with protoc-gen-go and
# protoc-gen-go-grpc) and runs it against $FERRY_BROKER.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ws=${FERRY_GO_WS:-$root/build/examples/go}
pkg="$ws/src/ferryexample"
mkdir -p "$pkg/ferrypb"
cp "$here/main.go" "$pkg/"
map="Mferry/v1/broker.proto=ferryexample/ferrypb,Mferry/v1/admin.proto=ferryexample/ferrypb"
protoc -I "$root/proto" \
  --go_out="$pkg/ferrypb" --go_opt=paths=source_relative --go_opt="$map" \
  --go-grpc_out="$pkg/ferrypb" --go-grpc_opt=paths=source_relative --go-grpc_opt="$map" \
  "$root"/proto/ferry/v1/*.proto
# paths=source_relative writes ferrypb/ferry/v1/*.go: one package directory is wanted.
mv "$pkg"/ferrypb/ferry/v1/*.go "$pkg/ferrypb/" && rm -rf "$pkg/ferrypb/ferry"
cd "$pkg"
GO111MODULE=off GOPATH="$ws:/usr/share/gocode" GOPROXY=off GOFLAGS= GOCACHE="$ws/cache" \
  go build -o "$ws/bin/ferry-go-example" .
exec "$ws/bin/ferry-go-example"
