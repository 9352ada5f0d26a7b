//! `action=calls count=N`: N `ABI_VERSION` calls, each answer checked,
//! then the calls the hypervisor answers on its fast path (aarch64: in
//! the exception vectors): `NOTIFY` on each doorbell channel of the
//! partition's directory (answer 0), and with arguments they must refuse:
//! `NOTIFY` on the entries that are not doorbell channels and on indices
//! out of range, and function ids just past and far from the defined ones.
//! On aarch64 each fast call also must leave every register but its
//! results as it was. Prints one line per check that fails and a
//! summary; exits 0 only if every answer was right. With a large `count`
//! this is also the null-hypercall cost measurement
//! (`tests/systems/null-call-cost.toml`).

use hallows_rt::abi::{call, Error, ABI_VERSION, MAX_CHANNELS};
use hallows_rt::{println, raw_hypercall, Boot};

pub fn run(boot: &Boot, count: u64) -> u64 {
    let mut wrong = 0u64;
    for i in 0..count {
        let (r, v) = raw_hypercall(call::ABI_VERSION, [0; 5]);
        if (r, v) != (0, ABI_VERSION) {
            if wrong < 4 {
                println!("calls: ABI_VERSION call {i} answered ({r:#x}, {v:#x})");
            }
            wrong += 1;
        }
    }
    let invalid = Error::InvalidArgument.code();
    let not_supported = Error::NotSupported.code();
    let mut answered = |function: u64, arg: u64, want: u64| {
        let (r, _) = raw_hypercall(function, [arg, 0, 0, 0, 0]);
        if r != want {
            println!("calls: function {function:#x} with x1 = {arg:#x} answered {}, not {}", r as i64, want as i64);
            wrong += 1;
        }
    };
    let info = boot.info();
    // `ChannelInfo::notify`: 1 is a doorbell channel.
    let doorbell = |i: usize| i < info.channel_count as usize && info.channels[i].notify == 1;
    for channel in 0..MAX_CHANNELS {
        answered(call::NOTIFY, channel as u64, if doorbell(channel) { 0 } else { invalid });
    }
    for channel in [MAX_CHANNELS as u64, 1 << 32, u64::MAX] {
        answered(call::NOTIFY, channel, invalid);
    }
    for function in [call::WATCHDOG_PET + 1, call::BASE + 0xffff, call::ABI_VERSION | (1 << 32), call::NOTIFY | (1 << 63)] {
        answered(function, 0, not_supported);
    }
    #[cfg(target_arch = "aarch64")]
    {
        wrong += preserved(call::ABI_VERSION, 0x77, (0, ABI_VERSION));
        for channel in 0..MAX_CHANNELS as u64 {
            wrong += preserved(call::NOTIFY, channel, (if doorbell(channel as usize) { 0 } else { invalid }, channel));
        }
        wrong += preserved(call::NOTIFY, MAX_CHANNELS as u64, (invalid, MAX_CHANNELS as u64));
    }
    let rung = (0..MAX_CHANNELS).filter(|&i| doorbell(i)).count();
    println!("calls: {count} ABI_VERSION calls, {rung} doorbell channel(s) and the refusals checked, {wrong} wrong");
    u64::from(wrong != 0)
}

/// Calls `function` with `x1 = arg` and x2..x17 holding marks: the answer
/// must be `want` in x0, x1, and every mark must come back.
#[cfg(target_arch = "aarch64")]
fn preserved(function: u64, arg: u64, want: (u64, u64)) -> u64 {
    let mark = |i: u64| 0x5a5a_0000_0000_0000 | (i << 8) | i;
    let (mut x0, mut x1) = (function, arg);
    let mut x = [0u64; 18];
    for (i, v) in x.iter_mut().enumerate() {
        *v = mark(i as u64);
    }
    let [_, _, mut x2, mut x3, mut x4, mut x5, mut x6, mut x7, mut x8, mut x9, mut x10, mut x11, mut x12, mut x13, mut x14, mut x15, mut x16, mut x17] = x;
    // SAFETY: `hvc` traps to the hypervisor; every register it may touch
    // is an operand here.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") x0, inout("x1") x1,
            inout("x2") x2, inout("x3") x3, inout("x4") x4, inout("x5") x5,
            inout("x6") x6, inout("x7") x7, inout("x8") x8, inout("x9") x9,
            inout("x10") x10, inout("x11") x11, inout("x12") x12, inout("x13") x13,
            inout("x14") x14, inout("x15") x15, inout("x16") x16, inout("x17") x17,
            options(nostack),
        );
    }
    let after = [x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, x16, x17];
    let mut wrong = 0;
    if (x0, x1) != want {
        println!("calls: function {function:#x} answered ({x0:#x}, {x1:#x}), not {want:#x?}");
        wrong += 1;
    }
    for (i, v) in after.iter().enumerate() {
        if *v != mark(i as u64 + 2) {
            println!("calls: function {function:#x} changed x{} to {v:#x}", i + 2);
            wrong += 1;
        }
    }
    wrong
}
