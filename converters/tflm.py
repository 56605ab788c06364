"""Checks a `.tflite` on the real TFLM interpreter (the `tflite-micro` package) on the host.

    arena = tflm.find_arena_size(tflite_bytes)          # smallest arena that works, in bytes
    report = tflm.arena_report(tflite_bytes, ram_budget=256 * 1024)
    report.minimum, report.recommended                     # bytes; recommended = the one to use
    agreement = tflm.compare_with_reference(tflite_bytes, num_inputs=20)
    assert agreement.exact                                 # TFLM == LiteRT reference kernels

TFLM can end the process it runs in (a too-small arena segfaults), so every call runs it in a
subprocess (`_tflm_worker.py`) and turns a failure into a `TFLMError` with the reason and, where
TFLM names it, the op it could not run.

Models with int8, int16 (int16x8) and float32 input and output all work. TFLM refuses
dynamic-range models (hybrid kernels) and float16 ones (float16 DEQUANTIZE), and lacks some int16
kernels (see `tfedge.converters.tflite.to_int16x8`).

The arena is measured on a 64-bit host. TFLM's bookkeeping structs hold pointers, so a 32-bit
Cortex-M needs a little less; the activation buffers, which dominate, are the same size.
`recommended_arena_size` adds a margin for what the host measurement cannot see (its rule and
reasons are in that function's docstring).
"""

import dataclasses
import importlib.resources
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from tfedge.converters import interpreter as litert
from tfedge.converters import tflite_reader

ALIGNMENT = 16  # TFLM aligns arena allocations to 16 bytes.
_MAX_ARENA = 1 << 30
_RECORDED = re.compile(r"Arena allocation total (\d+) bytes")
# How TFLM names the op it failed on.
_FAILED_NODE = re.compile(r"Node (\S+) \(number (\d+)\) failed to (\w+)")
_MISSING_KERNEL = re.compile(r"Didn't find op for (builtin|custom) opcode '([^']+)'")


class TFLMError(RuntimeError):
    """The TFLM interpreter refused or crashed on the model."""


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How TFLM's outputs compare with LiteRT's reference kernels on the same inputs.

    `max_abs_diff` is in output units: integer steps for quantized outputs, a float for float
    outputs.
    """

    num_inputs: int
    total_values: int
    mismatched_values: int
    max_abs_diff: int | float

    @property
    def exact(self):
        return self.mismatched_values == 0


def _worker_path():
    return importlib.resources.files("tfedge.converters").joinpath("_tflm_worker.py")


class _Session:
    """A temporary folder holding the model, and the subprocess calls on it."""

    def __init__(self, tflite_bytes, timeout):
        model = tflite_reader.read_tflite(tflite_bytes)
        self.model = model
        main = model.subgraphs[0]
        self.num_inputs, self.num_outputs = len(main.inputs), len(main.outputs)
        self.activation_bytes = sum(t.nbytes or 0 for t in main.tensors
                                    if model.buffers[t.buffer].size == 0)
        self.timeout = timeout
        self._dir = tempfile.TemporaryDirectory(prefix="tfedge-tflm-")
        self.model_path = os.path.join(self._dir.name, "model.tflite")
        with open(self.model_path, "wb") as f:
            f.write(bytes(tflite_bytes))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._dir.cleanup()

    def path(self, name):
        return os.path.join(self._dir.name, name)

    def call(self, arena, inputs_path="-", outputs_path="-", record=False):
        with importlib.resources.as_file(_worker_path()) as worker:
            cmd = [sys.executable, str(worker), self.model_path, str(arena),
                   str(self.num_inputs), str(self.num_outputs), inputs_path, outputs_path]
            if record:
                cmd.append("--record")
            try:
                return subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
            except subprocess.TimeoutExpired as exc:
                raise TFLMError(f"the TFLM interpreter did not finish within {self.timeout} s "
                                f"(arena {arena} bytes)") from exc

    def fits(self, arena):
        return self.call(arena).returncode == 0


def _op_signature(subgraph, op):
    def types(indices):
        return ", ".join(subgraph.tensors[i].type_name for i in indices if i >= 0) or "none"

    return f"{op.name} #{op.index} (inputs {types(op.inputs)}; outputs {types(op.outputs)})"


def _failed_op(stderr, model):
    """The op TFLM says it failed on, as "op CONV_2D #3 (inputs ...; outputs ...) failed to
    prepare", or None when its messages name no op. `model` is the parsed `.tflite`."""
    main = model.subgraphs[0] if model.subgraphs else None
    node = _FAILED_NODE.search(stderr)
    if node:
        name, index, stage = node.group(1), int(node.group(2)), node.group(3)
        if main is not None and index < len(main.operators) \
                and main.operators[index].name == name:
            return f"op {_op_signature(main, main.operators[index])} failed to {stage}"
        return f"op {name} #{index} failed to {stage}"
    missing = _MISSING_KERNEL.search(stderr)
    if missing:
        name = missing.group(2)
        ops = [op for op in main.operators if op.name == name] if main is not None else []
        where = _op_signature(main, ops[0]) if ops else name
        return f"op {where} has no kernel in TFLM's op resolver ({missing.group(1)} op)"
    return None


def _describe(proc, model=None):
    if proc.returncode < 0:
        reason = f"killed by signal {-proc.returncode}"
    else:
        reason = f"exit status {proc.returncode}"
    op = _failed_op(proc.stderr, model) if model is not None else None
    if op:
        reason = f"{op}; {reason}"
    tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
    return f"{reason}; TFLM said:\n{tail}" if tail else reason


# What TFLM prints when the arena, and nothing else, is too small.
_ARENA_SHORTAGE = ("Failed to allocate", "Failed to resize buffer", "missing:")


def _arena_too_small(proc):
    # A crash during allocation is how a far too small arena usually ends.
    return proc.returncode < 0 or (
        proc.returncode == 3 and any(text in proc.stderr for text in _ARENA_SHORTAGE))


def _align(n):
    return -(-n // ALIGNMENT) * ALIGNMENT


def _find(session):
    """Bisection between 0 and a size known to work, at ALIGNMENT granularity."""
    hi = _align(2 * session.activation_bytes + (256 << 10))
    while True:
        proc = session.call(hi, record=True)
        if proc.returncode == 0:
            break
        if not _arena_too_small(proc) or hi >= _MAX_ARENA:
            raise TFLMError(f"the TFLM interpreter cannot run the model: "
                            f"{_describe(proc, session.model)}")
        hi *= 2
    recorded = _RECORDED.search(proc.stderr)
    if recorded and _align(int(recorded.group(1))) < hi:
        # The allocator's own figure is usually the answer; start just above it.
        candidate = _align(int(recorded.group(1)))
        if session.fits(candidate):
            hi = candidate
    lo = 0  # invariant: lo fails (or is 0), hi works
    while hi - lo > ALIGNMENT:
        mid = _align((lo + hi) // 2)
        if mid >= hi:
            mid = hi - ALIGNMENT
        if session.fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def find_arena_size(tflite_bytes, *, timeout=120):
    """Smallest tensor arena (bytes, a multiple of 16) in which TFLM allocates and invokes."""
    with _Session(tflite_bytes, timeout) as session:
        return _find(session)


ARENA_MARGIN_MIN = 1024  # bytes
ARENA_MARGIN_PERCENT = 10


def recommended_arena_size(minimum):
    """The arena to give the firmware: `minimum` + max(1 KiB, 10%), rounded up to 16 bytes.

    `minimum` is what `find_arena_size` measured: the TFLM host interpreter, reference kernels,
    a 64-bit build. On the device the arena differs because:

    - optimized kernels ask for scratch buffers the reference kernels do not: CMSIS-NN's
      convolution, depthwise convolution and fully-connected kernels request them in Prepare
      (`RequestScratchBufferInArena`), sized by the layer and by the core's DSP/MVE
      extensions. The host run cannot see them; the margin is mostly for them;
    - kernels and the allocator keep persistent buffers (per-channel quantization multipliers,
      op data, the tensor structs) whose sizes change between TFLM versions, and the firmware's
      TFLM checkout is rarely the exact version of the `tflite-micro` package measured here;
    - the bookkeeping structs hold pointers, which are 8 bytes on the host and 4 on a 32-bit
      Cortex-M. That difference goes the other way (the device needs less), so the host figure
      is already an upper bound for it;
    - an arena that is not 16-byte aligned loses up to 15 bytes to alignment (TFLM's
      `MicroInterpreter::arena_used_bytes()` comment); tfedge's template declares it
      `alignas(16)`.

    The 1 KiB floor keeps a margin for small models, where 10% would be a few bytes; 16 bytes
    is TFLM's allocation alignment. The margin is a rule of thumb, not a bound: a layer whose
    CMSIS-NN scratch buffer is larger than it needs more. Check on the device with
    `interpreter.arena_used_bytes()` after `AllocateTensors()` (tfedge's `main.cc` template
    prints it).
    """
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum <= 0:
        raise ValueError(f"`minimum` must be a positive number of bytes, e.g. what "
                         f"find_arena_size returned. Received: minimum={minimum!r}")
    margin = max(ARENA_MARGIN_MIN, -(-minimum * ARENA_MARGIN_PERCENT // 100))
    return _align(minimum + margin)


class ArenaBudgetError(ValueError):
    """The model's tensor arena does not fit in the RAM budget given for it.

    `minimum`, `recommended` and `ram_budget` hold the three sizes in bytes.
    """

    def __init__(self, message, *, minimum, recommended, ram_budget):
        super().__init__(message)
        self.minimum, self.recommended, self.ram_budget = minimum, recommended, ram_budget


@dataclasses.dataclass(frozen=True)
class ArenaReport:
    """The tensor arena of a model, in bytes.

    `minimum`: the smallest arena in which the TFLM host interpreter allocated and invoked the
    model. `recommended`: what to give the firmware (`kTensorArenaSize`): `minimum` plus the
    margin of `recommended_arena_size`, but never more than `ram_budget` when one is given (the
    margin shrinks to what the budget leaves; `margin_capped` says so). `ram_budget`: the RAM
    the arena may take, or None.
    """

    minimum: int
    recommended: int
    ram_budget: int | None = None

    @property
    def margin(self):
        return self.recommended - self.minimum

    @property
    def margin_capped(self):
        """True when the budget left less than the full margin."""
        return self.recommended < recommended_arena_size(self.minimum)

    @property
    def headroom(self):
        """Bytes of the budget left above `recommended`, or None without a budget."""
        return None if self.ram_budget is None else self.ram_budget - self.recommended


def check_ram_budget(ram_budget):
    """Raises ValueError unless `ram_budget` is None or a positive number of bytes."""
    if ram_budget is None:
        return None
    if not isinstance(ram_budget, int) or isinstance(ram_budget, bool) or ram_budget <= 0:
        raise ValueError(f"`ram_budget` must be a positive number of bytes for the tensor arena, "
                         f"e.g. 256 * 1024, or None for no limit. Received: "
                         f"ram_budget={ram_budget!r}")
    return ram_budget


def arena_for_budget(minimum, ram_budget=None):
    """The `ArenaReport` of a measured `minimum` under `ram_budget` (bytes or None).

    Raises `ArenaBudgetError` when even the minimum does not fit, naming both sizes and what
    shrinks the arena.
    """
    check_ram_budget(ram_budget)
    recommended = recommended_arena_size(minimum)
    if ram_budget is None:
        return ArenaReport(minimum, recommended)
    if minimum > ram_budget:
        over = minimum - ram_budget
        raise ArenaBudgetError(
            f"the tensor arena needs at least {minimum:,} bytes (measured with the TFLM host "
            f"interpreter; {recommended:,} recommended), {over:,} bytes ({over / ram_budget:.0%}) "
            f"more than the RAM budget of {ram_budget:,} bytes. The arena holds the largest "
            "activations that are alive at once, so shrink those: a smaller input resolution, "
            "a smaller width multiplier (models.build(..., width=0.35)), structured channel "
            "pruning (tfedge.prune_channels(model, 0.5) or `tfedge compress "
            "--prune_channels=0.5`), or full int8 activations (float32 and int16 ones take 4 "
            "and 2 times the bytes); or raise the budget",
            minimum=minimum, recommended=recommended, ram_budget=ram_budget)
    capped = min(recommended, ram_budget - ram_budget % ALIGNMENT)
    return ArenaReport(minimum, max(capped, minimum), ram_budget)


def arena_report(tflite_bytes, *, ram_budget=None, timeout=120):
    """Measures the model's arena (`find_arena_size`) and checks it against `ram_budget`.

    Returns an `ArenaReport`; raises `ArenaBudgetError` (a ValueError) when the measured minimum
    exceeds `ram_budget`, and `TFLMError` when TFLM cannot run the model. `ram_budget` is
    checked before anything runs.
    """
    check_ram_budget(ram_budget)
    return arena_for_budget(find_arena_size(tflite_bytes, timeout=timeout), ram_budget)


_NUMPY_TYPES = {"INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
                "UINT8": np.uint8, "FLOAT32": np.float32, "FLOAT16": np.float16, "BOOL": np.bool_}


def _check_samples(samples, model):
    main = model.subgraphs[0]
    for s, sample in enumerate(samples):
        if len(sample) != len(main.inputs):
            raise ValueError(f"sample {s} holds {len(sample)} arrays; the model has "
                             f"{len(main.inputs)} inputs")
        for i, value in zip(main.inputs, sample):
            tensor = main.tensors[i]
            want = _NUMPY_TYPES.get(tensor.type_name)
            value = np.asarray(value)
            if (want is not None and value.dtype != want) or value.shape != tensor.shape:
                raise ValueError(
                    f"sample {s}: input {tensor.name!r} wants {tensor.type_name} "
                    f"{tensor.shape}; received {value.dtype.name} {value.shape}. Quantize float "
                    "images with `interpreter.quantize` and the input's scale and zero point")


def run(tflite_bytes, samples, *, arena_size=None, timeout=300):
    """Runs each sample (a list of input arrays) through TFLM; returns a list of output lists.

    Each array must have its input's type and shape (int8, int16 or float32, batch 1).
    """
    samples = [list(s) for s in samples]
    with _Session(tflite_bytes, timeout) as session:
        _check_samples(samples, session.model)
        arena = arena_size or _find(session)
        inputs = {f"s{s}_i{i}": np.asarray(v) for s, sample in enumerate(samples)
                  for i, v in enumerate(sample)}
        np.savez(session.path("in.npz"), **inputs)
        proc = session.call(arena, session.path("in.npz"), session.path("out.npz"))
        if proc.returncode != 0:
            raise TFLMError(f"the TFLM interpreter failed with a {arena}-byte arena: "
                            f"{_describe(proc, session.model)}")
        with np.load(session.path("out.npz")) as npz:
            return [[npz[f"s{s}_o{o}"] for o in range(session.num_outputs)]
                    for s in range(len(samples))]


def compare_with_reference(tflite_bytes, *, num_inputs=20, seed=0, arena_size=None):
    """Runs random inputs through TFLM and LiteRT's reference kernels; compares the outputs.

    Integer inputs (int8, int16) are uniform over their whole range, float inputs uniform in
    [0, 1) (`interpreter.random_inputs`). Outputs agree only when equal, float ones too (TFLM's
    float kernels are ports of the same reference code and matched exactly on tfedge's float32
    models); `max_abs_diff` says by how much they do not.
    """
    reference = litert.make_interpreter(tflite_bytes, reference=True)
    samples = litert.random_inputs(reference, num_inputs, seed=seed)
    expected = [litert.invoke(reference, sample) for sample in samples]
    actual = run(tflite_bytes, samples, arena_size=arena_size)
    total = mismatched = 0
    max_diffs = []
    for exp_outputs, act_outputs in zip(expected, actual):
        for e, a in zip(exp_outputs, act_outputs):
            if e.shape != a.shape or e.dtype != a.dtype:
                raise TFLMError(f"TFLM output {a.dtype.name} {a.shape} differs from LiteRT's "
                                f"{e.dtype.name} {e.shape}")
            if np.issubdtype(e.dtype, np.integer):
                diff = np.abs(e.astype(np.int64) - a.astype(np.int64))
                max_diffs.append(int(diff.max(initial=0)))
            else:
                diff = np.abs(e.astype(np.float64) - a.astype(np.float64))
                max_diffs.append(float(diff.max(initial=0.0)))
            total += diff.size
            mismatched += int(np.count_nonzero(e != a))
    return Agreement(num_inputs=num_inputs, total_values=total, mismatched_values=mismatched,
                     max_abs_diff=max(max_diffs, default=0))
