"""Ahead-of-time compilation of an int8 `.tflite` into C99 for the tfedge runtime.

    generated = codegen.generate(tflite_bytes)
    generated.files["model.c"], generated.files["model.h"]
    generated.arena_bytes, generated.lower_bound, generated.macs

`model.h` declares `int tfedge_model_invoke(const int8_t *in, int8_t *out)` and the input and
output sizes and quantization; `model.c` holds the weights as `const` arrays, every kernel's
parameters as `static const` structs computed here (`tfedge.microcontroller.quant`: the math of
TFLite's Prepare functions), one static arena laid out by `planner`, and the op calls in order.
There is no interpreter, no op table and no allocation at run time: what TFLM decides while it
runs (which kernel, which multiplier, which offset) is decided here, once.

Compile `model.c` with the runtime's sources (`runtime_sources()`, include `runtime_dir()`).
Names from the model (tensors, ops) reach the C text only through `tfedge.converters.c_text`,
inside comments; every identifier is the generator's own (`w<tensor>`, `p<op>`, ...).

Define TFEDGE_TRACE to have `void tfedge_trace(int op, const int8_t *data, int32_t bytes)`
called with every op's output, for tensor-by-tensor comparisons.
"""

import contextlib
import dataclasses
import importlib.resources
import math
import re

import numpy as np

from tfedge.converters import c_text, tflite_reader
from tfedge.microcontroller import planner, quant


class CodegenError(ValueError):
    """The model cannot be compiled for the tfedge runtime; the message says which op or tensor
    and what to do."""


SUPPORTED_OPS = ("ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
                 "FULLY_CONNECTED", "HARD_SWISH", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL",
                 "PAD", "PADV2", "QUANTIZE", "RESHAPE", "SOFTMAX", "SPLIT", "SPLIT_V",
                 "TRANSPOSE")
_ACTIVATION_TYPES = ("INT8",)
_BYTES_PER_LINE = 16


def runtime_dir():
    """The folder of the C runtime (`tfedge_kernels.h` and its sources)."""
    return importlib.resources.files("tfedge.microcontroller").joinpath("runtime")


def runtime_sources():
    """Paths of the runtime's C files, sorted."""
    folder = runtime_dir()
    return sorted(str(folder.joinpath(p.name)) for p in folder.iterdir() if p.name.endswith(".c"))


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A model input or output as the generated code sees it."""

    name: str
    shape: tuple
    type_name: str
    scale: float
    zero_point: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class GeneratedModel:
    """What `generate` made: `files` ({"model.h": text, "model.c": text}) and the figures."""

    files: dict
    prefix: str
    arena_bytes: int
    lower_bound: int
    weights_bytes: int        # the model's weights and biases
    tables_bytes: int         # kernel arrays: multipliers, shifts, precomputed DSP tables
    macs: int
    ops: tuple
    op_macs: tuple            # MACs of each op, in op order (0 for ops without any)
    input: TensorInfo
    output: TensorInfo
    trace_tensors: tuple  # (op index, tensor index) per traced op output, in call order

    @property
    def arena_ratio(self):
        return self.arena_bytes / self.lower_bound if self.lower_bound else 1.0


# ---------------------------------------------------------------------------------------------
# C text helpers.

_ZERO_POINT_RANGES = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767)}
_C_TYPES = {"INT8": "int8_t", "UINT8": "uint8_t", "INT16": "int16_t", "INT32": "int32_t",
            "INT64": "int64_t"}
_NUMPY = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32,
          "INT64": np.int64}


def _c_value(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return "{" + ", ".join(_c_value(v) for v in np.asarray(value).ravel().tolist()) + "}"
    value = int(value)
    if value == -2 ** 31:  # INT32_MIN has no literal of its own
        return "(-2147483647 - 1)"
    return str(value)


def _array(name, values, c_type, *, align=4):
    flat = np.asarray(values).ravel().tolist()
    if not flat:
        flat = [0]
    lines = [", ".join(_c_value(v) for v in flat[i:i + _BYTES_PER_LINE])
             for i in range(0, len(flat), _BYTES_PER_LINE)]
    return (f"static const {c_type} {name}[{len(flat)}] __attribute__((aligned({align}))) = {{\n"
            "  " + ",\n  ".join(lines) + "\n};\n")


def _struct(name, params):
    fields = ", ".join(f".{k} = {_c_value(v)}" for k, v in params.fields.items())
    return f"static const {params.struct} {name} = {{{fields}}};\n"


def _identifier_prefix(prefix):
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix or ""):
        raise ValueError(f"`prefix` must be a C identifier, e.g. 'tfedge_model'. Received: "
                         f"prefix={prefix!r}")
    return prefix


# ---------------------------------------------------------------------------------------------
# The model.


class _Model:
    """The parsed model with the helpers the op emitters share."""

    def __init__(self, tflite_bytes):
        self.model = tflite_reader.read_tflite(tflite_bytes)
        if len(self.model.subgraphs) != 1:
            raise CodegenError(f"the model has {len(self.model.subgraphs)} subgraphs; tfedge "
                               "compiles single-subgraph models (no control flow)")
        self.main = self.model.subgraphs[0]
        for tensor in self.main.tensors:
            _check_size(tensor)

    def tensor(self, index):
        return self.main.tensors[index]

    def is_constant(self, index):
        return self.model.buffers[self.tensor(index).buffer].size > 0

    def constant(self, index):
        tensor = self.tensor(index)
        dtype = _NUMPY.get(tensor.type_name)
        if dtype is None:
            raise CodegenError(f"constant tensor {tensor.name!r} is {tensor.type_name}; the "
                               "runtime takes integer constants only")
        raw = self.model.buffer_bytes(tensor.buffer)
        expected = self.elements(index) * np.dtype(dtype).itemsize
        if len(raw) != expected:
            raise CodegenError(f"constant tensor {tensor.name!r} ({tensor.type_name} "
                               f"{list(tensor.shape)}) has {len(raw):,} bytes of data where its "
                               f"shape needs {expected:,}: the file is damaged; convert the "
                               "model again")
        data = np.frombuffer(raw, dtype=dtype)
        return data.reshape(tensor.shape) if tensor.shape else data

    def _quantization(self, index):
        """The tensor's (scales, zero points), checked: finite positive scales, zero points in
        the range of its type, one scale per tensor for activations."""
        tensor = self.tensor(index)
        q = tensor.quantization
        scales = tuple(q.scale) if q and q.scale else (1.0,)
        zero_points = tuple(q.zero_point) if q and q.zero_point else (0,)
        bad = [s for s in scales if not (math.isfinite(s) and s > 0)]
        if bad:
            raise CodegenError(f"tensor {tensor.name!r} has the quantization scale {bad[0]!r}; "
                               "scales must be finite and positive. The file is damaged or was "
                               "not made by the TFLite converter")
        low, high = _ZERO_POINT_RANGES.get(tensor.type_name, (-2**31, 2**31 - 1))
        bad = [z for z in zero_points if not low <= z <= high]
        if bad:
            raise CodegenError(f"tensor {tensor.name!r} ({tensor.type_name}) has the zero point "
                               f"{bad[0]}, outside [{low}, {high}]. The file is damaged or was "
                               "not made by the TFLite converter")
        if not self.is_constant(index) and (len(scales) > 1 or len(zero_points) > 1):
            raise CodegenError(f"activation tensor {tensor.name!r} has {len(scales)} scales; "
                               "int8 activations take one (per-tensor quantization)")
        return scales, zero_points

    def scale(self, index):
        return float(self._quantization(index)[0][0])

    def scales(self, index):
        return np.asarray(self._quantization(index)[0], dtype=np.float32)

    def zero_point(self, index):
        return int(self._quantization(index)[1][0])

    def shape(self, index):
        return tuple(int(d) for d in self.tensor(index).shape)

    def elements(self, index):
        return int(math.prod(self.shape(index)))


# No tensor of a Cortex-M program can reach 2 GiB (32-bit addresses); the runtime's element
# counts are int32_t.
MAX_TENSOR_BYTES = 2**31 - 1


def _check_size(tensor):
    """Refuses a tensor of dynamic or impossible shape before any arithmetic on its size."""
    shape = list(tensor.shape)
    if any(d < 0 for d in shape):
        raise CodegenError(f"tensor {tensor.name!r} has shape {shape}: a dynamic dimension (-1). "
                           "The runtime plans static shapes only; build the model with a fixed "
                           "input_shape and convert with a batch of 1")
    elements = 1
    for d in shape:
        elements *= d
        if elements > MAX_TENSOR_BYTES:
            raise CodegenError(
                f"tensor {tensor.name!r} has shape {shape[:8]}{'...' if len(shape) > 8 else ''}:"
                f" more than {MAX_TENSOR_BYTES:,} elements, which no Cortex-M can hold (the "
                "file is damaged, or the model is far too large for a microcontroller)")


@dataclasses.dataclass(frozen=True)
class _Signature:
    """What an op must look like before its emitter reads it: its first `required` inputs
    present, at most `most` inputs (None: any number, all present), `outputs` as (fewest, most),
    the rank of input k (`ranks[k]`) and of the outputs (`ranks["out"]`), its option keys."""

    required: int
    most: int | None
    outputs: tuple = (1, 1)
    ranks: dict = dataclasses.field(default_factory=dict)
    options: tuple = ()


_WINDOW = ("stride_h", "stride_w", "padding")
_SIGNATURES = {
    "ADD": _Signature(2, 2), "MUL": _Signature(2, 2),
    "AVERAGE_POOL_2D": _Signature(1, 1, ranks={0: 4, "out": 4},
                                  options=_WINDOW + ("filter_height", "filter_width")),
    "MAX_POOL_2D": _Signature(1, 1, ranks={0: 4, "out": 4},
                              options=_WINDOW + ("filter_height", "filter_width")),
    "CONCATENATION": _Signature(1, None),
    "CONV_2D": _Signature(2, 3, ranks={0: 4, 1: 4, "out": 4}, options=_WINDOW),
    "DEPTHWISE_CONV_2D": _Signature(2, 3, ranks={0: 4, 1: 4, "out": 4}, options=_WINDOW),
    "FULLY_CONNECTED": _Signature(2, 3, ranks={1: 2}),
    "HARD_SWISH": _Signature(1, 1), "LOGISTIC": _Signature(1, 1), "QUANTIZE": _Signature(1, 1),
    "SOFTMAX": _Signature(1, 1), "MEAN": _Signature(2, 2), "PAD": _Signature(2, 2),
    "PADV2": _Signature(2, 3), "RESHAPE": _Signature(1, 2), "TRANSPOSE": _Signature(2, 2),
    "SPLIT": _Signature(2, 2, outputs=(1, None)), "SPLIT_V": _Signature(3, 3, outputs=(1, None)),
}


_POSITIVE_OPTIONS = ("stride_h", "stride_w", "dilation_h_factor", "dilation_w_factor",
                     "filter_height", "filter_width")


def _check_op(m, op):
    """Refuses an op whose inputs, outputs, ranks or options do not fit its kind (a damaged
    or hand-edited file), naming what is wrong, so that no emitter reads past them."""
    sig = _SIGNATURES[op.name]
    inputs, outputs = list(op.inputs), list(op.outputs)
    if sig.most is None:  # any number of inputs, every one present
        fewest, most, required = max(sig.required, 1), len(inputs), len(inputs)
    else:
        fewest, most, required = sig.required, sig.most, sig.required
    if not fewest <= len(inputs) <= most:
        takes = f"{fewest} or more" if sig.most is None else \
            f"{fewest}" if fewest == most else f"{fewest} to {most}"
        _fail_op(op, m, f"it has {len(inputs)} inputs; {op.name} takes {takes}")
    missing = [k for k, t in enumerate(inputs[:required]) if t < 0]
    if missing:
        _fail_op(op, m, f"its input {missing[0]} is missing (-1); {op.name} needs it")
    fewest_out, most_out = sig.outputs
    if len(outputs) < fewest_out or (most_out is not None and len(outputs) > most_out) or \
            any(t < 0 for t in outputs):
        _fail_op(op, m, f"its outputs {outputs} do not fit {op.name}")
    for t in outputs:
        if m.is_constant(t):
            _fail_op(op, m, f"its output {m.tensor(t).name!r} is a constant tensor")
    for t in inputs + outputs:
        if t >= 0 and 0 in m.shape(t):
            _fail_op(op, m, f"tensor {m.tensor(t).name!r} has shape {list(m.shape(t))}: it holds "
                     "no element, so the op computes nothing")
    for role, rank in sig.ranks.items():
        for t in (outputs if role == "out" else [inputs[role]] if role < len(inputs) else []):
            if t >= 0 and len(m.shape(t)) != rank:
                _fail_op(op, m, f"tensor {m.tensor(t).name!r} has shape {list(m.shape(t))}; "
                         f"{op.name} needs {rank} dimensions there")
    options = op.options or {}
    missing = [k for k in sig.options if k not in options]
    if missing:
        _fail_op(op, m, f"its options lack {', '.join(missing)}; the file is damaged or the op "
                 "carries the options of another kind")
    for key in _POSITIVE_OPTIONS:
        value = options.get(key, 1)
        if not isinstance(value, int) or value < 1:
            _fail_op(op, m, f"its option {key} is {value!r}; it must be a positive integer")
    if "padding" in options and options["padding"] not in ("SAME", "VALID"):
        _fail_op(op, m, f"its padding is {options['padding']!r}, neither SAME nor VALID")


def _constant_ints(m, op, index, what):
    """The values of a constant integer tensor (axes, a permutation, paddings), checked."""
    if not m.is_constant(index):
        _fail_op(op, m, f"its {what} are not constant")
    if m.tensor(index).type_name not in ("INT32", "INT64"):
        _fail_op(op, m, f"its {what} tensor is {m.tensor(index).type_name}, not INT32")
    return [int(v) for v in m.constant(index).ravel()]


def _expected_shape(m, op):
    """The output shape (or, where only the size is fixed, the element count as an int) that
    the kernel of `op` writes, from its inputs; None where `quant` checks the output itself
    (CONV_2D, DEPTHWISE_CONV_2D, pools) or the emitter does (ADD, MUL, SPLIT)."""
    x = op.inputs[0]
    shape = m.shape(x)
    if op.name in ("HARD_SWISH", "LOGISTIC", "QUANTIZE", "SOFTMAX"):
        if op.name == "SOFTMAX" and not shape:
            _fail_op(op, m, "its input is a scalar; SOFTMAX needs at least one dimension")
        return shape
    if op.name == "RESHAPE":
        return m.elements(x)
    if op.name == "FULLY_CONNECTED":
        units, depth = m.shape(op.inputs[1])
        if depth < 1 or m.elements(x) % depth:
            _fail_op(op, m, f"its input of {m.elements(x)} values is not a whole number of "
                     f"rows of {depth} (the weights' depth)")
        return m.elements(x) // depth * units
    if op.name == "MEAN":
        axes = _constant_ints(m, op, op.inputs[1], "axes")
        if any(not -len(shape) <= a < len(shape) for a in axes):
            _fail_op(op, m, f"its axes {axes} are outside the {len(shape)} dims of its input")
        reduced = {a % len(shape) for a in axes}
        return math.prod(d for k, d in enumerate(shape) if k not in reduced)
    if op.name == "TRANSPOSE":
        perm = _constant_ints(m, op, op.inputs[1], "permutation")
        if sorted(p % max(len(shape), 1) for p in perm) != list(range(len(shape))) or \
                any(not -len(shape) <= p < len(shape) for p in perm):
            _fail_op(op, m, f"its permutation {perm} is not one of the {len(shape)} dims of "
                     "its input")
        return tuple(shape[p] for p in perm)
    if op.name in ("PAD", "PADV2"):
        pads = _constant_ints(m, op, op.inputs[1], "paddings")
        if len(pads) != 2 * len(shape) or any(p < 0 or p > _MAX_PADDING for p in pads):
            _fail_op(op, m, f"its paddings {pads[:12]} are not [before, after] pairs of "
                     f"non-negative sizes for the {len(shape)} dims of its input")
        return tuple(d + pads[2 * k] + pads[2 * k + 1] for k, d in enumerate(shape))
    if op.name == "CONCATENATION":
        axis = op.options.get("axis", 0) if op.options else 0
        rank = len(shape)
        if not isinstance(axis, int) or not -rank <= axis < rank:
            _fail_op(op, m, f"its axis {axis!r} is outside the {rank} dims of its inputs")
        axis %= rank
        for t in op.inputs[1:]:
            other = m.shape(t)
            if len(other) != rank or any(a != b for k, (a, b) in enumerate(zip(shape, other))
                                         if k != axis):
                _fail_op(op, m, f"input {m.tensor(t).name!r} has shape {list(other)}, which "
                         f"does not join {list(shape)} along axis {axis}")
        return shape[:axis] + (sum(m.shape(t)[axis] for t in op.inputs),) + shape[axis + 1:]
    return None


# Paddings beyond this are no model's: the check keeps the output size arithmetic small.
_MAX_PADDING = 2**20


def _check_output(m, op):
    """Refuses an op whose output tensor is not exactly what its kernel writes: the generated
    C must never write past a tensor, whatever the file says."""
    expected = _expected_shape(m, op)
    if expected is None:
        return
    y = op.outputs[0]
    got = m.elements(y) if isinstance(expected, int) else m.shape(y)
    if got != expected:
        what = "values" if isinstance(expected, int) else "shape"
        _fail_op(op, m, f"its output {m.tensor(y).name!r} has {what} "
                 f"{got if isinstance(got, int) else list(got)}, but the op makes "
                 f"{expected if isinstance(expected, int) else list(expected)}")


def _fail_op(op, model, why):
    outputs = ", ".join(repr(model.tensor(t).name) for t in op.outputs)
    raise CodegenError(f"op #{op.index} {op.name} (output {outputs}): {why}")


@contextlib.contextmanager
def _about(m, op):
    """Turns a ValueError of the kernel parameter math (`quant`: shapes that do not match,
    a padding or activation it does not know) into a CodegenError naming the op."""
    try:
        yield
    except CodegenError:
        raise
    except ValueError as exc:
        _fail_op(op, m, str(exc))


def _activation(op):
    return op.options.get("fused_activation_function", "NONE") if op.options else "NONE"


class _Emitter:
    """Accumulates declarations and the body of the invoke function."""

    def __init__(self, m, offsets, tensor_buffer, conv_params):
        self.m = m
        self.conv_params = conv_params  # op index -> KernelParams of CONV_2D / DEPTHWISE_CONV_2D
        self.offsets = offsets
        self.tensor_buffer = tensor_buffer
        self.declarations = []
        self.body = []
        self.weights = {}        # tensor index -> C name
        self.weights_bytes = 0
        self.tables_bytes = 0
        self.macs = 0
        self.trace = []

    # -- pointers and constants
    def ptr(self, index, c_type="int8_t"):
        if self.m.is_constant(index):
            return self.weight(index)
        offset = self.offsets[self.tensor_buffer[index]]
        cast = "" if c_type == "int8_t" else f"({c_type} *)"
        return f"{cast}(arena + {offset})"

    def weight(self, index):
        if index not in self.weights:
            tensor = self.m.tensor(index)
            c_type = _C_TYPES.get(tensor.type_name)
            if c_type is None:
                raise CodegenError(f"constant tensor {tensor.name!r} is {tensor.type_name}; the "
                                   "runtime takes int8 weights and int32 biases")
            name = f"w{index}"
            values = self.m.constant(index)
            label = f"/* {c_text.comment(tensor.name)} {list(tensor.shape)} */\n"
            self.declarations.append(label + _array(name, values, c_type))
            self.weights_bytes += values.nbytes
            self.weights[index] = name
        return self.weights[index]

    def params(self, name, params):
        self.declarations.append(_struct(name, params))
        arrays = {}
        for key, values in params.arrays.items():
            values = np.asarray(values)
            c_type = "int8_t" if values.dtype == np.int8 else "int32_t"
            self.declarations.append(_array(f"{name}_{key}", values, c_type))
            self.tables_bytes += values.size * (1 if c_type == "int8_t" else 4)
            arrays[key] = f"{name}_{key}"
        return arrays

    def call(self, op, text, outputs=None):
        self.body.append(f"  /* {op.index}: {c_text.comment(op.name)} */\n  {text};\n")
        for t in (op.outputs if outputs is None else outputs):
            self.trace.append((op.index, t))
            self.body.append(f"  TRACE({op.index}, {self.ptr(t)}, {self.m.elements(t)});\n")


# ---------------------------------------------------------------------------------------------
# Op emitters: one per TFLite op.


def _check_int8(op, m, tensors):
    for t in tensors:
        if t >= 0 and not m.is_constant(t) and m.tensor(t).type_name not in _ACTIVATION_TYPES:
            _fail_op(op, m, f"tensor {m.tensor(t).name!r} is {m.tensor(t).type_name}; the "
                     "runtime computes int8 activations only. Convert with "
                     "tfedge.converters.to_int8")


def _scalar(m, op, index, what):
    """The first value of a constant tensor (an axis, a pad value), checked."""
    if not m.is_constant(index):
        _fail_op(op, m, f"its {what} is not constant")
    values = m.constant(index).ravel()
    if values.size == 0:
        _fail_op(op, m, f"its {what} tensor {m.tensor(index).name!r} is empty")
    return int(values[0])


def _check_bias(m, op, bias, channels):
    if bias is None:
        return
    if not m.is_constant(bias) or m.tensor(bias).type_name != "INT32":
        _fail_op(op, m, f"its bias {m.tensor(bias).name!r} is not a constant int32 tensor")
    if m.elements(bias) != channels:
        _fail_op(op, m, f"its bias {m.tensor(bias).name!r} has {m.elements(bias)} values for "
                 f"{channels} output channels")


def _bias(op):
    """The op's bias tensor index (inputs[2]), or None where it has none."""
    return op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None


_CONVOLUTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def _conv_params(m, op, precompute):
    x, w, y = op.inputs[0], op.inputs[1], op.outputs[0]
    b = _bias(op)
    o = op.options
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    # Constant biases (zeros without) and, for DEPTHWISE_CONV_2D, weights let quant precompute
    # the DSP kernels' tables (the "tables" / "stream" arrays).
    extra = {}
    if precompute and (b is None or m.is_constant(b)) and m.is_constant(w):
        channels = m.shape(w)[3 if depthwise else 0]
        extra["bias"] = m.constant(b).ravel() if b is not None else np.zeros(channels, np.int32)
        if depthwise:
            extra["filter"] = m.constant(w)
    function = quant.depthwise_conv2d if depthwise else quant.conv2d
    return function(input_shape=m.shape(x), filter_shape=m.shape(w), output_shape=m.shape(y),
                    strides=(o["stride_h"], o["stride_w"]), padding=o["padding"],
                    dilation=(o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)),
                    input_scale=m.scale(x), input_zero_point=m.zero_point(x),
                    filter_scales=m.scales(w), output_scale=m.scale(y),
                    output_zero_point=m.zero_point(y), activation=_activation(op), **extra)


def _convolution(e, op, scratch_name, function, table, macs_per_output):
    """CONV_2D and DEPTHWISE_CONV_2D, which differ in the kernel, the name of the DSP array
    quant may have precomputed (passed as NULL when it did not) and the MACs per output."""
    m = e.m
    x, w, y = op.inputs[0], op.inputs[1], op.outputs[0]
    b = _bias(op)
    arrays = e.params(f"p{op.index}", e.conv_params[op.index])
    _check_bias(m, op, b, m.shape(y)[3])
    bias = e.weight(b) if b is not None else "NULL"
    scratch = f"(arena + {e.offsets[scratch_name]})" if scratch_name else "NULL"
    e.macs += m.elements(y) * macs_per_output
    e.call(op, f"{function}(&p{op.index}, {e.ptr(x)}, {e.weight(w)}, {bias}, "
               f"{arrays['multiplier']}, {arrays['shift']}, {arrays.get(table, 'NULL')}, "
               f"{e.ptr(y)}, {scratch})")


def _conv(e, op, scratch_name):
    _, kh, kw, channels = e.m.shape(op.inputs[1])  # [out, kh, kw, in per group]
    _convolution(e, op, scratch_name, "tfedge_conv2d_s8", "tables", kh * kw * channels)


def _depthwise(e, op, scratch_name):
    _, kh, kw, _ = e.m.shape(op.inputs[1])  # [1, kh, kw, channels]
    _convolution(e, op, scratch_name, "tfedge_depthwise_conv2d_s8", "stream", kh * kw)


def _fully_connected(e, op, scratch_name):
    m = e.m
    x, w, y = op.inputs[0], op.inputs[1], op.outputs[0]
    b = _bias(op)
    if not m.is_constant(w):
        _fail_op(op, m, "its weights are not constant; the runtime needs constant weights")
    p = quant.fully_connected(input_size=m.elements(x), filter_shape=m.shape(w),
                              input_scale=m.scale(x), input_zero_point=m.zero_point(x),
                              filter_scales=m.scales(w), output_scale=m.scale(y),
                              output_zero_point=m.zero_point(y),
                              filter_zero_point=m.zero_point(w), activation=_activation(op))
    arrays = e.params(f"p{op.index}", p)
    _check_bias(m, op, b, m.shape(w)[0])
    bias = e.weight(b) if b is not None else "NULL"
    e.macs += m.elements(y) * m.shape(w)[1]
    e.call(op, f"tfedge_fully_connected_s8(&p{op.index}, {e.ptr(x)}, {e.weight(w)}, {bias}, "
               f"{arrays['multiplier']}, {arrays['shift']}, {e.ptr(y)})")


def _binary(kind):
    def emit(e, op, scratch_name):
        m = e.m
        a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
        function = quant.add if kind == "add" else quant.mul
        p = function(input1_scale=m.scale(a), input1_zero_point=m.zero_point(a),
                     input2_scale=m.scale(b), input2_zero_point=m.zero_point(b),
                     output_scale=m.scale(y), output_zero_point=m.zero_point(y),
                     activation=_activation(op))
        e.params(f"p{op.index}", p)
        shape_out = np.broadcast_shapes(m.shape(a), m.shape(b))
        if tuple(shape_out) != m.shape(y):
            _fail_op(op, m, f"inputs {m.shape(a)} and {m.shape(b)} broadcast to {shape_out}, "
                     f"not the output's {m.shape(y)}")
        e.params(f"bc{op.index}", quant.broadcast(m.shape(a), m.shape(b)))
        e.call(op, f"tfedge_{kind}_s8(&p{op.index}, &bc{op.index}, {e.ptr(a)}, {e.ptr(b)}, "
                   f"{e.ptr(y)})")
    return emit


def _pool(kind):
    def emit(e, op, scratch_name):
        m = e.m
        x, y = op.inputs[0], op.outputs[0]
        o = op.options
        if m.scale(x) != m.scale(y) or m.zero_point(x) != m.zero_point(y):
            _fail_op(op, m, "its input and output quantization differ, which TFLite's int8 "
                     "pooling does not allow")
        p = quant.pool2d(input_shape=m.shape(x), output_shape=m.shape(y),
                         filter_size=(o["filter_height"], o["filter_width"]),
                         strides=(o["stride_h"], o["stride_w"]), padding=o["padding"],
                         output_scale=m.scale(y), output_zero_point=m.zero_point(y),
                         activation=_activation(op))
        e.params(f"p{op.index}", p)
        e.call(op, f"tfedge_{kind}_pool_s8(&p{op.index}, {e.ptr(x)}, {e.ptr(y)})")
    return emit


def _mean(e, op, scratch_name):
    m = e.m
    x, axes_t, y = op.inputs[0], op.inputs[1], op.outputs[0]
    if not m.is_constant(axes_t):
        _fail_op(op, m, "its axes are not constant")
    p = quant.mean(input_shape=m.shape(x), axes=m.constant(axes_t).ravel().tolist(),
                   input_scale=m.scale(x), input_zero_point=m.zero_point(x),
                   output_scale=m.scale(y), output_zero_point=m.zero_point(y))
    e.params(f"p{op.index}", p)
    e.call(op, f"tfedge_mean_s8(&p{op.index}, {e.ptr(x)}, {e.ptr(y)})")


def _softmax(e, op, scratch_name):
    m = e.m
    x, y = op.inputs[0], op.outputs[0]
    if m.scale(y) != 1.0 / 256 or m.zero_point(y) != -128:
        _fail_op(op, m, f"its output is quantized with scale {m.scale(y)} and zero point "
                 f"{m.zero_point(y)}; TFLite's int8 softmax output is 1/256, -128")
    p = quant.softmax(input_shape=m.shape(x), input_scale=m.scale(x),
                      beta=op.options.get("beta", 1.0))
    e.params(f"p{op.index}", p)
    e.call(op, f"tfedge_softmax_s8(&p{op.index}, {e.ptr(x)}, {e.ptr(y)})")


def _lut(e, op, table):
    m = e.m
    x, y = op.inputs[0], op.outputs[0]
    name = f"lut{op.index}"
    e.declarations.append(_array(name, table, "int8_t"))
    e.call(op, f"tfedge_lut_s8({name}, {e.ptr(x)}, {e.ptr(y)}, {m.elements(x)})")


def _hard_swish(e, op, scratch_name):
    m = e.m
    x, y = op.inputs[0], op.outputs[0]
    p = quant.hard_swish(input_scale=m.scale(x), input_zero_point=m.zero_point(x),
                         output_scale=m.scale(y), output_zero_point=m.zero_point(y))
    _lut(e, op, quant.hard_swish_lut(p))  # 256 entries: one load per element


def _logistic(e, op, scratch_name):
    m = e.m
    x, y = op.inputs[0], op.outputs[0]
    _lut(e, op, quant.logistic_lut(input_scale=m.scale(x), input_zero_point=m.zero_point(x),
                                   output_scale=m.scale(y), output_zero_point=m.zero_point(y)))


def _reshape(e, op, scratch_name):
    m = e.m
    x, y = op.inputs[0], op.outputs[0]
    if e.tensor_buffer.get(x) == e.tensor_buffer.get(y):
        return  # the planner gave both the same bytes: nothing to do
    e.call(op, f"tfedge_copy_s8({e.ptr(x)}, {e.ptr(y)}, {m.elements(x)})")


def _concatenation(e, op, scratch_name):
    m = e.m
    y = op.outputs[0]
    inputs = list(op.inputs)
    p = quant.concatenation(input_shapes=[m.shape(t) for t in inputs],
                            axis=op.options.get("axis", 0))
    arrays = e.params(f"p{op.index}", p)
    requant = []
    for i, t in enumerate(inputs):
        if (m.scale(t), m.zero_point(t)) == (m.scale(y), m.zero_point(y)):
            requant.append("NULL")
            continue
        rq = quant.requantize(input_scale=m.scale(t), input_zero_point=m.zero_point(t),
                              output_scale=m.scale(y), output_zero_point=m.zero_point(y))
        e.params(f"rq{op.index}_{i}", rq)
        requant.append(f"&rq{op.index}_{i}")
    pointers = ", ".join(e.ptr(t) for t in inputs)
    e.declarations.append(f"static const int8_t *const in{op.index}[] = {{{pointers}}};\n")
    if all(r == "NULL" for r in requant):
        requant_arg = "NULL"
    else:
        e.declarations.append(f"static const tfedge_requant_params *const rqs{op.index}[] = "
                              f"{{{', '.join(requant)}}};\n")
        requant_arg = f"rqs{op.index}"
    e.call(op, f"tfedge_concatenation_s8(&p{op.index}, in{op.index}, "
               f"{arrays['copy_sizes']}, {requant_arg}, {e.ptr(y)})")


def _split(e, op, scratch_name):
    m = e.m
    if op.name == "SPLIT":
        axis_t, x = op.inputs[0], op.inputs[1]
    else:
        x, axis_t = op.inputs[0], op.inputs[2]
    axis = _scalar(m, op, axis_t, "axis")
    outputs = list(op.outputs)
    rank = len(m.shape(x))
    if not -rank <= axis < rank:
        _fail_op(op, m, f"its axis {axis} is outside the {rank} dims of its input")
    axis = axis + rank if axis < 0 else axis
    for t in outputs:
        other = m.shape(t)
        if len(other) != rank or any(a != b for k, (a, b) in enumerate(zip(m.shape(x), other))
                                     if k != axis):
            _fail_op(op, m, f"output {m.tensor(t).name!r} has shape {list(other)}, which is no "
                     f"part of {list(m.shape(x))} along axis {axis}")
    for t in outputs:
        if (m.scale(t), m.zero_point(t)) != (m.scale(x), m.zero_point(x)):
            _fail_op(op, m, "an output's quantization differs from the input's")
    p = quant.split(input_shape=m.shape(x), axis=axis,
                    sizes=[m.shape(t)[axis] for t in outputs])
    arrays = e.params(f"p{op.index}", p)
    pointers = ", ".join(e.ptr(t) for t in outputs)
    e.declarations.append(f"static int8_t *const out{op.index}[] = {{{pointers}}};\n")
    e.call(op, f"tfedge_split_s8(&p{op.index}, {e.ptr(x)}, out{op.index}, "
               f"{arrays['copy_sizes']})")


def _transpose(e, op, scratch_name):
    m = e.m
    x, perm_t, y = op.inputs[0], op.inputs[1], op.outputs[0]
    if not m.is_constant(perm_t):
        _fail_op(op, m, "its permutation is not constant")
    p = quant.transpose(input_shape=m.shape(x), perm=m.constant(perm_t).ravel().tolist())
    e.params(f"p{op.index}", p)
    e.call(op, f"tfedge_transpose_s8(&p{op.index}, {e.ptr(x)}, {e.ptr(y)})")


def _pad(e, op, scratch_name):
    m = e.m
    x, pads_t, y = op.inputs[0], op.inputs[1], op.outputs[0]
    if not m.is_constant(pads_t):
        _fail_op(op, m, "its paddings are not constant")
    value = m.zero_point(y)
    if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = _scalar(m, op, op.inputs[2], "pad value")
    p = quant.pad(input_shape=m.shape(x), paddings=m.constant(pads_t), pad_value=value)
    e.params(f"p{op.index}", p)
    e.call(op, f"tfedge_pad_s8(&p{op.index}, {e.ptr(x)}, {e.ptr(y)})")


def _quantize(e, op, scratch_name):
    m = e.m
    x, y = op.inputs[0], op.outputs[0]
    kinds = (m.tensor(x).type_name, m.tensor(y).type_name)
    functions = {("INT8", "INT8"): "tfedge_requantize_s8",
                 ("UINT8", "INT8"): "tfedge_requantize_u8_s8",
                 ("INT8", "UINT8"): "tfedge_requantize_s8_u8"}
    if kinds not in functions:
        _fail_op(op, m, f"QUANTIZE from {kinds[0]} to {kinds[1]}; the runtime requantizes "
                 "between int8 and uint8 only (convert with int8 input and output)")
    p = quant.requantize(input_scale=m.scale(x), input_zero_point=m.zero_point(x),
                         output_scale=m.scale(y), output_zero_point=m.zero_point(y))
    e.params(f"p{op.index}", p)
    in_type, out_type = (_C_TYPES[k] for k in kinds)
    e.call(op, f"{functions[kinds]}(&p{op.index}, {e.ptr(x, in_type)}, {e.ptr(y, out_type)}, "
               f"{m.elements(x)})")


_EMITTERS = {
    "ADD": _binary("add"), "MUL": _binary("mul"),
    "AVERAGE_POOL_2D": _pool("avg"), "MAX_POOL_2D": _pool("max"),
    "CONCATENATION": _concatenation, "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected, "HARD_SWISH": _hard_swish, "LOGISTIC": _logistic,
    "MEAN": _mean, "PAD": _pad, "PADV2": _pad, "QUANTIZE": _quantize, "RESHAPE": _reshape,
    "SOFTMAX": _softmax, "SPLIT": _split, "SPLIT_V": _split, "TRANSPOSE": _transpose,
}
assert set(_EMITTERS) == set(SUPPORTED_OPS)


def _io_info(m, index, role):
    tensor = m.tensor(index)
    if tensor.type_name != "INT8":
        raise CodegenError(f"the model's {role} {tensor.name!r} is {tensor.type_name}; "
                           f"tfedge_model_invoke takes int8 {role}s. Convert with "
                           "tfedge.converters.to_int8 (int8 input and output)")
    return TensorInfo(tensor.name, m.shape(index), tensor.type_name, m.scale(index),
                      m.zero_point(index), tensor.nbytes)


def generate(tflite_bytes, *, prefix="tfedge_model", precompute=True):
    """Compiles a full-int8 `.tflite` into C (see the module docstring); a `GeneratedModel`.

    `precompute`: put the DSP loops' requantization tables and the depthwise weights widened
    to int16 in flash, next to the weights (the fastest build: on the zoo at 96x96, 14-37% more
    flash for 4-10% fewer instructions, benchmarks/results/mcu.md);
    False leaves them out and the kernels build them in their arena scratch at every call
    (the same arena, fewer bytes of flash, more instructions). The portable build ignores them.

    Raises CodegenError naming the op and tensor for anything the runtime cannot run (ops
    outside `SUPPORTED_OPS`, float or int16 activations, non-constant weights, ...), and
    TFLiteFormatError for bytes that are no `.tflite`.
    """
    prefix = _identifier_prefix(prefix)
    m = _Model(tflite_bytes)
    main = m.main
    if len(main.inputs) != 1 or len(main.outputs) != 1:
        raise CodegenError(f"the model has {len(main.inputs)} inputs and {len(main.outputs)} "
                           "outputs; tfedge_model_invoke(in, out) takes models with one each")
    for op in main.operators:
        if op.name not in _EMITTERS:
            outputs = ", ".join(repr(m.tensor(t).name) for t in op.outputs)
            raise CodegenError(f"op #{op.index} {op.name} (output {outputs}) has no kernel in "
                               f"the tfedge runtime; it runs {', '.join(SUPPORTED_OPS)}")
        _check_op(m, op)
        _check_output(m, op)
        _check_int8(op, m, [t for t in op.inputs if t >= 0 and op.name not in
                            ("QUANTIZE",)] + [t for t in op.outputs if op.name != "QUANTIZE"])
    for index in main.inputs:
        if m.is_constant(index):
            raise CodegenError(f"the model's input {m.tensor(index).name!r} is a constant "
                               "tensor; the file is damaged or was edited by hand")
    info_in = _io_info(m, main.inputs[0], "input")
    info_out = _io_info(m, main.outputs[0], "output")

    # The convolutions' parameters, once: their DSP loops gather receptive fields and
    # requantization tables in arena scratch during the op (the runtime's *_scratch_bytes).
    conv_params = {}
    for op in main.operators:
        if op.name in _CONVOLUTIONS:
            with _about(m, op):
                conv_params[op.index] = _conv_params(m, op, precompute)
    scratch = {op.index: conv_params[op.index].scratch_bytes if op.index in conv_params else 0
               for op in main.operators}
    buffers = planner.model_buffers(m.model, scratch=scratch)
    plan = planner.plan(buffers.buffers)
    planner.check(plan, buffers.buffers)
    # The bound the issue measures against: tensors only (kernels' scratch is the runtime's
    # own cost, and counts in the arena).
    tensor_bound = planner.lower_bound([b for b in buffers.buffers
                                        if not b.name.startswith("scratch")])
    emitter = _Emitter(m, plan.offsets, buffers.tensor_buffer, conv_params)
    op_macs = []
    for op in main.operators:
        scratch_name = f"scratch{op.index}" if scratch[op.index] else None
        before = emitter.macs
        with _about(m, op):
            _EMITTERS[op.name](emitter, op, scratch_name)
        op_macs.append(emitter.macs - before)

    arena = max(plan.arena_bytes, 16)
    upper = prefix.upper()
    guard = f"{upper}_H_"
    in_ptr, out_ptr = emitter.ptr(main.inputs[0]), emitter.ptr(main.outputs[0])
    header = f"""/* Generated by tfedge from a .tflite model. Do not edit. */
#ifndef {guard}
#define {guard}

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

/* Input "{c_text.comment(info_in.name)}": int8 {list(info_in.shape)}, real = {info_in.scale!r} * (q - ({info_in.zero_point})). */
#define {upper}_INPUT_BYTES {info_in.bytes}
#define {upper}_INPUT_ZERO_POINT {info_in.zero_point}
/* Output "{c_text.comment(info_out.name)}": int8 {list(info_out.shape)}, real = {info_out.scale!r} * (q - ({info_out.zero_point})). */
#define {upper}_OUTPUT_BYTES {info_out.bytes}
#define {upper}_OUTPUT_ZERO_POINT {info_out.zero_point}
/* The one arena every activation lives in (static, inside model.c). */
#define {upper}_ARENA_BYTES {arena}
/* Multiply-accumulates of one inference. */
#define {upper}_MACS {emitter.macs}

/* Runs the model once: reads {upper}_INPUT_BYTES from `in`, writes {upper}_OUTPUT_BYTES to
 * `out` (which may not overlap `in`). Returns 0. Not reentrant: one arena. */
int {prefix}_invoke(const int8_t *in, int8_t *out);

#ifdef __cplusplus
}}
#endif

#endif /* {guard} */
"""
    ops = ", ".join(f"{c_text.comment(name)} x{count}" for name, count in
                    sorted(_count(op.name for op in main.operators).items()))
    source = [f"""/* Generated by tfedge from a .tflite model. Do not edit.
 * Ops: {ops}.
 * Arena {plan.arena_bytes} bytes (live-tensor lower bound {tensor_bound}), weights
 * {emitter.weights_bytes} bytes, kernel tables {emitter.tables_bytes} bytes. */
#include <string.h>

#include "model.h"
#include "tfedge_kernels.h"

#ifdef TFEDGE_TRACE
void tfedge_trace(int op, const int8_t *data, int32_t bytes);
#define TRACE(op, data, bytes) tfedge_trace((op), (data), (bytes))
#else
#define TRACE(op, data, bytes) ((void)0)
#endif

static int8_t arena[{arena}] __attribute__((aligned(16)));

"""]
    source += emitter.declarations
    source.append(f"\nint {prefix}_invoke(const int8_t *in, int8_t *out) {{\n"
                  f"  memcpy({in_ptr}, in, {info_in.bytes});\n")
    source += emitter.body
    source.append(f"  memcpy(out, {out_ptr}, {info_out.bytes});\n  return 0;\n}}\n")
    files = {"model.h": header, "model.c": "".join(source)}
    return GeneratedModel(files=files, prefix=prefix, arena_bytes=plan.arena_bytes,
                          lower_bound=tensor_bound, weights_bytes=emitter.weights_bytes,
                          tables_bytes=emitter.tables_bytes,
                          macs=emitter.macs, ops=tuple(op.name for op in main.operators),
                          op_macs=tuple(op_macs),
                          input=info_in, output=info_out, trace_tensors=tuple(emitter.trace))


def _count(items):
    counts = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts
