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
if [ $# -eq 0 ]; then
  # The README's opening example, as written (in _readme/, which ./... patterns skip).
  mkdir -p _readme
  awk '/^```go/{f=1; next} /^```/{if (f) exit} f' README.md > _readme/main.go
  out=$(go run ./_readme)
  rm -rf _readme
  echo "README example: $out"
  grep -q "order-1 order 1 created" <<<"$out" || { echo "the README example did not receive its message" >&2; exit 1; }
fi
exec go test -count=1 -v -timeout 10m "${@:-./...}"
