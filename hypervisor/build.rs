fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("aarch64") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/src/arch/aarch64/link.ld");
        println!("cargo:rerun-if-changed=src/arch/aarch64/link.ld");
    }
}
