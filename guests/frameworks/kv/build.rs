//! Compiles the channel front's message library (`kv.pt`) to Rust: the
//! types both the store and its clients use.
fn main() {
    parseltongue::build::compile("kv.pt");
}
