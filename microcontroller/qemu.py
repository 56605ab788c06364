"""Build C for an emulated Cortex-M board with arm-none-eabi-gcc and run it under qemu-system-arm.

Pure Python (no TensorFlow). Three boards, each a QEMU machine with tfedge's own board support
(vector table, start-up code, linker script with the board's real memory map, SysTick instruction
counter) in ``tfedge/microcontroller/boards/``::

    from tfedge.microcontroller import qemu

    exe = qemu.build(["main.c"], board="mps2-an386", output_dir="build")
    print(exe.sizes.flash, exe.sizes.ram)          # bytes, from the ELF's section headers
    result = qemu.run(exe, timeout_s=10)
    print(result.exit_code, result.stdout)         # main's return value, what it printed
    print(result.reports)                          # {"key": value} from tfedge_report(key, value)

Programs print with printf (newlib, on the board's UART, which QEMU connects to its standard
output), read stdin from the same UART, return their exit status from main, and count
instructions with ``tfedge_counter_start()`` /
``tfedge_counter_read()`` from ``tfedge_board.h``. QEMU runs with ``-icount shift=0``: one
instruction is one nanosecond of virtual time, so the same program gives the same count on every
run, quantized to one SysTick tick (``Board.insns_per_tick``). ``calibrate(board)`` measures the
instructions per tick and the counter's fixed overhead on the emulator.

Confinement: QEMU runs without semihosting, so a program (whatever code a model's generator or a
hostile model file got into it) reaches nothing of the host but its console bytes: it cannot
open, write or delete host files. It ends through a system reset request, after printing its
exit status as the last line (`TFEDGE_EXIT_MARKER`, which `run` removes from `stdout`).

The toolchain comes from Debian packages (``apt-get install gcc-arm-none-eabi
libnewlib-arm-none-eabi qemu-system-arm``); ``find_toolchain()`` says which one is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
import importlib.resources
import math
import os
import pathlib
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from concurrent import futures
from typing import Iterable, Mapping, Sequence

__all__ = [
    "BOARDS",
    "FAULT_EXIT_CODE",
    "Board",
    "BuildError",
    "Calibration",
    "Executable",
    "MemoryUse",
    "QemuError",
    "QemuTimeoutError",
    "Region",
    "RunResult",
    "Toolchain",
    "ToolchainError",
    "board_dir",
    "build",
    "calibrate",
    "elf_sizes",
    "find_toolchain",
    "get_board",
    "qemu_command",
    "run",
]

KiB = 1024
MiB = 1024 * KiB

#: Exit status of a program that took a fault exception (boards/common/tfedge_board.h).
FAULT_EXIT_CODE = 201

_GCC_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi"
_GXX_PACKAGES = "libstdc++-arm-none-eabi-newlib"
_QEMU_PACKAGES = "qemu-system-arm"

_C_SUFFIXES = (".c",)
_CXX_SUFFIXES = (".cc", ".cpp", ".cxx")
_ASM_SUFFIXES = (".S", ".s")
_OPT_LEVELS = ("-O0", "-O1", "-O2", "-O3", "-Os", "-Oz", "-Og", "-Ofast")
# The board support is always built with these, so the counter overhead does not depend on `opt`.
_BOARD_OPT = "-O2"
_BOARD_SOURCES = ("common/startup.S", "common/tfedge_board.c")
_REPORT_LINE = re.compile(r"^tfedge: ([A-Za-z_][A-Za-z0-9_]*)=(-?[0-9]+)$", re.MULTILINE)
# The board support's last line (boards/common/tfedge_board.h: TFEDGE_EXIT_MARKER).
_EXIT_LINE = re.compile(r"\ntfedge-exit-status: ([0-9]{1,3})\n\Z")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------------------------
# errors


class ToolchainError(RuntimeError):
    """arm-none-eabi-gcc, newlib or qemu-system-arm is missing."""


class BuildError(RuntimeError):
    """The compiler or linker failed; the message holds its command and its output."""

    def __init__(self, message: str, command: Sequence[str] = (), output: str = ""):
        super().__init__(message)
        self.command = tuple(command)
        self.output = output


class QemuError(RuntimeError):
    """QEMU itself failed (bad arguments, emulator crash, CPU lockup)."""


class QemuTimeoutError(QemuError, TimeoutError):
    """The program ran past its timeout; QEMU was killed. `stdout` holds what it printed."""

    def __init__(self, message: str, stdout: str = "", stderr: str = ""):
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr


# --------------------------------------------------------------------------------------------
# boards


@dataclasses.dataclass(frozen=True)
class Region:
    """One memory of a board's memory map, as its linker script uses it."""

    name: str
    origin: int
    size: int
    holds: tuple[str, ...]  # output sections placed here: "text", "rodata", "data", "bss", ...

    def __str__(self) -> str:
        return f"{self.name} 0x{self.origin:08x} {_human(self.size)} ({', '.join(self.holds)})"


@dataclasses.dataclass(frozen=True)
class Board:
    """A QEMU machine and the compiler flags, memory map and counter scale that go with it."""

    name: str  # tfedge's name, also the QEMU machine name and the folder under boards/
    cpu: str
    description: str
    cflags: tuple[str, ...]  # -mcpu/-mfpu/-mfloat-abi (and extensions); -mthumb is added
    dsp: bool  # SMLAD & co. (__ARM_FEATURE_DSP)
    fpu: str  # "sp" single precision, "dp" double precision
    mve: bool  # Helium (__ARM_FEATURE_MVE)
    cpu_hz: int  # processor clock in QEMU, which clocks SysTick
    insns_per_tick: fractions.Fraction  # instructions per SysTick tick under -icount shift=0
    regions: tuple[Region, ...]

    @property
    def machine(self) -> str:
        return self.name

    def capacity(self, part: str) -> int:
        """Bytes available to one part ("text", "rodata", "data", "bss", "heap", "stack").

        Parts that share a region share its capacity: the sum of their sizes must fit.
        """
        for region in self.regions:
            if part in region.holds:
                return region.size
        raise ValueError(
            f"`part` must be one of text, rodata, data, bss, heap, stack. Received: part={part!r}"
        )

    @property
    def directory(self) -> pathlib.Path:
        return board_dir() / self.name

    @property
    def linker_script(self) -> pathlib.Path:
        return self.directory / "board.ld"


def _mps2_regions(psram_base: int) -> tuple[Region, ...]:
    return (
        Region("SSRAM1", 0x00000000, 4 * MiB, ("text", "data-image")),
        Region("SSRAM2&3", 0x20000000, 4 * MiB, ("data", "bss", "heap", "stack")),
        Region("PSRAM", psram_base, 16 * MiB, ("rodata",)),
    )


BOARDS: Mapping[str, Board] = {
    board.name: board
    for board in (
        Board(
            name="mps2-an386",
            cpu="cortex-m4",
            description="Arm MPS2 with the AN386 FPGA image: Cortex-M4, FPU (single), DSP",
            cflags=("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
            dsp=True,
            fpu="sp",
            mve=False,
            cpu_hz=25_000_000,
            insns_per_tick=fractions.Fraction(40),
            regions=_mps2_regions(0x21000000),
        ),
        Board(
            name="mps2-an500",
            cpu="cortex-m7",
            description="Arm MPS2 with the AN500 FPGA image: Cortex-M7, FPU (double), DSP",
            cflags=("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
            dsp=True,
            fpu="dp",
            mve=False,
            cpu_hz=25_000_000,
            insns_per_tick=fractions.Fraction(40),
            regions=_mps2_regions(0x60000000),
        ),
        Board(
            name="mps3-an547",
            cpu="cortex-m55",
            description="Arm MPS3 with the AN547 FPGA image (Corstone SSE-300): Cortex-M55, "
            "FPU (double), DSP, MVE (Helium)",
            # -mcpu=cortex-m55 implies +mve.fp+fp.dp (and the DSP extension)
            cflags=("-mcpu=cortex-m55", "-mfpu=auto", "-mfloat-abi=hard"),
            dsp=True,
            fpu="dp",
            mve=True,
            cpu_hz=32_000_000,
            insns_per_tick=fractions.Fraction(125, 4),
            regions=(
                Region("ITCM", 0x10000000, 512 * KiB, ("text",)),
                Region("DTCM", 0x30000000, 512 * KiB, ("stack",)),
                Region("ISRAM", 0x31000000, 4 * MiB, ("data", "bss", "heap")),
                Region("QSPI", 0x38000000, 8 * MiB, ("rodata", "data-image")),
            ),
        ),
    )
}


def get_board(board: str | Board) -> Board:
    """The `Board` for a name (or the board itself); the error lists the known names."""
    if isinstance(board, Board):
        return board
    try:
        return BOARDS[board]
    except (KeyError, TypeError):
        raise ValueError(
            f"`board` must be one of {', '.join(BOARDS)}. Received: board={board!r}"
        ) from None


def board_dir() -> pathlib.Path:
    """The folder with the board support files (package data of tfedge.microcontroller)."""
    path = importlib.resources.files("tfedge.microcontroller") / "boards"
    if not isinstance(path, pathlib.Path):
        raise RuntimeError(
            "tfedge.microcontroller is installed in a form whose files are not on disk "
            f"({path!r}); install tfedge as a regular or editable package"
        )
    return path


# --------------------------------------------------------------------------------------------
# toolchain


@dataclasses.dataclass(frozen=True)
class Toolchain:
    gcc: str
    gxx: str | None  # arm-none-eabi-g++, only needed for C++ sources
    qemu: str

    def version(self) -> str:
        out = subprocess.run([self.gcc, "--version"], capture_output=True, text=True).stdout
        qemu = subprocess.run([self.qemu, "--version"], capture_output=True, text=True).stdout
        return f"{out.splitlines()[0]}; {qemu.splitlines()[0]}"


def find_toolchain() -> Toolchain:
    """Locate arm-none-eabi-gcc (with newlib and its libnosys) and qemu-system-arm on PATH.

    Raises `ToolchainError` naming the Debian packages to install for whatever is missing.
    """
    missing = []
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        missing.append(f"arm-none-eabi-gcc (Debian packages: {_GCC_PACKAGES})")
    else:
        # Without newlib, gcc answers -print-file-name with the bare name it was given.
        found = subprocess.run(
            [gcc, "-mthumb", "-mcpu=cortex-m4", "-print-file-name=libnosys.a"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not os.path.isabs(found):
            missing.append("newlib for arm-none-eabi (Debian package: libnewlib-arm-none-eabi)")
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        missing.append(f"qemu-system-arm (Debian package: {_QEMU_PACKAGES})")
    if missing:
        raise ToolchainError(
            "The Cortex-M toolchain is incomplete; missing: "
            + "; ".join(missing)
            + f". Install it with: apt-get install {_GCC_PACKAGES} {_GXX_PACKAGES} "
            f"{_QEMU_PACKAGES}"
        )
    return Toolchain(gcc=gcc, gxx=shutil.which("arm-none-eabi-g++"), qemu=qemu)


# --------------------------------------------------------------------------------------------
# build


@dataclasses.dataclass(frozen=True)
class MemoryUse:
    """Bytes of each part of an executable, from its ELF section headers.

    text: vector table, code, constructor tables, unwind tables; rodata: constants (weights);
    data: initialised variables (in flash as their load image and in RAM); bss: zeroed variables
    (the tensor arena); heap and stack: the reservations made by the linker script (stack
    includes the MPU guard below it on the v7-M boards).
    """

    text: int
    rodata: int
    data: int
    bss: int
    heap: int
    stack: int

    @property
    def flash(self) -> int:
        """Non-volatile memory a real device needs: text + rodata + data (its load image)."""
        return self.text + self.rodata + self.data

    @property
    def ram(self) -> int:
        """RAM reserved: data + bss + heap + stack."""
        return self.data + self.bss + self.heap + self.stack

    def as_dict(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "flash": self.flash, "ram": self.ram}


@dataclasses.dataclass(frozen=True)
class Executable:
    path: pathlib.Path  # the ELF file
    map_path: pathlib.Path  # the linker map
    board: Board
    sizes: MemoryUse


def _normalize_defines(defines) -> list[str]:
    if defines is None:
        return []
    if isinstance(defines, Mapping):
        items = [name if value is None else f"{name}={value}" for name, value in defines.items()]
    elif isinstance(defines, str):
        raise TypeError(
            "`defines` must be a mapping or a list of 'NAME' / 'NAME=VALUE' strings, not one "
            f"string. Received: defines={defines!r}"
        )
    else:
        items = list(defines)
    for item in items:
        if not isinstance(item, str) or not _IDENTIFIER.match(item.partition("=")[0]):
            raise ValueError(
                "every define must be 'NAME' or 'NAME=VALUE' with a C identifier for NAME. "
                f"Received: {item!r}"
            )
    return [f"-D{item}" for item in items]


def _language(path: pathlib.Path) -> str:
    if path.suffix in _C_SUFFIXES:
        return "c"
    if path.suffix in _CXX_SUFFIXES:
        return "c++"
    if path.suffix in _ASM_SUFFIXES:
        return "asm"
    raise ValueError(
        "every source must end in "
        + ", ".join(_C_SUFFIXES + _CXX_SUFFIXES + _ASM_SUFFIXES)
        + f". Received: {str(path)!r}"
    )


def _run_tool(command: list[str], what: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise BuildError(
            f"{what} failed (exit status {proc.returncode}):\n{output}\ncommand: "
            + " ".join(command),
            command,
            output,
        )


def build(
    sources: Iterable[str | os.PathLike],
    include_dirs: Iterable[str | os.PathLike] = (),
    defines: Mapping[str, object] | Iterable[str] | None = None,
    board: str | Board = "mps2-an386",
    output_dir: str | os.PathLike | None = None,
    opt: str = "-O2",
    *,
    name: str = "app",
    stack_size: int | None = None,
    heap_size: int | None = None,
    cflags: Iterable[str] = (),
    ldflags: Iterable[str] = (),
    toolchain: Toolchain | None = None,
) -> Executable:
    """Compile and link `sources` with the board support into `output_dir`/`name`.elf.

    Args:
      sources: C (.c), C++ (.cc/.cpp/.cxx) and assembly (.S/.s) files; one defines `main`.
      include_dirs: -I folders, searched before the board support's own.
      defines: {"NAME": value or None} or ["NAME", "NAME=VALUE"]; they reach the board support
        too (e.g. TFEDGE_SYSTICK_RELOAD).
      board: a name from `BOARDS` or a `Board`.
      output_dir: where objects, the ELF and the map go (if None, a new temporary folder,
        which the caller removes: `Executable.path.parent`).
      opt: optimisation level of `sources` (the board support always uses -O2).
      stack_size, heap_size: bytes (defaults in boards/common/tfedge_sections.ld: 64 KiB, 32 KiB).
      cflags, ldflags: extra compiler and linker arguments.

    Returns an `Executable` with the ELF and map paths and the section sizes.
    Raises `BuildError` with the compiler's or linker's output, `ToolchainError` when the
    toolchain is missing.
    """
    board = get_board(board)
    if opt not in _OPT_LEVELS:
        raise ValueError(f"`opt` must be one of {', '.join(_OPT_LEVELS)}. Received: opt={opt!r}")
    if not _IDENTIFIER.match(name):
        raise ValueError(
            f"`name` must be a plain file stem (letters, digits, _). Received: name={name!r}"
        )
    for label, value in (("stack_size", stack_size), ("heap_size", heap_size)):
        if value is not None and (not isinstance(value, int) or value < 0 or value % 8):
            raise ValueError(
                f"`{label}` must be a non-negative multiple of 8 bytes. Received: {label}={value!r}"
            )
    sources = [pathlib.Path(s) for s in sources]
    if not sources:
        raise ValueError("`sources` must name at least one file. Received: sources=[]")
    for source in sources:
        _language(source)
        if not source.is_file():
            raise FileNotFoundError(f"source file not found: {str(source)!r}")
    toolchain = toolchain or find_toolchain()
    languages = {_language(s) for s in sources}
    if "c++" in languages and toolchain.gxx is None:
        raise ToolchainError(
            "C++ sources need arm-none-eabi-g++ and libstdc++ for newlib; install the Debian "
            f"packages: {_GXX_PACKAGES}"
        )

    out = pathlib.Path(output_dir) if output_dir is not None else pathlib.Path(
        tempfile.mkdtemp(prefix="tfedge-mcu-")
    )
    objdir = out / f"{name}.obj"
    objdir.mkdir(parents=True, exist_ok=True)
    boards = board_dir()
    arch = ["-mthumb", *board.cflags]
    includes = [f"-I{pathlib.Path(d)}" for d in include_dirs]
    includes += [f"-I{board.directory}", f"-I{boards / 'common'}"]
    common = [*arch, "-g", "-ffunction-sections", "-fdata-sections", "-Wall"]
    common += [*_normalize_defines(defines), *includes]
    extra = list(cflags)

    jobs = []
    for index, source in enumerate([boards / s for s in _BOARD_SOURCES] + sources):
        is_board = index < len(_BOARD_SOURCES)
        language = _language(source)
        driver = toolchain.gxx if language == "c++" else toolchain.gcc
        flags = [_BOARD_OPT] if is_board else [opt, *extra]
        if language == "c++":
            flags += ["-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics"]
        obj = objdir / f"{index:03d}_{source.stem}.o"
        jobs.append((obj, [driver, *common, *flags, "-c", str(source), "-o", str(obj)]))

    with futures.ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as ex:
        done = [ex.submit(_run_tool, command, f"compiling {command[-3]}") for _, command in jobs]
        for job in done:
            job.result()

    elf = out / f"{name}.elf"
    map_path = out / f"{name}.map"
    linker = toolchain.gxx if "c++" in languages else toolchain.gcc
    link = [linker, *arch, *(str(obj) for obj, _ in jobs)]
    # nosys: newlib's system calls that the board support does not give (open, unlink, ...)
    # fail with ENOSYS; there is no semihosting to reach the host with.
    link += ["--specs=nosys.specs", "-nostartfiles", "-T", str(board.linker_script)]
    link += [f"-L{boards / 'common'}", "-Wl,--gc-sections", f"-Wl,-Map={map_path}"]
    if stack_size is not None:
        link.append(f"-Wl,--defsym=__tfedge_stack_size={stack_size}")
    if heap_size is not None:
        link.append(f"-Wl,--defsym=__tfedge_heap_size={heap_size}")
    link += [*ldflags, "-lm", "-o", str(elf)]
    try:
        _run_tool(link, f"linking {elf.name} for {board.name}")
    except BuildError as error:
        if "overflowed" in error.output or "will not fit" in error.output:
            layout = "\n".join(f"  {region}" for region in board.regions)
            raise BuildError(
                f"{error}\n{board.name} memory map:\n{layout}", error.command, error.output
            ) from None
        raise
    return Executable(path=elf, map_path=map_path, board=board, sizes=elf_sizes(elf))


# ELF32 little-endian section headers, enough to size an executable without binutils.
_SHT_NOBITS = 8
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR = 0x1, 0x2, 0x4
_NAMED_PARTS = {".vectors": "text", ".rodata": "rodata", ".data": "data", ".bss": "bss",
                ".heap": "heap", ".stack": "stack", ".stack_guard": "stack"}


def elf_sizes(path: str | os.PathLike) -> MemoryUse:
    """Bytes of text/rodata/data/bss/heap/stack of an ELF linked with the board support."""
    blob = pathlib.Path(path).read_bytes()
    if blob[:4] != b"\x7fELF" or blob[4] != 1 or blob[5] != 1:
        raise ValueError(f"not a 32-bit little-endian ELF file: {str(path)!r}")
    shoff, = struct.unpack_from("<I", blob, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", blob, 0x2E)
    headers = [struct.unpack_from("<IIIIIIIIII", blob, shoff + i * shentsize) for i in range(shnum)]
    strtab_offset = headers[shstrndx][4]
    parts = dict.fromkeys(("text", "rodata", "data", "bss", "heap", "stack"), 0)
    for sh_name, sh_type, sh_flags, _addr, _offset, sh_size, *_ in headers:
        if not sh_flags & _SHF_ALLOC or sh_size == 0:
            continue
        name = blob[strtab_offset + sh_name:blob.index(b"\0", strtab_offset + sh_name)].decode()
        part = _NAMED_PARTS.get(name)
        if part is None:
            if sh_flags & _SHF_EXECINSTR or name.startswith(
                (".ARM.", ".init_array", ".fini_array", ".preinit_array")
            ):
                part = "text"
            elif sh_type == _SHT_NOBITS:
                part = "bss"
            elif sh_flags & _SHF_WRITE:
                part = "data"
            else:
                part = "rodata"
        parts[part] += sh_size
    return MemoryUse(**parts)


# --------------------------------------------------------------------------------------------
# run


@dataclasses.dataclass(frozen=True)
class RunResult:
    exit_code: int  # the program's exit status (main's return value or exit(code))
    stdout: str  # what the program wrote to stdout and stderr (the console), status line removed
    stderr: str  # QEMU's own messages
    seconds: float  # wall-clock time of the QEMU process
    command: tuple[str, ...]

    @property
    def reports(self) -> dict[str, int]:
        """Values printed by tfedge_report(key, value) as "tfedge: key=value" lines."""
        return {key: int(value) for key, value in _REPORT_LINE.findall(self.stdout)}

    def hex(self, label: str) -> bytes:
        """The bytes printed by tfedge_print_hex(label, data, n) (the last such line)."""
        found = re.findall(rf"^{re.escape(label)}: ([0-9a-f]*)$", self.stdout, re.MULTILINE)
        if not found:
            raise KeyError(f"no line '{label}: <hex>' in the program's output")
        return bytes.fromhex(found[-1])

    @property
    def fault(self) -> str | None:
        """The board support's fault report ("tfedge: fault ..."), if the program faulted."""
        match = re.search(r"^tfedge: fault .*$", self.stdout + "\n" + self.stderr, re.MULTILINE)
        return match.group(0) if match else None

    def check(self, expected_exit_code: int = 0) -> "RunResult":
        """Return self, or raise `QemuError` when the exit status is not the expected one."""
        if self.exit_code != expected_exit_code:
            reason = self.fault or _tail(self.stdout + self.stderr)
            raise QemuError(
                f"the program exited with status {self.exit_code}, expected "
                f"{expected_exit_code}: {reason}"
            )
        return self


def qemu_command(
    executable: Executable | str | os.PathLike,
    board: str | Board | None = None,
    *,
    icount_shift: int = 0,
    toolchain: Toolchain | None = None,
) -> list[str]:
    """The qemu-system-arm command line that `run` uses for an executable."""
    if not isinstance(icount_shift, int) or not 0 <= icount_shift <= 10:
        raise ValueError(
            "`icount_shift` must be an integer from 0 to 10. "
            f"Received: icount_shift={icount_shift!r}"
        )
    path, board = _resolve(executable, board)
    qemu = (toolchain or find_toolchain()).qemu
    return [
        qemu,
        "-M", board.machine,
        "-display", "none", "-monitor", "none", "-parallel", "none",
        # the console: the board's first UART on QEMU's stdin/stdout; no semihosting, so the
        # program has no access to the host's files
        "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
        # the program ends with a system reset request, which ends QEMU
        "-no-reboot",
        # one instruction = 2**shift ns of virtual time, no sleeping when idle: a clock that
        # depends only on the instructions executed
        "-icount", f"shift={icount_shift},align=off,sleep=off",
        "-kernel", str(path),
    ]


def _resolve(executable, board) -> tuple[pathlib.Path, Board]:
    if isinstance(executable, Executable):
        if board is not None and get_board(board) != executable.board:
            raise ValueError(
                f"`board` must match the board the executable was built for "
                f"({executable.board.name}). Received: board={get_board(board).name!r}"
            )
        return executable.path, executable.board
    if board is None:
        raise ValueError("`board` is required when `executable` is a path to an ELF file")
    path = pathlib.Path(executable)
    if not path.is_file():
        raise FileNotFoundError(f"executable not found: {str(path)!r}")
    return path, get_board(board)


def run(
    executable: Executable | str | os.PathLike,
    timeout_s: float = 60.0,
    stdin: bytes | str | None = None,
    *,
    board: str | Board | None = None,
    cwd: str | os.PathLike | None = None,
    icount_shift: int = 0,
    toolchain: Toolchain | None = None,
) -> RunResult:
    """Run an executable under qemu-system-arm until it exits; return its status and output.

    Args:
      executable: an `Executable` from `build`, or the path of an ELF file (then give `board`).
      timeout_s: wall-clock limit; past it QEMU is killed and `QemuTimeoutError` is raised.
      stdin: bytes (or text) the program reads from stdin (sent over the UART, after a 4-byte
        length); the program reads end-of-file after them, at once if None.
      cwd: QEMU's working folder; the executable's folder if None (the program itself has no
        access to files).
      icount_shift: each instruction takes 2**icount_shift ns of virtual time. The board
        support's tfedge_counter_read() converts ticks to instructions for 0, the default.

    A non-zero exit status is returned, not raised (see `RunResult.check`); `QemuError` is raised
    only when QEMU itself fails.
    """
    if not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(
            f"`timeout_s` must be a positive number. Received: timeout_s={timeout_s!r}"
        )
    command = qemu_command(executable, board, icount_shift=icount_shift, toolchain=toolchain)
    if cwd is None:
        cwd = _resolve(executable, board)[0].parent
    if isinstance(stdin, str):
        stdin = stdin.encode()
    stdin = bytes(stdin or b"")
    if len(stdin) >= 2**31:
        raise ValueError(f"`stdin` must be shorter than 2 GiB. Received: {len(stdin)} bytes")
    start = time.monotonic()
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        start_new_session=True,  # its own process group: a kill reaches everything it started
    )
    try:
        stdout, stderr = proc.communicate(struct.pack("<I", len(stdin)) + stdin,
                                          timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        stdout, stderr = proc.communicate()
        raise QemuTimeoutError(
            f"the program did not exit within timeout_s={timeout_s:g} s; QEMU was killed. "
            f"Output so far: {_tail(stdout.decode(errors='replace')) or '(none)'}",
            stdout.decode(errors="replace"),
            stderr.decode(errors="replace"),
        ) from None
    except BaseException:
        _kill(proc)
        proc.communicate()
        raise
    seconds = time.monotonic() - start
    out, err = stdout.decode(errors="replace"), stderr.decode(errors="replace")
    if proc.returncode < 0:
        raise QemuError(
            f"qemu-system-arm died with signal {-proc.returncode} "
            f"(a CPU lockup makes QEMU abort): {_tail(err) or _tail(out)}"
        )
    qemu_errors = [
        line for line in err.splitlines()
        if line.startswith("qemu-system-arm:") and ": warning:" not in line
    ]
    if proc.returncode != 0 and qemu_errors:
        raise QemuError("qemu-system-arm failed: " + " | ".join(qemu_errors))
    status = _EXIT_LINE.search(out)
    if proc.returncode != 0 or status is None:
        raise QemuError(
            f"the program ended without its exit status line (QEMU exit status "
            f"{proc.returncode}): a reset or a QEMU failure, not a return from main. "
            f"Output: {_tail(out + err) or '(none)'}"
        )
    return RunResult(int(status.group(1)), out[:status.start()], err, seconds, tuple(command))


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.kill()


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _human(size: int) -> str:
    return f"{size // MiB} MiB" if size % MiB == 0 else f"{size // KiB} KiB"


# --------------------------------------------------------------------------------------------
# calibration


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What `calibrate` measured on one board (counts in instructions unless named ticks)."""

    board: Board
    insns_per_tick: fractions.Fraction  # measured under -icount shift=0
    configured_insns_per_tick: fractions.Fraction  # TFEDGE_INSNS_PER_TICK_NUM/_DEN in C
    overhead: int  # instructions between the SysTick reads of counter_start and counter_read
    spin_counts: dict[int, int]  # n -> tfedge_counter_read() around spin(n), shift=0
    spin_exact: dict[int, int]  # n -> the same, measured exactly (fine clock)
    spin_ticks: dict[int, int]  # n -> raw SysTick ticks around spin(n), shift=0


# Under -icount shift=7 an instruction is 128 ns: 3.2 ticks at 25 MHz, 4.096 at 32 MHz. A reading
# is then off by less than a third of an instruction, so rounding gives the exact count. (The
# calibration program is short enough that SysTick does not wrap, so no interrupt intrudes.)
_FINE_SHIFT = 7


def calibrate(
    board: str | Board,
    output_dir: str | os.PathLike | None = None,
    *,
    timeout_s: float = 60.0,
    toolchain: Toolchain | None = None,
) -> Calibration:
    """Measure the SysTick instruction counter on the emulator (boards/common/tfedge_calibrate.c).

    Instructions per tick: a loop of exactly 2 instructions an iteration (subs; bne) runs for
    n_short and n_long iterations under -icount shift=0; 2 * (n_long - n_short) over the
    difference in ticks, rounded to the nearest fraction with a denominator up to 8 (the
    measurement is +-1 tick in 12,500 or more).

    Overhead and exact counts: the same program runs again under -icount shift=7, where an
    instruction lasts 128 ns, several ticks; the counter's readings, converted back to
    instructions at that scale, are exact after rounding. The overhead is what
    tfedge_counter_read() returns right after tfedge_counter_start() (the instructions between
    their two SysTick reads); it is included in every count the counter returns.
    """
    board = get_board(board)
    toolchain = toolchain or find_toolchain()
    source = board_dir() / "common" / "tfedge_calibrate.c"
    with contextlib.ExitStack() as stack:
        if output_dir is None:  # a temporary folder, removed on success and failure alike
            output_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="tfedge-mcu-"))
        exe = build([source], board=board, output_dir=output_dir, name="calibrate",
                    toolchain=toolchain)
        coarse = run(exe, timeout_s=timeout_s, toolchain=toolchain).check().reports
        fine = run(exe, timeout_s=timeout_s, icount_shift=_FINE_SHIFT, toolchain=toolchain)
        fine = fine.check().reports
    if fine["ticks_at_exit"] > fine["systick_reload"]:
        raise QemuError("SysTick wrapped during the fine calibration run; its counts are not exact")
    configured = fractions.Fraction(coarse["insns_per_tick_num"], coarse["insns_per_tick_den"])

    def by_n(reports, prefix):
        return {int(k[len(prefix):]): v for k, v in reports.items() if k.startswith(prefix)}

    def exact(count):
        # tfedge_counter_read() returns floor(ticks * configured); get the ticks back, then
        # the instructions at the fine scale (a tick is `configured` ns)
        ticks = math.ceil(fractions.Fraction(count) / configured)
        if math.floor(ticks * configured) != count:
            raise QemuError(f"calibration read {count}, which is no whole number of ticks")
        insns = ticks * configured / 2**_FINE_SHIFT
        if abs(insns - round(insns)) > fractions.Fraction(1, 3):
            raise QemuError(f"calibration read {float(insns)} instructions, not near a whole one")
        return round(insns)

    spin_ticks = by_n(coarse, "spin_ticks_")
    (n_short, t_short), (n_long, t_long) = sorted(spin_ticks.items())
    measured = fractions.Fraction(2 * (n_long - n_short), t_long - t_short).limit_denominator(8)
    empties = {exact(v) for k, v in fine.items() if k.startswith("empty_")}
    if len(empties) != 1:
        raise QemuError(f"the counter overhead varied between reads: {sorted(empties)}")
    return Calibration(
        board=board,
        insns_per_tick=measured,
        configured_insns_per_tick=configured,
        overhead=empties.pop(),
        spin_counts=by_n(coarse, "spin_count_"),
        spin_exact={n: exact(v) for n, v in by_n(fine, "spin_count_").items()},
        spin_ticks=spin_ticks,
    )
