//! The I/O APICs: how an assigned device's interrupt reaches the partition
//! that owns it, and no other.
//!
//! The hypervisor owns every I/O APIC (no partition maps their pages: the
//! board check keeps device MMIO out of 0xFEC00000..0xFECFFFFF, and boot
//! refuses a device region over an I/O APIC the MADT names). At boot every
//! pin of every I/O APIC is masked; then each device interrupt a partition
//! owns (a GSI, from the board) gets a physical vector of the hypervisor's
//! own ([`DEVICE_VECTOR_FIRST`]` + k`) and its redirection entry is
//! written: that vector, fixed delivery, physical destination = the local
//! APIC of the owning partition's boot core, edge-triggered, active high,
//! **masked**. The entry is unmasked when the partition's boot vCPU is
//! entered (`unmask_partition`) and masked again when the partition ends
//! or restarts (`mask`, from `quiesce_device`). Pins nobody owns stay
//! masked for the whole run.
//!
//! Edge-triggered: a level-triggered entry would be delivered again as soon
//! as the hypervisor ends the interrupt at its local APIC (the guest has
//! not acknowledged the device yet: there is no virtual APIC whose EOI the
//! hypervisor could wait for), a storm until the guest runs. A virtio-mmio
//! transport raises its line while its InterruptStatus is non-zero and the
//! guest's handler acknowledges it (InterruptACK), which lowers the line:
//! each new completion is a new edge. QEMU records an edge that arrives
//! while the entry is masked (its IRR) and delivers it at the unmask.
//!
//! In the hypervisor's IDT the physical vector becomes the owning
//! partition's virtual vector `DEVICE_VECTOR_BASE + i` (`i` its entry in
//! the partition's device directory), queued for the boot vCPU
//! ([`take`]).

use core::sync::atomic::{AtomicU32, Ordering};

use hallows_table::{SystemTable, MAX_CORES};
use spin::Mutex;

use super::firmware::{Ioapic, MAX_IOAPICS};

/// The first physical vector given to device interrupts (priority class 8,
/// below the doorbell IPI's 0xF0).
pub const DEVICE_VECTOR_FIRST: u8 = 0x80;
/// Device interrupts the whole system may own: vectors 0x80..0xBF.
pub const DEVICE_VECTORS: usize = 64;

/// Register select and window, relative to an I/O APIC's base.
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
/// The version register: bits 16..23 hold the highest redirection entry.
const IOAPICVER: u32 = 0x01;
/// Redirection entry `n`: low word at `0x10 + 2n`, high at `0x11 + 2n`.
const REDTBL: u32 = 0x10;
const MASKED: u32 = 1 << 16;

/// The I/O APICs of the MADT, with their pin counts (read from them).
#[derive(Clone, Copy, Debug)]
struct Chip {
    base: u64,
    gsi_base: u32,
    pins: u32,
}

struct Chips {
    chips: [Option<Chip>; MAX_IOAPICS],
}

/// Every access (select, then window) happens under this lock: cores that
/// end partitions mask pins while boot cores unmask theirs.
static CHIPS: Mutex<Chips> = Mutex::new(Chips { chips: [None; MAX_IOAPICS] });

/// Per physical device vector (`DEVICE_VECTOR_FIRST + k`): the core it is
/// routed to (bits 8..15) and the partition's virtual vector (bits 0..7),
/// with bit 31 set once routed. Written by core 0 at boot, before any
/// entry is unmasked.
static ROUTES: [AtomicU32; DEVICE_VECTORS] = [const { AtomicU32::new(0) }; DEVICE_VECTORS];
const ROUTED: u32 = 1 << 31;

impl Chip {
    fn read(&self, reg: u32) -> u32 {
        // SAFETY: an I/O APIC's register window, from the MADT (below 4 GiB,
        // identity-mapped uncacheable by the boot tables); no partition
        // maps it (see the module documentation), and the caller holds
        // `CHIPS`, so no other core moves the select register in between.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, reg);
            core::ptr::read_volatile((self.base + IOWIN) as *const u32)
        }
    }

    fn write(&self, reg: u32, v: u32) {
        // SAFETY: as `read`.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, reg);
            core::ptr::write_volatile((self.base + IOWIN) as *mut u32, v);
        }
    }

    fn pin(&self, gsi: u32) -> Option<u32> {
        gsi.checked_sub(self.gsi_base).filter(|p| *p < self.pins)
    }
}

impl Chips {
    /// The I/O APIC and pin of `gsi`.
    fn find(&self, gsi: u32) -> Option<(Chip, u32)> {
        self.chips.iter().flatten().find_map(|c| c.pin(gsi).map(|p| (*c, p)))
    }
}

/// Why a device interrupt cannot be routed (a boot error).
#[derive(Clone, Copy, Debug)]
pub enum RouteError {
    /// No I/O APIC of the MADT has this GSI.
    NoIoapic(u32),
    /// More device interrupts than [`DEVICE_VECTORS`].
    TooMany(u32),
    /// The owner's boot core has a local APIC id above 255, which a
    /// redirection entry's 8-bit destination cannot name (that needs
    /// interrupt remapping, which the hypervisor does not set up).
    ApicId(u64),
}

/// Core 0 at boot: records the I/O APICs the firmware describes and masks
/// every pin of each (whatever the firmware left enabled, nothing reaches
/// any core until a partition's boot vCPU starts).
pub fn init(ioapics: &[Ioapic]) {
    let mut chips = CHIPS.lock();
    for (slot, io) in chips.chips.iter_mut().zip(ioapics) {
        let mut chip = Chip { base: io.base, gsi_base: io.gsi_base, pins: 0 };
        chip.pins = ((chip.read(IOAPICVER) >> 16) & 0xff) + 1;
        for pin in 0..chip.pins {
            chip.write(REDTBL + 2 * pin, MASKED);
            chip.write(REDTBL + 2 * pin + 1, 0);
        }
        *slot = Some(chip);
    }
}

/// Core 0 at boot, after [`init`]: gives every device interrupt of every
/// partition a physical vector and writes its redirection entry, masked,
/// aimed at the owning partition's boot core (`validate` has checked that
/// no GSI is owned twice).
pub fn route_all(table: &SystemTable) -> Result<(), RouteError> {
    let chips = CHIPS.lock();
    let mut k = 0usize;
    for p in table.partitions() {
        let boot_core = p.vcpu_core[0] as usize;
        let apic = table.board.core_hwid[boot_core.min(MAX_CORES - 1)];
        for (i, d) in p.devices[..(p.device_count as usize).min(p.devices.len())].iter().enumerate() {
            if d.irq == 0 {
                continue;
            }
            let (chip, pin) = chips.find(d.irq).ok_or(RouteError::NoIoapic(d.irq))?;
            if apic > 0xff {
                return Err(RouteError::ApicId(apic));
            }
            let route = ROUTES.get(k).ok_or(RouteError::TooMany(d.irq))?;
            let vector = DEVICE_VECTOR_FIRST + k as u8;
            let virtual_vector = hallows_abi::DEVICE_VECTOR_BASE + i as u8;
            route.store(ROUTED | ((boot_core as u32) << 8) | virtual_vector as u32, Ordering::Release);
            // Destination (physical: the APIC id) in bits 56..63; fixed
            // delivery (000), physical mode, active high, edge (all 0).
            chip.write(REDTBL + 2 * pin + 1, (apic as u32) << 24);
            chip.write(REDTBL + 2 * pin, MASKED | vector as u32);
            k += 1;
        }
    }
    Ok(())
}

/// The physical vector of the console's receive interrupt (the operator's
/// commands, `control.rs`), outside the device vectors.
pub const CONSOLE_VECTOR: u8 = 0xC0;

/// Core 0 at boot: routes the console's GSI to the core with local APIC
/// id `apic` (the control core) as [`CONSOLE_VECTOR`], unmasked. `false`
/// if no I/O APIC has it or the id does not fit (the console then takes
/// no commands).
pub fn route_console(gsi: u32, apic: u64) -> bool {
    let chips = CHIPS.lock();
    let Some((chip, pin)) = chips.find(gsi) else { return false };
    if apic > 0xff {
        return false;
    }
    chip.write(REDTBL + 2 * pin + 1, (apic as u32) << 24);
    chip.write(REDTBL + 2 * pin, CONSOLE_VECTOR as u32);
    true
}

/// Masks (`true`) or unmasks device interrupt `gsi`. A GSI on no I/O APIC
/// is left alone (boot refused such a device).
fn set_masked(gsi: u32, masked: bool) {
    let chips = CHIPS.lock();
    if let Some((chip, pin)) = chips.find(gsi) {
        let low = chip.read(REDTBL + 2 * pin);
        chip.write(REDTBL + 2 * pin, if masked { low | MASKED } else { low & !MASKED });
    }
}

/// The partition owning device interrupt `gsi` has ended or is restarting:
/// its pin is masked until the partition's boot vCPU is entered again.
pub fn mask(gsi: u32) {
    set_masked(gsi, true);
}

/// Partition `p`'s boot vCPU is about to be entered: its device interrupts
/// may now reach its boot core.
pub fn unmask_partition(p: &hallows_table::PartitionDesc) {
    for d in &p.devices[..(p.device_count as usize).min(p.devices.len())] {
        if d.irq != 0 {
            set_masked(d.irq, false);
        }
    }
}

/// For the IDT: if `vector` is a device vector routed to `core`, the
/// partition's virtual vector to queue. `None` for any other vector, and
/// for a device vector that arrives on another core (never, with physical
/// destinations; such an interrupt is dropped rather than given to
/// whatever partition that core runs).
pub fn take(vector: u64, core: usize) -> Option<u8> {
    let k = vector.checked_sub(DEVICE_VECTOR_FIRST as u64)? as usize;
    let r = ROUTES.get(k)?.load(Ordering::Acquire);
    (r & ROUTED != 0 && ((r >> 8) & 0xff) as usize == core).then_some(r as u8)
}

/// Whether `vector` is one of the device vectors.
pub fn is_device_vector(vector: u64) -> bool {
    (DEVICE_VECTOR_FIRST as u64..DEVICE_VECTOR_FIRST as u64 + DEVICE_VECTORS as u64).contains(&vector)
}

/// Whether an I/O APIC's registers overlap `r` (a partition's device region).
pub fn overlaps(ioapics: &[Ioapic], r: &hallows_table::MemRange) -> bool {
    ioapics.iter().any(|io| r.overlaps(&hallows_table::MemRange { base: io.base, size: 4096 }))
}
