"""A short run of benchmarks/fuzz_reader.py's semantic phase: mutated models that still parse
(huge and negative dims, NaN scales, short buffers, mis-wired ops, extreme options, names
holding C code, odd subgraphs) go through code generation, the firmware export and lint, which
may only refuse them with tfedge's own errors. The benchmark runs 10,000 of these
(benchmarks/results/fuzz_reader.md); this keeps the property under test on every change.
"""

import importlib.util
import os
import pathlib
import traceback

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tfedge.converters import firmware, lint, op_resolver, tflm
from tfedge.converters.tflite_reader import TFLiteFormatError, read_tflite
from tfedge.microcontroller import codegen

pytestmark = pytest.mark.integration

_BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
_TFEDGE = os.path.dirname(os.path.dirname(os.path.abspath(firmware.__file__)))


def _load_mutate():
    spec = importlib.util.spec_from_file_location("_tfedge_bench_mutate",
                                                  _BENCHMARKS / "_mutate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mutator():
    mutate = _load_mutate()
    return mutate.Mutator(mutate.every_op_model(), "every-op")


def _deliberate(exc, types):
    """One of tfedge's errors, raised on purpose (see benchmarks/fuzz_reader.py: _allowed)."""
    if not isinstance(exc, types) or not str(exc).strip():
        return False
    if type(exc).__module__.startswith("tfedge."):
        return True
    last = traceback.extract_tb(exc.__traceback__)[-1]
    return os.path.abspath(last.filename).startswith(_TFEDGE) and \
        (last.line or "").lstrip().startswith("raise ")


CONSUMERS = {
    "codegen": (codegen.generate, (TFLiteFormatError, codegen.CodegenError)),
    "export": (lambda case: firmware.export(case, int8_kernels=True, arena=False,
                                            template=True),
               (TFLiteFormatError, op_resolver.UnsupportedOpError, tflm.TFLMError, ValueError)),
    "lint": (lint.lint, (TFLiteFormatError,)),
}


def test_the_unmutated_model_goes_through_everything(mutator):
    generated = codegen.generate(mutator.data)
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "SPLIT_V", "TRANSPOSE", "SOFTMAX"} <= \
        set(generated.ops)
    firmware.export(mutator.data, int8_kernels=True, arena=False, template=True)
    assert lint.lint(mutator.data).ok


def test_mutated_models_get_tfedge_errors_only(mutator):
    outcomes = {"parsed": 0, "refused": 0, "made": 0}

    @seed(15)
    @settings(max_examples=120, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data):
        case, description = mutator.mutate(data.draw)
        try:
            read_tflite(case)
        except TFLiteFormatError:
            return
        outcomes["parsed"] += 1
        for name, (consume, allowed) in CONSUMERS.items():
            try:
                consume(case)
                outcomes["made"] += 1
            except Exception as exc:  # noqa: BLE001 - sorted below
                assert _deliberate(exc, allowed), \
                    f"{name} on {description}: {type(exc).__name__}: {exc}"
                outcomes["refused"] += 1

    fuzz()
    # the mutations are meaningful: most cases parse, and both outcomes are common
    assert outcomes["parsed"] > 80 and outcomes["refused"] > 40 and outcomes["made"] > 40
