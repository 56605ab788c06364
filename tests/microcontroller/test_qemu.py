"""The Cortex-M harness: arm-none-eabi-gcc builds run under qemu-system-arm on every board.

Skipped, with the reason, only when the toolchain is missing (CI installs it). Each QEMU run takes
a fraction of a second; programs are built once per module and board.
"""

import fractions
import pathlib
import re
import shutil
import struct
import subprocess
import time

import numpy as np
import pytest

from tfedge.microcontroller import qemu

BOARDS = list(qemu.BOARDS)
BLOB_BYTES = 4 * 1024 * 1024  # the weights a model may have: must fit on every board
ARENA_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def toolchain():
    try:
        return qemu.find_toolchain()
    except qemu.ToolchainError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("mcu")


def _build(toolchain, workdir, name, sources, board, **kwargs):
    """Write {filename: text} into a folder of its own and build it for `board`."""
    folder = workdir / f"{name}-{board}"
    folder.mkdir(exist_ok=True)
    paths = []
    for filename, text in sources.items():
        path = folder / filename
        path.write_text(text)
        paths.append(path)
    return qemu.build(paths, board=board, output_dir=folder / "build", name=name,
                      toolchain=toolchain, **kwargs)


# ---- hello: output and exit status ---------------------------------------------------------

HELLO = r"""
#include <stdio.h>
#include "tfedge_board.h"
int main(void) {
    printf("hello from %s (%s)\n", TFEDGE_BOARD_NAME, TFEDGE_CPU_NAME);
    return 42;
}
"""


@pytest.mark.parametrize("board", BOARDS)
def test_hello_prints_and_exits_with_its_status(toolchain, workdir, board):
    exe = _build(toolchain, workdir, "hello", {"hello.c": HELLO}, board)
    result = qemu.run(exe, timeout_s=20, toolchain=toolchain)
    cpu = qemu.BOARDS[board].cpu
    assert result.stdout == f"hello from {board} ({cpu})\n"
    assert result.exit_code == 42
    assert result.seconds < 5
    with pytest.raises(qemu.QemuError, match="status 42"):
        result.check()
    assert result.check(42) is result


def test_sizes_agree_with_binutils(toolchain, workdir):
    exe = _build(toolchain, workdir, "hello", {"hello.c": HELLO}, "mps2-an386")
    size = shutil.which("arm-none-eabi-size")
    if size is None:
        pytest.skip("arm-none-eabi-size is not on PATH")
    out = subprocess.run([size, "-A", "-d", str(exe.path)], capture_output=True, text=True,
                         check=True).stdout
    sections = {m[0]: int(m[1]) for m in re.findall(r"^(\.\S+)\s+(\d+)\s+\d+$", out, re.M)}
    sizes = exe.sizes
    text = sum(v for k, v in sections.items()
               if k in (".vectors", ".text", ".ARM.exidx", ".ARM.extab", ".init_array",
                        ".fini_array", ".preinit_array"))
    assert (sizes.text, sizes.rodata, sizes.data, sizes.bss) == (
        text, sections[".rodata"], sections[".data"], sections[".bss"])
    # the linker script's defaults; the M4 board's stack has a 1 KiB MPU guard below it
    assert sections[".stack_guard"] == 1024
    assert sizes.heap == 32 * 1024 and sizes.stack == 64 * 1024 + 1024
    assert sizes.flash == sizes.text + sizes.rodata + sizes.data
    assert sizes.ram == sizes.data + sizes.bss + sizes.heap + sizes.stack
    assert exe.map_path.is_file() and "__tfedge_stack_top" in exe.map_path.read_text()


def test_stack_and_heap_sizes_can_be_set(toolchain, workdir):
    exe = _build(toolchain, workdir, "hello_small", {"hello.c": HELLO}, "mps3-an547",
                 stack_size=8192, heap_size=4096)
    assert (exe.sizes.stack, exe.sizes.heap) == (8192, 4096)
    assert qemu.run(exe, toolchain=toolchain).exit_code == 42


# ---- big constant array (weights) and big .bss array (arena) ------------------------------

BIG = r"""
#include <stdio.h>
#include <string.h>
#include "tfedge_board.h"
extern const unsigned char blob[], blob_end[];
static unsigned char arena[ARENA_BYTES];            /* .bss: must start zeroed */
static unsigned int initialised[4] = {0x11223344u, 0x55667788u, 0x99aabbccu, 0xddeeff00u};

/* sum of byte * (position + 1), mod 2**32: sees every byte and where it is */
static uint32_t checksum(const unsigned char *p, const unsigned char *end) {
    uint32_t sum = 0, weight = 1;
    for (; p < end; ++p) sum += (uint32_t)*p * weight++;
    return sum;
}

int main(void) {
    size_t nonzero = 0;
    for (size_t i = 0; i < sizeof arena; ++i) nonzero += arena[i] != 0;
    tfedge_counter_start();
    uint32_t weights = checksum(blob, blob_end);
    uint64_t insns = tfedge_counter_read();
    for (size_t i = 0; i < sizeof arena; ++i) arena[i] = blob[i] ^ blob[sizeof arena + i];
    printf("blob_bytes=%lu\n", (unsigned long)(blob_end - blob));
    printf("weights_sum=%08lx\n", (unsigned long)weights);
    printf("arena_sum=%08lx\n", (unsigned long)checksum(arena, arena + sizeof arena));
    printf("arena_nonzero_at_start=%lu\n", (unsigned long)nonzero);
    tfedge_print_hex("data", initialised, sizeof initialised);
    tfedge_report("checksum_insns", insns);
    tfedge_report("stack_used", tfedge_stack_used());
    tfedge_report("stack_size", tfedge_stack_size());
    tfedge_report("heap_used", tfedge_heap_used());
    tfedge_exit(3);
}
"""

BLOB_ASM = """
        .section .rodata.blob, "a", %progbits
        .balign 16
        .global blob
blob:   .incbin "{path}"
        .global blob_end
blob_end:
"""


def _checksum(data: np.ndarray) -> int:
    weights = np.arange(1, data.size + 1, dtype=np.uint64)
    return int((data.astype(np.uint64) * weights).sum() % 2**32)


@pytest.fixture(scope="module")
def blob(workdir):
    data = np.random.default_rng(0).integers(0, 256, BLOB_BYTES, dtype=np.uint8)
    path = workdir / "blob.bin"
    path.write_bytes(data.tobytes())
    arena = data[:ARENA_BYTES] ^ data[ARENA_BYTES:2 * ARENA_BYTES]
    return path, _checksum(data), _checksum(arena)


@pytest.fixture(scope="module")
def big_runs(toolchain, workdir, blob):
    """board -> (Executable, [RunResult, RunResult]): the program run twice."""
    path, _, _ = blob
    runs = {}
    for board in BOARDS:
        exe = _build(toolchain, workdir, "big",
                     {"big.c": BIG, "blob.S": BLOB_ASM.format(path=path)}, board,
                     defines={"ARENA_BYTES": f"{ARENA_BYTES}u"})
        runs[board] = exe, [qemu.run(exe, timeout_s=30, toolchain=toolchain) for _ in range(2)]
    return runs


@pytest.mark.parametrize("board", BOARDS)
def test_big_rodata_and_bss_arrays(big_runs, blob, board):
    exe, (result, _) = big_runs[board]
    _, weights_sum, arena_sum = blob
    assert result.exit_code == 3, result.stdout + result.stderr
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert int(lines["blob_bytes"]) == BLOB_BYTES
    assert int(lines["weights_sum"], 16) == weights_sum
    assert int(lines["arena_sum"], 16) == arena_sum
    assert int(lines["arena_nonzero_at_start"]) == 0
    assert result.hex("data") == struct.pack("<4I", 0x11223344, 0x55667788, 0x99AABBCC,
                                             0xDDEEFF00)
    assert exe.sizes.rodata >= BLOB_BYTES
    assert exe.sizes.bss >= ARENA_BYTES
    assert exe.sizes.rodata <= qemu.BOARDS[board].capacity("rodata")
    reports = result.reports
    assert 0 < reports["stack_used"] < reports["stack_size"] <= exe.sizes.stack  # + MPU guard
    assert 0 < reports["heap_used"] <= exe.sizes.heap  # newlib's stdio buffers


def _load_segments(elf: pathlib.Path):
    """(vaddr, paddr, filesz, memsz) of each PT_LOAD program header of an ELF32 file."""
    blob = elf.read_bytes()
    phoff, = struct.unpack_from("<I", blob, 0x1C)
    phentsize, phnum = struct.unpack_from("<HH", blob, 0x2A)
    segments = []
    for i in range(phnum):
        p_type, _, vaddr, paddr, filesz, memsz, _, _ = struct.unpack_from(
            "<8I", blob, phoff + i * phentsize)
        if p_type == 1:
            segments.append((vaddr, paddr, filesz, memsz))
    return segments


@pytest.mark.parametrize("board", BOARDS)
def test_loader_zero_fills_only_ram_it_owns(big_runs, board):
    # QEMU's ELF loader zero-fills memsz - filesz bytes at a segment's physical address; for the
    # 2 MiB .bss that must be the RAM itself, not flash behind the .data image (on the MPS2
    # boards that could run into the code's mirror and wipe it).
    exe, _ = big_runs[board]
    for vaddr, paddr, filesz, memsz in _load_segments(exe.path):
        assert memsz == filesz or vaddr == paddr, (hex(vaddr), hex(paddr), filesz, memsz)


@pytest.mark.parametrize("board", BOARDS)
def test_same_program_same_instruction_count(big_runs, board):
    _, (first, second) = big_runs[board]
    assert first.stdout == second.stdout
    insns = first.reports["checksum_insns"]
    # a load, a multiply-accumulate, an increment and a loop test a byte, give or take
    assert 2 * BLOB_BYTES <= insns <= 8 * BLOB_BYTES


def test_memory_overflow_names_the_region(toolchain, workdir):
    source = "volatile char arena[5u << 20];\nint main(void) { arena[7] = 1; return arena[7]; }\n"
    with pytest.raises(qemu.BuildError, match=r"(?s)overflowed.*mps2-an386 memory map.*SSRAM2&3"):
        _build(toolchain, workdir, "toobig", {"toobig.c": source}, "mps2-an386")


# ---- instruction counter -------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrations(toolchain, workdir):
    return {board: qemu.calibrate(board, workdir / f"calibrate-{board}", toolchain=toolchain)
            for board in BOARDS}


@pytest.mark.parametrize("board", BOARDS)
def test_calibration_matches_the_board_table(calibrations, board):
    calibration = calibrations[board]
    expected = qemu.BOARDS[board].insns_per_tick
    assert calibration.insns_per_tick == expected
    assert calibration.configured_insns_per_tick == expected  # the C header agrees
    assert expected == fractions.Fraction(10**9, qemu.BOARDS[board].cpu_hz)
    print(f"{board}: {expected} instructions per SysTick tick, "
          f"counter overhead {calibration.overhead} instructions")


@pytest.mark.parametrize("board", BOARDS)
def test_calibration_loop_count_is_exact_within_the_overhead(calibrations, board):
    calibration = calibrations[board]
    tick = calibration.insns_per_tick
    assert 10 <= calibration.overhead <= 40
    (n_short, exact_short), (n_long, exact_long) = sorted(calibration.spin_exact.items())
    # exact counts (fine clock): 2 instructions an iteration, plus the overhead, plus the call
    # (argument, bl, bx lr)
    for n, exact in calibration.spin_exact.items():
        assert 2 * n + calibration.overhead <= exact <= 2 * n + calibration.overhead + 4
    assert exact_long - exact_short == 2 * (n_long - n_short)
    # the normal clock: the same counts, quantized to one tick
    for n, count in calibration.spin_counts.items():
        assert abs(count - calibration.spin_exact[n]) < tick


WRAPS = r"""
#include <stdio.h>
#include "tfedge_board.h"
__attribute__((naked, noinline)) static void spin(uint32_t n) {
    (void)n;
    __asm__ volatile("1: subs r0, r0, #1\n\tbne 1b\n\tbx lr\n\t");
}
int main(void) {
    uint64_t previous = tfedge_ticks(), first = previous;
    unsigned backwards = 0, largest_step = 0;
    for (int i = 0; i < 50000; ++i) {
        uint64_t now = tfedge_ticks();
        if (now < previous) ++backwards;
        if (now - previous > largest_step) largest_step = (unsigned)(now - previous);
        previous = now;
    }
    tfedge_report("backwards", backwards);
    tfedge_report("largest_step", largest_step);
    tfedge_report("wraps", (previous - first) / (TFEDGE_SYSTICK_RELOAD + 1));
    tfedge_counter_start();
    spin(100000);
    tfedge_report("spin_100000", tfedge_counter_read());
    return 0;
}
"""


@pytest.mark.parametrize("board", BOARDS)
def test_counter_is_monotonic_across_systick_wraps(toolchain, workdir, board):
    # a reload of 63 wraps SysTick every 64 ticks, i.e. every ~2,000 instructions
    exe = _build(toolchain, workdir, "wraps", {"wraps.c": WRAPS}, board,
                 defines={"TFEDGE_SYSTICK_RELOAD": "63u"})
    reports = qemu.run(exe, timeout_s=20, toolchain=toolchain).check().reports
    assert reports["wraps"] > 300
    assert reports["backwards"] == 0
    assert reports["largest_step"] <= 3  # a lost or doubled wrap would be 64
    # ~100 interrupts of a handful of instructions each come on top of the 200,000
    assert 200_000 <= reports["spin_100000"] <= 200_000 + 100 * 40


# ---- DSP, FPU, MVE -----------------------------------------------------------------------

FEATURES = r"""
#include <arm_acle.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "tfedge_board.h"
#if !defined(__ARM_FEATURE_DSP)
#error "no DSP extension"
#endif
#if !defined(__ARM_FP)
#error "no FPU"
#endif

#define N 64
static int16_t a[N], b[N];

__attribute__((noinline)) static int32_t dot_smlad(const int16_t *x, const int16_t *y, int n) {
    int32_t acc = 0;
    for (int i = 0; i < n; i += 2) {
        int16x2_t xx, yy;
        memcpy(&xx, x + i, 4);
        memcpy(&yy, y + i, 4);
        acc = __smlad(xx, yy, acc);
    }
    return acc;
}

int main(void) {
    for (int i = 0; i < N; ++i) {
        a[i] = (int16_t)(i * 997 - 31000);  /* full int16 range; the sum stays in int32 */
        b[i] = (int16_t)(1234 - i * 39);
    }
    int32_t reference = 0;
    for (int i = 0; i < N; ++i) reference += (int32_t)a[i] * b[i];
    printf("smlad=%ld reference=%ld\n", (long)dot_smlad(a, b, N), (long)reference);
    /* __smlad on one pair: 3 * 1000 + (-2) * 7 + 100 */
    printf("smlad1=%ld\n", (long)__smlad((int16x2_t)((3u << 16) | 0xFFFEu),
                                         (int16x2_t)((1000u << 16) | 7u), 100));
    volatile float x = 2.0f, y = 0.1f;
    float f = sqrtf(x) * 3.0f + sinf(y) / (x + y);
    volatile double dx = 2.0;
    double d = sqrt(dx) * exp(-dx) + 1.0 / 3.0;
    printf("float=%.9g double=%.17g\n", (double)f, d);
    return 0;
}
"""


@pytest.fixture(scope="module")
def features(toolchain, workdir):
    out = {}
    for board in BOARDS:
        exe = _build(toolchain, workdir, "features", {"features.c": FEATURES}, board)
        out[board] = exe, qemu.run(exe, timeout_s=20, toolchain=toolchain)
    return out


def _values(stdout):
    return dict(m for m in re.findall(r"(\w+)=(\S+)", stdout))


@pytest.mark.parametrize("board", BOARDS)
def test_dsp_smlad(features, board):
    exe, result = features[board]
    assert result.exit_code == 0, result.stdout + result.stderr
    values = _values(result.stdout)
    a = (np.arange(64) * 997 - 31000).astype(np.int16).astype(np.int64)
    b = (1234 - np.arange(64) * 39).astype(np.int16).astype(np.int64)
    assert abs(int(np.dot(a, b))) < 2**31
    assert int(values["smlad"]) == int(values["reference"]) == int(np.dot(a, b))
    assert int(values["smlad1"]) == 3 * 1000 - 2 * 7 + 100
    objdump = shutil.which("arm-none-eabi-objdump")
    if objdump:
        listing = subprocess.run([objdump, "-d", str(exe.path)], capture_output=True,
                                 text=True, check=True).stdout
        assert re.search(r"\bsmlad\b", listing)


@pytest.mark.parametrize("board", BOARDS)
def test_fpu(features, board):
    exe, result = features[board]
    values = _values(result.stdout)
    x, y = np.float32(2.0), np.float32(0.1)
    expected_f = np.sqrt(x) * np.float32(3.0) + np.sin(y) / (x + y)
    assert float(values["float"]) == pytest.approx(float(expected_f), rel=1e-6)
    assert float(values["double"]) == pytest.approx(np.sqrt(2.0) * np.exp(-2.0) + 1 / 3,
                                                    rel=1e-15)
    objdump = shutil.which("arm-none-eabi-objdump")
    if objdump:
        listing = subprocess.run([objdump, "-d", str(exe.path)], capture_output=True,
                                 text=True, check=True).stdout
        assert re.search(r"\bvsqrt\.f32\b", listing)  # the hardware FPU, not soft-float
        if qemu.BOARDS[board].fpu == "dp":
            assert re.search(r"\bvsqrt\.f64\b", listing)


MVE = r"""
#include <arm_mve.h>
#include <stdio.h>
#include "tfedge_board.h"
static int16_t a[64], b[64];
int main(void) {
    for (int i = 0; i < 64; ++i) {
        a[i] = (int16_t)(i * 515 - 16000);
        b[i] = (int16_t)(i * 3 - 90);
    }
    int32_t acc = 0, reference = 0;
    for (int i = 0; i < 64; i += 8) acc = vmladavaq_s16(acc, vld1q_s16(a + i), vld1q_s16(b + i));
    for (int i = 0; i < 64; ++i) reference += (int32_t)a[i] * b[i];
    printf("mve=%ld reference=%ld\n", (long)acc, (long)reference);
    return acc == reference ? 0 : 1;
}
"""


def test_mve_on_cortex_m55(toolchain, workdir):
    exe = _build(toolchain, workdir, "mve", {"mve.c": MVE}, "mps3-an547")
    result = qemu.run(exe, timeout_s=20, toolchain=toolchain)
    a = np.arange(64) * 515 - 16000
    b = np.arange(64) * 3 - 90
    assert result.stdout == f"mve={int(np.dot(a, b))} reference={int(np.dot(a, b))}\n"
    assert result.exit_code == 0


# ---- faults, stdin, C++ --------------------------------------------------------------------


def test_fault_is_reported_with_its_exit_status(toolchain, workdir):
    source = '#include <stdio.h>\nint main(void) { puts("before"); __asm__ volatile("udf #7"); ' \
             'puts("after"); return 0; }\n'
    exe = _build(toolchain, workdir, "fault", {"fault.c": source}, "mps2-an500")
    result = qemu.run(exe, timeout_s=20, toolchain=toolchain)
    assert result.exit_code == qemu.FAULT_EXIT_CODE
    assert result.stdout.startswith("before\n") and "after" not in result.stdout
    assert result.fault is not None and result.fault.startswith("tfedge: fault UsageFault")
    assert "stack overflow" not in result.fault
    with pytest.raises(qemu.QemuError, match="UsageFault"):
        result.check()


@pytest.mark.parametrize("board", BOARDS)
def test_stack_overflow_faults(toolchain, workdir, board):
    # v8-M (M55): the stack limit register MSPLIM, a UsageFault with CFSR.STKOF (bit 20);
    # v7-M (M4, M7): the 1 KiB no-access MPU region below the stack, a MemManage fault
    source = r"""
__attribute__((noinline)) static int deep(volatile int depth) {
    volatile char frame[256];
    frame[0] = (char)depth;
    return deep(depth + 1) + frame[0];
}
int main(void) { return deep(0); }
"""
    exe = _build(toolchain, workdir, "overflow", {"overflow.c": source}, board, stack_size=4096)
    result = qemu.run(exe, timeout_s=20, toolchain=toolchain)
    assert result.exit_code == qemu.FAULT_EXIT_CODE, result.stdout + result.stderr
    cfsr = int(re.search(r"cfsr=0x([0-9a-f]+)", result.fault).group(1), 16)
    assert result.fault.endswith("stack overflow (raise stack_size)")
    if board == "mps3-an547":
        assert result.fault.startswith("tfedge: fault UsageFault") and cfsr & (1 << 20)
    else:
        assert result.fault.startswith("tfedge: fault MemManage") and cfsr & 0xFF


def test_stdin_reaches_the_program(toolchain, workdir):
    source = r"""
#include <stdio.h>
#include "tfedge_board.h"
int main(void) {
    unsigned char buffer[16];
    size_t n = fread(buffer, 1, sizeof buffer, stdin);
    tfedge_print_hex("echo", buffer, n);
    tfedge_exit((int)n);
}
"""
    exe = _build(toolchain, workdir, "stdin", {"stdin.c": source}, "mps2-an386")
    result = qemu.run(exe, timeout_s=20, stdin=b"\x00\x01\xfeAB", toolchain=toolchain)
    assert result.hex("echo") == b"\x00\x01\xfeAB"
    assert result.exit_code == 5
    assert qemu.run(exe, timeout_s=20, toolchain=toolchain).exit_code == 0  # no stdin: EOF


def test_cxx_static_constructors_run(toolchain, workdir):
    if toolchain.gxx is None:
        pytest.skip("arm-none-eabi-g++ is not on PATH (libstdc++-arm-none-eabi-newlib)")
    source = r"""
#include <cstdio>
struct Counter { int value; Counter() : value(41) {} ~Counter() {} };
static Counter counter;
int main() { std::printf("constructed %d\n", counter.value + 1); return 0; }
"""
    exe = _build(toolchain, workdir, "cxx", {"main.cc": source}, "mps2-an386")
    result = qemu.run(exe, timeout_s=20, toolchain=toolchain)
    assert (result.exit_code, result.stdout) == (0, "constructed 42\n")


# ---- timeout, errors -----------------------------------------------------------------------


def _qemu_processes_running(elf: pathlib.Path) -> list[int]:
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(elf).encode() in cmdline and b"qemu-system-arm" in cmdline:
                pids.append(int(entry.name))
    return pids


def test_timeout_kills_qemu_and_says_so(toolchain, workdir):
    source = '#include <stdio.h>\nint main(void) { puts("spinning"); for (;;) { } }\n'
    exe = _build(toolchain, workdir, "forever", {"forever.c": source}, "mps2-an386")
    start = time.monotonic()
    with pytest.raises(qemu.QemuTimeoutError, match=r"did not exit within timeout_s=1 s") as info:
        qemu.run(exe, timeout_s=1, toolchain=toolchain)
    assert time.monotonic() - start < 5
    assert isinstance(info.value, TimeoutError)
    assert info.value.stdout == "spinning\n"
    assert "spinning" in str(info.value)
    assert _qemu_processes_running(exe.path) == []


def test_build_error_shows_the_compiler_output(toolchain, workdir):
    with pytest.raises(qemu.BuildError, match=r"(?s)compiling .*broken\.c.*error:.*undeclared"):
        _build(toolchain, workdir, "broken",
               {"broken.c": "int main(void) { return no_such_variable; }\n"}, "mps2-an386")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"`board` must be one of mps2-an386, mps2-an500, "
                                         r"mps3-an547. Received: board='stm32'"):
        qemu.get_board("stm32")
    with pytest.raises(ValueError, match=r"`opt` must be one of .* Received: opt='-O9'"):
        qemu.build(["x.c"], opt="-O9")
    with pytest.raises(ValueError, match=r"every source must end in"):
        qemu.build(["model.txt"])
    with pytest.raises(ValueError, match=r"define must be 'NAME' or 'NAME=VALUE'"):
        qemu._normalize_defines(["1BAD=2"])


def test_missing_toolchain_names_the_debian_packages(monkeypatch):
    # runs without the toolchain too: the error message is the point
    monkeypatch.setattr(qemu.shutil, "which", lambda name: None)
    with pytest.raises(qemu.ToolchainError) as info:
        qemu.find_toolchain()
    message = str(info.value)
    for package in ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm"):
        assert package in message


def test_board_table_and_files():
    for name, board in qemu.BOARDS.items():
        assert board.machine == name
        assert board.linker_script.is_file()
        assert (board.directory / "tfedge_board_config.h").is_file()
        config = (board.directory / "tfedge_board_config.h").read_text()
        num = int(re.search(r"TFEDGE_INSNS_PER_TICK_NUM (\d+)", config).group(1))
        den = int(re.search(r"TFEDGE_INSNS_PER_TICK_DEN (\d+)", config).group(1))
        assert fractions.Fraction(num, den) == board.insns_per_tick
        assert f'"{board.cpu}"' in config
        script = board.linker_script.read_text()
        for region in board.regions:
            assert f"ORIGIN = 0x{region.origin:08X}" in script
    # the M4 board holds 4 MiB of weights next to its code
    assert qemu.BOARDS["mps2-an386"].capacity("rodata") >= 4 * 1024 * 1024
    for name in ("startup.S", "tfedge_board.c", "tfedge_board.h", "tfedge_sections.ld",
                 "tfedge_calibrate.c"):
        assert (qemu.board_dir() / "common" / name).is_file()
