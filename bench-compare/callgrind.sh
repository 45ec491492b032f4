#!/usr/bin/env bash
# Instructions per push + pop_into pair, and per entry through push_batch + pop_batch
# of 32, measured with callgrind: two runs of the
# single-threaded hot loop that differ only in the number of pairs, so start-up,
# ring creation and the warm-up lap cancel out. Deterministic, unlike timings, so it
# shows regressions on a noisy machine.
#   bench-compare/callgrind.sh [SIZE...]      (default: 0 64 1024)
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --quiet --features valgrind --target-dir target/valgrind
bin=target/valgrind/release/bench-compare
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ir() {
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" --hot-loop "$@" \
        2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for size in "${@:-0 64 1024}"; do
    for s in $size; do
        a=$(ir 10000 "$s")
        b=$(ir 110000 "$s")
        echo "size $s B: $(( (b - a) / 100000 )) instructions per push + pop_into"
        a=$(ir 9984 "$s" 32)
        b=$(ir 109984 "$s" 32)
        echo "size $s B: $(( (b - a) / 100000 )) instructions per entry, batches of 32"
    done
done
