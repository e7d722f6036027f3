# Source this file. Makes a Docker engine and the base image `debian:bookworm` available on a
# machine with no container registry (the project's own machines), and undoes what it started:
#   ferry_docker_up     installs docker.io, docker-compose and debootstrap from Debian if missing;
#                       starts dockerd (no bridge, no iptables: host networking only) unless an
#                       engine already answers; builds debian:bookworm with debootstrap + docker
#                       import unless the image exists (on a normal machine it is pulled instead).
#   ferry_docker_down   stops the dockerd this script started (by its pid), nothing else.
# Debian's /usr/bin/docker comes first in PATH: a newer client elsewhere lacks the legacy builder
# docker-compose 1.29 expects.
export PATH=/usr/bin:/usr/sbin:$PATH
FERRY_DOCKERD_PID=""

ferry_docker_up() {
  local root missing=() p
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  for p in docker.io docker-compose debootstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  if ! docker info >/dev/null 2>&1; then
    mkdir -p "$root/build"
    # --bridge=none --iptables=false: dockerd would otherwise create docker0 and NAT rules on
    # this machine and leave them behind; every service here uses host networking.
    dockerd --bridge=none --iptables=false --ip6tables=false >"$root/build/dockerd.log" 2>&1 &
    FERRY_DOCKERD_PID=$!
    local i
    for i in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see build/dockerd.log" >&2; return 1; }
  fi
  if ! docker image inspect debian:bookworm >/dev/null 2>&1; then
    local mirror rootfs
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d /tmp/ferry-rootfs.XXXXXX)
    echo "docker-env: building debian:bookworm from $mirror with debootstrap"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$root/build/debootstrap.log" 2>&1 ||
      { echo "debootstrap failed; see build/debootstrap.log" >&2; rm -rf "$rootfs"; return 1; }
    tar -C "$rootfs" --numeric-owner -c . | docker import - debian:bookworm >/dev/null
    rm -rf "$rootfs"
  fi
}

ferry_docker_down() {
  if [ -n "$FERRY_DOCKERD_PID" ]; then
    kill -TERM "$FERRY_DOCKERD_PID" 2>/dev/null || true
    wait "$FERRY_DOCKERD_PID" 2>/dev/null || true
    FERRY_DOCKERD_PID=""
  fi
}
