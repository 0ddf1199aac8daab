#!/usr/bin/env bash
# Makes sure the tests can start private redis-servers: installs Redis from Debian when the
# binary is missing, then checks it runs. It never starts, stops or configures the machine's
# own Redis service: every test starts its own server on a free loopback port.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

bin="${REDIS_SERVER:-/usr/bin/redis-server}"
if [ ! -x "$bin" ]; then
  echo "installing redis-server (the tests start their own instances)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
[ -x "$bin" ] || { echo "error: $bin is still missing after installing redis-server" >&2; exit 1; }
"$bin" --version
