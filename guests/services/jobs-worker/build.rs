//! Links this guest with the runtime's `guest.ld` and compiles its
//! Parseltongue spec (`worker.pt`) to Rust.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Tguest.ld");
    let options = parseltongue::Options {
        hallows_rt: true,
        ..Default::default()
    };
    parseltongue::build::compile_with("worker.pt", &options);
}
