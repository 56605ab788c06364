/* tfedge board configuration: mps3-an547 (cortex-m55). Included by C and by startup.S. */
#ifndef TFEDGE_BOARD_CONFIG_H_
#define TFEDGE_BOARD_CONFIG_H_

#define TFEDGE_BOARD_NAME "mps3-an547"
#define TFEDGE_CPU_NAME "cortex-m55"
/* External interrupt lines of the NVIC on this FPGA image (size of the vector table). */
#define TFEDGE_NUM_IRQ 96
/* SysTick runs from the processor clock: 32000000 Hz in QEMU. */
#define TFEDGE_CPU_HZ 32000000
/* Under qemu-system-arm -icount shift=0 an instruction takes 1 ns of virtual time, so one
 * SysTick tick is 1e9 / TFEDGE_CPU_HZ instructions. Measured by
 * tfedge.microcontroller.qemu.calibrate and checked by tests/microcontroller/test_qemu.py. */
#define TFEDGE_INSNS_PER_TICK_NUM 125
#define TFEDGE_INSNS_PER_TICK_DEN 4

/* The console: UART0 (CMSDK APB UART) at its secure alias (NS 0x49303000), QEMU's first -serial. */
#define TFEDGE_UART_BASE 0x59303000u

#endif  /* TFEDGE_BOARD_CONFIG_H_ */
