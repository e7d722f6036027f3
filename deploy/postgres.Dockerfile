# PostgreSQL 15 from Debian's packages (no registry image needed beyond the Debian base), with
# deploy/postgresql.conf (durable, tuned for a queue) and postgres-entrypoint.sh.
FROM debian:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql-15 && rm -rf /var/lib/apt/lists/*
COPY deploy/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
COPY deploy/postgresql.conf /etc/ferry/postgresql.conf
# A named volume mounted here takes this directory's owner: postgres, so initdb may chmod it.
RUN install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data
USER postgres
ENV PGDATA=/var/lib/postgresql/data
EXPOSE 5432
# Over TCP: during first-start initialisation a server runs on the unix socket only.
HEALTHCHECK --interval=2s --timeout=3s \
  CMD /usr/lib/postgresql/15/bin/pg_isready -h 127.0.0.1 -p "${FERRY_PG_PORT:-5432}" -U postgres
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
