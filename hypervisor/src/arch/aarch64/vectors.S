// EL2 exception vectors.
//
// Every trap from a partition (lower EL, AArch64) lands here with SP_EL2 at
// the top of this core's stack. The hottest traps are answered without
// leaving assembly, saving only the registers they use:
//
// * `hvc` with a function id below FAST_CALLS (ABI_VERSION, NOTIFY): the id
//   indexes a branch table. ABI_VERSION answers at once; NOTIFY looks its
//   channel up in this core's precomputed route table (`trap::NOTIFY_ROUTES`,
//   written at boot from the validated system table), sets the peer's
//   pending bit and sends the doorbell SGI unless one was already pending.
//   A channel out of range or not a doorbell channel of the caller takes the
//   full path, which returns the error.
// * IRQ: the interrupt is acknowledged here; the guest's virtual timer PPI,
//   when a list register is free, is forwarded hardware-linked (priority
//   drop, one list-register write) and the guest resumes.
//
// Everything else builds a TrapFrame and calls Rust: synchronous traps and
// FIQ/SError save every general register and ELR/SPSR
// (`rust_trap_lower`); other interrupts save only the registers a call may
// clobber (x0-x18, x30) and pass the acknowledged INTID to
// `rust_irq_lower`, which reads no guest register. The guest's EL1 state
// (SP_EL1, system registers) is banked and untouched by EL2 code. The
// hypervisor is built soft-float: EL2 code never touches FP/SIMD
// registers, so they need no saving.
//
// A trap that ends the guest's run (its partition ends, its vCPU leaves)
// never comes back here: the core's next entry builds a fresh frame at the
// top of the stack (`enter_guest`).
//
// Exceptions taken from EL2 itself are hypervisor bugs: `rust_trap_current`
// reports and stops the machine.

.equ FRAME, 34 * 8

// Saves what the first instructions of a lower-EL synchronous trap have
// not: expects SP at the frame's base and x2, x3 already in their slots.
.macro SAVE_FRAME_REST
    stp     x0, x1, [sp, #(0 * 8)]
    stp     x4, x5, [sp, #(4 * 8)]
    stp     x6, x7, [sp, #(6 * 8)]
    stp     x8, x9, [sp, #(8 * 8)]
    stp     x10, x11, [sp, #(10 * 8)]
    stp     x12, x13, [sp, #(12 * 8)]
    stp     x14, x15, [sp, #(14 * 8)]
    stp     x16, x17, [sp, #(16 * 8)]
    stp     x18, x19, [sp, #(18 * 8)]
    stp     x20, x21, [sp, #(20 * 8)]
    stp     x22, x23, [sp, #(22 * 8)]
    stp     x24, x25, [sp, #(24 * 8)]
    stp     x26, x27, [sp, #(26 * 8)]
    stp     x28, x29, [sp, #(28 * 8)]
    mrs     x9, elr_el2
    mrs     x10, spsr_el2
    stp     x30, x9, [sp, #(30 * 8)]
    str     x10, [sp, #(32 * 8)]
.endm

// FIQ or SError from a partition: none is enabled, so any is unexpected.
.macro LOWER_OTHER kind
    .balign 0x80
    sub     sp, sp, #FRAME
    stp     x2, x3, [sp, #(2 * 8)]
    SAVE_FRAME_REST
    mov     x0, sp
    mov     x1, #\kind
    bl      rust_trap_lower
    b       restore_and_eret
.endm

.macro CURRENT kind
    .balign 0x80
    sub     sp, sp, #FRAME
    stp     x2, x3, [sp, #(2 * 8)]
    SAVE_FRAME_REST
    mov     x0, sp
    mov     x1, #\kind
    bl      rust_trap_current
1:  wfe
    b       1b
.endm

.section .text
.balign 0x800
.global el2_vectors
el2_vectors:
    // Current EL with SP_EL0 (unused).
    CURRENT 0
    CURRENT 1
    CURRENT 2
    CURRENT 3
    // Current EL with SP_ELx.
    CURRENT 0
    CURRENT 1
    CURRENT 2
    CURRENT 3

    // Lower EL, AArch64: the partitions. Synchronous: x2, x3 go straight
    // into their TrapFrame slots (SP ends 16 bytes above the frame's base).
    .balign 0x80
    stp     x2, x3, [sp, #-(FRAME - 16)]!
    mrs     x2, esr_el2
    lsr     x3, x2, #26
    cmp     x3, #{EC_HVC64}
    b.ne    sync_slow
    movz    x3, #{CALL_BASE_HI}, lsl #16
    sub     x3, x0, x3
    cmp     x3, #{FAST_CALLS}
    b.hs    sync_slow
    adr     x2, fast_calls
    add     x2, x2, x3, lsl #2
    br      x2

    // IRQ.
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mrs     x0, icc_iar1_el1
    cmp     x0, #{TIMER_PPI}
    b.ne    irq_slow
    mrs     x1, ich_elrsr_el2
    ands    x1, x1, #{LR_MASK}
    b.eq    irq_slow
    b       timer_forward

    LOWER_OTHER 2
    LOWER_OTHER 3

    // Lower EL, AArch32: partitions run AArch64 only (HCR_EL2.RW = 1).
    CURRENT 0
    CURRENT 1
    CURRENT 2
    CURRENT 3

// Hypercalls answered in assembly, indexed by function id - CALL_BASE
// (`hallows_abi::call`); the others take the full path.
fast_calls:
    b       call_abi_version        // ABI_VERSION
    b       sync_slow               // CONSOLE_WRITE
    b       sync_slow               // EXIT
    b       sync_slow               // FAULT
    b       call_notify             // NOTIFY
.Lfast_calls_end:
.if (.Lfast_calls_end - fast_calls) != 4 * {FAST_CALLS}
.error "fast_calls does not have FAST_CALLS entries"
.endif

call_abi_version:
    mov     x0, #0
    mov     x1, #{ABI_VERSION}
    ldp     x2, x3, [sp], #(FRAME - 16)
    eret

// x1: the channel, an index into the caller's directory.
call_notify:
    cmp     x1, #{MAX_CHANNELS}
    b.hs    sync_slow
    stp     x4, x5, [sp, #(4 * 8 - 16)]
    stp     x6, x7, [sp, #(6 * 8 - 16)]
    mrs     x2, tpidr_el2           // this core's index
    adrp    x3, NOTIFY_ROUTES
    add     x3, x3, :lo12:NOTIFY_ROUTES
    add     x3, x3, x2, lsl #{ROUTES_CORE_SHIFT}
    add     x3, x3, x1, lsl #{ROUTE_SHIFT}
    ldp     x4, x5, [x3]            // the peer's pending word, this channel's bit
    cbz     x4, 3f                  // not a doorbell channel of the caller
    ldr     x6, [x3, #16]           // ICC_SGI1R_EL1 value for the peer's boot core
1:  ldaxr   w2, [x4]
    orr     w3, w2, w5
    stlxr   w7, w3, [x4]
    cbnz    w7, 1b
    tst     w2, w5
    b.ne    2f                      // already pending: doorbells coalesce
    dsb     ishst                   // the pending bit before the SGI
    msr     icc_sgi1r_el1, x6
2:  mov     x0, #0
    ldp     x6, x7, [sp, #(6 * 8 - 16)]
    ldp     x4, x5, [sp, #(4 * 8 - 16)]
    ldp     x2, x3, [sp], #(FRAME - 16)
    eret
3:  ldp     x6, x7, [sp, #(6 * 8 - 16)]
    ldp     x4, x5, [sp, #(4 * 8 - 16)]
    b       sync_slow

// A synchronous trap for Rust: SP 16 bytes above the frame, x2, x3 saved.
sync_slow:
    sub     sp, sp, #16
    SAVE_FRAME_REST
    mov     x0, sp
    mov     x1, #0
    bl      rust_trap_lower
    b       restore_and_eret

// x0: the acknowledged INTID (the timer's), x1: the free list registers.
timer_forward:
    msr     icc_eoir1_el1, x0       // priority drop; the guest's EOI deactivates
    ldr     x0, 9f
    tbnz    x1, #0, 0f
    tbnz    x1, #1, 1f
    tbnz    x1, #2, 2f
    msr     ich_lr3_el2, x0
    ldp     x0, x1, [sp], #16
    eret
0:  msr     ich_lr0_el2, x0
    ldp     x0, x1, [sp], #16
    eret
1:  msr     ich_lr1_el2, x0
    ldp     x0, x1, [sp], #16
    eret
2:  msr     ich_lr2_el2, x0
    ldp     x0, x1, [sp], #16
    eret
    .balign 8
9:  .quad   {TIMER_LR}

// x0: the acknowledged INTID; x0, x1 saved. Saves the rest of what a call
// may clobber.
irq_slow:
    stp     x2, x3, [sp, #-144]!
    stp     x4, x5, [sp, #16]
    stp     x6, x7, [sp, #32]
    stp     x8, x9, [sp, #48]
    stp     x10, x11, [sp, #64]
    stp     x12, x13, [sp, #80]
    stp     x14, x15, [sp, #96]
    stp     x16, x17, [sp, #112]
    stp     x18, x30, [sp, #128]
    bl      rust_irq_lower
    ldp     x18, x30, [sp, #128]
    ldp     x16, x17, [sp, #112]
    ldp     x14, x15, [sp, #96]
    ldp     x12, x13, [sp, #80]
    ldp     x10, x11, [sp, #64]
    ldp     x8, x9, [sp, #48]
    ldp     x6, x7, [sp, #32]
    ldp     x4, x5, [sp, #16]
    ldp     x2, x3, [sp], #144
    ldp     x0, x1, [sp], #16
    eret

restore_and_eret:
    ldp     x30, x9, [sp, #(30 * 8)]
    ldr     x10, [sp, #(32 * 8)]
    msr     elr_el2, x9
    msr     spsr_el2, x10
    ldp     x0, x1, [sp, #(0 * 8)]
    ldp     x2, x3, [sp, #(2 * 8)]
    ldp     x4, x5, [sp, #(4 * 8)]
    ldp     x6, x7, [sp, #(6 * 8)]
    ldp     x8, x9, [sp, #(8 * 8)]
    ldp     x10, x11, [sp, #(10 * 8)]
    ldp     x12, x13, [sp, #(12 * 8)]
    ldp     x14, x15, [sp, #(14 * 8)]
    ldp     x16, x17, [sp, #(16 * 8)]
    ldp     x18, x19, [sp, #(18 * 8)]
    ldp     x20, x21, [sp, #(20 * 8)]
    ldp     x22, x23, [sp, #(22 * 8)]
    ldp     x24, x25, [sp, #(24 * 8)]
    ldp     x26, x27, [sp, #(26 * 8)]
    ldp     x28, x29, [sp, #(28 * 8)]
    add     sp, sp, #FRAME
    eret

// enter_guest(frame: *const TrapFrame) -> !: start a vCPU from a prepared
// frame on a fresh stack position (the frame lives at the top of this
// core's stack).
.global enter_guest
enter_guest:
    mov     sp, x0
    b       restore_and_eret
