// Entry points of the x86_64 hypervisor image (Intel syntax).
//
// The image starts with a multiboot1 header whose address fields (the
// "a.out kludge", flag bit 16) tell the loader to copy the flat file to
// __hv_start and jump to _start32: QEMU's `-kernel` does exactly that, and so
// does our own Bochs boot sector. Entry is in 32-bit protected mode, paging
// off, eax = multiboot magic, ebx = multiboot information.

.section .text.boot, "ax"
.code32
.balign 4
mb_header:
    .long 0x1BADB002
    .long 0x00010002                    // bit 1: memory map, bit 16: addresses below
    .long -(0x1BADB002 + 0x00010002)
    .long mb_header                     // header_addr
    .long __hv_start                    // load_addr
    .long 0                             // load_end_addr: the whole file
    .long 0                             // bss_end_addr: nothing to clear
    .long _start32                      // entry_addr

.global _start32
_start32:
    cli
    cld
    mov     edi, eax                    // multiboot magic
    mov     esi, ebx                    // multiboot information
    lgdt    [gdt_ptr32]
    mov     ax, 0x10
    mov     ds, ax
    mov     es, ax
    mov     ss, ax
    // Boot page tables: the first 4 GiB identity-mapped with 2 MiB pages,
    // write-back below 3 GiB, uncacheable above (local APIC, PCI holes).
    mov     ebx, offset BOOT_TABLES
    xor     eax, eax
    mov     ecx, 2 * 1024               // PML4 and PDPT: 2 pages of dwords
    push    edi
    mov     edi, ebx
    rep     stosd
    pop     edi
    mov     dword ptr [ebx], offset BOOT_TABLES + 4096 + 3
    mov     edx, offset BOOT_TABLES + 4096
    mov     eax, offset BOOT_TABLES + 8192 + 3
    mov     [edx], eax
    add     eax, 4096
    mov     [edx + 8], eax
    add     eax, 4096
    mov     [edx + 16], eax
    add     eax, 4096
    mov     [edx + 24], eax
    mov     edx, offset BOOT_TABLES + 8192
    xor     ecx, ecx
1:  mov     eax, ecx
    shl     eax, 21
    or      eax, 0x83                   // present, writable, 2 MiB
    cmp     ecx, 1536
    jb      2f
    or      eax, 0x18                   // PCD | PWT: uncacheable
2:  mov     [edx + ecx * 8], eax
    mov     dword ptr [edx + ecx * 8 + 4], 0
    inc     ecx
    cmp     ecx, 2048
    jb      1b
    mov     eax, ebx
    mov     cr3, eax
    // Long mode: PAE, then EFER.LME and NXE (the nested tables use NX),
    // then paging (with write protection for the hypervisor itself).
    mov     eax, cr4
    or      eax, (1 << 5)
    mov     cr4, eax
    mov     ecx, 0xC0000080
    rdmsr
    or      eax, (1 << 8) | (1 << 11)
    wrmsr
    mov     eax, cr0
    or      eax, (1 << 31) | (1 << 16) | 1
    mov     cr0, eax
    mov     eax, offset long_entry
    push    0x08
    push    eax
    retf

.code64
long_entry:
    mov     ax, 0x10
    mov     ds, ax
    mov     es, ax
    mov     ss, ax
    xor     eax, eax
    mov     fs, ax
    mov     gs, ax
    // Zero .bss (small; the large pools live in .noinit).
    push    rdi
    mov     rdi, offset __bss_start
    mov     rcx, offset __bss_end
    sub     rcx, rdi
    shr     rcx, 3
    xor     eax, eax
    rep     stosq
    pop     rdi
    // Core 0's stack.
    mov     rsp, offset HV_STACKS + {HV_STACK_SIZE}
    xor     ebp, ebp
    mov     edi, edi                    // magic (zero-extended)
    mov     esi, esi                    // multiboot information
    xor     edx, edx                    // core index 0
    call    rust_core_entry
3:  cli
    hlt
    jmp     3b

// An application processor, after the real-mode trampoline brought it to
// long mode on the boot page tables: rdi = core index, rsp = its stack.
.global ap_long_entry
ap_long_entry:
    mov     ax, 0x10
    mov     ds, ax
    mov     es, ax
    mov     ss, ax
    xor     eax, eax
    mov     fs, ax
    mov     gs, ax
    mov     rdx, rdi
    xor     edi, edi
    xor     esi, esi
    call    rust_core_entry
4:  cli
    hlt
    jmp     4b

.section .rodata
.balign 16
.global hv_gdt
hv_gdt:
    .quad 0                             // null
    .quad 0x00AF9A000000FFFF            // 0x08: 64-bit code
    .quad 0x00CF92000000FFFF            // 0x10: data
    .quad 0x00CF9A000000FFFF            // 0x18: 32-bit code (AP trampoline)
hv_gdt_end:
gdt_ptr32:
    .word hv_gdt_end - hv_gdt - 1
    .long hv_gdt


// The application processors' start-up code. The boot processor copies it
// to 0x8000 (below 1 MiB where a SIPI can point, outside every partition's
// RAM) and fills in the four parameter words before each INIT-SIPI-SIPI.
// Real mode -> protected mode -> long mode on the boot page tables, then
// ap_long_entry with rdi = core index on that core's stack. Fixed offsets:
// 8 CR3, 16 stack top, 24 core index, 32 entry, 40 GDT, 72 GDT pointer.
.section .rodata.ap_trampoline, "a"
.code16
.global ap_trampoline_start
ap_trampoline_start:
    jmp     tramp_real
    .org    ap_trampoline_start + 8
    .quad   0                           // 8: CR3
    .quad   0                           // 16: stack top
    .quad   0                           // 24: core index
    .quad   0                           // 32: entry
    .quad   0                           // 40: GDT
    .quad   0x00AF9A000000FFFF
    .quad   0x00CF92000000FFFF
    .quad   0x00CF9A000000FFFF
    .word   31                          // 72: GDT pointer
    .long   0x8000 + 40
    .org    ap_trampoline_start + 80
tramp_real:
    cli
    cld
    xor     ax, ax
    mov     ds, ax
    lgdt    [0x8000 + 72]
    mov     eax, cr0
    or      eax, 1
    mov     cr0, eax
    // jmp far 0x18:tramp_pm32 (32-bit offset)
    .byte   0x66, 0xEA
    .long   0x8000 + (tramp_pm32 - ap_trampoline_start)
    .word   0x18
.code32
tramp_pm32:
    mov     ax, 0x10
    mov     ds, ax
    mov     es, ax
    mov     ss, ax
    mov     eax, [0x8000 + 8]
    mov     cr3, eax
    mov     eax, cr4
    or      eax, (1 << 5)
    mov     cr4, eax
    mov     ecx, 0xC0000080
    rdmsr
    or      eax, (1 << 8) | (1 << 11)
    wrmsr
    mov     eax, cr0
    or      eax, (1 << 31) | (1 << 16) | 1
    mov     cr0, eax
    // jmp far 0x08:tramp_lm64
    .byte   0xEA
    .long   0x8000 + (tramp_lm64 - ap_trampoline_start)
    .word   0x08
.code64
tramp_lm64:
    mov     rsp, [0x8000 + 16]
    mov     rdi, [0x8000 + 24]
    mov     rax, [0x8000 + 32]
    jmp     rax
.global ap_trampoline_end
ap_trampoline_end:

// A BIOS boot sector for machines without a multiboot loader (Bochs). It is
// not executed from the image: `hallows` copies these 512 bytes to sector 0
// of a disk image, the hypervisor image after it, and patches the sector
// count at offset 8. At 0x7c00 in real mode it records the BIOS memory map
// (E820) as a multiboot information block at 0x5000 (map at 0x6000), copies
// the image to 1 MiB (INT 13h extended reads into a bounce buffer, then
// "unreal mode" copies), and enters `_start32` in protected mode as a
// multiboot loader would. Fixed offsets: 8 sector count, 16 disk address
// packet, 32 GDT, 64 GDT pointer, 72 drive, 76 destination.
.section .rodata.bootsector, "a"
.code16
.global bios_boot_sector
bios_boot_sector:
    jmp     bs_code
    .org    bios_boot_sector + 8
    .long   0                           // 8: sectors to load (patched)
    .org    bios_boot_sector + 16
    .byte   16, 0                       // 16: disk address packet
    .word   64                          //     sectors per read
    .word   0, 0x1000                   //     buffer 0x1000:0000
    .quad   1                           //     LBA
    .quad   0                           // 32: GDT
    .quad   0x00AF9A000000FFFF
    .quad   0x00CF92000000FFFF
    .quad   0x00CF9A000000FFFF
    .word   31                          // 64: GDT pointer
    .long   0x7c00 + 32
    .org    bios_boot_sector + 72
    .byte   0                           // 72: drive
    .org    bios_boot_sector + 76
    .long   0x100000                    // 76: destination
    .org    bios_boot_sector + 80
bs_code:
    cli
    xor     ax, ax
    mov     ds, ax
    mov     es, ax
    mov     ss, ax
    mov     sp, 0x7c00
    mov     [0x7c00 + 72], dl
    // Multiboot information at 0x5000 (zeroed), memory map at 0x6000.
    mov     di, 0x5000
    mov     cx, 0x80
    xor     al, al
    rep     stosb
    mov     di, 0x6004
    xor     ebx, ebx
1:  mov     eax, 0xE820
    mov     ecx, 20
    mov     edx, 0x534D4150
    int     0x15
    jc      2f
    mov     dword ptr [di - 4], 20
    add     di, 24
    test    ebx, ebx
    jnz     1b
2:  lea     ax, [di - 4]
    sub     ax, 0x6000
    mov     [0x5000 + 44], ax
    mov     word ptr [0x5000 + 48], 0x6000
    mov     word ptr [0x5000], 0x40
    // A20 on (port 0x92), then unreal mode: FS with a 4 GiB limit.
    in      al, 0x92
    or      al, 2
    and     al, 0xFE
    out     0x92, al
    lgdt    [0x7c00 + 64]
    mov     eax, cr0
    or      al, 1
    mov     cr0, eax
    mov     bx, 0x10
    mov     fs, bx
    and     al, 0xFE
    mov     cr0, eax
    xor     ax, ax
    mov     ds, ax
    sti
3:  cmp     dword ptr [0x7c00 + 8], 0
    jle     5f
    mov     si, 0x7c00 + 16
    mov     ah, 0x42
    mov     dl, [0x7c00 + 72]
    int     0x13
    jc      6f
    mov     esi, 0x10000
    mov     edi, [0x7c00 + 76]
    mov     ecx, 64 * 512 / 4
4:  mov     eax, fs:[esi]
    mov     fs:[edi], eax
    add     esi, 4
    add     edi, 4
    dec     ecx
    jnz     4b
    mov     [0x7c00 + 76], edi
    add     dword ptr [0x7c00 + 24], 64
    sub     dword ptr [0x7c00 + 8], 64
    jmp     3b
5:  cli
    lgdt    [0x7c00 + 64]
    mov     eax, cr0
    or      al, 1
    mov     cr0, eax
    .byte   0x66, 0xEA
    .long   0x7c00 + (bs_pm32 - bios_boot_sector)
    .word   0x18
6:  mov     ax, 0x0e45                  // 'E': the disk read failed
    int     0x10
7:  hlt
    jmp     7b
.code32
bs_pm32:
    mov     ax, 0x10
    mov     ds, ax
    mov     es, ax
    mov     fs, ax
    mov     ss, ax
    mov     esp, 0x7c00
    mov     ecx, [0x100000 + 28]        // the multiboot header's entry_addr
    mov     eax, 0x2BADB002
    mov     ebx, 0x5000
    jmp     ecx
    .org    bios_boot_sector + 510
    .byte   0x55, 0xAA
.global bios_boot_sector_end
bios_boot_sector_end:
.code64
