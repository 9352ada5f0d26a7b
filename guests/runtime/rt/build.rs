//! Puts the guest linker script on the link search path of every guest
//! binary that depends on this crate; each guest's own build script passes
//! `-Tguest.ld` to its binaries. x86_64 gets its own variant (same base
//! address; it keeps the position-independent image's relocations).
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = if env::var("TARGET").unwrap_or_default().starts_with("x86_64") {
        include_str!("guest-x86_64.ld")
    } else {
        include_str!("guest.ld")
    };
    fs::write(out.join("guest.ld"), script).expect("write guest.ld");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=guest.ld");
    println!("cargo:rerun-if-changed=guest-x86_64.ld");
}
