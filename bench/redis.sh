#!/usr/bin/env bash
# Benchmarks SmartWorker on Redis against Node BullMQ, in one go on one private Redis, and
# prints jobs/s for each, the ratios and the enqueue-to-start latency. See bench/REDIS.md.
#
#   1. no-op jobs/s at each concurrency (BENCH_CONCURRENCY, default 16,64) with
#      BENCH_JOBS jobs per run (default 20000), BENCH_REPEATS rounds (default 3); each round
#      runs the three series one after the other, so they share the machine's load:
#        rust        a SmartWorker Worker with a Rust handler (handler_fn returning null)
#        persistent  a SmartWorker Worker with a PersistentCommandHandler: one long-lived
#                    /usr/bin/python3 bench/noop_persistent.py per concurrent job, started before the clock
#        node-bullmq BullMQ's Worker (bench/node/redis-throughput.mjs), async () => null
#   2. enqueue-to-start latency of the Rust handler at 500 jobs/s for 10 s, concurrency 16.
# The Redis is started here on a free loopback port with persistence off, in a temporary
# directory, and stopped on exit; nothing else is contacted. Raw numbers go to
# bench/results/redis-latest.json.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
jobs=${BENCH_JOBS:-20000}
repeats=${BENCH_REPEATS:-3}
concurrency=${BENCH_CONCURRENCY:-16,64}
quiet_wait=${BENCH_QUIET_WAIT_SECS:-30}

work=$(mktemp -d -t smartworker-redis-bench.XXXXXX)
json=$work/json
mkdir -p "$json" "$here/results"
redis_pid=

cleanup() {
    if [[ -n $redis_pid ]]; then
        kill -TERM "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

build() {
    say "building smartworker-bench in release mode"
    (cd "$root" && cargo build --release --quiet -p smartworker-bench) || die "release build failed"
    bench=$root/target/release/smartworker-bench
}

start_redis() {
    local port tries=0
    command -v redis-server >/dev/null || die "redis-server is missing (bash scripts/setup/redis.sh)"
    port=$("$bench" free-port)
    redis-server --bind 127.0.0.1 --port "$port" --dir "$work" --save "" --appendonly no \
        --daemonize no --logfile "$work/redis.log" &
    redis_pid=$!
    until timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; do
        ((tries++ < 50)) || die "redis-server did not start: $(tail -3 "$work/redis.log")"
        sleep 0.1
    done
    redis_url=redis://127.0.0.1:$port
    say "private redis-server $(redis-server --version | cut -d' ' -f3) on $redis_url"
}

round() {
    local r=$1
    say "round $r of $repeats: $jobs no-op jobs per run at concurrency $concurrency"
    "$bench" throughput --label rust --handler rust --jobs "$jobs" --concurrency "$concurrency" \
        --repeats 1 --redis-url "$redis_url" --out "$json/series-rust-$r.json"
    "$bench" throughput --label persistent --handler persistent --program /usr/bin/python3 \
        --arg "$here/noop_persistent.py" --jobs "$jobs" --concurrency "$concurrency" \
        --repeats 1 --redis-url "$redis_url" --out "$json/series-persistent-$r.json"
    (cd "$here/node" && REDIS_URL=$redis_url node redis-throughput.mjs --jobs "$jobs" \
        --concurrency "$concurrency" --repeats 1 --out "$json/series-node-$r.json")
}

main() {
    build
    bash "$root/scripts/setup/node.sh" bench/node >&2
    start_redis
    say "waiting up to ${quiet_wait}s for the machine to be quiet"
    "$bench" wait-quiet --below 0.3 --max-secs "$quiet_wait"
    "$bench" machine --out "$json/machine.json"
    for ((r = 1; r <= repeats; r++)); do
        round "$r"
    done
    say "latency: 500 jobs/s for 10 s through the Rust handler, concurrency 16"
    "$bench" latency --rate 500 --secs 10 --concurrency 16 --redis-url "$redis_url" \
        --out "$json/latency.json"
    "$bench" redis-report --dir "$json" --out "$here/results/redis-latest.json"
    say "raw numbers: bench/results/redis-latest.json (took ${SECONDS}s)"
}

main "$@"
