#!/usr/bin/env bash
# Builds vendor/ for an offline build from Debian's Go packages (/usr/share/gocode/src:
# golang-google-grpc-dev, golang-google-protobuf-dev and what they depend on; lib/pq for the
# tests): one symlink per top-level source tree and a vendor/modules.txt naming go.mod's
# requirements. Then `go build -mod=vendor ./...` needs no network. (With network, plain
# `go mod tidy && go build` fetches the same modules from the proxy instead.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${GOCODE:-/usr/share/gocode/src}
rm -rf "$here/vendor"
mkdir -p "$here/vendor"
for d in "$src"/*/; do
  ln -s "${d%/}" "$here/vendor/$(basename "$d")"
done
# modules.txt: each requirement of go.mod with "## explicit" (go checks that they agree).
awk '/^require \(/{r=1; next} r && /^\)/{r=0} r && NF>=2 {print "# " $1 " " $2 "\n## explicit"}
     /^require [^(]/{print "# " $2 " " $3 "\n## explicit"}' "$here/go.mod" > "$here/vendor/modules.txt"
