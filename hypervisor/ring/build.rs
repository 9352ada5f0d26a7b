//! Declares the `loom` cfg so `--cfg loom` model-checking builds are not
//! flagged as unexpected (the workspace lint table cannot be extended here).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
