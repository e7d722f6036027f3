#!/usr/bin/env bash
# Builds vendor/ for an offline build from Debian's Go packages (/usr/share/gocode/src:
# golang-google-grpc-dev, golang-google-protobuf-dev and what they depend on; lib/pq for the
# tests): symlinks into the source trees, and a vendor/modules.txt naming go.mod's requirements
# (go checks that the two agree). A requirement replaced by a local directory (`replace M => DIR`,
# as examples/go does with this module) is linked to that directory. Then
# `go build -mod=vendor` needs no network. (With network, `go mod tidy && go build` fetches the
# same modules from the proxy instead.)
# Usage: clients/go/vendor.sh [MODULE_DIR]   (default: clients/go)
set -euo pipefail
mod=$(cd "${1:-$(dirname "$0")}" && pwd)
src=${GOCODE:-/usr/share/gocode/src}
vendor="$mod/vendor"
rm -rf "$vendor"
mkdir -p "$vendor"
# One level of real directories (github.com/, golang.org/x/ ...), symlinks below it, so that a
# replaced module can sit beside Debian's.
for d in "$src"/*/; do
  host=$(basename "$d")
  mkdir -p "$vendor/$host"
  for org in "$d"*/; do ln -s "${org%/}" "$vendor/$host/$(basename "$org")"; done
done
: > "$vendor/modules.txt"
replaced=()
while read -r path version; do
  replacement=$(awk -v p="$path" '$1 == "replace" && $2 == p && $3 == "=>" {print $4}' "$mod/go.mod")
  if [ -n "$replacement" ]; then
    target=$(cd "$mod/$replacement" && pwd)
    rm -rf "${vendor:?}/$path"; mkdir -p "$(dirname "$vendor/$path")"
    ln -s "$target" "$vendor/$path"
    printf '# %s %s => %s\n## explicit\n' "$path" "$version" "$replacement" >> "$vendor/modules.txt"
    replaced+=("# $path => $replacement")  # go also wants the replace directive itself listed
  else
    printf '# %s %s\n## explicit\n' "$path" "$version" >> "$vendor/modules.txt"
  fi
done < <(awk '/^require \(/{r=1; next} r && /^\)/{r=0} r && NF>=2 {print $1, $2}
              /^require [^(]/{print $2, $3}' "$mod/go.mod")
for line in "${replaced[@]}"; do echo "$line" >> "$vendor/modules.txt"; done
