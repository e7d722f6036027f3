#!/usr/bin/env bash
# The Go client's benchmark (scripts/client-test.sh go --bench starts the stack).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
./vendor.sh
export GOFLAGS=-mod=vendor GOPROXY=off GOCACHE=${GOCACHE:-$here/../../build/go-cache}
go build -o "$here/../../build/bin/ferry-go-bench" ./cmd/ferry-go-bench
exec "$here/../../build/bin/ferry-go-bench" "$@"
