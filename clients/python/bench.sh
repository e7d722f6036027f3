#!/usr/bin/env bash
# The Python client's benchmark (scripts/client-test.sh python --bench starts the stack).
set -euo pipefail
cd "$(dirname "$0")"
/usr/bin/python3 setup.py
exec /usr/bin/python3 bench.py "$@"
