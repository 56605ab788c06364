"""Deployability linter: how TFLM with CMSIS-NN kernels would run each op of a `.tflite`.

    from tfedge.converters.lint import lint
    report = lint("model.tflite", target="cortex-m4")
    print(report.table())
    report.ok                 # False when any op is a blocker
    report.blockers           # the findings that stop the deployment, each with its fix
    report.to_json()          # the same, as deterministic JSON

Every op of subgraph 0 gets one status:

- "optimized": TFLM built with CMSIS-NN (`OPTIMIZED_KERNEL_DIR=cmsis_nn`) runs it with a CMSIS-NN
  kernel for these types and parameters; `kernel` names the CMSIS-NN function.
- "reference": it runs, but on TFLM's portable kernel (or on the generic C loop CMSIS-NN keeps for
  parameters it does not optimize); `reason` says why.
- "blocker": it will not run under TFLM, or it defeats the purpose of an int8 deployment (a
  float op left in an int8 model, a shape that is only known at run time); `fix` says what to do.

Targets. "cortex-m4" and "cortex-m7" have the DSP extension (CMSIS-NN's ARM_MATH_DSP paths),
"cortex-m55" has MVE/Helium (ARM_MATH_MVEI); "generic" is a TFLM build without CMSIS-NN, where
everything TFLM has runs on reference kernels. The target changes a finding only where the
sources differ: the choice of kernels is the same for M4 and M7 (both compile the DSP paths), and
on M55 an int8 depthwise convolution with one input channel and more than 8 output channels
(so a depth multiplier above 8) is turned into a regular convolution
(`arm_depthwise_conv_wrapper_s8`), while M4/M7 run the generic depthwise loop for it; M4/M7 also
have a dedicated 3x3 depthwise kernel that MVE builds do not use (both are optimized). Speed
differences between the cores inside one kernel are not modelled.

The facts are the tables below, each with the file it comes from (tensorflow/tflite-micro unless
said otherwise, as of 2024-2025); ops outside subgraph 0 (IF/WHILE bodies) are not linted.
"""

from __future__ import annotations

import dataclasses
import json
import os

from tfedge.converters import op_resolver, tflite_reader

TARGETS = ("cortex-m4", "cortex-m7", "cortex-m55", "generic")
STATUSES = ("optimized", "reference", "blocker")

# Target -> the CMSIS-NN code path it compiles (None: no CMSIS-NN). Cortex-M4/M7 define
# __ARM_FEATURE_DSP, Cortex-M55 also __ARM_FEATURE_MVE; CMSIS-NN turns these into ARM_MATH_DSP /
# ARM_MATH_MVEI (ARM-software/CMSIS-NN Include/arm_nn_math_types.h), and its kernels take the
# MVE path where both are defined.
TARGET_EXTENSIONS = {"cortex-m4": "DSP", "cortex-m7": "DSP", "cortex-m55": "MVE", "generic": None}

# Builtin ops TFLM has a kernel for, and custom ops it ships portable kernels for (detection
# post-processing, the circular buffer, the signal library, ...): the ops its
# MicroMutableOpResolver can register, one table shared with the op-resolver generator
# (tfedge.converters.op_resolver, which cites its sources).
TFLM_BUILTIN_OPS = frozenset(op_resolver.ADD_METHODS)
TFLM_CUSTOM_OPS = frozenset(op_resolver.CUSTOM_ADD_METHODS) - {"ethos-u"}  # an NPU's, below
# The custom op Arm's Vela compiler puts in place of the ops it moves to an Ethos-U NPU.
ETHOS_U_CUSTOM_OP = "ethos-u"

# (op, activation type) pairs TFLM has no kernel for although it has the op: measured with the
# tflite-micro interpreter on tfedge's int16x8 models (see tfedge.converters.tflite.to_int16x8).
TFLM_MISSING_TYPES = {
    ("REDUCE_MAX", "INT16"): "convert with tfedge.converters.to_int8, or replace "
                             "GlobalMaxPooling2D with GlobalAveragePooling2D",
    ("RESIZE_BILINEAR", "INT16"): "convert with tfedge.converters.to_int8, or resize with "
                                  "UpSampling2D(interpolation='nearest')",
}
# Ops whose TFLM kernels accept only float32, int8 and int16 inputs: kernels/cmsis_nn/conv.cc,
# fully_connected.cc and transpose_conv.cc refuse the rest in Prepare ("Input data type not
# supported"), depthwise_conv.cc in Eval ("Type ... not supported").
TFLM_FLOAT_INT8_INT16_ONLY = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                                        "TRANSPOSE_CONV"})

# The most dimensions TFLM's TRANSPOSE takes: its common Prepare (kernels/transpose_common.cc)
# refuses more than 5 ("Transpose op only supports 1D-5D input arrays"); the CMSIS-NN int8 kernel
# (kernels/cmsis_nn/transpose.cc: TF_LITE_ENSURE(context, size <= 4)) more than 4.
TFLM_TRANSPOSE_MAX_DIMS = 5
CMSIS_NN_TRANSPOSE_MAX_DIMS = 4

# op -> {activation type: CMSIS-NN function} for the ops in kernels/cmsis_nn/ (the file is the
# op's name in lower case). Types not listed, and float32 everywhere (every CMSIS-NN kernel file
# calls tflite::reference_ops for float32), run on the portable kernel. The parameter limits
# are in _CMSIS_NN_RULES.
CMSIS_NN_KERNELS = {
    "CONV_2D": {"INT8": "arm_convolve_wrapper_s8", "INT16": "arm_convolve_wrapper_s16"},
    "DEPTHWISE_CONV_2D": {"INT8": "arm_depthwise_conv_wrapper_s8",
                          "INT16": "arm_depthwise_conv_s16"},
    "FULLY_CONNECTED": {"INT8": "arm_fully_connected_s8", "INT16": "arm_fully_connected_s16"},
    "ADD": {"INT8": "arm_elementwise_add_s8", "INT16": "arm_elementwise_add_s16"},
    "MUL": {"INT8": "arm_elementwise_mul_s8", "INT16": "arm_elementwise_mul_s16"},
    "AVERAGE_POOL_2D": {"INT8": "arm_avgpool_s8", "INT16": "arm_avgpool_s16"},
    "MAX_POOL_2D": {"INT8": "arm_max_pool_s8", "INT16": "arm_max_pool_s16"},
    "SOFTMAX": {"INT8": "arm_softmax_s8", "INT16": "arm_softmax_s16"},
    "TRANSPOSE": {"INT8": "arm_transpose_s8"},
    "PAD": {"INT8": "arm_pad_s8"},
    "PADV2": {"INT8": "arm_pad_s8"},
    "MAXIMUM": {"INT8": "arm_maximum_s8"},
    "MINIMUM": {"INT8": "arm_minimum_s8"},
    "BATCH_MATMUL": {"INT8": "arm_batch_matmul_s8", "INT16": "arm_batch_matmul_s16"},
    "TRANSPOSE_CONV": {"INT8": "arm_transpose_conv_wrapper_s8"},
    "SVDF": {"INT8": "arm_svdf_s8"},
    "UNIDIRECTIONAL_SEQUENCE_LSTM": {"INT8": "arm_lstm_unidirectional_s8",
                                     "INT16": "arm_lstm_unidirectional_s16"},
}
# Where each CMSIS-NN fact comes from.
CMSIS_NN_SOURCES = {
    "CONV_2D": "kernels/cmsis_nn/conv.cc; CMSIS-NN Source/ConvolutionFunctions/"
               "arm_convolve_wrapper_s8.c",
    "DEPTHWISE_CONV_2D": "kernels/cmsis_nn/depthwise_conv.cc; CMSIS-NN Source/"
                         "ConvolutionFunctions/arm_depthwise_conv_wrapper_s8.c, "
                         "arm_depthwise_conv_s8.c",
    "PADV2": "kernels/cmsis_nn/pad.cc",
    "MAXIMUM": "kernels/cmsis_nn/maximum_minimum.cc",
    "MINIMUM": "kernels/cmsis_nn/maximum_minimum.cc",
    "AVERAGE_POOL_2D": "kernels/cmsis_nn/pooling.cc",
    "MAX_POOL_2D": "kernels/cmsis_nn/pooling.cc",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "kernels/cmsis_nn/unidirectional_sequence_lstm.cc",
}
for _op in CMSIS_NN_KERNELS:
    CMSIS_NN_SOURCES.setdefault(_op, f"kernels/cmsis_nn/{_op.lower()}.cc")

# Depthwise convolutions on MVE with one input channel and more output channels than this are
# run as a regular convolution (arm_depthwise_conv_wrapper_s8.c); the threshold is 8 with
# armclang and 1 with other compilers (CMSIS-NN arm_nnsupportfunctions.h), so 8 is the value
# that holds for both.
CMSIS_NN_MVE_DW_TO_CONV_CHANNELS = 8

# Ops without a CMSIS-NN kernel that int8 vision models often hold: (why it is reference, what
# would make it optimized, or "" when nothing needs doing).
REFERENCE_NOTES = {
    "HARD_SWISH": ("TFLM has no CMSIS-NN HARD_SWISH; its portable kernel computes h-swish per "
                   "element in fixed point",
                   "acceptable; for CMSIS-NN speed throughout use ReLU/ReLU6 activations, "
                   "which fuse into the convolutions"),
    "MEAN": ("TFLM has no CMSIS-NN MEAN (kernels/reduce.cc is portable)",
             "for global average pooling use AveragePooling2D(pool_size=(height, width)) + "
             "Flatten: it converts to AVERAGE_POOL_2D, which runs on arm_avgpool_s8"),
    "CONCATENATION": ("TFLM has no CMSIS-NN CONCATENATION; the portable kernel copies memory",
                      ""),
    "RESHAPE": ("no arithmetic: TFLM's RESHAPE copies the data at most", ""),
    "SQUEEZE": ("no arithmetic: TFLM's SQUEEZE copies the data at most", ""),
    "EXPAND_DIMS": ("no arithmetic: TFLM's EXPAND_DIMS copies the data at most", ""),
    "SPLIT": ("TFLM has no CMSIS-NN SPLIT; the portable kernel copies memory", ""),
    "SPLIT_V": ("TFLM has no CMSIS-NN SPLIT_V; the portable kernel copies memory", ""),
    "STRIDED_SLICE": ("TFLM has no CMSIS-NN STRIDED_SLICE; the portable kernel copies memory",
                      ""),
    "QUANTIZE": ("TFLM has no CMSIS-NN QUANTIZE (an int8 -> int8 QUANTIZE rescales per "
                 "element)", ""),
    "LOGISTIC": ("TFLM has no CMSIS-NN LOGISTIC; the portable kernel evaluates the sigmoid in "
                 "fixed point", ""),
    "TANH": ("TFLM has no CMSIS-NN TANH; the portable kernel evaluates it in fixed point", ""),
    "SUB": ("TFLM has no CMSIS-NN SUB", ""),
    "RELU": ("a separate RELU op: TFLM has no CMSIS-NN kernel for it",
             "fuse the activation into the layer before it (Conv2D(..., activation='relu'))"),
    "RELU6": ("a separate RELU6 op: TFLM has no CMSIS-NN kernel for it",
              "fuse the activation into the layer before it (a ReLU right after a Conv2D or "
              "BatchNormalization fuses when converted)"),
    "LEAKY_RELU": ("TFLM has no CMSIS-NN LEAKY_RELU", ""),
    "PRELU": ("TFLM has no CMSIS-NN PRELU", ""),
    "RESIZE_NEAREST_NEIGHBOR": ("TFLM has no CMSIS-NN RESIZE_NEAREST_NEIGHBOR", ""),
    "RESIZE_BILINEAR": ("TFLM has no CMSIS-NN RESIZE_BILINEAR", ""),
}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A tensor an op reads or writes: index in the subgraph, name, type, shape."""

    index: int
    name: str
    type: str
    shape: tuple[int, ...]
    constant: bool

    def as_dict(self) -> dict:
        return {"tensor": self.index, "name": self.name, "type": self.type,
                "shape": list(self.shape), "constant": self.constant}

    def short(self) -> str:
        dims = "x".join(str(d) for d in self.shape) or "scalar"
        return f"{self.type} {dims}"


@dataclasses.dataclass(frozen=True)
class Finding:
    """How one op runs: status, the kernel (when known), why, and what to do (when needed)."""

    index: int
    op: str
    status: str
    kernel: str
    reason: str
    fix: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def as_dict(self) -> dict:
        return {"index": self.index, "op": self.op, "status": self.status,
                "kernel": self.kernel, "reason": self.reason, "fix": self.fix,
                "inputs": [t.as_dict() for t in self.inputs],
                "outputs": [t.as_dict() for t in self.outputs]}


@dataclasses.dataclass(frozen=True)
class LintReport:
    """Per-op findings for one target, in execution order."""

    target: str
    findings: tuple[Finding, ...]

    @property
    def summary(self) -> dict[str, int]:
        """Number of ops per status, in STATUSES order."""
        return {s: sum(f.status == s for f in self.findings) for s in STATUSES}

    @property
    def blockers(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == "blocker")

    @property
    def ok(self) -> bool:
        """True when no op is a blocker."""
        return not self.blockers

    def by_status(self, status: str) -> tuple[Finding, ...]:
        _check_choice("status", status, STATUSES)
        return tuple(f for f in self.findings if f.status == status)

    def as_dict(self) -> dict:
        return {"target": self.target, "ok": self.ok, "summary": self.summary,
                "findings": [f.as_dict() for f in self.findings]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.as_dict(), indent=indent)

    def table(self) -> str:
        """A plain-text table: one row per op, then the reason and fix of every blocker, and
        of the reference ops (ops that share a reason share a line)."""
        counts = self.summary
        lines = [f"target {self.target}: {len(self.findings)} ops: "
                 + ", ".join(f"{s} {counts[s]}" for s in STATUSES)]
        rows = [("#", "op", "status", "input -> output", "kernel")]
        for f in self.findings:
            data = [t for t in f.inputs if not t.constant][:2]
            io = (", ".join(t.short() for t in data) or "-") + " -> " + \
                 (", ".join(t.short() for t in f.outputs) or "-")
            rows.append((str(f.index), f.op, f.status, io, f.kernel or "-"))
        widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]) - 1)]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
        blockers = self.blockers
        if blockers:
            lines += ["", "blockers:"]
            for f in blockers:
                lines += [f"  #{f.index} {f.op}: {f.reason}", f"    fix: {f.fix}"]
        groups: dict[tuple[str, str], list[Finding]] = {}
        for f in self.by_status("reference"):
            groups.setdefault((f.reason, f.fix), []).append(f)
        if groups:
            lines += ["", "reference kernels:"]
            for (reason, fix), group in groups.items():
                ops = ", ".join(f"#{f.index} {f.op}" for f in group)
                lines.append(f"  {ops}: {reason}")
                if fix:
                    lines.append(f"    fix: {fix}")
        return "\n".join(lines)


def _check_choice(argument, value, choices):
    if value not in choices:
        raise ValueError(f"`{argument}` must be one of {', '.join(map(repr, choices))}. "
                         f"Received: {argument}={value!r}")


# --------------------------------------------------------------------------------------------
# The context one op is judged in.


@dataclasses.dataclass(frozen=True)
class _Op:
    op: tflite_reader.Operator
    code: tflite_reader.OperatorCode
    inputs: tuple[TensorInfo | None, ...]  # None for an absent optional input
    outputs: tuple[TensorInfo, ...]
    signatures: tuple[tuple[int, ...] | None, ...]  # shape_signature of inputs + outputs
    target: str

    @property
    def name(self):
        return self.op.name

    @property
    def options(self):
        return self.op.options

    def input(self, k):
        return self.inputs[k] if k < len(self.inputs) else None

    @property
    def data(self):
        """The main activation input (TRANSPOSE_CONV keeps it in input 2)."""
        return self.input(2 if self.name == "TRANSPOSE_CONV" else 0)

    @property
    def act_type(self) -> str:
        data = self.data
        return data.type if data is not None else (self.outputs[0].type if self.outputs else "")


def _tensor_info(model, graph, index) -> TensorInfo | None:
    if index < 0:
        return None
    t = graph.tensors[index]
    return TensorInfo(index=index, name=t.name, type=t.type_name, shape=t.shape,
                      constant=model.buffers[t.buffer].size > 0)


def _finding(ctx: _Op, status, kernel="", reason="", fix=""):
    return Finding(index=ctx.op.index, op=ctx.name, status=status, kernel=kernel, reason=reason,
                   fix=fix, inputs=tuple(t for t in ctx.inputs if t is not None),
                   outputs=ctx.outputs)


# --------------------------------------------------------------------------------------------
# Blockers that do not depend on the kernels.


_FIX_INT8 = "convert with tfedge.converters.to_int8 so no float op is left"
_FIX_BATCH = ("fix the batch to 1 (tfedge.converters.to_int8 and converter_for do; with your own "
              "converter, trace a tf.function whose input_signature has batch 1), so the "
              "converter drops the SHAPE/STRIDED_SLICE ops a dynamic batch creates")


def _custom_blocker(ctx: _Op):
    if ctx.code.builtin_code != tflite_reader.CUSTOM_CODE:
        return None
    custom = ctx.code.custom_code or ""
    if custom in TFLM_CUSTOM_OPS:
        return _finding(ctx, "reference", "TFLM custom op",
                        f"custom op {custom!r} ships with TFLM as a portable kernel",
                        "register it with its MicroMutableOpResolver method (e.g. "
                        "AddDetectionPostprocess, AddCircularBuffer, AddWindow)")
    if custom == ETHOS_U_CUSTOM_OP:
        return _finding(ctx, "blocker", "",
                        "'ethos-u' is a Vela-compiled command stream: it runs only on an Arm "
                        "Ethos-U NPU, not on the Cortex-M CPU",
                        "lint the model from before Vela compilation, or deploy it on a system "
                        "with an Ethos-U NPU and TFLM's ethos-u kernel")
    if custom.startswith("Flex"):
        return _finding(ctx, "blocker", "",
                        f"{custom!r} is a TensorFlow (Flex) op: TFLM cannot run TensorFlow ops",
                        "convert with TFLITE_BUILTINS (or TFLITE_BUILTINS_INT8) only, and "
                        "replace the layer that needs the TensorFlow op")
    return _finding(ctx, "blocker", "",
                    f"custom op {custom or '(unnamed)'!r}: TFLM has no kernel for it",
                    "write a TFLM kernel and register it with MicroMutableOpResolver::AddCustom, "
                    "or replace the layer with builtin ops")


def _missing_op_blocker(ctx: _Op):
    if ctx.name in TFLM_BUILTIN_OPS or ctx.code.builtin_code == tflite_reader.CUSTOM_CODE:
        return None
    return _finding(ctx, "blocker", "",
                    f"TFLM has no kernel for {ctx.name}",
                    f"replace the layer that converts to {ctx.name} with layers TFLM has "
                    "(see tfedge.converters.lint.TFLM_BUILTIN_OPS)")


def _dynamic_blocker(ctx: _Op):
    for info, signature in zip(ctx.inputs + ctx.outputs, ctx.signatures):
        if info is None or signature is None:
            continue
        dims = [k for k, d in enumerate(signature) if d < 0 and k > 0]
        if dims:
            return _finding(ctx, "blocker", "",
                            f"tensor {info.name!r} has dynamic dims {dims} (shape_signature "
                            f"{list(signature)}): TFLM plans memory for static shapes only",
                            "build the model with a fixed input_shape (every dimension but the "
                            "batch known) and fix the batch to 1 before converting")
    return None


def _dynamic_shape_blocker(ctx: _Op, dynamic_values: dict):
    """SHAPE of a tensor with a dynamic dim, and every op computing from its result."""
    if ctx.name == "SHAPE":
        source = ctx.input(0)
        signature = ctx.signatures[0]
        if source is not None and signature is not None and any(d < 0 for d in signature):
            return _finding(ctx, "blocker", "",
                            f"SHAPE of {source.name!r} reads a size that is only known at run "
                            f"time (shape_signature {list(signature)})", _FIX_BATCH)
    for info in ctx.inputs:
        if info is not None and info.index in dynamic_values:
            return _finding(ctx, "blocker", "",
                            f"computes from the run-time shape of a dynamic-batch tensor "
                            f"(input {info.name!r}, from SHAPE #{dynamic_values[info.index]})",
                            _FIX_BATCH)
    return None


# The most bytes one tensor may have: TFLM sizes tensors in int32 (TfLiteIntArray dims, the
# arena offsets of its planner), and a Cortex-M has 32-bit addresses.
MAX_TENSOR_BYTES = 2**31 - 1


def _size_blocker(ctx: _Op, tensors):
    """A tensor too large for any microcontroller (a damaged file or a huge model)."""
    for tensor in tensors:
        if tensor is None or any(d < 0 for d in tensor.shape):
            continue
        elements = 1
        for d in tensor.shape:
            elements *= d
            if elements > MAX_TENSOR_BYTES:
                shape = list(tensor.shape[:8]) + (["..."] if len(tensor.shape) > 8 else [])
                return _finding(ctx, "blocker", "",
                                f"tensor {tensor.name!r} has shape {shape}: more than "
                                f"{MAX_TENSOR_BYTES:,} elements, beyond TFLM's int32 sizes and "
                                "any Cortex-M's memory",
                                "convert the model again (the file may be damaged); a model "
                                "this large does not fit a microcontroller")
    return None


def _transpose_rank_blocker(ctx: _Op):
    if ctx.name != "TRANSPOSE" or ctx.data is None:
        return None
    rank = len(ctx.data.shape)
    if rank > TFLM_TRANSPOSE_MAX_DIMS:
        return _finding(ctx, "blocker", "",
                        f"{rank}-D TRANSPOSE: TFLM's TRANSPOSE takes at most "
                        f"{TFLM_TRANSPOSE_MAX_DIMS} dims",
                        "reshape to at most 4 dims before the transpose (tfedge's "
                        "ChannelShuffle does)")
    return None


def _structure_blocker(ctx: _Op):
    """An op without its data input or output (a damaged or hand-edited file)."""
    if ctx.data is None or not ctx.outputs:
        missing = "input" if ctx.data is None else "output"
        return _finding(ctx, "blocker", "",
                        f"{ctx.name} has no {missing} tensor, so no kernel can run it",
                        "convert the model again; the file is damaged or was edited by hand")
    return None


def _type_blocker(ctx: _Op):
    act = ctx.act_type
    fix = TFLM_MISSING_TYPES.get((ctx.name, act))
    if fix:
        return _finding(ctx, "blocker", "", f"TFLM has no {act} kernel for {ctx.name}", fix)
    if ctx.name in TFLM_FLOAT_INT8_INT16_ONLY and act not in ("FLOAT32", "INT8", "INT16"):
        return _finding(ctx, "blocker", "",
                        f"{act} input: TFLM's {ctx.name} takes float32, int8 or int16 inputs "
                        "only", "convert with tfedge.converters.to_int8 (int8 quantization)")
    return None


_INTEGER_WEIGHTS = ("INT8", "INT4", "INT2")


def _float_finding(ctx: _Op, integer_model: bool, graph_inputs, graph_outputs):
    """Findings for ops that touch float tensors (None when the op touches none)."""
    tensors = [t for t in ctx.inputs + ctx.outputs if t is not None]
    floats = [t for t in tensors if t.type in ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")]
    if not floats:
        return None
    activations = [t for t in ctx.inputs if t is not None and not t.constant]
    if any(t.type in ("FLOAT32", "FLOAT16") for t in activations) and any(
            t.constant and t.type in _INTEGER_WEIGHTS for t in ctx.inputs if t is not None):
        return _finding(ctx, "blocker", "",
                        "hybrid op: int8 weights with float activations (dynamic-range "
                        "quantization); TFLM has no hybrid kernels (\"Hybrid models are not "
                        "supported on TFLite Micro.\")",
                        "convert with tfedge.converters.to_int8 (full integer) instead of "
                        "dynamic-range quantization")
    if ctx.name == "DEQUANTIZE" and any(t.type == "FLOAT16" for t in ctx.inputs if t):
        return _finding(ctx, "blocker", "",
                        "float16 weights: TFLM's DEQUANTIZE takes integer inputs only",
                        "convert with tfedge.converters.to_int8 instead of to_float16")
    names = ", ".join(f"{t.name!r} {t.type}" for t in floats)
    if not integer_model:
        return _finding(ctx, "reference", "TFLM reference (float)",
                        f"float model ({names}): TFLM runs float ops on its portable kernels; "
                        "its CMSIS-NN kernels are integer only",
                        "convert with tfedge.converters.to_int8 for CMSIS-NN int8 kernels and "
                        "weights a quarter the size")
    boundary_in = (ctx.name == "QUANTIZE" and ctx.data is not None
                   and ctx.data.index in graph_inputs)
    boundary_out = ctx.name == "DEQUANTIZE" and all(t.index in graph_outputs
                                                    for t in ctx.outputs)
    if boundary_in or boundary_out:
        side = "input" if boundary_in else "output"
        return _finding(ctx, "reference", "TFLM reference",
                        f"float model {side} converted at the graph boundary ({names}); TFLM "
                        "runs it, but the firmware then passes float data",
                        "convert with tfedge.converters.to_int8 for int8 input and output")
    if ctx.name in ("QUANTIZE", "DEQUANTIZE"):
        way = "from float back to int8" if ctx.name == "QUANTIZE" else "from int8 to float"
        return _finding(ctx, "blocker", "",
                        f"{ctx.name} {way} inside an int8 model ({names}): it exists for a "
                        "float op next to it",
                        f"{_FIX_INT8}; the float op next to it is the layer to replace")
    return _finding(ctx, "blocker", "",
                    f"float op in an int8 model ({names}): it runs on float reference kernels "
                    "with float tensors in the arena, between DEQUANTIZE/QUANTIZE pairs",
                    f"{_FIX_INT8}; if it refuses the model, replace the layer that makes this "
                    f"{ctx.name} (a Lambda or an op without an int8 kernel)")


# --------------------------------------------------------------------------------------------
# CMSIS-NN rules: which kernel runs, or why the op falls back. Each returns
# (status, kernel, reason, fix).


def _same_padding(size, filter_size, stride, dilation, out_size, padding):
    """TFLite's padding before the first element (kernels/padding.h ComputePaddingWithOffset)."""
    if padding != "SAME":
        return 0
    effective = (filter_size - 1) * dilation + 1
    return max((out_size - 1) * stride + effective - size, 0) // 2


def _conv_rule(ctx: _Op, kernel: str):
    if ctx.act_type == "INT16":
        return "optimized", kernel, "", ""
    data, weights, out = ctx.data, ctx.input(1), ctx.outputs[0]
    if weights is not None and weights.type == "INT4":
        return "optimized", "arm_convolve_wrapper_s4", "", ""
    o = ctx.options
    if len(data.shape) != 4 or weights is None or len(weights.shape) != 4 or len(out.shape) != 4:
        return "optimized", kernel, "", ""
    kh, kw = weights.shape[1:3]
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    dh, dw = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
    pad = o.get("padding", "VALID")
    ph = _same_padding(data.shape[1], kh, sh, dh, out.shape[1], pad)
    pw = _same_padding(data.shape[2], kw, sw, dw, out.shape[2], pad)
    # arm_convolve_wrapper_s8's dispatch.
    if ph == 0 and pw == 0 and kh == 1 and kw == 1 and dh == 1 and dw == 1:
        path = "arm_convolve_1x1_s8_fast" if sh == 1 and sw == 1 else "arm_convolve_1x1_s8"
    elif data.shape[1] == 1 and out.shape[2] % 4 == 0 and dw == 1 and kh == 1:
        path = "arm_convolve_1_x_n_s8"
    else:
        path = "arm_convolve_s8"
    return "optimized", f"{kernel} -> {path}", "", ""


def _depthwise_rule(ctx: _Op, kernel: str):
    data, weights, out = ctx.data, ctx.input(1), ctx.outputs[0]
    if ctx.act_type == "INT16" or len(data.shape) != 4 or len(out.shape) != 4:
        return "optimized", kernel, "", ""
    in_c, out_c = data.shape[3], out.shape[3]
    multiplier = out_c // in_c if in_c > 0 else ctx.options.get("depth_multiplier", 1)
    o = ctx.options
    dh, dw = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
    mve = TARGET_EXTENSIONS[ctx.target] == "MVE"
    if weights is not None and weights.type == "INT4":
        # TFLM calls CMSIS-NN's s4 wrapper; its internal choice is not modelled here.
        return "optimized", "arm_depthwise_conv_wrapper_s4", "", ""
    if mve and in_c == 1 and out_c > CMSIS_NN_MVE_DW_TO_CONV_CHANNELS:
        return ("optimized", f"{kernel} -> arm_depthwise_conv_to_conv_s8 -> "
                "arm_convolve_wrapper_s8", "", "")
    if multiplier == 1 and data.shape[0] == 1 and dh == 1 and dw == 1:
        path = "arm_depthwise_conv_s8_opt"
        if not mve and weights is not None and len(weights.shape) == 4 \
                and weights.shape[1:3] == (3, 3):
            sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
            pad = o.get("padding", "VALID")
            ph = _same_padding(data.shape[1], 3, sh, 1, out.shape[1], pad)
            pw = _same_padding(data.shape[2], 3, sw, 1, out.shape[2], pad)
            if ph <= 1 and pw <= 1:
                path = "arm_depthwise_conv_3x3_s8"
        return "optimized", f"{kernel} -> {path}", "", ""
    causes = []
    if multiplier != 1:
        causes.append(f"depth multiplier {multiplier}")
    if dh != 1 or dw != 1:
        causes.append(f"dilation {dh}x{dw}")
    if data.shape[0] != 1:
        causes.append(f"batch {data.shape[0]}")
    reason = (f"{' and '.join(causes)}: CMSIS-NN runs its generic arm_depthwise_conv_s8 loop, "
              "without DSP/MVE code (\"Optimization using DSP extension is not available for "
              "the generic case where channel multiplier is > 1\")")
    fix = ("use depth multiplier 1 (a DepthwiseConv2D, then a 1x1 Conv2D to widen the channels)"
           if multiplier != 1 else "use dilation 1 and batch 1")
    if mve and in_c == 1 and 1 < out_c <= CMSIS_NN_MVE_DW_TO_CONV_CHANNELS:
        reason += (f"; with GCC, CMSIS-NN on MVE turns it into a convolution (threshold 1 "
                   f"channel; armclang: {CMSIS_NN_MVE_DW_TO_CONV_CHANNELS})")
    return "reference", f"{kernel} -> arm_depthwise_conv_s8", reason, fix


def _fully_connected_rule(ctx: _Op, kernel: str):
    if ctx.act_type == "INT16":
        return "optimized", kernel, "", ""
    weights, out = ctx.input(1), ctx.outputs[0]
    if weights is not None and weights.type == "INT4":
        return "optimized", "arm_fully_connected_s4", "", ""
    if weights is not None and weights.shape and len(out.shape) > 2 \
            and weights.shape[-1] % 4 == 0:
        return "optimized", "arm_convolve_1x1_s8_fast", "", ""
    return "optimized", kernel, "", ""


def _broadcast_rule(ctx: _Op, kernel: str):
    a, b = ctx.input(0), ctx.input(1)
    if a is None or b is None:
        return "optimized", kernel, "", ""
    rank = max(len(a.shape), len(b.shape))
    sa = (1,) * (rank - len(a.shape)) + a.shape
    sb = (1,) * (rank - len(b.shape)) + b.shape
    if sa == sb:
        return "optimized", kernel, "", ""
    fn = "BroadcastAdd4DSlow" if ctx.name == "ADD" else "BroadcastMul4DSlow"
    return ("reference", f"TFLM reference_integer_ops::{fn}",
            f"broadcast {ctx.name} of {list(a.shape)} and {list(b.shape)}: TFLM's CMSIS-NN "
            f"{ctx.name} calls {kernel} only for inputs of the same shape", "")


def _softmax_rule(ctx: _Op, kernel: str):
    if ctx.act_type == "INT8" and ctx.outputs and ctx.outputs[0].type == "INT16":
        return "optimized", "arm_softmax_s8_s16", "", ""
    return "optimized", kernel, "", ""


def _transpose_rule(ctx: _Op, kernel: str):
    rank = len(ctx.data.shape)
    if rank > CMSIS_NN_TRANSPOSE_MAX_DIMS:
        return ("blocker", "",
                f"{rank}-D TRANSPOSE: TFLM's CMSIS-NN int8 TRANSPOSE takes at most "
                f"{CMSIS_NN_TRANSPOSE_MAX_DIMS} dims (TF_LITE_ENSURE(context, size <= 4) fails "
                "when the model is invoked); only a build without CMSIS-NN runs it",
                "reshape to at most 4 dims before the transpose (tfedge's ChannelShuffle does)")
    return "optimized", kernel, "", ""


def _plain_rule(ctx: _Op, kernel: str):
    return "optimized", kernel, "", ""


# op -> rule for the ops with a CMSIS-NN kernel (see CMSIS_NN_KERNELS for the types).
_CMSIS_NN_RULES = {
    "CONV_2D": _conv_rule,
    "DEPTHWISE_CONV_2D": _depthwise_rule,
    "FULLY_CONNECTED": _fully_connected_rule,
    "ADD": _broadcast_rule,
    "MUL": _broadcast_rule,
    "SOFTMAX": _softmax_rule,
    "TRANSPOSE": _transpose_rule,
}


def _kernel_finding(ctx: _Op):
    if ctx.target == "generic":
        return _finding(ctx, "reference", "TFLM reference",
                        "generic target: TFLM without CMSIS-NN runs every op on its portable "
                        "reference kernels")
    kernels = CMSIS_NN_KERNELS.get(ctx.name)
    act = ctx.act_type
    if kernels is None:
        reason, fix = REFERENCE_NOTES.get(ctx.name, (
            f"TFLM has no CMSIS-NN {ctx.name} (tensorflow/lite/micro/kernels/cmsis_nn/ holds "
            "none); its portable kernel runs it", ""))
        return _finding(ctx, "reference", "TFLM reference", reason, fix)
    kernel = kernels.get(act)
    if kernel is None:
        types = " and ".join(t.lower() for t in kernels)
        return _finding(ctx, "reference", "TFLM reference",
                        f"{act} {ctx.name}: TFLM's CMSIS-NN {ctx.name} covers {types} only "
                        f"({CMSIS_NN_SOURCES[ctx.name]}); {act} runs on the portable kernel",
                        "")
    status, kernel, reason, fix = _CMSIS_NN_RULES.get(ctx.name, _plain_rule)(ctx, kernel)
    return _finding(ctx, status, kernel, reason, fix)


# --------------------------------------------------------------------------------------------


def lint(tflite, target: str = "cortex-m4") -> LintReport:
    """Says how TFLM with CMSIS-NN kernels would run each op of subgraph 0 on `target`.

    `tflite` is the model's bytes (bytes, bytearray, memoryview) or a path to a `.tflite` file;
    `target` one of TARGETS. Raises ValueError for an unknown target and TFLiteFormatError (a
    ValueError) for bytes that are not a TFLite flatbuffer. The result is deterministic.
    """
    _check_choice("target", target, TARGETS)
    if not isinstance(tflite, (bytes, bytearray, memoryview, str, os.PathLike)):
        raise TypeError("lint() expects the .tflite bytes or a path to a .tflite file. "
                        f"Received: {type(tflite).__module__}.{type(tflite).__qualname__}")
    model = tflite_reader.read_tflite(tflite)
    if not model.subgraphs:
        raise tflite_reader.TFLiteFormatError(
            "the model has no subgraphs, so there are no ops to lint")
    graph = model.subgraphs[0]
    constant = [model.buffers[t.buffer].size > 0 for t in graph.tensors]
    integer_model = any(t.type_name in ("INT8", "INT16") and not constant[t.index]
                        for t in graph.tensors)
    graph_inputs, graph_outputs = set(graph.inputs), set(graph.outputs)
    dynamic_values: dict[int, int] = {}  # tensor -> SHAPE op its value derives from
    findings = []
    for op in graph.operators:
        tensors = [graph.tensors[i] if i >= 0 else None for i in op.inputs + op.outputs]
        ctx = _Op(op=op, code=model.operator_codes[op.opcode_index],
                  inputs=tuple(_tensor_info(model, graph, i) for i in op.inputs),
                  outputs=tuple(_tensor_info(model, graph, i) for i in op.outputs),
                  signatures=tuple(t.shape_signature if t is not None else None
                                   for t in tensors),
                  target=target)
        finding = (_size_blocker(ctx, tensors) or _custom_blocker(ctx)
                   or _missing_op_blocker(ctx)
                   or _dynamic_shape_blocker(ctx, dynamic_values) or _dynamic_blocker(ctx)
                   or _structure_blocker(ctx) or _transpose_rank_blocker(ctx)
                   or _float_finding(ctx, integer_model, graph_inputs, graph_outputs)
                   or _type_blocker(ctx) or _kernel_finding(ctx))
        if finding.status == "blocker" and (op.name == "SHAPE" or any(
                t is not None and t.index in dynamic_values for t in ctx.inputs)):
            source = op.index if op.name == "SHAPE" else next(
                dynamic_values[t.index] for t in ctx.inputs
                if t is not None and t.index in dynamic_values)
            for out in op.outputs:
                dynamic_values[out] = source
        findings.append(finding)
    return LintReport(target=target, findings=tuple(findings))
