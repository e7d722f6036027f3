#!/usr/bin/env bash
# The Go client's tests (scripts/client-test.sh go starts the stack): offline, against Debian's
# Go packages (vendor.sh), after checking that ferrypb/ matches proto/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
./gen.sh "$tmp"
if ! diff -r "$tmp" ferrypb >/dev/null; then
  echo "clients/go/ferrypb is stale: run clients/go/gen.sh and commit it" >&2; exit 1
fi
./vendor.sh
export GOFLAGS=-mod=vendor GOPROXY=off GOCACHE=${GOCACHE:-$here/../../build/go-cache}
go vet ./...
exec go test -count=1 -v -timeout 10m "${@:-./...}"
