"""Checks a `.tflite` on the real TFLM interpreter (the `tflite-micro` package) on the host.

    arena = tflm.find_arena_size(tflite_bytes)          # smallest arena that works, in bytes
    agreement = tflm.compare_with_reference(tflite_bytes, num_inputs=20)
    assert agreement.exact                                 # TFLM == LiteRT reference kernels

TFLM can end the process it runs in (a too-small arena segfaults), so every call runs it in a
subprocess (`_tflm_worker.py`) and turns a failure into a `TFLMError` with the reason.

The arena is measured on a 64-bit host. TFLM's bookkeeping structs hold pointers, so a 32-bit
Cortex-M needs a little less; the activation buffers, which dominate, are the same size.
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


class TFLMError(RuntimeError):
    """The TFLM interpreter refused or crashed on the model."""


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How TFLM's outputs compare with LiteRT's reference kernels on the same inputs."""

    num_inputs: int
    total_values: int
    mismatched_values: int
    max_abs_diff: int

    @property
    def exact(self):
        return self.mismatched_values == 0


def _worker_path():
    return importlib.resources.files("tfedge.converters").joinpath("_tflm_worker.py")


class _Session:
    """A temporary folder holding the model, and the subprocess calls on it."""

    def __init__(self, tflite_bytes, timeout):
        model = tflite_reader.read_tflite(tflite_bytes)
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


def _describe(proc):
    if proc.returncode < 0:
        reason = f"killed by signal {-proc.returncode}"
    else:
        reason = f"exit status {proc.returncode}"
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
            raise TFLMError(f"the TFLM interpreter cannot run the model: {_describe(proc)}")
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


def run(tflite_bytes, samples, *, arena_size=None, timeout=300):
    """Runs each sample (a list of input arrays) through TFLM; returns a list of output lists."""
    samples = [list(s) for s in samples]
    with _Session(tflite_bytes, timeout) as session:
        arena = arena_size or _find(session)
        inputs = {f"s{s}_i{i}": np.asarray(v) for s, sample in enumerate(samples)
                  for i, v in enumerate(sample)}
        np.savez(session.path("in.npz"), **inputs)
        proc = session.call(arena, session.path("in.npz"), session.path("out.npz"))
        if proc.returncode != 0:
            raise TFLMError(f"the TFLM interpreter failed with a {arena}-byte arena: "
                            f"{_describe(proc)}")
        with np.load(session.path("out.npz")) as npz:
            return [[npz[f"s{s}_o{o}"] for o in range(session.num_outputs)]
                    for s in range(len(samples))]


def compare_with_reference(tflite_bytes, *, num_inputs=20, seed=0, arena_size=None):
    """Runs random integer inputs through TFLM and LiteRT's reference kernels; compares."""
    reference = litert.make_interpreter(tflite_bytes, reference=True)
    samples = litert.random_inputs(reference, num_inputs, seed=seed)
    expected = [litert.invoke(reference, sample) for sample in samples]
    actual = run(tflite_bytes, samples, arena_size=arena_size)
    total = mismatched = max_diff = 0
    for exp_outputs, act_outputs in zip(expected, actual):
        for e, a in zip(exp_outputs, act_outputs):
            if e.shape != a.shape:
                raise TFLMError(f"TFLM output shape {a.shape} differs from LiteRT's {e.shape}")
            diff = np.abs(e.astype(np.int64) - a.astype(np.int64))
            total += diff.size
            mismatched += int(np.count_nonzero(diff))
            max_diff = max(max_diff, int(diff.max(initial=0)))
    return Agreement(num_inputs=num_inputs, total_values=total, mismatched_values=mismatched,
                     max_abs_diff=max_diff)
