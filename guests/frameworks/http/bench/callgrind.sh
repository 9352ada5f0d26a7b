#!/usr/bin/env bash
# Instructions per request for each stack and route, under callgrind:
# (instructions of a run serving N+1 requests - those of a run serving 1)
# / N, so start-up (runtime, router, first allocation) cancels out.
# Usage: callgrind.sh [N]   (default 10000; `make bench-http` runs it)
set -euo pipefail
cd "$(dirname "$0")/../../../.."
N=${1:-10000}
BIN=target/release/instr
[ -x "$BIN" ] || { echo "build first: cargo build --release -p hallows-http-bench" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { # stack route n -> total instructions (Ir)
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$BIN" "$1" "$2" "$3" >/dev/null 2>"$tmp/err" \
        || { cat "$tmp/err" >&2; exit 1; }
    sed -n 's/^==[0-9]*== Collected : //p' "$tmp/err"
}
printf '%-12s %-5s %12s\n' stack route instr/request
for route in post get; do
    for stack in basilisk axum-router axum-hyper; do
        one=$(count "$stack" "$route" 1)
        many=$(count "$stack" "$route" $((N + 1)))
        printf '%-12s %-5s %12d\n' "$stack" "$route" $(( (many - one) / N ))
    done
done
