#!/usr/bin/env bash
# Measures how long triage takes to read a stack trace: every triage fixture case (real traces
# and traces modelled on public reports) parsed 200 times, and three 2 MB hostile inputs parsed
# 5 times each. Prints a table; the raw numbers go to bench/results/triage-latest.json.
# See the "Triage" section of bench/REPORT.md. Nothing here touches the network.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
mkdir -p "$here/results"

cargo build --release --locked --quiet -p smartworker-bench --manifest-path "$root/Cargo.toml"
target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$target/release/smartworker-bench" triage "$@" --out "$here/results/triage-latest.json"
