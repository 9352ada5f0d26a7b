//! Links this guest with the runtime's `guest.ld` (put on the search path
//! by `hallows-rt`'s build script) and compiles its in-system consumer's
//! Parseltongue spec (`events.pt`) to Rust.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Tguest.ld");
    let options = parseltongue::Options { hallows_rt: true, ..Default::default() };
    parseltongue::build::compile_with("events.pt", &options);
}
