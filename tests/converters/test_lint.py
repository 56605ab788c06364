"""Tests for tfedge.converters.lint: hand-built flatbuffers for each rule (no TensorFlow), then
real conversions of the zoo and of hand-made Keras models (marked integration)."""

import importlib.util
import json
import pathlib
import struct
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfedge  # noqa: F401  (sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads)
from tfedge.converters import lint as lint_module
from tfedge.converters.lint import STATUSES, TARGETS, LintReport, lint
from tfedge.converters.tflite_reader import BUILTIN_OPERATORS, TFLiteFormatError

integration = pytest.mark.integration

# ---------------------------------------------------------------------------------------------
# A small flatbuffer writer (parents before children, every uoffset points forward). Nodes:
# ("table", fields), ("vec", fmt, values), ("tvec", nodes), ("str", bytes); table fields are
# None, (struct format, value) scalars, or nodes.


def _table(*fields):
    return ("table", fields)


def _vec(fmt, values):
    return ("vec", fmt, tuple(values))


def _tvec(nodes):
    return ("tvec", tuple(nodes))


def _str(text):
    return ("str", text.encode("utf-8"))


def _write(buf, node):
    buf.extend(b"\0" * (-len(buf) % 4))
    pos = len(buf)
    kind = node[0]
    if kind == "str":
        buf += struct.pack("<I", len(node[1])) + node[1] + b"\0"
    elif kind == "vec":
        buf += struct.pack(f"<I{len(node[2])}{node[1]}", len(node[2]), *node[2])
    elif kind == "tvec":
        buf += struct.pack("<I", len(node[1])) + b"\0" * (4 * len(node[1]))
        for i, child in enumerate(node[1]):
            slot = pos + 4 + 4 * i
            struct.pack_into("<I", buf, slot, _write(buf, child) - slot)
    else:
        offsets, inline, children = [], b"", []
        for field in node[1]:
            if field is None:
                offsets.append(0)
            elif field[0] in ("table", "vec", "tvec", "str"):
                offsets.append(4 + len(inline))
                children.append((4 + len(inline), field))
                inline += b"\0\0\0\0"
            else:
                offsets.append(4 + len(inline))
                inline += struct.pack(field[0], field[1])
        vtable = struct.pack(f"<HH{len(offsets)}H", 4 + 2 * len(offsets), 4 + len(inline),
                             *offsets)
        vt_pos = len(buf)
        buf += vtable + b"\0" * (-len(vtable) % 4)
        pos = len(buf)
        buf += struct.pack("<i", pos - vt_pos) + inline
        for at, child in children:
            struct.pack_into("<I", buf, pos + at, _write(buf, child) - (pos + at))
    return pos


TYPES = {"FLOAT32": 0, "FLOAT16": 1, "INT32": 2, "UINT8": 3, "INT16": 7, "INT8": 9, "INT4": 17}
OPTION_TYPES = {"Conv2DOptions": 1, "DepthwiseConv2DOptions": 2, "FullyConnectedOptions": 8}
PADDING = {"SAME": 0, "VALID": 1}


def tensor(type_, shape, const=False, signature=None):
    return dict(type=type_, shape=tuple(shape), const=const, signature=signature)


def conv_options(stride=1, padding="SAME", dilation=1):
    return ("Conv2DOptions", (("<b", PADDING[padding]), ("<i", stride), ("<i", stride),
                              ("<b", 0), ("<i", dilation), ("<i", dilation)))


def dw_options(stride=1, padding="SAME", multiplier=1, dilation=1):
    return ("DepthwiseConv2DOptions", (("<b", PADDING[padding]), ("<i", stride), ("<i", stride),
                                       ("<i", multiplier), ("<b", 0), ("<i", dilation),
                                       ("<i", dilation)))


def build(tensors, ops, graph_inputs=(0,), graph_outputs=None):
    """A one-subgraph .tflite: `ops` are (name or ("CUSTOM", code), inputs, outputs[, options])."""
    codes, code_index = [], {}
    op_tables = []
    for spec in ops:
        name, inputs, outputs = spec[:3]
        options = spec[3] if len(spec) > 3 else None
        key = name if isinstance(name, str) else tuple(name)
        if key not in code_index:
            code_index[key] = len(codes)
            if isinstance(name, str):
                code = BUILTIN_OPERATORS.index(name)
                codes.append(_table(("<b", min(code, 127)), None, ("<i", 1), ("<i", code)))
            else:
                codes.append(_table(("<b", 32), _str(name[1]), ("<i", 1), ("<i", 32)))
        fields = [("<I", code_index[key]), _vec("i", inputs), _vec("i", outputs)]
        if options is not None:
            fields += [("<B", OPTION_TYPES[options[0]]), _table(*options[1])]
        op_tables.append(_table(*fields))
    buffers = [_table()]
    tensor_tables = []
    for k, t in enumerate(tensors):
        buffer = 0
        if t["const"]:
            buffer = len(buffers)
            buffers.append(_table(_vec("B", [1] * 4)))
        fields = [_vec("i", t["shape"]), ("<b", TYPES[t["type"]]), ("<I", buffer),
                  _str(f"t{k}"), None, None, None]
        if t["signature"] is not None:
            fields.append(_vec("i", t["signature"]))
        tensor_tables.append(_table(*fields))
    if graph_outputs is None:
        graph_outputs = tuple(ops[-1][2])
    subgraph = _table(_tvec(tensor_tables), _vec("i", graph_inputs), _vec("i", graph_outputs),
                      _tvec(op_tables), _str("main"))
    root = _table(("<I", 3), _tvec(codes), _tvec([subgraph]), _str("lint test"), _tvec(buffers))
    buf = bytearray(8)
    buf[4:8] = b"TFL3"
    struct.pack_into("<I", buf, 0, _write(buf, root))
    return bytes(buf)


def one_op(name, tensors, inputs, outputs, options=None, target="cortex-m4"):
    """The finding for a model made of this one op."""
    spec = (name, inputs, outputs) if options is None else (name, inputs, outputs, options)
    report = lint(build(tensors, [spec]), target=target)
    assert len(report.findings) == 1
    return report.findings[0]


def conv(in_shape, filter_hw, out_channels, out_hw, type_="INT8", weights="INT8", **options):
    tensors = [tensor(type_, in_shape),
               tensor(weights, (out_channels, *filter_hw, in_shape[3]), const=True),
               tensor("INT32", (out_channels,), const=True),
               tensor(type_, (1, *out_hw, out_channels))]
    return tensors, (0, 1, 2), (3,), conv_options(**options)


def depthwise(in_shape, filter_hw, out_channels, out_hw, **options):
    tensors = [tensor("INT8", in_shape), tensor("INT8", (1, *filter_hw, out_channels), True),
               tensor("INT32", (out_channels,), True),
               tensor("INT8", (in_shape[0], *out_hw, out_channels))]
    return tensors, (0, 1, 2), (3,), dw_options(**options)


# ---------------------------------------------------------------------------------------------
# Rules, one op at a time.


@pytest.mark.parametrize("args, options, path", [
    (((1, 8, 8, 16), (1, 1), 32, (8, 8)), {}, "arm_convolve_1x1_s8_fast"),
    (((1, 8, 8, 16), (1, 1), 32, (4, 4)), dict(stride=2), "arm_convolve_1x1_s8"),
    (((1, 8, 8, 16), (3, 3), 32, (8, 8)), {}, "arm_convolve_s8"),
    (((1, 1, 16, 8), (1, 3), 8, (1, 16)), {}, "arm_convolve_1_x_n_s8"),
    (((1, 8, 8, 16), (1, 1), 32, (8, 8)), dict(dilation=2), "arm_convolve_s8"),
])
def test_conv_is_optimized_with_the_wrapper_path(args, options, path):
    finding = one_op("CONV_2D", *conv(*args, **options))
    assert finding.status == "optimized"
    assert finding.kernel == f"arm_convolve_wrapper_s8 -> {path}"
    assert finding.reason == finding.fix == ""
    assert [t.type for t in finding.inputs] == ["INT8", "INT8", "INT32"]
    assert finding.outputs[0].shape == (1, *args[3], args[2])


def test_conv_int16_and_int4_weights():
    assert one_op("CONV_2D", *conv((1, 8, 8, 4), (3, 3), 8, (8, 8), type_="INT16")).kernel == \
        "arm_convolve_wrapper_s16"
    assert one_op("CONV_2D", *conv((1, 8, 8, 4), (3, 3), 8, (8, 8), weights="INT4")).kernel == \
        "arm_convolve_wrapper_s4"


@pytest.mark.parametrize("target, kernel", [
    ("cortex-m4", "arm_depthwise_conv_wrapper_s8 -> arm_depthwise_conv_3x3_s8"),
    ("cortex-m7", "arm_depthwise_conv_wrapper_s8 -> arm_depthwise_conv_3x3_s8"),
    ("cortex-m55", "arm_depthwise_conv_wrapper_s8 -> arm_depthwise_conv_s8_opt"),
])
def test_depthwise_3x3_kernel_differs_by_target(target, kernel):
    finding = one_op("DEPTHWISE_CONV_2D", *depthwise((1, 8, 8, 16), (3, 3), 16, (8, 8)),
                     target=target)
    assert (finding.status, finding.kernel) == ("optimized", kernel)


def test_depthwise_5x5_and_stride_2():
    finding = one_op("DEPTHWISE_CONV_2D", *depthwise((1, 8, 8, 16), (5, 5), 16, (8, 8)))
    assert finding.kernel.endswith("arm_depthwise_conv_s8_opt")
    finding = one_op("DEPTHWISE_CONV_2D",
                     *depthwise((1, 8, 8, 16), (3, 3), 16, (4, 4), stride=2))
    assert finding.kernel.endswith("arm_depthwise_conv_3x3_s8")


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7", "cortex-m55"])
def test_depthwise_multiplier_2_falls_back(target):
    finding = one_op("DEPTHWISE_CONV_2D",
                     *depthwise((1, 8, 8, 8), (3, 3), 16, (8, 8), multiplier=2), target=target)
    assert finding.status == "reference"
    assert finding.kernel == "arm_depthwise_conv_wrapper_s8 -> arm_depthwise_conv_s8"
    assert finding.reason.startswith("depth multiplier 2: CMSIS-NN runs its generic "
                                     "arm_depthwise_conv_s8 loop")
    assert "depth multiplier 1" in finding.fix


def test_depthwise_dilation_falls_back():
    finding = one_op("DEPTHWISE_CONV_2D",
                     *depthwise((1, 8, 8, 8), (3, 3), 8, (8, 8), dilation=2))
    assert finding.status == "reference" and finding.reason.startswith("dilation 2x2")


def test_depthwise_with_one_input_channel_on_mve_becomes_a_convolution():
    layer = depthwise((1, 8, 8, 1), (3, 3), 16, (8, 8), multiplier=16)
    m55 = one_op("DEPTHWISE_CONV_2D", *layer, target="cortex-m55")
    assert m55.status == "optimized"
    assert m55.kernel == ("arm_depthwise_conv_wrapper_s8 -> arm_depthwise_conv_to_conv_s8 -> "
                          "arm_convolve_wrapper_s8")
    m4 = one_op("DEPTHWISE_CONV_2D", *layer, target="cortex-m4")
    assert m4.status == "reference" and m4.reason.startswith("depth multiplier 16")
    # 4 output channels: under armclang's threshold of 8, so only GCC builds convert it.
    small = one_op("DEPTHWISE_CONV_2D", *depthwise((1, 8, 8, 1), (3, 3), 4, (8, 8)),
                   target="cortex-m55")
    assert small.status == "reference" and "with GCC" in small.reason


@pytest.mark.parametrize("name, kernel", [("ADD", "arm_elementwise_add_s8"),
                                          ("MUL", "arm_elementwise_mul_s8")])
def test_elementwise_same_shape_is_optimized_and_broadcast_is_reference(name, kernel):
    same = one_op(name, [tensor("INT8", (1, 4, 4, 8)), tensor("INT8", (4, 4, 8)),
                         tensor("INT8", (1, 4, 4, 8))], (0, 1), (2,))
    assert (same.status, same.kernel) == ("optimized", kernel)  # ranks extend to equal shapes
    broadcast = one_op(name, [tensor("INT8", (1, 4, 4, 8)), tensor("INT8", (1, 1, 1, 8)),
                              tensor("INT8", (1, 4, 4, 8))], (0, 1), (2,))
    assert broadcast.status == "reference"
    assert broadcast.reason.startswith(f"broadcast {name} of [1, 4, 4, 8] and [1, 1, 1, 8]")
    assert "Broadcast" in broadcast.kernel
    scalar = one_op(name, [tensor("INT8", (1, 4, 4, 8)), tensor("INT8", (), const=True),
                           tensor("INT8", (1, 4, 4, 8))], (0, 1), (2,))
    assert scalar.status == "reference"


def test_int16_elementwise_and_int32_add():
    add16 = one_op("ADD", [tensor("INT16", (1, 8)), tensor("INT16", (1, 8)),
                           tensor("INT16", (1, 8))], (0, 1), (2,))
    assert add16.kernel == "arm_elementwise_add_s16"
    add32 = one_op("ADD", [tensor("INT32", (1, 8)), tensor("INT32", (1, 8)),
                           tensor("INT32", (1, 8))], (0, 1), (2,))
    assert add32.status == "reference" and "covers int8 and int16 only" in add32.reason


def test_fully_connected_kernels():
    def fc(in_shape, out_shape, type_="INT8"):
        tensors = [tensor(type_, in_shape), tensor("INT8", (out_shape[-1], in_shape[-1]), True),
                   tensor("INT32", (out_shape[-1],), True), tensor(type_, out_shape)]
        return one_op("FULLY_CONNECTED", tensors, (0, 1, 2), (3,))

    assert fc((1, 64), (1, 10)).kernel == "arm_fully_connected_s8"
    assert fc((1, 4, 64), (1, 4, 10)).kernel == "arm_convolve_1x1_s8_fast"
    assert fc((1, 4, 62), (1, 4, 10)).kernel == "arm_fully_connected_s8"
    assert fc((1, 64), (1, 10), type_="INT16").kernel == "arm_fully_connected_s16"


def test_softmax_pooling_and_pad():
    softmax = one_op("SOFTMAX", [tensor("INT8", (1, 10)), tensor("INT16", (1, 10))], (0,), (1,))
    assert softmax.kernel == "arm_softmax_s8_s16"
    pool = one_op("AVERAGE_POOL_2D", [tensor("INT8", (1, 4, 4, 8)), tensor("INT8", (1, 1, 1, 8))],
                  (0,), (1,))
    assert (pool.status, pool.kernel) == ("optimized", "arm_avgpool_s8")
    pad8 = one_op("PAD", [tensor("INT8", (1, 4, 4, 8)), tensor("INT32", (4, 2), True),
                          tensor("INT8", (1, 6, 6, 8))], (0, 1), (2,))
    assert pad8.kernel == "arm_pad_s8"
    pad16 = one_op("PAD", [tensor("INT16", (1, 4, 4, 8)), tensor("INT32", (4, 2), True),
                           tensor("INT16", (1, 6, 6, 8))], (0, 1), (2,))
    assert pad16.status == "reference"
    assert pad16.reason == ("INT16 PAD: TFLM's CMSIS-NN PAD covers int8 only "
                            "(kernels/cmsis_nn/pad.cc); INT16 runs on the portable kernel")


def test_ops_without_cmsis_nn_kernels_are_reference_with_a_reason():
    hswish = one_op("HARD_SWISH", [tensor("INT8", (1, 4, 4, 8)), tensor("INT8", (1, 4, 4, 8))],
                    (0,), (1,))
    assert hswish.status == "reference" and hswish.kernel == "TFLM reference"
    assert "no CMSIS-NN HARD_SWISH" in hswish.reason
    mean = one_op("MEAN", [tensor("INT8", (1, 4, 4, 8)), tensor("INT32", (2,), True),
                           tensor("INT8", (1, 8))], (0, 1), (2,))
    assert mean.status == "reference" and "AVERAGE_POOL_2D" in mean.fix
    neg = one_op("NEG", [tensor("INT8", (1, 8)), tensor("INT8", (1, 8))], (0,), (1,))
    assert neg.reason.startswith("TFLM has no CMSIS-NN NEG")


def _transpose(type_, rank):
    shape = tuple(range(2, 2 + rank))
    return [tensor(type_, shape), tensor("INT32", (rank,), True),
            tensor(type_, shape[::-1])], (0, 1), (2,)


def test_transpose_rank_limits():
    four = one_op("TRANSPOSE", *_transpose("INT8", 4))
    assert (four.status, four.kernel) == ("optimized", "arm_transpose_s8")
    for target in ("cortex-m4", "cortex-m7", "cortex-m55"):
        five = one_op("TRANSPOSE", *_transpose("INT8", 5), target=target)
        assert five.status == "blocker"
        assert five.reason.startswith("5-D TRANSPOSE: TFLM's CMSIS-NN int8 TRANSPOSE takes at "
                                      "most 4 dims")
        assert five.fix == ("reshape to at most 4 dims before the transpose (tfedge's "
                            "ChannelShuffle does)")
    assert one_op("TRANSPOSE", *_transpose("INT8", 5), target="generic").status == "reference"
    # int16 never reaches the CMSIS-NN kernel; six dims are beyond every TFLM build.
    assert one_op("TRANSPOSE", *_transpose("INT16", 5)).status == "reference"
    six = one_op("TRANSPOSE", *_transpose("INT8", 6), target="generic")
    assert six.status == "blocker" and six.reason.startswith("6-D TRANSPOSE")


def test_custom_and_missing_ops():
    io = [tensor("INT8", (1, 8)), tensor("INT8", (1, 8))]
    custom = one_op(("CUSTOM", "MyOp"), io, (0,), (1,))
    assert custom.status == "blocker" and custom.op == "MyOp"
    assert "AddCustom" in custom.fix
    flex = one_op(("CUSTOM", "FlexRoll"), io, (0,), (1,))
    assert flex.status == "blocker" and "TensorFlow (Flex) op" in flex.reason
    shipped = one_op(("CUSTOM", "TFLite_Detection_PostProcess"), io, (0,), (1,))
    assert shipped.status == "reference" and "AddDetectionPostprocess" in shipped.fix
    assert one_op(("CUSTOM", "SignalWindow"), io, (0,), (1,)).status == "reference"
    npu = one_op(("CUSTOM", "ethos-u"), io, (0,), (1,), target="cortex-m55")
    assert npu.status == "blocker" and "Ethos-U NPU" in npu.reason
    topk = one_op("TOPK_V2", io, (0,), (1,), target="generic")
    assert topk.status == "blocker" and topk.reason == "TFLM has no kernel for TOPK_V2"


def test_types_tflm_lacks():
    reduce_max = one_op("REDUCE_MAX", [tensor("INT16", (1, 4, 4, 8)), tensor("INT32", (2,), True),
                                       tensor("INT16", (1, 8))], (0, 1), (2,))
    assert reduce_max.status == "blocker" and "GlobalAveragePooling2D" in reduce_max.fix
    uint8 = one_op("CONV_2D", *conv((1, 8, 8, 4), (3, 3), 8, (8, 8), type_="UINT8",
                                    weights="UINT8"))
    assert uint8.status == "blocker"
    assert uint8.reason == ("UINT8 input: TFLM's CONV_2D takes float32, int8 or int16 inputs "
                            "only")


def test_float_ops():
    # A float op between int8 ops.
    tensors = [tensor("INT8", (1, 8)), tensor("FLOAT32", (1, 8)), tensor("FLOAT32", (1, 8)),
               tensor("INT8", (1, 8))]
    report = lint(build(tensors, [("DEQUANTIZE", (0,), (1,)), ("SIN", (1,), (2,)),
                                  ("QUANTIZE", (2,), (3,))]))
    assert [f.status for f in report.findings] == ["blocker"] * 3
    sin = report.findings[1]
    assert sin.reason.startswith("float op in an int8 model ('t1' FLOAT32, 't2' FLOAT32)")
    assert sin.fix.startswith("convert with tfedge.converters.to_int8 so no float op is left")
    # Float input and output converted at the boundary: reference, with the int8-I/O fix.
    tensors = [tensor("FLOAT32", (1, 8)), tensor("INT8", (1, 8)), tensor("INT8", (1, 8)),
               tensor("FLOAT32", (1, 8))]
    report = lint(build(tensors, [("QUANTIZE", (0,), (1,)), ("RELU", (1,), (2,)),
                                  ("DEQUANTIZE", (2,), (3,))]))
    assert [f.status for f in report.findings] == ["reference"] * 3
    assert report.findings[0].reason.startswith("float model input converted at the graph")
    assert report.findings[2].reason.startswith("float model output converted at the graph")
    assert "int8 input and output" in report.findings[0].fix


def test_hybrid_float16_and_float32_models():
    hybrid = one_op("FULLY_CONNECTED", [tensor("FLOAT32", (1, 64)),
                                        tensor("INT8", (10, 64), True),
                                        tensor("FLOAT32", (10,), True),
                                        tensor("FLOAT32", (1, 10))], (0, 1, 2), (3,))
    assert hybrid.status == "blocker" and hybrid.reason.startswith("hybrid op")
    assert "full integer" in hybrid.fix
    float16 = lint(build([tensor("FLOAT16", (10, 64), True), tensor("FLOAT32", (10, 64)),
                          tensor("FLOAT32", (1, 64)), tensor("FLOAT32", (1, 10))],
                         [("DEQUANTIZE", (0,), (1,)), ("FULLY_CONNECTED", (2, 1, -1), (3,))],
                         graph_inputs=(2,)))
    assert float16.findings[0].status == "blocker"
    assert float16.findings[0].fix == ("convert with tfedge.converters.to_int8 instead of "
                                       "to_float16")
    assert float16.findings[1].status == "reference"  # a float model's float op runs
    assert float16.findings[1].inputs[-1].index == 1  # the absent bias (-1) is left out
    float32 = one_op("CONV_2D", *conv((1, 8, 8, 4), (3, 3), 8, (8, 8), type_="FLOAT32",
                                      weights="FLOAT32"))
    assert float32.status == "reference" and float32.reason.startswith("float model")


def test_dynamic_shapes():
    tensors = [tensor("INT8", (1, 8, 8, 4), signature=(-1, 8, 8, 4)),  # dynamic batch
               tensor("INT32", (4,)), tensor("INT32", (1,), True), tensor("INT32", (1,), True),
               tensor("INT32", (1,), True), tensor("INT32", ()), tensor("INT32", (2,)),
               tensor("INT8", (1, 256)), tensor("INT8", (1, 8, 8, 4)),
               tensor("INT8", (1, 8, 8, 4))]
    ops = [("SHAPE", (0,), (1,)), ("STRIDED_SLICE", (1, 2, 3, 4), (5,)),
           ("PACK", (5, 2), (6,)), ("RESHAPE", (0, 6), (7,)), ("RELU", (0,), (8,)),
           ("ADD", (8, 8), (9,))]
    report = lint(build(tensors, ops, graph_outputs=(7, 9)))
    assert [f.status for f in report.findings] == ["blocker"] * 4 + ["reference", "optimized"]
    shape, strided, pack, reshape = report.findings[:4]
    assert shape.reason.startswith("SHAPE of 't0' reads a size that is only known at run time")
    assert "fix the batch to 1" in shape.fix
    assert strided.reason.endswith("(input 't1', from SHAPE #0)")
    assert pack.reason.endswith("(input 't5', from SHAPE #0)")
    assert reshape.reason.endswith("(input 't6', from SHAPE #0)")
    # Unknown dims beyond the batch stop every op that touches them.
    report = lint(build([tensor("INT8", (1, 1, 1, 4), signature=(1, -1, -1, 4)),
                         tensor("INT8", (1, 1, 1, 4), signature=(1, -1, -1, 4))],
                        [("RELU", (0,), (1,))]))
    finding = report.findings[0]
    assert finding.status == "blocker"
    assert finding.reason.startswith("tensor 't0' has dynamic dims [1, 2]")
    assert "fixed input_shape" in finding.fix


def test_generic_target_has_no_cmsis_nn():
    tensors, inputs, outputs, options = conv((1, 8, 8, 16), (1, 1), 32, (8, 8))
    finding = one_op("CONV_2D", tensors, inputs, outputs, options, target="generic")
    assert finding.status == "reference" and finding.kernel == "TFLM reference"
    assert finding.reason.startswith("generic target")


# ---------------------------------------------------------------------------------------------
# The report.


def _three_op_model():
    tensors, _, _, options = conv((1, 8, 8, 4), (1, 1), 8, (8, 8))
    tensors += [tensor("INT8", (1, 8, 8, 8)), tensor("INT32", (5,), True),
                tensor("INT8", (1, 8, 8, 2, 4)), tensor("INT32", (5,), True),
                tensor("INT8", (1, 8, 8, 4, 2))]
    ops = [("CONV_2D", (0, 1, 2), (3,), options), ("HARD_SWISH", (3,), (4,)),
           ("RESHAPE", (4, 5), (6,)), ("TRANSPOSE", (6, 7), (8,))]
    return build(tensors, ops)


def test_report_summary_json_and_table(tmp_path):
    data = _three_op_model()
    report = lint(data, target="cortex-m7")
    assert isinstance(report, LintReport) and report.target == "cortex-m7"
    assert report.summary == {"optimized": 1, "reference": 2, "blocker": 1}
    assert not report.ok and [f.op for f in report.blockers] == ["TRANSPOSE"]
    assert [f.index for f in report.by_status("reference")] == [1, 2]
    parsed = json.loads(report.to_json())
    assert parsed == report.as_dict()
    assert list(parsed) == ["target", "ok", "summary", "findings"]
    assert parsed["findings"][0] == {
        "index": 0, "op": "CONV_2D", "status": "optimized",
        "kernel": "arm_convolve_wrapper_s8 -> arm_convolve_1x1_s8_fast", "reason": "", "fix": "",
        "inputs": [
            {"tensor": 0, "name": "t0", "type": "INT8", "shape": [1, 8, 8, 4], "constant": False},
            {"tensor": 1, "name": "t1", "type": "INT8", "shape": [8, 1, 1, 4], "constant": True},
            {"tensor": 2, "name": "t2", "type": "INT32", "shape": [8], "constant": True}],
        "outputs": [{"tensor": 3, "name": "t3", "type": "INT8", "shape": [1, 8, 8, 8],
                     "constant": False}]}
    text = report.table()
    lines = text.splitlines()
    assert lines[0] == "target cortex-m7: 4 ops: optimized 1, reference 2, blocker 1"
    assert lines[2].split() == ["0", "CONV_2D", "optimized", "INT8", "1x8x8x4", "->", "INT8",
                                "1x8x8x8", "arm_convolve_wrapper_s8", "->",
                                "arm_convolve_1x1_s8_fast"]
    assert "blockers:" in lines and "reference kernels:" in lines
    assert "  #3 TRANSPOSE: 5-D TRANSPOSE" in text
    # Deterministic: the same bytes, as bytes or as a file, give the same report and text.
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    again = lint(str(path), target="cortex-m7")
    assert again == report and again.to_json() == report.to_json() and again.table() == text
    assert lint(path, target="cortex-m7") == report
    assert lint(bytearray(data), target="cortex-m7") == report


def test_every_target_and_status_name():
    data = _three_op_model()
    for target in TARGETS:
        report = lint(data, target=target)
        assert sum(report.summary.values()) == 4
        assert set(report.summary) == set(STATUSES)
        assert all(f.status in STATUSES for f in report.findings)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`target` must be one of 'cortex-m4', 'cortex-m7', "
                                         r"'cortex-m55', 'generic'. Received: target='m4'"):
        lint(_three_op_model(), target="m4")
    with pytest.raises(TypeError, match=r"Received: builtins.int"):
        lint(42)
    with pytest.raises(TFLiteFormatError, match="file identifier"):
        lint(b"\0" * 64)
    with pytest.raises(ValueError, match=r"`status` must be one of"):
        lint(_three_op_model()).by_status("fine")
    with pytest.raises(FileNotFoundError):
        lint("/no/such/model.tflite")


_FUZZ_MODELS = []


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_lint_never_crashes_on_damaged_models(data):
    """Mutated models either fail to parse (TFLiteFormatError) or lint on every target."""
    if not _FUZZ_MODELS:
        _FUZZ_MODELS.append(_three_op_model())
        _FUZZ_MODELS.append(build(
            [tensor("INT8", (1, 8), signature=(-1, 8)), tensor("INT32", (2,)),
             tensor("FLOAT32", (1, 8)), tensor("INT8", (1, 8))],
            [("SHAPE", (0,), (1,)), ("DEQUANTIZE", (0,), (2,)), ("QUANTIZE", (2,), (3,))]))
    case = bytearray(data.draw(st.sampled_from(_FUZZ_MODELS)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(8, len(case) - 4))
        struct.pack_into("<I", case, at, data.draw(st.sampled_from(
            [0, 1, 2, 3, 4, 5, 9, 0xFF, 0xFFFF, 0xFFFFFFFF, len(case)])))
    try:
        reports = [lint(bytes(case), target=target) for target in TARGETS]
    except TFLiteFormatError:
        return
    for report in reports:
        assert json.loads(report.to_json()) == report.as_dict()
        assert report.table().startswith(f"target {report.target}: ")


def test_tables_name_known_ops():
    names = set(BUILTIN_OPERATORS)
    assert lint_module.TFLM_BUILTIN_OPS <= names
    assert set(lint_module.CMSIS_NN_KERNELS) <= lint_module.TFLM_BUILTIN_OPS
    assert set(lint_module.REFERENCE_NOTES) <= lint_module.TFLM_BUILTIN_OPS
    assert set(lint_module.CMSIS_NN_SOURCES) == set(lint_module.CMSIS_NN_KERNELS)
    for op, kernels in lint_module.CMSIS_NN_KERNELS.items():
        assert set(kernels) <= {"INT8", "INT16"}, op
    assert set(lint_module.TARGET_EXTENSIONS) == set(TARGETS)


# ---------------------------------------------------------------------------------------------
# Real conversions.


def _load_test_zoo():
    path = pathlib.Path(__file__).resolve().parents[1] / "models" / "test_zoo.py"
    spec = importlib.util.spec_from_file_location("_tfedge_lint_test_zoo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _zoo_names():
    from tfedge import models

    return models.names()


@pytest.fixture(scope="module", params=_zoo_names())
def zoo(request):
    """(name, int8 .tflite) of each registered model, built as tests/models/test_zoo.py does."""
    from tfedge.converters import to_int8

    test_zoo = _load_test_zoo()
    model = test_zoo.build(request.param)
    return request.param, to_int8(model, test_zoo.IMAGES, num_samples=16)


def _expected_optimized(finding):
    """Independent of the linter's rules: the ops of tfedge's zoo CMSIS-NN runs."""
    if finding.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX",
                      "AVERAGE_POOL_2D", "MAX_POOL_2D", "TRANSPOSE", "PAD"):
        return True
    if finding.op in ("ADD", "MUL"):
        a, b = finding.inputs[:2]
        rank = max(len(a.shape), len(b.shape))
        return (1,) * (rank - len(a.shape)) + a.shape == (1,) * (rank - len(b.shape)) + b.shape
    return False


@integration
def test_zoo_models_have_no_blockers(zoo):
    name, tflite_bytes = zoo
    m4 = lint(tflite_bytes, target="cortex-m4")
    for target in TARGETS:
        report = lint(tflite_bytes, target=target)
        assert report.ok, (name, target, report.table())
        assert report.summary["blocker"] == 0
    for finding in m4.findings:
        assert finding.status == ("optimized" if _expected_optimized(finding) else "reference"), \
            (name, finding)
        if finding.status == "reference":
            assert finding.reason, finding
    compute = [f for f in m4.findings
               if f.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert compute and all(f.status == "optimized" and f.kernel.startswith("arm_")
                           and f.inputs[0].type == "INT8" for f in compute)
    generic = lint(tflite_bytes, target="generic")
    assert generic.summary == {"optimized": 0, "reference": len(generic.findings), "blocker": 0}
    # Every zoo depthwise has multiplier 1, so M55 and M4 differ only in the 3x3 kernel choice.
    m55 = lint(tflite_bytes, target="cortex-m55")
    assert m55.summary == m4.summary
    for a, b in zip(m4.findings, m55.findings):
        if a.kernel != b.kernel:
            assert a.kernel.endswith("arm_depthwise_conv_3x3_s8")
            assert b.kernel.endswith("arm_depthwise_conv_s8_opt")


@integration
def test_zoo_specific_findings(zoo):
    name, tflite_bytes = zoo
    report = lint(tflite_bytes, target="cortex-m4")
    by_op = {}
    for f in report.findings:
        by_op.setdefault(f.op, []).append(f)
    if name.startswith("mobilenet_v3"):
        assert by_op["HARD_SWISH"]
        for f in by_op["HARD_SWISH"]:
            assert f.status == "reference" and "no CMSIS-NN HARD_SWISH" in f.reason
    if name.startswith(("mobilenet_v3", "ghostnet")):
        squeeze_excite = [f for f in by_op["MUL"] if f.inputs[1].shape[1:3] == (1, 1)
                          and f.inputs[0].shape[1] > 1]
        assert squeeze_excite and all(f.status == "reference"
                                      and f.reason.startswith("broadcast MUL") for f in
                                      squeeze_excite)
    if name.startswith("shufflenet"):
        assert by_op["TRANSPOSE"]
        for f in by_op["TRANSPOSE"]:
            assert len(f.inputs[0].shape) == 4
            assert (f.status, f.kernel) == ("optimized", "arm_transpose_s8")
    for f in by_op.get("MEAN", ()):
        assert f.status == "reference" and "AveragePooling2D" in f.fix
    assert by_op["SOFTMAX"][0].kernel == "arm_softmax_s8"


def _convert_partially_int8(model, samples):
    """int8 where TFLite can, float elsewhere, float input and output: what tfedge's to_int8
    refuses (check_full_int8), made with the converter directly."""
    from tfedge._keras import tf
    from tfedge.converters import tflite

    converter = tflite.converter_for(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter([[s] for s in samples])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


def _hand_made_model(shuffle_layer):
    """Conv -> shuffle -> squeeze-excite style broadcast MUL -> SIN (no int8 kernel) -> Dense."""
    from tfedge._keras import keras, layers, tf

    class Sin(layers.Layer):
        def call(self, x):
            return tf.sin(x)

    tf.random.set_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = shuffle_layer(x)
    gate = layers.GlobalAveragePooling2D(keepdims=True)(x)
    gate = layers.Conv2D(8, 1, activation="sigmoid")(gate)
    x = layers.Multiply()([x, gate])
    x = Sin()(x)
    x = layers.Flatten()(layers.Conv2D(4, 1)(x))
    return keras.Model(inputs, layers.Dense(3)(x))


def _shuffle_5d():
    from tfedge._keras import layers, tf

    class Shuffle5D(layers.Layer):
        """The usual shuffle: (N, H, W, groups, C/groups) -> 5-D transpose -> back."""

        def call(self, x):
            _, h, w, c = x.shape
            y = tf.reshape(x, [-1, h, w, 2, c // 2])
            return tf.reshape(tf.transpose(y, [0, 1, 2, 4, 3]), [-1, h, w, c])

    return Shuffle5D()


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(0)
    return [rng.random((1, 8, 8, 1), np.float32) for _ in range(8)]


@integration
def test_hand_made_model_float_op_5d_transpose_and_broadcast_mul(samples):
    tflite_bytes = _convert_partially_int8(_hand_made_model(_shuffle_5d()), samples)
    report = lint(tflite_bytes, target="cortex-m4")
    by_op = {}
    for f in report.findings:
        by_op.setdefault(f.op, []).append(f)
    assert not report.ok

    (sin,) = by_op["SIN"]
    assert sin.status == "blocker" and sin.reason.startswith("float op in an int8 model")
    assert sin.fix.startswith("convert with tfedge.converters.to_int8 so no float op is left")
    assert [t.type for t in sin.inputs + sin.outputs] == ["FLOAT32", "FLOAT32"]

    (transpose,) = by_op["TRANSPOSE"]
    assert len(transpose.inputs[0].shape) == 5 and transpose.inputs[0].type == "INT8"
    assert transpose.status == "blocker" and transpose.reason.startswith("5-D TRANSPOSE")
    assert transpose.fix == ("reshape to at most 4 dims before the transpose (tfedge's "
                             "ChannelShuffle does)")

    broadcast = [f for f in by_op["MUL"] if f.inputs[1].shape == (1, 1, 1, 8)]
    assert len(broadcast) == 1 and broadcast[0].status == "reference"
    assert broadcast[0].reason.startswith("broadcast MUL of [1, 8, 8, 8] and [1, 1, 1, 8]")

    # The float input and output wrappers run, with a fix; the conv before the shuffle is int8.
    assert report.findings[0].op == "QUANTIZE" and report.findings[0].status == "reference"
    assert report.findings[-1].op == "DEQUANTIZE" and report.findings[-1].status == "reference"
    assert by_op["CONV_2D"][0].status == "optimized"
    blocker_ops = sorted(f.op for f in report.blockers)
    assert blocker_ops == ["DEQUANTIZE", "QUANTIZE", "SIN", "TRANSPOSE"]

    generic = lint(tflite_bytes, target="generic")
    assert next(f for f in generic.findings if f.op == "TRANSPOSE").status == "reference"
    assert sorted(f.op for f in generic.blockers) == ["DEQUANTIZE", "QUANTIZE", "SIN"]


@integration
def test_channel_shuffle_fix_gives_an_optimized_transpose(samples):
    from tfedge.models._layers import ChannelShuffle

    tflite_bytes = _convert_partially_int8(_hand_made_model(ChannelShuffle(2)), samples)
    transposes = [f for f in lint(tflite_bytes).findings if f.op == "TRANSPOSE"]
    assert len(transposes) == 1 and len(transposes[0].inputs[0].shape) == 4
    assert (transposes[0].status, transposes[0].kernel) == ("optimized", "arm_transpose_s8")


@integration
def test_dynamic_batch_from_the_keras_converter():
    """TFLiteConverter.from_keras_model keeps the batch dynamic; a reshape that reads it makes
    SHAPE / STRIDED_SLICE ops."""
    from tfedge._keras import keras, layers, tf

    class FlattenByShape(layers.Layer):
        def call(self, x):
            return tf.reshape(x, [tf.shape(x)[0], 32])

    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, FlattenByShape()(layers.Conv2D(2, 1)(inputs)))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tflite_bytes = converter.convert()
    report = lint(tflite_bytes)
    ops = [f.op for f in report.findings]
    assert "SHAPE" in ops and "STRIDED_SLICE" in ops
    for f in report.findings:
        if f.op in ("SHAPE", "STRIDED_SLICE"):
            assert f.status == "blocker" and "fix the batch to 1" in f.fix, f
    # The same model with its batch fixed to 1 (tfedge's converter) has none of them.
    from tfedge.converters import to_float32

    fixed = lint(to_float32(model))
    assert not {"SHAPE", "STRIDED_SLICE"} & {f.op for f in fixed.findings}
    assert fixed.ok


@integration
def test_dynamic_range_model_has_hybrid_blockers():
    from tfedge._keras import keras, layers
    from tfedge.converters import to_dynamic_range

    inputs = keras.Input((64,))
    model = keras.Model(inputs, layers.Dense(32)(inputs))  # 2048 weights: quantized
    report = lint(to_dynamic_range(model))
    (fc,) = [f for f in report.findings if f.op == "FULLY_CONNECTED"]
    assert fc.status == "blocker" and fc.reason.startswith("hybrid op")
    assert fc.inputs[1].type == "INT8" and fc.inputs[1].constant
