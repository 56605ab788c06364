/* tfedge board support: calibration of the SysTick instruction counter.
 *
 * Built and run by tfedge.microcontroller.qemu.calibrate(); prints "tfedge: key=value" lines:
 *   spin_ticks_<n>  raw SysTick ticks around spin(n), a loop of exactly 2 instructions an
 *                   iteration (subs; bne), for a short and a long n: the difference gives the
 *                   instructions per tick
 *   spin_count_<n>  tfedge_counter_read() around spin(n): 2n instructions, the loop's call and
 *                   return, and the counter overhead
 *   empty_<i>       tfedge_counter_read() right after tfedge_counter_start(): the counter
 *                   overhead (instructions between its two SysTick reads), 8 times
 * Under -icount shift=0 the counts are quantized to a tick; calibrate() also runs this program
 * with a larger shift, where a tick is a fraction of an instruction and the counts are exact.
 */
#include <stdint.h>
#include <stdio.h>

#include "tfedge_board.h"

#define TFEDGE_SPIN_SHORT 1000u
#define TFEDGE_SPIN_LONG 251000u

/* r0 iterations of "subs r0, #1; bne": 2 * r0 instructions, plus this function's bx lr. */
__attribute__((naked, noinline)) static void tfedge_spin(uint32_t iterations) {
    (void)iterations;
    __asm__ volatile(
        "1: subs r0, r0, #1\n\t"
        "   bne 1b\n\t"
        "   bx lr\n\t");
}

static void tfedge_measure_spin(uint32_t n) {
    char key[32];
    uint64_t t0 = tfedge_ticks();
    tfedge_spin(n);
    uint64_t t1 = tfedge_ticks();
    tfedge_counter_start();
    tfedge_spin(n);
    uint64_t count = tfedge_counter_read();
    snprintf(key, sizeof key, "spin_ticks_%lu", (unsigned long)n);
    tfedge_report(key, t1 - t0);
    snprintf(key, sizeof key, "spin_count_%lu", (unsigned long)n);
    tfedge_report(key, count);
}

int main(void) {
    char key[32];
    uint64_t empty[8];
    for (uint32_t i = 0; i < 8; ++i) {
        tfedge_counter_start();
        empty[i] = tfedge_counter_read();
    }
    for (uint32_t i = 0; i < 8; ++i) {
        snprintf(key, sizeof key, "empty_%lu", (unsigned long)i);
        tfedge_report(key, empty[i]);
    }
    tfedge_measure_spin(TFEDGE_SPIN_SHORT);
    tfedge_measure_spin(TFEDGE_SPIN_LONG);
    tfedge_report("insns_per_tick_num", TFEDGE_INSNS_PER_TICK_NUM);
    tfedge_report("insns_per_tick_den", TFEDGE_INSNS_PER_TICK_DEN);
    tfedge_report("systick_reload", TFEDGE_SYSTICK_RELOAD);
    tfedge_report("ticks_at_exit", tfedge_ticks());
    return 0;
}
