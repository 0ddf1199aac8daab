#!/usr/bin/env bash
# Benchmarks both memory stores (embedded SQLite and PostgreSQL with pgvector): insert
# throughput, search latency p50/p99 and recall@10 against exact search, at 10,000 and
# 100,000 stored failures (or the sizes given, e.g. `bench/memory.sh 2000,4000`).
# Raw numbers go to bench/results/memory.json; bench/MEMORY.md explains them.
#
# It starts its own PostgreSQL on a free loopback port in a temporary folder (installed by
# scripts/setup/postgres.sh) and stops it on exit; nothing else is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${1:-10000,100000}

bash scripts/setup/postgres.sh
cargo build --release --locked -p smartworker-memory-pg --example memory_bench --features testing
mkdir -p bench/results
out=bench/results/memory.json
log=$(mktemp)
{
  echo "# $(date -u +%FT%TZ) $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  target/release/examples/memory_bench "$sizes"
} | tee "$log"
# The last JSON document printed is the whole result.
sed -n '/^{$/,$p' "$log" > "$out"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
echo "raw numbers in $out"
