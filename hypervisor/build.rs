fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("aarch64") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/src/arch/aarch64/link.ld");
        println!("cargo:rerun-if-changed=src/arch/aarch64/link.ld");
    }
    if target.starts_with("x86_64") {
        // A fixed-address image: the 32-bit boot code uses absolute
        // addresses, which a position-independent link would refuse.
        println!("cargo:rustc-link-arg-bins=-T{dir}/src/arch/x86_64/link.ld");
        println!("cargo:rustc-link-arg-bins=--no-pie");
        println!("cargo:rerun-if-changed=src/arch/x86_64/link.ld");
    }
}
