"""AOT code generation and the emulated Cortex-M: every zoo family, bit-exact on three boards.

Each model is compiled to C (`codegen`), built with arm-none-eabi-gcc and run under
qemu-system-arm; every output byte, and every op's output (CRC-32 per tensor, `trace=True`),
must equal LiteRT's reference kernels. Skipped, with the reason, only where the Arm toolchain
or QEMU is missing (CI installs both).
"""

import shutil

import numpy as np
import pytest

import tfedge
from tfedge import models
from tfedge.converters import read_tflite, to_int8
from tfedge.microcontroller import codegen, mcu, planner

pytestmark = pytest.mark.integration

TOOLCHAIN = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")
needs_toolchain = pytest.mark.skipif(
    not TOOLCHAIN, reason="arm-none-eabi-gcc or qemu-system-arm missing: apt-get install "
    "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm")

BOARDS = ("mps2-an386", "mps2-an500", "mps3-an547")
# One configuration per family at 96x96x3, each well under 4 MB of int8 weights.
FAMILIES = {
    "mobilenet_v2": dict(width=0.35),
    "mobilenet_v3_small": dict(width=0.35),
    "mobilenet_v3_large": dict(width=0.35),
    "shufflenet_v1": dict(width=0.5, groups=3),
    "shufflenet_v2": dict(width=0.5),
    "ghostnet": dict(width=0.5),
    "efficientnet_lite0": dict(width=0.25),
}
SHAPE = (96, 96, 3)


def int8_model(name, shape=SHAPE, **kwargs):
    tfedge.training.seed_everything(0)
    model = models.build(name, input_shape=shape, num_classes=10, **(kwargs or FAMILIES[name]))
    images = np.random.default_rng(0).random((16,) + shape, np.float32)
    for _ in range(20):  # BatchNorm statistics of the data, as training would leave them
        model(images, training=True)
    return to_int8(model, images, num_samples=16)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    return request.param, int8_model(request.param)


@needs_toolchain
@pytest.mark.parametrize("board", BOARDS)
def test_every_family_runs_bit_exact_on_every_board(family, board, tmp_path):
    name, tflite_bytes = family
    result = mcu.run(tflite_bytes, board, inputs=2, trace=True, output_dir=tmp_path)
    assert result.trace_mismatches == (), f"{name} on {board}: ops {result.trace_mismatches}"
    assert result.mismatched_bytes == 0 and result.exact
    assert len(result.outputs) == 2
    assert result.flash > result.weights_bytes > 0
    assert result.stack_used > 0 and result.instructions[1] > result.macs / 10


def test_arena_is_within_5_percent_of_the_live_tensor_bound(family):
    name, tflite_bytes = family
    generated = codegen.generate(tflite_bytes)
    assert generated.lower_bound <= generated.arena_bytes <= 1.05 * generated.lower_bound, name
    # The bound is the tensors' alone (no kernel scratch), computed independently here.
    buffers = planner.model_buffers(read_tflite(tflite_bytes))
    assert generated.lower_bound == planner.lower_bound(buffers.buffers) > 0


@needs_toolchain
def test_instruction_counts_are_deterministic_and_dsp_is_exact_too(int8_tflite, tmp_path):
    first = mcu.run(int8_tflite, "mps2-an386", inputs=2, dsp=True, output_dir=tmp_path / "a")
    again = mcu.run(int8_tflite, "mps2-an386", inputs=2, dsp=True, output_dir=tmp_path / "b")
    portable = mcu.run(int8_tflite, "mps2-an386", inputs=2, dsp=False,
                       output_dir=tmp_path / "c")
    assert first.exact and portable.exact
    assert first.instructions == again.instructions
    assert first.outputs == portable.outputs
    assert max(first.instructions) < max(portable.instructions)


@needs_toolchain
def test_tables_built_at_run_time_trade_instructions_for_flash(int8_tflite, tmp_path):
    fast = codegen.generate(int8_tflite)
    small = codegen.generate(int8_tflite, precompute=False)
    assert "_tables[" in fast.files["model.c"] and "_stream[" in fast.files["model.c"]
    assert "_tables[" not in small.files["model.c"] and "_stream[" not in small.files["model.c"]
    assert small.weights_bytes == fast.weights_bytes and small.tables_bytes < fast.tables_bytes
    assert small.arena_bytes == fast.arena_bytes  # the scratch is sized for both
    a = mcu.run(int8_tflite, "mps2-an386", inputs=2, output_dir=tmp_path / "a")
    b = mcu.run(int8_tflite, "mps2-an386", inputs=2, precompute=False, output_dir=tmp_path / "b")
    assert a.exact and b.exact and a.outputs == b.outputs
    assert b.weights_bytes < a.weights_bytes and max(b.instructions) > max(a.instructions)


@needs_toolchain
def test_profile_splits_one_inference_over_the_ops(int8_tflite, tmp_path):
    rows = mcu.profile(int8_tflite, "mps2-an386", output_dir=tmp_path / "p")
    whole = mcu.run(int8_tflite, "mps2-an386", inputs=1, output_dir=tmp_path / "r")
    generated = codegen.generate(int8_tflite)
    assert [r.name for r in rows] == list(generated.ops)
    assert [r.index for r in rows] == list(range(len(rows)))
    assert sum(r.macs for r in rows) == generated.macs == whole.macs
    for r in rows:
        assert (r.macs > 0) == (r.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"))
        assert r.instructions > 0 or r.name == "RESHAPE", r
    # The ops are all of the inference but the input and output copies; the hook reading the
    # counter costs a few instructions per op of its own beyond the calibrated overhead.
    total = sum(r.instructions for r in rows)
    assert abs(total - whole.instructions[0]) <= 0.01 * whole.instructions[0], (total, whole)
    conv = max((r for r in rows if r.macs), key=lambda r: r.macs)
    assert 0.1 < conv.macs_per_instruction < 2


def test_generated_code_declares_the_invoke_function(int8_tflite):
    generated = codegen.generate(int8_tflite)
    header = generated.files["model.h"]
    assert "int tfedge_model_invoke(const int8_t *in, int8_t *out);" in header
    assert f"#define TFEDGE_MODEL_INPUT_BYTES {32 * 32}" in header
    assert f"#define TFEDGE_MODEL_ARENA_BYTES {generated.arena_bytes}" in header
    source = generated.files["model.c"]
    assert source.count("tfedge_conv2d_s8(") == generated.ops.count("CONV_2D")
    assert codegen.generate(int8_tflite).files == generated.files  # deterministic


def test_float_and_unsupported_models_are_refused_by_op_and_tensor(float_tflite):
    with pytest.raises(codegen.CodegenError, match=r"op #0 CONV_2D .*is FLOAT32; the runtime "
                                                   r"computes int8 activations only"):
        codegen.generate(float_tflite)
    from tfedge._keras import keras, layers

    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, layers.LeakyReLU(0.1)(layers.Conv2D(2, 1)(inputs)))
    images = np.random.default_rng(0).random((8, 4, 4, 2), np.float32)
    with pytest.raises(codegen.CodegenError, match=r"op #1 LEAKY_RELU \(output '.+'\) has no "
                                                   r"kernel in the tfedge runtime; it runs ADD"):
        codegen.generate(to_int8(model, images))


def test_prefix_is_a_c_identifier(int8_tflite):
    assert "int kws_invoke(" in codegen.generate(int8_tflite, prefix="kws").files["model.h"]
    with pytest.raises(ValueError, match="`prefix` must be a C identifier"):
        codegen.generate(int8_tflite, prefix="9kws")
