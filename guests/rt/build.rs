//! Puts the guest linker script on the link search path of every guest
//! binary that depends on this crate; each guest's own build script passes
//! `-Tguest.ld` to its binaries.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("guest.ld"), include_str!("guest.ld")).expect("write guest.ld");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=guest.ld");
}
