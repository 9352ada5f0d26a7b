//! The TPC-H schema (decimal(15,2) prices, dates, fixed and variable
//! text), as DuckDB's `tpch` extension and dbgen define it.

use alloc::vec::Vec;

use crate::storage::Schema;
use crate::types::Type;

const I: Type = Type::Int32;
const L: Type = Type::Int64;
const D: Type = Type::Decimal(2);
const DT: Type = Type::Date;
const T: Type = Type::Text;

/// The eight TPC-H tables.
pub fn schemas() -> Vec<Schema> {
    Vec::from([
        Schema::new("region", &[("r_regionkey", I), ("r_name", T), ("r_comment", T)]),
        Schema::new("nation", &[("n_nationkey", I), ("n_name", T), ("n_regionkey", I), ("n_comment", T)]),
        Schema::new(
            "supplier",
            &[("s_suppkey", I), ("s_name", T), ("s_address", T), ("s_nationkey", I), ("s_phone", T), ("s_acctbal", D), ("s_comment", T)],
        ),
        Schema::new(
            "customer",
            &[
                ("c_custkey", I),
                ("c_name", T),
                ("c_address", T),
                ("c_nationkey", I),
                ("c_phone", T),
                ("c_acctbal", D),
                ("c_mktsegment", T),
                ("c_comment", T),
            ],
        ),
        Schema::new(
            "part",
            &[
                ("p_partkey", I),
                ("p_name", T),
                ("p_mfgr", T),
                ("p_brand", T),
                ("p_type", T),
                ("p_size", I),
                ("p_container", T),
                ("p_retailprice", D),
                ("p_comment", T),
            ],
        ),
        Schema::new("partsupp", &[("ps_partkey", I), ("ps_suppkey", I), ("ps_availqty", I), ("ps_supplycost", D), ("ps_comment", T)]),
        Schema::new(
            "orders",
            &[
                ("o_orderkey", L),
                ("o_custkey", I),
                ("o_orderstatus", T),
                ("o_totalprice", D),
                ("o_orderdate", DT),
                ("o_orderpriority", T),
                ("o_clerk", T),
                ("o_shippriority", I),
                ("o_comment", T),
            ],
        ),
        Schema::new(
            "lineitem",
            &[
                ("l_orderkey", L),
                ("l_partkey", I),
                ("l_suppkey", I),
                ("l_linenumber", I),
                ("l_quantity", D),
                ("l_extendedprice", D),
                ("l_discount", D),
                ("l_tax", D),
                ("l_returnflag", T),
                ("l_linestatus", T),
                ("l_shipdate", DT),
                ("l_commitdate", DT),
                ("l_receiptdate", DT),
                ("l_shipinstruct", T),
                ("l_shipmode", T),
                ("l_comment", T),
            ],
        ),
    ])
}

/// One TPC-H table's schema by name.
pub fn schema(name: &str) -> Option<Schema> {
    schemas().into_iter().find(|s| s.name == name)
}
