#!/usr/bin/env bash
# `make fuzz` (and, briefly, `make test`): builds the libFuzzer targets in build-fuzz/ with clang
# (ASan + UBSan, everything instrumented) and runs each for SECONDS (default 60), starting from
# the corpus in fuzz/corpus/<target> and replaying fuzz/regressions/<target> (inputs that once
# crashed). New interesting inputs stay in build-fuzz/corpus/; a crash leaves its input in
# build-fuzz/ and fails the run: add it to fuzz/regressions/<target>/ once fixed.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(receipt requests config outbox)
build=${FERRY_FUZZ_BUILD:-$root/build-fuzz}
# Configured every time (quick once cached), so that a target added since is known.
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFERRY_FUZZ=ON -DFERRY_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]/#/fuzz_}" >/dev/null
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in "${targets[@]}"; do
  work="$build/corpus/$t"
  mkdir -p "$work"
  dirs=("$work")
  [ -d "$root/fuzz/corpus/$t" ] && dirs+=("$root/fuzz/corpus/$t")
  if [ -d "$root/fuzz/regressions/$t" ]; then   # every past crash must stay fixed
    "$build/bin/fuzz_$t" -runs=0 "$root/fuzz/regressions/$t" >/dev/null 2>&1 ||
      { echo "fuzz_$t: a regression input crashes again"; "$build/bin/fuzz_$t" -runs=0 "$root/fuzz/regressions/$t"; exit 1; }
  fi
  marker="$build/.started-$t"; touch "$marker"
  echo "fuzz_$t: ${seconds}s"
  (cd "$build" && "$build/bin/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
     -print_final_stats=1 "${dirs[@]}" 2>&1) | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)|ERROR|SUMMARY|Test unit written" || true
  # libFuzzer's exit code is lost in the pipe: a crash leaves crash-*/leak-*/timeout-* files.
  found=$(find "$build" -maxdepth 1 -newer "$marker" \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \))
  if [ -n "$found" ]; then
    echo "fuzz_$t: found a failing input: $found"
    exit 1
  fi
done
echo "fuzz: ok"
