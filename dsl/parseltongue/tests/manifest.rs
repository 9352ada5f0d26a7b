//! Cross-checks of specs against manifests (`hallows check`): a consistent
//! system passes; each kind of disagreement is reported at the spec, with
//! both definitions for a type mismatch.

use std::path::{Path, PathBuf};

use vmm_config::{CheckContext, System};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/specs/systems")
}

fn load(manifest: &str) -> (System, PathBuf) {
    let path = dir().join(manifest);
    let sys = vmm_config::load(&path, &CheckContext::default()).unwrap_or_else(|d| panic!("{d}"));
    (sys, path)
}

fn check_with(manifest: &str, edit: impl Fn(&str, String) -> String) -> Result<(), parseltongue::Diagnostics> {
    let (sys, path) = load(manifest);
    let specs: Vec<(String, parseltongue::Spec)> = parseltongue::manifest::spec_paths(&sys, &path)
        .into_iter()
        .map(|(p, f)| {
            let src = edit(&p, std::fs::read_to_string(&f).unwrap());
            (p, parseltongue::check_str(f.file_name().unwrap().to_str().unwrap(), &src).unwrap_or_else(|d| panic!("{d}")))
        })
        .collect();
    parseltongue::manifest::check_against(&sys, &specs)
}

fn first(r: Result<(), parseltongue::Diagnostics>) -> (String, String) {
    let d = r.expect_err("expected a cross-check error");
    let l = &d.located()[0];
    (format!("{}:{}:{}: {}", l.file, l.line, l.col, l.message), d.to_string())
}

#[test]
fn consistent_system_passes() {
    let (sys, path) = load("pair.toml");
    let specs = parseltongue::manifest::check_manifest(&sys, &path).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(specs.len(), 2);
}

#[test]
fn type_mismatch_shows_both_definitions() {
    let (sys, path) = load("mismatch.toml");
    let d = parseltongue::manifest::check_manifest(&sys, &path).expect_err("mismatch must be refused");
    let text = d.to_string();
    let l = &d.located()[0];
    assert_eq!(l.file.rsplit('/').next().unwrap(), "server-mismatch.pt");
    assert!(l.message.starts_with("the two ends of channel \"requests\" disagree on the message type"), "{text}");
    assert!(text.contains("receiver (") && text.contains("sender ("), "{text}");
    assert!(text.contains("field limit: u64;  // offset 8, size 8"), "receiver's definition missing:\n{text}");
    assert!(text.contains("field limit: u32;  // offset 8, size 4"), "sender's definition missing:\n{text}");
    assert!(text.contains("client.pt") && text.contains("sender's definition"), "{text}");
}

#[test]
fn a_renamed_field_is_a_mismatch_too() {
    let (msg, _) = first(check_with("pair.toml", |p, s| if p == "client" { s.replace("field count: u32;", "field total: u32;") } else { s }));
    assert!(msg.starts_with("client.pt:13:21: the two ends of channel \"replies\" disagree"), "{msg}");
}

#[test]
fn unknown_channel_suggests_the_manifest_name() {
    let (msg, text) = first(check_with("pair.toml", |p, s| if p == "client" { s.replace("\"requests\"", "\"request\"") } else { s }));
    assert_eq!(msg, "client.pt:12:18: channel \"request\" is not in the manifest");
    assert!(text.contains("did you mean `requests`?"), "{text}");
}

#[test]
fn wrong_direction_is_refused() {
    let (msg, text) = first(check_with("pair.toml", |p, s| if p == "client" { s.replace("send_channel \"requests\" carrying Job;", "receive_channel \"requests\" carrying Job handled_by on_job;") } else { s }));
    assert_eq!(msg, "client.pt:12:21: partition `client` receives on channel \"requests\", but the manifest does not connect it that way");
    assert!(text.contains("partition `client` is its producer (use send_channel)"), "{text}");
}

#[test]
fn message_larger_than_the_slot_is_refused() {
    let (msg, text) = first(check_with("pair.toml", |_, s| s.replace("field limit: u32;", "field limit: u32;\n        field blob: [u8; 64];")));
    assert!(msg.contains("message `Job` (80 bytes, align 8) does not fit channel \"requests\"'s 64-byte slots"), "{msg}");
    assert!(text.contains("set `slot_size` to at least 80"), "{text}");
}

#[test]
fn budget_must_fit_the_partition() {
    let (msg, _) = first(check_with("pair.toml", |p, s| if p == "client" { s.replace("ram = 8 MiB;", "ram = 32 MiB;") } else { s }));
    assert_eq!(msg, "client.pt:14:31: the budget asks for 32 MiB of RAM; partition `client` has 16 MiB");
    let (msg, _) = first(check_with("pair.toml", |p, s| if p == "client" { s.replace("cores = 1;", "cores = 2;") } else { s }));
    assert_eq!(msg, "client.pt:14:22: the budget asks for 2 cores; partition `client` has 1");
}

#[test]
fn unreadable_spec_is_reported() {
    let (mut sys, path) = load("pair.toml");
    sys.partitions[0].spec = Some("missing.pt".into());
    let d = parseltongue::manifest::check_manifest(&sys, &path).expect_err("missing spec");
    assert!(d.located()[0].message.starts_with("cannot read spec"), "{d}");
}

/// Issue 15: specs learnt from the guests (no `spec` keys) are checked
/// like the manifest's, on the channels the manifest connects to the
/// partition; the layout hash of each channel's type is what the tool
/// records for the runtime.
#[test]
fn guest_specs_are_checked_without_spec_keys_and_give_the_layout_hashes() {
    let (sys, path) = load("pair.toml");
    let strip = |s: &str| s.lines().filter(|l| !l.starts_with("spec = ")).collect::<Vec<_>>().join("\n");
    let bare = vmm_config::load_str("bare.toml", &strip(&std::fs::read_to_string(&path).unwrap()), &CheckContext::default()).unwrap_or_else(|d| panic!("{d}"));
    let guest = |mismatch: bool| {
        move |g: &str| -> Result<Option<PathBuf>, String> {
            Ok(Some(dir().join(match g {
                "probe" => "client.pt",
                _ if mismatch => "server-mismatch.pt",
                _ => "server.pt",
            })))
        }
    };
    let specs = parseltongue::manifest::check_system(&bare, &path, &guest(false)).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(specs.len(), 2);
    let d = parseltongue::manifest::check_system(&bare, &path, &guest(true)).expect_err("mismatch without spec keys");
    assert!(d.located()[0].message.starts_with("the two ends of channel \"requests\" disagree"), "{d}");
    // Layout hashes by channel: those of the specs' message types.
    let with_keys = parseltongue::manifest::check_manifest(&sys, &path).unwrap_or_else(|d| panic!("{d}"));
    let hashes = parseltongue::manifest::layout_hashes(&sys, &with_keys);
    assert_eq!(hashes.len(), 2);
    for (name, h) in &hashes {
        let server = &with_keys.iter().find(|(p, _)| p == "server").unwrap().1.model;
        let c = server.channels.iter().find(|c| &c.name == name).unwrap();
        assert_eq!(*h, server.structs[c.message].hash, "{name}");
    }
    // A guest spec whose channels the partition is not connected to is
    // not its service: nothing to check, no error.
    let lone = vmm_config::load_str("lone.toml", "version = 1\nboard = \"qemu-virt-aarch64\"\n[[partition]]\nname = \"a\"\ncores = [1]\nram = \"2 MiB\"\nguest = \"probe\"\non_fault = \"stop\"\n", &CheckContext::default()).unwrap_or_else(|d| panic!("{d}"));
    parseltongue::manifest::check_system(&lone, &path, &guest(false)).unwrap_or_else(|d| panic!("{d}"));
}

/// The declaration `hallows check` reads and the build helper enforces:
/// `[package.metadata.hallows] spec` in a guest's Cargo.toml.
#[test]
fn a_guest_crate_declares_its_spec() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let hello = root.join("guests/services/hello");
    assert_eq!(parseltongue::build::declared_spec(&hello), Ok(Some(hello.join("greeter.pt"))));
    assert_eq!(parseltongue::build::declared_spec(&root.join("guests/tests/probe")), Ok(None));
    let dir = std::env::temp_dir().join(format!("pt-declared-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"g\"\n[package.metadata.hallows]\nspec = 3\n").unwrap();
    let e = parseltongue::build::declared_spec(&dir).unwrap_err();
    std::fs::write(dir.join("Cargo.toml"), "[package\n").unwrap();
    let broken = parseltongue::build::declared_spec(&dir).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(e.contains("Cargo.toml") && e.contains("spec must be a string"), "{e}");
    assert!(broken.contains("Cargo.toml"), "{broken}");
}
