// Entry points of the hypervisor image.
//
// The first 64 bytes are an arm64 Linux Image header, so that QEMU's
// `-kernel` (and U-Boot's `booti`, and UEFI stubs later) load the flat
// image at RAM base + text_offset and pass the DTB address in x0.

.section .text.boot, "ax"
.global _start
_start:
    b       primary_entry
    .long   0
    .quad   0x200000                // text_offset: 2 MiB above the start of RAM
    .quad   0x200000                // image_size: `hallows build` writes the real one
    .quad   0                       // flags: little endian, 2 MiB aligned base
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .long   0

primary_entry:
    // Only EL2 is supported: anything else parks.
    mrs     x9, CurrentEL
    cmp     x9, #(2 << 2)
    b.ne    park
    mov     x19, x0                 // DTB
    mov     x20, #0                 // core index 0
    // Zero .bss (small; the large pools live in .noinit), 64 bytes at a
    // time (link.ld aligns both ends). The MMU is off, so plain aligned
    // stores: no `dc zva` on Device memory.
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    stp     xzr, xzr, [x9]
    stp     xzr, xzr, [x9, #16]
    stp     xzr, xzr, [x9, #32]
    stp     xzr, xzr, [x9, #48]
    add     x9, x9, #64
    b       1b
2:  b       common_entry

// Started by PSCI CPU_ON at EL2 with x0 = the core index we passed as context.
.global secondary_entry
secondary_entry:
    mov     x19, #0
    mov     x20, x0
common_entry:
    // Stack: one HV_STACK_SIZE slice of HV_STACKS per core index.
    adrp    x9, HV_STACKS
    add     x9, x9, :lo12:HV_STACKS
    mov     x10, #{HV_STACK_SIZE}
    madd    x9, x20, x10, x9
    add     sp, x9, x10
    adrp    x9, el2_vectors
    add     x9, x9, :lo12:el2_vectors
    msr     vbar_el2, x9
    isb
    mov     x0, x19
    mov     x1, x20
    bl      rust_core_entry
park:
    wfe
    b       park
