"""Tests for tfedge.converters.tflite_reader against TensorFlow's own schema reader."""

import struct
import warnings

import numpy as np
import pytest

import tfedge  # noqa: F401  (sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads)
from tfedge.converters.tflite_reader import (
    BUILTIN_OPERATORS,
    Model,
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

    assert len(model.buffers) == len(truth.buffers)
    for k, true_buffer in enumerate(truth.buffers):
        raw = b"" if true_buffer.data is None else np.asarray(true_buffer.data, np.uint8).tobytes()
        assert model.buffer_bytes(k) == raw
    true_metadata = {m.name.decode("utf-8"): m.buffer for m in truth.metadata or ()}
    assert model.metadata == true_metadata


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
