//! Property test over arbitrary input: `load_str` never panics, and its
//! answer is always either a system whose layout verifies or a non-empty
//! set of positioned diagnostics. Inputs are structurally plausible
//! manifests (known and unknown keys, values of every TOML type, right and
//! wrong), mutations of the valid corpus, and raw garbage.
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

fn check_outcome(src: &str) {
    let ctx = CheckContext {
        guests: Some(vec!["hello".into(), "counter".into(), "probe".into()]),
        root: None,
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
            assert!(d.to_string().contains("error"));
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
}
