"""Fuzzes tfedge's pure-Python .tflite reader with hypothesis: TFLiteFormatError is the only
exception it may raise, and no input may make it hang.

    .venv/bin/python benchmarks/fuzz_reader.py [--cases=10000] [--model=PATH ...] [--seed=0]
        [--timeout=2] [--reproducer=fuzz_reader_failure.bin]

Without --model it builds MobileNetV3-Small (width 0.35, 32x32x1, untrained, BatchNorm statistics
moved towards the random calibration images) and converts it with tfedge.converters.to_int8.
The cases are split over five phases: random bytes (behind a TFL3 identifier and a root offset
inside the buffer), truncations of the model, byte mutations and 32-bit field mutations of the
flatbuffer's structure (the bytes outside the weight buffers, where tables, vtables and offsets
live), and 32-bit mutations around the builtin options tables. Every case that parses is used
the way a caller would: each op's options decoded, every buffer read, every tensor's size
computed, the model hashed.

Prints one row per phase: cases run, how many parsed, how many raised TFLiteFormatError, the
number of distinct error messages (and of message kinds, digits masked), and seconds. Any other
exception, or a case running over --timeout seconds, is a failure: hypothesis shrinks it, the
script prints the exception and the reproducer (written to --reproducer) and exits with 1.
"""

import argparse
import collections
import re
import signal
import struct
import sys
import time

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from _tables import table  # benchmarks/_tables.py, next to this script
from tfedge.converters.tflite_reader import TFLiteFormatError, read_tflite

PHASES = ("random bytes", "truncation", "byte mutation", "field mutation", "options mutation")
# 32-bit values that hit the reader's bounds checks: zero, small, sign bit, all ones, and
# values near the file size (filled in per model).
_FIELD_VALUES = (0, 1, 4, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


class _Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


def _build_default_model():
    import numpy as np

    import tfedge
    from tfedge import models
    from tfedge.converters import to_int8

    tfedge.training.seed_everything(0)
    images = np.random.default_rng(0).random((16, 32, 32, 1), np.float32)
    model = models.build("mobilenet_v3_small", input_shape=(32, 32, 1), num_classes=10,
                         width=0.35)
    for _ in range(20):  # BatchNorm statistics towards the data, as tests/models/test_zoo.py does
        model(images, training=True)
    return "mobilenet_v3_small-0.35 int8", to_int8(model, images, num_samples=16)


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
    """One model to mutate: its bytes, its structure positions and its options tables."""

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


def _case(target: _Target, phase: str, draw):
    """(bytes, description) of one case of `phase`, drawing from hypothesis."""
    data = target.data
    if phase == "random bytes":
        body = draw(st.binary(min_size=8, max_size=2048))
        root = draw(st.integers(0, len(body) - 1))
        return struct.pack("<I", root) + b"TFL3" + body[8:], f"{len(body)} random bytes"
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


def _run_phase(targets, phase, cases, seed_value, timeout, stats, failure):
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
        try:
            model = read_tflite(case)
            _use(model)
            stats["parsed"] += 1
        except TFLiteFormatError as exc:
            message = str(exc)
            stats["errors"] += 1
            stats["messages"][message] += 1
            stats["kinds"][re.sub(r"-?\d+", "#", message)] += 1
            if not message:
                failure.update(case=case, description=description, error="empty message")
                raise AssertionError("TFLiteFormatError without a message")
        except _Hang:
            failure.update(case=case, description=description,
                           error=f"no result after {timeout} s (hang)")
            raise
        except Exception as exc:  # noqa: BLE001 - anything else is the bug being hunted
            failure.update(case=case, description=description,
                           error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    fuzz()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000,
                        help="cases over all phases (default 10000), split evenly")
    parser.add_argument("--model", action="append", default=[],
                        help=".tflite file to mutate (repeatable); default: a MobileNetV3-Small "
                             "converted with tfedge.converters.to_int8")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds one case may take before it counts as a hang")
    parser.add_argument("--reproducer", default="fuzz_reader_failure.bin",
                        help="where a failing input is written")
    args = parser.parse_args(argv)
    if args.cases < len(PHASES):
        parser.error(f"--cases must be at least {len(PHASES)} (one per phase); got {args.cases}")
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
    per_phase = [args.cases // len(PHASES) + (k < args.cases % len(PHASES))
                 for k in range(len(PHASES))]
    rows, everything = [], {"cases": 0, "parsed": 0, "errors": 0, "seconds": 0.0,
                            "messages": collections.Counter(), "kinds": collections.Counter()}
    for k, (phase, cases) in enumerate(zip(PHASES, per_phase)):
        stats = {"cases": 0, "parsed": 0, "errors": 0, "messages": collections.Counter(),
                 "kinds": collections.Counter()}
        failure = {}
        started = time.perf_counter()
        try:
            _run_phase(targets, phase, cases, args.seed + k, args.timeout, stats, failure)
        except BaseException as exc:  # noqa: BLE001 - report, then exit 1
            if isinstance(exc, KeyboardInterrupt) and not failure:
                raise
            with open(args.reproducer, "wb") as f:
                f.write(failure.get("case", b""))
            print(f"FAILURE in phase {phase!r}: {failure.get('error', repr(exc))}")
            print(f"  case: {failure.get('description', '?')}")
            print(f"  reproducer: {len(failure.get('case', b''))} bytes written to "
                  f"{args.reproducer}; rerun with "
                  f"tfedge.converters.tflite_reader.read_tflite(open({args.reproducer!r}, "
                  "'rb').read())")
            return 1
        seconds = time.perf_counter() - started
        rows.append([phase, stats["cases"], stats["parsed"], stats["errors"],
                     len(stats["messages"]), len(stats["kinds"]), f"{seconds:.1f}"])
        for key in ("cases", "parsed", "errors"):
            everything[key] += stats[key]
        everything["messages"].update(stats["messages"])
        everything["kinds"].update(stats["kinds"])
        everything["seconds"] += seconds
    rows.append(["all", everything["cases"], everything["parsed"], everything["errors"],
                 len(everything["messages"]), len(everything["kinds"]),
                 f"{everything['seconds']:.1f}"])
    text, _ = table(["phase", "cases", "parsed", "TFLiteFormatError", "distinct messages",
                     "distinct kinds", "seconds"], rows)
    print(f"models: {', '.join(f'{t.name} ({len(t.data)} bytes)' for t in targets)}; "
          f"seed {args.seed}")
    print(text)
    print("\nmost frequent error kinds (digits masked):")
    for kind, count in everything["kinds"].most_common(8):
        print(f"  {count:6d}  {kind}")
    print("\nno exception other than TFLiteFormatError, no hang")
    if everything["cases"] < args.cases:
        print(f"note: hypothesis ran {everything['cases']} cases, fewer than --cases="
              f"{args.cases}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
