//! System-register values the hypervisor programs, with the reason for each
//! bit. Kept together so that what a partition may and may not do is
//! reviewable in one place.

/// HCR_EL2 while a partition runs.
pub mod hcr {
    pub const VM: u64 = 1 << 0; // stage-2 translation on
    pub const SWIO: u64 = 1 << 1; // set/way invalidate is clean+invalidate
    pub const FMO: u64 = 1 << 3; // FIQs and
    pub const IMO: u64 = 1 << 4; // IRQs are the hypervisor's: EL1 sees the virtual
    pub const AMO: u64 = 1 << 5; // GIC interface, SGI generation traps to EL2
    pub const FB: u64 = 1 << 9; // broadcast TLB/I-cache maintenance within the VMID
    pub const BSU_IS: u64 = 1 << 10; // barriers upgraded to inner shareable
    pub const TWE: u64 = 0; // WFE/WFI are not trapped: cores are dedicated
    pub const TSC: u64 = 1 << 19; // SMC traps: PSCI is emulated and filtered
    pub const TIDCP: u64 = 1 << 20; // implementation-defined registers trap
    pub const TACR: u64 = 1 << 21; // auxiliary control registers trap
    pub const TSW: u64 = 1 << 22; // set/way cache maintenance traps (would reach other partitions' lines)
    pub const RW: u64 = 1 << 31; // EL1 is AArch64

    pub const GUEST: u64 = VM | SWIO | FMO | IMO | AMO | FB | BSU_IS | TWE | TSC | TIDCP | TACR | TSW | RW;

    pub const APK: u64 = 1 << 40; // pointer-authentication key registers do not trap
    pub const API: u64 = 1 << 41; // pointer-authentication instructions do not trap
    /// A Linux partition uses pointer authentication (its keys are EL1
    /// registers of a core that is the partition's alone).
    pub const LINUX: u64 = GUEST | APK | API;
}

/// VTCR_EL2: 4 KiB granule, 39-bit IPA starting at level 1 (three levels,
/// matching `hallows_paging::Stage2`), write-back inner-shareable walks,
/// 40-bit PA.
#[allow(clippy::identity_op)] // TG0 = 0b00 is spelled out with the other fields
pub const VTCR: u64 = (1 << 31) // RES1
    | (0b010 << 16) // PS: 40 bits
    | (0b00 << 14) // TG0: 4 KiB
    | (0b11 << 12) // SH0: inner shareable
    | (0b01 << 10) // ORGN0: write-back
    | (0b01 << 8) // IRGN0: write-back
    | (0b01 << 6) // SL0: start at level 1
    | 25; // T0SZ: 64 - 39

/// TCR_EL2 (non-VHE): same geometry for the hypervisor's own map.
pub const TCR: u64 = (1 << 31) | (1 << 23) // RES1
    | (0b010 << 16) // PS: 40 bits
    | (0b11 << 12) | (0b01 << 10) | (0b01 << 8)
    | 25;

/// SCTLR_EL2: MMU, data and instruction caches, stack alignment checks,
/// writable-implies-execute-never. RES1 bits included.
pub const SCTLR_EL2: u64 = 0x30C5_0830 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12) | (1 << 19);

/// SCTLR_EL1 a vCPU starts with: architectural RES1 bits, MMU and caches off.
pub const SCTLR_EL1_RESET: u64 = 0x30D0_0800;

/// SPSR_EL2 for entering a vCPU: EL1h, all of DAIF masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// CPTR_EL2: what is RES1 on a core without SVE and SME; FP/SIMD is not
/// trapped (each core runs one partition, so its FP state is never
/// shared). On a core with SVE or SME, bits 8 (TZ) and 12 (TSM) trap them:
/// a RustHallows guest uses neither; a Linux partition gets them
/// (`boot::allow_sve_sme`).
pub const CPTR: u64 = 0x33ff;
/// CPTR_EL2.TZ (bit 8): SVE traps; CPTR_EL2.TSM (bit 12): SME traps. A
/// Linux partition gets both cleared where the core has the feature.
pub const CPTR_TZ: u64 = 1 << 8;
pub const CPTR_TSM: u64 = 1 << 12;

/// CNTHCTL_EL2: EL1 may read the physical counter and use its core's
/// physical timer: both are the core's own, and the core is the partition's.
pub const CNTHCTL: u64 = 0b11;

/// MDCR_EL2: the PMU and debug registers trap to EL2 (the hypervisor uses
/// the PMU to measure itself, and debug state could reach other cores).
pub const MDCR: u64 = (1 << 5) // TPMCR
    | (1 << 6) // TPM
    | (1 << 9) // TDA
    | (1 << 10) // TDOSA
    | (1 << 11); // TDRA
