"""Pure-Python reader for TFLite flatbuffers (`.tflite` files).

Only the standard library is used, so the reader works without TensorFlow and
without the `flatbuffers` package::

    from tfedge.converters.tflite_reader import read_tflite
    model = read_tflite("model.tflite")
    model.op_names()           # ['CONV_2D', 'DEPTHWISE_CONV_2D', ...]
    model.buffer_bytes(3)      # raw bytes of buffer 3
    model.subgraphs[0].operators[0].options
    # {'padding': 'SAME', 'stride_w': 2, 'stride_h': 2, 'fused_activation_function': 'RELU6', ...}

The reader trusts nothing in its input: every offset and length is checked
against the size of the buffer before it is read, vector lengths are capped by
what fits in the rest of the buffer, and a work budget proportional to the file
size stops files whose offsets alias the same data over and over. Any problem
raises `TFLiteFormatError` (a `ValueError`) naming where it was found.

Builtin options are decoded for the option tables listed in `OPTION_FIELDS` (the ones int8
vision models and `tfedge.converters.lint` use), with TensorFlow's field names and defaults
(tensorflow/compiler/mlir/lite/schema/schema.fbs) and enums as their names ("SAME", "RELU6").
Every other options type decodes to an empty mapping; an enum value the schema lacks reads as
"UNKNOWN_<value>". Malformed option tables raise TFLiteFormatError like the rest of the file.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import struct

BUILTIN_OPERATORS = (
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION", "L2_POOL_2D", "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC",
    "LSH_PROJECTION", "LSTM", "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH", "CONCAT_EMBEDDINGS",
    "SKIP_GRAM", "CALL", "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD",
    "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND",
    "TRANSPOSE", "MEAN", "SUB", "DIV", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE",
    "BIDIRECTIONAL_SEQUENCE_RNN", "EXP", "TOPK_V2", "SPLIT", "LOG_SOFTMAX", "DELEGATE",
    "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM", "ARG_MAX", "MINIMUM", "LESS",
    "NEG", "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL", "SELECT", "SLICE", "SIN",
    "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG",
    "SUM", "SQRT", "RSQRT", "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT", "REDUCE_PROD", "REDUCE_MAX",
    "PACK", "LOGICAL_OR", "ONE_HOT", "LOGICAL_AND", "LOGICAL_NOT", "UNPACK", "REDUCE_MIN",
    "FLOOR_DIV", "REDUCE_ANY", "SQUARE", "ZEROS_LIKE", "FILL", "FLOOR_MOD", "RANGE",
    "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE", "MIRROR_PAD", "ABS", "SPLIT_V",
    "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND", "COS", "WHERE", "RANK", "ELU",
    "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG", "ROUND", "HARD_SWISH", "IF",
    "WHILE", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5", "SCATTER_ND", "SELECT_V2",
    "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL", "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM",
    "CALL_ONCE", "BROADCAST_TO", "RFFT2D", "CONV_3D", "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE",
    "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE", "REDUCE_ALL", "CONV_3D_TRANSPOSE",
    "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "BROADCAST_ARGS", "RANDOM_STANDARD_NORMAL",
    "BUCKETIZE", "RANDOM_UNIFORM", "MULTINOMIAL", "GELU", "DYNAMIC_UPDATE_SLICE", "RELU_0_TO_1",
    "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_SUM", "ATAN2",
    "UNSORTED_SEGMENT_MIN", "SIGN", "BITCAST", "BITWISE_XOR", "RIGHT_SHIFT", "STABLEHLO_LOGISTIC",
    "STABLEHLO_ADD", "STABLEHLO_DIVIDE", "STABLEHLO_MULTIPLY", "STABLEHLO_MAXIMUM",
    "STABLEHLO_RESHAPE", "STABLEHLO_CLAMP", "STABLEHLO_CONCATENATE", "STABLEHLO_BROADCAST_IN_DIM",
    "STABLEHLO_CONVOLUTION", "STABLEHLO_SLICE", "STABLEHLO_CUSTOM_CALL", "STABLEHLO_REDUCE",
    "STABLEHLO_ABS", "STABLEHLO_AND", "STABLEHLO_COSINE", "STABLEHLO_EXPONENTIAL",
    "STABLEHLO_FLOOR", "STABLEHLO_LOG", "STABLEHLO_MINIMUM", "STABLEHLO_NEGATE", "STABLEHLO_OR",
    "STABLEHLO_POWER", "STABLEHLO_REMAINDER", "STABLEHLO_RSQRT", "STABLEHLO_SELECT",
    "STABLEHLO_SUBTRACT", "STABLEHLO_TANH", "STABLEHLO_SCATTER", "STABLEHLO_COMPARE",
    "STABLEHLO_CONVERT", "STABLEHLO_DYNAMIC_SLICE", "STABLEHLO_DYNAMIC_UPDATE_SLICE",
    "STABLEHLO_PAD", "STABLEHLO_IOTA", "STABLEHLO_DOT_GENERAL", "STABLEHLO_REDUCE_WINDOW",
    "STABLEHLO_SORT", "STABLEHLO_WHILE", "STABLEHLO_GATHER", "STABLEHLO_TRANSPOSE", "DILATE",
    "STABLEHLO_RNG_BIT_GENERATOR", "REDUCE_WINDOW", "STABLEHLO_COMPOSITE", "STABLEHLO_SHIFT_LEFT",
    "STABLEHLO_CBRT", "STABLEHLO_CASE",
)
CUSTOM_CODE = 32

TENSOR_TYPES = (
    "FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL", "INT16", "COMPLEX64",
    "INT8", "FLOAT64", "COMPLEX128", "UINT64", "RESOURCE", "VARIANT", "UINT32", "UINT16",
    "INT4", "BFLOAT16", "INT2", "UINT4",
)
# Bits per element; types without a fixed element size (STRING, RESOURCE, VARIANT) are absent.
TENSOR_TYPE_BITS = {
    0: 32, 1: 16, 2: 32, 3: 8, 4: 64, 6: 8, 7: 16, 8: 64, 9: 8, 10: 64, 11: 128, 12: 64,
    15: 32, 16: 16, 17: 4, 18: 16, 19: 2, 20: 4,
}
FLOAT_TYPES = frozenset({0, 1, 10, 18})  # FLOAT32, FLOAT16, FLOAT64, BFLOAT16

# The BuiltinOptions union in schema order: a union type code is an index into this tuple.
BUILTIN_OPTIONS = (
    "NONE", "Conv2DOptions", "DepthwiseConv2DOptions", "ConcatEmbeddingsOptions",
    "LSHProjectionOptions", "Pool2DOptions", "SVDFOptions", "RNNOptions", "FullyConnectedOptions",
    "SoftmaxOptions", "ConcatenationOptions", "AddOptions", "L2NormOptions",
    "LocalResponseNormalizationOptions", "LSTMOptions", "ResizeBilinearOptions", "CallOptions",
    "ReshapeOptions", "SkipGramOptions", "SpaceToDepthOptions", "EmbeddingLookupSparseOptions",
    "MulOptions", "PadOptions", "GatherOptions", "BatchToSpaceNDOptions", "SpaceToBatchNDOptions",
    "TransposeOptions", "ReducerOptions", "SubOptions", "DivOptions", "SqueezeOptions",
    "SequenceRNNOptions", "StridedSliceOptions", "ExpOptions", "TopKV2Options", "SplitOptions",
    "LogSoftmaxOptions", "CastOptions", "DequantizeOptions", "MaximumMinimumOptions",
    "ArgMaxOptions", "LessOptions", "NegOptions", "PadV2Options", "GreaterOptions",
    "GreaterEqualOptions", "LessEqualOptions", "SelectOptions", "SliceOptions",
    "TransposeConvOptions", "SparseToDenseOptions", "TileOptions", "ExpandDimsOptions",
    "EqualOptions", "NotEqualOptions", "ShapeOptions", "PowOptions", "ArgMinOptions",
    "FakeQuantOptions", "PackOptions", "LogicalOrOptions", "OneHotOptions", "LogicalAndOptions",
    "LogicalNotOptions", "UnpackOptions", "FloorDivOptions", "SquareOptions", "ZerosLikeOptions",
    "FillOptions", "BidirectionalSequenceLSTMOptions", "BidirectionalSequenceRNNOptions",
    "UnidirectionalSequenceLSTMOptions", "FloorModOptions", "RangeOptions",
    "ResizeNearestNeighborOptions", "LeakyReluOptions", "SquaredDifferenceOptions",
    "MirrorPadOptions", "AbsOptions", "SplitVOptions", "UniqueOptions", "ReverseV2Options",
    "AddNOptions", "GatherNdOptions", "CosOptions", "WhereOptions", "RankOptions",
    "ReverseSequenceOptions", "MatrixDiagOptions", "QuantizeOptions", "MatrixSetDiagOptions",
    "HardSwishOptions", "IfOptions", "WhileOptions", "DepthToSpaceOptions",
    "NonMaxSuppressionV4Options", "NonMaxSuppressionV5Options", "ScatterNdOptions",
    "SelectV2Options", "DensifyOptions", "SegmentSumOptions", "BatchMatMulOptions",
    "CumsumOptions", "CallOnceOptions", "BroadcastToOptions", "Rfft2dOptions", "Conv3DOptions",
    "HashtableOptions", "HashtableFindOptions", "HashtableImportOptions", "HashtableSizeOptions",
    "VarHandleOptions", "ReadVariableOptions", "AssignVariableOptions", "RandomOptions",
    "BucketizeOptions", "GeluOptions", "DynamicUpdateSliceOptions", "UnsortedSegmentProdOptions",
    "UnsortedSegmentMaxOptions", "UnsortedSegmentMinOptions", "UnsortedSegmentSumOptions",
    "ATan2Options", "SignOptions", "BitcastOptions", "BitwiseXorOptions", "RightShiftOptions",
)

# Enums that option fields use, value -> name (schema.fbs).
PADDING = ("SAME", "VALID")
ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")
WEIGHTS_FORMATS = ("DEFAULT", "SHUFFLED4x16INT8")  # FullyConnectedOptionsWeightsFormat
MIRROR_PAD_MODES = ("REFLECT", "SYMMETRIC")

# Field kinds: a struct code for scalars ("?" is a bool byte), an enum names tuple (stored as a
# byte), or "[i]" for a vector of int32.
_PADDING = ("padding", PADDING, 0)
_ACTIVATION = ("fused_activation_function", ACTIVATIONS, 0)
_STRIDES = (("stride_w", "i", 0), ("stride_h", "i", 0))
_BIAS_TYPE = ("quantized_bias_type", TENSOR_TYPES, 0)

# Options table -> its fields in schema order: (name, kind, default). A field's position is its
# flatbuffer slot, so deprecated fields stay in as None to keep the later slots right.
OPTION_FIELDS = {
    "Conv2DOptions": (_PADDING, *_STRIDES, _ACTIVATION, ("dilation_w_factor", "i", 1),
                      ("dilation_h_factor", "i", 1), _BIAS_TYPE),
    "DepthwiseConv2DOptions": (_PADDING, *_STRIDES, ("depth_multiplier", "i", 0), _ACTIVATION,
                               ("dilation_w_factor", "i", 1), ("dilation_h_factor", "i", 1)),
    "Pool2DOptions": (_PADDING, *_STRIDES, ("filter_width", "i", 0), ("filter_height", "i", 0),
                      _ACTIVATION),
    "SVDFOptions": (("rank", "i", 0), _ACTIVATION, ("asymmetric_quantize_inputs", "?", False)),
    "FullyConnectedOptions": (_ACTIVATION, ("weights_format", WEIGHTS_FORMATS, 0),
                              ("keep_num_dims", "?", False),
                              ("asymmetric_quantize_inputs", "?", False), _BIAS_TYPE),
    "SoftmaxOptions": (("beta", "f", 0.0),),
    "ConcatenationOptions": (("axis", "i", 0), _ACTIVATION),
    "AddOptions": (_ACTIVATION, ("pot_scale_int16", "?", True)),
    "L2NormOptions": (_ACTIVATION,),
    "ResizeBilinearOptions": (None, None, ("align_corners", "?", False),
                              ("half_pixel_centers", "?", False)),
    "ReshapeOptions": (("new_shape", "[i]", ()),),
    "SpaceToDepthOptions": (("block_size", "i", 0),),
    "MulOptions": (_ACTIVATION,),
    "GatherOptions": (("axis", "i", 0), ("batch_dims", "i", 0)),
    "ReducerOptions": (("keep_dims", "?", False),),
    "SubOptions": (_ACTIVATION, ("pot_scale_int16", "?", True)),
    "DivOptions": (_ACTIVATION,),
    "SqueezeOptions": (("squeeze_dims", "[i]", ()),),
    "StridedSliceOptions": (("begin_mask", "i", 0), ("end_mask", "i", 0),
                            ("ellipsis_mask", "i", 0), ("new_axis_mask", "i", 0),
                            ("shrink_axis_mask", "i", 0), ("offset", "?", False)),
    "SplitOptions": (("num_splits", "i", 0),),
    "CastOptions": (("in_data_type", TENSOR_TYPES, 0), ("out_data_type", TENSOR_TYPES, 0)),
    "ArgMaxOptions": (("output_type", TENSOR_TYPES, 0),),
    "ArgMinOptions": (("output_type", TENSOR_TYPES, 0),),
    "TransposeConvOptions": (_PADDING, *_STRIDES, _ACTIVATION, _BIAS_TYPE),
    "ShapeOptions": (("out_type", TENSOR_TYPES, 0),),
    "PackOptions": (("values_count", "i", 0), ("axis", "i", 0)),
    "UnpackOptions": (("num", "i", 0), ("axis", "i", 0)),
    "ResizeNearestNeighborOptions": (("align_corners", "?", False),
                                     ("half_pixel_centers", "?", False)),
    "LeakyReluOptions": (("alpha", "f", 0.0),),
    "MirrorPadOptions": (("mode", MIRROR_PAD_MODES, 0),),
    "SplitVOptions": (("num_splits", "i", 0),),
    "DepthToSpaceOptions": (("block_size", "i", 0),),
    "BatchMatMulOptions": (("adj_x", "?", False), ("adj_y", "?", False),
                           ("asymmetric_quantize_inputs", "?", False)),
    "GeluOptions": (("approximate", "?", False),),
    # Tables without fields: options of these types are always an empty mapping.
    **{name: () for name in (
        "PadOptions", "PadV2Options", "TransposeOptions", "QuantizeOptions", "DequantizeOptions",
        "HardSwishOptions", "MaximumMinimumOptions", "ExpandDimsOptions", "LogSoftmaxOptions",
        "BatchToSpaceNDOptions", "SpaceToBatchNDOptions", "SliceOptions")},
}

_FILE_IDENTIFIER = b"TFL3"


class TFLiteFormatError(ValueError):
    """The bytes are not a well-formed TFLite flatbuffer."""


def builtin_operator_name(code: int) -> str:
    """Name of a BuiltinOperator code, or `UNKNOWN_<code>` for codes this table lacks."""
    return BUILTIN_OPERATORS[code] if 0 <= code < len(BUILTIN_OPERATORS) else f"UNKNOWN_{code}"


def tensor_type_name(code: int) -> str:
    """Name of a TensorType code, or `UNKNOWN_<code>`."""
    return TENSOR_TYPES[code] if 0 <= code < len(TENSOR_TYPES) else f"UNKNOWN_{code}"


def builtin_options_name(code: int) -> str:
    """Name of a BuiltinOptions union type code ("NONE" for 0), or `UNKNOWN_<code>`."""
    return BUILTIN_OPTIONS[code] if 0 <= code < len(BUILTIN_OPTIONS) else f"UNKNOWN_{code}"


class Options(collections.abc.Mapping):
    """An operator's decoded builtin options: an immutable, hashable mapping in schema field
    order that compares equal to the dict with the same items."""

    __slots__ = ("_items",)

    def __init__(self, items=()):
        self._items = tuple(items)

    def __getitem__(self, key):
        for name, value in self._items:
            if name == key:
                return value
        raise KeyError(key)

    def __iter__(self):
        return (name for name, _ in self._items)

    def __len__(self):
        return len(self._items)

    def __hash__(self):
        return hash(frozenset(self._items))

    def __repr__(self):
        return repr(dict(self._items))


EMPTY_OPTIONS = Options()


@dataclasses.dataclass(frozen=True)
class Quantization:
    """Quantization parameters; empty tuples where the file stores none."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    quantized_dimension: int
    min: tuple[float, ...]
    max: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Tensor:
    """A tensor of a subgraph; `shape_signature` holds -1 for dynamic dims."""

    index: int
    name: str
    type: int
    type_name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    buffer: int
    quantization: Quantization | None
    is_variable: bool
    is_sparse: bool

    @property
    def nbytes(self) -> int | None:
        """Bytes of dense data (sub-byte types packed); None for types without an element
        size, for unknown (-1) dims, and for sizes over 2**64 bytes, which no file can hold."""
        bits = TENSOR_TYPE_BITS.get(self.type)
        if bits is None or any(d < 0 for d in self.shape):
            return None
        if 0 in self.shape:
            return 0
        elements = 1
        for d in self.shape:  # stop early: a hostile file could hold 100k huge dims
            elements *= d
            if elements > 2**64:
                return None
        return (elements * bits + 7) // 8

    @property
    def is_float(self) -> bool:
        return self.type in FLOAT_TYPES


@dataclasses.dataclass(frozen=True)
class OperatorCode:
    """An entry of the model's operator code table."""

    builtin_code: int  # effective code: max(deprecated_builtin_code, builtin_code)
    name: str  # builtin name, or the custom code for CUSTOM ops
    custom_code: str | None
    version: int


@dataclasses.dataclass(frozen=True)
class Operator:
    """An operator of a subgraph; inputs and outputs are tensor indices."""

    index: int
    opcode_index: int
    name: str
    inputs: tuple[int, ...]  # -1 marks an absent optional input
    outputs: tuple[int, ...]
    builtin_options_type: int
    builtin_options_offset: int | None = None  # file position of the options table
    custom_options: bytes = b""
    # Decoded builtin options (see OPTION_FIELDS); empty for types this reader does not decode.
    options: Options = EMPTY_OPTIONS

    @property
    def builtin_options_name(self) -> str:
        """Name of the options table type, e.g. "Conv2DOptions" ("NONE" when there is none)."""
        return builtin_options_name(self.builtin_options_type)


@dataclasses.dataclass(frozen=True)
class Buffer:
    """Where a buffer's data lies in the file."""

    index: int
    offset: int  # absolute position of the data in the file
    size: int  # 0 for an empty buffer


@dataclasses.dataclass(frozen=True)
class SubGraph:
    """A subgraph; inputs and outputs are tensor indices."""

    index: int
    name: str
    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: tuple[Operator, ...]


@dataclasses.dataclass(frozen=True)
class Model:
    """A parsed model. `data` is the file's bytes (left out of repr and comparisons)."""

    version: int
    description: str
    operator_codes: tuple[OperatorCode, ...]
    subgraphs: tuple[SubGraph, ...]
    buffers: tuple[Buffer, ...]
    size: int  # bytes in the file
    metadata: dict[str, int] = dataclasses.field(hash=False)  # metadata name -> buffer index
    data: bytes = dataclasses.field(default=b"", repr=False, compare=False)

    def buffer_bytes(self, index: int) -> bytes:
        """Contents of buffer `index` (b"" for an empty one); IndexError if out of range."""
        if not 0 <= index < len(self.buffers):
            raise IndexError(
                f"buffer index {index} out of range: model has {len(self.buffers)} buffers")
        buf = self.buffers[index]
        return bytes(self.data[buf.offset:buf.offset + buf.size])

    def op_names(self) -> list[str]:
        """Operator names of subgraph 0, in execution order."""
        return [op.name for op in self.subgraphs[0].operators] if self.subgraphs else []


class _Reader:
    """Bounds-checked flatbuffer access. A table is (position, vtable position, vtable size)."""

    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)
        self.budget = 4 * self.size + 4096  # bytes of decoding work allowed

    def fail(self, where: str, message: str):
        raise TFLiteFormatError(f"{where}: {message}")

    def past_end(self, where: str, what: str):
        self.fail(where, f"{what} runs past the end of the {self.size}-byte buffer")

    def spend(self, amount: int, where: str):
        self.budget -= amount
        if self.budget < 0:
            self.fail(where, f"offsets make the reader visit over 4 times the {self.size}-byte "
                             "buffer; the file references the same data over and over")

    def scalar(self, fmt: str, pos: int, where: str, what: str):
        if pos < 0:
            self.fail(where, f"{what} at offset {pos} lies before the start of the buffer")
        if pos + struct.calcsize(fmt) > self.size:
            self.past_end(where, f"{what} at offset {pos}")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos: int, where: str) -> tuple[int, int, int]:
        self.spend(16, where)
        vt = pos - self.scalar("<i", pos, where, "table")
        if vt < 0 or vt + 4 > self.size:
            self.fail(where, f"table at offset {pos} has its vtable at {vt}, outside the "
                             f"{self.size}-byte buffer")
        vt_size, table_size = struct.unpack_from("<HH", self.data, vt)
        if vt_size < 4 or vt_size % 2 or vt + vt_size > self.size:
            self.fail(where, f"vtable at offset {vt} has invalid size {vt_size} for the "
                             f"{self.size}-byte buffer")
        if table_size < 4 or pos + table_size > self.size:
            self.past_end(where, f"table at offset {pos} of {table_size} bytes")
        return pos, vt, vt_size

    def field(self, table, index: int) -> int | None:
        """Absolute position of field `index`, or None when the field is absent."""
        pos, vt, vt_size = table
        slot = 4 + 2 * index
        if slot + 2 > vt_size:
            return None
        off = struct.unpack_from("<H", self.data, vt + slot)[0]
        return pos + off if off else None

    def get(self, table, index: int, fmt: str, default, where: str, name: str):
        pos = self.field(table, index)
        return default if pos is None else self.scalar(fmt, pos, where, f"field {name}")

    def ref(self, table, index: int, where: str, name: str) -> int | None:
        """Target position of the reference in field `index`, or None when absent."""
        pos = self.field(table, index)
        if pos is None:
            return None
        target = pos + self.scalar("<I", pos, where, f"field {name}")
        if target >= self.size:
            self.past_end(where, f"field {name} points to offset {target}, which")
        return target

    def vector(self, table, index: int, elem_size: int, where: str, name: str):
        """(position of the first element, length) of a vector field; None when absent."""
        pos = self.ref(table, index, where, name)
        if pos is None:
            return None
        length = self.scalar("<I", pos, where, f"length of {name}")
        if length * elem_size > self.size - pos - 4:
            self.past_end(where, f"vector {name} at offset {pos} with {length} elements of "
                                 f"{elem_size} bytes")
        self.spend(4 + length * elem_size, where)
        return pos + 4, length

    def scalars(self, table, index: int, code: str, where: str, name: str) -> tuple | None:
        vec = self.vector(table, index, struct.calcsize(code), where, name)
        return None if vec is None else struct.unpack_from(f"<{vec[1]}{code}", self.data, vec[0])

    def tables(self, table, index: int, where: str, name: str) -> list[int]:
        """Positions of the tables in a vector-of-tables field ([] when absent)."""
        vec = self.vector(table, index, 4, where, name)
        slots = range(vec[0], vec[0] + 4 * vec[1], 4) if vec else ()
        return [slot + struct.unpack_from("<I", self.data, slot)[0] for slot in slots]

    def string(self, table, index: int, where: str, name: str) -> str | None:
        vec = self.vector(table, index, 1, where, name)
        if vec is None:
            return None
        try:
            return bytes(self.data[vec[0]:vec[0] + vec[1]]).decode("utf-8")
        except UnicodeDecodeError as e:
            self.fail(where, f"{name} at offset {vec[0] - 4} is not valid UTF-8 "
                             f"({e.reason} at byte {e.start})")


def _read_quantization(r: _Reader, pos: int, where: str) -> Quantization:
    t = r.table(pos, where)
    return Quantization(
        scale=r.scalars(t, 2, "f", where, "scale") or (),
        zero_point=r.scalars(t, 3, "q", where, "zero_point") or (),
        quantized_dimension=r.get(t, 6, "<i", 0, where, "quantized_dimension"),
        min=r.scalars(t, 0, "f", where, "min") or (),
        max=r.scalars(t, 1, "f", where, "max") or (),
    )


def _read_tensor(r: _Reader, pos: int, index: int, where: str) -> Tensor:
    t = r.table(pos, where)
    type_code = r.get(t, 1, "<b", 0, where, "type")
    quant = r.ref(t, 4, where, "quantization")
    return Tensor(
        index=index,
        name=r.string(t, 3, where, "name") or "",
        type=type_code,
        type_name=tensor_type_name(type_code),
        shape=r.scalars(t, 0, "i", where, "shape") or (),
        shape_signature=r.scalars(t, 7, "i", where, "shape_signature"),
        buffer=r.get(t, 2, "<I", 0, where, "buffer"),
        quantization=None if quant is None else _read_quantization(r, quant, where),
        is_variable=bool(r.get(t, 5, "<B", 0, where, "is_variable")),
        is_sparse=r.field(t, 6) is not None,
    )


def _read_operator_code(r: _Reader, pos: int, where: str) -> OperatorCode:
    t = r.table(pos, where)
    deprecated = r.get(t, 0, "<b", 0, where, "deprecated_builtin_code")
    code = max(deprecated, r.get(t, 3, "<i", 0, where, "builtin_code"))
    custom = r.string(t, 1, where, "custom_code")
    return OperatorCode(
        builtin_code=code,
        name=custom if code == CUSTOM_CODE and custom else builtin_operator_name(code),
        custom_code=custom,
        version=r.get(t, 2, "<i", 1, where, "version"),
    )


def _check_tensor_refs(indices, n_tensors: int, where: str, what: str, allow_absent: bool):
    for k, v in enumerate(indices):
        if not (0 <= v < n_tensors or (allow_absent and v == -1)):
            raise TFLiteFormatError(
                f"{where}: {what} {k} is tensor {v}, but the subgraph has {n_tensors} tensors")


def _read_operator(r: _Reader, pos: int, index: int, codes, n_tensors: int, where: str):
    t = r.table(pos, where)
    opcode_index = r.get(t, 0, "<I", 0, where, "opcode_index")
    if opcode_index >= len(codes):
        r.fail(where, f"opcode_index {opcode_index} out of range: "
                      f"model has {len(codes)} operator codes")
    inputs = r.scalars(t, 1, "i", where, "inputs") or ()
    outputs = r.scalars(t, 2, "i", where, "outputs") or ()
    _check_tensor_refs(inputs, n_tensors, where, "input", allow_absent=True)
    _check_tensor_refs(outputs, n_tensors, where, "output", allow_absent=False)
    options_type = r.get(t, 3, "<B", 0, where, "builtin_options_type")
    options = r.ref(t, 4, where, "builtin_options")
    decoded = EMPTY_OPTIONS
    if options is not None:
        decoded = _read_options(r, options, options_type, f"{where}, builtin_options")
    custom = r.vector(t, 5, 1, where, "custom_options")
    return Operator(
        index=index,
        opcode_index=opcode_index,
        name=codes[opcode_index].name,
        inputs=inputs,
        outputs=outputs,
        builtin_options_type=options_type,
        builtin_options_offset=options,
        custom_options=bytes(r.data[custom[0]:custom[0] + custom[1]]) if custom else b"",
        options=decoded,
    )


def _enum_name(names, value: int) -> str:
    return names[value] if 0 <= value < len(names) else f"UNKNOWN_{value}"


def _read_options(r: _Reader, pos: int, options_type: int, where: str) -> Options:
    """Decodes the options table at `pos` (always checked as a table, even when its type has
    no fields here)."""
    t = r.table(pos, where)
    fields = OPTION_FIELDS.get(builtin_options_name(options_type))
    if not fields:
        return EMPTY_OPTIONS
    where = f"{where} ({BUILTIN_OPTIONS[options_type]})"
    items = []
    for slot, field in enumerate(fields):
        if field is None:  # deprecated
            continue
        name, kind, default = field
        if kind == "[i]":
            values = r.scalars(t, slot, "i", where, name)
            items.append((name, default if values is None else values))
        elif isinstance(kind, tuple):
            items.append((name, _enum_name(kind, r.get(t, slot, "<b", default, where, name))))
        elif kind == "?":
            items.append((name, bool(r.get(t, slot, "<B", default, where, name))))
        else:
            items.append((name, r.get(t, slot, f"<{kind}", default, where, name)))
    return Options(items)


def _read_subgraph(r: _Reader, pos: int, index: int, codes, n_buffers: int) -> SubGraph:
    where = f"subgraph {index}"
    t = r.table(pos, where)
    tensors = tuple(_read_tensor(r, p, i, f"tensor {i} of {where}")
                    for i, p in enumerate(r.tables(t, 0, where, "tensors")))
    for tensor in tensors:
        if tensor.buffer >= n_buffers:
            r.fail(f"tensor {tensor.index} of {where}",
                   f"buffer {tensor.buffer} out of range: model has {n_buffers} buffers")
    inputs = r.scalars(t, 1, "i", where, "inputs") or ()
    outputs = r.scalars(t, 2, "i", where, "outputs") or ()
    _check_tensor_refs(inputs, len(tensors), where, "input", allow_absent=False)
    _check_tensor_refs(outputs, len(tensors), where, "output", allow_absent=False)
    operators = tuple(_read_operator(r, p, i, codes, len(tensors), f"operator {i} of {where}")
                      for i, p in enumerate(r.tables(t, 3, where, "operators")))
    return SubGraph(index=index, name=r.string(t, 4, where, "name") or "", tensors=tensors,
                    inputs=inputs, outputs=outputs, operators=operators)


def _read_buffer(r: _Reader, pos: int, index: int) -> Buffer:
    where = f"buffer {index}"
    t = r.table(pos, where)
    offset = r.get(t, 1, "<Q", 0, where, "offset")
    if offset > 1:  # model over 2 GB: data after the flatbuffer (1 is a writer's placeholder)
        size = r.get(t, 2, "<Q", 0, where, "size")
        if offset + size > r.size:
            r.past_end(where, f"external data at offset {offset} of {size} bytes")
        return Buffer(index=index, offset=offset, size=size)
    vec = r.vector(t, 0, 1, where, "data")
    return Buffer(index=index, offset=vec[0] if vec else 0, size=vec[1] if vec else 0)


def _read_metadata(r: _Reader, positions, n_buffers: int) -> dict[str, int]:
    metadata = {}
    for i, pos in enumerate(positions):
        where = f"metadata {i}"
        t = r.table(pos, where)
        name = r.string(t, 0, where, "name") or ""
        buffer = r.get(t, 1, "<I", 0, where, "buffer")
        if buffer >= n_buffers:
            r.fail(where, f"{name!r} refers to buffer {buffer}, but the model has "
                          f"{n_buffers} buffers")
        metadata[name] = buffer
    return metadata


def _as_bytes(data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as f:
            return f.read()
    raise TypeError("read_tflite() expects bytes, bytearray, memoryview or a file path, "
                    f"got {type(data).__module__}.{type(data).__qualname__}")


def read_tflite(data: bytes | bytearray | memoryview | str | os.PathLike) -> Model:
    """Parses a TFLite flatbuffer given as bytes or as a file path.

    Raises TFLiteFormatError for malformed bytes, FileNotFoundError for a missing
    file and TypeError for any other kind of argument.
    """
    data = _as_bytes(data)
    if len(data) < 8:
        raise TFLiteFormatError(
            f"{len(data)} bytes is too short for a TFLite flatbuffer (needs at least 8)")
    if data[4:8] != _FILE_IDENTIFIER:
        raise TFLiteFormatError(f"file identifier is {data[4:8]!r}, expected "
                                f"{_FILE_IDENTIFIER!r}: not a TFLite flatbuffer")
    r = _Reader(data)
    where = "model"
    root = r.table(r.scalar("<I", 0, where, "root offset"), where)
    codes = tuple(_read_operator_code(r, p, f"operator code {i}")
                  for i, p in enumerate(r.tables(root, 1, where, "operator_codes")))
    buffers = tuple(_read_buffer(r, p, i)
                    for i, p in enumerate(r.tables(root, 4, where, "buffers")))
    subgraphs = tuple(_read_subgraph(r, p, i, codes, len(buffers))
                      for i, p in enumerate(r.tables(root, 2, where, "subgraphs")))
    return Model(
        version=r.get(root, 0, "<I", 0, where, "version"),
        description=r.string(root, 3, where, "description") or "",
        operator_codes=codes,
        subgraphs=subgraphs,
        buffers=buffers,
        size=len(data),
        metadata=_read_metadata(r, r.tables(root, 6, where, "metadata"), len(buffers)),
        data=data,
    )
