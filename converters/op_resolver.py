"""`.tflite` bytes -> `op_resolver.h`: a TFLM op resolver that registers exactly the model's ops.

    text = op_resolver.op_resolver_source(tflite_bytes, int8_kernels=True)

The header defines `using OpResolver = tflite::MicroMutableOpResolver<N>;` (N = the number of
distinct ops) and `inline TfLiteStatus RegisterOps(OpResolver& resolver)`, which calls one
`AddXxx()` per op, in alphabetical order of the TFLite op names, and returns the first error:

    static OpResolver resolver;
    if (RegisterOps(resolver) != kTfLiteOk) { ... }

With `int8_kernels=True`, ops that TFLM has an int8-only registration for, and that are int8
everywhere in the model, register it: `resolver.AddConv2D(tflite::Register_CONV_2D_INT8())`.
Built with TFLM's `OPTIMIZED_KERNEL_DIR=cmsis_nn` those are CMSIS-NN's int8 kernels, which
link only int8 code (smaller firmware, no type dispatch); in other builds TFLM's headers define
them as the generic registration, so the header works everywhere.

TFLM facts this module relies on (tensorflow/tflite-micro, 2024-2025 sources):

- `tensorflow/lite/micro/micro_mutable_op_resolver.h`: `template <unsigned int tOpCount> class
  MicroMutableOpResolver` and its `AddXxx` methods (`ADD_METHODS`, `CUSTOM_ADD_METHODS`). Each
  builtin one takes an optional `const TFLMRegistration&` (default: the generic
  `Register_XXX()`), except `AddResizeNearestNeighbor()`. Custom ops count towards `tOpCount`
  like builtins. Registering one op twice, or more than `tOpCount` ops, is an error.
- The int8-only registrations (`INT8_KERNELS`) are declared in the kernel headers named there
  (`tensorflow/lite/micro/kernels/conv.h` etc.): under `#if defined(CMSIS_NN)` as functions
  that `kernels/cmsis_nn/*.cc` define, otherwise as inline functions returning the generic
  registration. Some live in namespace `tflite::micro` with a `using` in `tflite`; all are
  reachable as `tflite::Register_XXX_INT8()`.
- TFLM's Makefile adds `-D$(OPTIMIZED_KERNEL_DIR)` upper-cased, so `OPTIMIZED_KERNEL_DIR=cmsis_nn`
  defines `CMSIS_NN` (`tensorflow/lite/micro/tools/make/Makefile`).

`cmsis_nn/maximum_minimum.cc` also defines `Register_MAXIMUM_INT8`/`Register_MINIMUM_INT8`, but
`kernels/maximum_minimum.h` declares neither (no fallback for other builds), so they are not
used here.
"""

import collections
import dataclasses

from tfedge.converters import c_array, c_text, tflite_reader

# TFLite builtin op -> MicroMutableOpResolver method, as spelled in TFLM's
# tensorflow/lite/micro/micro_mutable_op_resolver.h. AddDynamicUpdateSlice and AddReduceAll are
# the newest (the tflite-micro package's interpreter links Register_DYNAMIC_UPDATE_SLICE and
# Register_REDUCE_ALL); an older TFLM checkout may lack them.
ADD_METHODS = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MAXIMUM": "AddMaximum",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}

# Custom op code (as the converter writes it into the model) -> the MicroMutableOpResolver
# method that registers TFLM's kernel for it (micro_mutable_op_resolver.h; "ethos-u" is what
# kernels/ethos_u/ethosu.cc's GetString_ETHOSU() returns; "TFLM_DECODE" is the op TFLM's
# compression tool inserts, tensorflow/lite/micro/compression/decode_insert.py, registered by
# the newest resolvers' AddDecode()).
CUSTOM_ADD_METHODS = {
    "CIRCULAR_BUFFER": "AddCircularBuffer",
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "TFLM_DECODE": "AddDecode",
    "ethos-u": "AddEthosU",
    "SignalDelay": "AddDelay",
    "SignalEnergy": "AddEnergy",
    "SignalFftAutoScale": "AddFftAutoScale",
    "SignalFilterBank": "AddFilterBank",
    "SignalFilterBankLog": "AddFilterBankLog",
    "SignalFilterBankSpectralSubtraction": "AddFilterBankSpectralSubtraction",
    "SignalFilterBankSquareRoot": "AddFilterBankSquareRoot",
    "SignalFramer": "AddFramer",
    "SignalIrfft": "AddIrfft",
    "SignalOverlapAdd": "AddOverlapAdd",
    "SignalPCAN": "AddPCAN",
    "SignalRfft": "AddRfft",
    "SignalStacker": "AddStacker",
    "SignalWindow": "AddWindow",
}


class Int8Kernel(collections.namedtuple("Int8Kernel", "registration header tensors")):
    """An int8-only TFLM registration: the `tflite::` function, the kernel header declaring it,
    and the op's input positions that must hold int8 tensors (activations and weights; the
    first output must be int8 too)."""


_KERNELS = "tensorflow/lite/micro/kernels/"
INT8_KERNELS = {
    "ADD": Int8Kernel("Register_ADD_INT8", _KERNELS + "add.h", (0, 1)),
    "AVERAGE_POOL_2D": Int8Kernel("Register_AVERAGE_POOL_2D_INT8", _KERNELS + "pooling.h", (0,)),
    "BATCH_MATMUL": Int8Kernel("Register_BATCH_MATMUL_INT8", _KERNELS + "batch_matmul.h",
                               (0, 1)),
    "CONV_2D": Int8Kernel("Register_CONV_2D_INT8", _KERNELS + "conv.h", (0, 1)),
    "DEPTHWISE_CONV_2D": Int8Kernel("Register_DEPTHWISE_CONV_2D_INT8",
                                    _KERNELS + "depthwise_conv.h", (0, 1)),
    "FULLY_CONNECTED": Int8Kernel("Register_FULLY_CONNECTED_INT8",
                                  _KERNELS + "fully_connected.h", (0, 1)),
    "MAX_POOL_2D": Int8Kernel("Register_MAX_POOL_2D_INT8", _KERNELS + "pooling.h", (0,)),
    "MUL": Int8Kernel("Register_MUL_INT8", _KERNELS + "mul.h", (0, 1)),
    "PAD": Int8Kernel("Register_PAD_INT8", _KERNELS + "pad.h", (0,)),
    "SOFTMAX": Int8Kernel("Register_SOFTMAX_INT8", _KERNELS + "softmax.h", (0,)),
    "SVDF": Int8Kernel("Register_SVDF_INT8", _KERNELS + "svdf.h", (0, 1)),
    "TRANSPOSE": Int8Kernel("Register_TRANSPOSE_INT8", _KERNELS + "transpose.h", (0,)),
    # TRANSPOSE_CONV's inputs are (output shape, weights, input, bias).
    "TRANSPOSE_CONV": Int8Kernel("Register_TRANSPOSE_CONV_INT8", _KERNELS + "transpose_conv.h",
                                 (2, 1)),
    # Input 2 is input_to_forget_weights, the one weight every LSTM variant has.
    "UNIDIRECTIONAL_SEQUENCE_LSTM": Int8Kernel("Register_UNIDIRECTIONAL_SEQUENCE_LSTM_INT8",
                                               _KERNELS + "unidirectional_sequence_lstm.h",
                                               (0, 2)),
}
RESOLVER_HEADER = "tensorflow/lite/micro/micro_mutable_op_resolver.h"


class UnsupportedOpError(ValueError):
    """The model has an op that TFLM's MicroMutableOpResolver cannot register."""


@dataclasses.dataclass(frozen=True)
class Registration:
    """One line of the generated `RegisterOps`: `resolver.<method>(<kernel>)`.

    `op` is the TFLite op name (the custom code for custom ops), `count` how many times the model
    uses it, `kernel` the int8 registration function (e.g. "Register_CONV_2D_INT8") or None for
    TFLM's default one, and `header` the kernel header that declares `kernel`.
    """

    op: str
    method: str
    count: int
    kernel: str | None = None
    header: str | None = None
    custom: bool = False

    @property
    def call(self):
        argument = f"tflite::{self.kernel}()" if self.kernel else ""
        return f"{self.method}({argument})"


def _int8_everywhere(uses, kernel):
    """True when every use of the op has int8 tensors where `kernel` needs them."""
    for subgraph, op in uses:
        positions = [op.inputs[i] if i < len(op.inputs) else -1 for i in kernel.tensors]
        positions.append(op.outputs[0] if op.outputs else -1)
        if any(t < 0 or subgraph.tensors[t].type_name != "INT8" for t in positions):
            return False
    return True


def registrations(tflite_bytes, *, int8_kernels=False, default_kernels=()):
    """The model's distinct ops as `Registration`s, in alphabetical order of op name.

    Ops of every subgraph count (IF/WHILE bodies too). `default_kernels`: op names registered
    with TFLM's default kernel even where `int8_kernels` would pick an int8-only one (e.g. an
    op `tfedge lint` says that kernel cannot run). Raises `UnsupportedOpError` naming each op
    TFLM's resolver cannot register, and `TFLiteFormatError` for bytes that are no `.tflite`.
    """
    if isinstance(default_kernels, (str, bytes)):
        raise ValueError("`default_kernels` must be a collection of op names, e.g. "
                         f"('TRANSPOSE',). Received: default_kernels={default_kernels!r}")
    default_kernels = frozenset(default_kernels)
    model = tflite_reader.read_tflite(tflite_bytes)
    uses = collections.defaultdict(list)  # (custom?, name) -> [(subgraph, op)]
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operator_codes[op.opcode_index]
            custom = code.builtin_code == tflite_reader.CUSTOM_CODE
            name = (code.custom_code or "") if custom else code.name
            uses[(custom, name)].append((subgraph, op))
    missing = []
    for (custom, name), where in sorted(uses.items()):
        table = CUSTOM_ADD_METHODS if custom else ADD_METHODS
        if name not in table:
            subgraph, op = where[0]
            kind = "custom op" if custom else "op"
            missing.append(f"{kind} {name!r} (used {len(where)} time(s), first as op "
                           f"#{op.index} of subgraph {subgraph.index})")
    if missing:
        raise UnsupportedOpError(
            f"TFLM's MicroMutableOpResolver has no Add method for {'; '.join(missing)}, so TFLM "
            "cannot run this model as it is. Fix: rebuild the model without the layer that "
            "converts to it (see `tfedge lint` for what TFLM runs), or write a TFLM kernel "
            "for it and register it with resolver.AddCustom(); "
            f"ops TFLM can register: tfedge.converters.op_resolver.ADD_METHODS")
    result = []
    for (custom, name), where in sorted(uses.items(), key=lambda item: item[0][1]):
        method = (CUSTOM_ADD_METHODS if custom else ADD_METHODS)[name]
        kernel = (None if custom or not int8_kernels or name in default_kernels
                  else INT8_KERNELS.get(name))
        if kernel is not None and _int8_everywhere(where, kernel):
            result.append(Registration(name, method, len(where), kernel.registration,
                                       kernel.header))
        else:
            result.append(Registration(name, method, len(where), custom=custom))
    return result


def op_resolver_source(tflite_bytes, *, int8_kernels=False, name="OpResolver",
                       function="RegisterOps", header_name="op_resolver.h", namespace=None,
                       default_kernels=()):
    """Returns the text of `op_resolver.h` for the model (see the module docstring).

    `name` is the resolver type alias, `function` the registering function, `namespace`
    ("a" or "a::b") the C++ namespace around both, `header_name` the file name the include
    guard is made from, `default_kernels` as in `registrations`. Deterministic: the same model
    and options give the same text. Op names from the model reach the text only through
    `c_text.comment`.
    """
    c_array.check_identifier(name, "name")
    c_array.check_identifier(function, "function")
    if name == function:
        raise ValueError(f"`name` and `function` must differ (one is a type, the other a "
                         f"function). Received: name={name!r}, function={function!r}")
    c_array.check_header_name(header_name)
    parts = c_array.namespace_parts(namespace)
    entries = registrations(tflite_bytes, int8_kernels=int8_kernels,
                            default_kernels=default_kernels)
    if not entries:
        raise ValueError("the model has no operators, so there is nothing for TFLM to run (and "
                         "a MicroMutableOpResolver<0> does not compile); the file is damaged or "
                         "empty: convert the model again")
    guard = c_array.include_guard(header_name)
    headers = sorted({e.header for e in entries if e.header})
    lines = [
        "// Generated by tfedge. Do not edit.",
        f"// The TFLM op resolver of the model: its {len(entries)} distinct ops, registered by "
        f"{function}().",
    ]
    if headers:
        lines += [
            "// tflite::Register_*_INT8() are CMSIS-NN's int8-only kernels when TFLM is built with",
            "// OPTIMIZED_KERNEL_DIR=cmsis_nn (which defines CMSIS_NN); other builds get the",
            "// reference kernels from them.",
        ]
    lines += [f"#ifndef {guard}", f"#define {guard}", "", f'#include "{RESOLVER_HEADER}"']
    lines += [f'#include "{h}"' for h in headers]
    text = "\n".join(lines) + "\n\n" + c_array.open_namespace(parts)
    calls = [f"resolver.{e.call}," for e in entries]
    width = max(len(c) for c in calls)
    notes = [f"{c_text.comment(e.op)}{' (custom)' if e.custom else ''}, "
             f"{e.count} use{'s' if e.count > 1 else ''}" for e in entries]
    body = [
        f"using {name} = tflite::MicroMutableOpResolver<{len(entries)}>;",
        "",
        "// Adds every op of the model to `resolver`: kTfLiteOk, or kTfLiteError if any could not",
        "// be added (TFLM prints why).",
        f"inline TfLiteStatus {function}({name}& resolver) {{",
        "  const TfLiteStatus added[] = {",
        *(f"      {call.ljust(width)}  // {note}" for call, note in zip(calls, notes)),
        "  };",
        "  for (TfLiteStatus status : added) {",
        "    if (status != kTfLiteOk) return kTfLiteError;",
        "  }",
        "  return kTfLiteOk;",
        "}",
    ]
    text += "\n".join(body) + "\n" + c_array.close_namespace(parts)
    return text + f"\n#endif  // {guard}\n"
