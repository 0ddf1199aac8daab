#!/usr/bin/env bash
# Installs what the Node interop tests need: Node and npm from Debian when missing, and the
# real `bullmq` npm package into tests/node/node_modules with `npm ci` (exactly the versions
# in tests/node/package-lock.json, never a global install). Other project-local Node
# directories can be named as arguments (bench/redis.sh passes bench/node).
#
# Idempotent: a directory whose installed bullmq already matches its lock file is left alone.
# Fails loudly, never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing nodejs and npm"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "error: bullmq needs Node 18 or newer; found $(node --version)" >&2
  exit 1
fi

# The bullmq version a lock file pins, and the one installed beside it (empty when none).
locked_version() { node -p "require('./$1/package-lock.json').packages['node_modules/bullmq'].version"; }
installed_version() {
  [ -f "$1/node_modules/bullmq/package.json" ] || return 0
  node -p "require('./$1/node_modules/bullmq/package.json').version"
}

dirs=("$@")
[ "${#dirs[@]}" -gt 0 ] || dirs=(tests/node)
for dir in "${dirs[@]}"; do
  [ -f "$dir/package-lock.json" ] || { echo "error: $dir/package-lock.json is missing" >&2; exit 1; }
  want=$(locked_version "$dir")
  have=$(installed_version "$dir")
  if [ "$have" != "$want" ]; then
    echo "installing bullmq $want into $dir/node_modules (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  have=$(installed_version "$dir")
  [ "$have" = "$want" ] || { echo "error: bullmq $want did not install in $dir (found '$have')" >&2; exit 1; }
  (cd "$dir" && node --input-type=module -e 'await import("bullmq")') \
    || { echo "error: bullmq does not load in $dir" >&2; exit 1; }
  echo "bullmq $have ready in $dir (node $(node --version))"
done
