#!/usr/bin/env bash
# Builds the example offline on the Go client library from this checkout (go.mod replaces
# github.com/ferry/ferry-go with ../../clients/go; clients/go/vendor.sh links Debian's Go gRPC
# and protobuf packages) and runs it against $FERRY_BROKER.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
"$root/clients/go/vendor.sh" "$here"
cd "$here"
GOFLAGS=-mod=vendor GOPROXY=off GOCACHE=${GOCACHE:-$root/build/go-cache} \
  go build -o "$root/build/bin/ferry-go-example" .
exec "$root/build/bin/ferry-go-example"
