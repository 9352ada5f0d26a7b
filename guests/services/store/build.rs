//! Links this guest with the runtime's `guest.ld` (put on the search path
//! by `hallows-rt`'s build script) and compiles its Parseltongue spec
//! (`store.pt`: the channel front) to Rust.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Tguest.ld");
    let options = parseltongue::Options { hallows_rt: true, ..Default::default() };
    parseltongue::build::compile_with("store.pt", &options);
}
