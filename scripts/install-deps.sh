#!/usr/bin/env bash
# Installs every Debian package Ferry needs to build, run and test. Idempotent: packages that
# are already installed are not fetched again, and apt-get is only called when one is missing.
# Used by `make run`, `make test`, the README and .ci/run (one list, one place).
#   scripts/install-deps.sh              everything: build, run, test, the language examples
#   scripts/install-deps.sh --build-only what compiling the binaries needs (cmake -DFERRY_TESTS=OFF;
#                                        the container images' build stage)
set -euo pipefail
build_only=""
[ "${1:-}" = "--build-only" ] && build_only=1

PACKAGES=(
  # build
  g++ cmake make pkg-config
  # gRPC + Protobuf (protobuf-compiler-grpc is required by gRPC's CMake config)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  # PostgreSQL client library
  libpqxx-dev libpq-dev
  # command line, logging, JSON, hashing (zlib crc32 for key -> queue, OpenSSL HMAC for receipts)
  libcli11-dev libspdlog-dev nlohmann-json3-dev zlib1g-dev libssl-dev
  # HTTP for the Prometheus /metrics endpoint
  libcpp-httplib-dev
)
[ -n "$build_only" ] || PACKAGES+=(
  # test framework
  catch2
  # PostgreSQL server: tests and `make run` start their own cluster
  postgresql-15
  # high availability: a pg_auto_failover formation (make run-ha, tests/ha)
  postgresql-15-auto-failover pg-auto-failover-cli
  # tests (openssl: the TLS tests make a throwaway CA and certificates)
  openssl
  # fuzzing: clang with libFuzzer and the sanitizers' runtime (scripts/fuzz.sh)
  clang libclang-rt-14-dev
  # the format check (scripts/check-format.sh, part of make test)
  clang-format
  # the console's browser tests (tests/console: Playwright drives Debian's Chromium)
  chromium
  # the client libraries (clients/) and the examples on them; Node's packages come from npm.
  # Python: grpc + protobuf at run time, psycopg for the outbox/inbox helpers, pip/venv/setuptools/
  # wheel for `pip install --no-build-isolation ./clients/python`.
  python3-grpcio python3-protobuf python3-psycopg
  python3-pip python3-venv python3-setuptools python3-wheel
  # Go: built offline against these (clients/go/vendor.sh); lib/pq for the outbox tests
  golang-go golang-google-grpc-dev protoc-gen-go protoc-gen-go-grpc
  golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev golang-github-lib-pq-dev
)
# Node.js and npm: the console's build (console/, packages from the npm registry pinned by
# package-lock.json), its browser tests and examples/node; unless the machine has them already.
if ! { command -v node && command -v npm; } >/dev/null 2>&1; then
  PACKAGES+=(nodejs npm)
fi

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
updated=""
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -q
  updated=1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# promtool (the alert rules' test, tests/alerts/run.sh) from Debian's prometheus package,
# unpacked under .ferry/tools rather than installed: installing the package would also install
# and start a Prometheus server.
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$build_only" ] && ! command -v promtool >/dev/null 2>&1 &&
   [ ! -x "$root/.ferry/tools/usr/bin/promtool" ]; then
  echo "install-deps: unpacking promtool from Debian's prometheus package into .ferry/tools"
  [ -n "$updated" ] || $SUDO apt-get update -q
  dl=$(mktemp -d)
  chmod 777 "$dl"  # apt downloads as the _apt user when it can
  (cd "$dl" && apt-get download -q prometheus >/dev/null)
  mkdir -p "$root/.ferry/tools"
  dpkg-deb -x "$dl"/prometheus_*.deb "$root/.ferry/tools"
  rm -rf "$dl"
fi
