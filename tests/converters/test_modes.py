"""The conversion modes besides int8: int16x8, dynamic range, float16, float32; calibration by
batches; gzip size; and how each mode fares on LiteRT and TFLM."""

import gzip

import numpy as np
import pytest

from tfedge.converters import interpreter as litert
from tfedge.converters import tflite, tflite_reader, tflm

# --- Calibration limits: no conversion, no TensorFlow.

SHAPE = (4, 4, 1)


def numbered_batches(sizes):
    """Batches of images whose pixels hold their image's number, and a log of what was drawn."""
    images = np.repeat(np.arange(sum(sizes), dtype=np.float32), 16).reshape(-1, *SHAPE)
    starts = np.cumsum([0] + list(sizes))
    drawn = []

    def data():
        for b, (start, stop) in enumerate(zip(starts[:-1], starts[1:])):
            drawn.append(b)
            yield images[start:stop], np.zeros(stop - start, np.int32)

    return data, drawn


def numbers(samples):
    return [int(s[0][0, 0, 0, 0]) for s in samples]


def test_num_batches_takes_every_image_of_the_first_batches_and_draws_no_more():
    data, drawn = numbered_batches([5, 5, 5, 5, 3])
    assert numbers(tflite.representative_samples(data, SHAPE, num_batches=2)) == list(range(10))
    assert drawn == [0, 1]  # the third batch was never drawn
    drawn.clear()
    assert numbers(tflite.representative_samples(data, SHAPE, num_batches=9)) == list(range(23))
    assert drawn == [0, 1, 2, 3, 4]


def test_num_samples_caps_the_images_of_num_batches_and_spans_batches_alone():
    data, drawn = numbered_batches([5, 5, 5, 5, 3])
    capped = tflite.representative_samples(data, SHAPE, num_samples=7, num_batches=3)
    assert numbers(capped) == list(range(7))
    assert drawn == [0, 1]  # stops as soon as the 7th image is out
    assert numbers(tflite.representative_samples(data, SHAPE, 12)) == list(range(12))
    assert numbers(tflite.representative_samples(data, SHAPE, num_samples=12)) == list(range(12))


def test_default_is_200_samples_as_before():
    data, _ = numbered_batches([64] * 5)
    assert numbers(tflite.representative_samples(data, SHAPE)) == list(range(200))
    unset = dict(num_samples=None, num_batches=None)  # how tfedge.pipeline forwards its options
    assert len(list(tflite.representative_samples(data, SHAPE, **unset))) == 200
    assert tflite.calibration_limits() == (200, None)
    assert tflite.calibration_limits(num_batches=3) == (None, 3)


def test_a_numpy_array_is_one_batch():
    images = np.zeros((30, *SHAPE), np.float32)
    assert len(list(tflite.representative_samples(images, SHAPE, num_batches=1))) == 30
    assert len(list(tflite.representative_samples(images, SHAPE, num_batches=1,
                                                  num_samples=4))) == 4


@pytest.mark.parametrize("name, value", [
    ("num_samples", 0), ("num_samples", -3), ("num_samples", True), ("num_samples", "10"),
    ("num_batches", 0), ("num_batches", 2.0), ("num_batches", [2]),
])
def test_bad_limits_are_refused_when_called_before_any_data_is_drawn(name, value):
    data, drawn = numbered_batches([5])
    message = (fr"`{name}` must be a positive integer, or None\. Received: "
               fr"{name}={value!r}".replace("[", r"\[").replace("]", r"\]"))
    with pytest.raises(ValueError, match=message):
        tflite.representative_samples(data, SHAPE, **{name: value})  # not even iterated
    assert drawn == []
    assert tflite.calibration_limits(np.int64(3), np.int32(2)) == (3, 2)


def test_gzip_size_is_deterministic_level_9():
    data = bytes(range(256)) * 64 + b"\x00" * 4096
    size = tflite.gzip_size(data)
    assert size == tflite.gzip_size(bytearray(data)) == tflite.gzip_size(memoryview(data))
    assert size == len(gzip.compress(data, compresslevel=9, mtime=0)) < len(data)
    assert size < len(gzip.compress(data, compresslevel=1, mtime=0))
    with pytest.raises(TypeError, match="Received: builtins.str"):
        tflite.gzip_size("model.tflite")


def test_check_full_integer_refuses_unknown_activations():
    with pytest.raises(ValueError, match=r"one of \['int16', 'int8'\]. Received: "
                                         r"activations='int4'"):
        tflite.check_full_integer(b"", activations="int4")


# --- Conversions.

integration = pytest.mark.integration


@pytest.fixture(scope="module")
def small_net(digits):
    """A functional conv net without FULLY_CONNECTED (its classifier is a 4x4 conv) that learns
    digits in 3 epochs: conv, depthwise, add, average pool, reshape, softmax."""
    from tfedge import training
    from tfedge._keras import keras, layers

    training.seed_everything(0)
    inputs = keras.Input(digits.input_shape)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.Add()([x, y])
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(digits.num_classes, 4)(x)
    x = layers.Reshape((digits.num_classes,))(x)
    model = keras.Model(inputs, layers.Softmax()(x), name="small_net")
    training.fit(model, digits, epochs=3, verbose=0)
    return model


@pytest.fixture(scope="module")
def small_int8(small_net, digits):
    return tflite.to_int8(small_net, digits.train(batch_size=32, shuffle=False), num_batches=4)


@pytest.fixture(scope="module")
def small_int16(small_net, digits):
    return tflite.to_int16x8(small_net, digits.train(batch_size=32, shuffle=False),
                             num_batches=4)


@pytest.fixture(scope="module")
def wide():
    """An untrained net whose file is almost all weights, every kernel over the converter's
    1024-element threshold for dynamic-range quantization; in the three float-I/O modes."""
    from tfedge import training
    from tfedge._keras import keras, layers

    training.seed_everything(0)
    model = keras.Sequential([
        keras.Input((16, 16, 8)), layers.Conv2D(64, 3, activation="relu"), layers.Conv2D(64, 3),
        layers.Flatten(), layers.Dense(10),
    ], name="wide")
    return model, {"float32": tflite.to_float32(model),
                   "dynamic": tflite.to_dynamic_range(model),
                   "float16": tflite.to_float16(model)}


def accuracy(tflite_bytes, x, y):
    """Top-1 accuracy in LiteRT; integer inputs quantized with the input's scale and zero point."""
    interp = litert.make_interpreter(tflite_bytes)
    detail = interp.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    correct = 0
    for image, label in zip(x, y):
        sample = image[None]
        if np.issubdtype(detail["dtype"], np.integer):
            sample = litert.quantize(sample, scale, zero_point, detail["dtype"])
        correct += int(np.argmax(litert.invoke(interp, [sample])[0]) == label)
    return correct / len(y)


def io_tensors(tflite_bytes):
    main = tflite_reader.read_tflite(tflite_bytes).subgraphs[0]
    return [main.tensors[i] for i in main.inputs + main.outputs]


@integration
def test_int16x8_has_int16_io_int8_weights_and_no_float_op(small_int16):
    assert [(t.type_name, t.shape) for t in io_tensors(small_int16)] == [
        ("INT16", (1, 32, 32, 1)), ("INT16", (1, 10))]
    assert all(t.quantization.zero_point == (0,) for t in io_tensors(small_int16))  # symmetric
    assert tflite.float_ops(small_int16) == []
    model = tflite_reader.read_tflite(small_int16)
    main = model.subgraphs[0]
    convs = [op for op in main.operators if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convs) == 4
    for op in convs:
        weights, bias = main.tensors[op.inputs[1]], main.tensors[op.inputs[2]]
        assert (main.tensors[op.inputs[0]].type_name, weights.type_name, bias.type_name) == (
            "INT16", "INT8", "INT64")
    tflite.check_full_integer(small_int16, activations="int16")


@integration
def test_int16x8_accuracy_is_at_least_int8s_minus_one_point(small_net, small_int8, small_int16,
                                                            digits):
    float_accuracy = float(np.mean(np.argmax(small_net.predict(digits.x_val, verbose=0), -1)
                                   == digits.y_val))
    int8 = accuracy(small_int8, digits.x_val, digits.y_val)
    int16 = accuracy(small_int16, digits.x_val, digits.y_val)
    print(f"digits val accuracy: float {float_accuracy:.4f}, int8 {int8:.4f}, "
          f"int16x8 {int16:.4f}")
    assert float_accuracy > 0.8  # a model that learned something, or the comparison means little
    assert int16 >= int8 - 0.01
    assert abs(int16 - float_accuracy) <= 0.02  # int16 activations lose next to nothing


@integration
def test_each_mode_is_recognized_from_the_file(small_int8, small_int16, wide, float_tflite):
    _, files = wide
    found = {mode: tflite.quantization_mode(b) for mode, b in files.items()}
    found["int8"] = tflite.quantization_mode(small_int8)
    found["int16x8"] = tflite.quantization_mode(small_int16)
    assert found == {mode: mode for mode in tflite.MODES}
    assert tflite.quantization_mode(float_tflite) == "float32"  # MobileNetV2


@integration
def test_dynamic_range_and_float16_files_are_a_quarter_and_a_half_of_float32(wide):
    # Tolerance: 0.03 either way for per-channel scales, float32 biases and the flatbuffer's
    # own bytes (here the ratios come out at 0.256 and 0.503).
    _, files = wide
    float32 = len(files["float32"])
    ratios = {mode: len(files[mode]) / float32 for mode in ("dynamic", "float16")}
    print(f"sizes: float32 {float32} bytes, " +
          ", ".join(f"{m} {len(files[m])} ({r:.3f})" for m, r in ratios.items()))
    assert ratios["dynamic"] == pytest.approx(0.25, abs=0.03)
    assert ratios["float16"] == pytest.approx(0.5, abs=0.03)
    for mode in ("dynamic", "float16"):  # float I/O, and the same outputs to within rounding
        assert [t.type_name for t in io_tensors(files[mode])] == ["FLOAT32", "FLOAT32"]


@integration
def test_float_modes_compute_what_the_keras_model_does(wide):
    model, files = wide
    x = np.random.default_rng(0).random((1, 16, 16, 8), np.float32)
    expected = model(x).numpy()
    scale = np.abs(expected).max()
    tolerances = {"float32": 1e-5, "float16": 1e-2, "dynamic": 5e-2}  # relative to the largest
    for mode, tolerance in tolerances.items():
        out = litert.invoke(litert.make_interpreter(files[mode]), [x])[0]
        np.testing.assert_allclose(out, expected, atol=tolerance * scale, err_msg=mode)


@integration
def test_a_model_with_75_percent_zero_weights_gzips_far_smaller(wide):
    from tfedge._keras import keras

    model, files = wide
    sparse = keras.models.clone_model(model)
    rng = np.random.default_rng(0)
    weights = [w * (rng.random(w.shape) >= 0.75) if w.ndim > 1 else w
               for w in model.get_weights()]
    sparse.set_weights(weights)
    kernels = [w for w in weights if w.ndim > 1]
    assert np.mean(np.concatenate([k.ravel() for k in kernels]) == 0) == pytest.approx(0.75,
                                                                                       abs=0.01)
    dense_bytes, sparse_bytes = files["float32"], tflite.to_float32(sparse)
    assert len(sparse_bytes) == len(dense_bytes)  # zeros take room in a flatbuffer
    dense_gz, sparse_gz = tflite.gzip_size(dense_bytes), tflite.gzip_size(sparse_bytes)
    print(f"gzip: dense {dense_gz} bytes, 75% zeros {sparse_gz} bytes "
          f"({sparse_gz / dense_gz:.2f})")
    assert sparse_gz < 0.5 * dense_gz
    assert tflite.gzip_size(sparse_bytes) == sparse_gz


def tiny(layer_fn, shape=(8, 8, 4)):
    from tfedge import training
    from tfedge._keras import keras

    training.seed_everything(0)
    inputs = keras.Input(shape)
    return keras.Model(inputs, layer_fn(inputs))


def calibration(shape=(8, 8, 4)):
    return np.random.default_rng(1).normal(size=(32, *shape)).astype(np.float32)


@integration
def test_int16x8_names_the_op_it_has_no_kernel_for():
    from tfedge._keras import layers
    from tfedge.models import _layers

    model = tiny(lambda x: _layers.HardSwish()(layers.Conv2D(4, 1)(x)))
    with pytest.raises(tflite.ConversionError, match="to int16x8 failed") as info:
        tflite.to_int16x8(model, calibration())
    message = str(info.value)
    assert "int16x8 quantization has no kernel for HARD_SWISH; convert with to_int8" in message
    assert message.count("not yet supported for op: 'HARD_SWISH'") == 1


@integration
def test_a_relu6_bound_beyond_int32_steps_is_refused_naming_the_op():
    # Weights of 1e-6 keep the convolution's outputs near 4e-5: at int16 the output scale is
    # about 1.2e-9 and RELU6's bound 4.9e9 steps, beyond int32, which LiteRT's Prepare refuses
    # ("no_integer_overflow_from_quantization"). At int8 the scale is about 128x larger (1.6e-7)
    # and the bound fits.
    from tfedge._keras import layers

    def conv_relu6(x):
        conv = layers.Conv2D(4, 3, padding="same", kernel_initializer="ones")
        y = layers.ReLU(6.0)(conv(x))
        conv.set_weights([np.full_like(w, 1e-6) if w.ndim == 4 else w
                          for w in conv.get_weights()])
        return layers.Dense(3)(layers.GlobalAveragePooling2D()(y))

    model = tiny(conv_relu6)
    images = np.abs(calibration())
    with pytest.raises(tflite.ConversionError,
                       match=r"(?s)CONV_2D #\d+ output .* RELU6 bound 6 is .* steps, beyond int32"
                             r".*constant on the calibration data"):
        tflite.to_int16x8(model, images)
    # Without the check, LiteRT itself refuses the model.
    with pytest.raises(RuntimeError, match="no_integer_overflow_from_quantization"):
        _unchecked_int16x8(model, images)
    int8 = tflite.to_int8(model, images)
    assert not tflite.degenerate_ops(int8)
    litert.make_interpreter(int8, reference=True)


def _unchecked_int16x8(model, images):
    from unittest import mock

    with mock.patch.object(tflite, "_degenerate_ops", return_value=[]):
        tflite_bytes = tflite.to_int16x8(model, images)
    return litert.make_interpreter(tflite_bytes, reference=True)


@integration
def test_int8_and_int16_checks_refuse_each_other(small_int8, small_int16):
    with pytest.raises(tflite.ConversionError, match="(?s)not full int8.*is INT16, not INT8"):
        tflite.check_full_int8(small_int16)
    with pytest.raises(tflite.ConversionError, match="(?s)not full int16x8.*is INT8, not INT16"):
        tflite.check_full_integer(small_int8, activations="int16")


@integration
@pytest.mark.parametrize("convert", [tflite.to_int8, tflite.to_int16x8])
def test_conversions_check_their_limits_first(convert):
    from tfedge._keras import layers

    model = tiny(lambda x: layers.Conv2D(4, 1)(x))
    with pytest.raises(ValueError, match=r"Received: num_batches=0"):
        convert(model, calibration(), num_batches=0)
    with pytest.raises(ValueError, match=r"Received: num_samples=1.5"):
        convert(model, calibration(), num_samples=1.5)


@integration
@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_quantize_equals_tflites_reference_quantize_op_on_halves(dtype):
    # A float-input model whose output is its QUANTIZE op's output, reshaped.
    from tfedge._keras import layers, tf

    model = tiny(lambda x: layers.Reshape((4096,))(x), shape=(64, 64))
    converter = tflite.converter_for(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    data = 3 * calibration((64, 64))
    converter.representative_dataset = lambda: ([d[None]] for d in data)
    ops_set = "TFLITE_BUILTINS_INT8" if dtype == np.int8 else \
        "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"
    converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, ops_set)]
    converter.inference_output_type = tf.as_dtype(dtype)
    quantizer = converter.convert()
    assert tflite_reader.read_tflite(quantizer).op_names() == ["QUANTIZE", "RESHAPE"]
    interp = litert.make_interpreter(quantizer, reference=True)
    scale, zero_point = interp.get_output_details()[0]["quantization"]
    # Quotients on a half, and the floats on either side of them.
    k = np.random.default_rng(0).integers(-300, 300, 1365) * (1 if dtype == np.int8 else 100)
    halves = ((k + 0.5) * scale).astype(np.float32)
    x = np.concatenate([halves, np.nextafter(halves, np.float32(-np.inf)),
                        np.nextafter(halves, np.float32(np.inf)), [0.0]]).astype(np.float32)
    expected = litert.invoke(interp, [x.reshape(1, 64, 64)])[0][0]
    np.testing.assert_array_equal(litert.quantize(x, scale, zero_point, dtype), expected)
    assert len(np.unique(expected)) > 100
    np.testing.assert_array_equal(  # and back: exact for int8 and int16
        litert.dequantize(expected, scale, zero_point),
        ((expected.astype(np.float64) - zero_point) * np.float32(scale)).astype(np.float32))


# --- TFLM.


@integration
def test_tflm_runs_int16x8_bit_exact_with_the_reference_kernels(small_int16):
    arena = tflm.find_arena_size(small_int16)
    agreement = tflm.compare_with_reference(small_int16, num_inputs=20, arena_size=arena)
    assert agreement.total_values == 20 * 10
    assert agreement.exact, agreement


@integration
def test_tflm_runs_the_int16x8_mobilenet_v2_within_two_steps_of_litert(trained_model, digits):
    # TFLM's int16 FULLY_CONNECTED rescales with a 16-bit multiplier, LiteRT's reference kernel
    # with 31 bits: its logits may differ by 1, which the softmax after it may turn into 2.
    # Any other op that disagreed would show as far larger differences.
    int16 = tflite.to_int16x8(trained_model, digits.x_train, num_samples=50)
    agreement = tflm.compare_with_reference(int16, num_inputs=10)
    assert agreement.max_abs_diff <= 2, agreement
    assert "FULLY_CONNECTED" in tflite_reader.read_tflite(int16).op_names()


def dense(x):
    from tfedge._keras import layers

    return layers.Dense(5)(layers.Flatten()(x))


def multiply(x):
    from tfedge._keras import layers

    return layers.Multiply()([x, layers.Conv2D(4, 1)(x)])


@integration
@pytest.mark.parametrize("layer_fn, num_inputs", [(dense, 20), (multiply, 200)],
                         ids=["FULLY_CONNECTED", "MUL"])
def test_tflm_int16_ops_that_round_differently_from_litert(layer_fn, num_inputs):
    # Pins the two discrepancies documented in to_int16x8 (FULLY_CONNECTED: 16-bit multiplier;
    # MUL: multiplier from double-precision scales). If TFLM or LiteRT changes its rounding,
    # this fails, and the docs of to_int16x8 need updating.
    int16 = tflite.to_int16x8(tiny(layer_fn), calibration())
    agreement = tflm.compare_with_reference(int16, num_inputs=num_inputs, arena_size=1 << 20)
    assert agreement.max_abs_diff == 1 and agreement.mismatched_values > 0, agreement


@integration
def test_tflm_names_the_int16_op_it_cannot_run():
    from tfedge._keras import layers

    model = tiny(lambda x: layers.GlobalMaxPooling2D()(layers.Conv2D(4, 1)(x)))
    int16 = tflite.to_int16x8(model, calibration())
    with pytest.raises(tflm.TFLMError, match="cannot run the model") as info:
        tflm.find_arena_size(int16)
    assert ("op REDUCE_MAX #1 (inputs INT16, INT32; outputs INT16) failed to invoke; "
            "exit status 4") in str(info.value)


@integration
def test_tflm_runs_float32_models_exactly(small_net):
    float32 = tflite.to_float32(small_net)
    agreement = tflm.compare_with_reference(float32, num_inputs=5, arena_size=1 << 20)
    assert agreement.total_values == 5 * 10
    assert agreement.exact, agreement
    assert isinstance(agreement.max_abs_diff, float)


@integration
@pytest.mark.parametrize("mode, op", [
    ("dynamic", "op CONV_2D #0 (inputs FLOAT32, INT8, FLOAT32; outputs FLOAT32) failed to "
                "prepare"),
    ("float16", "op DEQUANTIZE #0 (inputs FLOAT16; outputs FLOAT32) failed to prepare"),
], ids=["dynamic", "float16"])
def test_tflm_refuses_dynamic_range_and_float16_and_says_where(wide, mode, op):
    _, files = wide
    with pytest.raises(tflm.TFLMError, match="cannot run the model") as info:
        tflm.find_arena_size(files[mode])
    assert op in str(info.value)


@integration
def test_run_refuses_samples_of_the_wrong_type_before_starting_tflm(small_int16):
    with pytest.raises(ValueError, match=r"wants INT16 \(1, 32, 32, 1\); received float32"):
        tflm.run(small_int16, [[np.zeros((1, 32, 32, 1), np.float32)]], arena_size=1 << 20)


# -- Selectable input and output types of the full-integer modes.


@integration
@pytest.mark.parametrize("io_type", ["uint8", "float32"])
def test_int8_with_uint8_or_float_io_computes_what_int8_io_does(small_net, small_int8, digits,
                                                                io_type):
    """Only the border changes: a QUANTIZE (uint8) or QUANTIZE/DEQUANTIZE (float32) op; inside,
    the same int8 ops, so the same predictions."""
    data = digits.train(batch_size=32, shuffle=False)
    converted = tflite.to_int8(small_net, data, num_batches=4, input_type=io_type,
                               output_type=io_type)
    want = {"uint8": "UINT8", "float32": "FLOAT32"}[io_type]
    assert [t.type_name for t in io_tensors(converted)] == [want, want]
    ops = tflite_reader.read_tflite(converted).op_names()
    base = tflite_reader.read_tflite(small_int8).op_names()
    border = "QUANTIZE" if io_type == "uint8" else "DEQUANTIZE"
    assert ops[0] == "QUANTIZE" and ops[-1] == border and ops[1:-1] == base
    assert tflite.quantization_mode(converted) == "int8"
    x, y = digits.x_val[:120], digits.y_val[:120]
    assert accuracy(converted, x, y) == accuracy(small_int8, x, y)
    assert tflm.compare_with_reference(converted, num_inputs=3).exact


@integration
def test_int16x8_with_float_io(small_net, digits):
    converted = tflite.to_int16x8(small_net, digits.train(batch_size=32, shuffle=False),
                                  num_batches=2, input_type="float32", output_type="float32")
    assert [t.type_name for t in io_tensors(converted)] == ["FLOAT32", "FLOAT32"]
    assert tflite.quantization_mode(converted) == "int16x8"


def test_io_types_are_checked():
    with pytest.raises(ValueError, match=r"`input_type` must be one of \('int8', 'uint8', "
                                         r"'float32'\) for a full-int8 model. Received: "
                                         r"input_type='int16'"):
        tflite.to_int8(object(), np.zeros((1, 8, 8, 1)), input_type="int16")
    with pytest.raises(ValueError, match=r"`output_type` must be one of \('int16', 'float32'\)"):
        tflite.to_int16x8(object(), np.zeros((1, 8, 8, 1)), output_type="uint8")


@integration
def test_a_float_op_inside_is_still_refused_with_float_io(small_int8, float_tflite):
    with pytest.raises(tflite.ConversionError, match="not full int8"):
        tflite.check_full_integer(float_tflite, "int8", input_type="float32",
                                  output_type="float32")
