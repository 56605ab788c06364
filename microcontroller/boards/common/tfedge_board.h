/* tfedge board support: the C API a program built by tfedge.microcontroller.qemu.build can use.
 *
 * Output goes through newlib to the board's UART, which QEMU connects to its standard output, so
 * plain printf/puts/fwrite work; stdin reads what the harness sends (qemu.run's `stdin`).
 * Returning from main (or exit(code)) prints the exit status line and ends QEMU. There is no
 * semihosting: the program cannot open, write or delete files of the host.
 *
 * Instruction counting: QEMU runs with -icount shift=0, where every instruction takes 1 ns of
 * virtual time. SysTick (processor clock, free running from reset, wraps counted by its
 * interrupt) turns that into a 64-bit count:
 *
 *     tfedge_counter_start();
 *     work();
 *     uint64_t n = tfedge_counter_read();    // instructions executed by work(), see below
 *
 * The result is quantized to one SysTick tick (TFEDGE_INSNS_PER_TICK_NUM/_DEN instructions:
 * 40 on the 25 MHz MPS2 boards, 31.25 on the 32 MHz AN547) and includes a fixed overhead (the
 * instructions between the two SysTick reads; `tfedge.microcontroller.qemu.calibrate` measures
 * it). The same program gives the same count on every run.
 */
#ifndef TFEDGE_BOARD_H_
#define TFEDGE_BOARD_H_

#include <stddef.h>
#include <stdint.h>

#include "tfedge_board_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exit codes the board support itself uses (a program's own codes should stay below 200). */
#define TFEDGE_EXIT_FAULT 201 /* a fault exception (HardFault, UsageFault, ...) */

/* The last line a program prints: this, then its exit status (0-255) in decimal. */
#define TFEDGE_EXIT_MARKER "tfedge-exit-status: "

/* SysTick reload value (ticks per wrap - 1). Tests set a small one to exercise the wrap logic. */
#ifndef TFEDGE_SYSTICK_RELOAD
#define TFEDGE_SYSTICK_RELOAD 0xFFFFFFu
#endif

/* Raw SysTick ticks since reset, monotonic, 64 bit (wraps are counted by SysTick_Handler). */
uint64_t tfedge_ticks(void);

/* Start the instruction counter / instructions executed since the last tfedge_counter_start(). */
void tfedge_counter_start(void);
uint64_t tfedge_counter_read(void);

/* Print "label: <hex of n bytes>\n" (lower case, two digits a byte, no separators). */
void tfedge_print_hex(const char *label, const void *data, size_t n);

/* Print "tfedge: <key>=<value>\n"; RunResult.reports in the Python harness parses these lines. */
void tfedge_report(const char *key, uint64_t value);

/* Bytes of main stack touched so far (the stack is painted at reset) / of heap handed out. */
size_t tfedge_stack_used(void);
size_t tfedge_stack_size(void);
size_t tfedge_heap_used(void);

/* Flush stdio and end the program with `code` (0-255) as its exit status. */
void tfedge_exit(int code) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif

#endif /* TFEDGE_BOARD_H_ */
