#!/usr/bin/env bash
# The Basilisk demo in QEMU (tests/systems/todo-cost.toml: the todo API on
# an interrupt-mode NIC, the store partition over ring channels):
# requests/s and latency under wrk over the forwarded port, then guest
# instructions per request with `hallows net-cost` (every instruction
# traced: a few minutes; NETCOST=0 skips it). Usage: qemu.sh [SECONDS]
# (`make bench-http`)
set -euo pipefail
cd "$(dirname "$0")/../../../.."
D=${1:-10}
SYS=tests/systems/todo-cost.toml
PORT=27180
H="Authorization: Bearer test-token"
HALLOWS=(cargo run -q -p hallows --)
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
log=$(mktemp)
setsid "${HALLOWS[@]}" run "$SYS" >"$log" 2>&1 </dev/null &
pid=$!
trap 'kill -- -$pid 2>/dev/null || true; rm -f "$log"' EXIT
up=0
for _ in $(seq 600); do
    if curl -s -o /dev/null -m 2 -H "$H" "http://127.0.0.1:$PORT/health"; then up=1; break; fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.5
done
[ "$up" = 1 ] || { echo "the todo API never answered:" >&2; cat "$log" >&2; exit 1; }
curl -s -o /dev/null -H "$H" -H 'Content-Type: application/json' -d '{"title":"write the docs","priority":2}' "http://127.0.0.1:$PORT/todos"
printf '%-14s %-4s %12s %10s %10s %s\n' route conn requests/s p50 p99 errors
for route in /health /todos/1; do
    for c in 1 4; do
        out=$(wrk -t1 -c$c -d"${D}s" --latency --timeout 10s -H "$H" "http://127.0.0.1:$PORT$route")
        rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
        p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        errs=$(awk '/Socket errors|Non-2xx/ {s = s $0 "; "} END {print (s == "" ? "0" : s)}' <<<"$out")
        printf '%-14s %-4s %12s %10s %10s %s\n' "GET $route" "$c" "$rps" "$p50" "$p99" "$errs"
    done
done
kill -- -$pid 2>/dev/null || true
wait $pid 2>/dev/null || true
[ "${NETCOST:-1}" = 0 ] && exit 0
for route in /health /todos/1; do
    echo "== hallows net-cost $SYS --path $route"
    "${HALLOWS[@]}" net-cost "$SYS" --header "$H" --prime 'POST /todos {"title":"write the docs","priority":2}' --path "$route" --requests 200 --also store 2>&1 | grep -v '^hallows:'
done
