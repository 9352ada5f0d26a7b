//! Property test over arbitrary input: `load_str` never panics, and its
//! answer is always either a system whose layout verifies or a non-empty
//! set of positioned diagnostics. Inputs are structurally plausible
//! manifests (known and unknown keys, values of every TOML type, right and
//! wrong), mutations of the valid corpus, raw garbage, and hostile input
//! (device paths, control characters, overlong strings, deep nesting, too
//! many items), whose report must also stay bounded and safe to print.
//!
//! CI runs proptest's default 256 cases per property; a long run is
//! `PROPTEST_CASES=200000 cargo test -p vmm-config --release --test fuzz`.

use proptest::prelude::*;
use vmm_config::{cli, load_str, CheckContext};

const KEYS: &[&str] = &[
    "name",
    "cores",
    "ram",
    "ram_base",
    "guest",
    "bootargs",
    "on_fault",
    "max_restarts",
    "devices",
    "from",
    "to",
    "slot_size",
    "slots",
    "notify",
    "tuning",
    "version",
    "board",
    "partition",
    "channel",
    "nmae",
    "ram-base",
    "",
];

const WORDS: &[&str] = &[
    "api",
    "db",
    "hello",
    "counter",
    "probe",
    "stop",
    "restart",
    "halt",
    "poll",
    "doorbell",
    "throughput",
    "virtio0",
    "virtio31",
    "rtc",
    "gpio",
    "uart0",
    "16 MiB",
    "2MiB",
    "1 GiB",
    "3 MiB",
    "0 B",
    "16 MB",
    "99999999999999 TiB",
    "qemu-virt-aarch64",
    "",
    "é",
    "a\u{0}b",
    "x\"y",
    "../boards/aliased.toml",
    "nope.toml",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (0u64..8).prop_map(|i| i.to_string()),
        (0u64..64).prop_map(|i| format!("{:#x}", 0x4000_0000 + i * 0x20_0000)),
        prop::sample::select(WORDS).prop_map(|w| format!("{w:?}")),
        "[a-z0-9 _-]{0,40}".prop_map(|s| format!("{s:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("1979-05-27T07:32:00Z".to_owned()),
    ]
}

fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(2, 12, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|kv| {
                let mut seen = std::collections::HashSet::new();
                let body: Vec<String> = kv
                    .into_iter()
                    .filter(|(k, _)| !k.is_empty() && seen.insert(*k))
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect();
                format!("{{ {} }}", body.join(", "))
            }),
        ]
    })
}

fn table(header: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(KEYS), value()), 0..10).prop_map(move |kv| {
        let mut out = format!("\n[[{header}]]\n");
        let mut seen = std::collections::HashSet::new();
        for (k, v) in kv {
            if !k.is_empty() && seen.insert(k) {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        out
    })
}

/// A manifest-like document: often-valid preamble, then random tables.
fn plausible() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("version = 1\n".to_owned()),
            value().prop_map(|v| format!("version = {v}\n")),
            Just(String::new())
        ],
        prop_oneof![
            Just("board = \"qemu-virt-aarch64\"\n".to_owned()),
            value().prop_map(|v| format!("board = {v}\n"))
        ],
        prop::collection::vec(table("partition"), 0..6),
        prop::collection::vec(table("channel"), 0..4),
    )
        .prop_map(|(v, b, p, c)| format!("{v}{b}{}{}", p.concat(), c.concat()))
}

const CORPUS: &[&str] = &[
    include_str!("../../tests/manifests/valid/full.toml"),
    include_str!("../../tests/manifests/valid/pipeline.toml"),
    include_str!("../../tests/manifests/valid/custom-board.toml"),
];

/// A valid manifest with a few characters replaced, inserted or removed.
fn mutated() -> impl Strategy<Value = String> {
    (
        prop::sample::select(CORPUS),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..6),
    )
        .prop_map(|(src, edits)| {
            let mut chars: Vec<char> = src.chars().collect();
            for (at, op, c) in edits {
                if chars.is_empty() {
                    break;
                }
                let i = at.index(chars.len());
                match op {
                    0 => chars[i] = c,
                    1 => chars.insert(i, c),
                    _ => {
                        chars.remove(i);
                    }
                }
            }
            chars.into_iter().collect()
        })
}

/// Values no manifest should carry: paths to devices, pipes and files
/// outside the project, and strings far past every field of the table.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "/dev/zero",
            "/dev/stdin",
            "/dev/null",
            "/proc/self/fd/0",
            "/etc/passwd",
            "../../../../../../../../etc/passwd",
            "/",
            "..",
            "../boards",
            "hallows",
            "self",
            "crate",
        ])
        .prop_map(|p| format!("{p:?}")),
        (
            1usize..300_000,
            prop::sample::select(vec!['x', 'é', '\u{202e}'])
        )
            .prop_map(|(n, c)| format!("\"{}\"", c.to_string().repeat(n))),
        (1usize..4000).prop_map(|d| format!("{}1{}", "[".repeat(d), "]".repeat(d))),
        Just("99999999999999999999999999999".to_owned()),
        Just("\"99999999999999999999 TiB\"".to_owned()),
    ]
}

/// A valid manifest with hostile values, control characters and runs of
/// bare CRs spliced in, or with far too many partitions and channels.
fn hostile() -> impl Strategy<Value = String> {
    let keys = prop::sample::select(vec![
        "board", "name", "guest", "bootargs", "spec", "cores", "ram", "devices", "slot_size",
    ]);
    prop_oneof![
        (
            prop::sample::select(CORPUS),
            prop::collection::vec((keys, hostile_value()), 1..4)
        )
            .prop_map(|(src, kvs)| {
                let mut out = src.to_owned();
                for (k, v) in kvs {
                    let prefix = format!("\n{k} = ");
                    if let Some(at) = out.find(&prefix) {
                        let end = out[at + 1..].find('\n').map_or(out.len(), |e| at + 1 + e);
                        out.replace_range(at + prefix.len()..end, &v);
                    }
                }
                out
            }),
        (
            prop::sample::select(CORPUS),
            any::<prop::sample::Index>(),
            prop::sample::select(vec!["\r", "\u{0}", "\u{1b}[2J", "\u{7f}", "\u{85}", "\u{2067}", "\u{b}"]),
            1usize..3000,
        )
            .prop_map(|(src, at, c, n)| {
                let mut out = src.to_owned();
                let i = out.floor_char_boundary(at.index(out.len()));
                out.insert_str(i, &c.repeat(n));
                out
            }),
        (0usize..200, 0usize..200).prop_map(|(np, nc)| {
            let mut out = "version = 1\nboard = \"qemu-virt-aarch64\"\n".to_owned();
            for i in 0..np {
                out += &format!(
                    "[[partition]]\nname = \"p{i}\"\ncores = [{}]\nram = \"2 MiB\"\nguest = \"hello\"\non_fault = \"stop\"\n",
                    i % 4
                );
            }
            for i in 0..nc {
                out += &format!("[[channel]]\nname = \"c{i}\"\nfrom = \"p0\"\nto = \"p1\"\nslot_size = 64\nslots = 16\nnotify = \"poll\"\n");
            }
            out
        }),
    ]
}

fn check_outcome(src: &str) {
    let ctx = CheckContext {
        guests: Some(vec!["hello".into(), "counter".into(), "probe".into()]),
        // Paths stay inside the workspace, as `hallows check` has them.
        root: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/..").into()),
    };
    // The name puts relative board paths next to the test boards.
    let name = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/manifests/valid/fuzz.toml"
    );
    match load_str(name, src, &ctx) {
        Ok(system) => {
            assert!(
                system.verify_layout().is_ok(),
                "accepted an invalid layout:\n{src}"
            );
            assert!(!cli::render(&system).is_empty());
        }
        Err(d) => {
            assert!(!d.is_empty());
            for l in d.located() {
                assert!(
                    l.line >= 1 && l.col >= 1,
                    "unpositioned diagnostic {l} for:\n{src}"
                );
            }
            let out = d.to_string();
            assert!(out.contains("error"));
            // At most 50 errors, each echoing at most 200 columns of a line.
            assert!(out.len() < 50 * 4096, "{} bytes of report", out.len());
            assert!(
                !out.chars().any(hallows_source::is_unsafe_char),
                "raw control character in the report {out:?}"
            );
            // Never a line of a file outside the project.
            assert!(!out.contains("root:x:"), "echoed /etc/passwd:\n{out}");
        }
    }
}

proptest! {
    #[test]
    fn plausible_manifests_never_panic(src in plausible()) {
        check_outcome(&src);
    }

    #[test]
    fn mutated_manifests_never_panic(src in mutated()) {
        check_outcome(&src);
    }

    #[test]
    fn garbage_never_panics(src in "\\PC{0,300}") {
        check_outcome(&src);
    }

    /// Device paths, paths outside the project, control characters, bare
    /// CRs, overlong strings, deep arrays, too many partitions and channels:
    /// answered quickly, with a bounded, located report that echoes nothing unsafe.
    #[test]
    fn hostile_manifests_get_bounded_located_reports(src in hostile()) {
        check_outcome(&src);
    }
}
