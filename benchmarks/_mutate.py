"""Meaningful mutations of a `.tflite`: models that still parse but say something hostile.

Byte mutations of a flatbuffer mostly break its structure, so the reader refuses them and the
code behind it is never reached. These edit the model through LiteRT's flatbuffer object API and
pack it again, so that a case parses and then tests what a consumer (the C code generator,
export-c, lint) does with a shape of 2**31 - 1, a scale of NaN, a zero point of 300, a buffer
shorter than its tensor, an op wired to the wrong tensor, a stride of 0, a name that holds C
code, two subgraphs, ...

    mutator = Mutator(tflite_bytes, "my model")
    case, description = mutator.mutate(draw)      # draw: hypothesis' st.data().draw

Used by benchmarks/fuzz_reader.py and by tests/hostile/test_hostile_fuzz.py.
"""

import copy
import math

from hypothesis import strategies as st

INT32_EXTREMES = (0, 1, 2, 3, -1, -2, 7, 255, 65535, 65536, 2**31 - 1, -2**31)
# Shapes that overflow int32 element counts, or are merely large, or empty.
DIMS = (0, 1, 2, 3, 5, -1, 8, 255, 4096, 65535, 1275068417, 2**31 - 1, -2**31)
SCALES = (0.0, -1.0, math.nan, math.inf, -math.inf, 1e-45, 1e-30, 1e30, 3.4e38, 1.0, 0.5,
          1.0 / 256)
ZERO_POINTS = (0, -128, 127, -129, 128, 300, -300, 2**31 - 1, -2**31)
NAMES = (
    'x */\n#include <stdio.h>\nint pwn(void) { return remove("/etc/passwd"); }\n/* ',
    "a\\\n#define main(...) 0", "??/\nint evil;", '"; system("id"); "', "\x00\x01\x02\x1b[2J",
    "\u202e\u0000tensor", "x" * 100_000, "", "k" + "é" * 300,
)


class _Nothing(Exception):
    """A mutation found nothing to edit (e.g. no tensor left after an earlier edit)."""


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def pack(model):
    """The bytes of a `ModelT`."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class Mutator:
    """Semantic mutations of one model (see the module docstring)."""

    def __init__(self, tflite_bytes, name):
        self.name = name
        self.data = bytes(tflite_bytes)
        self.model = _schema().ModelT.InitFromPackedBuf(bytearray(self.data), 0)
        # Pack must reproduce a model that parses (not necessarily the same bytes)
        pack(self.model)
        self.kinds = {
            "shape": self._shape, "type": self._type, "quantization": self._quantization,
            "buffer": self._buffer, "wiring": self._wiring, "options": self._options,
            "opcode": self._opcode, "name": self._name, "graph io": self._graph_io,
            "subgraphs": self._subgraphs,
        }

    def mutate(self, draw, max_edits=3):
        """(bytes, description) of one mutated copy of the model."""
        model = copy.deepcopy(self.model)
        edits = []
        for _ in range(draw(st.integers(1, max_edits))):
            kind = draw(st.sampled_from(sorted(self.kinds)))
            try:
                edits.append(f"{kind}: {self.kinds[kind](model, draw)}")
            except _Nothing as nothing:
                edits.append(f"{kind}: {nothing}")
        return pack(model), f"{self.name} with " + "; ".join(edits)

    # -- the mutations: each edits `model` in place and says what it did

    @staticmethod
    def _graph(model, draw):
        graph = model.subgraphs[draw(st.integers(0, len(model.subgraphs) - 1))]
        graph.tensors = graph.tensors or []
        graph.operators = graph.operators or []
        return graph

    def _tensor(self, model, draw):
        graph = self._graph(model, draw)
        if not graph.tensors:
            raise _Nothing("no tensor")
        index = draw(st.integers(0, len(graph.tensors) - 1))
        return index, graph.tensors[index]

    def _shape(self, model, draw):
        index, tensor = self._tensor(model, draw)
        shape = list(tensor.shape) if tensor.shape is not None else []
        how = draw(st.sampled_from(["set", "append", "drop", "rank 0"]))
        if how == "set" and shape:
            k = draw(st.integers(0, len(shape) - 1))
            shape[k] = draw(st.sampled_from(DIMS))
        elif how == "append":
            shape.append(draw(st.sampled_from(DIMS)))
        elif how == "drop" and shape:
            shape.pop(draw(st.integers(0, len(shape) - 1)))
        else:
            shape = []
        tensor.shape = shape
        return f"tensor {index} shape {shape[:8]}"

    def _type(self, model, draw):
        index, tensor = self._tensor(model, draw)
        tensor.type = draw(st.integers(0, 127))
        return f"tensor {index} type {tensor.type}"

    def _quantization(self, model, draw):
        index, tensor = self._tensor(model, draw)
        q = tensor.quantization or _schema().QuantizationParametersT()
        count = draw(st.sampled_from([0, 1, 2, 3, 8]))
        q.scale = [draw(st.sampled_from(SCALES)) for _ in range(count)]
        q.zeroPoint = [draw(st.sampled_from(ZERO_POINTS))
                       for _ in range(draw(st.sampled_from([count, 0, 1])))]
        q.quantizedDimension = draw(st.sampled_from([0, 1, 3, 4, -1, 100]))
        tensor.quantization = q
        return f"tensor {index} scale {q.scale[:3]} zero point {q.zeroPoint[:3]} " \
               f"axis {q.quantizedDimension}"

    def _buffer(self, model, draw):
        with_data = [k for k, b in enumerate(model.buffers) if b.data is not None and len(b.data)]
        if not with_data:
            return "no buffer with data"
        k = draw(st.sampled_from(with_data))
        data = model.buffers[k].data
        how = draw(st.sampled_from(["truncate", "empty", "extend", "one byte"]))
        if how == "truncate":
            data = data[:draw(st.integers(0, len(data) - 1))]
        elif how == "empty":
            data = data[:0]
        elif how == "extend":
            data = list(data) + [0x7F] * draw(st.integers(1, 64))
        else:
            data = data[:1]
        model.buffers[k].data = data
        return f"buffer {k} {how} to {len(data)} bytes"

    def _wiring(self, model, draw):
        graph = self._graph(model, draw)
        if not graph.operators:
            return "no operator"
        k = draw(st.integers(0, len(graph.operators) - 1))
        op = graph.operators[k]
        field = draw(st.sampled_from(["inputs", "outputs"]))
        values = list(getattr(op, field) if getattr(op, field) is not None else [])
        how = draw(st.sampled_from(["point", "drop", "duplicate", "none"]))
        if how == "point" and values:
            values[draw(st.integers(0, len(values) - 1))] = draw(
                st.integers(-1, len(graph.tensors) - 1))
        elif how == "drop" and values:
            values.pop(draw(st.integers(0, len(values) - 1)))
        elif how == "duplicate" and values:
            values.append(values[0])
        else:
            values = []
        setattr(op, field, values)
        return f"op {k} {field} {values[:6]}"

    def _options(self, model, draw):
        graph = self._graph(model, draw)
        ops = [k for k, op in enumerate(graph.operators) if op.builtinOptions is not None]
        if not ops:
            return "no options"
        k = draw(st.sampled_from(ops))
        options = graph.operators[k].builtinOptions
        fields = sorted(name for name, value in vars(options).items()
                        if isinstance(value, (bool, int, float)))
        if not fields:
            return f"op {k} options without scalar fields"
        field = draw(st.sampled_from(fields))
        old = getattr(options, field)
        if isinstance(old, bool):
            value = not old
        elif isinstance(old, float):
            value = draw(st.sampled_from([0.0, -1.0, math.nan, math.inf, 1e30]))
        else:
            value = draw(st.sampled_from(INT32_EXTREMES))
        setattr(options, field, value)
        try:
            pack(model)
        except (TypeError, ValueError, OverflowError):  # a byte field (an enum): its own range
            value = max(-128, min(127, value)) if isinstance(value, int) else 0
            setattr(options, field, value)
        return f"op {k} {type(options).__name__}.{field} = {value!r}"

    def _opcode(self, model, draw):
        graph = self._graph(model, draw)
        if not graph.operators or len(model.operatorCodes) < 2:
            return "nothing to swap"
        k = draw(st.integers(0, len(graph.operators) - 1))
        graph.operators[k].opcodeIndex = draw(st.integers(0, len(model.operatorCodes) - 1))
        return f"op {k} opcode index {graph.operators[k].opcodeIndex}"

    def _name(self, model, draw):
        index, tensor = self._tensor(model, draw)
        name = draw(st.sampled_from(NAMES))
        tensor.name = name.encode("utf-8", "surrogatepass")
        if draw(st.booleans()):
            tensor.name = tensor.name + b"\xff\xfe"  # not UTF-8
        return f"tensor {index} name of {len(tensor.name)} bytes"

    def _graph_io(self, model, draw):
        graph = self._graph(model, draw)
        if not graph.tensors:
            raise _Nothing("no tensor")
        field = draw(st.sampled_from(["inputs", "outputs"]))
        count = draw(st.sampled_from([0, 1, 2]))
        values = [draw(st.integers(0, len(graph.tensors) - 1)) for _ in range(count)]
        setattr(graph, field, values)
        return f"subgraph {field} {values}"

    def _subgraphs(self, model, draw):
        how = draw(st.sampled_from(["duplicate", "no operators", "none"]))
        if how == "duplicate":
            model.subgraphs.append(copy.deepcopy(model.subgraphs[0]))
        elif how == "no operators":
            model.subgraphs[0].operators = []
        else:
            model.subgraphs = []
            model.subgraphs.append(_schema().SubGraphT())
            model.subgraphs[0].tensors, model.subgraphs[0].operators = [], []
        return how


def every_op_model():
    """A tiny full-int8 model with one of (almost) every op tfedge's C runtime has: PAD, CONV_2D,
    DEPTHWISE_CONV_2D, HARD_SWISH, LOGISTIC, MUL, ADD, RESHAPE, TRANSPOSE, SPLIT(_V),
    CONCATENATION, MAX_POOL_2D, AVERAGE_POOL_2D, MEAN, FULLY_CONNECTED, SOFTMAX. 8x8x3 input, 8
    channels: code generation takes milliseconds. Needs TensorFlow."""
    import numpy as np

    import tfedge
    from tfedge._keras import keras
    from tfedge.converters import to_int8
    from tfedge.models import _layers

    tfedge.training.seed_everything(0)
    layers = keras.layers
    x = layers.Input((8, 8, 3))
    a = layers.ZeroPadding2D(1)(x)
    a = layers.Conv2D(8, 3, activation="relu")(a)
    b = layers.DepthwiseConv2D(3, padding="same")(a)
    b = _layers.HardSwish()(b)
    c = layers.Activation("sigmoid")(a)
    d = layers.Add()([layers.Multiply()([b, c]), a])
    d = _layers.ChannelShuffle(2)(d)
    e1, e2 = _layers.ChannelSplit((4, 4))(d)
    f = layers.Concatenate()([e2, e1])
    f = layers.MaxPooling2D(2)(f)
    f = layers.AveragePooling2D(2)(f)
    f = layers.GlobalAveragePooling2D()(f)
    out = layers.Softmax()(layers.Dense(10)(f))
    model = keras.Model(x, out)
    images = np.random.default_rng(0).random((16, 8, 8, 3), np.float32)
    return to_int8(model, images, num_samples=16)
