"""The int8 C runtime (microcontroller/runtime) against LiteRT's reference kernels.

Every kernel runs on the host through ctypes in two builds, the portable loops and the Cortex-M
DSP loops (intrinsics emulated in C, -DTFEDGE_EMULATE_DSP), on one-op models converted from
tf_keras layers. Each converted model is then re-randomized several times (scales, zero points,
weights, biases, options) through LiteRT's flatbuffer object API; every output must equal
LiteRT BUILTIN_REF's exactly. The sources must also compile warning-free for Cortex-M4, M7, M55.
"""

import functools
import re
import shutil
import subprocess
import zlib

import numpy as np
import pytest

import tfedge  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfedge.microcontroller import quant

try:
    from . import _kernel_cases as kc
except ImportError:  # pytest's default "prepend" import mode: this folder is on sys.path
    import _kernel_cases as kc

integration = pytest.mark.integration


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory):
    out = tmp_path_factory.mktemp("tfedge_runtime")
    return {v: kc.Runtime(kc.build_library(out, v)) for v in kc.VARIANTS}


def check(runtimes, expected, run, what):
    """Runs `run(runtime)` for every build and compares with the reference output."""
    expected = np.asarray(expected)
    for variant, rt in runtimes.items():
        got = np.asarray(run(rt)).reshape(expected.shape)
        if not np.array_equal(got, expected):
            bad = np.argwhere(got != expected)
            i = tuple(bad[0])
            raise AssertionError(
                f"{what} [{variant}]: {len(bad)} of {expected.size} outputs differ; first at "
                f"{i}: got {got[i]}, LiteRT {expected[i]}")


def seeded(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def _keras():
    from tfedge._keras import keras, layers, tf

    return keras, layers, tf


_CONVERSIONS = {}


def converted(build, key, **kwargs):
    """The conversion of `build()` = (keras model, input shapes), once per key and options."""
    cache_key = (key, tuple(sorted(kwargs.items())))
    if cache_key not in _CONVERSIONS:
        model, shapes = build()
        _CONVERSIONS[cache_key] = kc.convert(model, shapes, seeded(key), **kwargs)
    return _CONVERSIONS[cache_key]


def _one_input(shape, layer):
    keras, _, _ = _keras()
    inp = keras.Input(shape)
    return keras.Model(inp, layer(inp)), [shape]


def _two_inputs(shape1, shape2, fn):
    keras, layers, _ = _keras()
    a, b = keras.Input(shape1), keras.Input(shape2)
    return keras.Model([a, b], layers.Lambda(fn)([a, b])), [shape1, shape2]


def randomize_activation(g, index, rng, scale=(1e-3, 0.2)):
    g.set_quant(index, kc.log_uniform(rng, *scale), rng.integers(-128, 128))


# ---------------------------------------------------------------------------------------------
# CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
# ---------------------------------------------------------------------------------------------

CONV_VARIANTS = {
    "3x3_same_relu6": dict(shape=(9, 9, 8), filters=16, kernel=3, activation="relu6"),
    "3x3_stride2_rgb": dict(shape=(12, 11, 3), filters=8, kernel=3, strides=2),
    "1x1_pointwise": dict(shape=(6, 7, 16), filters=24, kernel=1),
    "5x3_valid_stride21": dict(shape=(10, 9, 5), filters=7, kernel=(5, 3), strides=(2, 1),
                               padding="valid", activation="relu"),
    "3x3_dilated2": dict(shape=(9, 8, 6), filters=5, kernel=3, dilation=2),
    "grouped_3x3_g2": dict(shape=(7, 7, 8), filters=8, kernel=3, groups=2),
    "grouped_1x1_g3": dict(shape=(5, 5, 12), filters=15, kernel=1, groups=3),
    "2x2_stride2_valid_c1": dict(shape=(8, 8, 1), filters=4, kernel=2, strides=2,
                                 padding="valid"),
    # The DSP paths' special cases: an odd pixel count (pointwise loop), single pixels
    # (4-channel blocks, overlapping last block), K % 4 != 0 above the 2 KB whole-filter copy
    # (padded last rows), filters above the 16 KB int16 widening (read in place).
    "1x1_odd_pixels_k8": dict(shape=(5, 5, 8), filters=12, kernel=1),
    "1x1_single_pixel": dict(shape=(1, 1, 40), filters=18, kernel=1),
    "3x3_valid_1px_c5": dict(shape=(3, 3, 5), filters=50, kernel=3, padding="valid"),
    "3x3_wide_c6": dict(shape=(5, 5, 6), filters=150, kernel=3),
    "1x1_wide_k64": dict(shape=(4, 3, 64), filters=260, kernel=1),
    # Pointwise loops reading past a group of 10 / 6 channels (the last pixels may not).
    "grouped_1x1_g3_c10": dict(shape=(5, 5, 30), filters=36, kernel=1, groups=3),
    "1x1_k6": dict(shape=(4, 4, 6), filters=8, kernel=1),
}


def _conv_model(name):
    _, layers, _ = _keras()
    v = CONV_VARIANTS[name]
    return _one_input(v["shape"], layers.Conv2D(
        v["filters"], v["kernel"], strides=v.get("strides", 1), padding=v.get("padding", "same"),
        dilation_rate=v.get("dilation", 1), groups=v.get("groups", 1),
        activation=v.get("activation"), bias_initializer="random_normal"))


def randomize_weighted(g, op, rng, channels, k):
    """New input/weight/output quantization, weights and bias for CONV_2D, DEPTHWISE_CONV_2D or
    FULLY_CONNECTED (per-channel scales when channels > 1), with an output scale that keeps
    most outputs off the clamp."""
    x_i, w_i = op.inputs[:2]
    b_i = op.inputs[2] if len(op.inputs) > 2 else -1
    o_i = op.outputs[0]
    in_scale = kc.log_uniform(rng, 1e-3, 0.1)
    w_scales = np.array([kc.log_uniform(rng, 1e-3, 0.05) for _ in range(channels)], np.float32)
    # Accumulators have a standard deviation of about 74 * 74 * sqrt(k).
    spread = 74 * 74 * np.sqrt(k)
    out_scale = in_scale * float(np.mean(w_scales)) * spread / 40 * 2 ** rng.uniform(-1.5, 1.5)
    g.set_quant(x_i, in_scale, rng.integers(-128, 128))
    g.set_quant(w_i, w_scales, np.zeros(channels, np.int64))
    g.set_array(w_i, rng.integers(-127, 128, size=g.shape(w_i), dtype=np.int8))
    if b_i >= 0:
        n = g.shape(b_i)[0]
        g.set_quant(b_i, np.float32(in_scale) * np.resize(w_scales, n), np.zeros(n, np.int64))
        g.set_array(b_i, rng.integers(-3 * spread, 3 * spread, size=n).astype(np.int32))
    g.set_quant(o_i, out_scale, rng.integers(-128, 128))


def extreme_multipliers(g, op, rng, channels, large):
    """Requantization multipliers far from the usual ones: around 1 (shifts >= 0, with tiny
    weights so that the small inputs `small_inputs` makes stay unsaturated) or below 2^-24."""
    x_i, w_i = op.inputs[:2]
    b_i = op.inputs[2] if len(op.inputs) > 2 else -1
    in_scale = kc.log_uniform(rng, 1e-3, 0.1)
    w_scales = np.array([kc.log_uniform(rng, 1e-3, 0.05) for _ in range(channels)], np.float32)
    g.set_quant(x_i, in_scale, rng.integers(-100, 100))
    g.set_quant(w_i, w_scales, np.zeros(channels, np.int64))
    if large:
        g.set_array(w_i, rng.integers(-2, 3, size=g.shape(w_i), dtype=np.int8))
        out_scale = in_scale * float(np.mean(w_scales)) * 2 ** rng.uniform(-1.5, 2.5)
    else:
        out_scale = in_scale * float(np.mean(w_scales)) * 2 ** rng.uniform(24, 28)
    if b_i >= 0:
        n = g.shape(b_i)[0]
        g.set_quant(b_i, np.float32(in_scale) * np.resize(w_scales, n), np.zeros(n, np.int64))
        g.set_array(b_i, rng.integers(-20, 20, size=n).astype(np.int32))
    g.set_quant(op.outputs[0], out_scale, rng.integers(-60, 60))


def small_inputs(g, op, rng):
    """Inputs within +-3 of the zero point (for extreme_multipliers(large=True))."""
    zp = g.zero_point(op.inputs[0])
    return np.clip(zp + rng.integers(-3, 4, size=g.shape(op.inputs[0])), -128, 127).astype(np.int8)


def conv_params(g, op, bias=None):
    """quant.conv2d of the op; with `bias` (None: zeros) also its precomputed tables."""
    o = op.builtinOptions
    x_i, w_i, o_i = op.inputs[0], op.inputs[1], op.outputs[0]
    if bias is None:
        bias = np.zeros(g.shape(w_i)[0], np.int32)
    return quant.conv2d(
        input_shape=g.shape(x_i), filter_shape=g.shape(w_i), output_shape=g.shape(o_i),
        strides=(o.strideH, o.strideW), padding=kc.PADDING_NAMES[o.padding],
        dilation=(o.dilationHFactor, o.dilationWFactor), input_scale=g.scale(x_i),
        input_zero_point=g.zero_point(x_i), filter_scales=g.scales(w_i),
        output_scale=g.scale(o_i), output_zero_point=g.zero_point(o_i),
        activation=kc.ACTIVATION_NAMES[o.fusedActivationFunction], bias=bias)


def _weights(g, op):
    w = g.array(op.inputs[1], np.int8)
    b_i = op.inputs[2] if len(op.inputs) > 2 else -1
    return w, (g.array(b_i, np.int32) if b_i >= 0 else None)


@integration
@pytest.mark.parametrize("name", sorted(CONV_VARIANTS))
def test_conv2d(runtimes, name):
    rng = seeded(name)
    for trial in range(6):
        g = kc.Graph(converted(functools.partial(_conv_model, name), f"conv {name}"))
        op = g.only("CONV_2D")
        shape_w = g.shape(op.inputs[1])
        assert shape_w[3] == CONV_VARIANTS[name]["shape"][2] // CONV_VARIANTS[name].get("groups", 1)
        if trial >= 4:
            extreme_multipliers(g, op, rng, shape_w[0], large=trial == 4)
        elif trial:
            randomize_weighted(g, op, rng, shape_w[0], int(np.prod(shape_w[1:])))
        w, bias = _weights(g, op)
        model, params = g.to_bytes(), conv_params(g, op, bias)
        # The doubled form (and so precomputed tables) fits usual multipliers, not trial 4's
        # around 1 (nor, for most channels, trial 5's right shifts beyond 22).
        assert ("tables" in params.arrays) == (trial < 4) or trial == 5, trial
        for _ in range(3):
            x = (small_inputs(g, op, rng) if trial == 4
                 else kc.random_int8(rng, g.shape(op.inputs[0])))
            expected = kc.reference(model, [x])[0]
            check(runtimes, expected, lambda rt: rt.conv2d(params, x, w, bias),
                  f"CONV_2D {name} trial {trial}")
            check(runtimes, expected, lambda rt: rt.conv2d(params, x, w, bias, tables=False),
                  f"CONV_2D {name} trial {trial} (tables built at run time)")


DEPTHWISE_VARIANTS = {
    "3x3_same_c8": dict(shape=(8, 8, 8), kernel=3),
    "3x3_stride2_valid_c6": dict(shape=(9, 10, 6), kernel=3, strides=2, padding="valid"),
    "3x3_multiplier2_c3": dict(shape=(7, 6, 3), kernel=3, multiplier=2),
    "5x5_dilated2_c12_relu6": dict(shape=(11, 11, 12), kernel=5, dilation=2, activation="relu6"),
    "3x3_stride2_same_c16_relu": dict(shape=(9, 9, 16), kernel=3, strides=2, activation="relu"),
    "2x3_multiplier3_c4": dict(shape=(6, 7, 4), kernel=(2, 3), multiplier=3, padding="valid"),
    # The DSP paths: 5x5 (unrolled) with a 2-channel group, an odd channel count (the last one
    # by the portable loops), an even tap count (no odd last tap), a 3x3 image (all border).
    "5x5_c10": dict(shape=(7, 7, 10), kernel=5),
    "3x3_c7": dict(shape=(6, 6, 7), kernel=3, activation="relu6"),
    "2x2_c8": dict(shape=(6, 5, 8), kernel=2),
    "3x3_on_3x3_c20": dict(shape=(3, 3, 20), kernel=3),
}


def _depthwise_model(name):
    _, layers, _ = _keras()
    v = DEPTHWISE_VARIANTS[name]
    return _one_input(v["shape"], layers.DepthwiseConv2D(
        v["kernel"], strides=v.get("strides", 1), padding=v.get("padding", "same"),
        depth_multiplier=v.get("multiplier", 1), dilation_rate=v.get("dilation", 1),
        activation=v.get("activation"), bias_initializer="random_normal"))


@integration
@pytest.mark.parametrize("name", sorted(DEPTHWISE_VARIANTS))
def test_depthwise_conv2d(runtimes, name):
    rng = seeded(name)
    for trial in range(6):
        g = kc.Graph(converted(functools.partial(_depthwise_model, name), f"depthwise {name}"))
        op = g.only("DEPTHWISE_CONV_2D")
        _, kh, kw, channels = g.shape(op.inputs[1])
        if trial >= 4:
            extreme_multipliers(g, op, rng, channels, large=trial == 4)
        elif trial:
            randomize_weighted(g, op, rng, channels, kh * kw)
        o = op.builtinOptions
        x_i, w_i, o_i = op.inputs[0], op.inputs[1], op.outputs[0]
        w, bias = _weights(g, op)
        params = quant.depthwise_conv2d(
            input_shape=g.shape(x_i), filter_shape=g.shape(w_i), output_shape=g.shape(o_i),
            strides=(o.strideH, o.strideW), padding=kc.PADDING_NAMES[o.padding],
            dilation=(o.dilationHFactor, o.dilationWFactor), input_scale=g.scale(x_i),
            input_zero_point=g.zero_point(x_i), filter_scales=g.scales(w_i),
            output_scale=g.scale(o_i), output_zero_point=g.zero_point(o_i),
            activation=kc.ACTIVATION_NAMES[o.fusedActivationFunction], filter=w,
            bias=bias if bias is not None else np.zeros(channels, np.int32))
        multiplier = DEPTHWISE_VARIANTS[name].get("multiplier", 1)
        assert params.fields["depth_multiplier"] == multiplier
        assert ("stream" in params.arrays) == (trial < 4 and multiplier == 1) or trial == 5, trial
        model = g.to_bytes()
        for _ in range(3):
            x = small_inputs(g, op, rng) if trial == 4 else kc.random_int8(rng, g.shape(x_i))
            expected = kc.reference(model, [x])[0]
            check(runtimes, expected, lambda rt: rt.depthwise_conv2d(params, x, w, bias),
                  f"DEPTHWISE_CONV_2D {name} trial {trial}")
            check(runtimes, expected,
                  lambda rt: rt.depthwise_conv2d(params, x, w, bias, stream=False),
                  f"DEPTHWISE_CONV_2D {name} trial {trial} (stream built at run time)")


FC_VARIANTS = {
    "20_to_7": dict(shape=(20,), units=7),
    "64_to_10_relu": dict(shape=(64,), units=10, activation="relu"),
    "3d_keep_dims_4x10_to_6": dict(shape=(4, 10), units=6),
    "35_to_3_relu6_no_bias": dict(shape=(35,), units=3, activation="relu6", bias=False),
}


def _fc_model(name):
    _, layers, _ = _keras()
    v = FC_VARIANTS[name]
    return _one_input(v["shape"], layers.Dense(v["units"], activation=v.get("activation"),
                                               use_bias=v.get("bias", True),
                                               bias_initializer="random_normal"))


def fc_params(g, op, rounding="double"):
    x_i, w_i, o_i = op.inputs[0], op.inputs[1], op.outputs[0]
    return quant.fully_connected(
        input_size=int(np.prod(g.shape(x_i))), filter_shape=g.shape(w_i),
        input_scale=g.scale(x_i), input_zero_point=g.zero_point(x_i),
        filter_scales=g.scales(w_i), output_scale=g.scale(o_i),
        output_zero_point=g.zero_point(o_i),
        activation=kc.ACTIVATION_NAMES[op.builtinOptions.fusedActivationFunction],
        rounding=rounding)


@integration
@pytest.mark.parametrize("name", sorted(FC_VARIANTS))
def test_fully_connected(runtimes, name):
    """Per-channel (the converter's default) and per-tensor weights (trial 3)."""
    rng = seeded(name)
    for trial in range(5):
        g = kc.Graph(converted(functools.partial(_fc_model, name), f"fc {name}"))
        op = g.only("FULLY_CONNECTED")
        units, depth = g.shape(op.inputs[1])
        if trial:
            randomize_weighted(g, op, rng, 1 if trial == 3 else units, depth)
        model, params = g.to_bytes(), fc_params(g, op)
        assert params.fields["per_channel"] == (trial != 3)
        w, bias = _weights(g, op)
        for _ in range(4):
            x = kc.random_int8(rng, g.shape(op.inputs[0]))
            check(runtimes, kc.reference(model, [x])[0],
                  lambda rt: rt.fully_connected(params, x, w, bias),
                  f"FULLY_CONNECTED {name} trial {trial}")


@integration
def test_fully_connected_rounding_ties(runtimes):
    """Power-of-two scales make acc * scale land on exact halves: LiteRT's reference FC rounds
    them away from zero (round(double)), which MultiplyByQuantizedMultiplier does not for
    negative values; the two rounding modes must differ exactly there."""
    rng = seeded("fc ties")
    g = kc.Graph(converted(functools.partial(_fc_model, "20_to_7"), "fc 20_to_7"))
    op = g.only("FULLY_CONNECTED")
    units, depth = g.shape(op.inputs[1])
    g.set_quant(op.inputs[0], 0.5, 3)
    g.set_quant(op.inputs[1], np.full(units, 0.25, np.float32), np.zeros(units, np.int64))
    g.set_quant(op.inputs[2], np.full(units, 0.125, np.float32), np.zeros(units, np.int64))
    g.set_array(op.inputs[2], np.zeros(units, np.int32))
    g.set_array(op.inputs[1], rng.integers(-3, 4, size=(units, depth), dtype=np.int8))
    g.set_quant(op.outputs[0], 1.0, 0)
    model = g.to_bytes()
    w, bias = _weights(g, op)
    lib_double, lib_gemmlowp, expected = [], [], []
    portable = runtimes["portable"]
    for _ in range(20):
        x = kc.random_int8(rng, (1, depth))
        expected.append(kc.reference(model, [x])[0])
        lib_double.append(portable.fully_connected(fc_params(g, op), x, w, bias))
        lib_gemmlowp.append(portable.fully_connected(fc_params(g, op, "gemmlowp"), x, w, bias))
    expected = np.concatenate(expected).ravel()
    np.testing.assert_array_equal(np.concatenate(lib_double).ravel(), expected)
    differ = np.concatenate(lib_gemmlowp).ravel() != expected
    assert differ.any()
    # Where they differ, gemmlowp rounded a negative half up (toward zero) by exactly 1.
    assert np.all(np.concatenate(lib_gemmlowp).ravel()[differ] == expected[differ] + 1)


def _round_half_away(v):
    """std::round of a double, exactly (v - floor(v) is exact for doubles)."""
    a = abs(v)
    f = float(np.floor(a))
    r = f + (1.0 if a - f >= 0.5 else 0.0)
    return int(-r if v < 0 else r)


def test_round_double_scale_matches_ieee_double(runtimes):
    """tfedge_round_double_scale(acc, scale) == (int32_t)round(double(acc) * scale) for random,
    tie-producing and rounding-boundary cases (Python floats are IEEE doubles)."""
    import ctypes

    rng = seeded("round double")
    for rt in runtimes.values():
        f = rt.lib.tfedge_round_double_scale
        f.restype = ctypes.c_int32
        f.argtypes = [ctypes.c_int32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_int32]
    cases = []
    for _ in range(3000):
        s = kc.log_uniform(rng, 1e-9, 10.0)
        acc = (int(rng.integers(-2**31, 2**31)) if rng.random() < 0.3
               else int(rng.integers(-2**20, 2**20)))
        cases.append((acc, s))
    for _ in range(2000):  # short significands: exact halves
        s = float(rng.integers(1, 64)) * 2.0 ** -int(rng.integers(1, 12))
        cases.append((int(rng.integers(-5000, 5000)), s))
    for _ in range(2000):  # products within an ulp or two of n + 1/2
        acc = int(rng.integers(1, 2**24)) * int(rng.choice([-1, 1]))
        s = abs((int(rng.integers(-200, 200)) + 0.5) / acc)
        for _ in range(int(rng.integers(0, 3))):
            s = float(np.nextafter(s, np.inf if rng.random() < 0.5 else 0.0))
        cases.append((acc, s))
    for _ in range(200):
        # 3 * mant = 2q + 1 exactly: the double product is a tie between q and q + 1 at 53 bits,
        # and q's low 22 bits 0x1FFFFF put that tie on an integer-rounding boundary.
        q = (int(rng.integers(3 << 29, 1 << 31)) << 22) | 0x1FFFFF
        while q % 3 != 1:
            q += 1 << 22
        mant = (2 * q + 1) // 3
        cases.append((int(rng.choice([-3, 3])), mant * 2.0 ** -23))
    cases += [(-2**31, 1.0), (2**31 - 1, 1.0), (-2**31, 0.5), (2**31 - 1, 2.0), (0, 0.3),
              (-7, 0.0), (1, 2.0 ** -60), (-1, 0.5), (1, 0.5), (-3, 0.5), (3, 0.5)]
    for acc, s in cases:
        r = _round_half_away(float(acc) * s)
        expected = r if -2**31 <= r < 2**31 else -2**31
        lo, hi, e = quant.double_scale(s)
        for variant, rt in runtimes.items():
            got = rt.lib.tfedge_round_double_scale(acc, lo & 0xFFFFFFFF, hi, e)
            assert got == expected, (variant, acc, s, got, expected)


# ---------------------------------------------------------------------------------------------
# ADD, MUL
# ---------------------------------------------------------------------------------------------

BINARY_SHAPES = {
    "same_shape": ((6, 6, 8), (6, 6, 8)),
    "channel_broadcast": ((6, 6, 8), (1, 1, 8)),  # squeeze-excite scale
    "cross_broadcast": ((5, 1, 8), (1, 4, 1)),
    "scalar_like": ((3, 5, 7), (1, 1, 1)),
    "large_same_shape": ((12, 12, 8), (12, 12, 8)),  # >= 512 elements: ADD's table path
    "large_channel_broadcast": ((10, 10, 8), (1, 1, 8)),
}


def _binary_model(op, shapes, activation):
    _, _, tf = _keras()

    def fn(t):
        y = t[0] + t[1] if op == "ADD" else t[0] * t[1]
        return tf.nn.relu(y) if activation else y

    return _two_inputs(*shapes, fn)


@integration
@pytest.mark.parametrize("op_name", ["ADD", "MUL"])
@pytest.mark.parametrize("shapes", sorted(BINARY_SHAPES))
def test_add_mul(runtimes, op_name, shapes):
    key = f"{op_name} {shapes}"
    rng = seeded(key)
    activation = shapes == "channel_broadcast"
    model_bytes = converted(functools.partial(_binary_model, op_name, BINARY_SHAPES[shapes],
                                              activation), key)
    for trial in range(6):
        g = kc.Graph(model_bytes)
        op = g.only(op_name)
        a_i, b_i, o_i = op.inputs[0], op.inputs[1], op.outputs[0]
        if trial:
            randomize_activation(g, a_i, rng)
            randomize_activation(g, b_i, rng)
            if op_name == "ADD":
                out_scale = max(g.scale(a_i), g.scale(b_i)) * 2 ** rng.uniform(-1, 2)
            else:
                out_scale = g.scale(a_i) * g.scale(b_i) * 128 * 2 ** rng.uniform(-2, 2)
            g.set_quant(o_i, out_scale, rng.integers(-128, 128))
        act = kc.ACTIVATION_NAMES[op.builtinOptions.fusedActivationFunction]
        assert (act == "RELU") == activation
        kwargs = dict(input1_scale=g.scale(a_i), input1_zero_point=g.zero_point(a_i),
                      input2_scale=g.scale(b_i), input2_zero_point=g.zero_point(b_i),
                      output_scale=g.scale(o_i), output_zero_point=g.zero_point(o_i),
                      activation=act)
        params = quant.add(**kwargs) if op_name == "ADD" else quant.mul(**kwargs)
        bparams = quant.broadcast(g.shape(a_i), g.shape(b_i))
        model = g.to_bytes()
        for _ in range(3):
            x1, x2 = kc.random_int8(rng, g.shape(a_i)), kc.random_int8(rng, g.shape(b_i))
            check(runtimes, kc.reference(model, [x1, x2])[0],
                  lambda rt: rt.binary(op_name.lower(), params, bparams, x1, x2),
                  f"{op_name} {shapes} trial {trial}")


# ---------------------------------------------------------------------------------------------
# AVERAGE_POOL_2D, MAX_POOL_2D, MEAN
# ---------------------------------------------------------------------------------------------

POOL_VARIANTS = {
    "2x2_stride2_valid": dict(shape=(8, 9, 5), pool=2, strides=2, padding="valid"),
    "3x3_stride2_same": dict(shape=(9, 7, 6), pool=3, strides=2, padding="same"),
    "3x3_stride1_same": dict(shape=(5, 6, 4), pool=3, strides=1, padding="same"),
    "global_7x7": dict(shape=(7, 7, 3), pool=7, strides=1, padding="valid"),
    "3x2_stride_12_same": dict(shape=(8, 8, 2), pool=(3, 2), strides=(1, 2), padding="same"),
}


def _pool_model(kind, name):
    _, layers, _ = _keras()
    v = POOL_VARIANTS[name]
    layer = layers.AveragePooling2D if kind == "AVERAGE_POOL_2D" else layers.MaxPooling2D
    return _one_input(v["shape"], layer(v["pool"], v["strides"], padding=v["padding"]))


@integration
@pytest.mark.parametrize("kind", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("name", sorted(POOL_VARIANTS))
def test_pool2d(runtimes, kind, name):
    key = f"{kind} {name}"
    rng = seeded(key)
    for trial in range(3):
        g = kc.Graph(converted(functools.partial(_pool_model, kind, name), key))
        op = g.only(kind)
        x_i, o_i = op.inputs[0], op.outputs[0]
        o = op.builtinOptions
        if trial:
            # Pools keep the input's quantization; the fused activation varies the clamp.
            scale, zp = kc.log_uniform(rng, 1e-3, 0.5), int(rng.integers(-128, 128))
            g.set_quant(x_i, scale, zp)
            g.set_quant(o_i, scale, zp)
            o.fusedActivationFunction = [0, 1, 3][trial % 3]
        params = quant.pool2d(input_shape=g.shape(x_i), output_shape=g.shape(o_i),
                              filter_size=(o.filterHeight, o.filterWidth),
                              strides=(o.strideH, o.strideW), padding=kc.PADDING_NAMES[o.padding],
                              output_scale=g.scale(o_i), output_zero_point=g.zero_point(o_i),
                              activation=kc.ACTIVATION_NAMES[o.fusedActivationFunction])
        model = g.to_bytes()
        short = "avg" if kind == "AVERAGE_POOL_2D" else "max"
        for _ in range(3):
            x = kc.random_int8(rng, g.shape(x_i))
            check(runtimes, kc.reference(model, [x])[0], lambda rt: rt.pool(short, params, x),
                  f"{kind} {name} trial {trial}")


MEAN_VARIANTS = {
    "hw_global_average_pooling": dict(shape=(7, 6, 8), axes=None, keepdims=False),
    "hw_keepdims": dict(shape=(5, 5, 12), axes=None, keepdims=True),
    "channels": dict(shape=(4, 5, 6), axes=[3], keepdims=True),
    "height": dict(shape=(6, 4, 3), axes=[1], keepdims=False),
    "height_channels": dict(shape=(3, 4, 5), axes=[1, 3], keepdims=True),
    "hw_large_count": dict(shape=(32, 33, 2), axes=None, keepdims=False),
}


def _mean_model(name):
    _, layers, tf = _keras()
    v = MEAN_VARIANTS[name]
    if v["axes"] is None:
        return _one_input(v["shape"], layers.GlobalAveragePooling2D(keepdims=v["keepdims"]))
    return _one_input(v["shape"], layers.Lambda(
        lambda x: tf.reduce_mean(x, axis=v["axes"], keepdims=v["keepdims"])))


@integration
@pytest.mark.parametrize("name", sorted(MEAN_VARIANTS))
def test_mean(runtimes, name):
    rng = seeded(name)
    for trial in range(5):
        g = kc.Graph(converted(functools.partial(_mean_model, name), f"mean {name}"))
        op = g.only("MEAN")
        x_i, axes_i, o_i = op.inputs[0], op.inputs[1], op.outputs[0]
        if trial:
            randomize_activation(g, x_i, rng, (1e-3, 0.1))
            g.set_quant(o_i, g.scale(x_i) * 2 ** rng.uniform(-2, 2), rng.integers(-128, 128))
        axes = g.array(axes_i, np.int32).ravel()
        params = quant.mean(input_shape=g.shape(x_i), axes=axes, input_scale=g.scale(x_i),
                            input_zero_point=g.zero_point(x_i), output_scale=g.scale(o_i),
                            output_zero_point=g.zero_point(o_i))
        model = g.to_bytes()
        n_out = int(np.prod(g.shape(o_i)))
        for _ in range(3):
            x = kc.random_int8(rng, g.shape(x_i))
            check(runtimes, kc.reference(model, [x])[0], lambda rt: rt.mean(params, x, n_out),
                  f"MEAN {name} trial {trial}")


# ---------------------------------------------------------------------------------------------
# SOFTMAX, LOGISTIC, HARD_SWISH
# ---------------------------------------------------------------------------------------------

@integration
@pytest.mark.parametrize("shape", [(10,), (3, 3, 7), (1, 50)])
def test_softmax(runtimes, shape):
    _, layers, _ = _keras()
    key = f"softmax {shape}"
    rng = seeded(key)
    for trial in range(6):
        g = kc.Graph(converted(functools.partial(_one_input, shape, layers.Softmax()), key))
        op = g.only("SOFTMAX")
        x_i = op.inputs[0]
        if trial:
            randomize_activation(g, x_i, rng, (2e-3, 0.3))
            op.builtinOptions.beta = [1.0, 0.5, 2.0, 1.7, 0.25][trial - 1]
        params = quant.softmax(input_shape=g.shape(x_i), input_scale=g.scale(x_i),
                               beta=op.builtinOptions.beta)
        model = g.to_bytes()
        for _ in range(4):
            x = kc.random_int8(rng, g.shape(x_i))
            if trial % 2:
                x = (x // 16).astype(np.int8)  # close values: many exps count
            check(runtimes, kc.reference(model, [x])[0], lambda rt: rt.softmax(params, x),
                  f"SOFTMAX {shape} trial {trial}")


ALL_INT8 = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16)


def _activation_cases(rng, layer_fn, op_name, key, randomize):
    g0 = kc.Graph(converted(functools.partial(_one_input, (16, 16), layer_fn()), key))
    for trial in range(12):
        g = kc.Graph(g0.to_bytes())
        op = g.only(op_name)
        if trial:
            randomize(g, op)
        yield g, op, g.to_bytes()


@integration
def test_logistic(runtimes):
    _, layers, _ = _keras()
    rng = seeded("logistic")

    def randomize(g, op):
        randomize_activation(g, op.inputs[0], rng, (1e-3, 0.5))

    for g, op, model in _activation_cases(rng, lambda: layers.Activation("sigmoid"), "LOGISTIC",
                                          "logistic", randomize):
        x_i = op.inputs[0]
        table = quant.logistic_lut(input_scale=g.scale(x_i), input_zero_point=g.zero_point(x_i),
                                   output_scale=g.scale(op.outputs[0]),
                                   output_zero_point=g.zero_point(op.outputs[0]))
        check(runtimes, kc.reference(model, [ALL_INT8])[0], lambda rt: rt.lut(table, ALL_INT8),
              f"LOGISTIC scale {g.scale(x_i)} zero point {g.zero_point(x_i)}")


@integration
def test_hard_swish(runtimes):
    _, layers, tf = _keras()
    rng = seeded("hard_swish")

    def randomize(g, op):
        randomize_activation(g, op.inputs[0], rng, (1e-3, 0.5))
        # TFLite needs output_scale > input_scale / 128; also try ranges wider than [-3, 3].
        g.set_quant(op.outputs[0], g.scale(op.inputs[0]) * 2 ** rng.uniform(-5, 2),
                    rng.integers(-128, 128))

    for g, op, model in _activation_cases(
            rng, lambda: layers.Lambda(lambda x: x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)),
            "HARD_SWISH", "hard_swish", randomize):
        x_i, o_i = op.inputs[0], op.outputs[0]
        params = quant.hard_swish(input_scale=g.scale(x_i), input_zero_point=g.zero_point(x_i),
                                  output_scale=g.scale(o_i), output_zero_point=g.zero_point(o_i))
        expected = kc.reference(model, [ALL_INT8])[0]
        what = f"HARD_SWISH {params.fields}"
        check(runtimes, expected, lambda rt: rt.hard_swish(params, ALL_INT8), what)
        table = quant.hard_swish_lut(params)
        check(runtimes, expected, lambda rt: rt.lut(table, ALL_INT8), what + " (table)")


# ---------------------------------------------------------------------------------------------
# QUANTIZE
# ---------------------------------------------------------------------------------------------

@integration
def test_quantize(runtimes):
    """uint8 -> int8 and int8 -> uint8 (the converter's I/O ops), then int8 -> int8 and other
    scales (the same op edited)."""
    _, layers, _ = _keras()
    rng = seeded("quantize")
    base = converted(functools.partial(_one_input, (4, 4, 8), layers.Conv2D(4, 1)), "quantize",
                     input_type="uint8", output_type="uint8")
    x_u8 = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    for trial in range(10):
        for which in (0, 1):
            g = kc.Graph(base)
            op = g.only("QUANTIZE", -which)  # the first (u8 -> i8) or the last (i8 -> u8)
            x_i, o_i = op.inputs[0], op.outputs[0]
            in_dtype, out_dtype = (np.uint8, np.int8) if which == 0 else (np.int8, np.uint8)
            if trial:
                if which == 1 and trial % 2:
                    g.set_type(o_i, "INT8")
                    out_dtype = np.int8
                lo = 0 if in_dtype == np.uint8 else -128
                g.set_quant(x_i, kc.log_uniform(rng, 1e-3, 0.1), rng.integers(lo, lo + 256))
                lo = 0 if out_dtype == np.uint8 else -128
                g.set_quant(o_i, g.scale(x_i) * 2 ** rng.uniform(-3, 3), rng.integers(lo, lo + 256))
            # Only int8 <-> uint8 is tested against shapes [1, 4, 4, 8]: feed all 256 values.
            g.tensor(x_i).shape = np.array([1, 16, 16], np.int32)
            g.tensor(o_i).shape = np.array([1, 16, 16], np.int32)
            params = quant.requantize(input_scale=g.scale(x_i), input_zero_point=g.zero_point(x_i),
                                      output_scale=g.scale(o_i),
                                      output_zero_point=g.zero_point(o_i))
            x = x_u8 if in_dtype == np.uint8 else x_u8.view(np.int8)
            check(runtimes, kc.reference(g.to_bytes(), [x])[0],
                  lambda rt: rt.requantize(params, x, in_dtype, out_dtype),
                  f"QUANTIZE {np.dtype(in_dtype).name}->{np.dtype(out_dtype).name} {params.fields}")


# ---------------------------------------------------------------------------------------------
# RESHAPE, CONCATENATION, SPLIT, SPLIT_V, TRANSPOSE, PAD
# ---------------------------------------------------------------------------------------------

@integration
def test_reshape(runtimes):
    _, layers, _ = _keras()
    rng = seeded("reshape")
    g = kc.Graph(converted(functools.partial(_one_input, (5, 5, 8), layers.Reshape((-1, 4))),
                           "reshape"))
    op = g.only("RESHAPE")
    x = kc.random_int8(rng, g.shape(op.inputs[0]))
    check(runtimes, kc.reference(g.to_bytes(), [x])[0], lambda rt: rt.copy(x), "RESHAPE")


CONCAT_VARIANTS = {
    "channels_2": ([(6, 6, 8), (6, 6, 4)], -1),
    "channels_3_odd": ([(3, 5, 3), (3, 5, 5), (3, 5, 1)], 3),
    "height": ([(2, 4, 3), (5, 4, 3)], 1),
    "width": ([(4, 2, 6), (4, 3, 6)], 2),
}


def _concat_model(name):
    keras, layers, _ = _keras()
    shapes, axis = CONCAT_VARIANTS[name]
    inputs = [keras.Input(s) for s in shapes]
    return keras.Model(inputs, layers.Concatenate(axis=axis)(inputs)), shapes


@integration
@pytest.mark.parametrize("name", sorted(CONCAT_VARIANTS))
def test_concatenation(runtimes, name):
    rng = seeded(name)
    for trial in range(3):
        g = kc.Graph(converted(functools.partial(_concat_model, name), f"concat {name}"))
        op = g.only("CONCATENATION")
        if trial:
            # int8 CONCATENATION requires the inputs' quantization to equal the output's.
            scale, zp = kc.log_uniform(rng, 1e-3, 0.5), int(rng.integers(-128, 128))
            for i in list(op.inputs) + list(op.outputs):
                g.set_quant(i, scale, zp)
        shapes = [g.shape(i) for i in op.inputs]
        params = quant.concatenation(input_shapes=shapes, axis=op.builtinOptions.axis)
        xs = [kc.random_int8(rng, s) for s in shapes]
        check(runtimes, kc.reference(g.to_bytes(), xs)[0],
              lambda rt: rt.concatenation(params, xs), f"CONCATENATION {name} trial {trial}")


@integration
def test_concatenation_requantizes_inputs(runtimes):
    """Inputs in other quantizations: each slice must equal LiteRT's QUANTIZE of that input."""
    _, layers, _ = _keras()
    rng = seeded("concat requant")
    base = converted(functools.partial(_one_input, (4, 4, 8), layers.Conv2D(4, 1)),
                     "quantize", input_type="uint8", output_type="uint8")
    shapes, axis = [(1, 3, 4, 5), (1, 3, 4, 2), (1, 3, 4, 3)], 3
    out_scale, out_zp = 0.05, -7
    xs = [kc.random_int8(rng, s) for s in shapes]
    requants, expected = [], []
    for i, x in enumerate(xs):
        if i == 1:  # same quantization as the output: a plain copy
            requants.append(None)
            expected.append(x)
            continue
        g = kc.Graph(base)
        op = g.only("QUANTIZE", -1)
        g.set_type(op.outputs[0], "INT8")
        scale, zp = kc.log_uniform(rng, 0.01, 0.2), int(rng.integers(-128, 128))
        g.set_quant(op.inputs[0], scale, zp)
        g.set_quant(op.outputs[0], out_scale, out_zp)
        for t in (op.inputs[0], op.outputs[0]):
            g.tensor(t).shape = np.array(x.shape, np.int32)
        requants.append(quant.requantize(input_scale=scale, input_zero_point=zp,
                                         output_scale=out_scale, output_zero_point=out_zp))
        expected.append(kc.reference(g.to_bytes(), [x])[0])
    params = quant.concatenation(input_shapes=shapes, axis=axis)
    check(runtimes, np.concatenate(expected, axis=axis),
          lambda rt: rt.concatenation(params, xs, requants), "CONCATENATION with requantization")


SPLIT_VARIANTS = {
    "split_channels_2": ((5, 5, 8), 2, -1),
    "split_v_channels": ((5, 5, 8), [3, 5], -1),
    "split_height_3": ((6, 2, 3), 3, 1),
    "split_v_width": ((3, 7, 2), [1, 4, 2], 2),
}


@integration
@pytest.mark.parametrize("name", sorted(SPLIT_VARIANTS))
def test_split(runtimes, name):
    _, layers, tf = _keras()
    shape, sizes, axis = SPLIT_VARIANTS[name]
    op_name = "SPLIT" if isinstance(sizes, int) else "SPLIT_V"
    rng = seeded(name)
    g = kc.Graph(converted(functools.partial(
        _one_input, shape, layers.Lambda(lambda x: tf.split(x, sizes, axis=axis))), f"split {name}"))
    op = g.only(op_name)
    x_i = op.inputs[1] if op_name == "SPLIT" else op.inputs[0]
    full = (1, *shape)
    ax = axis % len(full)
    parts = [full[ax] // sizes] * sizes if isinstance(sizes, int) else sizes
    params = quant.split(input_shape=g.shape(x_i), axis=ax, sizes=parts)
    for _ in range(3):
        x = kc.random_int8(rng, g.shape(x_i))
        expected = kc.reference(g.to_bytes(), [x])
        out_sizes = [e.size for e in expected]
        for k, e in enumerate(expected):
            check(runtimes, e, lambda rt: rt.split(params, x, out_sizes)[k], f"{op_name} {name}")


TRANSPOSE_VARIANTS = {
    "4d_hw_swap": ((4, 5, 6), (0, 2, 1, 3)),
    "4d_nchw": ((3, 4, 5), (0, 3, 1, 2)),
    "5d_channel_shuffle": ((3, 4, 2, 5), (0, 1, 2, 4, 3)),
    "5d_reverse": ((2, 3, 4, 5), (0, 4, 3, 2, 1)),
    "3d": ((6, 7), (0, 2, 1)),
}


@integration
@pytest.mark.parametrize("name", sorted(TRANSPOSE_VARIANTS))
def test_transpose(runtimes, name):
    _, layers, tf = _keras()
    shape, perm = TRANSPOSE_VARIANTS[name]
    rng = seeded(name)
    g = kc.Graph(converted(functools.partial(
        _one_input, shape, layers.Lambda(lambda x: tf.transpose(x, perm))), f"transpose {name}"))
    op = g.only("TRANSPOSE")
    x_i = op.inputs[0]
    perm_tensor = g.array(op.inputs[1], np.int32).ravel()
    params = quant.transpose(input_shape=g.shape(x_i), perm=perm_tensor)
    for _ in range(3):
        x = kc.random_int8(rng, g.shape(x_i))
        check(runtimes, kc.reference(g.to_bytes(), [x])[0], lambda rt: rt.transpose(params, x),
              f"TRANSPOSE {name}")


@integration
@pytest.mark.parametrize("padding", [((1, 2), (0, 1)), ((0, 0), (3, 0)), ((2, 2), (2, 2))])
def test_pad(runtimes, padding):
    _, layers, _ = _keras()
    key = f"pad {padding}"
    rng = seeded(key)
    for trial in range(3):
        g = kc.Graph(converted(functools.partial(_one_input, (4, 5, 3),
                                                 layers.ZeroPadding2D(padding)), key))
        op = g.only("PAD")
        x_i, o_i = op.inputs[0], op.outputs[0]
        if trial:
            scale, zp = kc.log_uniform(rng, 1e-3, 0.5), int(rng.integers(-128, 128))
            g.set_quant(x_i, scale, zp)
            g.set_quant(o_i, scale, zp)
        params = quant.pad(input_shape=g.shape(x_i),
                           paddings=g.array(op.inputs[1], np.int32),
                           pad_value=g.zero_point(o_i))
        x = kc.random_int8(rng, g.shape(x_i))
        n_out = int(np.prod(g.shape(o_i)))
        check(runtimes, kc.reference(g.to_bytes(), [x])[0], lambda rt: rt.pad(params, x, n_out),
              f"PAD {padding} trial {trial}")


# ---------------------------------------------------------------------------------------------
# quant.py details, the header, the Cortex-M builds
# ---------------------------------------------------------------------------------------------

def test_quantize_multiplier_edge_cases():
    assert quant.quantize_multiplier(0.0) == (0, 0)
    assert quant.quantize_multiplier(0.5) == (1 << 30, 0)
    assert quant.quantize_multiplier(1.0) == (1 << 30, 1)
    # A significand that rounds up to 2^31 is halved and the shift bumped.
    assert quant.quantize_multiplier(1.0 - 2.0 ** -40) == (1 << 30, 1)
    # Below 2^-32 the multiplier flushes to zero.
    assert quant.quantize_multiplier(2.0 ** -33) == (0, 0)
    assert quant.quantize_multiplier(0.3) == (1288490189, -1)
    assert quant.downscale_int32_to_int16_multiplier(1288490189) == 19661
    assert quant.downscale_int32_to_int16_multiplier(2**31 - 1) == 32767
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        quant.quantize_multiplier_smaller_than_one_exp(1.5)


def test_activation_range_and_padding():
    assert quant.activation_range("RELU6", 0.05, -10) == (-10, 110)
    assert quant.activation_range("RELU", 0.05, -128) == (-128, 127)
    assert quant.activation_range(None, 1.0, 0) == (-128, 127)
    with pytest.raises(ValueError, match="activation"):
        quant.activation_range("TANH", 1.0, 0)
    assert quant.compute_padding(9, 3, 2, 1, "SAME") == (1, 5)
    assert quant.compute_padding(10, 3, 2, 1, "SAME") == (0, 5)
    assert quant.compute_padding(9, 3, 1, 2, "VALID") == (0, 5)


def test_double_scale_is_exact():
    for s in (0.1, 0.125, 3.0e-5, 1.7, 2.0 ** -60):
        lo, hi, e = quant.double_scale(s)
        assert ((hi << 32) | (lo & 0xFFFFFFFF)) * 2.0 ** e == s


def _header_structs():
    text = (kc.runtime_dir() / "tfedge_kernels.h").read_text()
    structs = {}
    for body, name in re.findall(r"typedef struct \{(.*?)\}\s*(\w+);", text, re.S):
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        fields = []
        for decl in body.split(";"):
            decl = decl.strip()
            if not decl:
                continue
            assert decl.startswith("int32_t "), decl
            for part in decl[len("int32_t "):].split(","):
                m = re.fullmatch(r"\s*(\w+)\s*(?:\[(\w+)\])?\s*", part)
                fields.append((m.group(1), m.group(2)))
        structs[name] = fields
    return structs


def _sample_params():
    conv = dict(input_scale=0.02, input_zero_point=1, filter_scales=[0.01, 0.02],
                output_scale=0.1, output_zero_point=-3)
    return [
        quant.conv2d(input_shape=(1, 5, 5, 4), filter_shape=(2, 3, 3, 4),
                     output_shape=(1, 5, 5, 2), **conv),
        quant.depthwise_conv2d(input_shape=(1, 5, 5, 2), filter_shape=(1, 3, 3, 2),
                               output_shape=(1, 5, 5, 2), **conv),
        quant.fully_connected(input_size=8, filter_shape=(2, 8), **conv),
        quant.broadcast((1, 2, 2, 3), (1, 1, 1, 3)),
        quant.add(input1_scale=0.1, input1_zero_point=0, input2_scale=0.2, input2_zero_point=1,
                  output_scale=0.3, output_zero_point=2),
        quant.mul(input1_scale=0.1, input1_zero_point=0, input2_scale=0.2, input2_zero_point=1,
                  output_scale=0.3, output_zero_point=2),
        quant.pool2d(input_shape=(1, 4, 4, 2), output_shape=(1, 2, 2, 2), filter_size=2,
                     strides=2),
        quant.mean(input_shape=(1, 4, 4, 2), axes=[1, 2], input_scale=0.1, input_zero_point=0,
                   output_scale=0.1, output_zero_point=0),
        quant.softmax(input_shape=(1, 10), input_scale=0.1),
        quant.hard_swish(input_scale=0.1, input_zero_point=0, output_scale=0.05,
                         output_zero_point=3),
        quant.requantize(input_scale=0.1, input_zero_point=0, output_scale=0.2,
                         output_zero_point=1),
        quant.concatenation(input_shapes=[(1, 2, 3), (1, 2, 4)], axis=2),
        quant.split(input_shape=(1, 2, 6), axis=2, sizes=[2, 4]),
        quant.transpose(input_shape=(1, 2, 3), perm=(0, 2, 1)),
        quant.pad(input_shape=(1, 2, 2, 1), paddings=[[0, 0], [1, 1], [1, 1], [0, 0]],
                  pad_value=-4),
    ]


def test_params_match_header_structs():
    """quant.py's field dicts are the C structs' fields in declaration order, so that code
    generators can emit initializers (and the ctypes bindings here are right)."""
    structs = _header_structs()
    seen = set()
    for params in _sample_params():
        fields = structs[params.struct]
        assert list(params.fields) == [name for name, _ in fields], params.struct
        for (name, size), value in zip(fields, params.fields.values()):
            if size is None:
                assert isinstance(value, int), (params.struct, name)
            else:
                assert len(value) == {"TFEDGE_MAX_DIMS": quant.MAX_DIMS,
                                      "TFEDGE_MEAN_DIMS": quant.MEAN_DIMS}[size]
        seen.add(params.struct)
    assert seen == set(structs), set(structs) - seen


def _arm_gcc():
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    return gcc


@pytest.mark.parametrize("target", sorted(kc.ARM_TARGETS))
def test_sources_compile_for_cortex_m(target, tmp_path):
    """-Werror builds of every source at -O2 (asm loops), -Os and -O0 (the same loops from C
    intrinsics); on these cores the DSP (SMLAD) loops are compiled in."""
    gcc = _arm_gcc()
    for opt in ("-O2", "-Os", "-O0"):
        flags = [f for f in kc.FLAGS if f != "-O2"] + [opt]
        for source in kc.runtime_sources():
            obj = tmp_path / f"{source.stem}{opt}.o"
            result = subprocess.run([gcc, *flags, *kc.ARM_TARGETS[target], "-c", str(source),
                                     "-o", str(obj)], capture_output=True, text=True)
            assert result.returncode == 0, f"{opt}: {result.stderr}"
    objdump = shutil.which("arm-none-eabi-objdump")
    if objdump:
        text = subprocess.run([objdump, "-d", str(tmp_path / "tfedge_conv-O2.o")],
                              capture_output=True, text=True).stdout
        assert "smlad" in text and "sxtb16" in text


def test_sources_compile_warning_free_on_host(tmp_path):
    for flags in kc.VARIANTS.values():
        for source in kc.runtime_sources():
            result = subprocess.run(["gcc", *kc.FLAGS, "-pedantic", *flags, "-c", str(source),
                                     "-o", str(tmp_path / (source.stem + ".o"))],
                                    capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
