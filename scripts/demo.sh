#!/usr/bin/env bash
# `make demo`: the order/cart example end to end on a temporary PostgreSQL, with ferry-broker
# and ferry-relay. Prints what happened; stops everything at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/pg.sh"
source "$root/scripts/stack.sh"
ferry_stack_up shop
echo "demo: PostgreSQL, ferry-broker on $BROKER, ferry-relay on database shop"
ferry_stack_topic orders
ferry_stack_relay shop
"$root/build/bin/order-cart-demo" --database-url "$APP_DB_SHOP" --broker "$BROKER"
