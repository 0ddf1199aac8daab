#!/usr/bin/env bash
# Measures sandbox start-up overhead: an empty handler in a project of 1,000 files, on the host,
# under bubblewrap and under Docker. Prints a table; the raw numbers go to
# bench/results/sandbox-latest.json. See bench/SANDBOX.md for what each number means.
#
#   BENCH_RUNS=40                 runs per handler and sandbox (default 40)
#   SMARTWORKER_SANDBOX_IMAGE     the Docker image (default: the one scripts/setup/docker.sh builds)
#   BENCH_SHM=1                   also measure with workspaces in /dev/shm (memory, not disk)
#
# Needs bubblewrap and a Docker engine with the test image: it runs scripts/setup/docker.sh,
# which starts one when none answers. Everything runs on this machine; nothing listens.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root"
mkdir -p bench/results

image=$(bash scripts/setup/docker.sh | tail -n 1)
export SMARTWORKER_SANDBOX_IMAGE=$image
cargo build --release --locked -p smartworker-sandbox --example startup

echo "machine: $(nproc) cores, $(uname -r), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "docker: $(docker version --format '{{.Server.Version}}'), bubblewrap: $(bwrap --version)"
target/release/examples/startup bench/results/sandbox-latest.json
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw numbers: bench/results/sandbox-latest.json"
if [ "${BENCH_SHM:-0}" = 1 ]; then
  BENCH_WORKSPACE_DIR=/dev/shm target/release/examples/startup bench/results/sandbox-shm-latest.json
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "raw numbers: bench/results/sandbox-shm-latest.json"
fi
