#!/usr/bin/env bash
# Requests/s and latency over loopback: each stack serves on its own port
# (tokio current-thread, one core), wrk drives it with one thread and 10
# keep-alive connections; GET /todos/1, then POST /todos through a Lua
# script. Usage: wrk.sh [SECONDS]   (default 5; `make bench-http` runs it)
set -euo pipefail
cd "$(dirname "$0")/../../../.."
D=${1:-5}
BIN=target/release/serve
[ -x "$BIN" ] || { echo "build first: cargo build --release -p hallows-http-bench" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
cat > "$tmp/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"title":"write the docs","priority":2}'
wrk.headers["Content-Type"] = "application/json"
LUA
port=18480
printf '%-9s %-5s %12s %10s %10s %8s\n' stack route requests/s p50 p99 errors
for stack in basilisk axum; do
    port=$((port + 1))
    "$BIN" "$stack" "$port" 2>"$tmp/serve-$stack.log" &
    pids+=($!)
    up=0
    for _ in $(seq 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/todos/1"; then up=1; break; fi
        sleep 0.1
    done
    [ "$up" = 1 ] || { echo "$stack did not start on port $port:" >&2; cat "$tmp/serve-$stack.log" >&2; exit 1; }
    # The record GET reads.
    curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"title":"first"}' "http://127.0.0.1:$port/todos"
    for route in get post; do
        args=(-t1 -c10 -d"${D}s" --latency)
        [ "$route" = post ] && args+=(-s "$tmp/post.lua")
        url="http://127.0.0.1:$port/todos"; [ "$route" = get ] && url="$url/1"
        wrk "${args[@]}" "$url" > "$tmp/out"
        rps=$(awk '/^Requests\/sec/ {print $2}' "$tmp/out")
        p50=$(awk '$1 == "50%" {print $2}' "$tmp/out")
        p99=$(awk '$1 == "99%" {print $2}' "$tmp/out")
        errs=$(awk '/Socket errors|Non-2xx/ {s = s $0 "; "} END {print (s == "" ? "0" : s)}' "$tmp/out")
        printf '%-9s %-5s %12s %10s %10s %8s\n' "$stack" "$route" "$rps" "$p50" "$p99" "$errs"
    done
done
