#!/usr/bin/env bash
# Checks that each example handler fails on its sample job with the documented error, and
# succeeds with the documented result once the files under fixes/ are laid over a copy of the
# project. The project itself is never modified.
#
# Usage: examples/verify.sh   (needs python3 and node)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# check NAME COMMAND JOB EXPECTED_ERROR EXPECTED_OUTPUT
check() {
    local name="$1" command="$2" job="$3" want_error="$4" want_output="$5"
    local buggy="$work/$name/buggy" fixed="$work/$name/fixed"
    mkdir -p "$buggy" "$fixed"
    cp -R "$here/project/." "$buggy/"
    cp -R "$here/project/." "$fixed/"
    cp -R "$here/fixes/project/." "$fixed/"

    if (cd "$buggy" && $command < "jobs/$job" > out.json 2> err.txt); then
        echo "FAIL $name: the buggy handler succeeded"; failed=$((failed + 1)); return
    fi
    if ! grep -qF "$want_error" "$buggy/err.txt"; then
        echo "FAIL $name: stderr lacks '$want_error':"; cat "$buggy/err.txt"
        failed=$((failed + 1)); return
    fi

    # Twice, because a retried job must succeed again with the same result.
    for run in 1 2; do
        if ! (cd "$fixed" && $command < "jobs/$job" > "out$run.json" 2> err.txt); then
            echo "FAIL $name: the fixed handler failed (run $run):"; cat "$fixed/err.txt"
            failed=$((failed + 1)); return
        fi
    done
    if ! grep -qF "$want_output" "$fixed/out1.json" || ! cmp -s "$fixed/out1.json" "$fixed/out2.json"; then
        echo "FAIL $name: output lacks '$want_output' or differs between runs:"; cat "$fixed"/out*.json
        failed=$((failed + 1)); return
    fi
    echo "ok   $name"
    passed=$((passed + 1))
}

check signup "python3 handlers/signup.py" signup.json \
    "KeyError: 'user'" '"email": "ada.lovelace@example.com"'
check invoice "node handlers/invoice.js" invoice.json \
    "TypeError: item.unit_price.toFixed is not a function" '"total":"52.62"'
check report "python3 handlers/report.py" report.json \
    "ZeroDivisionError: division by zero" '"label": "2024-05-02", "orders": 0, "revenue": 0, "average_order": 0.0'

echo "examples: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
