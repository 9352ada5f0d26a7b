#!/usr/bin/env bash
# Instructions and heap allocations per dashboard frame (1024x768), per
# scenario (see examples/frames.rs): (count of a run of N+1 frames - count of
# a run of 1 frame) / N, so set-up and the first full frame cancel out.
# Usage: guests/frameworks/nagini/bench/callgrind.sh [N]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/../../../.."
N=${1:-200}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
nice -n 10 cargo build --release -q -p nagini --example frames
BIN=target/release/examples/frames
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
instr() { # scenario frames -> Ir
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" "$BIN" "$1" "$2" >/dev/null 2>"$tmp/err" \
        || { cat "$tmp/err" >&2; exit 1; }
    sed -n 's/^==[0-9]*== Collected : //p' "$tmp/err"
}
allocs() { # scenario frames -> blocks allocated
    valgrind --tool=dhat --dhat-out-file="$tmp/dhat" "$BIN" "$1" "$2" >/dev/null 2>"$tmp/err" \
        || { cat "$tmp/err" >&2; exit 1; }
    sed -n 's/^==[0-9]*== Total: *[0-9,]* bytes in \([0-9,]*\) blocks.*/\1/p' "$tmp/err" | tr -d ,
}
printf '%-13s %14s %14s\n' scenario instr/frame allocs/frame
for s in idle hover counter sample switch counter-full full; do
    i1=$(instr "$s" 1); iN=$(instr "$s" $((N + 1)))
    a1=$(allocs "$s" 1); aN=$(allocs "$s" $((N + 1)))
    printf '%-13s %14d %14s\n' "$s" $(( (iN - i1) / N )) "$(awk -v a="$aN" -v b="$a1" -v n="$N" 'BEGIN { printf "%.1f", (a - b) / n }')"
done
