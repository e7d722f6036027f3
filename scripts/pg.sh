# Source this file. Starts and stops a private PostgreSQL 15 cluster as an unprivileged user,
# listening on a unix socket in the cluster's folder and on 127.0.0.1.
#   ferry_pg_start DIR PORT [durable|deploy|fast]
#                                            initdb if DIR/data is missing, then start;
#                                            deploy: durable with deploy/postgresql.conf (what a
#                                            user deploys: benchmarks, demos)
#   ferry_pg_stop DIR                        fast shutdown (immediate if that fails)
#   ferry_pg_crash DIR                       immediate shutdown (a crash: no checkpoint)
#   ferry_pg_standby PRIMARY_DIR PRIMARY_PORT DIR PORT NAME
#                                            a streaming standby of that cluster, started
#   ferry_pg_promote DIR                     the standby becomes a primary
#   ferry_pg_conninfo DIR PORT DB            prints a libpq conninfo for the unix socket
# As root the server runs as the `postgres` user (created by the postgresql-common package).
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}   # Debian keeps the server binaries off PATH

ferry_pg_run() {   # run a command as the cluster's owner
  if [ "$(id -u)" = 0 ]; then (cd /tmp && runuser -u postgres -- "$@"); else (cd /tmp && "$@"); fi
}

ferry_pg_start() {
  local dir=$1 port=$2 mode=${3:-durable} opts i
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    ferry_pg_run "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
  fi
  if [ "$mode" = deploy ]; then
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    ferry_pg_run cp "$root/deploy/postgresql.conf" "$dir/data/ferry.conf"
    grep -q "^include_if_exists = 'ferry.conf'" "$dir/data/postgresql.conf" ||
      echo "include_if_exists = 'ferry.conf'" | ferry_pg_run tee -a "$dir/data/postgresql.conf" >/dev/null
  fi
  opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200"
  if [ "$mode" = fast ]; then
    # Tests only: nothing here must survive a power cut, so skip the flushes.
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  else
    opts="$opts -c fsync=on -c synchronous_commit=on"
  fi
  # FERRY_PG_OPTS: extra server settings, e.g. pg_stat_statements for `make bench-profile`.
  opts="$opts ${FERRY_PG_OPTS:-}"
  ferry_pg_run "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$opts" start \
    >/dev/null || { tail -20 "$dir/server.log" >&2; return 1; }
  for i in $(seq 1 100); do
    "$PG_BIN/pg_isready" -q -h "$dir" -p "$port" && return 0
    sleep 0.1
  done
  echo "PostgreSQL in $dir did not become ready" >&2
  return 1
}

ferry_pg_stop() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  ferry_pg_run "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
    ferry_pg_run "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
}

ferry_pg_crash() {
  ferry_pg_run "$PG_BIN/pg_ctl" -D "$1/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
}

ferry_pg_standby() {
  local pdir=$1 pport=$2 dir=$3 port=$4 name=$5
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
  ferry_pg_run "$PG_BIN/pg_basebackup" -h "$pdir" -p "$pport" -U postgres -D "$dir/data" -R \
    -X stream -c fast -d "host=$pdir port=$pport user=postgres application_name=$name" \
    >"$dir/basebackup.log" 2>&1 || { cat "$dir/basebackup.log" >&2; return 1; }
  ferry_pg_start "$dir" "$port" durable
}

ferry_pg_promote() {
  ferry_pg_run "$PG_BIN/pg_ctl" -D "$1/data" -w -t 60 promote >/dev/null
}

ferry_pg_conninfo() {
  echo "host=$1 port=$2 user=postgres dbname=$3"
}

# A port on 127.0.0.1 nothing listens on, below the kernel's ephemeral range
# (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default): a port from that range can
# be the local end of any outgoing connection, or what bind(port 0) hands a test's broker, between
# this probe and the server's bind (a CI run lost a chaos scenario to exactly that).
# ferry_pg_free_port N: the first of N consecutive such ports (a pg_auto_failover formation).
ferry_pg_free_port() {
  local port try low=32768 count=${1:-1} i busy
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  [ "$low" -gt 12000 ] 2>/dev/null || low=32768
  for try in $(seq 1 50); do
    port=$((10000 + RANDOM % (low - 10000 - count)))
    busy=""
    for i in $(seq 0 $((count - 1))); do
      (exec 3<>"/dev/tcp/127.0.0.1/$((port + i))") 2>/dev/null && { busy=1; break; }
    done
    [ -n "$busy" ] || { echo "$port"; return 0; }
  done
  return 1
}
