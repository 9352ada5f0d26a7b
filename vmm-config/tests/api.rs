//! The public API as the tool uses it: loading, all-errors reporting,
//! placement, `inspect` output, the JSON Schema, and the CLI exit codes.

use std::path::{Path, PathBuf};

use vmm_config::{cli, load, load_str, CheckContext, FaultPolicy, MapOwner, Notify, Range, Tuning};

fn manifests(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/manifests")
        .join(dir)
}

fn ctx() -> CheckContext {
    CheckContext {
        guests: Some(vec!["hello".into(), "counter".into(), "probe".into()]),
        root: None,
    }
}

const MANY_ERRORS: &str = r#"version = 1
board = "qemu-virt-aarch64"
colour = 3

[[partition]]
name = "API"
cores = [7, 1]
ram = "3 MiB"
guest = "helo"
on_fault = "stp"

[[partition]]
name = "db"
cores = [1]
ram = "16 MiB"
guest = "counter"
on_fault = "stop"
max_restarts = 2
devices = ["uart0", "virtio99"]

[[channel]]
name = "c"
from = "db"
to = "db"
slot_size = 0
slots = 3
notify = "poll"
"#;

#[test]
fn reports_every_error_in_source_order() {
    let d = load_str("many.toml", MANY_ERRORS, &ctx()).expect_err("invalid");
    let got: Vec<String> = d
        .plain()
        .into_iter()
        .map(|(f, l, c, m)| format!("{f}:{l}:{c}: {m}"))
        .collect();
    let want = [
        "many.toml:3:1: unknown top-level key `colour`",
        "many.toml:6:8: partition name \"API\" must start with a lowercase letter (a-z)",
        "many.toml:7:10: core 7 is not on board \"qemu-virt-aarch64\" (it has cores 0-3)",
        "many.toml:8:7: ram 3 MiB is not a multiple of 2 MiB",
        "many.toml:9:9: guest `helo` does not exist",
        "many.toml:10:12: invalid value \"stp\" for `on_fault`: expected one of `stop`, `restart`, `halt`",
        "many.toml:14:10: core 1 is already owned by partition `API`",
        "many.toml:18:16: max_restarts only applies to on_fault = \"restart\", but this partition uses on_fault = \"stop\"",
        "many.toml:19:12: `uart0` is the hypervisor's console and cannot be assigned to a partition",
        "many.toml:19:21: device `virtio99` is not on board \"qemu-virt-aarch64\"",
        "many.toml:24:6: channel `c` goes from partition `db` to itself",
        "many.toml:25:13: slot_size must be at least 1 byte",
        "many.toml:26:9: slots must be a power of two, not 3",
    ];
    assert_eq!(got, want);
    let rendered = d.to_string();
    assert!(
        rendered.contains("help: did you mean \"stop\"?"),
        "{rendered}"
    );
    assert!(
        rendered.contains("help: did you mean `hello`?"),
        "{rendered}"
    );
    assert!(rendered.contains("13 errors found"), "{rendered}");
    assert!(rendered.contains("7 │ cores = [7, 1]"), "{rendered}");
}

#[test]
fn guests_are_not_checked_without_a_list() {
    let src = std::fs::read_to_string(manifests("valid/minimal.toml")).expect("corpus");
    let odd = src.replace("guest = \"hello\"", "guest = \"not-written-yet\"");
    assert!(load_str("m.toml", &odd, &CheckContext::default()).is_ok());
    assert!(load_str("m.toml", &odd, &ctx()).is_err());
}

#[test]
fn resolves_the_full_example() {
    let s = load(&manifests("valid/full.toml"), &ctx()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(s.version, 1);
    assert_eq!(s.board.name, "qemu-virt-aarch64");
    let names: Vec<&str> = s.partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["api", "db", "probe-1"]);
    let api = &s.partitions[0];
    // First fit after the 16 MiB hypervisor reservation at the start of RAM.
    assert_eq!(api.ram(), Range::new(0x4100_0000, 16 << 20));
    assert_eq!(api.cores, [1]);
    assert_eq!(api.on_fault, FaultPolicy::Restart { max_restarts: 5 });
    assert!(api.devices.is_empty());
    assert!(!api.dma_trusted && api.log.is_none());
    assert!(s.partitions[1].dma_trusted);
    assert_eq!(s.partitions[1].log, Some(vmm_config::LogLevel::Debug));
    assert_eq!(api.bootargs, "mode=demo");
    let db = &s.partitions[1];
    assert_eq!(db.ram(), Range::new(0x5000_0000, 32 << 20));
    assert!(db.ram_fixed);
    assert_eq!((db.boot_core(), db.core_mask()), (2, 0b1100));
    assert_eq!(db.on_fault, FaultPolicy::Halt);
    assert_eq!(s.partitions[2].ram(), Range::new(0x4200_0000, 2 << 20));
    assert_eq!(
        s.partitions[2].on_fault,
        FaultPolicy::Restart { max_restarts: 3 }
    );
    // Channels go after every partition placed below them, page aligned.
    let req = &s.channels[0];
    assert_eq!(
        (req.from.as_str(), req.to.as_str(), req.notify),
        ("api", "db", Notify::Poll)
    );
    // `tuning` defaults to latency; `replies` asks for throughput.
    assert_eq!(req.tuning, Tuning::Latency);
    assert_eq!(s.channels[1].tuning, Tuning::Throughput);
    assert_eq!(s.channels[1].layout().map(|l| l.tuning()), Ok(Tuning::Throughput));
    // The tuning changes the capacity, never the memory.
    let lat = hallows_ring::ChannelLayout::new(4096, 16).unwrap();
    assert_eq!(s.channels[1].layout().unwrap().total_size(), lat.total_size());
    // 256 slots of 64 bytes (the stamps take one slot per block of 32):
    // 4 pages after the two headers.
    assert_eq!(req.memory(), Range::new(0x4220_0000, 2 * 4096 + 4 * 4096));
    // 16 slots of 4096 bytes: 16 pages.
    assert_eq!(
        s.channels[1].memory(),
        Range::new(0x4220_6000, 2 * 4096 + 16 * 4096)
    );
    s.verify_layout().expect("disjoint layout");
}

#[test]
fn memory_map_is_sorted_and_covers_all_ram() {
    for entry in std::fs::read_dir(manifests("valid")).expect("corpus") {
        let path = entry.expect("entry").path();
        let s = load(&path, &ctx()).unwrap_or_else(|d| panic!("{d}"));
        let map = s.memory_map();
        assert!(
            map.windows(2).all(|w| w[0].0.base <= w[1].0.base),
            "{}",
            path.display()
        );
        let ram: Vec<_> = map
            .iter()
            .filter(|(_, o)| {
                matches!(
                    o,
                    MapOwner::Hypervisor
                        | MapOwner::Partition(_)
                        | MapOwner::Channel(_)
                        | MapOwner::FreeRam
                )
            })
            .collect();
        // RAM entries tile the board's RAM exactly: no overlap, no hole.
        assert_eq!(
            ram.iter().map(|(r, _)| r.size).sum::<u64>(),
            s.board.ram_total(),
            "{}",
            path.display()
        );
        assert!(
            ram.windows(2).all(|w| w[0].0.end() <= w[1].0.base),
            "{}",
            path.display()
        );
        for p in &s.partitions {
            assert!(map.contains(&(p.ram(), MapOwner::Partition(p.name.clone()))));
        }
    }
}

#[test]
fn inspect_output_shows_partitions_channels_and_the_map() {
    let s = load(&manifests("valid/full.toml"), &ctx()).unwrap_or_else(|d| panic!("{d}"));
    let out = cli::render(&s);
    let lines: Vec<&str> = out.lines().collect();
    let row = |needle: &str| -> Vec<&str> {
        let line = lines
            .iter()
            .find(|l| l.trim_start().starts_with(needle))
            .unwrap_or_else(|| panic!("no row {needle:?} in\n{out}"));
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    };
    assert_eq!(
        row("api "),
        [
            "api",
            "1",
            "16 MiB",
            "0x0041000000..0x0042000000",
            "hello",
            "restart (max 5)",
            "-",
            "\"mode=demo\""
        ]
    );
    assert_eq!(
        row("db "),
        [
            "db",
            "2,3",
            "32 MiB",
            "0x0050000000..0x0052000000 fixed",
            "counter",
            "halt",
            "virtio0,virtio1,virtio2,virtio3,virtio4,virtio5,virtio6,virtio7",
            "-"
        ]
    );
    assert_eq!(
        row("requests"),
        [
            "requests",
            "api -> db",
            "256 x 64 B",
            "poll",
            "latency",
            "0x0042200000..0x0042206000",
            "24 KiB"
        ]
    );
    assert_eq!(
        row("0x0040000000"),
        [
            "0x0040000000",
            "0x0041000000",
            "16 MiB",
            "ram",
            "hypervisor"
        ]
    );
    assert_eq!(
        row("0x0009000000"),
        [
            "0x0009000000",
            "0x0009001000",
            "4 KiB",
            "mmio",
            "console uart0 (hypervisor)"
        ]
    );
    assert_eq!(
        row("0x000a000200"),
        [
            "0x000a000200",
            "0x000a000400",
            "512 B",
            "mmio",
            "device virtio1 -> db"
        ]
    );
    assert!(
        out.contains("(26 unassigned board devices not shown)"),
        "{out}"
    );
    // The map section lists addresses in increasing order.
    let map_start = lines
        .iter()
        .position(|l| *l == "physical memory map")
        .expect("map section");
    let bases: Vec<u64> = lines[map_start + 3..]
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .collect();
    assert!(
        bases.len() > 8 && bases.windows(2).all(|w| w[0] <= w[1]),
        "{out}"
    );
}

fn toml_to_json(path: &Path) -> serde_json::Value {
    let src = std::fs::read_to_string(path).expect("readable");
    let value: toml::Value =
        toml::from_str(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::to_value(value).expect("TOML maps to JSON")
}

#[test]
fn schema_accepts_valid_manifests_and_rejects_bad_shapes() {
    let schema: serde_json::Value = serde_json::from_str(&cli::schema()).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let mut count = 0;
    for entry in std::fs::read_dir(manifests("valid")).expect("corpus") {
        let path = entry.expect("entry").path();
        let json = toml_to_json(&path);
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        count += 1;
    }
    assert!(count >= 5);
    // Shape errors the loader reports are schema errors too.
    for (name, bad) in [
        ("unknown-partition-key", "unknown key"),
        ("missing-guest", "missing key"),
        ("wrong-type-cores", "wrong type"),
        ("version-string", "wrong type"),
        ("size-bad-unit", "size pattern"),
        ("on-fault-invalid", "enum"),
        ("unknown-top-level-key", "top-level key"),
        ("missing-channel-notify", "missing key"),
        ("name-invalid-chars", "name pattern"),
        ("bootargs-too-long", "length"),
        ("slots-zero", "minimum"),
    ] {
        let json = toml_to_json(&manifests(&format!("invalid/{name}.toml")));
        assert!(!validator.is_valid(&json), "schema accepts {name} ({bad})");
    }
}

#[test]
fn board_schema_accepts_the_built_in_and_test_boards() {
    let schema: serde_json::Value =
        serde_json::from_str(&cli::board_schema()).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let builtin = Path::new(env!("CARGO_MANIFEST_DIR")).join("boards/qemu-virt-aarch64.toml");
    for path in [builtin, manifests("boards/aliased.toml")] {
        let json = toml_to_json(&path);
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
    }
}

/// Two partitions and one channel; `extra` is appended to the channel table.
fn one_channel(extra: &str) -> String {
    format!(
        r#"version = 1
board = "qemu-virt-aarch64"

[[partition]]
name = "api"
cores = [1]
ram = "16 MiB"
guest = "hello"
on_fault = "stop"

[[partition]]
name = "db"
cores = [2]
ram = "16 MiB"
guest = "counter"
on_fault = "stop"

[[channel]]
name = "stream"
from = "api"
to = "db"
slot_size = 8
slots = 1024
notify = "poll"
{extra}"#
    )
}

#[test]
fn channel_tuning_defaults_to_latency() {
    let s = load_str("m.toml", &one_channel(""), &ctx()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(s.channels[0].tuning, Tuning::Latency);
    let s = load_str("m.toml", &one_channel("tuning = \"latency\"\n"), &ctx())
        .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(s.channels[0].tuning, Tuning::Latency);
    assert!(cli::render(&s).contains("  latency  "), "{}", cli::render(&s));
}

#[test]
fn channel_tuning_throughput_parses() {
    let s = load_str("m.toml", &one_channel("tuning = \"throughput\"\n"), &ctx())
        .unwrap_or_else(|d| panic!("{d}"));
    let c = &s.channels[0];
    assert_eq!(c.tuning, Tuning::Throughput);
    let layout = c.layout().expect("layout");
    assert_eq!(layout.tuning(), Tuning::Throughput);
    // Same memory as the latency layout; dense lines carry more messages.
    let lat = hallows_ring::ChannelLayout::new(8, 1024).unwrap();
    assert_eq!((c.size, layout.total_size()), (lat.total_size() as u64, lat.total_size()));
    assert!(layout.capacity() > lat.capacity());
    assert!(cli::render(&s).contains("  throughput  "), "{}", cli::render(&s));
}

#[test]
fn channel_tuning_unknown_value_is_located_with_help() {
    let d = load_str("m.toml", &one_channel("tuning = \"bulk\"\n"), &ctx())
        .expect_err("unknown tuning");
    let got = d.located();
    assert_eq!(got.len(), 1, "{d}");
    let e = &got[0];
    assert_eq!((e.file.as_str(), e.line, e.col), ("m.toml", 25, 10), "{d}");
    assert_eq!(
        e.message,
        "invalid value \"bulk\" for `tuning`: expected `latency` or `throughput`"
    );
    assert_eq!(
        e.help,
        ["use \"latency\" (one line transfer per message, for request/reply) or \"throughput\" (dense lines, for streams and bulk transfer)"]
    );
    // A near miss gets a suggestion as well as the meanings.
    let d = load_str("m.toml", &one_channel("tuning = \"throughtput\"\n"), &ctx())
        .expect_err("misspelled tuning");
    let e = &d.located()[0];
    assert_eq!((e.line, e.col), (25, 10));
    assert_eq!(e.help.len(), 2, "{d}");
    assert_eq!(e.help[0], "did you mean \"throughput\"?");
    assert!(d.to_string().contains("m.toml:25:10"), "{d}");
    // Not a string at all.
    let d = load_str("m.toml", &one_channel("tuning = 1\n"), &ctx()).expect_err("integer tuning");
    let e = &d.located()[0];
    assert_eq!((e.line, e.col), (25, 10), "{d}");
    assert!(e.message.starts_with("invalid `tuning`"), "{d}");
}

#[test]
fn cli_exit_codes() {
    assert_eq!(cli::check(&manifests("valid/minimal.toml"), &ctx()), 0);
    assert_eq!(
        cli::check(&manifests("invalid/core-owned-twice.toml"), &ctx()),
        1
    );
    assert_eq!(
        cli::check(&manifests("invalid/does-not-exist.toml"), &ctx()),
        1
    );
    assert_eq!(
        cli::inspect(&manifests("invalid/slots-zero.toml"), &ctx()),
        1
    );
    assert_eq!(cli::inspect(&manifests("valid/pipeline.toml"), &ctx()), 0);
    let s = load(&manifests("valid/minimal.toml"), &ctx()).expect("valid");
    let line = cli::summary(Path::new("minimal.toml"), &s);
    assert_eq!(line, "minimal.toml: OK: board qemu-virt-aarch64, 1 partition, 0 channels, 1 of 4 cores, 16 MiB of partition RAM");
}

#[test]
fn unreadable_manifest_is_a_diagnostic() {
    let d = load(Path::new("/nonexistent/m.toml"), &ctx()).expect_err("missing file");
    assert_eq!(d.len(), 1);
    assert!(d
        .to_string()
        .contains("cannot read manifest /nonexistent/m.toml"));
}

#[test]
fn verify_layout_catches_overlaps_and_strays() {
    let good = load(&manifests("valid/full.toml"), &ctx()).unwrap_or_else(|d| panic!("{d}"));
    let mut s = good.clone();
    s.channels[1].pa = s.channels[0].pa + 4096;
    let e = s.verify_layout().expect_err("overlapping channels");
    assert!(
        e.contains("the memory of channel `replies`")
            && e.contains("overlaps the memory of channel `requests`"),
        "{e}"
    );
    let mut s = good.clone();
    s.partitions[2].ram_pa = s.board.hypervisor.base;
    assert!(s
        .verify_layout()
        .expect_err("over the hypervisor")
        .contains("overlaps the hypervisor reservation"));
    let mut s = good.clone();
    s.partitions[0].ram_pa = 0x6000_0000;
    assert!(s
        .verify_layout()
        .expect_err("outside RAM")
        .contains("outside board RAM"));
    let mut s = good;
    s.channels[0].pa += 8;
    assert!(s
        .verify_layout()
        .expect_err("misaligned")
        .contains("not aligned"));
}
