/* tfedge board configuration: mps2-an500 (cortex-m7). Included by C and by startup.S. */
#ifndef TFEDGE_BOARD_CONFIG_H_
#define TFEDGE_BOARD_CONFIG_H_

#define TFEDGE_BOARD_NAME "mps2-an500"
#define TFEDGE_CPU_NAME "cortex-m7"
/* External interrupt lines of the NVIC on this FPGA image (size of the vector table). */
#define TFEDGE_NUM_IRQ 32
/* SysTick runs from the processor clock: 25000000 Hz in QEMU. */
#define TFEDGE_CPU_HZ 25000000
/* Under qemu-system-arm -icount shift=0 an instruction takes 1 ns of virtual time, so one
 * SysTick tick is 1e9 / TFEDGE_CPU_HZ instructions. Measured by
 * tfedge.microcontroller.qemu.calibrate and checked by tests/microcontroller/test_qemu.py. */
#define TFEDGE_INSNS_PER_TICK_NUM 40
#define TFEDGE_INSNS_PER_TICK_DEN 1

/* The console: UART0 (CMSDK APB UART), QEMU's first -serial. */
#define TFEDGE_UART_BASE 0x40004000u

#endif  /* TFEDGE_BOARD_CONFIG_H_ */
