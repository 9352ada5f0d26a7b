//! The x86_64 side of image composition. The image itself is the same flat
//! file as on aarch64 (hypervisor, then the payload), but it starts with a
//! multiboot1 header whose a.out-kludge address fields make QEMU's
//! `-kernel` (and our Bochs boot sector) load it as-is at its link address;
//! there is no arm64 Image header to patch. This module checks that header.

use anyhow::{bail, Result};

const MULTIBOOT_MAGIC: u32 = 0x1BAD_B002;
/// Flag bit 16: the header's address fields are valid.
const AOUT_KLUDGE: u32 = 1 << 16;

fn word(bytes: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().expect("four bytes"))
}

/// Checks the multiboot header at the start of the hypervisor image loaded
/// at `load`: magic, checksum, and the address fields QEMU will trust.
pub fn check_header(image: &[u8], load: u64) -> Result<()> {
    if image.len() < 32 {
        bail!("the x86_64 hypervisor image is too short for a multiboot header");
    }
    let (magic, flags, sum) = (word(image, 0), word(image, 1), word(image, 2));
    if magic != MULTIBOOT_MAGIC || magic.wrapping_add(flags).wrapping_add(sum) != 0 {
        bail!("the x86_64 hypervisor image does not start with a valid multiboot header");
    }
    if flags & AOUT_KLUDGE == 0 {
        bail!("the multiboot header does not give load addresses");
    }
    let (header_addr, load_addr, load_end, bss_end) = (word(image, 3), word(image, 4), word(image, 5), word(image, 6));
    if header_addr as u64 != load || load_addr as u64 != load || load_end != 0 || bss_end != 0 {
        bail!(
            "the multiboot header's addresses ({header_addr:#x}, {load_addr:#x}, {load_end:#x}, {bss_end:#x}) \
             do not describe a flat image loaded whole at {load:#x}"
        );
    }
    Ok(())
}

/// QEMU's exit status under isa-debug-exit is `(value << 1) | 1` and the
/// hypervisor writes `0x10 + status`: 33 is status 0, 35 status 1, and so
/// on. Anything else (a QEMU error, a reset with `-no-reboot`, a triple
/// fault in the hypervisor) is not a status the system reported: 4.
pub fn system_status(qemu_status: i32) -> i32 {
    if qemu_status >= 33 && qemu_status % 2 == 1 {
        (qemu_status - 1) / 2 - 0x10
    } else {
        NO_STATUS
    }
}

/// The machine stopped without reporting a status.
pub const NO_STATUS: i32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_exit_codes_map_back_to_system_status() {
        assert_eq!(system_status(33), 0);
        assert_eq!(system_status(35), 1);
        assert_eq!(system_status(37), 2);
        assert_eq!(system_status(39), 3);
        // A reset (QEMU exits 0 with -no-reboot) is never success.
        assert_eq!(system_status(0), NO_STATUS);
        assert_eq!(system_status(1), NO_STATUS);
        assert_eq!(system_status(34), NO_STATUS);
    }

    #[test]
    fn header_check_accepts_ours_and_refuses_others() {
        let mut h = vec![0u8; 64];
        let flags = 0x0001_0002u32;
        for (i, w) in [MULTIBOOT_MAGIC, flags, 0u32.wrapping_sub(MULTIBOOT_MAGIC + flags), 0x10_0000, 0x10_0000, 0, 0, 0x10_0020]
            .iter()
            .enumerate()
        {
            h[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        check_header(&h, 0x10_0000).unwrap();
        assert!(check_header(&h, 0x20_0000).is_err());
        h[8] ^= 1;
        assert!(check_header(&h, 0x10_0000).is_err());
    }
}
