"""Helpers for test_kernels.py: the C runtime as host shared libraries called through ctypes,
one-op int8 TFLite models, and edits of those models (quantization, weights, options).

A one-op model is converted from a tiny tf_keras model once; the tests then re-randomize its
quantization parameters, weights and options through `Graph` (LiteRT's flatbuffer object API),
so that one conversion yields many parameter sets without re-running the converter.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.resources
import pathlib
import subprocess
import warnings

import numpy as np

from tfedge.microcontroller import quant

FLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror")
# variant -> extra compiler flags: the portable loops, and the DSP loops with emulated intrinsics.
VARIANTS = {"portable": ("-DTFEDGE_NO_DSP",), "dsp": ("-DTFEDGE_EMULATE_DSP",)}
ARM_TARGETS = {
    "cortex-m4": ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
    "cortex-m7": ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"),
    "cortex-m55": ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"),
}


def runtime_dir() -> pathlib.Path:
    return pathlib.Path(str(importlib.resources.files("tfedge.microcontroller") / "runtime"))


def runtime_sources():
    return sorted(runtime_dir().glob("*.c"))


def build_library(out_dir: pathlib.Path, variant: str) -> ctypes.CDLL:
    path = pathlib.Path(out_dir) / f"libtfedge_{variant}.so"
    cmd = ["gcc", *FLAGS, *VARIANTS[variant], "-fPIC", "-shared", "-I", str(runtime_dir()),
           *map(str, runtime_sources()), "-o", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building the runtime ({variant}) failed:\n{result.stderr}")
    return ctypes.CDLL(str(path))


# ---------------------------------------------------------------------------------------------
# ctypes bindings built from quant.KernelParams (all fields are int32 or int32 arrays)
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _struct_class(name, layout):
    fields = [(field, ctypes.c_int32 if n is None else ctypes.c_int32 * n) for field, n in layout]
    return type(name, (ctypes.Structure,), {"_fields_": fields})


def c_struct(params: quant.KernelParams):
    layout = tuple((k, len(v) if isinstance(v, (list, tuple)) else None)
                   for k, v in params.fields.items())
    cls = _struct_class(params.struct, layout)
    values = {}
    for (field, n), value in zip(layout, params.fields.values()):
        values[field] = (ctypes.c_int32 * n)(*value) if n is not None else int(value)
    return cls(**values)


def ptr(array):
    return None if array is None else ctypes.c_void_p(array.ctypes.data)


def _i32(a):
    return np.ascontiguousarray(a, dtype=np.int32)


def _i8(a):
    return np.ascontiguousarray(a, dtype=np.int8)


class Runtime:
    """Thin Python calls of the C kernels of one library build."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        lib.tfedge_conv2d_s8_scratch_bytes.restype = ctypes.c_size_t
        lib.tfedge_depthwise_conv2d_s8_scratch_bytes.restype = ctypes.c_size_t

    def conv2d(self, params, x, w, bias, tables=True):
        """tables: pass the precomputed tables of `params` (if it has them), else NULL."""
        p = c_struct(params)
        f = params.fields
        out = np.zeros((f["batches"], f["output_h"], f["output_w"], f["output_c"]), np.int8)
        size = self.lib.tfedge_conv2d_s8_scratch_bytes(ctypes.byref(p))
        assert size == params.scratch_bytes
        scratch = np.zeros(max(1, size // 4), np.int32)
        m, s = _i32(params.arrays["multiplier"]), _i32(params.arrays["shift"])
        t = _i32(params.arrays["tables"]) if tables and "tables" in params.arrays else None
        x, w = _i8(x), _i8(w)
        b = None if bias is None else _i32(bias)
        self.lib.tfedge_conv2d_s8(ctypes.byref(p), ptr(x), ptr(w), ptr(b), ptr(m), ptr(s), ptr(t),
                                  ptr(out), ptr(scratch))
        return out

    def depthwise_conv2d(self, params, x, w, bias, stream=True):
        """stream: pass the precomputed weight stream of `params` (if it has one), else NULL."""
        p = c_struct(params)
        f = params.fields
        out = np.zeros((f["batches"], f["output_h"], f["output_w"],
                        f["input_c"] * f["depth_multiplier"]), np.int8)
        m, s = _i32(params.arrays["multiplier"]), _i32(params.arrays["shift"])
        x, w = _i8(x), _i8(w)
        b = None if bias is None else _i32(bias)
        size = self.lib.tfedge_depthwise_conv2d_s8_scratch_bytes(ctypes.byref(p))
        assert size == params.scratch_bytes
        scratch = np.zeros(max(1, size // 4), np.int32)
        st = _i32(params.arrays["stream"]) if stream and "stream" in params.arrays else None
        self.lib.tfedge_depthwise_conv2d_s8(ctypes.byref(p), ptr(x), ptr(w), ptr(b), ptr(m),
                                            ptr(s), ptr(st), ptr(out), ptr(scratch))
        return out

    def fully_connected(self, params, x, w, bias):
        p = c_struct(params)
        f = params.fields
        out = np.zeros((f["batches"], f["output_depth"]), np.int8)
        m, s = _i32(params.arrays["multiplier"]), _i32(params.arrays["shift"])
        x, w = _i8(x), _i8(w)
        b = None if bias is None else _i32(bias)
        self.lib.tfedge_fully_connected_s8(ctypes.byref(p), ptr(x), ptr(w), ptr(b), ptr(m),
                                           ptr(s), ptr(out))
        return out

    def binary(self, name, params, bcast, x1, x2):
        p, b = c_struct(params), c_struct(bcast)
        out = np.zeros(int(np.prod(bcast.fields["dims"])), np.int8)
        x1, x2 = _i8(x1), _i8(x2)
        getattr(self.lib, f"tfedge_{name}_s8")(ctypes.byref(p), ctypes.byref(b), ptr(x1), ptr(x2),
                                               ptr(out))
        return out

    def pool(self, name, params, x):
        p = c_struct(params)
        f = params.fields
        out = np.zeros((f["batches"], f["output_h"], f["output_w"], f["channels"]), np.int8)
        x = _i8(x)
        getattr(self.lib, f"tfedge_{name}_pool_s8")(ctypes.byref(p), ptr(x), ptr(out))
        return out

    def mean(self, params, x, out_size):
        p = c_struct(params)
        out = np.zeros(out_size, np.int8)
        x = _i8(x)
        self.lib.tfedge_mean_s8(ctypes.byref(p), ptr(x), ptr(out))
        return out

    def softmax(self, params, x):
        p = c_struct(params)
        x = _i8(x)
        out = np.zeros(x.size, np.int8)
        self.lib.tfedge_softmax_s8(ctypes.byref(p), ptr(x), ptr(out))
        return out

    def hard_swish(self, params, x):
        p = c_struct(params)
        x = _i8(x)
        out = np.zeros(x.size, np.int8)
        self.lib.tfedge_hard_swish_s8(ctypes.byref(p), ptr(x), ptr(out), ctypes.c_int32(x.size))
        return out

    def lut(self, table, x):
        table, x = _i8(table), _i8(x)
        out = np.zeros(x.size, np.int8)
        self.lib.tfedge_lut_s8(ptr(table), ptr(x), ptr(out), ctypes.c_int32(x.size))
        return out

    def requantize(self, params, x, in_dtype=np.int8, out_dtype=np.int8):
        p = c_struct(params)
        x = np.ascontiguousarray(x, dtype=in_dtype)
        out = np.zeros(x.size, out_dtype)
        suffix = {(np.int8, np.int8): "s8", (np.uint8, np.int8): "u8_s8",
                  (np.int8, np.uint8): "s8_u8"}[(in_dtype, out_dtype)]
        getattr(self.lib, f"tfedge_requantize_{suffix}")(ctypes.byref(p), ptr(x), ptr(out),
                                                         ctypes.c_int32(x.size))
        return out

    def copy(self, x):
        x = _i8(x)
        out = np.zeros(x.size, np.int8)
        self.lib.tfedge_copy_s8(ptr(x), ptr(out), ctypes.c_int32(x.size))
        return out

    def concatenation(self, params, inputs, requant=None):
        p = c_struct(params)
        inputs = [_i8(x) for x in inputs]
        sizes = _i32(params.arrays["copy_sizes"])
        out = np.zeros(sum(x.size for x in inputs), np.int8)
        in_ptrs = (ctypes.c_void_p * len(inputs))(*[x.ctypes.data for x in inputs])
        structs, rq_arg = [], None  # `structs` keeps the requant structs alive for the call
        if requant is not None:
            structs = [None if r is None else c_struct(r) for r in requant]
            rq_arg = (ctypes.c_void_p * len(structs))(
                *[None if s is None else ctypes.addressof(s) for s in structs])
        self.lib.tfedge_concatenation_s8(ctypes.byref(p), in_ptrs, ptr(sizes), rq_arg, ptr(out))
        return out

    def split(self, params, x, out_sizes):
        p = c_struct(params)
        x = _i8(x)
        outs = [np.zeros(n, np.int8) for n in out_sizes]
        out_ptrs = (ctypes.c_void_p * len(outs))(*[o.ctypes.data for o in outs])
        sizes = _i32(params.arrays["copy_sizes"])
        self.lib.tfedge_split_s8(ctypes.byref(p), ptr(x), out_ptrs, ptr(sizes))
        return outs

    def transpose(self, params, x):
        p = c_struct(params)
        x = _i8(x)
        out = np.zeros(x.size, np.int8)
        self.lib.tfedge_transpose_s8(ctypes.byref(p), ptr(x), ptr(out))
        return out

    def pad(self, params, x, out_size):
        p = c_struct(params)
        x = _i8(x)
        out = np.zeros(out_size, np.int8)
        self.lib.tfedge_pad_s8(ctypes.byref(p), ptr(x), ptr(out))
        return out


# ---------------------------------------------------------------------------------------------
# One-op TFLite models
# ---------------------------------------------------------------------------------------------

def schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _opcode_names():
    ops = schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def convert(model, input_shapes, rng, *, num_samples=16, input_type="int8", output_type="int8",
            value_range=(-1.0, 1.0)):
    """Full-int8 conversion of a tf_keras model with any number of inputs (batch 1), calibrated
    on uniform random data. (tfedge.converters.tflite.to_int8 takes single-input models.)"""
    from tfedge._keras import tf

    specs = [tf.TensorSpec((1, *s), tf.float32) for s in input_shapes]

    @tf.function(input_signature=specs)
    def serve(*xs):
        return model(list(xs) if len(xs) > 1 else xs[0], training=False)

    lo, hi = value_range
    samples = [[rng.uniform(lo, hi, (1, *s)).astype(np.float32) for s in input_shapes]
               for _ in range(num_samples)]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter(samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = getattr(tf, input_type)
    converter.inference_output_type = getattr(tf, output_type)
    with warnings.catch_warnings():
        # Spurious here: the input quantization comes from calibration.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


class Graph:
    """A mutable view of a .tflite flatbuffer (LiteRT's object API)."""

    def __init__(self, tflite_bytes):
        self.model = schema().ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
        self.sub = self.model.subgraphs[0]
        self.names = _opcode_names()

    def op_name(self, op):
        code = self.model.operatorCodes[op.opcodeIndex]
        return self.names[max(code.builtinCode, code.deprecatedBuiltinCode)]

    def ops(self, name=None):
        return [op for op in self.sub.operators if name is None or self.op_name(op) == name]

    def only(self, name, index=0):
        """Keeps just the `index`-th `name` op; its non-constant inputs and outputs become the
        graph's."""
        op = self.ops(name)[index]
        self.sub.operators = [op]
        self.sub.inputs = [i for i in op.inputs if i >= 0 and self.data(i) is None]
        self.sub.outputs = list(op.outputs)
        return op

    def tensor(self, index):
        return self.sub.tensors[index]

    def shape(self, index):
        return tuple(int(d) for d in self.tensor(index).shape)

    def data(self, index):
        buf = self.model.buffers[self.tensor(index).buffer]
        return None if buf.data is None or len(buf.data) == 0 else np.asarray(buf.data, np.uint8)

    def array(self, index, dtype):
        return self.data(index).view(dtype).reshape(self.shape(index))

    def set_array(self, index, value):
        self.model.buffers[self.tensor(index).buffer].data = np.frombuffer(
            np.ascontiguousarray(value).tobytes(), np.uint8).copy()

    def scales(self, index):
        return np.asarray(self.tensor(index).quantization.scale, np.float32)

    def zero_points(self, index):
        return np.asarray(self.tensor(index).quantization.zeroPoint, np.int64)

    def scale(self, index):
        return float(self.scales(index)[0])

    def zero_point(self, index):
        return int(self.zero_points(index)[0])

    def set_quant(self, index, scale, zero_point=None):
        q = self.tensor(index).quantization
        scale = np.atleast_1d(np.asarray(scale, np.float32))
        q.scale = [float(s) for s in scale]
        if zero_point is None:
            zero_point = [0] * len(scale)
        q.zeroPoint = [int(z) for z in np.atleast_1d(zero_point)]

    def set_type(self, index, type_name):
        self.tensor(index).type = getattr(schema().TensorType, type_name)

    def to_bytes(self):
        import flatbuffers

        builder = flatbuffers.Builder(1024)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


ACTIVATION_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
PADDING_NAMES = {0: "SAME", 1: "VALID"}


def reference(tflite_bytes, inputs):
    """Outputs of LiteRT's reference kernels (BUILTIN_REF)."""
    from tfedge.converters import interpreter

    it = interpreter.make_interpreter(tflite_bytes, reference=True)
    return interpreter.invoke(it, inputs)


def random_int8(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def log_uniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
