#!/usr/bin/env bash
# Checks that every C++ file of the project is clang-formatted (.clang-format: Google, 100
# columns); `make format` fixes what it lists. Run by `make test` (ctest label unit) and so by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files 'services/*.cc' 'services/*.h' 'tests/*.cc' 'tests/*.h' \
  'bench/*.cc' 'bench/*.h' 'fuzz/*.cc' 'examples/*.cc' 'examples/*.h' 2>/dev/null ||
  find services tests bench fuzz examples -name '*.cc' -o -name '*.h')
bad=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "not formatted: $f"
    bad=1
  fi
done
[ "$bad" = 0 ] && echo "format: ok (${#files[@]} files)" || { echo "run: make format"; exit 1; }
