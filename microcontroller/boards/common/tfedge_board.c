/* tfedge board support: C start-up, console on the UART, exit, SysTick instruction counter,
 * fault report.
 *
 * Linked with --specs=nosys.specs -nostartfiles: this file replaces crt0 and gives newlib the
 * system calls a program needs (write and read on the console, the heap, exit); everything
 * else fails with ENOSYS. The program has no semihosting and so no way to the host's files.
 */
#include "tfedge_board.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- linker symbols (common/tfedge_sections.ld) ---- */
extern uint32_t __tfedge_data_load[], __tfedge_data_start[], __tfedge_data_end[];
extern uint32_t __tfedge_bss_start[], __tfedge_bss_end[];
extern char __tfedge_heap_start[], __tfedge_heap_end[];
extern uint32_t __tfedge_stack_limit[], __tfedge_stack_top[];
extern char __tfedge_stack_guard[];
extern char __tfedge_text_start[], __tfedge_text_end[];

extern int main(void);
extern void __libc_init_array(void);

/* ---- core registers ---- */
#define TFEDGE_REG(addr) (*(volatile uint32_t *)(addr))
#define SYST_CSR TFEDGE_REG(0xE000E010u)
#define SYST_RVR TFEDGE_REG(0xE000E014u)
#define SYST_CVR TFEDGE_REG(0xE000E018u)
#define SCB_ICSR TFEDGE_REG(0xE000ED04u)
#define SCB_SHCSR TFEDGE_REG(0xE000ED24u)
#define SCB_CFSR TFEDGE_REG(0xE000ED28u)
#define SCB_HFSR TFEDGE_REG(0xE000ED2Cu)
#define SCB_MMFAR TFEDGE_REG(0xE000ED34u)
#define SCB_BFAR TFEDGE_REG(0xE000ED38u)
#define MPU_CTRL TFEDGE_REG(0xE000ED94u)
#define MPU_RNR TFEDGE_REG(0xE000ED98u)
#define MPU_RBAR TFEDGE_REG(0xE000ED9Cu)
#define MPU_RASR TFEDGE_REG(0xE000EDA0u)

#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE_CPU (1u << 2)
#define SCB_ICSR_PENDSTSET (1u << 26)
/* SHCSR: MEMFAULTENA, BUSFAULTENA, USGFAULTENA (and SECUREFAULTENA on v8-M) */
#define SCB_SHCSR_FAULTS ((1u << 16) | (1u << 17) | (1u << 18))
#define SCB_SHCSR_SECUREFAULT (1u << 19)

#define TFEDGE_STACK_PAINT 0x5AFEC0DEu

/* ---- console: the board's first UART (CMSDK APB UART), QEMU's -serial ----
 * No semihosting: a program can reach nothing of the host but this byte stream. */
#define UART_DATA TFEDGE_REG(TFEDGE_UART_BASE + 0x00u)
#define UART_STATE TFEDGE_REG(TFEDGE_UART_BASE + 0x04u)
#define UART_CTRL TFEDGE_REG(TFEDGE_UART_BASE + 0x08u)
#define UART_BAUDDIV TFEDGE_REG(TFEDGE_UART_BASE + 0x10u)
#define UART_STATE_TX_FULL (1u << 0)
#define UART_STATE_RX_FULL (1u << 1)
#define UART_CTRL_TX_RX_ENABLE 3u
#define SCB_AIRCR TFEDGE_REG(0xE000ED0Cu)
#define SCB_AIRCR_SYSRESETREQ (0x05FA0000u | (1u << 2))

static void tfedge_uart_init(void) {
    UART_BAUDDIV = 16u; /* the smallest divider the UART accepts; QEMU sends at once anyway */
    UART_CTRL = UART_CTRL_TX_RX_ENABLE;
}

static void tfedge_uart_put(char c) {
    while (UART_STATE & UART_STATE_TX_FULL) {
    }
    UART_DATA = (uint8_t)c;
}

static void tfedge_uart_puts(const char *s) {
    while (*s) tfedge_uart_put(*s++);
}

static uint8_t tfedge_uart_get(void) {
    while (!(UART_STATE & UART_STATE_RX_FULL)) {
    }
    return (uint8_t)UART_DATA;
}

/* The end of the program: a status line the harness reads (qemu.py: _EXIT_LINE), then a system
 * reset request, which ends QEMU under -no-reboot. */
static void __attribute__((noreturn)) tfedge_board_exit(int code) {
    char line[32];
    char *out = line;
    unsigned value = (unsigned)code & 0xFFu;
    const char *prefix = "\n" TFEDGE_EXIT_MARKER;
    while (*prefix) *out++ = *prefix++;
    if (value >= 100) *out++ = (char)('0' + value / 100);
    if (value >= 10) *out++ = (char)('0' + value / 10 % 10);
    *out++ = (char)('0' + value % 10);
    *out++ = '\n';
    *out = '\0';
    tfedge_uart_puts(line);
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
        SCB_AIRCR = SCB_AIRCR_SYSRESETREQ;
        __asm__ volatile("dsb" ::: "memory");
    }
}

/* ---- C start-up ---- */
void tfedge_reset_c(void) __attribute__((noreturn, used));
void tfedge_reset_c(void) {
    tfedge_uart_init();

    /* .data from its load image, .bss to zero (before any C code reads a global) */
    uint32_t *src = __tfedge_data_load, *dst = __tfedge_data_start;
    if (src != dst) {
        while (dst < __tfedge_data_end) *dst++ = *src++;
    }
    for (dst = __tfedge_bss_start; dst < __tfedge_bss_end; ++dst) *dst = 0;

    /* paint the unused stack below us, so tfedge_stack_used() can find the high-water mark */
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (dst = __tfedge_stack_limit; dst < sp - 16; ++dst) *dst = TFEDGE_STACK_PAINT;

    /* report MemManage/BusFault/UsageFault as themselves instead of escalating to HardFault */
    SCB_SHCSR |= SCB_SHCSR_FAULTS;
#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
    SCB_SHCSR |= SCB_SHCSR_SECUREFAULT;
#else
    /* v7-M has no stack limit register (startup.S sets MSPLIM on v8-M): make the linker
     * script's guard below the stack a no-access MPU region, so an overflow faults at once */
    uint32_t guard = (uint32_t)((char *)__tfedge_stack_limit - __tfedge_stack_guard);
    if (guard >= 32 && (guard & (guard - 1)) == 0 &&
        ((uint32_t)__tfedge_stack_guard & (guard - 1)) == 0) {
        MPU_RNR = 0;
        MPU_RBAR = (uint32_t)__tfedge_stack_guard;
        /* XN, AP = 000 (no access), SIZE = log2(size) - 1, ENABLE */
        MPU_RASR = (1u << 28) | ((uint32_t)(__builtin_ctz(guard) - 1) << 1) | 1u;
        MPU_CTRL = (1u << 2) | 1u; /* PRIVDEFENA: the default map everywhere else */
        __asm__ volatile("dsb\n\tisb" ::: "memory");
    }
#endif

    /* SysTick: processor clock, free running, interrupt on every wrap */
    SYST_CSR = 0;
    SYST_RVR = TFEDGE_SYSTICK_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = SYST_CSR_CLKSOURCE_CPU | SYST_CSR_TICKINT | SYST_CSR_ENABLE;

    __libc_init_array();
    exit(main());
}

/* newlib's __libc_init_array/__libc_fini_array call these, C++'s __cxa_atexit wants
 * __dso_handle; crti.o and crtbegin.o, which usually bring them, are not linked. */
void _init(void) {}
void _fini(void) {}
void *__dso_handle __attribute__((weak)) = 0;

/* ---- newlib's system calls: the console for stdin/stdout/stderr, nothing else ----
 * Linked with --specs=nosys.specs: every other call (open, unlink, ...) fails with ENOSYS. */
int _write(int fd, const char *data, int n) {
    if (fd != 1 && fd != 2) {
        errno = EBADF;
        return -1;
    }
    for (int i = 0; i < n; ++i) tfedge_uart_put(data[i]);
    return n;
}

/* stdin: the harness sends a 4-byte little-endian length, then that many bytes; after them the
 * program reads end-of-file. */
static int32_t tfedge_stdin_left = -1;

int _read(int fd, char *data, int n) {
    if (fd != 0) {
        errno = EBADF;
        return -1;
    }
    if (tfedge_stdin_left < 0) {
        uint32_t length = 0;
        for (int i = 0; i < 4; ++i) length |= (uint32_t)tfedge_uart_get() << (8 * i);
        tfedge_stdin_left = (int32_t)(length & 0x7FFFFFFFu);
    }
    int count = 0;
    while (count < n && tfedge_stdin_left > 0) {
        data[count++] = (char)tfedge_uart_get();
        --tfedge_stdin_left;
    }
    return count;
}

int _close(int fd) {
    (void)fd;
    return 0;
}

int _lseek(int fd, int offset, int whence) {
    (void)fd;
    (void)offset;
    (void)whence;
    errno = ESPIPE;
    return -1;
}

int _fstat(int fd, struct stat *st) {
    (void)fd;
    memset(st, 0, sizeof *st);
    st->st_mode = S_IFCHR;
    return 0;
}

int _isatty(int fd) { return fd >= 0 && fd <= 2; }

void _exit(int code) {
    tfedge_board_exit(code);
}

int _kill(int pid, int sig) {
    (void)pid;
    (void)sig;
    errno = EINVAL;
    return -1;
}

int _getpid(void) { return 1; }

/* ---- heap: newlib's malloc asks for memory here ---- */
static char *tfedge_heap_top = __tfedge_heap_start;

void *_sbrk(ptrdiff_t increment) {
    char *previous = tfedge_heap_top;
    if (increment > __tfedge_heap_end - tfedge_heap_top ||
        increment < __tfedge_heap_start - tfedge_heap_top) {
        errno = ENOMEM;
        return (void *)-1;
    }
    tfedge_heap_top += increment;
    return previous;
}

size_t tfedge_heap_used(void) { return (size_t)(tfedge_heap_top - __tfedge_heap_start); }

size_t tfedge_stack_size(void) {
    return (size_t)((char *)__tfedge_stack_top - (char *)__tfedge_stack_limit);
}

size_t tfedge_stack_used(void) {
    const uint32_t *p = __tfedge_stack_limit;
    while (p < __tfedge_stack_top && *p == TFEDGE_STACK_PAINT) ++p;
    return (size_t)((const char *)__tfedge_stack_top - (const char *)p);
}

/* ---- SysTick instruction counter ---- */
static volatile uint32_t tfedge_systick_wraps;
static uint64_t tfedge_counter_base;

void SysTick_Handler(void) { tfedge_systick_wraps = tfedge_systick_wraps + 1; }

/* SysTick counts down RELOAD .. 1, 0; the exception is pended when it reaches 0 and it reloads
 * on the next tick. So at count 0 the wrap may already be counted (handler ran) or pending. */
static inline __attribute__((always_inline)) uint64_t tfedge_ticks_inline(void) {
    uint32_t primask;
    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    uint32_t value = SYST_CVR;
    uint32_t wraps = tfedge_systick_wraps;
    if (SCB_ICSR & SCB_ICSR_PENDSTSET) {
        /* a wrap happened and its handler has not run yet: read again, after the wrap */
        value = SYST_CVR;
        wraps += 1;
    }
    __asm__ volatile("msr primask, %0" ::"r"(primask) : "memory");
    const uint64_t period = (uint64_t)TFEDGE_SYSTICK_RELOAD + 1u;
    if (value == 0) {
        /* reached 0, wrap counted, not reloaded yet: the last tick of the previous period
         * (or, with no wrap yet, the moment between enabling SysTick and its first tick) */
        return wraps == 0 ? 0 : (uint64_t)(wraps - 1u) * period + TFEDGE_SYSTICK_RELOAD;
    }
    return (uint64_t)wraps * period + (TFEDGE_SYSTICK_RELOAD - value);
}

uint64_t tfedge_ticks(void) { return tfedge_ticks_inline(); }

void tfedge_counter_start(void) { tfedge_counter_base = tfedge_ticks_inline(); }

uint64_t tfedge_counter_read(void) {
    uint64_t ticks = tfedge_ticks_inline() - tfedge_counter_base;
    return ticks * TFEDGE_INSNS_PER_TICK_NUM / TFEDGE_INSNS_PER_TICK_DEN;
}

/* ---- output ---- */
void tfedge_print_hex(const char *label, const void *data, size_t n) {
    static const char digits[] = "0123456789abcdef";
    const unsigned char *bytes = (const unsigned char *)data;
    char line[129];
    fputs(label, stdout);
    fputs(": ", stdout);
    while (n > 0) {
        size_t chunk = n < 64 ? n : 64;
        for (size_t i = 0; i < chunk; ++i) {
            line[2 * i] = digits[bytes[i] >> 4];
            line[2 * i + 1] = digits[bytes[i] & 15];
        }
        line[2 * chunk] = '\0';
        fputs(line, stdout);
        bytes += chunk;
        n -= chunk;
    }
    fputc('\n', stdout);
}

void tfedge_report(const char *key, uint64_t value) {
    printf("tfedge: %s=%llu\n", key, (unsigned long long)value);
}

void tfedge_exit(int code) {
    fflush(stdout);
    fflush(stderr);
    tfedge_board_exit(code);
}

/* ---- faults: print what happened without stdio (its state may be the broken thing) ---- */
static char *tfedge_put_str(char *out, const char *s) {
    while (*s) *out++ = *s++;
    return out;
}

static char *tfedge_put_hex(char *out, const char *name, uint32_t value) {
    static const char digits[] = "0123456789abcdef";
    out = tfedge_put_str(out, name);
    *out++ = '0';
    *out++ = 'x';
    for (int shift = 28; shift >= 0; shift -= 4) *out++ = digits[(value >> shift) & 15];
    return out;
}

void tfedge_fault_c(uint32_t pc, uint32_t lr, uint32_t exc_return) __attribute__((noreturn, used));
void tfedge_fault_c(uint32_t pc, uint32_t lr, uint32_t exc_return) {
    static const char *const names[16] = {
        "thread", "reset", "NMI", "HardFault", "MemManage", "BusFault", "UsageFault",
        "SecureFault", "reserved", "reserved", "reserved", "SVC", "DebugMon", "reserved",
        "PendSV", "SysTick"};
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    ipsr &= 0x1FFu;
    char message[256];
    char *out = tfedge_put_str(message, "\ntfedge: fault ");
    out = tfedge_put_str(out, ipsr < 16 ? names[ipsr] : "external interrupt");
    out = tfedge_put_hex(out, " exception=", ipsr);
    out = tfedge_put_hex(out, " pc=", pc);
    out = tfedge_put_hex(out, " lr=", lr);
    out = tfedge_put_hex(out, " cfsr=", SCB_CFSR);
    out = tfedge_put_hex(out, " hfsr=", SCB_HFSR);
    out = tfedge_put_hex(out, " bfar=", SCB_BFAR);
    out = tfedge_put_hex(out, " mmfar=", SCB_MMFAR);
    out = tfedge_put_hex(out, " exc_return=", exc_return);
    uint32_t cfsr = SCB_CFSR, mmfar = SCB_MMFAR;
    int in_guard = (cfsr & (1u << 7)) && mmfar >= (uint32_t)__tfedge_stack_guard &&
                   mmfar < (uint32_t)__tfedge_stack_limit;
    /* CFSR: STKOF (v8-M stack limit), MSTKERR (stacking hit the MPU guard) */
    if ((cfsr & (1u << 20)) || (cfsr & (1u << 4)) || in_guard) {
        out = tfedge_put_str(out, " stack overflow (raise stack_size)");
    }
    /* BKPT 0xAB: a semihosting call, which the harness does not serve (no host access) */
    if ((pc & 1u) == 0 && pc >= (uint32_t)__tfedge_text_start &&
        pc + 2u <= (uint32_t)__tfedge_text_end && *(const volatile uint16_t *)pc == 0xBEABu) {
        out = tfedge_put_str(out, " semihosting call (disabled: print with printf)");
    }
    *out++ = '\n';
    *out = '\0';
    tfedge_uart_puts(message);
    tfedge_board_exit(TFEDGE_EXIT_FAULT);
}
