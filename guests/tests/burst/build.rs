//! Links this guest with the runtime's `guest.ld` (put on the search path
//! by `hallows-rt`'s build script).
fn main() {
    println!("cargo:rustc-link-arg-bins=-Tguest.ld");
}
