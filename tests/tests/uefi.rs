//! UEFI boot (docs/deploy.md): the same systems boot from an EFI system
//! partition through Debian's firmware, AAVMF (arm64, the loader and the
//! hypervisor at EL2) and OVMF (x86_64, AMD SVM under TCG), to the same
//! partition lines and exit status as the direct boot (QEMU -kernel); the
//! hypervisor checks the manifest against what the firmware reports and
//! refuses, with a message naming the difference, a machine that lacks it.
//!
//! Every boot runs under the harness's hard timeout (`BOOT_TIMEOUT`).
//! Measured here (TCG, a shared 2-core host): AAVMF reaches the loader in
//! about 5 s, OVMF in about 20 s.

use hallows_tests::*;

/// One test at a time: the tests compose the same manifests' images (the
/// demo's, directly and for UEFI) under target/hallows, and a test that
/// rewrites an image while another's firmware loads it hands that one a
/// truncated file ("image 0 of 0 bytes", seen once in CI).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Each partition's lines, in order, as the direct boot printed them and
/// as the UEFI boot did; and the two exit statuses.
fn assert_same_as_direct(direct: &Boot, uefi: &Boot, partitions: &[&str]) {
    assert!(direct.status.is_some(), "the direct boot timed out:\n{}", direct.output);
    assert_eq!(uefi.status, direct.status, "exit status (direct {:?}); UEFI output:\n{}", direct.status, uefi.output);
    for p in partitions {
        let (d, u) = (direct.lines_of(p), uefi.lines_of(p));
        assert!(!d.is_empty(), "partition {p} printed nothing in the direct boot:\n{}", direct.output);
        assert_eq!(u, d, "partition {p}'s lines differ; UEFI output:\n{}\ndirect output:\n{}", uefi.output, direct.output);
        assert_eq!(uefi.summary(p), direct.summary(p));
    }
}

#[test]
fn aarch64_demo_boots_under_aavmf_at_el2_as_it_does_directly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let manifest = root().join("vmm-config/examples/demo.toml");
    let direct = boot_manifest(&manifest);
    let uefi = boot_manifest_uefi(&manifest, &[]);
    assert!(uefi.output.contains("hallows-uefi: EL2, image "), "{}", uefi.output);
    assert!(uefi.output.contains("[hallows] booted by the UEFI loader (at EL2): "), "{}", uefi.output);
    assert!(uefi.output.contains(", 4 core(s) in the device tree"), "{}", uefi.output);
    assert_same_as_direct(&direct, &uefi, &["frontend", "backend", "database"]);
    direct.assert_status(0);
}

#[test]
fn aarch64_demo_boots_under_aavmf_with_acpi_only_as_it_does_directly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // acpi=on: AAVMF withholds the device tree; the hypervisor takes the
    // cores from the MADT (and checks the GIC, timer and console against
    // the board) from the copies the loader made.
    let manifest = root().join("vmm-config/examples/demo.toml");
    let direct = boot_manifest(&manifest);
    let uefi = boot_manifest_uefi(&manifest, &["-M".into(), "acpi=on".into()]);
    assert!(uefi.output.contains("device tree none, ACPI RSDP 0x"), "{}", uefi.output);
    assert!(uefi.output.contains("(4 tables copied)"), "{}", uefi.output);
    assert!(uefi.output.contains("[hallows] booted by the UEFI loader (at EL2): "), "{}", uefi.output);
    assert!(uefi.output.contains(", 4 core(s) in the ACPI MADT"), "{}", uefi.output);
    assert_same_as_direct(&direct, &uefi, &["frontend", "backend", "database"]);
}

#[test]
fn aarch64_single_partition_boots_under_aavmf_as_it_does_directly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let direct = boot_system("boot-one");
    let uefi = boot_system_uefi("boot-one", &[]);
    assert_same_as_direct(&direct, &uefi, &["solo"]);
    direct.assert_status(0);
}

#[test]
fn x86_demo_boots_under_ovmf_as_it_does_directly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let direct = boot_system("uefi-demo-x86_64");
    let uefi = boot_system_uefi("uefi-demo-x86_64", &[]);
    // The firmware's ACPI tables came through the EFI configuration table.
    assert!(uefi.output.contains("hallows-uefi: long mode, image "), "{}", uefi.output);
    assert!(uefi.output.contains("ACPI RSDP 0x"), "{}", uefi.output);
    assert!(uefi.output.contains("(x86_64, AMD SVM)"), "{}", uefi.output);
    assert_same_as_direct(&direct, &uefi, &["frontend", "backend", "database"]);
    direct.assert_status(0);
}

#[test]
fn aarch64_manifest_with_more_cores_than_the_firmware_reports_is_refused() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let b = boot_system_uefi("uefi-core3", &["-smp".into(), "2".into()]);
    b.assert_status(2);
    assert!(
        b.output.contains(
            "[hallows] boot failed: the manifest asks for core 3 (MPIDR 0x3); the firmware reports 2 cores (device tree)"
        ),
        "{}",
        b.output
    );
    assert!(b.lines_of("solo").is_empty(), "{}", b.output);
    // The same from the ACPI MADT (no device tree).
    let b = boot_system_uefi("uefi-core3", &["-smp".into(), "2".into(), "-M".into(), "acpi=on".into()]);
    b.assert_status(2);
    assert!(
        b.output.contains("[hallows] boot failed: the manifest asks for core 3 (MPIDR 0x3); the firmware reports 2 cores (ACPI MADT)"),
        "{}",
        b.output
    );
}

#[test]
fn x86_manifest_with_more_cores_than_the_firmware_reports_is_refused() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let b = boot_system_uefi("uefi-x86-core3", &["-smp".into(), "2".into()]);
    b.assert_status(2);
    assert!(
        b.output.contains(
            "[hallows] boot failed: the manifest asks for core 3 (local APIC id 0x3); the firmware reports 2 cores (ACPI MADT)"
        ),
        "{}",
        b.output
    );
    assert!(b.lines_of("solo").is_empty(), "{}", b.output);
}

#[test]
fn aarch64_loader_entered_at_el1_stops_with_a_clear_message() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Without virtualization=on AAVMF runs at EL1: the loader refuses
    // before touching anything and powers the machine off (no status line:
    // the hypervisor never ran).
    let b = boot_system_uefi("boot-one", &["-M".into(), "virtualization=off".into()]);
    assert!(b.output.contains("hallows-uefi: boot failed: the firmware started this loader at EL1; the hypervisor needs EL2"), "{}", b.output);
    assert!(!b.output.contains("[hallows] RustHallows hypervisor"), "{}", b.output);
    b.assert_status(4);
}
