#!/usr/bin/env bash
# The Python client's tests (run by scripts/client-test.sh python, which starts the stack):
# builds the stubs in the source tree, then unittest with Debian's python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
/usr/bin/python3 setup.py
if [ $# -eq 0 ]; then
  # The README's opening example, as written.
  out=$(awk '/^```python/{f=1; next} /^```/{if (f) exit} f' README.md | PYTHONPATH="$here" /usr/bin/python3 -)
  echo "README example: $out"
  grep -q "order-1 b'order 1 created'" <<<"$out" || { echo "the README example did not receive its message" >&2; exit 1; }
fi
exec /usr/bin/python3 -m unittest -v "${@:-tests.test_client}"
