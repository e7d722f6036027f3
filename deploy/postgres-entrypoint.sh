#!/bin/sh
# PostgreSQL 15 (Debian's) for the Ferry stack. On first start: initdb, deploy/postgresql.conf
# included, the databases in $FERRY_DATABASES created. Then the server in the foreground.
#   FERRY_PG_PORT        port (default 5432)
#   FERRY_PG_LISTEN      listen_addresses (default '*'; the compose file on host networking: 127.0.0.1)
#   FERRY_PG_PASSWORD    set: password of user postgres, required over TCP (scram-sha-256);
#                        unset: TCP connections are trusted (only for a private network)
#   FERRY_DATABASES      databases to create (default "ferry")
set -eu
bin=/usr/lib/postgresql/15/bin
port=${FERRY_PG_PORT:-5432}
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  if [ -n "${FERRY_PG_PASSWORD:-}" ]; then
    printf '%s\n' "$FERRY_PG_PASSWORD" > /tmp/pwfile
    "$bin/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --pwfile=/tmp/pwfile -E UTF8 --locale=C.UTF-8
    rm -f /tmp/pwfile
  else
    "$bin/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8
  fi
  method=trust
  [ -z "${FERRY_PG_PASSWORD:-}" ] || method=scram-sha-256
  echo "host all all 0.0.0.0/0 $method" >> "$PGDATA/pg_hba.conf"
  echo "include '/etc/ferry/postgresql.conf'" >> "$PGDATA/postgresql.conf"
  "$bin/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses='' -p $port -k /tmp" start
  for db in ${FERRY_DATABASES:-ferry}; do "$bin/createdb" -h /tmp -p "$port" -U postgres "$db"; done
  "$bin/pg_ctl" -D "$PGDATA" -w stop
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses="${FERRY_PG_LISTEN:-*}" -p "$port" -k /tmp
