#!/usr/bin/env bash
# Benchmarks SmartWorker's embedded backend and prints a table; the raw numbers go to
# bench/results/latest.json. See bench/REPORT.md for what each number means.
#
# It builds in release mode, then measures, each step under what is left of one time
# budget (BENCH_BUDGET_SECS, 290 s by default, build included):
#   1. no-op jobs/s through SqliteBackend + Worker: a Rust handler and two command handlers,
#      at concurrency 16, 64 and 256, three runs each (median), and the backend alone
#      (claim and finish in batches of that size, no worker) for comparison;
#   2. enqueue-to-start latency at 500 jobs/s for 10 s;
#   3. resident memory of an idle `smartworker serve`, of an idle BullMQ worker on the local
#      Redis (127.0.0.1:6379) and of a bare Node process.
# Before measuring it waits up to BENCH_QUIET_WAIT_SECS (45) for other processes to leave the
# CPUs mostly idle; each throughput level records how busy they kept the machine anyway.
# Everything it starts listens on or connects to 127.0.0.1 only, and is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
budget=${BENCH_BUDGET_SECS:-290}
quiet_wait=${BENCH_QUIET_WAIT_SECS:-45}
deadline=$((SECONDS + budget))
idle_secs=5
redis_host=127.0.0.1
redis_port=6379

work=$(mktemp -d -t smartworker-bench.XXXXXX)
json=$work/json
mkdir -p "$json" "$here/results"
pids=()

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# Runs a command under what is left of the budget.
bounded() {
    local left=$((deadline - SECONDS))
    ((left > 0)) || die "time budget of ${budget}s used up before: $*"
    local rc=0
    timeout --kill-after=5 "$left" "$@" || rc=$?
    ((rc != 124 && rc != 137)) || die "time budget of ${budget}s ran out during: $*"
    return "$rc"
}

# Waits up to $2 seconds for the command in $3.. to succeed.
wait_until() {
    local what=$1 secs=$2
    shift 2
    local until=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < until)) || return 1
        sleep 0.2
    done
    [[ -n $what ]] && say "$what"
    return 0
}

# Stops one process this script started.
stop() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

build() {
    say "building in release mode (smartworker, smartworker-bench)"
    (cd "$root" && bounded cargo build --release --quiet -p smartworker -p smartworker-bench) ||
        die "release build failed or ran out of time; an incremental re-run is faster"
    bench=$root/target/release/smartworker-bench
    server=$root/target/release/smartworker
}

check_load() {
    local load cores
    load=$(cut -d' ' -f1 /proc/loadavg)
    cores=$(nproc)
    say "load average $load on $cores cores"
    if awk -v l="$load" -v c="$cores" 'BEGIN { exit !(l > c / 2) }'; then
        say "warning: the machine is busy; the numbers will be noisy (see uptime, top)"
    fi
}

throughput() {
    say "throughput: Rust handler, 50,000 jobs per run"
    bounded "$bench" throughput --label rust --handler rust --jobs 50000 \
        --concurrency 16,64,256 --repeats 3 --out "$json/throughput-1-rust.json"
    say "throughput: no worker, claim and finish batches straight on the backend"
    bounded "$bench" throughput --label direct --handler direct --jobs 50000 \
        --concurrency 16,64,256 --repeats 3 --out "$json/throughput-4-direct.json"
    say "throughput: command handler /bin/true, 2,000 jobs per run"
    bounded "$bench" throughput --label bin-true --handler command --program /bin/true \
        --jobs 2000 --concurrency 16,64,256 --repeats 3 --out "$json/throughput-2-bin-true.json"
    say "throughput: command handler sh -c 'echo null', 2,000 jobs per run"
    bounded "$bench" throughput --label sh-echo --handler command --program /bin/sh \
        --arg -c --arg 'echo null' --jobs 2000 --concurrency 16,64,256 --repeats 3 \
        --out "$json/throughput-3-sh-echo.json"
}

latency() {
    say "latency: 500 jobs/s for 10 s"
    bounded "$bench" latency --rate 500 --secs 10 --concurrency 64 --out "$json/latency.json"
}

healthy() {
    curl --noproxy '*' -fsS --max-time 1 "http://127.0.0.1:$1/healthz"
}

serve_memory() {
    local dir=$work/serve port pid
    mkdir -p "$dir"
    port=$("$bench" free-port)
    say "idle smartworker serve on 127.0.0.1:$port"
    # A clean environment: no APP_* setting of the caller's reaches the server.
    (cd "$dir" && exec env -i PATH="$PATH" HOME="$dir" APP_HOST=127.0.0.1 APP_PORT="$port" \
        "$server" serve >"$work/serve.log" 2>&1) &
    pid=$!
    pids+=("$pid")
    wait_until "serve is healthy" 30 healthy "$port" ||
        die "smartworker serve did not answer /healthz within 30s: $(tail -5 "$work/serve.log")"
    sleep "$idle_secs"
    "$bench" rss --pid "$pid" --label smartworker-serve \
        --what "idle smartworker serve (example project, HTTP API, workers, SQLite)" \
        --out "$json/rss-1-serve.json"
    stop "$pid"
}

redis_up() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$redis_host/$redis_port"
}

node_memory() {
    local pid
    if ! redis_up; then
        say "no Redis on $redis_host:$redis_port; the BullMQ worker is not measured"
    else
        if [[ ! -d $here/node/node_modules/bullmq ]]; then
            say "installing bullmq into bench/node"
            (cd "$here/node" && bounded npm ci --no-audit --no-fund --loglevel=error)
        fi
        say "idle BullMQ worker on Redis $redis_host:$redis_port"
        (cd "$here/node" && exec env REDIS_HOST="$redis_host" REDIS_PORT="$redis_port" \
            node idle-worker.mjs >"$work/node.log" 2>&1) &
        pid=$!
        pids+=("$pid")
        wait_until "bullmq worker is ready" 30 grep -qx ready "$work/node.log" ||
            die "the BullMQ worker did not get ready within 30s: $(tail -5 "$work/node.log")"
        sleep "$idle_secs"
        "$bench" rss --pid "$pid" --label node-bullmq \
            --what "idle BullMQ $(bullmq_version) Worker, Node $(node --version)" \
            --out "$json/rss-2-node-bullmq.json"
        stop "$pid"
    fi

    say "bare Node process, for the runtime's own share"
    node -e 'setInterval(() => {}, 1 << 30)' &
    pid=$!
    pids+=("$pid")
    sleep "$idle_secs"
    "$bench" rss --pid "$pid" --label node-bare \
        --what "node -e 'setInterval(...)': Node $(node --version) with nothing loaded" \
        --out "$json/rss-3-node-bare.json"
    stop "$pid"
}

bullmq_version() {
    (cd "$here/node" && node -p 'require("./node_modules/bullmq/package.json").version') 2>/dev/null ||
        echo "(unknown version)"
}

main() {
    check_load
    build
    say "waiting up to ${quiet_wait}s for the machine to be quiet"
    bounded "$bench" wait-quiet --below 0.3 --max-secs "$quiet_wait"
    "$bench" machine --out "$json/machine.json"
    throughput
    latency
    serve_memory
    node_memory
    check_load
    "$bench" report --dir "$json" --out "$here/results/latest.json"
    say "raw numbers: bench/results/latest.json (took ${SECONDS}s)"
}

main "$@"
