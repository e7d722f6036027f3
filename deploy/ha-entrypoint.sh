#!/bin/sh
# A pg_auto_failover monitor or data node for docker-compose.ha.yml (host networking: every
# server on 127.0.0.1). First start: `pg_autoctl create`; then `pg_autoctl run` in the
# foreground (the keeper starts, watches and, when the monitor says so, promotes or demotes
# PostgreSQL). The failover timings are the ones scripts/ha.sh uses (README, "High
# availability"): a node is declared dead after 5 s, a lost primary is fenced for 10 s.
#   FERRY_HA_ROLE      monitor | node
#   FERRY_HA_NAME      the node's name (node1, node2, ...)
#   FERRY_PG_PORT      this server's port
#   FERRY_HA_MONITOR   nodes: the monitor's URI
# Authentication is `trust` on loopback only (listen_addresses 127.0.0.1): fine for one
# machine's demo; in production use --auth scram-sha-256 and --ssl-self-signed (or your
# certificates) and set the replication password (pg_autoctl config set replication.password).
set -eu
# PGDATA, XDG_CONFIG_HOME and XDG_DATA_HOME: under the volume (deploy/pg-auto-failover.Dockerfile)
cd /var/lib/postgresql/data
# A container restarted after a kill keeps its /tmp: pg_autoctl's pidfile there names PID 1,
# which is this new process, and would read as "already running".
rm -rf /tmp/pg_autoctl
common="--pgdata $PGDATA --pgport $FERRY_PG_PORT --hostname 127.0.0.1 --listen 127.0.0.1 \
  --auth trust --no-ssl --pgctl /usr/lib/postgresql/15/bin/pg_ctl"
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  if [ "$FERRY_HA_ROLE" = monitor ]; then
    # shellcheck disable=SC2086
    pg_autoctl create monitor $common
    cat >>"$PGDATA/postgresql.conf" <<'CONF'
# Ferry: failover timings for a broker (README, "High availability")
pgautofailover.node_considered_unhealthy_timeout = 5000
pgautofailover.health_check_period = 1000
pgautofailover.health_check_timeout = 1000
pgautofailover.health_check_max_retries = 2
pgautofailover.health_check_retry_delay = 500
pgautofailover.primary_demote_timeout = 10000
CONF
  else
    # shellcheck disable=SC2086
    pg_autoctl create postgres $common --monitor "$FERRY_HA_MONITOR" --name "$FERRY_HA_NAME"
    pg_autoctl config set --pgdata "$PGDATA" timeout.network_partition_timeout 6
    echo "include '/etc/ferry/postgresql.conf'" >>"$PGDATA/postgresql.conf"
  fi
fi
exec pg_autoctl run --pgdata "$PGDATA"
