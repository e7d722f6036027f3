# A pg_auto_failover monitor or PostgreSQL 15 node (docker-compose.ha.yml), from Debian's
# packages postgresql-15-auto-failover and pg-auto-failover-cli; deploy/ha-entrypoint.sh
# creates it on first start and runs pg_autoctl (keeper and PostgreSQL) in the foreground.
FROM debian:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql-15 postgresql-15-auto-failover pg-auto-failover-cli \
      && rm -rf /var/lib/apt/lists/*
COPY deploy/ha-entrypoint.sh /usr/local/bin/ha-entrypoint.sh
COPY deploy/postgresql.conf /etc/ferry/postgresql.conf
RUN install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data
USER postgres
# pg_autoctl finds its configuration through these (also for `docker exec ... pg_autoctl show state`).
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data/pg \
    XDG_CONFIG_HOME=/var/lib/postgresql/data/config XDG_DATA_HOME=/var/lib/postgresql/data/share
ENTRYPOINT ["/usr/local/bin/ha-entrypoint.sh"]
