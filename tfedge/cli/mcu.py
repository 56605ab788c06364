"""Compile a full-int8 .tflite to C and run it on an emulated Cortex-M, checked byte for byte.

Examples:

    tfedge mcu run model.tflite --board=mps2-an386 --inputs=5
    tfedge mcu run model.tflite --board=mps3-an547 --trace --json
    tfedge mcu codegen model.tflite --output_dir=firmware
    tfedge mcu codegen model.tflite --output_dir=firmware --noprecompute  # less flash
    tfedge mcu profile model.tflite --board=mps2-an386

`run` compiles the model ahead of time (tfedge's C runtime, no interpreter), builds it with
arm-none-eabi-gcc for the board (mps2-an386: Cortex-M4, mps2-an500: Cortex-M7, mps3-an547:
Cortex-M55), runs it under qemu-system-arm with --inputs random int8 inputs (--seed), and
compares every output byte with LiteRT's reference kernels (--trace: every op's output too).
It prints flash (code + weights), RAM (arena + stack + static data), the instructions each
inference took (deterministic: SysTick under -icount) and MACs per instruction. `codegen` only
writes model.c and model.h (and the runtime's sources with --runtime) for a firmware build.
`profile` runs one input with the counter read around every op and prints, per op, its MACs,
its instructions, MACs per instruction and its share of the inference. Without --output_dir the
build happens in a temporary folder that is removed afterwards, also on failure (--keep_build
keeps it). A model too big for the board's flash or RAM is refused before compiling, with the
numbers.

Exit status: 0 when the outputs are bit-exact (codegen, profile: when done), 1 when they
differ, 2 when the model could not be compiled, built or run (the message on stderr starts with
"tfedge mcu: error:").
"""

import json
import os
import shutil
import sys

from absl import flags

_BOARD = flags.DEFINE_enum("board", "mps2-an386", ["mps2-an386", "mps2-an500", "mps3-an547"],
                           "Emulated board: mps2-an386 (Cortex-M4), mps2-an500 (Cortex-M7), "
                           "mps3-an547 (Cortex-M55).")
_INPUTS = flags.DEFINE_integer("inputs", 5, "Random int8 inputs to run and compare.",
                               lower_bound=1, upper_bound=1000)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random inputs.")
_DSP = flags.DEFINE_boolean("dsp", True, "Use the DSP-extension (SMLAD) kernels; --nodsp "
                            "builds the portable C ones.")
_PRECOMPUTE = flags.DEFINE_boolean(
    "precompute", True, "Put the DSP kernels' requantization tables and int16-widened "
    "depthwise weights in flash (fastest, more flash); --noprecompute has the kernels build "
    "them in their arena scratch at every call (less flash, same arena, slower).")
_TRACE = flags.DEFINE_boolean("trace", False, "Also compare every op's output (first input).")
_TIMEOUT = flags.DEFINE_float("timeout", 300.0, "Seconds QEMU may run.", lower_bound=1.0)
_JSON = flags.DEFINE_boolean("json", False, "Print the result as JSON.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "run, profile: keep the generated "
                                  "sources, the ELF and its map here. codegen: where "
                                  "model.c/.h go (required).")
_KEEP_BUILD = flags.DEFINE_boolean("keep_build", False, "run, profile: without --output_dir, "
                                   "keep the temporary build folder (its path is printed) "
                                   "instead of removing it.")
_PREFIX = flags.DEFINE_string("prefix", "tfedge_model", "codegen: prefix of the generated "
                              "function, <prefix>_invoke.")
_RUNTIME = flags.DEFINE_boolean("runtime", False, "codegen: also copy the runtime's C sources "
                                "(tfedge_kernels.h and its .c files).")

_COMMANDS = ("run", "codegen", "profile")


def _fail(message):
    print(f"tfedge mcu: error: {message}", file=sys.stderr)
    sys.exit(2)


def _read_model(argv):
    if len(argv) < 2 or argv[1] not in _COMMANDS:
        _fail(f"say what to do: tfedge mcu {'|'.join(_COMMANDS)} MODEL.tflite [--flags]")
    if len(argv) != 3:
        _fail(f"tfedge mcu {argv[1]} takes one model file; received {len(argv) - 2}")
    path = argv[2]
    if not os.path.isfile(path):
        _fail(f"model file {path!r} does not exist" if not os.path.exists(path) else
              f"{path!r} is not a file")
    try:
        with open(path, "rb") as f:
            return argv[1], f.read()
    except OSError as exc:
        _fail(f"cannot read {path!r}: {exc.strerror or exc}")


def _codegen(model):
    from tfedge import _io
    from tfedge.microcontroller import codegen

    if not _OUTPUT_DIR.value:
        _fail("tfedge mcu codegen needs --output_dir=DIR")
    generated = codegen.generate(model, prefix=_PREFIX.value, precompute=_PRECOMPUTE.value)
    _io.ensure_dir(_OUTPUT_DIR.value)
    files = dict(generated.files)
    if _RUNTIME.value:
        folder = codegen.runtime_dir()
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            if entry.name.endswith((".c", ".h")):
                files[entry.name] = entry.read_text()
    for name, text in files.items():
        path = os.path.join(_OUTPUT_DIR.value, name)
        _io.write_atomic(path, text)
        print(f"wrote {path}")
    print(f"arena {generated.arena_bytes:,} bytes (live-tensor lower bound "
          f"{generated.lower_bound:,}), weights {generated.weights_bytes:,} bytes, kernel tables "
          f"{generated.tables_bytes:,} bytes, {generated.macs:,} MACs")


def _build_dir():
    """--output_dir; or, with --keep_build alone, a new folder whose path is printed."""
    if _OUTPUT_DIR.value or not _KEEP_BUILD.value:
        return _OUTPUT_DIR.value
    import tempfile

    folder = tempfile.mkdtemp(prefix="tfedge-mcu-")
    print(f"build folder (kept, --keep_build): {folder}", file=sys.stderr)
    return folder


def _run(model):
    from tfedge.microcontroller import mcu

    result = mcu.run(model, _BOARD.value, inputs=_INPUTS.value, seed=_SEED.value,
                     dsp=_DSP.value, trace=_TRACE.value, timeout_s=_TIMEOUT.value,
                     output_dir=_build_dir(), precompute=_PRECOMPUTE.value,
                     keep_build=_KEEP_BUILD.value)
    if _JSON.value:
        print(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        counts = sorted(set(result.instructions))
        lines = [
            f"board            {result.board} ({'DSP' if result.dsp else 'portable'} kernels)",
            f"bit-exact        {result.exact} ({len(result.outputs)} inputs, "
            f"{result.mismatched_bytes} bytes differ"
            + (f", ops differing: {list(result.trace_mismatches)}" if result.trace_mismatches
               else ", every op's output compared" if _TRACE.value else "") + ")",
            f"flash            {result.flash:,} bytes (code {result.code_bytes:,}, weights and "
            f"tables {result.weights_bytes:,}, data {result.data_bytes:,})",
            f"RAM              {result.ram:,} bytes (arena {result.arena_bytes:,} of "
            f"{result.data_bytes + result.bss_bytes:,} static, stack {result.stack_used:,})",
            f"arena            {result.arena_bytes:,} bytes, live-tensor lower bound "
            f"{result.lower_bound:,}",
            f"instructions     {', '.join(f'{c:,}' for c in counts)} per inference",
            f"MACs             {result.macs:,} ({result.macs_per_instruction:.3f} per "
            "instruction)",
        ]
        print("\n".join(lines))
    if not result.exact:
        sys.exit(1)


def _profile(model):
    from tfedge.microcontroller import mcu

    rows = mcu.profile(model, _BOARD.value, seed=_SEED.value, dsp=_DSP.value,
                       timeout_s=_TIMEOUT.value, output_dir=_build_dir(),
                       precompute=_PRECOMPUTE.value, keep_build=_KEEP_BUILD.value)
    total = sum(r.instructions for r in rows)
    macs = sum(r.macs for r in rows)
    if _JSON.value:
        print(json.dumps({"board": _BOARD.value, "dsp": _DSP.value, "instructions": total,
                          "macs": macs, "ops": [dict(index=r.index, op=r.name, macs=r.macs,
                                                     instructions=r.instructions)
                                                for r in rows]}, indent=2))
        return
    table = [("#", "op", "MACs", "instructions", "MACs/instr", "share")]
    for r in rows:
        share = f"{100 * r.instructions / total:.1f}%" if total else "-"
        table.append((str(r.index), r.name, f"{r.macs:,}", f"{r.instructions:,}",
                      f"{r.macs_per_instruction:.3f}" if r.macs else "-", share))
    table.append(("", "total", f"{macs:,}", f"{total:,}",
                  f"{macs / total:.3f}" if total else "-", "100.0%"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print(f"{_BOARD.value}, {'DSP' if _DSP.value else 'portable'} kernels, one inference")
    for row in table:
        print("  ".join(cell.ljust(w) if i == 1 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


def main(argv):
    command, model = _read_model(argv)
    from tfedge.converters import tflite_reader
    from tfedge.microcontroller import codegen, mcu, qemu

    try:
        if command == "codegen":
            _codegen(model)
        else:
            if shutil.which("arm-none-eabi-gcc") is None:
                qemu.find_toolchain()  # raises ToolchainError naming the Debian packages
            (_run if command == "run" else _profile)(model)
    except (tflite_reader.TFLiteFormatError, codegen.CodegenError, qemu.ToolchainError,
            qemu.BuildError, qemu.QemuError, mcu.LiteRTError, OSError, ValueError) as exc:
        _fail(str(exc))
