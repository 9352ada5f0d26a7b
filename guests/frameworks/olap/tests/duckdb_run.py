"""Runs SQL files in DuckDB over TPC-H .tbl files; prints each result as
tab-separated text: a line of column types, then one line per row.
Decimals keep their scale, doubles print with repr(), NULL is \\N.

usage: duckdb_run.py DATA_DIR QUERY.sql [QUERY.sql ...]
Each result is preceded by a line '#query NAME SECONDS': the best of
$REPEAT runs (default 1), on $THREADS threads (default: DuckDB's choice).
"""
import os
import decimal
import sys
import time

import duckdb

SCHEMA = {
    "region": "r_regionkey INTEGER, r_name VARCHAR, r_comment VARCHAR",
    "nation": "n_nationkey INTEGER, n_name VARCHAR, n_regionkey INTEGER, n_comment VARCHAR",
    "supplier": "s_suppkey INTEGER, s_name VARCHAR, s_address VARCHAR, s_nationkey INTEGER, s_phone VARCHAR, "
    "s_acctbal DECIMAL(15,2), s_comment VARCHAR",
    "customer": "c_custkey INTEGER, c_name VARCHAR, c_address VARCHAR, c_nationkey INTEGER, c_phone VARCHAR, "
    "c_acctbal DECIMAL(15,2), c_mktsegment VARCHAR, c_comment VARCHAR",
    "part": "p_partkey INTEGER, p_name VARCHAR, p_mfgr VARCHAR, p_brand VARCHAR, p_type VARCHAR, p_size INTEGER, "
    "p_container VARCHAR, p_retailprice DECIMAL(15,2), p_comment VARCHAR",
    "partsupp": "ps_partkey INTEGER, ps_suppkey INTEGER, ps_availqty INTEGER, ps_supplycost DECIMAL(15,2), "
    "ps_comment VARCHAR",
    "orders": "o_orderkey BIGINT, o_custkey INTEGER, o_orderstatus VARCHAR, o_totalprice DECIMAL(15,2), "
    "o_orderdate DATE, o_orderpriority VARCHAR, o_clerk VARCHAR, o_shippriority INTEGER, o_comment VARCHAR",
    "lineitem": "l_orderkey BIGINT, l_partkey INTEGER, l_suppkey INTEGER, l_linenumber INTEGER, "
    "l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), l_tax DECIMAL(15,2), "
    "l_returnflag VARCHAR, l_linestatus VARCHAR, l_shipdate DATE, l_commitdate DATE, l_receiptdate DATE, "
    "l_shipinstruct VARCHAR, l_shipmode VARCHAR, l_comment VARCHAR",
}


def text(v):
    if v is None:
        return "\\N"
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, float):
        return repr(v)
    s = str(v)
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def main():
    data, queries = sys.argv[1], sys.argv[2:]
    con = duckdb.connect()
    if os.environ.get("THREADS"):
        con.execute(f"SET threads = {int(os.environ['THREADS'])}")
    repeat = max(1, int(os.environ.get("REPEAT", "1")))
    for name, cols in SCHEMA.items():
        con.execute(f"CREATE TABLE {name} ({cols})")
        con.execute(f"COPY {name} FROM '{data}/{name}.tbl' (DELIMITER '|')")
    for q in queries:
        sql = open(q).read()
        took = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            cur = con.execute(sql)
            rows = cur.fetchall()
            took = min(took, time.perf_counter() - start)
        print(f"#query {q} {took:.6f}")
        print("\t".join(str(d[1]) for d in cur.description))
        for r in rows:
            print("\t".join(text(v) for v in r))


if __name__ == "__main__":
    main()
