# PostgreSQL 15 from Debian's packages (no registry image needed beyond the Debian base).
FROM debian:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postgresql-15 && rm -rf /var/lib/apt/lists/*
COPY deploy/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
# A named volume mounted here takes this directory's owner: postgres, so initdb may chmod it.
RUN install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data
USER postgres
ENV PGDATA=/var/lib/postgresql/data
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
