#!/usr/bin/env bash
# The shipped Prometheus alert rules load and fire as tests/alerts/ferry-alerts.test.yml says
# (promtool from Debian's prometheus package, unpacked by scripts/install-deps.sh under
# .ferry/tools so that no Prometheus service is installed or started).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
promtool=${PROMTOOL:-$(command -v promtool || echo "$root/.ferry/tools/usr/bin/promtool")}
[ -x "$promtool" ] || { echo "alerts: promtool not found (scripts/install-deps.sh unpacks it)"; exit 1; }
"$promtool" check rules "$root/deploy/prometheus/ferry-alerts.yml"
cd "$root/tests/alerts"
"$promtool" test rules ferry-alerts.test.yml
echo "alerts: ok"
