#!/bin/sh
# Initialises the cluster on first start (trust auth inside the compose network only), creates
# the `ferry` database, then runs the server in the foreground with durable settings.
set -eu
bin=/usr/lib/postgresql/15/bin
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  "$bin/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8
  "$bin/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses=''" start
  "$bin/createdb" -U postgres ferry
  "$bin/pg_ctl" -D "$PGDATA" -w stop
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c fsync=on -c synchronous_commit=on \
  -c max_connections=200
