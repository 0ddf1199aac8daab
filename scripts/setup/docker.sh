#!/usr/bin/env bash
# Makes a Docker engine and SmartWorker's sandbox test image available, for the Docker sandbox
# tests and benchmark. Idempotent; fails loudly, never skips.
#
#   1. installs Debian's docker.io when dockerd is missing;
#   2. starts dockerd in the background when no engine answers on the default socket (no bridge,
#      no iptables changes: sandboxes use network mode "none"; registry traffic sent to a closed
#      loopback proxy, so nothing is ever pulled), logging to $DOCKERD_LOG;
#   3. builds the test image without any registry: `docker import` of a root filesystem made
#      here from the host's python3, node, a shell, cp (each run copies the workspace into a
#      tmpfs of its own) and the libraries they load, plus a passwd file naming the sandbox
#      user. Skipped when the image already exists.
#
# Prints the image name on its last line. SMARTWORKER_SANDBOX_IMAGE overrides the tag.
set -euo pipefail

image=${SMARTWORKER_SANDBOX_IMAGE:-smartworker-sandbox-test:3}
log=${DOCKERD_LOG:-/var/log/smartworker-dockerd.log}
sandbox_uid=61000

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

install_engine() {
  command -v dockerd >/dev/null && return
  echo "installing docker.io (dockerd is missing)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  command -v dockerd >/dev/null || { echo "error: dockerd still missing after install" >&2; exit 1; }
}

start_engine() {
  docker info >/dev/null 2>&1 && return
  echo "starting dockerd (log: $log)"
  # The proxy points at a closed loopback port: should anything ever ask this engine to pull,
  # it fails here instead of reaching out to a registry.
  as_root sh -c "HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
    nohup dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    >>'$log' 2>&1 &"
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return
    sleep 1
  done
  echo "error: dockerd did not answer within 60 s; last lines of $log:" >&2
  tail -n 30 "$log" >&2 || true
  exit 1
}

# Every file a program needs: itself and the shared libraries ldd lists, each both as named
# and as the file its symlinks lead to (tar stores a link, not what it points at).
with_libraries() {
  local path
  for path in "$@" $(ldd "$@" 2>/dev/null | grep -o '/[^ :]*' | sort -u); do
    echo "$path"
    readlink -f "$path"
  done
}

build_image() {
  if docker image inspect "$image" >/dev/null 2>&1; then
    echo "image $image exists; not rebuilding"
    return
  fi
  local work python programs
  work=$(mktemp -d -t smartworker-rootfs.XXXXXX)
  trap 'rm -rf "$work"' RETURN
  python=$(readlink -f /usr/bin/python3)
  programs=(/usr/bin/python3 "$python" /usr/bin/node /bin/sh /usr/bin/dash /usr/bin/cat /usr/bin/cp
    /usr/bin/sleep /usr/bin/true /usr/bin/ls /usr/bin/env /usr/bin/id /usr/bin/echo)
  for program in "${programs[@]}"; do
    [ -x "$program" ] || { echo "error: $program is missing on the host" >&2; exit 1; }
  done
  {
    # Python's compiled modules (ctypes, ssl, sqlite3...) load libraries of their own.
    with_libraries "${programs[@]}" "/usr/lib/$(basename "$python")"/lib-dynload/*.so
    # Python's standard library, and the dynamic loader under its usual names.
    echo "/usr/lib/$(basename "$python")"
    echo /etc/ld.so.cache
    ls -d /usr/lib/x86_64-linux-gnu/ld-linux* /lib64/ld-linux* 2>/dev/null || true
  } | sort -u | grep -v '^$' > "$work/files"

  mkdir -p "$work/extra/etc" "$work/extra/tmp" "$work/extra/workspace" "$work/extra/proc" \
    "$work/extra/dev" "$work/extra/sys"
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:%s:%s:sandbox:/tmp:/usr/sbin/nologin\n' \
    "$sandbox_uid" "$sandbox_uid" > "$work/extra/etc/passwd"
  printf 'root:x:0:\nsandbox:x:%s:\n' "$sandbox_uid" > "$work/extra/etc/group"
  chmod 1777 "$work/extra/tmp"

  # Merged /usr: /bin, /lib, /lib64 are links, as on the host.
  ln -s usr/bin "$work/extra/bin"
  ln -s usr/lib "$work/extra/lib"
  ln -s usr/lib64 "$work/extra/lib64"

  # Host paths through /bin or /lib are stored under /usr so the links above resolve them.
  # Files inside the standard library's directory are left to it: tar would store a second
  # copy as a hard link to itself.
  sed -e 's#^/bin/#/usr/bin/#' -e 's#^/lib/#/usr/lib/#' -e 's#^/lib64/#/usr/lib64/#' \
    "$work/files" | grep -v "^/usr/lib/$(basename "$python")/" | sort -u > "$work/files.usr"
  tar -C / --exclude='__pycache__' -cf "$work/rootfs.tar" -T <(sed 's#^/##' "$work/files.usr")
  tar -C "$work/extra" -rf "$work/rootfs.tar" .
  docker import --change 'USER 61000:61000' --change 'WORKDIR /workspace' \
    "$work/rootfs.tar" "$image" >/dev/null
  if ! smoke_test; then
    docker image rm "$image" >/dev/null 2>&1 || true
    echo "error: the image $image cannot run python3, node and cp; removed it" >&2
    exit 1
  fi
}

smoke_test() {
  # --pull never: a missing image must fail here, never send the engine to a registry.
  docker run --rm --pull never --network none "$image" /usr/bin/python3 -c \
    'import ctypes, ssl, sqlite3, zlib; print("python ok")' &&
    docker run --rm --pull never --network none "$image" /usr/bin/node -e 'console.log("node ok")' &&
    docker run --rm --pull never --network none --tmpfs /w:rw,uid=61000,gid=61000 "$image" /bin/sh -c \
      'cp -RPp /etc/. /w/ && echo "cp ok"'
}

install_engine
start_engine
docker version --format 'docker engine {{.Server.Version}} (API {{.Server.APIVersion}})'
build_image
echo "$image"
