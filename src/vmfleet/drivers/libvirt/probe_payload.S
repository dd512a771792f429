/*
 * The KVM boot probe's payload, as assembly: the same 16 KiB image that
 * `probe.probe_payload()` (rounds=4) assembles by hand, byte for byte.
 * The image is read only from Python; this listing is here so a reader can
 * check the bytes. To compare (GNU binutils; tests/test_libvirt_host.py does it
 * when `as` and `objcopy` are installed):
 *
 *   as --32 -o p.o probe_payload.S && objcopy -O binary -j .text p.o p.bin
 *
 * QEMU loads the image at 1 MiB as a multiboot "kernel" (after SeaBIOS) and
 * jumps to `entry` in 32-bit protected mode, paging off. The code prints on
 * COM1 (port 0x3f8), turns on PAE paging and long mode with a 1 GiB identity
 * map of 2 MiB pages, prints again from 64-bit code, copies 16 MiB forward and
 * backward `ROUNDS` times (what makes a broken nested KVM show: memory-heavy
 * code crawls there), prints the marker vmfleet waits for and halts.
 */
        .intel_syntax noprefix
        .set LOAD, 0x100000         /* where QEMU's multiboot loader puts the image */
        .set IMAGE_SIZE, 0x4000
        .set ROUNDS, 4              /* PROBE_COPY_ROUNDS */
        .set COPY_SRC, 0x1000000    /* 16 MiB */
        .set COPY_DST, 0x2000000    /* 32 MiB; the guest has 64 MiB */
        .set QWORDS, 0x200000       /* 16 MiB in 8-byte moves */
        .set MAGIC, 0x1BADB002
        .set FLAGS, 0x00010000      /* bit 16: load addresses are in the header (no ELF) */

        .text
        .code32
image:
/* 0x000: multiboot header */
        .long MAGIC, FLAGS, -(MAGIC + FLAGS)
        .long LOAD, LOAD, LOAD + IMAGE_SIZE, 0, LOAD + (entry - image)

/* 0x020: 32-bit protected mode */
entry:
        mov esi, LOAD + (msg32 - image)     /* print "VMFLEET-PROBE-32" */
1:      lodsb
        test al, al
        jz 2f
        mov dx, 0x3f8
        out dx, al
        jmp 1b
2:      mov eax, LOAD + (pml4 - image)
        mov cr3, eax                        /* page tables */
        mov eax, cr4
        or eax, 0x20                        /* CR4.PAE */
        mov cr4, eax
        mov ecx, 0xC0000080                 /* EFER */
        rdmsr
        or eax, 0x100                       /* EFER.LME */
        wrmsr
        lgdt [LOAD + (gdtr - image)]
        mov eax, cr0
        or eax, 0x80000000                  /* CR0.PG: long mode is active */
        mov cr0, eax
        ljmp 0x08, LOAD + (long64 - image)  /* into the 64-bit code segment */

/* 0x069: 64-bit long mode */
        .code64
long64:
        mov esi, LOAD + (msg64 - image)     /* print "VMFLEET-PROBE-64" */
1:      lodsb
        test al, al
        jz 2f
        mov dx, 0x3f8
        out dx, al
        jmp 1b
2:      mov ebx, ROUNDS
copy:   cld                                 /* 16 MiB forward */
        mov esi, COPY_SRC
        mov edi, COPY_DST
        mov ecx, QWORDS
        rep movsq
        std                                 /* and backward */
        mov esi, COPY_SRC + 0xFFFFF8
        mov edi, COPY_DST + 0xFFFFF8
        mov ecx, QWORDS
        rep movsq
        cld
        dec ebx
        .byte 0x0F, 0x85                    /* jnz copy, with a 32-bit offset */
        .long copy - (. + 4)
        mov esi, LOAD + (msg_ok - image)    /* print PROBE_DONE_MARKER */
1:      lodsb
        test al, al
        jz 2f
        mov dx, 0x3f8
        out dx, al
        jmp 1b
2:      cli
3:      hlt
        jmp 3b

/* 0x800: data */
        .org 0x800
msg32:  .ascii "VMFLEET-PROBE-32\n"
        .org 0x820
msg64:  .ascii "VMFLEET-PROBE-64\n"
        .org 0x840
msg_ok: .ascii "VMFLEET-PROBE-OK\n"
        .org 0x880
gdt:    .quad 0                             /* null descriptor */
        .quad 0x00AF9A000000FFFF            /* selector 0x08: 64-bit ring-0 code */
        .org 0x8A0
gdtr:   .word 15                            /* limit, then base */
        .long LOAD + (gdt - image)

/* 0x1000: page tables, present + writable; the PD maps 512 x 2 MiB (PS bit) */
        .org 0x1000
pml4:   .quad LOAD + (pdpt - image) + 0x3
        .org 0x2000
pdpt:   .quad LOAD + (pd - image) + 0x3
        .org 0x3000
pd:
        .set page, 0
        .rept 512
        .quad (page << 21) | 0x83
        .set page, page + 1
        .endr
        .org IMAGE_SIZE
