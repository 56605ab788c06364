/* tfedge board support: vector table and reset handler, shared by every board.
 *
 * The reset handler does only what must happen before any C code runs: load the
 * stack pointer, set the v8-M stack limit (MSPLIM, so that a stack overflow faults
 * instead of silently overwriting the heap), and enable the FPU/MVE coprocessors
 * (CPACR CP10/CP11) because the compiler may use FP registers anywhere in C code
 * built for a hard-float ABI. Everything else (.data copy, .bss zeroing, SysTick,
 * the UART, constructors, main, exit) is in tfedge_board.c:tfedge_reset_c.
 */
#include "tfedge_board_config.h"

        .syntax unified
        .thumb

/* ---- vector table: 16 system exceptions + TFEDGE_NUM_IRQ external interrupts ---- */
        .section .vectors, "a", %progbits
        .align  9                           /* VTOR: aligned to the table size rounded up to 2^n */
        .global __tfedge_vectors
        .type   __tfedge_vectors, %object
__tfedge_vectors:
        .word   __tfedge_stack_top          /* 0: initial main stack pointer */
        .word   Reset_Handler               /* 1: reset */
        .word   NMI_Handler                 /* 2 */
        .word   HardFault_Handler           /* 3 */
        .word   MemManage_Handler           /* 4 */
        .word   BusFault_Handler            /* 5 */
        .word   UsageFault_Handler          /* 6 */
        .word   SecureFault_Handler         /* 7 (v8-M only; reserved on v7-M) */
        .word   0, 0, 0                     /* 8-10: reserved */
        .word   SVC_Handler                 /* 11 */
        .word   DebugMon_Handler            /* 12 */
        .word   0                           /* 13: reserved */
        .word   PendSV_Handler              /* 14 */
        .word   SysTick_Handler             /* 15 */
        .rept   TFEDGE_NUM_IRQ
        .word   Default_Handler             /* external interrupts: none are enabled */
        .endr
        .size   __tfedge_vectors, . - __tfedge_vectors

/* ---- reset ---- */
        .section .text.Reset_Handler, "ax", %progbits
        .global Reset_Handler
        .type   Reset_Handler, %function
        .thumb_func
Reset_Handler:
        ldr     r0, =__tfedge_stack_top
        msr     msp, r0
#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
        ldr     r0, =__tfedge_stack_limit
        msr     msplim, r0
#endif
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
        /* CPACR (0xE000ED88): full access to CP10 and CP11 = FPU, and MVE on v8.1-M */
        ldr     r0, =0xE000ED88
        ldr     r1, [r0]
        orr     r1, r1, #(0xF << 20)
        str     r1, [r0]
        dsb
        isb
#endif
        bl      tfedge_reset_c              /* never returns */
        b       .
        .size   Reset_Handler, . - Reset_Handler

/* ---- faults: report on the UART and exit (tfedge_board.c:tfedge_fault_c) ----
 * The stack limit (MSPLIM on v8-M, the MPU guard on v7-M) is lifted, the stacked PC and LR are
 * read, and MSP moves back to the top of the stack: the program is over, and the fault may have
 * been a stack overflow with no room left below. */
        .section .text.tfedge_fault_entry, "ax", %progbits
        .global tfedge_fault_entry
        .type   tfedge_fault_entry, %function
        .thumb_func
tfedge_fault_entry:
#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
        movs    r0, #0
        msr     msplim, r0
#else
        ldr     r0, =0xE000ED94             /* MPU_CTRL = 0: the stack guard off */
        movs    r1, #0
        str     r1, [r0]
        dsb
        isb
#endif
        tst     lr, #4                      /* EXC_RETURN bit 2: which stack holds the frame */
        ite     eq
        mrseq   r3, msp
        mrsne   r3, psp
        mov     r2, lr                      /* r2: EXC_RETURN */
        ldr     r0, [r3, #24]               /* r0: stacked PC */
        ldr     r1, [r3, #20]               /* r1: stacked LR */
        ldr     r3, =__tfedge_stack_top
        msr     msp, r3
        b       tfedge_fault_c
        .size   tfedge_fault_entry, . - tfedge_fault_entry

        .macro  weak_handler name
        .weak   \name
        .thumb_set \name, tfedge_fault_entry
        .endm

        weak_handler NMI_Handler
        weak_handler HardFault_Handler
        weak_handler MemManage_Handler
        weak_handler BusFault_Handler
        weak_handler UsageFault_Handler
        weak_handler SecureFault_Handler
        weak_handler SVC_Handler
        weak_handler DebugMon_Handler
        weak_handler PendSV_Handler
        weak_handler Default_Handler
