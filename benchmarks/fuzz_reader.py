"""Fuzzes what tfedge does with an untrusted .tflite: the pure-Python reader, the C code
generator (`tfedge mcu codegen`), the firmware export (`tfedge export-c`) and lint. Each may
only fail with one of tfedge's own errors, which the command line prints as one line; any other
exception, or a hang, is a bug.

    .venv/bin/python benchmarks/fuzz_reader.py [--cases=10000] [--semantic_cases=10000]
        [--cli_cases=100] [--tflm_cases=100] [--run_cases=50] [--model=PATH ...] [--seed=0]
        [--timeout=5] [--reproducer=fuzz_reader_failure.bin] [--results=PATH.md]

Without --model it builds a tiny full-int8 model with one of nearly every op the C runtime has
(`_mutate.every_op_model`: 8x8x3, PAD, CONV_2D, DEPTHWISE_CONV_2D, HARD_SWISH, LOGISTIC, MUL,
ADD, RESHAPE, TRANSPOSE, SPLIT_V, CONCATENATION, MAX_POOL_2D, AVERAGE_POOL_2D, MEAN,
FULLY_CONNECTED, SOFTMAX), so that code generation of a case takes milliseconds.

Byte phases (--cases, split evenly): random bytes (behind a TFL3 identifier and a root offset),
truncations, byte mutations and 32-bit field mutations of the flatbuffer's structure (the bytes
outside the weight buffers), and 32-bit mutations around the builtin options tables. Most of
these break the structure, so the reader refuses them. The semantic phase (--semantic_cases)
edits the model through LiteRT's flatbuffer object API (`_mutate.Mutator`: shapes up to 2**31 - 1,
NaN scales, out-of-range zero points, short buffers, ops wired to the wrong tensors, extreme
options, swapped opcodes, names holding C code, odd subgraphs) and packs it again, so that most
cases parse and reach the consumers.

Every case that parses is used the way the commands use it: each op's options decoded, every
buffer read and tensor sized; `codegen.generate` (TFLiteFormatError or CodegenError allowed);
`firmware.export(int8_kernels=True, arena=False, template=True)` (tfedge's own errors allowed);
`lint.lint`. An allowed error must be raised by tfedge's code with a non-empty message. Then
--cli_cases parsed semantic cases run through the real `tfedge mcu codegen` and `tfedge
export-c --noarena` commands (exit status 0, 1 or 2, stderr without "Traceback", the error on
one line), --tflm_cases through `firmware.export` with the arena measured by the TFLM host
interpreter (its crashes must come back as TFLMError from the subprocess), and --run_cases of
the semantic cases that code generation compiled through `mcu.run` on the emulated Cortex-M4,
every op traced: each must be bit-exact with LiteRT's reference kernels, or refused by LiteRT
(a differential check that the accepted models compute what TFLite computes).

Prints one row per phase: cases run, how many parsed, the reader's refusals, how many code
generation and export compiled or refused, the distinct error kinds (digits masked), and
seconds. A failure is shrunk by hypothesis; the script prints it and the reproducer (written to
--reproducer) and exits with 1.
"""

import argparse
import collections
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import _mutate  # benchmarks/_mutate.py, next to this script
from _tables import table, write_results
from tfedge.converters import firmware, lint
from tfedge.converters.tflite_reader import TFLiteFormatError, read_tflite
from tfedge.microcontroller import codegen

PHASES = ("random bytes", "truncation", "byte mutation", "field mutation", "options mutation")
SEMANTIC = "semantic mutation"
_TFEDGE = os.path.dirname(os.path.dirname(os.path.abspath(firmware.__file__)))
# 32-bit values that hit the reader's bounds checks: zero, small, sign bit, all ones, and
# values near the file size (filled in per model).
_FIELD_VALUES = (0, 1, 4, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


class _Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


def _build_default_model():
    return "every-op int8", _mutate.every_op_model()


def _use(model):
    """What a caller does with a parsed model; any exception here is a reader bug too."""
    model.op_names()
    for k in range(len(model.buffers)):
        model.buffer_bytes(k)
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            tensor.nbytes  # noqa: B018
        for op in graph.operators:
            dict(op.options)
            op.builtin_options_name  # noqa: B018
    hash(model)


class _Target:
    """One model to mutate: its bytes, its structure positions, its options tables, and its
    semantic mutator."""

    def __init__(self, name, data):
        model = read_tflite(data)  # the unmutated model must parse
        _use(model)
        self.name, self.data = name, data
        inside = bytearray(len(data))
        for buf in model.buffers:
            inside[buf.offset:buf.offset + buf.size] = b"\1" * buf.size
        self.structure = [k for k in range(len(data) - 3) if not inside[k]]
        starts = sorted({op.builtin_options_offset for g in model.subgraphs
                         for op in g.operators if op.builtin_options_offset is not None})
        self.options = sorted({k for s in starts for k in range(max(s - 16, 0),
                                                                 min(s + 40, len(data) - 3))})
        self.values = _FIELD_VALUES + (len(data) - 4, len(data), len(data) + 4)
        self.mutator = _mutate.Mutator(data, name)


class _Refused(Exception):
    """A consumer refused a case with an error it may raise (see `_consume`)."""


# consumer -> the exception types it may raise (each also a ValueError or RuntimeError of
# tfedge's own raising, see _allowed)
def _consumers():
    from tfedge.converters import op_resolver, tflm

    allowed_export = (TFLiteFormatError, op_resolver.UnsupportedOpError, tflm.TFLMError,
                      ValueError)
    return {
        "codegen": (lambda case: codegen.generate(case), (TFLiteFormatError,
                                                          codegen.CodegenError)),
        "export": (lambda case: firmware.export(case, int8_kernels=True, arena=False,
                                                template=True), allowed_export),
        "lint": (lambda case: lint.lint(case), (TFLiteFormatError,)),
    }


def _allowed(exc, types):
    """An error a command turns into its one-line message: of an allowed type, with a message,
    and raised on purpose by tfedge: a class of tfedge's own, or a `raise` statement in tfedge's
    code (not a ValueError from numpy, or from a builtin such as max() on tfedge's behalf)."""
    if not isinstance(exc, types) or not str(exc).strip():
        return False
    if type(exc).__module__.startswith("tfedge."):
        return True
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(_TFEDGE) and \
        (frames[-1].line or "").lstrip().startswith("raise ")


def _case(target: _Target, phase: str, draw):
    """(bytes, description) of one case of `phase`, drawing from hypothesis."""
    data = target.data
    if phase == "random bytes":
        body = draw(st.binary(min_size=8, max_size=2048))
        root = draw(st.integers(0, len(body) - 1))
        return struct.pack("<I", root) + b"TFL3" + body[8:], f"{len(body)} random bytes"
    if phase == SEMANTIC:
        return target.mutator.mutate(draw)
    if phase == "truncation":
        length = draw(st.integers(0, len(data) - 1))
        return data[:length], f"{target.name} truncated to {length} bytes"
    case = bytearray(data)
    edits = []
    positions = target.options if phase == "options mutation" else target.structure
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.sampled_from(positions))
        if phase == "byte mutation":
            value = draw(st.integers(0, 255))
            case[at] = value
            edits.append(f"byte {at} = 0x{value:02x}")
        else:
            value = draw(st.sampled_from(target.values) | st.integers(0, 2**32 - 1))
            struct.pack_into("<I", case, at, value)
            edits.append(f"uint32 at {at} = 0x{value:08x}")
    return bytes(case), f"{target.name} with " + ", ".join(edits)


def _kind(message):
    return re.sub(r"-?\d+", "#", message.splitlines()[0])[:150]


def _run_phase(targets, phase, cases, seed_value, timeout, stats, failure, keep, compiled):
    consumers = _consumers()

    @seed(seed_value)
    @settings(max_examples=cases, deadline=None, database=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink], print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(draw_data):
        target = draw_data.draw(st.sampled_from(targets))
        case, description = _case(target, phase, draw_data.draw)
        stats["cases"] += 1
        signal.setitimer(signal.ITIMER_REAL, timeout)
        stage = "reader"
        try:
            try:
                model = read_tflite(case)
                _use(model)
            except TFLiteFormatError as exc:
                if not str(exc):
                    raise AssertionError("TFLiteFormatError without a message") from exc
                stats["errors"] += 1
                stats["kinds"]["reader: " + _kind(str(exc))] += 1
                return
            stats["parsed"] += 1
            if len(keep) < keep.maxlen and phase == SEMANTIC:
                keep.append(case)
            for stage, (consume, types) in consumers.items():
                try:
                    consume(case)
                    stats[f"{stage} ok"] += 1
                    if stage == "codegen" and phase == SEMANTIC and \
                            len(compiled) < compiled.maxlen:
                        compiled.append(case)
                except Exception as exc:  # noqa: BLE001 - sorted into allowed and bugs
                    if not _allowed(exc, types):
                        raise
                    stats[f"{stage} refused"] += 1
                    stats["kinds"][f"{stage}: " + _kind(str(exc))] += 1
        except _Hang:
            failure.update(case=case, description=description,
                           error=f"{stage}: no result after {timeout} s (hang)")
            raise
        except Exception as exc:  # noqa: BLE001 - anything else is the bug being hunted
            where = traceback.extract_tb(exc.__traceback__)[-1]
            failure.update(case=case, description=description,
                           error=f"{stage}: {type(exc).__name__}: {exc} (at "
                                 f"{where.filename}:{where.lineno})")
            raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    fuzz()


def _cli_cases(cases, folder):
    """Runs `tfedge mcu codegen` and `tfedge export-c --noarena` on each case: (rows, failure)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    counts = collections.Counter()
    for k, case in enumerate(cases):
        path = os.path.join(folder, f"case{k}.tflite")
        with open(path, "wb") as f:
            f.write(case)
        for command in (["mcu", "codegen", path, f"--output_dir={folder}/mcu{k}"],
                        ["export-c", path, f"--output_dir={folder}/fw{k}", "--noarena",
                         "--int8_kernels", "--template"]):
            proc = subprocess.run([sys.executable, "-m", "tfedge", *command], capture_output=True,
                                  text=True, env=env, timeout=120)
            name = command[0] if command[0] == "export-c" else "mcu codegen"
            lines = [line for line in proc.stderr.splitlines() if "error:" in line]
            if proc.returncode not in (0, 1, 2) or "Traceback" in proc.stderr or \
                    (proc.returncode == 2 and len(lines) != 1):
                return counts, (case, f"`tfedge {' '.join(command[:1])}` exit "
                                f"{proc.returncode}: {proc.stderr[-2000:]}")
            counts[(name, proc.returncode)] += 1
    return counts, None


def _run_cases(cases):
    """Cases that codegen compiled, built and run on the emulated Cortex-M4 against LiteRT's
    reference kernels (`mcu.run`, every op traced): each must be bit-exact, or refused by LiteRT
    (which is stricter than the code generator on what it never reads): (counts, failure)."""
    from tfedge.microcontroller import mcu

    counts = collections.Counter()
    for case in cases:
        try:
            result = mcu.run(case, "mps2-an386", inputs=2, trace=True, timeout_s=120)
        except mcu.LiteRTError:
            counts["LiteRT refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001
            return counts, (case, f"{type(exc).__name__}: {exc}")
        if not result.exact:
            return counts, (case, f"not bit-exact: {result.mismatched_bytes} bytes, ops "
                                  f"{list(result.trace_mismatches)}")
        counts["bit-exact"] += 1
    return counts, None


def _tflm_cases(cases):
    """firmware.export with the arena measured on TFLM (in its subprocess): (counts, failure)."""
    from tfedge.converters import op_resolver, tflm

    counts = collections.Counter()
    for case in cases:
        try:
            firmware.export(case, arena=True, timeout=60)
            counts["ok"] += 1
        except Exception as exc:  # noqa: BLE001
            if not _allowed(exc, (TFLiteFormatError, op_resolver.UnsupportedOpError,
                                  tflm.TFLMError, ValueError)):
                return counts, (case, f"{type(exc).__name__}: {exc}")
            counts[type(exc).__name__] += 1
    return counts, None


def _fail(phase, failure, exc, reproducer):
    with open(reproducer, "wb") as f:
        f.write(failure.get("case", b""))
    print(f"FAILURE in phase {phase!r}: {failure.get('error', repr(exc))}")
    print(f"  case: {failure.get('description', '?')}")
    print(f"  reproducer: {len(failure.get('case', b''))} bytes written to {reproducer}")
    return 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000,
                        help="byte-level cases over the five byte phases (default 10000)")
    parser.add_argument("--semantic_cases", type=int, default=10_000,
                        help="semantically mutated models (default 10000)")
    parser.add_argument("--cli_cases", type=int, default=100,
                        help="parsed semantic cases run through the real commands (default 100)")
    parser.add_argument("--tflm_cases", type=int, default=100,
                        help="parsed semantic cases exported with the TFLM arena (default 100)")
    parser.add_argument("--run_cases", type=int, default=50,
                        help="semantic cases that codegen compiled, run on the emulated "
                             "Cortex-M4 against LiteRT (default 50)")
    parser.add_argument("--model", action="append", default=[],
                        help=".tflite file to mutate (repeatable); default: the every-op model "
                             "of benchmarks/_mutate.py")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds one case may take before it counts as a hang")
    parser.add_argument("--reproducer", default="fuzz_reader_failure.bin",
                        help="where a failing input is written")
    parser.add_argument("--results", default=None,
                        help="write the tables as markdown here (e.g. "
                             "benchmarks/results/fuzz_reader.md)")
    args = parser.parse_args(argv)
    if args.cases < len(PHASES) and args.cases != 0:
        parser.error(f"--cases must be 0 or at least {len(PHASES)} (one per phase); got "
                     f"{args.cases}")
    for name in ("semantic_cases", "cli_cases", "tflm_cases", "run_cases"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0; got {getattr(args, name)}")
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive; got {args.timeout}")

    targets = []
    for path in args.model:
        try:
            with open(path, "rb") as f:
                targets.append(_Target(path, f.read()))
        except (OSError, TFLiteFormatError) as exc:
            parser.error(f"--model={path}: {exc}")
    if not targets:
        started = time.perf_counter()
        targets.append(_Target(*_build_default_model()))
        print(f"built {targets[0].name} ({len(targets[0].data)} bytes) in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr)

    signal.signal(signal.SIGALRM, _on_alarm)
    plan = [(phase, args.cases // len(PHASES) + (k < args.cases % len(PHASES)))
            for k, phase in enumerate(PHASES)] if args.cases else []
    plan.append((SEMANTIC, args.semantic_cases))
    columns = ("cases", "parsed", "errors", "codegen ok", "codegen refused", "export ok",
               "export refused", "lint ok")
    keep = collections.deque(maxlen=max(args.cli_cases, args.tflm_cases))
    compiled = collections.deque(maxlen=args.run_cases)
    rows, total, kinds = [], collections.Counter(), collections.Counter()
    for k, (phase, cases) in enumerate(plan):
        if not cases:
            continue
        stats = collections.Counter()
        stats["kinds"] = collections.Counter()
        failure = {}
        started = time.perf_counter()
        print(f"{phase}: {cases} cases ...", file=sys.stderr, flush=True)
        try:
            _run_phase(targets, phase, cases, args.seed + k, args.timeout, stats, failure, keep,
                       compiled)
        except BaseException as exc:  # noqa: BLE001 - report, then exit 1
            if isinstance(exc, KeyboardInterrupt) and not failure:
                raise
            return _fail(phase, failure, exc, args.reproducer)
        seconds = time.perf_counter() - started
        kinds.update(stats.pop("kinds"))
        rows.append([phase] + [stats[c] for c in columns] + [f"{seconds:.1f}"])
        total.update({c: stats[c] for c in columns})
        total["seconds"] += seconds
    rows.append(["all"] + [total[c] for c in columns] + [f"{total['seconds']:.1f}"])
    header = ["phase", "cases", "parsed", "TFLiteFormatError", "codegen compiled",
              "codegen refused", "export made", "export refused", "lint ran", "seconds"]
    text, markdown = table(header, rows)
    lines = [f"models: {', '.join(f'{t.name} ({len(t.data)} bytes)' for t in targets)}; "
             f"seed {args.seed}", text, "", "most frequent error kinds (digits masked):"]
    lines += [f"  {count:6d}  {kind}" for kind, count in kinds.most_common(12)]
    print("\n".join(lines), flush=True)

    extra = []
    with tempfile.TemporaryDirectory(prefix="tfedge-fuzz-") as folder:
        checks = [
            ("command line", args.cli_cases, lambda: _cli_cases(list(keep)[:args.cli_cases],
                                                                 folder),
             f"{args.cli_cases} parsed semantic cases through `tfedge mcu codegen` and `tfedge "
             "export-c --noarena --int8_kernels --template`"),
            ("TFLM arena", args.tflm_cases, lambda: _tflm_cases(list(keep)[:args.tflm_cases]),
             f"{args.tflm_cases} parsed semantic cases through firmware.export(arena=True)"),
            ("emulated Cortex-M4", args.run_cases, lambda: _run_cases(list(compiled)),
             f"{len(compiled)} semantic cases that codegen compiled, built and run under QEMU "
             "against LiteRT's reference kernels (`mcu.run`, every op traced)"),
        ]
        for label, cases, check, what in checks:
            if not cases:
                continue
            started = time.perf_counter()
            counts, failed = check()
            if failed:
                return _fail(label, {"case": failed[0], "error": failed[1]}, None,
                             args.reproducer)
            outcomes = ", ".join(f"{' '.join(map(str, key)) if isinstance(key, tuple) else key}"
                                 f": {n}" for key, n in sorted(counts.items()))
            extra.append(f"{label}: {what} in {time.perf_counter() - started:.0f} s: {outcomes}"
                         + ("; no traceback, every error on one line"
                            if label == "command line" else ""))
    summary = "no exception other than tfedge's own errors, no hang"
    print("\n".join(extra + [summary]))
    if args.results:
        md = [
            "# Fuzzing the .tflite reader, code generation and export-c", "",
            f"Output of `.venv/bin/python benchmarks/fuzz_reader.py --cases={args.cases} "
            f"--semantic_cases={args.semantic_cases} --cli_cases={args.cli_cases} "
            f"--tflm_cases={args.tflm_cases} --run_cases={args.run_cases} --seed={args.seed}` on "
            f"{', '.join(t.name for t in targets)} ({len(targets[0].data)} bytes).", "",
            "Every parsed case went through `codegen.generate` (`tfedge mcu codegen`), "
            "`firmware.export(int8_kernels=True, template=True)` (`tfedge export-c`) and "
            "`lint.lint`; a refusal counts only when it is one of tfedge's own errors, raised "
            "by tfedge's code with a message.", "", markdown, "",
            "Most frequent error kinds (digits masked):", "",
            *[f"- {count}: {kind}" for kind, count in kinds.most_common(12)], "",
            *[f"{line}." for line in extra], "", summary + ".", ""]
        write_results(args.results, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
