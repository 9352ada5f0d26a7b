//! The engine on small tables whose answers are worked out by hand or by
//! a plain row-at-a-time loop in the test.

use hallows_blockdev::MemDisk;
use hallows_olap::exec::Threads;
use hallows_olap::storage::{Schema, Writer};
use hallows_olap::{Engine, ErrorKind, Serial, Type, Value};
use proptest::prelude::*;

/// Table `t(k int, g text, p decimal(2), d date, b bigint)`: k = 0..rows,
/// g cycles A/B/C, p = k/4 with cents k%100, d = 1995-01-01 + k%365 days,
/// b = 3*k; table `u(k int, name text)` for k in 0..50 step 5.
fn image(rows: usize, group_rows: usize) -> MemDisk {
    let mut w = Writer::new(MemDisk::new(1 << 15), group_rows).unwrap();
    let mut t = w
        .table(Schema::new(
            "t",
            &[("k", Type::Int32), ("g", Type::Text), ("p", Type::Decimal(2)), ("d", Type::Date), ("b", Type::Int64)],
        ))
        .unwrap();
    for k in 0..rows {
        let date = hallows_olap::types::format_date(9131 + (k % 365) as i32);
        let p = format!("{}.{:02}", k / 4, k % 100);
        t.push_text(&[&k.to_string(), ["A", "B", "C"][k % 3], &p, &date, &(3 * k).to_string()]).unwrap();
    }
    t.finish().unwrap();
    let mut u = w.table(Schema::new("u", &[("k", Type::Int32), ("name", Type::Text)])).unwrap();
    for k in (0..50).step_by(5) {
        u.push_text(&[&k.to_string(), &format!("n{k}")]).unwrap();
    }
    u.finish().unwrap();
    w.finish().unwrap().0
}

fn engine(rows: usize, group_rows: usize) -> Engine<MemDisk> {
    Engine::open(image(rows, group_rows)).unwrap()
}

fn rows(e: &Engine<MemDisk>, q: &str) -> Vec<Vec<String>> {
    let rs = e.query(q, &Serial).unwrap_or_else(|err| panic!("{q}: {err}"));
    rs.text().into_iter().map(|r| r.into_iter().map(|v| v.unwrap_or_else(|| "NULL".into())).collect()).collect()
}

fn one(e: &Engine<MemDisk>, q: &str) -> String {
    let r = rows(e, q);
    assert_eq!(r.len(), 1, "{q}");
    r[0].join("|")
}

#[test]
fn scalar_expressions() {
    let e = engine(1000, 128);
    assert_eq!(one(&e, "select count(*), sum(k), min(k), max(k), sum(b) from t"), "1000|499500|0|999|1498500");
    assert_eq!(one(&e, "select sum(p * 2), sum(p * p), sum(1 - p) from t where k < 3"), "0.06|0.0005|2.97");
    assert_eq!(one(&e, "select avg(k) from t where k < 4"), "1.500000");
    assert_eq!(one(&e, "select k / 4, p / 3, 2 / 3, -2 / 3, -7 / 2, p * p / 7 from t where k = 10"),
        "2.500000|0.700000|0.666667|-0.666667|-3.500000|0.630000");
    assert_eq!(one(&e, "select 100.00 * sum(p) / sum(b) from t where k < 10"), "6.259259");
    assert_eq!(one(&e, "select avg(p) from t where k in (1, 2)"), "0.015000");
    assert_eq!(one(&e, "select k, d, d + interval '1' month, d - interval '2' year, extract(year from d) from t where k = 30"),
        "30|1995-01-31|1995-02-28|1993-01-31|1995");
    assert_eq!(one(&e, "select count(*) from t where d between date '1995-02-01' and '1995-02-28'"), (28 * 3).to_string());
    assert_eq!(one(&e, "select case when k < 10 then 'small' when k < 100 then 'mid' else 'big' end from t where k = 42"), "mid");
    assert_eq!(one(&e, "select sum(case g when 'A' then p else 0 end) from t where k < 6"), "0.03");
    assert_eq!(one(&e, "select count(*) from t where g like 'A%' or g like '_C'"), "334");
    assert_eq!(one(&e, "select count(*) from t where g not in ('A', 'B') and not k >= 500"), "166");
    assert_eq!(one(&e, "select -k * 2 + 7 % 4, cast(k as text) || 'x' from t where k = 5"), "-7|5x");
}

#[test]
fn null_aggregates_over_nothing() {
    let e = engine(100, 32);
    assert_eq!(one(&e, "select count(*), sum(k), avg(p), min(g), count(k) + 1, sum(k) + 1 from t where k < 0"), "0|NULL|NULL|NULL|1|NULL");
    assert!(rows(&e, "select g, count(*) from t where k < 0 group by g").is_empty());
}

#[test]
fn grouping_ordering_limits() {
    let e = engine(1000, 100);
    assert_eq!(
        rows(&e, "select g, count(*) as n, sum(k) from t group by g order by g desc"),
        [["C", "333", "166500"], ["B", "333", "166167"], ["A", "334", "166833"]]
    );
    // ORDER BY an aggregate not selected, a position, an alias; top-N.
    assert_eq!(rows(&e, "select g from t group by g order by sum(k), g limit 2"), [["B"], ["C"]]);
    assert_eq!(rows(&e, "select k, g from t order by 2, 1 desc limit 2"), [["999", "A"], ["996", "A"]]);
    assert_eq!(rows(&e, "select k as x from t where k < 5 order by x desc limit 3"), [["4"], ["3"], ["2"]]);
    assert_eq!(rows(&e, "select k from t order by b desc limit 0").len(), 0);
    assert_eq!(rows(&e, "select k from t where k >= 995").len(), 5);
    assert_eq!(rows(&e, "select g, count(*) from t group by 1 having count(*) > 333 order by 1"), [["A", "334"]]);
    assert_eq!(rows(&e, "select extract(month from d) as m, count(*) from t group by m order by m limit 1"), [["1", "93"]]);
}

#[test]
fn joins() {
    let e = engine(1000, 100);
    assert_eq!(
        rows(&e, "select t.k, name, g from t, u where t.k = u.k and t.k < 20 order by t.k"),
        [["0", "n0", "A"], ["5", "n5", "C"], ["10", "n10", "B"], ["15", "n15", "A"]]
    );
    assert_eq!(one(&e, "select count(*) from t x join u y on x.k = y.k join t z on z.k = y.k and z.g = x.g"), "10");
    assert_eq!(one(&e, "select count(*) from t, u where t.k = u.k + 1"), "10");
    assert_eq!(one(&e, "select count(*) from t, u where t.k = u.k and (t.g = 'A' or u.name = 'n5')"), "5");
    // The join key inside every branch of an OR is a join key.
    assert_eq!(one(&e, "select count(*) from t, u where (t.k = u.k and t.g = 'A') or (u.k = t.k and u.name = 'n5')"), "5");
    assert_eq!(one(&e, "select count(*) from t, u where (t.k = u.k and t.g = 'A') or (t.k = u.k and u.name = 'n5')"), "5");
    assert_eq!(one(&e, "select count(*) from t, u where (t.k = u.k and t.g = 'A') or t.k = u.k"), "10");
}

fn err(e: &Engine<MemDisk>, q: &str) -> (ErrorKind, (usize, usize), String) {
    let x = e.query(q, &Serial).unwrap_err();
    (x.kind, x.line_col.unwrap_or((0, 0)), x.msg)
}

#[test]
fn errors_name_the_place() {
    let e = engine(10, 10);
    let (k, at, m) = err(&e, "select k,\n  nope\nfrom t");
    assert_eq!((k, at), (ErrorKind::Undefined, (2, 3)));
    assert!(m.contains("\"nope\" does not exist"), "{m}");
    let (k, at, _) = err(&e, "select k from missing");
    assert_eq!((k, at), (ErrorKind::Undefined, (1, 15)));
    let (k, at, m) = err(&e, "select g, k from t group by g");
    assert_eq!((k, at), (ErrorKind::Undefined, (1, 11)));
    assert!(m.contains("GROUP BY"), "{m}");
    let (k, at, _) = err(&e, "select k from t where g = 1");
    assert_eq!((k, at), (ErrorKind::Type, (1, 25)));
    let (k, at, _) = err(&e, "select k from t where d < '1995-13-01'");
    assert_eq!((k, at), (ErrorKind::Data, (1, 25)));
    let (k, _, _) = err(&e, "select k from t, u");
    assert_eq!(k, ErrorKind::Unsupported);
    let (k, at, m) = err(&e, "select k / (k - k) from t");
    assert_eq!((k, at), (ErrorKind::Data, (0, 0)));
    assert!(m.contains("division by zero"), "{m}");
    let (k, at, _) = err(&e, "select k from t where 1 / 0 > 1");
    assert_eq!((k, at), (ErrorKind::Data, (1, 25)), "a constant division by zero is found while planning");
    let (k, at, _) = err(&e, "select k from t where sum(k) > 1");
    assert_eq!((k, at), (ErrorKind::Syntax, (1, 23)));
    let (k, _, m) = err(&e, "select k from t, u where t.k = u.k");
    assert_eq!(k, ErrorKind::Undefined);
    assert!(m.contains("ambiguous"), "{m}");
    let (k, _, _) = err(&e, "select b * 100000000000000000 * 100000000000000000 * 100000000000000000 from t where k = 9");
    assert_eq!(k, ErrorKind::Data);
}

#[test]
fn zone_maps_skip_row_groups() {
    let e = engine(1000, 100);
    let rs = e.query("select count(*) from t where k < 150", &Serial).unwrap();
    assert_eq!(rs.rows[0][0], Value::Num(150));
    assert_eq!((rs.stats.groups_read, rs.stats.groups_skipped), (2, 8));
    let rs = e.query("select count(*) from t where k in (5, 905) and b > 0", &Serial).unwrap();
    assert_eq!(rs.rows[0][0], Value::Num(2));
    assert_eq!(rs.stats.groups_skipped, 8);
    let rs = e.query("select count(*) from t where 250 <= k and k = 250", &Serial).unwrap();
    assert_eq!((rs.rows[0][0].clone(), rs.stats.groups_read), (Value::Num(1), 1));
}

#[test]
fn damaged_chunk_fails_the_query() {
    let img = image(1000, 100);
    let db = hallows_olap::storage::Db::open(img.clone()).unwrap();
    let meta = db.tables[0].groups[3].chunks[2].clone();
    let mut bad = img;
    bad.corrupt(meta.lba as usize * 512 + 3, 0x40);
    let e = Engine::open(bad).unwrap();
    // Queries that do not touch the chunk still work; those that do fail.
    assert_eq!(one(&e, "select count(*) from t where k < 300"), "300");
    let x = e.query("select sum(p) from t", &Serial).unwrap_err();
    assert_eq!(x.kind, ErrorKind::Corrupt);
    assert!(x.msg.contains("t.p row group 3"), "{}", x.msg);
    assert_eq!(e.query("select sum(p) from t", &Threads(3)).unwrap_err().kind, ErrorKind::Corrupt);
}

#[test]
fn limits_hold() {
    let mut e = engine(1000, 100);
    e.limits.max_groups = 10;
    assert_eq!(e.query("select k, count(*) from t group by k", &Serial).unwrap_err().kind, ErrorKind::Limit);
    e.limits.max_rows = 2000;
    // A join that multiplies rows streams through in batches: 333334
    // joined rows counted while no more than 2000 are ever held.
    assert_eq!(one(&e, "select count(*) from t a join t b on a.g = b.g"), "333334");
    e.limits.max_rows = 100;
    assert_eq!(e.query("select k from t", &Serial).unwrap_err().kind, ErrorKind::Limit);
    assert_eq!(e.query("select count(*) from t a join t b on a.g = b.g", &Serial).unwrap_err().kind, ErrorKind::Limit);
    let long = format!("select count(*) from t where g like '{}'", "%a".repeat(600));
    assert_eq!(e.query(&long, &Serial).unwrap_err().kind, ErrorKind::Limit);
    let many = format!("select 1 from {}", (0..40).map(|i| format!("t t{i}")).collect::<Vec<_>>().join(", "));
    assert_eq!(e.query(&many, &Serial).unwrap_err().kind, ErrorKind::Limit);
}

#[test]
fn threads_give_the_serial_answer() {
    let e = engine(5000, 64);
    for q in [
        "select g, sum(p), avg(p), count(*), min(d), max(k) from t group by g order by g",
        "select k, b from t where k % 7 = 0 order by b desc limit 17",
        "select t.k, name from t, u where t.k = u.k",
        "select extract(month from d), sum(b) from t group by 1",
    ] {
        let a = e.query(q, &Serial).unwrap();
        for n in [2, 3, 8] {
            assert_eq!(a, e.query(q, &Threads(n)).unwrap(), "{q} on {n} threads");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Filters and grouped sums against a loop over the same rows.
    #[test]
    fn filters_match_a_loop(lo in 0usize..1200, hi in 0usize..1200, g in 0usize..3, group_rows in 1usize..300) {
        let e = engine(1000, group_rows);
        let name = ["A", "B", "C"][g];
        let q = format!("select count(*), sum(b) from t where k >= {lo} and k < {hi} and g <> '{name}'");
        let (mut n, mut s) = (0u64, 0u64);
        for k in 0..1000usize {
            if k >= lo && k < hi && k % 3 != g {
                n += 1;
                s += 3 * k as u64;
            }
        }
        let want = if n == 0 { "0|NULL".to_string() } else { format!("{n}|{s}") };
        prop_assert_eq!(one(&e, &q), want);
    }

    /// A byte flipped anywhere in the image: the query gives the right
    /// answer or fails as damaged, never a wrong answer.
    #[test]
    fn flipped_bytes_never_give_wrong_answers(at in 0usize..60_000, bits in 1u8..=255) {
        let good = image(1000, 100);
        let q = "select g, count(*), sum(p), min(d), max(b), min(name) from t, u where t.k = u.k and t.k < 990 group by g order by g";
        let want = Engine::open(good.clone()).unwrap().query(q, &Serial).unwrap();
        let used = good.image().iter().rposition(|&b| b != 0).unwrap_or(0) + 1;
        let mut bad = good;
        bad.corrupt(at % used, bits);
        match Engine::open(bad) {
            Err(e) => prop_assert_eq!(e.kind, ErrorKind::Corrupt),
            Ok(e) => match e.query(q, &Serial) {
                Err(x) => prop_assert_eq!(x.kind, ErrorKind::Corrupt, "{}", x),
                Ok(rs) => prop_assert_eq!(rs.rows, want.rows),
            },
        }
    }

    /// Arbitrary text never panics the parser or planner.
    #[test]
    fn any_query_text_is_an_answer_or_an_error(q in "\\PC{0,80}") {
        let e = engine(10, 10);
        let _ = e.query(&q, &Serial);
        let _ = e.query(&format!("select {q} from t"), &Serial);
    }
}

/// Table `w(k int, g text, b bigint, p decimal(2))` from the rows given.
fn wide_image(rows: &[(i64, i64)], group_rows: usize) -> MemDisk {
    let mut w = Writer::new(MemDisk::new(1 << 15), group_rows).unwrap();
    let mut t = w
        .table(Schema::new("w", &[("k", Type::Int32), ("g", Type::Text), ("b", Type::Int64), ("p", Type::Decimal(2))]))
        .unwrap();
    for (k, &(b, p)) in rows.iter().enumerate() {
        let p = format!("{}{}.{:02}", if p < 0 { "-" } else { "" }, p.unsigned_abs() / 100, p.unsigned_abs() % 100);
        t.push_text(&[&k.to_string(), ["x", "y"][k % 2], &b.to_string(), &p]).unwrap();
    }
    t.finish().unwrap();
    w.finish().unwrap().0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Sums and products of values near the 64-bit limits: whatever does
    /// not fit in 64 bits is computed in 128 (the answer a 128-bit loop
    /// gives), and what does not fit in 128 is an error, never a wrapped
    /// number.
    #[test]
    fn sums_and_products_past_64_bits(
        vals in proptest::collection::vec(
            (prop_oneof![any::<i64>(), -1000i64..1000, Just(i64::MAX), Just(i64::MIN + 1)], -99_999_999i64..99_999_999),
            1..400,
        ),
        group_rows in 1usize..200,
    ) {
        let e = Engine::open(wide_image(&vals, group_rows)).unwrap();
        for g in 0..2 {
            let rows: Vec<&(i64, i64)> = vals.iter().enumerate().filter(|(k, _)| k % 2 == g).map(|(_, r)| r).collect();
            if rows.is_empty() {
                continue;
            }
            let sum_b: i128 = rows.iter().map(|r| i128::from(r.0)).sum();
            let sum_pp: i128 = rows.iter().map(|r| i128::from(r.1) * i128::from(r.1)).sum();
            let q = format!("select sum(b), sum(p * p), count(*) from w where g = '{}'", ["x", "y"][g]);
            let want = format!("{sum_b}|{}|{}", hallows_olap::types::format_decimal(sum_pp, 4), rows.len());
            prop_assert_eq!(one(&e, &q), want);
            // b * b may pass 64 bits (then 128), a sum of them 128 bits (then an error).
            let sq: Option<i128> = rows.iter().try_fold(0i128, |s, r| s.checked_add(i128::from(r.0) * i128::from(r.0)));
            let q = format!("select sum(b * b) from w where g = '{}'", ["x", "y"][g]);
            match (sq, e.query(&q, &Serial)) {
                (Some(s), Ok(rs)) => prop_assert_eq!(rs.rows[0][0].clone(), Value::Num(s)),
                (None, Err(x)) => prop_assert_eq!(x.kind, ErrorKind::Data),
                (want, got) => prop_assert!(false, "{:?} vs {:?}", want, got.map(|r| r.rows)),
            }
        }
    }

    /// Joins of three tables with filters on each (semi-join reduction
    /// and the join order at work) against nested loops.
    #[test]
    fn filtered_joins_match_loops(a in 0usize..1000, b in 0usize..50, g in 0usize..3, group_rows in 1usize..300) {
        let e = engine(1000, group_rows);
        let q = format!(
            "select count(*), sum(t.b) from t, u, t t2 where t.k = u.k and u.k = t2.k and t2.k < {a} and u.k >= {b} and t.g <> '{}'",
            ["A", "B", "C"][g]
        );
        let (mut n, mut s) = (0u64, 0u64);
        for k in (0..50usize).step_by(5) {
            if k < a && k >= b && k % 3 != g {
                n += 1;
                s += 3 * k as u64;
            }
        }
        let want = if n == 0 { "0|NULL".to_string() } else { format!("{n}|{s}") };
        prop_assert_eq!(one(&e, &q), want);
    }
}

#[test]
fn chunk_cache_gives_the_same_answers_within_its_budget() {
    let img = image(3000, 100);
    let plain = Engine::open(img.clone()).unwrap();
    let cached = Engine::open(img.clone()).unwrap();
    // Room for a few chunks only: the oldest go as new ones come.
    cached.db.set_cache_bytes(4096);
    let qs = [
        "select g, sum(p), avg(p), count(*), min(d), max(k) from t group by g order by g",
        "select t.k, name from t, u where t.k = u.k order by 1",
        "select count(*) from t where k between 500 and 2500 and g = 'B'",
    ];
    for _ in 0..3 {
        for q in qs {
            assert_eq!(plain.query(q, &Serial).unwrap(), cached.query(q, &Serial).unwrap(), "{q}");
            assert!(cached.db.cached_bytes() <= 4096);
        }
    }
    assert!(cached.db.cached_bytes() > 0);
    // A cache large enough for everything, and a damaged chunk: still refused.
    let db = hallows_olap::storage::Db::open(img.clone()).unwrap();
    let meta = db.tables[0].groups[3].chunks[2].clone();
    let mut bad = img;
    bad.corrupt(meta.lba as usize * 512 + 3, 0x40);
    let e = Engine::open(bad).unwrap();
    e.db.set_cache_bytes(1 << 30);
    for _ in 0..2 {
        assert_eq!(e.query("select sum(p) from t", &Serial).unwrap_err().kind, ErrorKind::Corrupt);
        assert_eq!(one(&e, "select count(*) from t where k < 300"), "300");
    }
    e.db.set_cache_bytes(0);
    assert_eq!(e.db.cached_bytes(), 0);
}
