//! `hallows run --gdb`: gdb (batch mode) on one partition of a system in
//! which two partitions run the same guest at the same addresses stops in
//! that partition's `main`, on its own core, at the right source line.

use hallows::gdb;
use hallows_tests::{guest_dir, root, system_image};

/// The line of the first statement of `fn main` in `file`.
fn first_line_of_main(file: &str) -> usize {
    let src = std::fs::read_to_string(root().join(file)).expect("reading the guest's source");
    let at = src.lines().position(|l| l.starts_with("fn main(")).expect("the guest has `fn main`");
    at + 2
}

fn stops_in_main_on_the_partitions_core(system: &str) {
    let (sys, image) = system_image(system);
    let batch = root().join("tests/gdb/stop-in-main.gdb");
    let scratch = root().join("target/hallows/tests");
    let s = gdb::session(&sys, &image, guest_dir(sys.board.arch), "second", None, Some(&batch), &scratch, true)
        .expect("running the gdb session");
    let out = &s.gdb_output;
    assert!(s.gdb.success(), "gdb failed:\n{out}\nmachine:\n{}", s.machine.output);
    // `second` runs on core 1: gdb thread 2, the only one its breakpoint is for.
    assert!(out.contains("HALLOWS-GDB thread 2\n"), "not stopped on the partition's core:\n{out}");
    assert!(out.contains("Thread 2 hit Breakpoint 1, hello::main ("), "{out}");
    let file = "guests/services/hello/src/main.rs";
    let line = first_line_of_main(file);
    assert!(out.contains(&format!("Line {line} of \"{file}\"")), "not stopped at {file}:{line}:\n{out}");
}

#[test]
fn gdb_stops_in_the_chosen_partitions_main_on_its_core_aarch64() {
    stops_in_main_on_the_partitions_core("gdb-two");
}

#[test]
fn gdb_stops_in_the_chosen_partitions_main_on_its_core_x86_64() {
    stops_in_main_on_the_partitions_core("x86-gdb-two");
}
