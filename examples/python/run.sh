#!/usr/bin/env bash
# Runs the example on the Python client library from this checkout (clients/python: its gRPC
# stubs are generated from proto/ first) with Debian's python3, against $FERRY_BROKER.
# (Installed instead, `pip install ./clients/python` makes `import ferry` work anywhere.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lib=$(cd "$here/../../clients/python" && pwd)
(cd "$lib" && /usr/bin/python3 setup.py)
PYTHONPATH="$lib" exec /usr/bin/python3 "$here/ferry_example.py"
