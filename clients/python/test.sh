#!/usr/bin/env bash
# The Python client's tests (run by scripts/client-test.sh python, which starts the stack):
# builds the stubs in the source tree, then unittest with Debian's python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
/usr/bin/python3 setup.py
exec /usr/bin/python3 -m unittest -v "${@:-tests.test_client}"
