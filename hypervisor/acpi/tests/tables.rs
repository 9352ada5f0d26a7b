//! The readers on real tables (QEMU virt under AAVMF, see
//! data/qemu-virt-aarch64/README.md) and on corrupted copies of them:
//! every corruption is an error, never a panic or an out-of-bounds read.

use hallows_acpi::*;

fn table(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/qemu-virt-aarch64/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Fixes the checksum byte (offset 9) after an edit.
fn resum(t: &mut [u8]) {
    t[9] = 0;
    let s = t.iter().fold(0u8, |s, &x| s.wrapping_add(x));
    t[9] = s.wrapping_neg();
}

#[test]
fn qemu_virt_tables_read_as_the_machine_is() {
    let r = rsdp(&table("RSDP")).unwrap();
    assert_eq!(r.revision, 2);
    assert_ne!(r.xsdt, 0);
    let xsdt = table("XSDT");
    let x = sdt(&xsdt, b"XSDT").unwrap();
    assert_eq!(xsdt_entries(x).count(), 8);

    let m = arm_madt(&table("APIC")).unwrap();
    assert_eq!(&m.mpidr[..m.cpu_count], &[0, 1, 2, 3]);
    assert_eq!(m.gicd, Some((0x0800_0000, 3)));
    assert_eq!(&m.gicr[..m.gicr_count], &[(0x080a_0000, 0xf6_0000)]);

    // The architected PPIs: EL1 physical 30, virtual 27, EL2 physical 26.
    assert_eq!(gtdt(&table("GTDT")).unwrap(), Gtdt { el1_physical: 30, el1_virtual: 27, el2_physical: 26 });

    let s = spcr(&table("SPCR")).unwrap();
    assert_eq!((s.interface, s.space, s.base, s.gsiv), (3, 0, 0x0900_0000, Some(33)));

    // QEMU's virt: PSCI; through HVC without virtualization=on, SMC with it
    // (this dump: virtualization=on).
    assert_eq!(fadt_arm_psci(&table("FACP")).unwrap(), Some(false));
}

#[test]
fn bad_checksums_lengths_and_signatures_are_refused() {
    for (name, sig) in [("APIC", b"APIC"), ("GTDT", b"GTDT"), ("SPCR", b"SPCR"), ("FACP", b"FACP"), ("XSDT", b"XSDT")] {
        let good = table(name);
        sdt(&good, sig).unwrap();
        // One flipped byte anywhere: the checksum no longer holds.
        for at in [0usize, 10, 35, good.len() - 1] {
            let mut t = good.clone();
            t[at] ^= 0x40;
            assert!(sdt(&t, sig).is_err(), "{name} with byte {at} flipped");
        }
        // Truncated: the length field runs past the bytes.
        assert_eq!(sdt(&good[..good.len() - 1], sig), Err(Error::BadLength), "{name} truncated");
        assert_eq!(sdt(&good[..20], sig), Err(Error::TooShort));
        // A length below the header's, or huge.
        for len in [0u32, 35, u32::MAX] {
            let mut t = good.clone();
            t[4..8].copy_from_slice(&len.to_le_bytes());
            resum(&mut t);
            assert_eq!(sdt(&t, sig), Err(Error::BadLength), "{name} with length {len}");
        }
        assert_eq!(sdt(&good, b"NOPE"), Err(Error::BadSignature));
    }
    let r = table("RSDP");
    for at in [0usize, 8, 19, 20, 35] {
        let mut t = r.clone();
        t[at] ^= 1;
        assert!(rsdp(&t).is_err(), "RSDP with byte {at} flipped");
    }
    assert_eq!(rsdp(&r[..30]), Err(Error::BadLength));
}

/// Offset of the MADT's first GICC structure.
fn first_gicc(madt: &[u8]) -> usize {
    let mut at = 44;
    while madt[at] != 0x0b {
        at += madt[at + 1] as usize;
    }
    at
}

#[test]
fn corrupted_madt_entries_are_refused() {
    let good = table("APIC");
    // The first structure starts at 44: its length byte at 45.
    for len in [0u8, 1, 255] {
        let mut t = good.clone();
        t[45] = len;
        resum(&mut t);
        assert_eq!(arm_madt(&t), Err(Error::BadEntry), "first entry length {len}");
    }
    // The first GICC shortened to 40 bytes, its successor's bytes read as
    // garbage structures: refused, not misread.
    let g = first_gicc(&good);
    let mut t = good.clone();
    t[g + 1] = 40;
    resum(&mut t);
    assert!(arm_madt(&t).is_err());
    // A table cut in the middle of a structure (length and checksum fixed).
    let mut t = good[..100].to_vec();
    t[4..8].copy_from_slice(&100u32.to_le_bytes());
    resum(&mut t);
    assert_eq!(arm_madt(&t), Err(Error::BadEntry));
    // Every truncation and every single-byte change of each structure's
    // bytes, checksum fixed: never a panic.
    for cut in 36..good.len() {
        let mut t = good[..cut].to_vec();
        t[4..8].copy_from_slice(&(cut as u32).to_le_bytes());
        resum(&mut t);
        let _ = arm_madt(&t);
    }
    for at in 36..good.len() {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut t = good.clone();
            t[at] = v;
            resum(&mut t);
            let _ = arm_madt(&t);
        }
    }
    // A disabled core is not reported: clear the first GICC's enabled bit.
    let mut t = good.clone();
    t[g + 12] &= !1;
    resum(&mut t);
    let m = arm_madt(&t).unwrap();
    assert_eq!(&m.mpidr[..m.cpu_count], &[1, 2, 3]);
}

#[test]
fn short_fixed_tables_are_refused() {
    for (name, sig) in [("GTDT", *b"GTDT"), ("SPCR", *b"SPCR"), ("FACP", *b"FACP")] {
        // A well-formed table too short for the fields read.
        let mut t = table(name)[..40].to_vec();
        t[4..8].copy_from_slice(&40u32.to_le_bytes());
        resum(&mut t);
        sdt(&t, &sig).unwrap();
        let err = match name {
            "GTDT" => gtdt(&t).err(),
            "SPCR" => spcr(&t).err(),
            _ => fadt_arm_psci(&t).err(),
        };
        assert_eq!(err, Some(Error::TooShort), "{name}");
    }
}
