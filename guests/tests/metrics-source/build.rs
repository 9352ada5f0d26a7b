//! Links this guest with the runtime's `guest.ld` (put on the search path
//! by `hallows-rt`'s build script) and compiles its Parseltongue service
//! spec (`source.pt`) to Rust, with the glue to the runtime's channel lookup.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Tguest.ld");
    let options = parseltongue::Options { hallows_rt: true, ..Default::default() };
    parseltongue::build::compile_with("source.pt", &options);
}
