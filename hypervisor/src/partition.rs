//! Partition life cycle: loading, running, the fault policy, and the end
//! of the system.
//!
//! A partition ends exactly once, by exiting or by being stopped. A fault
//! (a stage-2 abort, a forbidden PSCI call, a guest panic, a trap we do not
//! emulate) never reaches beyond the partition that caused it: the policy
//! in its manifest entry decides between stopping it, restarting it, and
//! halting the whole system. When the last partition has ended, the core
//! that ended it prints the summary and stops the machine.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use hallows_abi::{role, BootInfo, ChannelInfo, DeviceInfo, BOOT_MAGIC};
use zerocopy::{FromZeros, IntoBytes};
use hallows_table::{fault_policy, MAX_CORES, MAX_PARTITIONS};
use crate::arch::Mutex;

use crate::system::{self, System};
use crate::{arch, console, hypercall};

/// A trap, decoded by the architecture code. Each architecture produces
/// only some of the variants.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)]
pub enum Trap {
    /// `hvc` or a trapped `smc`: a hypercall or a PSCI call.
    Call,
    /// An access outside the partition's stage-2 map.
    Stage2Fault { ipa: u64, write: bool, instr: bool, pc: u64 },
    /// Anything the hypervisor does not emulate.
    Unexpected { esr: u64, pc: u64 },
    /// A violation the architecture code has already classified (x86: a
    /// denied I/O port or MSR, a control-register write, a triple fault).
    Stop(StopReason),
}

/// Why a partition was stopped. Some reasons exist on one architecture only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)]
pub enum StopReason {
    Stage2Fault { ipa: u64, write: bool, instr: bool, pc: u64 },
    SystemOff,
    SystemReset,
    /// A Linux partition reset itself (PSCI SYSTEM_RESET: `reboot`, or a
    /// panic with `panic=-1`).
    Reset,
    CpuOnNotOwned { target: u64 },
    Panic,
    Exception { pc: u64, esr: u64 },
    /// The guest runtime caught a vCPU stack overflow (an access to the
    /// guard page below the stack of the vCPU `vcpu`, as the hypervisor
    /// knows it: the one that reported).
    StackOverflow { vcpu: u32, address: u64, pc: u64 },
    Unexpected { esr: u64, pc: u64 },
    /// x86: an `in`/`out` to a port the partition was not assigned.
    IoPort { port: u16, write: bool, pc: u64 },
    /// x86: `rdmsr`/`wrmsr` of an MSR outside the allow-list.
    Msr { msr: u32, write: bool, pc: u64 },
    /// x86: a write to CR0 or CR4 (the partition runs in the mode it was entered in).
    ControlRegister { cr: u8, pc: u64 },
    /// x86: the guest triple-faulted (a shutdown).
    TripleFault { pc: u64 },
    /// x86: `hlt` with interrupts off: nothing can ever wake the vCPU.
    Halted { pc: u64 },
    /// x86: `hlt` with interrupts on in a partition that nothing can
    /// interrupt (no doorbell rings it).
    HaltedNoSource { pc: u64 },
    /// x86: the instruction behind a VM exit could not be read or decoded
    /// (without NRIP save its length must be).
    Undecodable { pc: u64 },
    /// x86: a VM exit the hypervisor does not emulate (exit code, qualifier).
    UnexpectedExit { code: u64, info: u64, pc: u64 },
    /// The partition did not pet its watchdog within its period (`ms`).
    Watchdog { ms: u64 },
    /// The operator stopped or restarted it from the host (`hallows run`).
    Operator,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StopReason::Stage2Fault { ipa, write, instr, pc } => {
                let what = if instr { "instruction fetch" } else if write { "write" } else { "read" };
                write!(f, "stage-2 fault: {what} at {ipa:#x}, outside its memory (pc {pc:#x})")
            }
            StopReason::SystemOff => write!(f, "PSCI SYSTEM_OFF denied: a partition may not power off the machine"),
            StopReason::SystemReset => write!(f, "PSCI SYSTEM_RESET denied: a partition may not reset the machine"),
            StopReason::Reset => write!(f, "it reset itself (PSCI SYSTEM_RESET)"),
            StopReason::CpuOnNotOwned { target } => {
                write!(f, "PSCI CPU_ON denied: core {target:#x} does not belong to the partition")
            }
            StopReason::Panic => write!(f, "the guest panicked"),
            StopReason::Exception { pc, esr } => {
                write!(f, "unhandled guest exception ({} {esr:#x}, pc {pc:#x})", arch::GUEST_FAULT_DETAIL)
            }
            StopReason::StackOverflow { vcpu, address, pc } => {
                write!(f, "stack overflow (vCPU {vcpu}, address {address:#x}, pc {pc:#x})")
            }
            StopReason::Unexpected { esr, pc } => write!(f, "unexpected trap (ESR_EL2 {esr:#x}, pc {pc:#x})"),
            StopReason::IoPort { port, write, pc } => {
                let what = if write { "write to" } else { "read from" };
                write!(f, "I/O port denied: {what} port {port:#x} (pc {pc:#x})")
            }
            StopReason::Msr { msr, write, pc } => {
                let what = if write { "wrmsr" } else { "rdmsr" };
                write!(f, "MSR denied: {what} {msr:#x} (pc {pc:#x})")
            }
            StopReason::ControlRegister { cr, pc } => write!(f, "control-register write denied: CR{cr} (pc {pc:#x})"),
            StopReason::TripleFault { pc } => write!(f, "triple fault (pc {pc:#x})"),
            StopReason::Halted { pc } => write!(f, "hlt with interrupts disabled: nothing can wake it (pc {pc:#x})"),
            StopReason::HaltedNoSource { pc } => {
                write!(f, "hlt with interrupts on and no interrupt source: nothing can wake it (pc {pc:#x})")
            }
            StopReason::Undecodable { pc } => write!(f, "intercepted instruction unreadable or not decodable (pc {pc:#x})"),
            StopReason::UnexpectedExit { code, info, pc } => {
                write!(f, "unexpected VM exit {code:#x} (qualifier {info:#x}, pc {pc:#x})")
            }
            StopReason::Watchdog { ms } => write!(f, "watchdog expired: not petted for {ms} ms"),
            StopReason::Operator => write!(f, "by the operator"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Exited(u64),
    Stopped(StopReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vcpu {
    Off,
    Pending { entry: u64, context: u64 },
    On,
}

#[derive(Debug)]
pub struct PartState {
    state: State,
    restarts: u32,
    /// Faults of any kind (watchdog misses included), over all runs.
    faults: u32,
    /// Watchdog misses, over all runs.
    misses: u32,
    /// The counter value (`arch::now`) when the current run was loaded.
    started: u64,
    pub vcpus: [Vcpu; MAX_CORES],
}

static STATES: [Mutex<PartState>; MAX_PARTITIONS] = [const {
    Mutex::new(PartState { state: State::Running, restarts: 0, faults: 0, misses: 0, started: 0, vcpus: [Vcpu::Off; MAX_CORES] })
}; MAX_PARTITIONS];

/// A partition's watchdog (manifest `watchdog`): the counter value
/// (`arch::now`) by which it must be petted, and the last heartbeat word
/// seen. Written by the pet hypercall and the checking cores; the
/// deadline is 0 when the partition has no watchdog or is not running.
struct Watch {
    deadline: AtomicU64,
    beat: AtomicU64,
    /// Looks taken (deadline reached), over all runs: the watchdog's cost
    /// is counted per look.
    looks: AtomicU64,
    /// Loaded, and its boot vCPU not yet entered: the first period starts then.
    fresh: AtomicBool,
    /// The period in counter ticks (computed once per load: no division
    /// on the checking path).
    period: AtomicU64,
}

static WATCH: [Watch; MAX_PARTITIONS] = [const {
    Watch { deadline: AtomicU64::new(0), beat: AtomicU64::new(0), looks: AtomicU64::new(0), fresh: AtomicBool::new(false), period: AtomicU64::new(0) }
}; MAX_PARTITIONS];

/// The boot vCPU of partition `index` is about to be entered after a
/// load: its run's clock (uptime) and its watchdog's first period start.
fn start_run(sys: &System, index: usize, st: &mut PartState) {
    let now = arch::now();
    st.started = now;
    if WATCH[index].fresh.swap(false, Ordering::AcqRel) {
        let period = watch_period(&sys.table.partitions()[index]);
        WATCH[index].period.store(period, Ordering::Relaxed);
        WATCH[index].deadline.store(now.saturating_add(period), Ordering::Release);
    }
}

/// Partition `p`'s watchdog period in counter ticks (0: none).
fn watch_period(p: &hallows_table::PartitionDesc) -> u64 {
    if p.watchdog_ns == 0 {
        return 0;
    }
    let ticks = p.watchdog_ns as u128 * arch::counter_hz() as u128 / 1_000_000_000;
    (ticks.min(u64::MAX as u128) as u64).max(1)
}

/// When the core `core`, about to enter its vCPU, must next look at its
/// partition's watchdog (a counter value; 0: never). Each core running a
/// vCPU of a partition with a watchdog arms its hypervisor timer for it
/// (aarch64: the EL2 physical timer; x86: the local APIC timer, and the
/// VMX-preemption timer under VMX), so a guest that never traps is still
/// interrupted when the deadline comes.
pub fn watchdog_next(core: usize) -> u64 {
    let sys = system::get();
    let Some(role) = sys.core_map.get(core).copied().flatten() else { return 0 };
    WATCH[role.partition].deadline.load(Ordering::Acquire)
}

/// `WATCHDOG_PET` from partition `index`: its deadline becomes one period
/// from now. `false` when it has no watchdog.
pub fn watchdog_pet(index: usize) -> bool {
    let period = WATCH[index].period.load(Ordering::Relaxed);
    if period == 0 || WATCH[index].deadline.load(Ordering::Relaxed) == 0 {
        return false;
    }
    WATCH[index].deadline.store(arch::now().saturating_add(period), Ordering::Release);
    true
}

/// The hypervisor timer armed by [`watchdog_next`] fired on `core` (or
/// the core found the time passed at an exit): returns when to look again,
/// or, if the partition has neither called `WATCHDOG_PET` nor changed its
/// heartbeat word since the deadline was set, applies its fault policy
/// (and does not return). A few loads when the deadline has not come: the
/// cost of a watchdog is one such interrupt per period per core.
pub fn watchdog_expired(core: usize) -> u64 {
    let sys = system::get();
    let Some(role) = sys.core_map.get(core).copied().flatten() else { return 0 };
    let p = &sys.table.partitions()[role.partition];
    let w = &WATCH[role.partition];
    let deadline = w.deadline.load(Ordering::Acquire);
    let now = arch::now();
    if deadline == 0 || now < deadline {
        return deadline;
    }
    w.looks.fetch_add(1, Ordering::Relaxed);
    // The heartbeat word: guest memory, read once; any change since the
    // last look counts as a pet now.
    let beat = sys.parts[role.partition].and_then(|rt| {
        let mut b = 0u64;
        rt.ram.read(system::boot_info_ipa(p) + core::mem::offset_of!(BootInfo, heartbeat) as u64, b.as_mut_bytes()).ok()?;
        Some(b)
    });
    if let Some(b) = beat {
        if w.beat.swap(b, Ordering::AcqRel) != b {
            let next = now.saturating_add(w.period.load(Ordering::Relaxed));
            // Unless another core or a pet moved it meanwhile.
            let _ = w.deadline.compare_exchange(deadline, next, Ordering::AcqRel, Ordering::Acquire);
            return w.deadline.load(Ordering::Acquire);
        }
    }
    finish(sys, role.partition, End::Fault(StopReason::Watchdog { ms: p.watchdog_ns / 1_000_000 }))
}
/// Per partition: doorbells rung but not yet delivered, one bit per entry
/// of the partition's channel directory.
static DOORBELLS: [AtomicU32; MAX_PARTITIONS] = [const { AtomicU32::new(0) }; MAX_PARTITIONS];
/// The longest restart backoff (vmm-config's `MAX_BACKOFF_NS`).
const MAX_BACKOFF_NS: u64 = 10_000_000_000;
/// Per partition: its vCPUs must leave it (it has ended, or it is being
/// restarted). Checked lock-free on every trap and every hypervisor
/// interrupt; set and cleared under the partition's state lock.
static ENDED: [AtomicBool; MAX_PARTITIONS] = [const { AtomicBool::new(false) }; MAX_PARTITIONS];
/// Per core: its vCPU has left the guest and will not enter it again until
/// a CPU_ON (or a restart) makes it pending. Cleared under the partition's
/// state lock when the core enters; set by `leave`. The core that ends a
/// partition waits for this on each of the partition's other running cores
/// before it reports anything.
static LEFT: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(true) }; MAX_CORES];
/// Per core: its vCPU's state may have changed (made pending, or its
/// partition ended). A core waiting for its vCPU polls this word, not the
/// partition's lock: an emulator that runs cores in short turns (Bochs)
/// would otherwise let a waiter hold the lock at every turn's end and
/// starve the vCPU that wants to start it.
static WAKE: [AtomicBool; MAX_CORES] = [const { AtomicBool::new(true) }; MAX_CORES];

/// Tells the core of vCPU `vcpu` of partition `p` that its state changed
/// (call after changing it, under or after the partition's lock).
pub fn wake_vcpu(p: &hallows_table::PartitionDesc, vcpu: usize) {
    if let Some(w) = p.vcpu_core.get(vcpu).and_then(|&c| WAKE.get(c as usize)) {
        w.store(true, Ordering::Release);
    }
    arch::send_event();
}
/// Per partition: an operator's request waiting for one of its cores
/// ([`OP_STOP`], [`OP_RESTART`]; 0: none). Set by the control core, taken
/// by the partition's own core in [`deliver_doorbells`] after the kick.
static OPERATOR: [AtomicU8; MAX_PARTITIONS] = [const { AtomicU8::new(0) }; MAX_PARTITIONS];
const OP_STOP: u8 = 1;
const OP_RESTART: u8 = 2;
static LIVE: AtomicUsize = AtomicUsize::new(usize::MAX);
static ENDING: AtomicBool = AtomicBool::new(false);

/// Locks partition `index`'s state (hypercall handling needs the vCPUs).
pub fn state(index: usize) -> spin::MutexGuard<'static, PartState> {
    STATES[index].lock()
}

/// Loads (or reloads) partition `index`'s guest image and boot information.
pub fn load(sys: &System, index: usize, restarts: u32) -> Result<(), hallows_abi::Error> {
    let p = &sys.table.partitions()[index];
    let rt = sys.parts[index].as_ref().ok_or(hallows_abi::Error::InvalidArgument)?;
    OPERATOR[index].store(0, Ordering::Release);
    if restarts > 0 {
        rt.ram.scrub();
        DOORBELLS[index].store(0, Ordering::Release);
    }
    for s in &p.segments[..p.segment_count as usize] {
        let start = s.payload_offset as usize;
        let bytes = sys.payload.get(start..start + s.file_size as usize).ok_or(hallows_abi::Error::InvalidArgument)?;
        rt.ram.load(s.ipa, bytes, s.mem_size)?;
    }
    if !p.is_linux() {
        write_boot_info(sys, index, rt, restarts)?;
    }
    // The first period runs from the boot vCPU's entry (`start_watch`).
    WATCH[index].beat.store(0, Ordering::Relaxed);
    WATCH[index].deadline.store(0, Ordering::Release);
    WATCH[index].fresh.store(p.watchdog_ns != 0, Ordering::Release);
    if index == 0 && restarts == 0 {
        LIVE.store(sys.table.partitions().len(), Ordering::Release);
    }
    Ok(())
}

/// Writes a RustHallows guest's boot information (`hallows_abi::BootInfo`)
/// at the end of its RAM. A Linux partition has none: its device tree,
/// one of its segments, says everything.
fn write_boot_info(sys: &System, index: usize, rt: &system::PartitionRt, restarts: u32) -> Result<(), hallows_abi::Error> {
    let p = &sys.table.partitions()[index];
    let mut channels = [ChannelInfo::new_zeroed(); hallows_abi::MAX_CHANNELS];
    let mut channel_count = 0;
    for (slot, (_, c)) in channels.iter_mut().zip(system::directory(sys.table, index)) {
        *slot = ChannelInfo {
            name: c.name,
            ipa: c.ipa,
            slot_size: c.slot_size,
            slot_count: c.slot_count,
            role: if c.producer as usize == index { role::PRODUCER } else { role::CONSUMER },
            // Both validated (`system::validate_channels`): 0 or 1.
            notify: c.notify as u16,
            tuning: c.tuning as u16,
            layout_hash: c.layout_hash,
        };
        channel_count += 1;
    }
    let info = BootInfo {
        magic: BOOT_MAGIC,
        abi_version: hallows_abi::ABI_VERSION,
        partition_index: index as u32,
        vcpu_count: system::vcpu_count(p) as u32,
        ram_ipa: p.ram_ipa,
        ram_size: p.ram_size,
        restart_count: restarts,
        _pad: 0,
        name: p.name,
        bootargs: p.bootargs,
        channel_count,
        _pad2: 0,
        channels,
        log_level: p.log_level,
        device_count: p.device_count.min(hallows_table::MAX_DEVICES as u32),
        dma: if p.dma == 1 { hallows_abi::dma::TRUSTED } else { 0 },
        _pad3: 0,
        // Only a partition trusted with DMA learns where its RAM really is.
        dma_offset: if p.dma == 1 { p.ram_pa.wrapping_sub(p.ram_ipa) } else { 0 },
        devices: core::array::from_fn(|i| match p.devices.get(i).filter(|_| i < p.device_count as usize) {
            Some(d) => DeviceInfo {
                name: d.name,
                compatible: d.compatible,
                base: d.base,
                size: d.size,
                irq: arch::guest_device_irq(i, d.irq),
                _pad: 0,
            },
            None => DeviceInfo::new_zeroed(),
        }),
        // Opaque to the hypervisor: laid out by the tool as `NetInfo`.
        net: zerocopy::transmute!(p.net),
        tsc_hz: arch::tsc_hz(),
        timer_armed: [0; hallows_abi::MAX_VCPUS],
        watchdog_ns: p.watchdog_ns,
        heartbeat: 0,
    };
    rt.ram.write(system::boot_info_ipa(p), &info)?;
    Ok(())
}

/// What a core does once the system is up. Never returns.
pub fn run_core(core: usize) -> ! {
    let sys = system::get();
    let Some(role) = sys.core_map.get(core).copied().flatten() else { arch::park() };
    let p = &sys.table.partitions()[role.partition];
    if role.vcpu == 0 {
        // The boot vCPU starts at the image's entry with the boot
        // information; the others wait for their partition's PSCI CPU_ON.
        state(role.partition).vcpus[0] = Vcpu::Pending { entry: p.entry, context: system::boot_context(p) };
        wake_vcpu(p, 0);
    }
    wait_for_vcpu(sys, core)
}

/// This core's vCPU is out of the guest (not started yet, PSCI CPU_OFF, or
/// its partition ended or is restarting): it waits in the hypervisor until
/// its vCPU is made pending (CPU_ON, a restart) in a running partition, and
/// enters it; it parks for good once the partition has ended. Callable
/// from a trap: entering a vCPU resets this core's stack.
fn wait_for_vcpu(sys: &System, core: usize) -> ! {
    let Some(role) = sys.core_map.get(core).copied().flatten() else { arch::park() };
    let Some(rt) = sys.parts[role.partition] else { arch::park() };
    loop {
        if WAKE[core].swap(false, Ordering::AcqRel) {
            let mut st = state(role.partition);
            if st.state != State::Running {
                drop(st);
                arch::park();
            }
            if let Vcpu::Pending { entry, context } = st.vcpus[role.vcpu] {
                if !ENDED[role.partition].load(Ordering::Acquire) {
                    if role.vcpu == 0 {
                        start_run(sys, role.partition, &mut st);
                    }
                    st.vcpus[role.vcpu] = Vcpu::On;
                    LEFT[core].store(false, Ordering::Release);
                    drop(st);
                    // vCPU 0 gets the boot information (Linux: its device
                    // tree) in x0 and 0 in x1; a secondary its CPU_ON
                    // context and its own number.
                    arch::enter_vcpu(rt.stage2_root, rt.vmid, role.vcpu as u64, entry, context, role.vcpu as u64);
                }
            }
        }
        arch::wait_for_event();
    }
}

/// Takes this core's vCPU out of its partition: marks it as left (which the
/// core ending the partition waits for) and waits for the vCPU's next start.
pub fn leave(core: usize) -> ! {
    arch::quiesce();
    if let Some(l) = LEFT.get(core) {
        l.store(true, Ordering::Release);
    }
    if let Some(w) = WAKE.get(core) {
        w.store(true, Ordering::Release);
    }
    arch::send_event();
    wait_for_vcpu(system::get(), core)
}

/// Takes every other running vCPU of a partition (the cores in `running`)
/// out of the guest:
/// `ENDED` is already set (so none enters again); an IPI to each core where
/// the partition's vCPU is on makes it leave at once (a guest can mask
/// neither the IPI nor the exit it causes), and this waits until each has.
/// After this, no instruction of the partition runs anywhere.
fn stop_other_vcpus(sys: &System, running: &[bool; MAX_CORES]) {
    let me = arch::this_core();
    let kick = |core: usize| arch::kick(sys.table.board.core_hwid[core]);
    for (core, _) in running.iter().enumerate().filter(|&(c, &r)| r && c != me) {
        kick(core);
    }
    arch::send_event();
    for (core, _) in running.iter().enumerate().filter(|&(c, &r)| r && c != me) {
        // The kick is sent again now and then: an emulator may lose an IPI
        // (QEMU TCG on x86, see `svm::idle`); a second one to a core that
        // already left costs nothing.
        let mut spins = 0u32;
        while !LEFT[core].load(Ordering::Acquire) {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 20) {
                kick(core);
            }
            if spins == 64 << 20 {
                // A hypervisor or emulator fault, never a guest's doing:
                // say so once, and keep waiting (reporting the stop now
                // would be a lie).
                console::hv_print(format_args!("core {core} has not left its partition after 64 IPIs; still waiting\n"));
            }
            arch::wait_for_event();
        }
    }
}

/// Handles one trap from the partition running on `core`. Returns to
/// resume the guest; every other outcome ends in `finish`.
pub fn handle_trap(core: usize, trap: Trap, regs: &mut [u64; 31]) {
    let sys = system::get();
    let Some(role) = sys.core_map.get(core).copied().flatten() else { arch::park() };
    if ENDED[role.partition].load(Ordering::Acquire) {
        // Another vCPU is ending this partition: this one leaves too.
        leave(core);
    }
    let end = match trap {
        Trap::Call => match hypercall::handle(sys, role, regs) {
            hypercall::Action::Resume => return,
            hypercall::Action::Park => leave(core),
            hypercall::Action::Exit(status) => End::Exit(status),
            hypercall::Action::Stop(reason) => End::Fault(reason),
        },
        Trap::Stage2Fault { ipa, write, instr, pc } => End::Fault(StopReason::Stage2Fault { ipa, write, instr, pc }),
        Trap::Unexpected { esr, pc } => End::Fault(StopReason::Unexpected { esr, pc }),
        Trap::Stop(reason) => End::Fault(reason),
    };
    finish(sys, role.partition, end)
}

#[derive(Clone, Copy)]
enum End {
    Exit(u64),
    Fault(StopReason),
    /// The operator's `stop` or `restart` (whatever the fault policy and
    /// `max_restarts` say).
    Operator { restart: bool },
}

/// The operator's `stop` or `restart` of partition `index`, from the
/// control core: noted for the partition, and its running cores kicked; the
/// first of them to see it ends the partition (as a fault would, so every
/// vCPU leaves first). Refused for a partition that is not running.
pub fn operator(sys: &System, index: usize, restart: bool) -> Result<(), &'static str> {
    let p = &sys.table.partitions()[index];
    let st = state(index);
    if st.state != State::Running || ENDED[index].load(Ordering::Acquire) {
        return Err("it is not running");
    }
    let on: [bool; MAX_CORES] = core::array::from_fn(|v| v < system::vcpu_count(p) && st.vcpus[v] == Vcpu::On);
    if !on.iter().any(|&o| o) {
        return Err("none of its vCPUs is running (it is starting or restarting); try again");
    }
    OPERATOR[index].store(if restart { OP_RESTART } else { OP_STOP }, Ordering::Release);
    drop(st);
    let me = arch::this_core();
    for (v, _) in on.iter().enumerate().filter(|&(_, &o)| o) {
        let core = p.vcpu_core[v] as usize;
        if core != me {
            arch::kick(sys.table.board.core_hwid[core]);
        }
    }
    // This core's own partition: taken on the way back to its guest
    // (`deliver_doorbells`).
    Ok(())
}

/// One `state:` line per partition: what it is doing, its uptime (this
/// run), restarts, faults and watchdog misses. On the operator's `status`
/// and before the summary at the end.
pub fn print_states(sys: &System) {
    let now = arch::now();
    let hz = arch::counter_hz().max(1);
    for (i, p) in sys.table.partitions().iter().enumerate() {
        let (state, started, restarts, faults, misses) = {
            let st = state(i);
            (st.state, st.started, st.restarts, st.faults, st.misses)
        };
        let name = p.name();
        let counts = Counts { restarts, faults, misses };
        match state {
            State::Running if started != 0 => {
                let ms = (now.saturating_sub(started) as u128 * 1000 / hz as u128) as u64;
                console::hv_print(format_args!("state: {name}: running, up {}.{:03} s, {counts}\n", ms / 1000, ms % 1000))
            }
            State::Running => console::hv_print(format_args!("state: {name}: starting, {counts}\n")),
            State::Exited(status) => console::hv_print(format_args!("state: {name}: exited {status}, {counts}\n")),
            State::Stopped(reason) => console::hv_print(format_args!("state: {name}: stopped ({reason}), {counts}\n")),
        }
    }
}

struct Counts {
    restarts: u32,
    faults: u32,
    misses: u32,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "restarts {}, faults {}, watchdog misses {}", self.restarts, self.faults, self.misses)
    }
}

fn finish(sys: &System, index: usize, end: End) -> ! {
    let p = &sys.table.partitions()[index];
    let name = p.name();
    let core = arch::this_core();
    let mut st = state(index);
    if st.state != State::Running || ENDED[index].load(Ordering::Acquire) {
        // Another vCPU is already ending (or restarting) the partition.
        drop(st);
        leave(core);
    }
    // From here on no vCPU of the partition enters the guest again; those
    // that run are taken out before anything is reported.
    ENDED[index].store(true, Ordering::Release);
    WATCH[index].deadline.store(0, Ordering::Release);
    if let End::Fault(reason) = end {
        st.faults += 1;
        if matches!(reason, StopReason::Watchdog { .. }) {
            st.misses += 1;
        }
    }
    let mut running = [false; MAX_CORES];
    for (v, c) in system::cores(p).enumerate() {
        if let Some(r) = running.get_mut(c) {
            *r = st.vcpus[v] == Vcpu::On;
        }
        st.vcpus[v] = Vcpu::Off;
    }
    let restart = match end {
        End::Fault(_) => p.fault_policy == fault_policy::RESTART && st.restarts < p.max_restarts,
        End::Operator { restart } => restart,
        End::Exit(_) => false,
    };
    if restart {
        st.restarts += 1;
    } else {
        st.state = match end {
            End::Exit(status) => State::Exited(status),
            End::Fault(reason) => State::Stopped(reason),
            End::Operator { .. } => State::Stopped(StopReason::Operator),
        };
    }
    let restarts = st.restarts;
    drop(st);
    if !restart {
        // Cores waiting for a vCPU of this partition park for good.
        for v in 0..system::vcpu_count(p) {
            wake_vcpu(p, v);
        }
    }
    stop_other_vcpus(sys, &running);
    LEFT[core].store(true, Ordering::Release);
    for d in &p.devices[..(p.device_count as usize).min(p.devices.len())] {
        arch::quiesce_device(d);
    }
    console::partition_flush(index, name);
    if p.watchdog_ns != 0 {
        console::hv_print(format_args!("watchdog: {name}: {} looks\n", WATCH[index].looks.load(Ordering::Relaxed)));
    }
    if p.is_linux() {
        arch::linux_report(index, name);
    }
    match end {
        End::Exit(status) => console::hv_print(format_args!("partition {name} exited with status {status}\n")),
        End::Fault(reason) if restart => {
            console::hv_print(format_args!(
                "partition {name} faulted: {reason}; restarting it ({restarts} of {}){}\n",
                p.max_restarts,
                Backoff(backoff_ns(p, restarts))
            ));
            restart_partition(sys, index, restarts);
        }
        End::Fault(reason) if p.fault_policy == fault_policy::HALT => {
            console::hv_print(format_args!("partition {name} faulted: {reason}; its policy halts the system\n"));
            shutdown(sys);
        }
        End::Fault(reason) => console::hv_print(format_args!("partition {name} stopped: {reason}\n")),
        End::Operator { restart: true } => {
            console::hv_print(format_args!("partition {name} restarted by the operator (restart {restarts})\n"));
            restart_partition(sys, index, restarts);
        }
        End::Operator { restart: false } => console::hv_print(format_args!("partition {name} stopped: by the operator\n")),
    }
    if LIVE.fetch_sub(1, Ordering::AcqRel) == 1 {
        shutdown(sys);
    }
    arch::park()
}

/// Restarts partition `index` (every vCPU is already out): reloads its
/// image, then starts its boot vCPU on the boot vCPU's own core, which may
/// be another core than this one (a fault on a secondary vCPU).
/// The delay before restart number `restarts` (1 for the first):
/// `restart_backoff`, doubled for each restart after the first, at most
/// 10 s; 0 without a backoff.
fn backoff_ns(p: &hallows_table::PartitionDesc, restarts: u32) -> u64 {
    p.restart_backoff_ns.saturating_mul(1 << restarts.saturating_sub(1).min(20)).min(MAX_BACKOFF_NS)
}

/// A restart's backoff, as its announcement shows it.
struct Backoff(u64);

impl fmt::Display for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            ns => write!(f, " after {} ms", ns / 1_000_000),
        }
    }
}

fn restart_partition(sys: &System, index: usize, restarts: u32) -> ! {
    let p = &sys.table.partitions()[index];
    // Backoff: `restart_backoff`, doubled for each restart after the
    // first, at most 10 s. This core has nothing else to do (its vCPU is
    // out); the partition's other cores wait for their vCPUs meanwhile.
    let ns = backoff_ns(p, restarts);
    if ns != 0 {
        let ticks = (ns as u128 * arch::counter_hz() as u128 / 1_000_000_000) as u64;
        let until = arch::now().saturating_add(ticks);
        while arch::now() < until {
            arch::relax();
        }
    }
    if load(sys, index, restarts).is_err() {
        // Validated at boot, so unreachable; stop rather than run garbage.
        console::hv_print(format_args!("partition {}: reload failed\n", p.name()));
        arch::park();
    }
    #[cfg(target_arch = "aarch64")]
    for d in &p.devices[..(p.device_count as usize).min(p.devices.len())] {
        if d.irq != 0 {
            arch::reset_device_interrupt(d.irq);
        }
    }
    {
        let mut st = state(index);
        st.vcpus[0] = Vcpu::Pending { entry: p.entry, context: system::boot_context(p) };
        ENDED[index].store(false, Ordering::Release);
    }
    // This core waits like the others; the boot vCPU's core (this one, or
    // one waiting in `wait_for_vcpu`) enters the reloaded image.
    wake_vcpu(p, 0);
    wait_for_vcpu(sys, arch::this_core())
}

/// Prints one summary line per partition and stops the machine: status 0
/// if every partition exited with status 0, 1 otherwise.
fn shutdown(sys: &System) -> ! {
    if ENDING.swap(true, Ordering::AcqRel) {
        arch::park();
    }
    print_states(sys);
    // Nothing is allocated after boot; the table pool, the only memory the
    // hypervisor hands out, must be where boot left it.
    console::hv_print(format_args!("{} page-table pages used at the end\n", arch::table_pages_used()));
    let mut failed = 0;
    let parts = sys.table.partitions();
    for (i, p) in parts.iter().enumerate() {
        let st = state(i);
        let r = Restarts(st.restarts, st.misses);
        let name = p.name();
        match st.state {
            State::Exited(0) => console::hv_print(format_args!("summary: {name}: exited 0{r}\n")),
            State::Exited(s) => {
                failed += 1;
                console::hv_print(format_args!("summary: {name}: exited {s}{r}\n"))
            }
            State::Stopped(reason) => {
                failed += 1;
                console::hv_print(format_args!("summary: {name}: stopped: {reason}{r}\n"))
            }
            State::Running => {
                failed += 1;
                console::hv_print(format_args!("summary: {name}: still running at halt{r}\n"))
            }
        }
    }
    console::hv_print(format_args!(
        "all partitions finished: {} ok, {failed} failed\n",
        parts.len() - failed
    ));
    arch::exit_machine(if failed == 0 { 0 } else { 1 })
}

/// Restarts and watchdog misses, as the summary shows them.
struct Restarts(u32, u32);

impl fmt::Display for Restarts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => {}
            n => write!(f, " (restarted {n} times)")?,
        }
        match self.1 {
            0 => Ok(()),
            1 => write!(f, " (1 watchdog miss)"),
            n => write!(f, " ({n} watchdog misses)"),
        }
    }
}

/// Where `NOTIFY` on entry `channel` of partition `index`'s directory
/// rings: the peer's pending-doorbell word, the bit of the peer's entry in
/// it, and the core whose interrupt delivers it (the peer's boot core);
/// `None` when the entry is not a doorbell channel of the partition. An
/// architecture may precompute these at boot for a faster `NOTIFY`
/// (aarch64's vectors do).
pub fn doorbell_target(sys: &System, index: usize, channel: usize) -> Option<(&'static AtomicU32, u32, usize)> {
    let (peer, slot) = sys.doorbells.get(index)?.get(channel).copied().flatten()?;
    let p = sys.table.partitions().get(peer as usize)?;
    Some((DOORBELLS.get(peer as usize)?, 1 << slot, p.vcpu_core[0] as usize))
}

/// Rings a doorbell ([`doorbell_target`]). Coalesces: a doorbell already
/// pending costs no second interrupt.
pub fn ring_doorbell(sys: &System, (pending, bit, core): (&AtomicU32, u32, usize)) {
    if pending.fetch_or(bit, Ordering::AcqRel) & bit == 0 {
        arch::send_doorbell(sys.table.board.core_hwid[core]);
    }
}

/// On the receiving core, after a doorbell interrupt: turns pending
/// doorbells into virtual interrupts for the partition's boot vCPU.
///
/// Every core calls this on each hypervisor interrupt (the doorbell IPI):
/// a core whose partition is ending leaves it here. This is how the core
/// ending a partition takes the partition's other vCPUs out of the guest.
pub fn deliver_doorbells(core: usize) {
    let sys = system::get();
    let Some(role) = sys.core_map.get(core).copied().flatten() else { return };
    if ENDED[role.partition].load(Ordering::Acquire) {
        leave(core);
    }
    if OPERATOR[role.partition].load(Ordering::Relaxed) != 0 {
        match OPERATOR[role.partition].swap(0, Ordering::AcqRel) {
            OP_STOP => finish(sys, role.partition, End::Operator { restart: false }),
            OP_RESTART => finish(sys, role.partition, End::Operator { restart: true }),
            _ => {}
        }
    }
    if role.vcpu != 0 {
        return;
    }
    // (`LINUX_PARTITIONS` is false on x86_64: the check compiles away.)
    if arch::LINUX_PARTITIONS && sys.table.partitions()[role.partition].is_linux() {
        // Linux polls its channels (docs/linux.md): no interrupt for it.
        DOORBELLS[role.partition].store(0, Ordering::Release);
        return;
    }
    let pending = DOORBELLS[role.partition].swap(0, Ordering::AcqRel);
    let left = arch::inject_doorbells(core, pending);
    if left != 0 {
        // Not all could be made pending (aarch64: no free list register):
        // the rest wait for the maintenance interrupt that fires once the
        // guest has taken some.
        DOORBELLS[role.partition].fetch_or(left, Ordering::AcqRel);
    }
}
