"""Both engines on the same TPC-H queries, interleaved, for a machine
that other work shares: each round runs every query in hallows-olap (a
fresh process, best of 5 runs) and then at once in DuckDB (best of 5, on
tables loaded once), so both meet the same load; prints each round and
then per query the medians over the rounds and the speed ratio.

usage: bench_interleaved.py DATA_DIR IMAGE ROUNDS [QUERY ...] (QUERY: 1, 3, ...)
$THREADS (default 1) threads for both; $BINS: hallows-olap-query binaries
to compare, separated by ':' (default target/release/hallows-olap-query).
"""
import os
import re
import statistics
import subprocess
import sys
import time

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from duckdb_run import SCHEMA  # noqa: E402


def main():
    data, image, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    queries = sys.argv[4:] or ["1", "3", "5", "6", "10", "12", "14", "19"]
    threads = int(os.environ.get("THREADS", "1"))
    bins = os.environ.get("BINS", "target/release/hallows-olap-query").split(":")
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    start = time.time()
    for name, cols in SCHEMA.items():
        con.execute(f"CREATE TABLE {name} ({cols})")
        con.execute(f"COPY {name} FROM '{data}/{name}.tbl' (DELIMITER '|')")
    print(f"duckdb: tables loaded in {time.time() - start:.1f} s", flush=True)
    times = {(q, b): [] for q in queries for b in bins + ["duckdb"]}
    for r in range(rounds):
        for q in queries:
            path = f"guests/frameworks/olap/queries/tpch/q{q}.sql"
            line = [f"round {r + 1} q{q}:"]
            for b in bins:
                out = subprocess.run(
                    [b, "--disk", image, "--threads", str(threads), "--time", "--repeat", "5", "-f", path],
                    capture_output=True, text=True, check=True,
                )
                ms = float(re.search(r"in ([0-9.]+) ms", out.stderr).group(1))
                times[(q, b)].append(ms)
                line.append(f"{b} {ms:.1f} ms")
            sql = open(path).read()
            best = float("inf")
            for _ in range(5):
                t = time.perf_counter()
                con.execute(sql).fetchall()
                best = min(best, time.perf_counter() - t)
            times[(q, "duckdb")].append(best * 1000)
            line.append(f"duckdb {best * 1000:.1f} ms")
            print(" ".join(line), flush=True)
    for q in queries:
        d = statistics.median(times[(q, "duckdb")])
        parts = [f"q{q}: duckdb {d:.1f} ms"]
        for b in bins:
            o = statistics.median(times[(q, b)])
            parts.append(f"{b} {o:.1f} ms ({d / o * 100:.0f} % of DuckDB's speed)")
        print("median " + ", ".join(parts), flush=True)


if __name__ == "__main__":
    main()
