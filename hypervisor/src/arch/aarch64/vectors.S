// EL2 exception vectors.
//
// Traps from a partition (lower EL, AArch64) save the guest's general
// registers into a TrapFrame on this core's EL2 stack, call
// `rust_trap_lower`, restore and `eret`. The guest's EL1 state (SP_EL1,
// system registers) is banked and untouched by EL2 code. The hypervisor is
// built soft-float: EL2 code never touches FP/SIMD registers, so they need
// no saving.
//
// Exceptions taken from EL2 itself are hypervisor bugs: `rust_trap_current`
// reports and stops the machine.

.macro SAVE_FRAME
    sub     sp, sp, #(34 * 8)
    stp     x0, x1, [sp, #(0 * 8)]
    stp     x2, x3, [sp, #(2 * 8)]
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

.macro LOWER kind
    .balign 0x80
    SAVE_FRAME
    mov     x0, sp
    mov     x1, #\kind
    bl      rust_trap_lower
    b       restore_and_eret
.endm

.macro CURRENT kind
    .balign 0x80
    SAVE_FRAME
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
    // Lower EL, AArch64: the partitions.
    LOWER 0
    LOWER 1
    LOWER 2
    LOWER 3
    // Lower EL, AArch32: partitions run AArch64 only (HCR_EL2.RW = 1).
    CURRENT 0
    CURRENT 1
    CURRENT 2
    CURRENT 3

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
    add     sp, sp, #(34 * 8)
    eret

// enter_guest(frame: *const TrapFrame) -> !: start a vCPU from a prepared
// frame on a fresh stack position (the frame lives at the top of this
// core's stack).
.global enter_guest
enter_guest:
    mov     sp, x0
    b       restore_and_eret
