//! Reading QEMU's execution log (`-singlestep -d exec,nochain`), one
//! reader for every instruction-counting tool (`hallows el2-cost`,
//! `boot-cost`, `net-cost`, `linux-cost`).
//!
//! With one instruction per block, each line of the log is one block, so
//! one instruction, with the core that ran it. But QEMU logs a block
//! before it runs it, and a block can exit at its start without running
//! when the core is asked to leave the translated code (another core or
//! the timer raised an interrupt on it, or its `-icount` budget ran out:
//! `cpu_tb_exec`, "we didn't start executing this TB"); the block then
//! runs, and is logged, again. That shows as one address logged twice in
//! a row on one core, which is otherwise impossible except for an
//! instruction that can run twice in a row:
//!
//! - a branch to itself (A64: B, BL, B.cond, CBZ, CBNZ, TBZ, TBNZ with a
//!   zero offset; x86: `jmp`, `jcc`, `loop*` and `jrcxz` whose target is
//!   their own address),
//! - on x86, a string instruction with a `rep`/`repe`/`repne` prefix:
//!   QEMU 7.2 runs each of its iterations as one block execution at the
//!   same address (and `-icount` counts each), so each logged iteration
//!   counts as one instruction, as it always has.
//!
//! The reader drops a repeat unless the instruction at that address is one
//! of those. It decides only where it has the instruction's bytes: the
//! loaded segments of the ELF files the tool was given ([`Code`]: the
//! hypervisor's, and where the tool knows them the guests' own, per core).
//! A repeat at an address whose bytes it does not have (a Linux guest, a
//! firmware or loader, a guest image it was not given) is kept, counted
//! twice, and reported separately ([`Reader::unknown`]): the tool does not
//! guess.
//!
//! The reader does not catch a block logged and left without running
//! when the core then takes an interrupt before logging it again (the
//! second log line then follows the handler's): only consecutive repeats
//! are told apart from real execution.

use std::ops::Range;

use crate::image;

/// The instruction set a [`Code`]'s bytes are decoded as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    A64,
    X86_64,
}

impl From<vmm_config::Arch> for Isa {
    fn from(a: vmm_config::Arch) -> Isa {
        match a {
            vmm_config::Arch::Aarch64 => Isa::A64,
            vmm_config::Arch::X86_64 => Isa::X86_64,
        }
    }
}

/// Instruction bytes the tool knows, by address (and for a guest's, on
/// which cores: guests linked at the same addresses run on their own
/// cores).
#[derive(Debug)]
pub struct Code {
    isa: Isa,
    segments: Vec<Segment>,
}

/// Bytes at an address range, on some cores (all when `cores` is `None`).
#[derive(Debug)]
struct Segment {
    range: Range<u64>,
    bytes: Vec<u8>,
    cores: Option<Vec<usize>>,
}

impl Code {
    /// No known bytes: every repeat is kept (and reported as unknown).
    pub fn new(isa: Isa) -> Code {
        Code { isa, segments: Vec::new() }
    }

    /// Adds `bytes` at `addr`, for the cores `cores` (all if `None`).
    pub fn add(&mut self, addr: u64, bytes: Vec<u8>, cores: Option<Vec<usize>>) {
        let end = addr.saturating_add(bytes.len() as u64);
        self.segments.push(Segment { range: addr..end, bytes, cores });
    }

    /// Adds the loaded segments of `elf` (their file bytes), for `cores`.
    pub fn add_elf(&mut self, elf: &image::Elf, cores: Option<Vec<usize>>) {
        for s in &elf.segments {
            self.add(s.addr, s.data.clone(), cores.clone());
        }
    }

    /// The bytes from `pc` to the end of its segment, on `core`.
    fn bytes(&self, core: usize, pc: u64) -> Option<&[u8]> {
        self.segments
            .iter()
            .find(|s| s.range.contains(&pc) && s.cores.as_ref().is_none_or(|c| c.contains(&core)))
            .map(|s| &s.bytes[(pc - s.range.start) as usize..])
    }

    /// Whether the instruction at `pc` on `core` can run twice in a row
    /// (see the module's text); `None` when its bytes are not known.
    pub fn may_repeat(&self, core: usize, pc: u64) -> Option<bool> {
        let b = self.bytes(core, pc)?;
        match self.isa {
            Isa::A64 => {
                let w = b.get(..4)?;
                Some(branches_to_itself(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            }
            Isa::X86_64 => x86_may_repeat(b),
        }
    }
}

/// The code of `sys`'s run as the tool knows it: the hypervisor's ELF
/// `hv_elf` (on every core), and each partition's guest ELF, at `guest`'s
/// path for its guest's name, on the partition's cores. A Linux
/// partition's code, and a guest ELF that is not there, stay unknown
/// (their repeats are kept and reported, see [`Reader::unknown`]).
pub fn system_code(sys: &vmm_config::System, hv_elf: &image::Elf, guest: impl Fn(&str) -> std::path::PathBuf) -> Code {
    let mut code = Code::new(sys.board.arch.into());
    code.add_elf(hv_elf, None);
    for p in sys.partitions.iter().filter(|p| p.linux.is_none()) {
        let Ok(bytes) = std::fs::read(guest(&p.guest)) else { continue };
        if let Ok(elf) = image::Elf::parse(&bytes) {
            code.add_elf(&elf, Some(p.cores.iter().map(|&c| c as usize).collect()));
        }
    }
    code
}

/// Whether the A64 instruction `w` branches to itself (B, BL, B.cond,
/// CBZ, CBNZ, TBZ, TBNZ with a zero offset).
pub fn branches_to_itself(w: u32) -> bool {
    let imm19 = (w >> 5) & 0x7_ffff;
    (w & 0x7c00_0000 == 0x1400_0000 && w & 0x03ff_ffff == 0)
        || (w & 0xff00_0010 == 0x5400_0000 && imm19 == 0)
        || (w & 0x7e00_0000 == 0x3400_0000 && imm19 == 0)
        || (w & 0x7e00_0000 == 0x3600_0000 && (w >> 5) & 0x3fff == 0)
}

/// Whether the x86 instruction starting at `b[0]` can run twice in a row
/// at its address: a relative `jmp`/`jcc`/`loop*`/`jrcxz` whose target is
/// itself (the displacement is the negated length of the instruction), or
/// a string instruction with a `rep` prefix. `None` if `b` ends inside
/// the instruction.
fn x86_may_repeat(b: &[u8]) -> Option<bool> {
    let mut i = 0;
    let mut rep = false;
    // Legacy prefixes, then at most one REX (64-bit mode; in the 32-bit
    // boot code 0x40-0x4f are inc/dec, which are no branch either).
    while let Some(&p) = b.get(i) {
        match p {
            0xf2 | 0xf3 => rep = true,
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 => {}
            _ => break,
        }
        i += 1;
        if i >= 15 {
            return Some(false);
        }
    }
    if matches!(b.get(i)?, 0x40..=0x4f) {
        i += 1;
    }
    let op = *b.get(i)?;
    let rel8 = |at: usize| -> Option<i64> { Some(i64::from(*b.get(at)? as i8)) };
    let rel32 = |at: usize| -> Option<i64> { Some(i64::from(i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))) };
    Some(match op {
        // jmp rel8, jcc rel8, loopne/loope/loop/jrcxz rel8.
        0xeb | 0x70..=0x7f | 0xe0..=0xe3 => rel8(i + 1)? == -((i + 2) as i64),
        // jmp rel32.
        0xe9 => rel32(i + 1)? == -((i + 5) as i64),
        // jcc rel32.
        0x0f if matches!(b.get(i + 1)?, 0x80..=0x8f) => rel32(i + 2)? == -((i + 6) as i64),
        // ins, outs, movs, cmps, stos, lods, scas.
        0x6c..=0x6f | 0xa4..=0xa7 | 0xaa..=0xaf => rep,
        _ => false,
    })
}

/// One line of QEMU's `-d exec` log: the core and program counter
/// (`Trace <cpu>: 0x<host> [<flags>/<pc>/...] <symbol>`).
pub fn line(line: &str) -> Option<(usize, u64)> {
    let (cpu, rest) = line.strip_prefix("Trace ")?.split_once(':')?;
    let pc = rest.split_once('[')?.1.split('/').nth(1)?;
    Some((cpu.parse().ok()?, u64::from_str_radix(pc, 16).ok()?))
}

/// Follows the log's lines in order and says which ran (see the module's
/// text); counts what it dropped.
pub struct Reader<'a> {
    code: &'a Code,
    /// Per core: the address of its last logged line.
    last: Vec<Option<u64>>,
    /// Repeats dropped: logged twice in a row, counted once.
    pub repeats: u64,
    /// Repeats kept because the tool does not have the instruction's bytes.
    pub unknown: u64,
}

impl<'a> Reader<'a> {
    pub fn new(code: &'a Code) -> Reader<'a> {
        Reader { code, last: Vec::new(), repeats: 0, unknown: 0 }
    }

    /// Whether the instruction `pc` logged on `core` ran (false: a repeat
    /// of a block QEMU left without running it).
    pub fn ran(&mut self, core: usize, pc: u64) -> bool {
        if self.last.len() <= core {
            self.last.resize(core + 1, None);
        }
        let repeat = self.last[core] == Some(pc);
        self.last[core] = Some(pc);
        if !repeat {
            return true;
        }
        match self.code.may_repeat(core, pc) {
            Some(true) => true,
            Some(false) => {
                self.repeats += 1;
                false
            }
            None => {
                self.unknown += 1;
                true
            }
        }
    }

    /// The core and address of `text`, a log line, if it is an
    /// instruction that ran.
    pub fn line(&mut self, text: &str) -> Option<(usize, u64)> {
        let (core, pc) = line(text)?;
        self.ran(core, pc).then_some((core, pc))
    }

    /// What [`Reader::repeats`] and [`Reader::unknown`] say, for a report.
    pub fn summary(&self) -> String {
        let mut s = format!("{} instructions logged twice in a row, counted once", self.repeats);
        if self.unknown > 0 {
            s.push_str(&format!("; {} repeats at addresses whose code the tool does not have, counted twice", self.unknown));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOP: u32 = 0xd503_201f;
    const B_SELF: u32 = 0x1400_0000;

    fn a64(words: &[u32]) -> Code {
        let mut c = Code::new(Isa::A64);
        c.add(0x1000, words.iter().flat_map(|w| w.to_le_bytes()).collect(), None);
        c
    }

    fn log(lines: &[(usize, u64)]) -> String {
        lines.iter().map(|(c, pc)| format!("Trace {c}: 0x7f0000000000 [00000000/{pc:016x}/00000000/ff200000] \n")).collect()
    }

    fn ran(code: &Code, text: &str) -> (Vec<(usize, u64)>, u64, u64) {
        let mut r = Reader::new(code);
        let v = text.lines().filter_map(|l| r.line(l)).collect();
        (v, r.repeats, r.unknown)
    }

    #[test]
    fn lines_give_core_and_pc() {
        assert_eq!(line("Trace 2: 0x7f5a1c000100 [00000000/0000000040001234/00000000/ff200000] memcpy"), Some((2, 0x4000_1234)));
        assert_eq!(line("IN: something"), None);
        assert_eq!(line("Trace x: 0x1 [0/12/0/0]"), None);
    }

    #[test]
    fn a_repeat_counts_once() {
        let code = a64(&[NOP, NOP, NOP]);
        let (v, rep, unk) = ran(&code, &log(&[(0, 0x1000), (0, 0x1004), (0, 0x1004), (0, 0x1008)]));
        assert_eq!(v, [(0, 0x1000), (0, 0x1004), (0, 0x1008)]);
        assert_eq!((rep, unk), (1, 0));
    }

    #[test]
    fn a_branch_to_itself_counts_each_time() {
        let code = a64(&[NOP, B_SELF]);
        let (v, rep, _) = ran(&code, &log(&[(0, 0x1000), (0, 0x1004), (0, 0x1004), (0, 0x1004)]));
        assert_eq!(v.len(), 4);
        assert_eq!(rep, 0);
    }

    #[test]
    fn repeats_are_per_core() {
        // Core 1's line between core 0's two does not hide core 0's repeat,
        // and the same address on two cores is no repeat.
        let code = a64(&[NOP, NOP]);
        let (v, rep, _) = ran(&code, &log(&[(0, 0x1000), (1, 0x1000), (0, 0x1000), (1, 0x1004), (0, 0x1004)]));
        assert_eq!(v, [(0, 0x1000), (1, 0x1000), (1, 0x1004), (0, 0x1004)]);
        assert_eq!(rep, 1);
    }

    #[test]
    fn an_unknown_address_is_kept_and_reported() {
        let code = a64(&[NOP]);
        let (v, rep, unk) = ran(&code, &log(&[(0, 0x9000), (0, 0x9000)]));
        assert_eq!((v.len(), rep, unk), (2, 0, 1));
    }

    #[test]
    fn guest_code_applies_to_its_cores_only() {
        let mut code = Code::new(Isa::A64);
        code.add(0x1000, B_SELF.to_le_bytes().to_vec(), Some(vec![1]));
        code.add(0x1000, NOP.to_le_bytes().to_vec(), Some(vec![2]));
        assert_eq!(code.may_repeat(1, 0x1000), Some(true));
        assert_eq!(code.may_repeat(2, 0x1000), Some(false));
        assert_eq!(code.may_repeat(0, 0x1000), None);
    }

    #[test]
    fn a64_branches_to_itself() {
        for w in [B_SELF, 0x9400_0000 /* bl . */, 0x5400_0000 /* b.eq . */, 0xb400_0000 /* cbz x0, . */, 0x3500_0001 /* cbnz w1, . */, 0x3600_0000 /* tbz w0, #0, . */] {
            assert!(branches_to_itself(w), "{w:#x}");
        }
        for w in [NOP, 0x1400_0001 /* b .+4 */, 0x17ff_ffff /* b .-4 */, 0x5400_0020 /* b.eq .+4 */, 0xd69f_03e0 /* eret */] {
            assert!(!branches_to_itself(w), "{w:#x}");
        }
    }

    #[test]
    fn x86_instructions_that_can_repeat() {
        let yes: &[&[u8]] = &[
            &[0xeb, 0xfe],                         // jmp .
            &[0xe9, 0xfb, 0xff, 0xff, 0xff],       // jmp . (rel32)
            &[0x75, 0xfe],                         // jne .
            &[0x0f, 0x84, 0xfa, 0xff, 0xff, 0xff], // je . (rel32)
            &[0xe2, 0xfe],                         // loop .
            &[0xf3, 0xa4],                         // rep movsb
            &[0xf3, 0x48, 0xa5],                   // rep movsq
            &[0xf3, 0xaa],                         // rep stosb
            &[0xf2, 0xae],                         // repne scasb
        ];
        for b in yes {
            assert_eq!(x86_may_repeat(b), Some(true), "{b:02x?}");
        }
        let no: &[&[u8]] = &[
            &[0x90],                               // nop
            &[0xeb, 0x00],                         // jmp .+2
            &[0xe9, 0xfe, 0xff, 0xff, 0xff],       // jmp .+3 (rel32: not itself)
            &[0x74, 0xfc],                         // je .-2
            &[0xa4],                               // movsb (no rep)
            &[0x48, 0x89, 0xc7],                   // mov %rax,%rdi
            &[0xf4],                               // hlt
        ];
        for b in no {
            assert_eq!(x86_may_repeat(b), Some(false), "{b:02x?}");
        }
        assert_eq!(x86_may_repeat(&[0xe9, 0xfb]), None);
    }

    #[test]
    fn x86_repeats_follow_the_bytes() {
        let mut code = Code::new(Isa::X86_64);
        code.add(0x10_0000, vec![0x90, 0xf3, 0xa4, 0xeb, 0xfe], None);
        let (v, rep, _) = ran(
            &code,
            &log(&[(0, 0x10_0000), (0, 0x10_0000), (0, 0x10_0001), (0, 0x10_0001), (0, 0x10_0001), (0, 0x10_0003), (0, 0x10_0003)]),
        );
        assert_eq!(v.len(), 6);
        assert_eq!(rep, 1);
    }
}
