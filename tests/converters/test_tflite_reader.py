"""Tests for tfedge.converters.tflite_reader against TensorFlow's own schema reader."""

import struct
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfedge  # noqa: F401  (sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads)
from tfedge.converters.tflite_reader import (
    BUILTIN_OPERATORS,
    BUILTIN_OPTIONS,
    OPTION_FIELDS,
    Model,
    Options,
    TFLiteFormatError,
    read_tflite,
)


# ---------------------------------------------------------------------------
# Real models, converted once per module.


def _keras_model():
    from tfedge._keras import keras

    layers = keras.layers
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, padding="same")(inputs)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(3)(x)
    outputs = layers.Softmax()(x)
    return keras.Model(inputs, outputs)


def _convert(model, int8: bool) -> bytes:
    from tfedge._keras import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def representative_dataset():
            for _ in range(10):
                yield [rng.random((1, 8, 8, 1), dtype=np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with warnings.catch_warnings():  # int8 input without user-given statistics is intended here
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        return bytes(converter.convert())


@pytest.fixture(scope="module")
def models() -> dict:
    from tfedge._keras import tf

    tf.random.set_seed(0)
    model = _keras_model()
    return {"int8": _convert(model, int8=True), "float": _convert(model, int8=False)}


def _ints(values):
    return None if values is None else tuple(int(v) for v in values)


def _floats(values):
    return () if values is None else tuple(float(v) for v in values)


# ---------------------------------------------------------------------------
# Agreement with tensorflow.lite.python.schema_py_generated.


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_matches_tensorflow_schema(models, kind):
    from tensorflow.lite.python import schema_py_generated as schema

    data = models[kind]
    model = read_tflite(data)
    truth = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)

    assert model.size == len(data)
    assert model.version == truth.version
    assert len(model.operator_codes) == len(truth.operatorCodes)
    for code, true_code in zip(model.operator_codes, truth.operatorCodes):
        effective = max(true_code.builtinCode, true_code.deprecatedBuiltinCode)
        assert code.builtin_code == effective
        assert code.name == BUILTIN_OPERATORS[effective]
        assert code.version == true_code.version

    assert len(model.subgraphs) == len(truth.subgraphs) == 1
    graph, true_graph = model.subgraphs[0], truth.subgraphs[0]
    assert graph.inputs == _ints(true_graph.inputs)
    assert graph.outputs == _ints(true_graph.outputs)
    assert len(graph.tensors) == len(true_graph.tensors)
    for i, (tensor, true_tensor) in enumerate(zip(graph.tensors, true_graph.tensors)):
        assert tensor.index == i
        assert tensor.name == true_tensor.name.decode("utf-8")
        assert tensor.type == true_tensor.type
        assert tensor.shape == _ints(true_tensor.shape)
        assert tensor.shape_signature == _ints(true_tensor.shapeSignature)
        assert tensor.buffer == true_tensor.buffer
        assert tensor.is_variable == bool(true_tensor.isVariable)
        assert tensor.is_sparse == (true_tensor.sparsity is not None)
        q, true_q = tensor.quantization, true_tensor.quantization
        assert (q is None) == (true_q is None)
        if q is not None:
            assert q.scale == _floats(true_q.scale)
            assert q.zero_point == (_ints(true_q.zeroPoint) or ())
            assert q.quantized_dimension == true_q.quantizedDimension
            assert q.min == _floats(true_q.min)
            assert q.max == _floats(true_q.max)

    assert len(graph.operators) == len(true_graph.operators)
    for op, true_op in zip(graph.operators, true_graph.operators):
        true_code = truth.operatorCodes[true_op.opcodeIndex]
        assert op.opcode_index == true_op.opcodeIndex
        effective = max(true_code.builtinCode, true_code.deprecatedBuiltinCode)
        assert op.name == BUILTIN_OPERATORS[effective]
        assert op.inputs == _ints(true_op.inputs)
        assert op.outputs == _ints(true_op.outputs)
        assert op.builtin_options_type == true_op.builtinOptionsType
        assert (op.builtin_options_offset is None) == (true_op.builtinOptions is None)
        assert op.options == _schema_options(true_op), op.name

    assert len(model.buffers) == len(truth.buffers)
    for k, true_buffer in enumerate(truth.buffers):
        raw = b"" if true_buffer.data is None else np.asarray(true_buffer.data, np.uint8).tobytes()
        assert model.buffer_bytes(k) == raw
    true_metadata = {m.name.decode("utf-8"): m.buffer for m in truth.metadata or ()}
    assert model.metadata == true_metadata


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _schema_options(true_op) -> dict:
    """The options TensorFlow's object API decodes, in the reader's format."""
    obj = true_op.builtinOptions
    fields = OPTION_FIELDS.get(BUILTIN_OPTIONS[true_op.builtinOptionsType], ())
    if obj is None:
        return {}
    decoded = {}
    for field in fields:
        if field is None:
            continue
        name, kind, _ = field
        value = getattr(obj, _camel(name))
        if kind == "[i]":
            value = () if value is None else tuple(int(v) for v in value)
        elif isinstance(kind, tuple):
            value = kind[value]
        elif kind == "?":
            value = bool(value)
        elif kind == "f":
            value = float(value)
        else:
            value = int(value)
        decoded[name] = value
    return decoded


def test_option_tables_follow_the_schema():
    """Union codes, field order and defaults agree with TensorFlow's generated schema."""
    from tensorflow.lite.python import schema_py_generated as schema

    for code, name in enumerate(BUILTIN_OPTIONS):
        assert getattr(schema.BuiltinOptions, name) == code
    assert len(BUILTIN_OPTIONS) == 1 + max(
        v for k, v in vars(schema.BuiltinOptions).items() if not k.startswith("_"))
    for name, fields in OPTION_FIELDS.items():
        true_defaults = vars(getattr(schema, f"{name}T")())  # schema order, deprecated left out
        ours = [f for f in fields if f is not None]
        assert [_camel(f[0]) for f in ours] == list(true_defaults), name
        for field_name, kind, default in ours:
            true_default = true_defaults[_camel(field_name)]
            if kind == "[i]":
                assert default == () and true_default is None
            else:
                assert default == true_default, (name, field_name)


def test_mobilenet_v2_options(int8_tflite):
    """Options of the session's MobileNetV2-0.35 at 32x32, checked against the tensor shapes."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = read_tflite(int8_tflite)
    graph = model.subgraphs[0]
    truth = schema.ModelT.InitFromPackedBuf(bytearray(int8_tflite), 0)
    for op, true_op in zip(graph.operators, truth.subgraphs[0].operators):
        assert op.options == _schema_options(true_op), op.name
    expected_table = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
                      "ADD": "AddOptions", "MEAN": "ReducerOptions",
                      "FULLY_CONNECTED": "FullyConnectedOptions", "SOFTMAX": "SoftmaxOptions"}
    assert {op.name: op.builtin_options_name for op in graph.operators} == expected_table

    stem = graph.operators[0]
    assert stem.name == "CONV_2D"
    assert stem.options == {"padding": "SAME", "stride_w": 2, "stride_h": 2,
                            "fused_activation_function": "RELU6", "dilation_w_factor": 1,
                            "dilation_h_factor": 1, "quantized_bias_type": "FLOAT32"}
    strides = []
    for op in graph.operators:
        if op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        o = op.options
        assert o["padding"] == "SAME" and o["stride_w"] == o["stride_h"]
        assert o["dilation_w_factor"] == o["dilation_h_factor"] == 1
        # "same" padding: the output is the input divided by the stride, rounded up.
        in_h = graph.tensors[op.inputs[0]].shape[1]
        out_h = graph.tensors[op.outputs[0]].shape[1]
        assert out_h == -(-in_h // o["stride_h"]), (op.index, in_h, out_h, o)
        if op.name == "DEPTHWISE_CONV_2D":
            assert o["depth_multiplier"] == 1 and o["fused_activation_function"] == "RELU6"
            strides.append(o["stride_h"])
    # 32 -> 1 pixels: the stride-2 stem and four stride-2 depthwise stages.
    assert strides.count(2) == 4 and set(strides) == {1, 2}
    assert len(strides) == 17
    adds = [op for op in graph.operators if op.name == "ADD"]
    assert len(adds) == 10
    assert all(op.options == {"fused_activation_function": "NONE", "pot_scale_int16": True}
               for op in adds)
    mean, fc, softmax = graph.operators[-3:]
    assert mean.options == {"keep_dims": False}
    assert fc.options == {"fused_activation_function": "NONE", "weights_format": "DEFAULT",
                          "keep_num_dims": False, "asymmetric_quantize_inputs": False,
                          "quantized_bias_type": "FLOAT32"}
    assert softmax.options == {"beta": 1.0}


def test_int8_model(models):
    model = read_tflite(models["int8"])
    graph = model.subgraphs[0]
    names = model.op_names()
    assert "CONV_2D" in names and "DEPTHWISE_CONV_2D" in names and "FULLY_CONNECTED" in names
    assert names[-1] == "SOFTMAX"
    for index in graph.inputs + graph.outputs:
        tensor = graph.tensors[index]
        assert tensor.type_name == "INT8" and not tensor.is_float
        assert tensor.shape[0] == 1 and tensor.shape_signature[0] == -1
        assert len(tensor.quantization.scale) == 1
        assert tensor.nbytes == int(np.prod(tensor.shape))
    # Constant tensors own their buffer's bytes exactly.
    for tensor in graph.tensors:
        stored = model.buffer_bytes(tensor.buffer)
        if stored:
            assert len(stored) == tensor.nbytes
    # Per-channel conv weights: one scale per output channel.
    conv = next(op for op in graph.operators if op.name == "CONV_2D")
    weights = graph.tensors[conv.inputs[1]]
    assert weights.type_name == "INT8" and weights.shape == (4, 3, 3, 1)
    assert len(weights.quantization.scale) == 4


def test_float_model(models):
    model = read_tflite(models["float"])
    graph = model.subgraphs[0]
    assert graph.tensors[graph.inputs[0]].type_name == "FLOAT32"
    assert graph.tensors[graph.inputs[0]].nbytes == 8 * 8 * 1 * 4
    floats = [t for t in graph.tensors if t.type_name == "FLOAT32"]
    assert floats and all(t.is_float for t in floats)
    assert "QUANTIZE" not in model.op_names()


def test_path_and_buffer_types(models, tmp_path):
    data = models["int8"]
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    reference = read_tflite(data)
    for source in (path, str(path), bytearray(data), memoryview(data)):
        assert read_tflite(source) == reference
    assert ", data=" not in repr(reference)


def test_wrong_argument_type_and_missing_file(tmp_path):
    with pytest.raises(TypeError, match="got builtins.int"):
        read_tflite(42)
    with pytest.raises(TypeError, match="list"):
        read_tflite([1, 2])
    missing = tmp_path / "nope.tflite"
    with pytest.raises(FileNotFoundError, match="nope.tflite"):
        read_tflite(missing)


def test_buffer_bytes_index_out_of_range(models):
    model = read_tflite(models["int8"])
    with pytest.raises(IndexError, match=f"model has {len(model.buffers)} buffers"):
        model.buffer_bytes(len(model.buffers))


# ---------------------------------------------------------------------------
# Hand-built flatbuffers. Nodes: ("table", fields), ("vec", fmt, values),
# ("tvec", nodes), ("str", bytes); table fields are None, (fmt, value) scalars or
# nodes. The writer lays parents before children so every uoffset points forward;
# a node object used twice is written once and shared.


def _table(*fields):
    return ("table", fields)


def _vec(fmt, values):
    return ("vec", fmt, tuple(values))


def _tvec(*nodes):
    return ("tvec", nodes)


def _str(text):
    return ("str", text.encode("utf-8") if isinstance(text, str) else text)


def _write(buf: bytearray, node, written: dict) -> int:
    if id(node) in written:
        return written[id(node)]
    buf.extend(b"\0" * (-len(buf) % 4))
    kind = node[0]
    if kind == "str":
        pos = len(buf)
        buf += struct.pack("<I", len(node[1])) + node[1] + b"\0"
    elif kind == "vec":
        pos = len(buf)
        buf += struct.pack(f"<I{len(node[2])}{node[1]}", len(node[2]), *node[2])
    elif kind == "tvec":
        pos = len(buf)
        buf += struct.pack("<I", len(node[1])) + b"\0" * (4 * len(node[1]))
        written[id(node)] = pos
        for i, child in enumerate(node[1]):
            slot = pos + 4 + 4 * i
            struct.pack_into("<I", buf, slot, _write(buf, child, written) - slot)
    else:
        fields = node[1]
        offsets, inline, children = [], b"", []
        for field in fields:
            if field is None:
                offsets.append(0)
            elif isinstance(field[0], str) and field[0] not in ("table", "vec", "tvec", "str"):
                offsets.append(4 + len(inline))
                inline += struct.pack(field[0], field[1])
            else:
                offsets.append(4 + len(inline))
                children.append((4 + len(inline), field))
                inline += b"\0\0\0\0"
        vtable = struct.pack(f"<HH{len(offsets)}H", 4 + 2 * len(offsets), 4 + len(inline), *offsets)
        vt_pos = len(buf)
        buf += vtable + b"\0" * (-len(vtable) % 4)
        pos = len(buf)
        buf += struct.pack("<i", pos - vt_pos) + inline
        written[id(node)] = pos
        for at, child in children:
            struct.pack_into("<I", buf, pos + at, _write(buf, child, written) - (pos + at))
    written[id(node)] = pos
    return pos


def _build(root, identifier=b"TFL3") -> bytes:
    buf = bytearray(8)
    buf[4:8] = identifier
    struct.pack_into("<I", buf, 0, _write(buf, root, {}))
    return bytes(buf)


def _tensor(name="t", buffer=0, shape=(1, 4), type_=9):
    return _table(_vec("i", shape), ("<b", type_), ("<I", buffer), _str(name))


def _opcode(deprecated=None, builtin=None, custom=None):
    return _table(None if deprecated is None else ("<b", deprecated),
                  None if custom is None else _str(custom), None,
                  None if builtin is None else ("<i", builtin))


def _model(opcodes, tensors=None, operators=None, buffers=None, graph_io=((0,), (1,)),
           metadata=None):
    tensors = tensors or (_tensor("in"), _tensor("out"))
    operators = operators or (_table(("<I", 0), _vec("i", (0, -1)), _vec("i", (1,))),)
    buffers = buffers or (_table(),)
    subgraph = _table(_tvec(*tensors), _vec("i", graph_io[0]), _vec("i", graph_io[1]),
                      _tvec(*operators), _str("main"))
    return _table(("<I", 3), _tvec(*opcodes), _tvec(subgraph), _str("hand built"), _tvec(*buffers),
                  None, None if metadata is None else _tvec(*metadata))


def test_hand_built_model_reads_back():
    data = _build(_model([_opcode(deprecated=3)],
                         buffers=(_table(), _table(_vec("B", b"\x01\x02\x03"))),
                         tensors=(_tensor("in"), _tensor("out", buffer=1, shape=(3,))),
                         metadata=[_table(_str("min_runtime_version"), ("<I", 1))]))
    model = read_tflite(data)
    assert model.version == 3 and model.description == "hand built"
    assert model.subgraphs[0].name == "main"
    assert [t.name for t in model.subgraphs[0].tensors] == ["in", "out"]
    assert model.subgraphs[0].operators[0].inputs == (0, -1)
    assert model.buffer_bytes(1) == b"\x01\x02\x03" and model.buffer_bytes(0) == b""
    assert model.metadata == {"min_runtime_version": 1}


@pytest.mark.parametrize("deprecated, builtin, custom, name", [
    (3, None, None, "CONV_2D"),  # old file: builtin_code absent reads as 0 (ADD)
    (3, 0, None, "CONV_2D"),
    (None, 4, None, "DEPTHWISE_CONV_2D"),  # new file leaving the deprecated field at 0
    (127, 150, None, BUILTIN_OPERATORS[150]),  # codes past int8: deprecated is the placeholder
    (None, 9999, None, "UNKNOWN_9999"),
    (32, 32, "MyCustomOp", "MyCustomOp"),
    (32, None, None, "CUSTOM"),
])
def test_operator_code_names(deprecated, builtin, custom, name):
    model = read_tflite(_build(_model([_opcode(deprecated, builtin, custom)])))
    assert model.operator_codes[0].name == name
    assert model.op_names() == [name]
    assert model.operator_codes[0].custom_code == custom
    assert model.operator_codes[0].version == 1


def _op_with_options(options_type, options):
    return _table(("<I", 0), _vec("i", (0, -1)), _vec("i", (1,)), ("<B", options_type), options)


def _options_model(options_type, options):
    return _build(_model([_opcode(3)], operators=(_op_with_options(options_type, options),)))


def test_hand_built_options_defaults_and_enums():
    # Conv2DOptions with the dilations and bias type left out: schema defaults fill them in.
    conv = _table(("<b", 1), ("<i", 2), ("<i", 3), ("<b", 3))
    op = read_tflite(_options_model(1, conv)).subgraphs[0].operators[0]
    assert op.builtin_options_name == "Conv2DOptions"
    assert op.options == {"padding": "VALID", "stride_w": 2, "stride_h": 3,
                          "fused_activation_function": "RELU6", "dilation_w_factor": 1,
                          "dilation_h_factor": 1, "quantized_bias_type": "FLOAT32"}
    assert list(op.options) == [f[0] for f in OPTION_FIELDS["Conv2DOptions"]]
    # Enum values the schema lacks are named, not errors.
    odd = _table(("<b", 7), None, None, ("<b", -1))
    op = read_tflite(_options_model(1, odd)).subgraphs[0].operators[0]
    assert op.options["padding"] == "UNKNOWN_7"
    assert op.options["fused_activation_function"] == "UNKNOWN_-1"
    assert op.options["stride_w"] == 0
    # Vectors, floats and booleans.
    reshape = _table(_vec("i", (1, -1, 4)))
    assert read_tflite(_options_model(17, reshape)).subgraphs[0].operators[0].options == {
        "new_shape": (1, -1, 4)}
    softmax = _table(("<f", 0.5))
    assert read_tflite(_options_model(9, softmax)).subgraphs[0].operators[0].options == {
        "beta": 0.5}
    add = _table(("<b", 1), ("<B", 0))
    assert read_tflite(_options_model(11, add)).subgraphs[0].operators[0].options == {
        "fused_activation_function": "RELU", "pot_scale_int16": False}
    # ResizeBilinearOptions: the two deprecated slots are skipped, not decoded.
    resize = _table(("<i", 5), ("<i", 6), ("<B", 1), ("<B", 0))
    assert read_tflite(_options_model(15, resize)).subgraphs[0].operators[0].options == {
        "align_corners": True, "half_pixel_centers": False}


@pytest.mark.parametrize("options_type, name", [
    (0, "NONE"), (3, "ConcatEmbeddingsOptions"), (22, "PadOptions"), (126, "RightShiftOptions"),
    (200, "UNKNOWN_200"),
])
def test_options_not_decoded_are_empty(options_type, name):
    op = read_tflite(_options_model(options_type, _table(("<i", 99), ("<i", 7)))).subgraphs[0] \
        .operators[0]
    assert op.builtin_options_name == name
    assert op.options == {} and len(op.options) == 0 and isinstance(op.options, Options)
    assert op.builtin_options_offset is not None


def test_options_mapping_is_immutable_and_hashable():
    op = read_tflite(_options_model(9, _table(("<f", 2.0)))).subgraphs[0].operators[0]
    with pytest.raises(TypeError):
        op.options["beta"] = 1.0  # noqa
    assert hash(op.options) == hash(Options([("beta", 2.0)]))
    assert repr(op.options) == "{'beta': 2.0}"
    with pytest.raises(KeyError):
        op.options["alpha"]  # noqa: B018


def _vtable_slot(data: bytes, table_pos: int, slot: int) -> int:
    """File position of the vtable entry for field `slot` of the table at `table_pos`."""
    vtable = table_pos - struct.unpack_from("<i", data, table_pos)[0]
    return vtable + 4 + 2 * slot


def test_corrupt_hand_built_option_tables():
    data = bytearray(_options_model(1, _table(("<b", 1), ("<i", 2), ("<i", 3), ("<b", 3))))
    pos = read_tflite(bytes(data)).subgraphs[0].operators[0].builtin_options_offset
    # A field offset that points past the end of the file.
    past_end = bytearray(data)
    struct.pack_into("<H", past_end, _vtable_slot(data, pos, 1), 0xFFF0)
    message = (r"operator 0 of subgraph 0, builtin_options \(Conv2DOptions\): field stride_w at "
               rf"offset {pos + 0xFFF0} runs past the end of the {len(data)}-byte buffer")
    with pytest.raises(TFLiteFormatError, match=message):
        read_tflite(bytes(past_end))
    # A vtable outside the file.
    bad_vtable = bytearray(data)
    struct.pack_into("<i", bad_vtable, pos, pos + 4096)
    with pytest.raises(TFLiteFormatError, match=rf"operator 0 of subgraph 0, builtin_options: "
                                                rf"table at offset {pos} has its vtable at"):
        read_tflite(bytes(bad_vtable))
    # A vector length far beyond the file.
    data = bytearray(_options_model(17, _table(_vec("i", (7, 7, 7)))))
    at = data.index(struct.pack("<4i", 3, 7, 7, 7))
    struct.pack_into("<I", data, at, 0x7FFFFFFF)
    with pytest.raises(TFLiteFormatError,
                       match=r"builtin_options \(ReshapeOptions\): vector new_shape at offset "
                             r"\d+ with 2147483647 elements of 4 bytes runs past the end"):
        read_tflite(bytes(data))
    # The options reference itself pointing past the end.
    data = bytearray(_options_model(9, _table(("<f", 1.0))))
    pos = read_tflite(bytes(data)).subgraphs[0].operators[0].builtin_options_offset
    refs = [at for at in range(len(data) - 3) if struct.unpack_from("<I", data, at)[0] == pos - at]
    # The writer lays the operator's table before its children, so its field comes first.
    struct.pack_into("<I", data, refs[0], 0x00FFFFFF)
    with pytest.raises(TFLiteFormatError, match=r"operator 0 of subgraph 0: field builtin_options "
                                                r"points to offset \d+, which runs past the end"):
        read_tflite(bytes(data))


def test_corrupt_options_of_a_converted_model(models):
    data = models["int8"]
    graph = read_tflite(data).subgraphs[0]
    conv = next(op for op in graph.operators if op.name == "CONV_2D")
    corrupted = bytearray(data)
    struct.pack_into("<H", corrupted, _vtable_slot(data, conv.builtin_options_offset, 2), 0xFFFF)
    with pytest.raises(TFLiteFormatError, match=r"operator \d+ of subgraph 0, builtin_options "
                                                r"\(Conv2DOptions\): field stride_h at offset "
                                                r"\d+ runs past the end"):
        read_tflite(bytes(corrupted))


def test_external_buffer_after_the_flatbuffer():
    data = _build(_model([_opcode(0)], buffers=(_table(), _table(None, ("<Q", 0), ("<Q", 5)))))
    # Patch the offset placeholder to point at bytes appended to the file.
    model = read_tflite(data)
    assert model.buffers[1].size == 0
    offset_field = data.index(struct.pack("<QQ", 0, 5))
    patched = bytearray(data)
    struct.pack_into("<Q", patched, offset_field, len(data))
    model = read_tflite(bytes(patched) + b"hello")
    assert model.buffer_bytes(1) == b"hello"
    with pytest.raises(TFLiteFormatError,
                       match=r"buffer 1: external data at offset \d+ of 5 bytes runs past"):
        read_tflite(bytes(patched) + b"hell")


@pytest.mark.parametrize("case, message", [
    (dict(operators=(_table(("<I", 1), _vec("i", (0,)), _vec("i", (1,))),)),
     r"operator 0 of subgraph 0: opcode_index 1 out of range: model has 1 operator codes"),
    (dict(operators=(_table(("<I", 0), _vec("i", (0, 7)), _vec("i", (1,))),)),
     r"operator 0 of subgraph 0: input 1 is tensor 7, but the subgraph has 2 tensors"),
    (dict(operators=(_table(("<I", 0), _vec("i", (0,)), _vec("i", (-1,))),)),
     r"operator 0 of subgraph 0: output 0 is tensor -1"),
    (dict(graph_io=((-1,), (1,))),
     r"subgraph 0: input 0 is tensor -1, but the subgraph has 2 tensors"),
    (dict(graph_io=((0,), (2,))), r"subgraph 0: output 0 is tensor 2"),
    (dict(tensors=(_tensor("in"), _tensor("out", buffer=4))),
     r"tensor 1 of subgraph 0: buffer 4 out of range: model has 1 buffers"),
    (dict(tensors=(_tensor(b"\xff\xfe"), _tensor("out"))),
     r"tensor 0 of subgraph 0: name at offset \d+ is not valid UTF-8"),
    (dict(metadata=[_table(_str("x"), ("<I", 9))]), r"metadata 0: 'x' refers to buffer 9"),
])
def test_cross_reference_errors(case, message):
    with pytest.raises(TFLiteFormatError, match=message):
        read_tflite(_build(_model([_opcode(3)], **case)))


def test_wrong_identifier_and_short_input():
    with pytest.raises(TFLiteFormatError, match="file identifier is b'TFL2'"):
        read_tflite(_build(_model([_opcode(3)]), identifier=b"TFL2"))
    with pytest.raises(TFLiteFormatError, match="0 bytes is too short"):
        read_tflite(b"")
    with pytest.raises(TFLiteFormatError, match="4 bytes is too short"):
        read_tflite(b"TFL3")


def test_huge_vector_length():
    tensors = (_tensor("in", shape=(1, 2, 3, 4)), _tensor("out"))
    data = bytearray(_build(_model([_opcode(3)], tensors=tensors)))
    at = data.index(struct.pack("<5i", 4, 1, 2, 3, 4))
    struct.pack_into("<I", data, at, 0xFFFFFFFF)
    message = (r"tensor 0 of subgraph 0: vector shape at offset \d+ with 4294967295 elements of "
               rf"4 bytes runs past the end of the {len(data)}-byte buffer")
    with pytest.raises(TFLiteFormatError, match=message):
        read_tflite(bytes(data))


def test_aliased_offsets_hit_the_work_budget():
    # 20000 tensors that all share one tensor whose shape has 20000 dims: a
    # 160 kB file that would decode 400 million ints without the work budget.
    shared = _tensor("t", shape=range(20000))
    data = _build(_model([_opcode(3)], tensors=[shared] * 20000))
    assert len(data) < 200_000
    with pytest.raises(TFLiteFormatError, match="references the same data over and over"):
        read_tflite(data)


def test_bad_root_and_vtable_offsets():
    data = bytearray(_build(_model([_opcode(3)])))
    root = struct.unpack_from("<I", data, 0)[0]
    past_end = bytearray(data)
    struct.pack_into("<I", past_end, 0, len(data) + 100)
    with pytest.raises(TFLiteFormatError, match=rf"model: table at offset {len(data) + 100} runs"):
        read_tflite(bytes(past_end))
    for soffset, vtable in ((-len(data), root + len(data)), (root + 100, -100)):
        bad_vtable = bytearray(data)
        struct.pack_into("<i", bad_vtable, root, soffset)
        message = rf"model: table at offset {root} has its vtable at {vtable}, outside the"
        with pytest.raises(TFLiteFormatError, match=message):
            read_tflite(bytes(bad_vtable))


# ---------------------------------------------------------------------------
# Malformed input never raises anything but TFLiteFormatError.


def _parse_or_format_error(data: bytes, case: str):
    try:
        model = read_tflite(data)
    except TFLiteFormatError as e:
        assert str(e), case
        return None
    except Exception as e:  # noqa: BLE001 - any other exception is the failure under test
        pytest.fail(f"{case}: {type(e).__name__}: {e}")
    # A successful parse yields a usable model.
    model.op_names()
    for graph in model.subgraphs:
        for op in graph.operators:
            dict(op.options)
            op.builtin_options_name  # noqa: B018
            hash(op)
    for k in range(len(model.buffers)):
        model.buffer_bytes(k)
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            tensor.nbytes  # noqa: B018
    return model


def test_random_bytes():
    rng = np.random.default_rng(1234)
    for case in range(500):
        data = bytearray(rng.integers(0, 256, rng.integers(0, 2001), dtype=np.uint8).tobytes())
        if case % 2 and len(data) >= 8:
            data[4:8] = b"TFL3"
            data[0:4] = struct.pack("<I", int(rng.integers(0, len(data))))
        _parse_or_format_error(bytes(data), f"random case {case}")


def test_truncations(models):
    data = models["int8"]
    for length in np.linspace(0, len(data) - 1, 200).astype(int):
        _parse_or_format_error(data[:length], f"truncated to {length} of {len(data)} bytes")


def test_mutations(models):
    data = models["int8"]
    rng = np.random.default_rng(5678)
    parsed = 0
    for case in range(3000):
        mutated = bytearray(data)
        for at in rng.integers(0, len(data), rng.integers(1, 9)):
            mutated[at] ^= int(rng.integers(1, 256))
        parsed += _parse_or_format_error(bytes(mutated), f"mutation case {case}") is not None
    assert 100 < parsed < 2900  # both outcomes are common, so the check is meaningful


def _structure_positions(data: bytes) -> list[int]:
    """Byte positions outside the buffers' data: where the flatbuffer's tables live."""
    model = read_tflite(data)
    inside = np.zeros(len(data), bool)
    for buf in model.buffers:
        inside[buf.offset:buf.offset + buf.size] = True
    return np.flatnonzero(~inside).tolist()


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_fuzz_with_hypothesis(models, data):
    """Random bytes, truncations and mutations of the flatbuffer's structure (options
    included) raise TFLiteFormatError or parse into a usable model."""
    model = models["int8"]
    kind = data.draw(st.sampled_from(["random", "truncate", "bytes", "int32", "options"]))
    if kind == "random":
        case = data.draw(st.binary(min_size=8, max_size=512))
        case = case[:4] + b"TFL3" + case[8:]
    elif kind == "truncate":
        case = model[:data.draw(st.integers(0, len(model) - 1))]
    else:
        case = bytearray(model)
        if kind == "options":
            graph = read_tflite(model).subgraphs[0]
            starts = [op.builtin_options_offset for op in graph.operators
                      if op.builtin_options_offset is not None]
            start = data.draw(st.sampled_from(starts))
            positions = list(range(max(start - 24, 0), min(start + 32, len(model) - 4)))
        else:
            positions = _STRUCTURE.setdefault(id(model), _structure_positions(model))
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.sampled_from(positions))
            if kind == "bytes":
                case[at] = data.draw(st.integers(0, 255))
            else:
                at = min(at, len(case) - 4)
                value = data.draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF,
                                                   len(model), len(model) - 4]))
                struct.pack_into("<I", case, at, value)
        case = bytes(case)
    _parse_or_format_error(case, f"hypothesis {kind} case")


_STRUCTURE: dict = {}


def test_model_equality_and_hash_ignore_the_raw_bytes(models):
    model = read_tflite(models["int8"])
    copy = read_tflite(bytearray(models["int8"]))
    assert isinstance(model, Model) and model.data is not copy.data
    assert model == copy and hash(model) == hash(copy)


def test_nbytes():
    from tfedge.converters.tflite_reader import Tensor

    def tensor(type_, shape):
        return Tensor(0, "t", type_, "", shape, None, 0, None, False, False)

    assert tensor(0, (2, 3)).nbytes == 24
    assert tensor(17, (3,)).nbytes == 2  # INT4 packs two per byte, rounded up
    assert tensor(19, (5,)).nbytes == 2  # INT2
    assert tensor(11, ()).nbytes == 16  # scalar COMPLEX128
    assert tensor(5, (4,)).nbytes is None  # STRING
    assert tensor(9, (-1, 4)).nbytes is None
    assert tensor(9, (2**31 - 1,) * 100_000).nbytes is None  # returns at once
    assert tensor(9, (2**31 - 1,) * 100_000 + (0,)).nbytes == 0
