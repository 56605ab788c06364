"""Run a `.tflite` on an emulated Cortex-M and check every output byte against LiteRT.

    result = mcu.run(tflite_bytes, board="mps2-an386", inputs=5)
    result.exact                  # every output byte equals LiteRT's reference kernels'
    result.instructions           # per inference, deterministic (SysTick under -icount)
    result.macs_per_instruction, result.flash, result.ram, result.arena_bytes

The model is compiled ahead of time (`codegen`), built with the C runtime and the board support
(`qemu.build`: arm-none-eabi-gcc, -O2), and run under qemu-system-arm with `inputs` random int8
inputs embedded in the program (seeded: the same inputs every run). The program prints each
output and the instructions each inference took; LiteRT runs the same inputs with TFLite's
reference kernels (`BUILTIN_REF`), and the bytes must be equal.

`trace=True` also compares every op's output (a CRC-32 of it, printed by the program for the
first input) with LiteRT's intermediate tensor: a final output can hide an error behind a
saturated softmax, an intermediate one cannot.
"""

import collections
import contextlib
import dataclasses
import importlib.resources
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

from tfedge.microcontroller import codegen, qemu

_CALIBRATIONS = {}
# What the board support reserves besides the program's own data (tfedge_sections.ld defaults).
_STACK_BYTES = 64 * 1024
_HEAP_BYTES = 32 * 1024


class DoesNotFitError(ValueError):
    """The model needs more flash or RAM than the board has; found before compiling."""


@dataclasses.dataclass(frozen=True)
class McuResult:
    """What `run` measured. Byte counts are of the ELF's sections (see `qemu.MemoryUse`)."""

    board: str
    dsp: bool
    exact: bool
    mismatched_bytes: int
    outputs: tuple            # uint8-viewed bytes per input, from the board
    reference: tuple          # the same from LiteRT's reference kernels
    instructions: tuple       # per inference, the counter's overhead removed
    macs: int
    code_bytes: int           # .text
    weights_bytes: int        # .rodata: weights, kernel parameters, tables
    data_bytes: int           # .data
    bss_bytes: int            # .bss: the arena and the program's buffers
    stack_used: int           # bytes of stack touched (the stack is painted at reset)
    arena_bytes: int
    lower_bound: int
    trace_mismatches: tuple = ()  # (op index, op name) whose output differs, with trace=True
    traced: bool = False          # the first inference also printed every op's CRC
    seconds: float = 0.0

    @property
    def flash(self):
        """Code + weights + the .data load image."""
        return self.code_bytes + self.weights_bytes + self.data_bytes

    @property
    def ram(self):
        """Static RAM (.data, .bss with the arena) plus the stack the run touched."""
        return self.data_bytes + self.bss_bytes + self.stack_used

    @property
    def timed_instructions(self):
        """The inferences whose count is the model's alone (a traced one also printed)."""
        return self.instructions[1:] if self.traced and len(self.instructions) > 1 else \
            self.instructions

    @property
    def macs_per_instruction(self):
        """MACs over the slowest untraced inference's instructions."""
        counts = self.timed_instructions
        return self.macs / max(counts) if counts else 0.0

    def as_dict(self):
        d = dataclasses.asdict(self)
        d.update(flash=self.flash, ram=self.ram,
                 macs_per_instruction=round(self.macs_per_instruction, 4))
        d["outputs"] = [bytes(o).hex() for o in self.outputs]
        d["reference"] = [bytes(o).hex() for o in self.reference]
        return d


def _c_bytes(data):
    return ", ".join(str(int(v)) for v in np.asarray(data, dtype=np.int8).ravel())


_PROFILE_CODE = """
static uint64_t op_instructions[%(ops)d];

void tfedge_trace(int op, const int8_t *data, int32_t bytes) {
  (void)data;
  (void)bytes;
  op_instructions[op] += tfedge_counter_read();
  tfedge_counter_start();
}

static void report_profile(void) {
  char key[40];
  for (int op = 0; op < %(ops)d; op++) {
    snprintf(key, sizeof key, "op%%d", op);
    tfedge_report(key, op_instructions[op]);
  }
}
"""


def harness_source(generated, inputs, *, trace=False, profile=False):
    """`main.c` for the board: runs `generated` on each of `inputs` (int8 arrays), printing
    "output<i>: <hex>" and "tfedge: instructions<i>=<n>" lines, then the stack used.

    `trace`: CRC-32 of every op's output on the first input. `profile`: instructions per op
    over all inputs ("tfedge: op<k>=<n>"; each count includes the counter's overhead once)."""
    if trace and profile:
        raise ValueError("`trace` and `profile` each need the trace hook; choose one")
    prefix = generated.prefix
    rows = ",\n  ".join("{" + _c_bytes(x) + "}" for x in inputs)
    if profile:
        trace_code = _PROFILE_CODE % {"ops": max(1, len(generated.ops))}
    else:
        trace_code = """
static int current_input;

static uint32_t crc32(const int8_t *data, int32_t n) {
  uint32_t crc = 0xFFFFFFFFu;
  for (int32_t i = 0; i < n; i++) {
    crc ^= (uint8_t)data[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void tfedge_trace(int op, const int8_t *data, int32_t bytes) {
  if (current_input == 0) printf("trace %d %08lx\\n", op, (unsigned long)crc32(data, bytes));
}
""" if trace else ""
    return f"""/* Generated by tfedge: runs the model on embedded inputs under QEMU. */
#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "tfedge_board.h"

#define NUM_INPUTS {len(inputs)}
static const int8_t inputs[NUM_INPUTS][{generated.input.bytes}] = {{
  {rows}
}};
static int8_t output[{generated.output.bytes}];
{trace_code}
int main(void) {{
  char label[32];
  for (int i = 0; i < NUM_INPUTS; i++) {{
{"    current_input = i;" if trace else ""}
    tfedge_counter_start();
    {prefix}_invoke(inputs[i], output);
    uint64_t count = tfedge_counter_read();
    snprintf(label, sizeof label, "instructions%d", i);
    tfedge_report(label, count);
    snprintf(label, sizeof label, "output%d", i);
    tfedge_print_hex(label, output, sizeof output);
  }}
  tfedge_report("stack_used", tfedge_stack_used());
{"  report_profile();" if profile else ""}
  return 0;
}}
"""


def calibration(board):
    """The board's counter calibration (`qemu.calibrate`), measured once per process."""
    name = qemu.get_board(board).name
    if name not in _CALIBRATIONS:
        _CALIBRATIONS[name] = qemu.calibrate(name)
    return _CALIBRATIONS[name]


def random_inputs(shape, count, seed=0):
    """`count` int8 arrays of `shape`, uniform over [-128, 127], the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=shape, dtype=np.int8) for _ in range(count)]


class LiteRTError(RuntimeError):
    """LiteRT's reference kernels refused or crashed on the model (run in a subprocess)."""


def reference_outputs(tflite_bytes, inputs, *, with_intermediates=False, timeout_s=600.0):
    """LiteRT's reference-kernel outputs for `inputs`, and optionally {tensor: array} of every
    tensor of the first inference.

    LiteRT runs in a subprocess (`_litert_worker.py`): the model is untrusted, and a crash there
    becomes a LiteRTError with the reason instead of ending the caller's process."""
    with tempfile.TemporaryDirectory(prefix="tfedge-litert-") as folder:
        folder = pathlib.Path(folder)
        (folder / "model.tflite").write_bytes(bytes(tflite_bytes))
        np.savez(folder / "inputs.npz", **{f"x{k}": np.asarray(x) for k, x in enumerate(inputs)})
        worker = importlib.resources.files("tfedge.microcontroller").joinpath("_litert_worker.py")
        with importlib.resources.as_file(worker) as script:
            command = [sys.executable, str(script), str(folder / "model.tflite"),
                       str(folder / "inputs.npz"), str(folder / "outputs.npz")]
            if with_intermediates:
                command.append("--intermediates")
            try:
                proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise LiteRTError(f"LiteRT's reference kernels did not finish within "
                                  f"{timeout_s:g} s") from None
        if proc.returncode != 0:
            said = [line[len("tfedge-litert: "):] for line in proc.stderr.splitlines()
                    if line.startswith("tfedge-litert: ")]
            if said:
                raise LiteRTError(f"LiteRT's reference kernels refused the model: {said[-1]}")
            how = (f"signal {-proc.returncode}" if proc.returncode < 0
                   else f"exit status {proc.returncode}")
            raise LiteRTError(f"LiteRT's reference kernels crashed on the model ({how}); the "
                              "file is damaged or holds what LiteRT cannot run")
        with np.load(folder / "outputs.npz") as npz:
            outputs = [npz[f"y{k}"] for k in range(len(inputs))]
            tensors = {int(name[1:]): npz[name] for name in npz.files if name.startswith("t")}
    return outputs, tensors


def _human(size):
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"


def _check_region(board, part, needs, total):
    """Raises DoesNotFitError when `total` bytes (a lower bound of what the parts placed in the
    region of `part` take, itemized in `needs`) exceed that region of `board`."""
    region = next(r for r in board.regions if part in r.holds)
    if total <= region.size:
        return
    items = ", ".join(f"{what} {size:,}" for what, size in needs if size)
    roomier = [f"{b.name}: {_human(b.capacity(part))}" for b in qemu.BOARDS.values()
               if b.capacity(part) > region.size]
    tables = any(what == "kernel tables" and size for what, size in needs)
    raise DoesNotFitError(
        f"the model does not fit {board.name}: its {region.name} ({_human(region.size)}, "
        f"for {', '.join(region.holds)}) would need at least {total:,} bytes ({items}). "
        "Make the model smaller (a smaller width or input size, tfedge.prune_channels"
        + ("; --noprecompute leaves the DSP tables out of flash" if tables else "") + ")"
        + (f" or use a board with more room for {part} ({', '.join(roomier)})" if roomier
           else ""))


def check_fits(generated, board, num_inputs=1):
    """Raises DoesNotFitError, naming the numbers, when the program `build` makes for
    `generated` (a `codegen.GeneratedModel`) and `num_inputs` embedded inputs cannot fit the
    board's memory: weights, kernel tables and inputs in the region of .rodata; the arena, the
    output buffer, the heap and the stack in theirs. Code and the C library come on top, so
    this is a lower bound: it never refuses a model that links."""
    board = qemu.get_board(board)
    parts = {
        "rodata": [("weights", generated.weights_bytes), ("kernel tables", generated.tables_bytes),
                   (f"{num_inputs} test input(s)", num_inputs * generated.input.bytes)],
        "bss": [("tensor arena", generated.arena_bytes), ("output", generated.output.bytes)],
        "heap": [("heap", _HEAP_BYTES)],
        "stack": [("stack", _STACK_BYTES)],
    }
    for region in board.regions:
        needs = [item for part in region.holds for item in parts.get(part, ())]
        if needs:
            _check_region(board, region.holds[0], needs, sum(size for _, size in needs))


def _check_weights_fit(tflite_bytes, board):
    """The quick part of `check_fits`, before code generation: the constant data alone."""
    from tfedge.converters import tflite_reader

    model = tflite_reader.read_tflite(tflite_bytes)
    weights = sum(b.size for b in model.buffers)
    _check_region(qemu.get_board(board), "rodata", [("weights", weights)], weights)


def _prepare(tflite_bytes, board, inputs, seed, precompute):
    """Code generation, the inputs and the fit check: everything before the compiler."""
    _check_weights_fit(tflite_bytes, board)
    generated = codegen.generate(tflite_bytes, precompute=precompute)
    if isinstance(inputs, int):
        if inputs < 1:
            raise ValueError(f"`inputs` must be a count >= 1 or a list of arrays. Received: "
                             f"inputs={inputs!r}")
        inputs = random_inputs(generated.input.shape, inputs, seed)
    inputs = [np.asarray(x, dtype=np.int8).reshape(generated.input.shape) for x in inputs]
    check_fits(generated, board, len(inputs))
    return generated, inputs


def _compile(generated, inputs, board, folder, *, dsp, trace, profile, opt):
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in generated.files.items():
        (folder / name).write_text(text)
    (folder / "main.c").write_text(harness_source(generated, inputs, trace=trace,
                                                  profile=profile))
    defines = {}
    if not dsp:
        defines["TFEDGE_NO_DSP"] = None
    if trace or profile:
        defines["TFEDGE_TRACE"] = None
    sources = [folder / "model.c", folder / "main.c"] + codegen.runtime_sources()
    return qemu.build(sources, include_dirs=[folder, codegen.runtime_dir()], defines=defines,
                      board=board, output_dir=folder, opt=opt, name="model")


def build(tflite_bytes, board="mps2-an386", *, inputs=5, seed=0, dsp=True, trace=False,
          profile=False, output_dir=None, opt="-O2", precompute=True):
    """Generates and builds the program into `output_dir` (a new temporary folder, which the
    caller removes, if None); returns (generated, executable, inputs).

    Raises DoesNotFitError before compiling when the model cannot fit the board (`check_fits`).
    """
    board = qemu.get_board(board)
    generated, inputs = _prepare(tflite_bytes, board, inputs, seed, precompute)
    folder = output_dir or tempfile.mkdtemp(prefix="tfedge-mcu-")
    executable = _compile(generated, inputs, board, folder, dsp=dsp, trace=trace,
                          profile=profile, opt=opt)
    return generated, executable, inputs


@contextlib.contextmanager
def build_folder(output_dir=None, *, keep=False):
    """The folder a build goes into: `output_dir` (created, kept), or a new temporary folder
    that is removed when the block ends, on success and on failure alike, unless `keep`."""
    if output_dir is not None:
        folder = pathlib.Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    folder = pathlib.Path(tempfile.mkdtemp(prefix="tfedge-mcu-"))
    try:
        yield folder
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def run(tflite_bytes, board="mps2-an386", *, inputs=5, seed=0, dsp=True, trace=False,
        timeout_s=300.0, output_dir=None, precompute=True, keep_build=False):
    """Builds the model for `board`, runs it under QEMU and compares it with LiteRT.

    Args:
      tflite_bytes: a full-int8 `.tflite` (int8 input and output) of ops the runtime has
        (`codegen.SUPPORTED_OPS`).
      board: "mps2-an386" (Cortex-M4), "mps2-an500" (Cortex-M7) or "mps3-an547" (Cortex-M55).
      inputs: how many random inputs (seeded by `seed`), or a list of int8 arrays.
      dsp: use the kernels' DSP-extension (SMLAD) loops; False builds the portable C ones.
      trace: also compare every op's output for the first input (see the module docstring).
      precompute: the DSP loops' tables in flash (`codegen.generate`); False builds them at
        run time (less flash, more instructions).
      output_dir: keep the generated sources, the ELF and its map there. Without it they go
        into a temporary folder that is removed afterwards (also on failure), unless
        `keep_build`.

    Returns an `McuResult`. Raises DoesNotFitError (before compiling) for a model too big for
    the board, codegen.CodegenError for a model the runtime cannot run, qemu.BuildError /
    QemuError / QemuTimeoutError for build and run failures, LiteRTError when LiteRT cannot
    run the model.
    """
    started = time.monotonic()
    board = qemu.get_board(board)
    generated, inputs = _prepare(tflite_bytes, board, inputs, seed, precompute)
    # the reference first: a model LiteRT refuses is reported before minutes of compiling
    expected, tensors = reference_outputs(tflite_bytes, inputs, with_intermediates=trace)
    with build_folder(output_dir, keep=keep_build) as folder:
        executable = _compile(generated, inputs, board, folder, dsp=dsp, trace=trace,
                              profile=False, opt="-O2")
        result = qemu.run(executable, timeout_s=timeout_s).check()
        sizes = executable.sizes
    reports = result.reports
    wanted = [f"instructions{i}" for i in range(len(inputs))] + ["stack_used"]
    try:
        outputs = [result.hex(f"output{i}") for i in range(len(inputs))]
        missing = next((key for key in wanted if key not in reports), None)
    except KeyError as exc:
        missing = exc.args[0]
    if missing is not None:
        raise qemu.QemuError(f"the program exited 0 without printing everything it should "
                             f"(missing: {missing}); output: {result.stdout[-500:]!r}")
    overhead = calibration(board).overhead
    instructions = [reports[f"instructions{i}"] - overhead for i in range(len(inputs))]
    expected = [np.asarray(e).astype(np.int8).tobytes() for e in expected]
    mismatched = sum(int(np.count_nonzero(np.frombuffer(a, np.int8) != np.frombuffer(b, np.int8)))
                     for a, b in zip(outputs, expected))
    trace_mismatches = ()
    if trace:
        printed = {}
        for line in result.stdout.splitlines():
            if line.startswith("trace "):
                _, op, crc = line.split()
                printed.setdefault(int(op), []).append(int(crc, 16))
        bad = []
        seen = {}
        for op, tensor in generated.trace_tensors:
            k = seen.get(op, 0)
            seen[op] = k + 1
            got = printed.get(op, [])
            if tensor not in tensors or k >= len(got) or \
                    got[k] != zlib.crc32(np.asarray(tensors[tensor]).astype(np.int8).tobytes()):
                bad.append((op, generated.ops[op]))
        trace_mismatches = tuple(dict.fromkeys(bad))
    return McuResult(
        board=qemu.get_board(board).name, dsp=dsp, exact=mismatched == 0 and not trace_mismatches,
        mismatched_bytes=mismatched, outputs=tuple(outputs), reference=tuple(expected),
        instructions=tuple(instructions), macs=generated.macs, code_bytes=sizes.text,
        weights_bytes=sizes.rodata, data_bytes=sizes.data, bss_bytes=sizes.bss,
        stack_used=reports["stack_used"], arena_bytes=generated.arena_bytes,
        lower_bound=generated.lower_bound, trace_mismatches=trace_mismatches, traced=trace,
        seconds=round(time.monotonic() - started, 2))


@dataclasses.dataclass(frozen=True)
class OpProfile:
    """One op of `profile`: its index and name in the model, its MACs and the instructions one
    inference spent in it."""

    index: int
    name: str
    macs: int
    instructions: int

    @property
    def macs_per_instruction(self):
        return self.macs / self.instructions if self.instructions else 0.0


def profile(tflite_bytes, board="mps2-an386", *, inputs=1, seed=0, dsp=True, timeout_s=300.0,
            output_dir=None, precompute=True, keep_build=False):
    """Instructions per op: a list of `OpProfile`, in op order.

    Each count is the counter's reading between consecutive ops, its overhead removed, averaged
    over the inputs; ops the code generator turned into nothing (aliased RESHAPEs) count 0. The
    program is the one `run` builds, with a counter read around every op; the counts add up to
    `run`'s within 1% (the hook's call costs a few instructions per op beyond the counter's
    calibrated overhead). `output_dir` and `keep_build` as for `run`."""
    board = qemu.get_board(board)
    generated, inputs = _prepare(tflite_bytes, board, inputs, seed, precompute)
    with build_folder(output_dir, keep=keep_build) as folder:
        executable = _compile(generated, inputs, board, folder, dsp=dsp, trace=False,
                              profile=True, opt="-O2")
        reports = qemu.run(executable, timeout_s=timeout_s).check().reports
    overhead = calibration(board).overhead
    hooks = collections.Counter(op for op, _ in generated.trace_tensors)  # calls per inference
    rows = []
    for index, name in enumerate(generated.ops):
        total = reports.get(f"op{index}", 0)
        calls = hooks[index] * len(inputs)
        rows.append(OpProfile(index, name, generated.op_macs[index],
                              max(0, total - calls * overhead) // len(inputs)))
    return rows


__all__ = ["DoesNotFitError", "LiteRTError", "McuResult", "OpProfile", "build", "build_folder",
           "calibration", "check_fits", "harness_source", "profile", "random_inputs",
           "reference_outputs", "run"]
