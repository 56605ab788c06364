"""Quantization parameters for the int8 C runtime, computed exactly as TFLite's Prepare code does.

The kernels in `runtime/tfedge_kernels.h` use no floating point: every multiplier, shift,
clamp and table is computed here, ahead of time, with the same arithmetic as the LiteRT
reference kernels (float32 where TFLite computes in float, double where it computes in double).
Pure Python and numpy; scales and zero points are plain numbers or arrays::

    from tfedge.microcontroller import quant
    p = quant.conv2d(input_shape=(1, 32, 32, 8), filter_shape=(16, 3, 3, 8),
                     output_shape=(1, 32, 32, 16), strides=(1, 1), padding="SAME",
                     input_scale=0.02, input_zero_point=-3, filter_scales=w_scales,
                     output_scale=0.05, output_zero_point=4, activation="RELU6")
    p.struct     # "tfedge_conv_params"
    p.fields     # {"batches": 1, "input_h": 32, ...}: the C struct initializer, in order
    p.arrays     # {"multiplier": int32 array, "shift": int32 array}
    p.scratch_bytes   # == tfedge_conv2d_s8_scratch_bytes(&params)

Each op function returns a `KernelParams`; its `fields` are the struct's fields in declaration
order (lists for array fields) and its `arrays` the per-channel tables the kernel takes by
pointer. The docstrings name the TFLite function each mirrors.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = [
    "KernelParams", "ROUND_GEMMLOWP", "ROUND_DOUBLE", "MAX_DIMS", "MEAN_DIMS",
    "quantize_multiplier", "quantize_multiplier_smaller_than_one_exp",
    "quantize_multiplier_greater_than_one", "downscale_int32_to_int16_multiplier",
    "calculate_input_radius", "preprocess_softmax_scaling", "activation_range",
    "compute_padding", "double_scale", "conv_per_channel_multipliers", "conv2d",
    "depthwise_conv2d", "fully_connected", "broadcast", "add", "mul", "pool2d", "mean",
    "softmax", "hard_swish", "hard_swish_lut", "logistic_lut", "requantize",
    "concatenation", "split", "transpose", "pad",
]

ROUND_GEMMLOWP = 0  # TFEDGE_ROUND_GEMMLOWP
ROUND_DOUBLE = 1    # TFEDGE_ROUND_DOUBLE
MAX_DIMS = 6        # TFEDGE_MAX_DIMS
MEAN_DIMS = 4       # TFEDGE_MEAN_DIMS

_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


@dataclasses.dataclass(frozen=True)
class KernelParams:
    """What one kernel call needs: a struct initializer, pointer tables and scratch size."""

    struct: str
    fields: dict
    arrays: dict = dataclasses.field(default_factory=dict)
    scratch_bytes: int = 0


def _f32(x):
    return np.float32(x)


def _round_half_away(x):
    """TfLiteRound / std::round on a float or double value (returns a Python int)."""
    x = float(x)
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


# ---------------------------------------------------------------------------------------------
# tflite/kernels/internal/quantization_util.cc
# ---------------------------------------------------------------------------------------------

def quantize_multiplier(real):
    """(quantized_multiplier, shift) with real ~ multiplier * 2^(shift - 31), as
    tflite::QuantizeMultiplier: frexp, round half away from zero to 31 bits, a significand that
    rounds up to 2^31 halves and bumps the shift, and shifts below -31 flush to zero.
    """
    real = float(real)
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed > (1 << 31):
        raise ValueError(f"quantize_multiplier: significand overflow for real={real!r}")
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def quantize_multiplier_smaller_than_one_exp(real):
    """tflite::QuantizeMultiplierSmallerThanOneExp: as quantize_multiplier, for 0 <= real < 1."""
    if not 0.0 <= float(real) < 1.0:
        raise ValueError(f"the multiplier must be in [0, 1). Received: real={real!r}")
    multiplier, shift = quantize_multiplier(real)
    if shift > 0:
        raise ValueError(f"the multiplier must be in [0, 1). Received: real={real!r}")
    return multiplier, shift


def quantize_multiplier_greater_than_one(real):
    """tflite::QuantizeMultiplierGreaterThanOne: as quantize_multiplier, for real > 1."""
    if not float(real) > 1.0:
        raise ValueError(f"the multiplier must be > 1. Received: real={real!r}")
    return quantize_multiplier(real)


def downscale_int32_to_int16_multiplier(multiplier):
    """tflite::DownScaleInt32ToInt16Multiplier: rounds a Q31 multiplier to Q15."""
    multiplier = int(multiplier)
    if multiplier < 0:
        raise ValueError(f"the multiplier must be >= 0. Received: multiplier={multiplier}")
    if multiplier >= (2**31 - 1) - (1 << 15):
        return 32767
    return (multiplier + (1 << 15)) >> 16


def calculate_input_radius(input_integer_bits, input_left_shift, total_signed_bits=31):
    """tflite::CalculateInputRadius (the double version)."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1)
                          * float(1 << (total_signed_bits - input_integer_bits))
                          / float(1 << input_left_shift))
    return int(math.floor(max_input_rescaled))


def preprocess_softmax_scaling(beta, input_scale, input_integer_bits):
    """tflite::PreprocessSoftmaxScaling (double rounding build): (multiplier, left_shift) for
    beta * input_scale * 2^(31 - input_integer_bits), capped at 2^31 - 1."""
    real = min(float(beta) * float(input_scale) * float(1 << (31 - input_integer_bits)),
               float((1 << 31) - 1))
    return quantize_multiplier_greater_than_one(real)


# ---------------------------------------------------------------------------------------------
# tflite/kernels/kernel_util.cc, padding.h
# ---------------------------------------------------------------------------------------------

def activation_range(activation, scale, zero_point, dtype="int8"):
    """(act_min, act_max) as tflite::CalculateActivationRangeQuantized: the float bounds of the
    fused activation quantized in float32 (f / scale, rounded half away from zero)."""
    if activation is None:
        activation = "NONE"
    activation = str(activation).upper()
    if activation not in _ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {_ACTIVATIONS}. "
                         f"Received: activation={activation!r}")
    if dtype not in _INT_RANGES:
        raise ValueError(f"`dtype` must be one of {tuple(_INT_RANGES)}. Received: dtype={dtype!r}")
    qmin, qmax = _INT_RANGES[dtype]

    def q(f):
        return int(zero_point) + _round_half_away(_f32(f) / _f32(scale))

    if activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    return qmin, qmax


def compute_padding(in_size, filter_size, stride, dilation, padding):
    """(pad_before, out_size) for one spatial dimension, as tflite::ComputeOutSize and
    ComputePaddingHeightWidth ("SAME" or "VALID")."""
    padding = str(padding).upper()
    effective = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        out_size = (in_size + stride - 1) // stride
    elif padding == "VALID":
        out_size = (in_size + stride - effective) // stride
    else:
        raise ValueError(f"`padding` must be 'SAME' or 'VALID'. Received: padding={padding!r}")
    total = max(0, (out_size - 1) * stride + effective - in_size)
    return total // 2, out_size


def double_scale(scale):
    """(mant_lo, mant_hi, exponent) with scale == mant * 2^exponent exactly (mant < 2^53), the
    split of a double that TFEDGE_ROUND_DOUBLE takes; mant_lo/mant_hi as int32 bit patterns."""
    scale = float(scale)
    if scale == 0.0:
        return 0, 0, 0
    if not (scale > 0.0 and math.isfinite(scale)):
        raise ValueError(f"the scale must be positive and finite. Received: scale={scale!r}")
    m, e = math.frexp(scale)
    mant = int(m * (1 << 53))
    lo, hi = mant & 0xFFFFFFFF, mant >> 32
    return int(np.uint32(lo).view(np.int32)), int(hi), int(e - 53)


# ---------------------------------------------------------------------------------------------
# Convolutions and fully connected
# ---------------------------------------------------------------------------------------------

def _scales(scales, n, what):
    scales = np.atleast_1d(np.asarray(scales, dtype=np.float32))
    if scales.size == 1:
        scales = np.repeat(scales, n)
    if scales.size != n:
        raise ValueError(f"`{what}` must hold 1 or {n} scales. Received: {scales.size}")
    return scales


def conv_per_channel_multipliers(input_scale, filter_scales, output_scale):
    """Per-channel (multiplier, shift) int32 arrays as tflite::PopulateConvolutionQuantizationParams:
    QuantizeMultiplier(double(input_scale) * double(filter_scale[c]) / double(output_scale))."""
    filter_scales = np.atleast_1d(np.asarray(filter_scales, dtype=np.float32))
    mults, shifts = [], []
    for s in filter_scales:
        m, sh = quantize_multiplier(float(_f32(input_scale)) * float(s) / float(_f32(output_scale)))
        mults.append(m)
        shifts.append(sh)
    return np.asarray(mults, dtype=np.int32), np.asarray(shifts, dtype=np.int32)


def _pair(value, name):
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"`{name}` must be an int or (h, w). Received: {name}={value!r}")
    return value


def _check_shape(shape, rank, name):
    shape = tuple(int(d) for d in shape)
    if len(shape) != rank:
        raise ValueError(f"`{name}` must have {rank} dimensions. Received: {name}={shape}")
    return shape


def _conv_window(input_hw, filter_hw, output_hw, strides, dilation, padding, output_shape):
    """(stride_h, stride_w, dilation_h, dilation_w, pad_h, pad_w) of a convolution, its output
    size checked against the one the padding gives."""
    sh, sw = _pair(strides, "strides")
    dh, dw = _pair(dilation, "dilation")
    pad_h, out_h = compute_padding(input_hw[0], filter_hw[0], sh, dh, padding)
    pad_w, out_w = compute_padding(input_hw[1], filter_hw[1], sw, dw, padding)
    if (out_h, out_w) != tuple(output_hw):
        raise ValueError(f"output_shape {output_shape} does not match padding={padding!r}: "
                         f"expected {out_h}x{out_w}")
    return sh, sw, dh, dw, pad_h, pad_w


def _round4(n):
    return (n + 3) // 4 * 4


def _conv_scratch_bytes(k, filter_c, output_c, groups, pixels):
    """tfedge_conv2d_s8_scratch_bytes: two int16 columns of K rounded up to 4 values, the
    requantization tables, the padding bytes; for filter_c not a multiple of 4 two byte staging
    rows; the filter sign-extended to int16 (for 2 pixels or more, up to 16 KB), else for K not a
    multiple of 4 a padded copy of the filter (up to 2048 bytes, else of its last 4 rows)."""
    k4 = _round4(k)
    n = 4 * k4 + 16 * output_c + 64 * groups + _round4(filter_c)
    if filter_c % 4:
        n += 2 * (k4 + 4)
    per_group = output_c // groups
    ext = groups * ((per_group + 1) // 2) * 4 * k4
    if pixels >= 2 and per_group >= 2 and ext <= 16384:
        n += ext
    elif k != k4:
        rows = output_c if output_c * k <= 2048 else min(output_c, 4)
        n += _round4(rows * k + 4)
    return n


def _depthwise_scratch_bytes(channels, taps):
    """tfedge_depthwise_conv2d_s8_scratch_bytes: the weight stream (16 + 2 * taps bytes per
    channel, rounded up to 8), two tap lists of 8-byte entries, the padding bytes."""
    stream = (channels * (16 + 2 * taps) + 7) // 8 * 8
    return stream + 16 * taps + _round4(channels)


_TAP_BOUND = 255 * 128  # TFEDGE_TAP_BOUND: the largest |(x + input_offset) * w| of a tap


def _i32(value):
    """The int32 that the low 32 bits of an integer are (two's complement)."""
    value = int(value) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _pack16(lo, hi):
    """tfedge_pack16: two int16 lanes in one int32 word."""
    return _i32((int(lo) & 0xFFFF) | ((int(hi) & 0xFFFF) << 16))


def _rqd(multiplier, shift, offset, bias, taps):
    """(m, k, e) of the DSP kernels' doubled-accumulator requantization of one channel, as
    tfedge_rqd_prepare computes it, or None where that form is not exact (right shifts of 1 to 22
    and accumulators below 2^30: |bias| + taps * 255 * 128)."""
    e = -int(shift)
    bound = min(abs(int(bias)) + int(taps) * _TAP_BOUND, 0xFFFFFFFF)
    if int(multiplier) < 0 or not 1 <= e <= 22 or bound >= 1 << 30 or not -128 <= offset <= 128:
        return None
    return [int(multiplier), _i32((1 << (e - 1)) + (int(offset) << e)), e]


def _conv_tables(bias, mult, shift, output_offset, k, groups, per_group, pixels):
    """The requantization tables tfedge_conv2d_s8 builds in its scratch (tfedge_conv_tables),
    precomputed: per block of 2 output channels (4 for single-pixel convolutions) the doubled
    biases and each channel's (m, k, e); the last block of a group overlaps the previous one
    when the block does not divide the group. None where a channel does not fit that form."""
    if per_group < 2:
        return None
    width = 4 if pixels == 1 and per_group >= 4 else 2
    blocks = -(-per_group // width)
    words = []
    for g in range(groups):
        for i in range(blocks):
            c0 = g * per_group + (i * width if i + 1 < blocks else per_group - width)
            block = [0] * (4 * width)
            for r in range(width):
                mke = _rqd(mult[c0 + r], shift[c0 + r], output_offset, bias[c0 + r], k)
                if mke is None:
                    return None
                block[r] = _i32(2 * int(bias[c0 + r]))
                at = (2 if width == 2 else 4) + 3 * r
                block[at:at + 3] = mke
            words += block
    return np.asarray(words, dtype=np.int32)


def _depthwise_stream(filter_values, bias, mult, shift, input_offset, output_offset, channels,
                      taps):
    """The weight stream tfedge_depthwise_conv2d_s8 builds in its scratch (tfedge_dw_stream),
    precomputed: per group of 4 channels (then one of 2) the doubled biases with the input offset
    folded in, 2 * (bias + input_offset * sum(w)), the doubled weights of each pair of taps as
    int16 pairs, those of the odd last tap, then each channel's (m, k, e). None where a channel
    does not fit the doubled form."""
    if channels < 2:
        return None
    w = np.asarray(filter_values, dtype=np.int64).reshape(taps, channels)
    groups4, groups2 = channels // 4, (channels & 2) >> 1
    words, c0 = [], 0
    for g in range(groups4 + groups2):
        width = 4 if g < groups4 else 2
        cs = range(c0, c0 + width)
        words += [_i32(2 * (int(bias[c]) + input_offset * int(w[:, c].sum()))) for c in cs]
        for i in range(0, taps - 1, 2):
            words += [_pack16(2 * w[i, c], 2 * w[i + 1, c]) for c in cs]
        if taps % 2:
            t = w[taps - 1]
            if width == 4:
                words += [_pack16(2 * t[c0], 2 * t[c0 + 2]), _pack16(2 * t[c0 + 1], 2 * t[c0 + 3])]
            else:
                words.append(_pack16(2 * t[c0], 2 * t[c0 + 1]))
        for c in cs:
            mke = _rqd(mult[c], shift[c], output_offset, bias[c], taps)
            if mke is None:
                return None
            words += mke
        c0 += width
    return np.asarray(words, dtype=np.int32)


def _bias_values(bias, n, what):
    bias = np.asarray(bias, dtype=np.int64).ravel()
    if bias.size != n:
        raise ValueError(f"`{what}` must hold {n} values (zeros where the op has no bias). "
                         f"Received: {bias.size}")
    return bias


def conv2d(*, input_shape, filter_shape, output_shape, strides=1, padding="SAME", dilation=1,
           input_scale, input_zero_point, filter_scales, output_scale, output_zero_point,
           activation="NONE", bias=None):
    """CONV_2D (tfedge_conv_params): shapes NHWC / [out, kh, kw, in_per_group], per-channel or
    per-tensor filter scales. Mirrors conv.cc Prepare (ComputePaddingHeightWidth,
    PopulateConvolutionQuantizationParams). Arrays: multiplier, shift [out_c]; with `bias` (the
    op's int32 biases, zeros where it has none) also tables, the DSP loops' requantization tables
    computed ahead of time (tfedge_conv2d_s8's `tables`), unless a channel's multiplier does not
    fit them."""
    n, ih, iw, ic = _check_shape(input_shape, 4, "input_shape")
    oc, fh, fw, fc = _check_shape(filter_shape, 4, "filter_shape")
    on, oh, ow, oc2 = _check_shape(output_shape, 4, "output_shape")
    if ic % fc or oc % (ic // fc) or oc2 != oc or on != n:
        raise ValueError(f"inconsistent CONV_2D shapes: input {input_shape}, filter "
                         f"{filter_shape}, output {output_shape}")
    sh, sw, dh, dw, pad_h, pad_w = _conv_window((ih, iw), (fh, fw), (oh, ow), strides,
                                                dilation, padding, output_shape)
    mult, shift = conv_per_channel_multipliers(input_scale, _scales(filter_scales, oc,
                                                                    "filter_scales"), output_scale)
    act_min, act_max = activation_range(activation, output_scale, output_zero_point)
    fields = dict(batches=n, input_h=ih, input_w=iw, input_c=ic, filter_h=fh, filter_w=fw,
                  filter_c=fc, output_h=oh, output_w=ow, output_c=oc, stride_h=sh, stride_w=sw,
                  dilation_h=dh, dilation_w=dw, pad_h=pad_h, pad_w=pad_w,
                  input_offset=-int(input_zero_point), output_offset=int(output_zero_point),
                  act_min=act_min, act_max=act_max)
    arrays = {"multiplier": mult, "shift": shift}
    if bias is not None:
        tables = _conv_tables(_bias_values(bias, oc, "bias"), mult, shift, int(output_zero_point),
                              fh * fw * fc, ic // fc, oc // (ic // fc), oh * ow)
        if tables is not None:
            arrays["tables"] = tables
    return KernelParams("tfedge_conv_params", fields, arrays,
                        scratch_bytes=_conv_scratch_bytes(fh * fw * fc, fc, oc, ic // fc, oh * ow))


def depthwise_conv2d(*, input_shape, filter_shape, output_shape, strides=1, padding="SAME",
                     dilation=1, input_scale, input_zero_point, filter_scales, output_scale,
                     output_zero_point, activation="NONE", filter=None, bias=None):
    """DEPTHWISE_CONV_2D (tfedge_depthwise_params): filter [1, kh, kw, in_c * multiplier].
    Mirrors depthwise_conv.cc Prepare. Arrays: multiplier, shift [in_c * depth_multiplier]; with
    `filter` (the int8 weights) and `bias` (int32, zeros where the op has none) also stream, the
    DSP loops' weight stream computed ahead of time (tfedge_depthwise_conv2d_s8's `stream`: depth
    multiplier 1), unless a channel's multiplier does not fit it."""
    n, ih, iw, ic = _check_shape(input_shape, 4, "input_shape")
    one, fh, fw, oc = _check_shape(filter_shape, 4, "filter_shape")
    on, oh, ow, oc2 = _check_shape(output_shape, 4, "output_shape")
    if one != 1 or oc % ic or oc2 != oc or on != n:
        raise ValueError(f"inconsistent DEPTHWISE_CONV_2D shapes: input {input_shape}, filter "
                         f"{filter_shape}, output {output_shape}")
    sh, sw, dh, dw, pad_h, pad_w = _conv_window((ih, iw), (fh, fw), (oh, ow), strides,
                                                dilation, padding, output_shape)
    mult, shift = conv_per_channel_multipliers(input_scale, _scales(filter_scales, oc,
                                                                    "filter_scales"), output_scale)
    act_min, act_max = activation_range(activation, output_scale, output_zero_point)
    fields = dict(batches=n, input_h=ih, input_w=iw, input_c=ic, filter_h=fh, filter_w=fw,
                  depth_multiplier=oc // ic, output_h=oh, output_w=ow, stride_h=sh,
                  stride_w=sw, dilation_h=dh, dilation_w=dw, pad_h=pad_h, pad_w=pad_w,
                  input_offset=-int(input_zero_point), output_offset=int(output_zero_point),
                  act_min=act_min, act_max=act_max)
    arrays = {"multiplier": mult, "shift": shift}
    if filter is not None and bias is not None and oc == ic:
        filter_values = np.asarray(filter)
        if filter_values.size != fh * fw * oc:
            raise ValueError(f"`filter` must hold {fh * fw * oc} weights. Received: "
                             f"{filter_values.size}")
        stream = _depthwise_stream(filter_values, _bias_values(bias, oc, "bias"), mult, shift,
                                   -int(input_zero_point), int(output_zero_point), oc, fh * fw)
        if stream is not None:
            arrays["stream"] = stream
    return KernelParams("tfedge_depthwise_params", fields, arrays,
                        scratch_bytes=_depthwise_scratch_bytes(oc, fh * fw))


def fully_connected(*, input_size, filter_shape, input_scale, input_zero_point, filter_scales,
                    output_scale, output_zero_point, filter_zero_point=0, activation="NONE",
                    rounding="double"):
    """FULLY_CONNECTED (tfedge_fc_params); input_size is the input's element count, filter
    [units, depth]. Arrays: multiplier, shift.

    rounding="double" (default) reproduces LiteRT's reference kernels, which requantize with
    round(double(acc) * (double(in_scale) * double(w_scale) / double(out_scale)))
    (reference_integer_ops::FullyConnected{,PerChannel} with float scales): multiplier holds
    (mant_lo, mant_hi) pairs and shift the exponents (`double_scale`). rounding="gemmlowp" is
    the MultiplyByQuantizedMultiplier form TFLite Micro uses (fully_connected.cc Prepare: per
    channel in double, per tensor from the float32 product input_scale * filter_scale).
    """
    units, depth = _check_shape(filter_shape, 2, "filter_shape")
    if input_size % depth:
        raise ValueError(f"input_size {input_size} is not a multiple of the depth {depth}")
    scales = np.atleast_1d(np.asarray(filter_scales, dtype=np.float32))
    per_channel = scales.size > 1
    if per_channel and scales.size != units:
        raise ValueError(f"`filter_scales` must hold 1 or {units} scales. Received: {scales.size}")
    if per_channel and filter_zero_point:
        raise ValueError("per-channel weights must be symmetric (filter_zero_point=0)")
    if rounding == "double":
        mult, shift = [], []
        for s in scales:
            lo, hi, e = double_scale(float(_f32(input_scale)) * float(s) /
                                     float(_f32(output_scale)))
            mult += [lo, hi]
            shift.append(e)
        mode = ROUND_DOUBLE
    elif rounding == "gemmlowp":
        if per_channel:
            m, sh = conv_per_channel_multipliers(input_scale, scales, output_scale)
            mult, shift = list(m), list(sh)
        else:
            real = float(_f32(_f32(input_scale) * scales[0])) / float(_f32(output_scale))
            m, sh = quantize_multiplier(real)
            mult, shift = [m], [sh]
        mode = ROUND_GEMMLOWP
    else:
        raise ValueError(f"`rounding` must be 'double' or 'gemmlowp'. Received: "
                         f"rounding={rounding!r}")
    act_min, act_max = activation_range(activation, output_scale, output_zero_point)
    fields = dict(batches=input_size // depth, input_depth=depth, output_depth=units,
                  input_offset=-int(input_zero_point), filter_offset=-int(filter_zero_point),
                  output_offset=int(output_zero_point), act_min=act_min, act_max=act_max,
                  per_channel=int(per_channel), rounding=mode)
    return KernelParams("tfedge_fc_params", fields,
                        {"multiplier": np.asarray(mult, dtype=np.int32),
                         "shift": np.asarray(shift, dtype=np.int32)})


# ---------------------------------------------------------------------------------------------
# Elementwise binary ops
# ---------------------------------------------------------------------------------------------

def broadcast(shape1, shape2):
    """tfedge_broadcast for two broadcast-compatible shapes (numpy rules, up to 6-D after
    merging): output dims with per-dim element strides of each input (0 where it broadcasts),
    as the reference kernels' BroadcastBinaryFunction6DSlow walks them. Adjacent dims that
    broadcast the same way are merged so that the innermost loop is long."""
    s1, s2 = tuple(int(d) for d in shape1), tuple(int(d) for d in shape2)
    rank = max(len(s1), len(s2))
    s1 = (1,) * (rank - len(s1)) + s1
    s2 = (1,) * (rank - len(s2)) + s2
    out = []
    for a, b in zip(s1, s2):
        if a != b and a != 1 and b != 1:
            raise ValueError(f"shapes {shape1} and {shape2} do not broadcast")
        out.append(max(a, b))
    # Merge runs of dims with the same (input1 broadcasts, input2 broadcasts) pattern.
    dims, kinds = [], []
    for o, a, b in zip(out, s1, s2):
        if o == 1:
            continue
        kind = (a == 1, b == 1)
        if dims and kinds[-1] == kind:
            dims[-1] *= o
        else:
            dims.append(o)
            kinds.append(kind)
    if len(dims) > MAX_DIMS:
        raise ValueError(f"broadcast of {shape1} and {shape2} needs {len(dims)} dims; the "
                         f"kernel handles {MAX_DIMS}")
    dims = [1] * (MAX_DIMS - len(dims)) + dims
    kinds = [(True, True)] * (MAX_DIMS - len(kinds)) + kinds

    def strides(which):
        result, stride = [0] * MAX_DIMS, 1
        for i in range(MAX_DIMS - 1, -1, -1):
            if not kinds[i][which] and dims[i] != 1:
                result[i] = stride
                stride *= dims[i]
        return result

    return KernelParams("tfedge_broadcast",
                        {"dims": dims, "strides1": strides(0), "strides2": strides(1)})


def add(*, input1_scale, input1_zero_point, input2_scale, input2_zero_point, output_scale,
        output_zero_point, activation="NONE"):
    """ADD (tfedge_add_params), int8: add.cc Prepare's 8-bit path (left_shift 20, both inputs
    rescaled to twice the larger input scale, QuantizeMultiplierSmallerThanOneExp)."""
    left_shift = 20
    twice_max = 2.0 * float(max(_f32(input1_scale), _f32(input2_scale)))
    m1, s1 = quantize_multiplier_smaller_than_one_exp(float(_f32(input1_scale)) / twice_max)
    m2, s2 = quantize_multiplier_smaller_than_one_exp(float(_f32(input2_scale)) / twice_max)
    mo, so = quantize_multiplier_smaller_than_one_exp(
        twice_max / (float(1 << left_shift) * float(_f32(output_scale))))
    act_min, act_max = activation_range(activation, output_scale, output_zero_point)
    fields = dict(input1_offset=-int(input1_zero_point), input2_offset=-int(input2_zero_point),
                  output_offset=int(output_zero_point), left_shift=left_shift,
                  input1_multiplier=m1, input1_shift=s1, input2_multiplier=m2, input2_shift=s2,
                  output_multiplier=mo, output_shift=so, act_min=act_min, act_max=act_max)
    return KernelParams("tfedge_add_params", fields)


def mul(*, input1_scale, input1_zero_point, input2_scale, input2_zero_point, output_scale,
        output_zero_point, activation="NONE"):
    """MUL (tfedge_mul_params), int8: mul.cc Prepare, whose real multiplier
    input1_scale * input2_scale / output_scale is computed in float32."""
    real = _f32(_f32(input1_scale) * _f32(input2_scale)) / _f32(output_scale)
    m, s = quantize_multiplier(float(_f32(real)))
    act_min, act_max = activation_range(activation, output_scale, output_zero_point)
    fields = dict(input1_offset=-int(input1_zero_point), input2_offset=-int(input2_zero_point),
                  output_offset=int(output_zero_point), output_multiplier=m, output_shift=s,
                  act_min=act_min, act_max=act_max)
    return KernelParams("tfedge_mul_params", fields)


# ---------------------------------------------------------------------------------------------
# Pooling and reductions
# ---------------------------------------------------------------------------------------------

def pool2d(*, input_shape, output_shape, filter_size, strides, padding="VALID",
           output_scale=1.0, output_zero_point=0, activation="NONE"):
    """AVERAGE_POOL_2D / MAX_POOL_2D (tfedge_pool_params): pooling.cc Prepare (padding with
    dilation 1; the fused activation in the output's quantization)."""
    n, ih, iw, c = _check_shape(input_shape, 4, "input_shape")
    on, oh, ow, oc = _check_shape(output_shape, 4, "output_shape")
    fh, fw = _pair(filter_size, "filter_size")
    sh, sw = _pair(strides, "strides")
    pad_h, out_h = compute_padding(ih, fh, sh, 1, padding)
    pad_w, out_w = compute_padding(iw, fw, sw, 1, padding)
    if (on, out_h, out_w, oc) != (n, oh, ow, c):
        raise ValueError(f"output_shape {output_shape} does not match the pooling of "
                         f"{input_shape}: expected {(n, out_h, out_w, c)}")
    act_min, act_max = activation_range(activation, output_scale, output_zero_point)
    fields = dict(batches=n, input_h=ih, input_w=iw, channels=c, output_h=oh, output_w=ow,
                  filter_h=fh, filter_w=fw, stride_h=sh, stride_w=sw, pad_h=pad_h, pad_w=pad_w,
                  act_min=act_min, act_max=act_max)
    return KernelParams("tfedge_pool_params", fields)


def mean(*, input_shape, axes, input_scale, input_zero_point, output_scale, output_zero_point):
    """MEAN (tfedge_mean_params) over any axes, int8. Mirrors reduce.cc PrepareMeanOrSum
    (QuantizeMultiplier(input_scale / output_scale)) and reference_ops::QuantizedMeanOrSum,
    which folds 1/count into the multiplier: shift = min(floor(log2(count)), 32, 31 + shift),
    multiplier = (multiplier << shift) // count. (LiteRT's reference MEAN takes this path for
    every axes, 4-D [1, 2] with keep_dims included; the special 4-D Mean is only used by the
    optimized kernel.)"""
    shape = tuple(int(d) for d in input_shape)
    rank = len(shape)
    axes = sorted({int(a) + rank if int(a) < 0 else int(a) for a in np.atleast_1d(axes)})
    if any(not 0 <= a < rank for a in axes):
        raise ValueError(f"`axes` must be within the {rank} dims of {shape}. Received: {axes}")
    strides = [1] * rank
    for i in range(rank - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    kept, reduced = [], []
    for i in range(rank):
        group = reduced if i in axes else kept
        if shape[i] == 1:
            continue
        # Merge with the previous dim of the same kind when it is adjacent in memory.
        if group and group[-1][2] == i - 1 and group[-1][1] == strides[i] * shape[i]:
            group[-1] = (group[-1][0] * shape[i], strides[i], i)
        else:
            group.append((shape[i], strides[i], i))
    for name, group in (("kept", kept), ("reduced", reduced)):
        if len(group) > MEAN_DIMS:
            raise ValueError(f"MEAN over axes {axes} of {shape}: too many {name} dims")
    count = int(np.prod([shape[a] for a in axes])) if axes else 1

    def padded(group, k):
        values = [g[k] for g in group]
        pad_value = 1 if k == 0 else 0
        return [pad_value] * (MEAN_DIMS - len(values)) + values

    m, s = quantize_multiplier(float(_f32(input_scale)) / float(_f32(output_scale)))
    shift = min(count.bit_length() - 1, 32, 31 + s)
    m = int((m << shift) // count)
    s -= shift
    fields = dict(kept_dims=padded(kept, 0), kept_strides=padded(kept, 1),
                  reduced_dims=padded(reduced, 0), reduced_strides=padded(reduced, 1),
                  count=count, input_zero_point=int(input_zero_point),
                  output_zero_point=int(output_zero_point), multiplier=m, shift=s)
    return KernelParams("tfedge_mean_params", fields)


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------

def softmax(*, input_shape, input_scale, beta=1.0):
    """SOFTMAX (tfedge_softmax_params), int8 in / int8 out (1/256, -128): softmax.cc Prepare for
    the reference kernel (PreprocessSoftmaxScaling with 5 integer bits, diff_min from
    CalculateInputRadius)."""
    shape = tuple(int(d) for d in input_shape)
    depth = shape[-1]
    m, left_shift = preprocess_softmax_scaling(float(_f32(beta)), float(_f32(input_scale)), 5)
    diff_min = -calculate_input_radius(5, left_shift)
    fields = dict(outer_size=int(np.prod(shape)) // depth, depth=depth, input_multiplier=m,
                  input_left_shift=left_shift, diff_min=diff_min)
    return KernelParams("tfedge_softmax_params", fields)


def hard_swish(*, input_scale, input_zero_point, output_scale, output_zero_point):
    """HARD_SWISH (tfedge_hard_swish_params): activations.cc HardSwishPrepare, in float32
    (hires input scale = input_scale / 128, reluish scale = 3 / 32768) then QuantizeMultiplier
    and DownScaleInt32ToInt16Multiplier."""
    hires = _f32(_f32(1.0 / 128.0) * _f32(input_scale))
    reluish_scale = _f32(_f32(3.0) / _f32(32768.0))
    out_real = _f32(hires / _f32(output_scale))
    out_m, out_e = quantize_multiplier(float(out_real))
    if out_e > 0:
        raise ValueError("HARD_SWISH needs output_scale > input_scale / 128 (TFLite requires "
                         f"output_multiplier_exponent <= 0). Received: {input_scale!r}, "
                         f"{output_scale!r}")
    relu_real = _f32(hires / reluish_scale)
    relu_m, relu_e = quantize_multiplier(float(relu_real))
    fields = dict(input_zero_point=int(input_zero_point), output_zero_point=int(output_zero_point),
                  reluish_multiplier_fixedpoint_int16=downscale_int32_to_int16_multiplier(relu_m),
                  reluish_multiplier_exponent=relu_e,
                  output_multiplier_fixedpoint_int16=downscale_int32_to_int16_multiplier(out_m),
                  output_multiplier_exponent=out_e)
    return KernelParams("tfedge_hard_swish_params", fields)


def _i16(x):
    """Two's complement conversion to int16 (what storing an int into an int16_t does)."""
    return ((int(x) + 32768) & 0xFFFF) - 32768


def _srdhm16(a, b):
    if a == b == -32768:
        return 32767
    ab = a * b
    nudge = (1 << 14) if ab >= 0 else (1 - (1 << 14))
    return _i16(_trunc_div(ab + nudge, 1 << 15))


def _trunc_div(a, b):
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _rdbpot16(x, exponent):
    mask = _i16((1 << exponent) - 1)
    remainder = _i16(x & mask)
    threshold = _i16(_i16(mask >> 1) + (1 if x < 0 else 0))
    return _i16(_i16(x >> exponent) + (1 if remainder > threshold else 0))


def _sat_shl16(x, amount):
    return max(-32768, min(32767, x * (1 << amount)))


def hard_swish_lut(params: KernelParams):
    """The 256-entry table (TFLite int8 LUT order, see `logistic_lut`) that tfedge_hard_swish_s8
    computes for `hard_swish(...)` params: reference_ops::HardSwish<int8_t> in Python, to run
    HARD_SWISH as tfedge_lut_s8."""
    f = params.fields
    table = np.zeros(256, dtype=np.int8)
    for value in range(-128, 128):
        x = _i16(value - f["input_zero_point"])
        hires = _i16(x * (1 << 7))
        preshift_scale = _srdhm16(hires, f["output_multiplier_fixedpoint_int16"])
        relu = hires
        e = f["reluish_multiplier_exponent"]
        if e > 0:
            relu = _sat_shl16(relu, e - 1)
        relu = _srdhm16(relu, f["reluish_multiplier_fixedpoint_int16"])
        if e > 0:
            relu = _sat_shl16(relu, 1)
        if e < 0:
            relu = _rdbpot16(relu, -e)
        relu = _i16((relu + (1 << 15)) >> 1)
        if relu == preshift_scale == -32768:
            pre = 32767
        else:
            pre = _i16(_trunc_div(relu * preshift_scale, 1 << 15))
        out = _rdbpot16(pre, -f["output_multiplier_exponent"])
        out = _i16(out + f["output_zero_point"])
        table[value & 0xFF] = max(-128, min(127, out))
    return table


def _expf(x):
    """expf of a float32, correctly rounded (via the double exp), inf on overflow."""
    d = math.exp(float(x)) if float(x) < 709.0 else math.inf
    with np.errstate(over="ignore"):
        return np.float32(d)


def logistic_lut(*, input_scale, input_zero_point, output_scale=1.0 / 256, output_zero_point=-128):
    """LOGISTIC as a 256-entry int8 table for tfedge_lut_s8, exactly as LiteRT's int8 kernel
    (SigmoidPrepare -> LUTPopulate<int8_t>, used by the reference and optimized kernels alike):
    in float32, x = input_scale * (q - zero_point), y = 1 / (1 + exp(-x)),
    round(y * (1 / output_scale)) + output_zero_point, clamped. Index: (uint8_t)q."""
    in_scale = _f32(input_scale)
    inverse = _f32(_f32(1.0) / _f32(output_scale))
    table = np.zeros(256, dtype=np.int8)
    for q in range(-128, 128):
        x = _f32(in_scale * _f32(q - int(input_zero_point)))
        e = _expf(-x)
        y = _f32(_f32(1.0) / _f32(_f32(1.0) + e))
        rescaled = _f32(_round_half_away(_f32(y * inverse)))
        v = int(_f32(rescaled + _f32(int(output_zero_point))))
        table[q & 0xFF] = max(-128, min(127, v))
    return table


# ---------------------------------------------------------------------------------------------
# QUANTIZE and data movement
# ---------------------------------------------------------------------------------------------

def requantize(*, input_scale, input_zero_point, output_scale, output_zero_point):
    """QUANTIZE between integer types (tfedge_requant_params): quantize.cc Prepare,
    QuantizeMultiplier(double(input_scale) / double(output_scale))."""
    m, s = quantize_multiplier(float(_f32(input_scale)) / float(_f32(output_scale)))
    fields = dict(input_zero_point=int(input_zero_point), output_zero_point=int(output_zero_point),
                  multiplier=m, shift=s)
    return KernelParams("tfedge_requant_params", fields)


def _axis(axis, rank):
    axis = int(axis)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise ValueError(f"`axis` must be in [-{rank}, {rank}). Received: axis={axis}")
    return axis


def concatenation(*, input_shapes, axis):
    """CONCATENATION (tfedge_concat_params) of inputs of shapes `input_shapes` along `axis`.
    Arrays: copy_sizes. (Requantization per input: `requantize(...)`, one per input whose
    quantization differs from the output's.)"""
    shapes = [tuple(int(d) for d in s) for s in input_shapes]
    axis = _axis(axis, len(shapes[0]))
    outer = int(np.prod(shapes[0][:axis]))
    sizes = [int(np.prod(s[axis:])) for s in shapes]
    fields = dict(num_inputs=len(shapes), outer_size=outer)
    return KernelParams("tfedge_concat_params", fields,
                        {"copy_sizes": np.asarray(sizes, dtype=np.int32)})


def split(*, input_shape, axis, sizes):
    """SPLIT / SPLIT_V (tfedge_split_params): `sizes` along `axis` (SPLIT: equal parts).
    Arrays: copy_sizes."""
    shape = tuple(int(d) for d in input_shape)
    axis = _axis(axis, len(shape))
    sizes = [int(s) for s in sizes]
    if sum(sizes) != shape[axis]:
        raise ValueError(f"`sizes` {sizes} must add up to dim {axis} of {shape}")
    inner = int(np.prod(shape[axis + 1:]))
    fields = dict(num_outputs=len(sizes), outer_size=int(np.prod(shape[:axis])))
    return KernelParams("tfedge_split_params", fields,
                        {"copy_sizes": np.asarray([s * inner for s in sizes], dtype=np.int32)})


def transpose(*, input_shape, perm):
    """TRANSPOSE (tfedge_transpose_params) up to 6-D: output dim i is input dim perm[i]. Dims of
    size 1 are dropped and input-adjacent runs merged."""
    shape = tuple(int(d) for d in input_shape)
    perm = [_axis(p, len(shape)) for p in perm]
    if sorted(perm) != list(range(len(shape))):
        raise ValueError(f"`perm` must be a permutation of {len(shape)} dims. Received: {perm}")
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    dims, in_strides, last = [], [], None
    for p in perm:
        if shape[p] == 1:
            continue
        if last is not None and p == last + 1 and in_strides[-1] == strides[p] * shape[p]:
            dims[-1] *= shape[p]
            in_strides[-1] = strides[p]
        else:
            dims.append(shape[p])
            in_strides.append(strides[p])
        last = p
    if not dims:
        dims, in_strides = [1], [1]
    if len(dims) > MAX_DIMS:
        raise ValueError(f"TRANSPOSE of {shape} needs {len(dims)} dims; the kernel handles "
                         f"{MAX_DIMS}")
    n = len(dims)
    fields = dict(num_dims=n, out_dims=dims + [1] * (MAX_DIMS - n),
                  in_strides=in_strides + [0] * (MAX_DIMS - n))
    return KernelParams("tfedge_transpose_params", fields)


def pad(*, input_shape, paddings, pad_value):
    """PAD / PADV2 (tfedge_pad_params): paddings [[before, after], ...] per dim; pad_value is the
    output zero point for PAD (pad.cc), the quantized constant for PADV2."""
    shape = tuple(int(d) for d in input_shape)
    paddings = np.asarray(paddings, dtype=np.int64).reshape(len(shape), 2)
    if len(shape) > MAX_DIMS:
        raise ValueError(f"PAD of {shape}: the kernel handles {MAX_DIMS} dims")
    n = len(shape)
    fields = dict(num_dims=n, input_dims=list(shape) + [1] * (MAX_DIMS - n),
                  pad_before=[int(p) for p in paddings[:, 0]] + [0] * (MAX_DIMS - n),
                  pad_after=[int(p) for p in paddings[:, 1]] + [0] * (MAX_DIMS - n),
                  pad_value=int(pad_value))
    return KernelParams("tfedge_pad_params", fields)
