"""tfedge.compat.as_tf_keras: Keras 3 models and tf_keras op layers, rebuilt for tfedge's stages.

Every equality check runs the original and the rebuilt model on the same random inputs and
allows ATOL = 1e-5 (float32 rounding: a scalar division becomes a multiplication by the
reciprocal; deep feature maps, which reach the hundreds, get ATOL times their largest value). It
compares the model outputs and the output of every layer that kept its name. The weights of the
originals are randomized first (BatchNorm statistics included): untrained applications give
near-uniform softmax outputs that would hide a wrong mapping, and swapped weights (gamma for
beta) would go unnoticed with the initial ones.
"""

import numpy as np
import pytest

import tfedge
from tfedge._keras import keras, layers, tf
from tfedge.compat import ACTIVATIONS, KERAS3_LAYERS, as_tf_keras
from tfedge.converters import float_ops, read_tflite, to_int8
from tfedge.models import _layers
from tfedge.pruning import default_skip, is_prunable, pruning_callbacks

k3 = pytest.importorskip("keras")  # Keras 3: `import keras` is never tf_keras
pytestmark = pytest.mark.integration

ATOL = 1e-5
SHAPE = (32, 32, 3)
RNG = np.random.default_rng(0)
IMAGES = RNG.random((8,) + SHAPE, np.float32) * 255.0  # the applications rescale 0..255 inputs
LABELS = RNG.integers(0, 10, 8)


def randomize(model, seed=0):
    """BatchNorm scales and variances from U(0.5, 1.5); shifts, means and biases from N(0, 0.5)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        name = variable.name.split("/")[-1].split(":")[0]
        shape = tuple(variable.shape)
        if name in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name in ("beta", "moving_mean", "bias"):
            value = rng.normal(0.0, 0.5, shape)
        else:
            continue  # kernels keep their (fan-in scaled) initial values
        variable.assign(value.astype(np.float32))
    return model


def layer_outputs(model, names):
    """A model that outputs the named layers' outputs (Keras 3 or tf_keras, like `model`)."""
    module = k3 if isinstance(model, k3.Model) else keras
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return module.Model(inputs, [model.get_layer(name).output for name in names])


def assert_same_outputs(original, rebuilt, inputs, split=None):
    """The outputs, and every layer output both models name alike, agree within ATOL.

    `split`: {layer: the layer its activation was split off into}, whose output is the original
    layer's.
    """
    expected = np.asarray(original(inputs, training=False))
    actual = rebuilt(inputs, training=False).numpy()
    assert expected.std() > 1e-3, "near-constant outputs would hide a wrong mapping"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)
    split = split or {}
    rebuilt_names = {l.name for l in rebuilt.layers}
    names = [l.name for l in original.layers if l.name in rebuilt_names and
             type(l).__name__ != "InputLayer" and len(l._inbound_nodes) == 1]
    assert len(names) > len(original.layers) // 2
    for name, want, got in zip(names, layer_outputs(original, names)(inputs),
                               layer_outputs(rebuilt, [split.get(n, n) for n in names])(inputs)):
        want = np.asarray(want)
        # Deep feature maps reach the hundreds: ATOL relative to the largest value there.
        np.testing.assert_allclose(np.asarray(got), want, rtol=0,
                                   atol=ATOL * max(1.0, np.abs(want).max()), err_msg=name)


def types(model):
    return [type(l).__name__ for l in model.layers]


# --- Keras 3 applications ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras3_mobilenet_v3():
    original = randomize(k3.applications.MobileNetV3Small(weights=None, input_shape=SHAPE,
                                                          classes=10))
    return original, as_tf_keras(original)


@pytest.fixture(scope="module")
def tf_keras_mobilenet_v3():
    original = randomize(keras.applications.MobileNetV3Small(weights=None, input_shape=SHAPE,
                                                             classes=10))
    return original, as_tf_keras(original)


def test_keras3_mobilenet_v3_small_gives_the_same_outputs(keras3_mobilenet_v3):
    original, rebuilt = keras3_mobilenet_v3
    assert isinstance(rebuilt, keras.Model) and not isinstance(rebuilt, keras.Sequential)
    assert_same_outputs(original, rebuilt, IMAGES)
    assert rebuilt.count_params() == original.count_params()
    # Each Activation("hard_silu") is a HardSwish; each SE gate relu6(x + 3) * (1/6), written with
    # Keras 3 ops, is one HardSigmoid.
    hard_silu = [l for l in original.layers if type(l).__name__ == "Activation"
                 and l.get_config()["activation"] == "hard_silu"]
    assert types(rebuilt).count("HardSwish") == len(hard_silu) > 0
    assert types(rebuilt).count("HardSigmoid") == types(original).count("Multiply") > 0
    assert all(type(rebuilt.get_layer(l.name)) is _layers.HardSwish for l in hard_silu)


def test_keras3_mobilenet_v2_gives_the_same_outputs():
    original = randomize(k3.applications.MobileNetV2(weights=None, input_shape=SHAPE, classes=10,
                                                     alpha=0.35))
    rebuilt = as_tf_keras(original)
    assert_same_outputs(original, rebuilt, IMAGES)
    assert types(rebuilt) == types(original)
    assert [l.name for l in rebuilt.layers] == [l.name for l in original.layers]


def test_keras3_sequential_cnn_gives_the_same_outputs():
    original = randomize(k3.Sequential([
        k3.Input(SHAPE),
        k3.layers.Rescaling(1 / 255.0),
        k3.layers.Conv2D(8, 3, strides=2, padding="same", activation="hard_silu", name="stem"),
        k3.layers.BatchNormalization(),
        k3.layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="dw"),
        k3.layers.Conv2D(12, 1, activation="hard_sigmoid", name="gate",
                         kernel_regularizer=k3.regularizers.L2(1e-4)),
        k3.layers.MaxPooling2D(),
        k3.layers.SeparableConv2D(16, 3, activation="leaky_relu", name="separable_conv2d"),
        k3.layers.GlobalAveragePooling2D(),
        k3.layers.Dropout(0.2),
        k3.layers.Dense(10, activation="softmax", name="classifier"),
    ], name="user_cnn"))
    rebuilt = as_tf_keras(original)
    assert rebuilt.name == "user_cnn"
    # Activations tf_keras lacks (or defines differently) are split off into layers of their own.
    split = {"stem": "stem_hard_silu", "dw": "dw_relu6", "gate": "gate_hard_sigmoid",
             "separable_conv2d": "separable_conv2d_leaky_relu"}
    assert_same_outputs(original, rebuilt, IMAGES, split)
    assert {name: type(rebuilt.get_layer(name)).__name__ for name in split.values()} == {
        "stem_hard_silu": "HardSwish", "dw_relu6": "ReLU", "gate_hard_sigmoid": "HardSigmoid",
        "separable_conv2d_leaky_relu": "LeakyReLU"}
    assert rebuilt.get_layer("stem").get_config()["activation"] == "linear"
    assert rebuilt.get_layer("dw_relu6").max_value == 6.0
    assert rebuilt.get_layer("gate").kernel_regularizer.get_config() == \
        pytest.approx({"l2": 1e-4})
    assert len(rebuilt.losses) == len(original.losses) == 1


# --- tf_keras models with op layers --------------------------------------------------------------


def test_tf_keras_mobilenet_v3_small_loses_its_op_layers(tf_keras_mobilenet_v3):
    original, rebuilt = tf_keras_mobilenet_v3
    assert "TFOpLambda" in types(original)
    assert "TFOpLambda" not in types(rebuilt)
    assert_same_outputs(original, rebuilt, IMAGES)
    assert rebuilt.count_params() == original.count_params()
    # hard_swish(x) = Multiply([x, hard_sigmoid(x)]) and the SE gates' relu6(x + 3) * (1/6).
    assert types(rebuilt).count("HardSwish") == 19
    assert types(rebuilt).count("HardSigmoid") == 9
    # A copy: nothing done to the rebuilt model reaches the original.
    assert not {id(l) for l in original.layers} & {id(l) for l in rebuilt.layers}


def test_tf_keras_model_without_op_layers_is_returned_as_it_is():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3)(inputs)
    x = _layers.HardSwish()(x)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(x))
    assert as_tf_keras(model) is model
    unbuilt = keras.Sequential([layers.Dense(2)])
    assert as_tf_keras(unbuilt) is unbuilt


def test_tf_keras_ops_become_layers():
    inputs = keras.Input((6, 6, 4))
    other = layers.Conv2D(4, 1, name="other")(inputs)
    outputs = [
        inputs * tf.nn.relu6(inputs + 3.0) / 6.0,        # hard swish, written as one expression
        tf.nn.relu6(other + 3.0) * (1.0 / 6.0),           # hard sigmoid
        2.0 - inputs, inputs / 4.0, -inputs, tf.math.multiply(inputs, y=0.5),
        inputs * other, inputs + other, inputs - other,
        tf.nn.relu(inputs), tf.nn.sigmoid(inputs), tf.math.tanh(inputs), tf.nn.silu(inputs),
    ]
    original = keras.Model(inputs, outputs)
    rebuilt = as_tf_keras(original)
    x = np.random.default_rng(2).normal(0.0, 3.0, (2, 6, 6, 4)).astype(np.float32)
    for want, got in zip(original(x), rebuilt(x)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=ATOL)
    assert sorted(t for t in types(rebuilt) if t not in ("InputLayer", "Conv2D")) == sorted(
        ["HardSwish", "HardSigmoid"] + ["Rescaling"] * 4 + ["Multiply", "Add", "Subtract"]
        + ["ReLU"] + ["Activation"] * 3)


def test_tf_keras_nested_model_with_op_layers_is_flattened():
    inner_inputs = keras.Input((6,))
    gate = tf.nn.relu6(layers.Dense(6, name="fc")(inner_inputs) + 3.0) / 6.0
    inner = keras.Model(inner_inputs, layers.Multiply(name="scale")([inner_inputs, gate]),
                        name="inner")
    inputs = keras.Input((6,))
    original = randomize(keras.Model(inputs, layers.Dense(2, name="head")(inner(inputs))))
    rebuilt = assert_same_on_random_inputs(original, (6,))
    assert types(rebuilt) == ["InputLayer", "Dense", "HardSigmoid", "Multiply", "Dense"]
    assert [l.name for l in rebuilt.layers][1:] == ["fc", "hard_sigmoid", "scale", "head"]


@pytest.mark.parametrize("op", ["reduce_mean", "slice"])
def test_tf_keras_op_without_a_layer_is_refused_by_name(op):
    inputs = keras.Input((4, 4, 3))
    x = tf.reduce_mean(inputs, axis=-1) if op == "reduce_mean" else inputs[:, 1:]
    original = keras.Model(inputs, x)
    name = original.layers[-1].name
    with pytest.raises(ValueError, match=rf"'{name}'.*(reduce_mean|getitem).*tfedge\.models"):
        as_tf_keras(original)


# --- the stages after a rebuild ------------------------------------------------------------------


@pytest.mark.parametrize("which", ["keras3", "tf_keras"])
def test_mobilenet_v3_trains_quantization_aware_and_converts_to_full_int8(
        which, keras3_mobilenet_v3, tf_keras_mobilenet_v3, monkeypatch):
    original, _ = keras3_mobilenet_v3 if which == "keras3" else tf_keras_mobilenet_v3
    wrapped = []  # what quantize_aware wraps: its own as_tf_keras rebuild of the original
    monkeypatch.setattr(tfedge.compat, "as_tf_keras",
                        lambda model, real=as_tf_keras: wrapped.append(real(model)) or wrapped[-1])
    # The original as it is: tf_keras' own has TFOpLambda layers, which tfmot's QAT wrapper
    # crashed on ("'list' object has no attribute 'dtype'") before quantize_aware rebuilt them.
    qat = tfedge.quantize_aware(original)
    (rebuilt,) = wrapped
    assert rebuilt is not original and "TFOpLambda" not in types(rebuilt)
    np.testing.assert_allclose(rebuilt(IMAGES, training=False).numpy(),
                               np.asarray(original(IMAGES, training=False)), rtol=0, atol=ATOL)
    assert sum(type(l).__name__ == "QuantizeWrapperV2" for l in qat.layers) > 100
    assert "TFOpLambda" not in types(qat)
    # Eager: tracing the graph for one step costs more than running it.
    qat.compile("adam", "sparse_categorical_crossentropy", run_eagerly=True)
    before = [w.numpy().copy() for w in qat.trainable_weights]
    qat.fit(IMAGES, LABELS, batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, qat.trainable_weights))
    tflite = to_int8(qat, IMAGES, num_samples=8)  # raises if a float op remains
    assert float_ops(tflite) == []
    ops = set(read_tflite(tflite).op_names())
    assert {"HARD_SWISH", "CONV_2D", "DEPTHWISE_CONV_2D", "MUL"} <= ops


def test_rebuilt_keras3_mobilenet_v3_prunes(keras3_mobilenet_v3):
    _, rebuilt = keras3_mobilenet_v3
    pruned = tfedge.prune(rebuilt, sparsity=0.5)
    wrapped = {l.layer.name for l in pruned.layers if type(l).__name__ == "PruneLowMagnitude"}
    expected = {l.name for l in rebuilt.layers if is_prunable(l)} - set(default_skip(rebuilt))
    assert wrapped == expected and len(wrapped) > 30
    pruned.compile("adam", "sparse_categorical_crossentropy", run_eagerly=True)
    pruned.fit(IMAGES, LABELS, batch_size=8, epochs=1, verbose=0, callbacks=pruning_callbacks())
    kernel = tfedge.strip(pruned).get_layer(sorted(wrapped)[0]).kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.02)


# --- every mapping, one at a time ----------------------------------------------------------------

# One small case per supported Keras 3 layer class: (input shape, builder of the output).
LAYER_CASES = {
    "Conv1D": ((16, 3), lambda x: k3.layers.Conv1D(4, 3, strides=2, padding="same",
                                                   activation="relu")(x)),
    "Conv2D": ((8, 8, 3), lambda x: k3.layers.Conv2D(4, 3, dilation_rate=2, padding="same")(x)),
    "Conv3D": ((4, 4, 4, 2), lambda x: k3.layers.Conv3D(3, 2)(x)),
    "DepthwiseConv1D": ((16, 3), lambda x: k3.layers.DepthwiseConv1D(3, depth_multiplier=2)(x)),
    "DepthwiseConv2D": ((8, 8, 3), lambda x: k3.layers.DepthwiseConv2D(
        3, strides=2, padding="same", depth_multiplier=2)(x)),
    "SeparableConv1D": ((16, 3), lambda x: k3.layers.SeparableConv1D(4, 3)(x)),
    "SeparableConv2D": ((8, 8, 3), lambda x: k3.layers.SeparableConv2D(
        4, 3, padding="same", depth_multiplier=2)(x)),
    "Conv1DTranspose": ((8, 3), lambda x: k3.layers.Conv1DTranspose(4, 3, strides=2)(x)),
    "Conv2DTranspose": ((8, 8, 3), lambda x: k3.layers.Conv2DTranspose(
        4, 3, strides=2, padding="same")(x)),
    "Dense": ((8,), lambda x: k3.layers.Dense(4, activation="tanh")(x)),
    "BatchNormalization": ((8, 8, 3), lambda x: k3.layers.BatchNormalization(epsilon=1e-2)(x)),
    "LayerNormalization": ((8,), lambda x: k3.layers.LayerNormalization()(x)),
    "Activation": ((8,), lambda x: k3.layers.Activation("gelu")(x)),
    "ReLU": ((8,), lambda x: k3.layers.ReLU(max_value=4.0, negative_slope=0.1,
                                            threshold=0.5)(x)),
    "LeakyReLU": ((8,), lambda x: k3.layers.LeakyReLU(negative_slope=0.1)(x)),
    "PReLU": ((8,), lambda x: k3.layers.PReLU()(x)),
    "ELU": ((8,), lambda x: k3.layers.ELU(alpha=0.5)(x)),
    "Softmax": ((4, 8), lambda x: k3.layers.Softmax(axis=1)(x)),
    "Add": ((8,), lambda x: k3.layers.Add()([x, k3.layers.Dense(8)(x)])),
    "Subtract": ((8,), lambda x: k3.layers.Subtract()([x, k3.layers.Dense(8)(x)])),
    "Multiply": ((8,), lambda x: k3.layers.Multiply()([x, k3.layers.Dense(8)(x)])),
    "Average": ((8,), lambda x: k3.layers.Average()([x, k3.layers.Dense(8)(x)])),
    "Maximum": ((8,), lambda x: k3.layers.Maximum()([x, k3.layers.Dense(8)(x)])),
    "Minimum": ((8,), lambda x: k3.layers.Minimum()([x, k3.layers.Dense(8)(x)])),
    "Concatenate": ((8,), lambda x: k3.layers.Concatenate()([x, k3.layers.Dense(4)(x)])),
    "ZeroPadding1D": ((8, 3), lambda x: k3.layers.ZeroPadding1D((1, 2))(x)),
    "ZeroPadding2D": ((8, 8, 3), lambda x: k3.layers.ZeroPadding2D(((0, 1), (2, 0)))(x)),
    "Cropping1D": ((8, 3), lambda x: k3.layers.Cropping1D((1, 2))(x)),
    "Cropping2D": ((8, 8, 3), lambda x: k3.layers.Cropping2D(((1, 0), (0, 2)))(x)),
    "UpSampling1D": ((8, 3), lambda x: k3.layers.UpSampling1D(2)(x)),
    "UpSampling2D": ((4, 4, 3), lambda x: k3.layers.UpSampling2D(
        2, interpolation="bilinear")(x)),
    "MaxPooling1D": ((8, 3), lambda x: k3.layers.MaxPooling1D(2)(x)),
    "MaxPooling2D": ((8, 8, 3), lambda x: k3.layers.MaxPooling2D(3, strides=2,
                                                                 padding="same")(x)),
    "AveragePooling1D": ((8, 3), lambda x: k3.layers.AveragePooling1D(3, padding="same")(x)),
    "AveragePooling2D": ((8, 8, 3), lambda x: k3.layers.AveragePooling2D(
        3, strides=2, padding="same")(x)),
    "GlobalAveragePooling1D": ((8, 3), lambda x: k3.layers.GlobalAveragePooling1D()(x)),
    "GlobalAveragePooling2D": ((8, 8, 3), lambda x: k3.layers.GlobalAveragePooling2D(
        keepdims=True)(x)),
    "GlobalMaxPooling1D": ((8, 3), lambda x: k3.layers.GlobalMaxPooling1D()(x)),
    "GlobalMaxPooling2D": ((8, 8, 3), lambda x: k3.layers.GlobalMaxPooling2D()(x)),
    "Flatten": ((4, 4, 3), lambda x: k3.layers.Flatten()(x)),
    "Reshape": ((4, 4, 3), lambda x: k3.layers.Reshape((8, -1))(x)),
    "Permute": ((8, 3), lambda x: k3.layers.Permute((2, 1))(x)),
    "Dropout": ((8,), lambda x: k3.layers.Dropout(0.5)(x)),
    "SpatialDropout1D": ((8, 3), lambda x: k3.layers.SpatialDropout1D(0.5)(x)),
    "SpatialDropout2D": ((8, 8, 3), lambda x: k3.layers.SpatialDropout2D(0.5)(x)),
    "GaussianNoise": ((8,), lambda x: k3.layers.GaussianNoise(0.5)(x)),
    "GaussianDropout": ((8,), lambda x: k3.layers.GaussianDropout(0.5)(x)),
    "Rescaling": ((8,), lambda x: k3.layers.Rescaling(0.5, offset=-1.0)(x)),
    "Identity": ((8,), lambda x: k3.layers.Identity()(x)),
}


def test_every_supported_keras3_layer_has_a_case():
    assert sorted(LAYER_CASES) == sorted(KERAS3_LAYERS)


def assert_same_on_random_inputs(original, shape, scale=3.0):
    rebuilt = as_tf_keras(original)
    x = np.random.default_rng(1).normal(0.0, scale, (4,) + tuple(shape)).astype(np.float32)
    want = [np.asarray(t) for t in tf.nest.flatten(original(x, training=False))]
    got = [t.numpy() for t in tf.nest.flatten(rebuilt(x, training=False))]
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert w.shape == g.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=ATOL * max(1.0, np.abs(w).max()))
    return rebuilt


@pytest.mark.parametrize("class_name", sorted(LAYER_CASES))
def test_keras3_layer_is_rebuilt_with_the_same_math(class_name):
    shape, build = LAYER_CASES[class_name]
    inputs = k3.Input(shape)
    original = randomize(k3.Model(inputs, build(inputs)), seed=len(class_name))
    rebuilt = assert_same_on_random_inputs(original, shape)
    assert class_name in types(rebuilt)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_keras3_activation_keeps_its_math(name):
    """By name in Activation and inside Dense: Keras 3's hard_sigmoid is not tf_keras' one."""
    inputs = k3.Input((64,))
    dense = k3.layers.Dense(64, activation=name, name="dense")
    original = k3.Model(inputs, [k3.layers.Activation(name, name="act")(inputs), dense(inputs)])
    dense.set_weights([np.eye(64, dtype=np.float32), np.zeros(64, np.float32)])
    x = np.linspace(-8.0, 8.0, 4 * 64, dtype=np.float32).reshape(4, 64)
    assert_same_on_random_inputs(original, (64,))
    rebuilt = as_tf_keras(original)
    want = [np.asarray(t) for t in original(x)]
    for w, g in zip(want, rebuilt(x)):
        np.testing.assert_allclose(g.numpy(), w, rtol=0, atol=ATOL * max(1.0, np.abs(w).max()))
    if name == "hard_sigmoid":  # the trap: tf_keras' own hard_sigmoid is clip(0.2 x + 0.5)
        tf_keras_own = keras.activations.hard_sigmoid(tf.constant(x)).numpy()
        assert np.abs(tf_keras_own - want[0]).max() > 0.05


def test_keras3_ops_become_layers():
    inputs = k3.Input((6, 6, 4))
    other = k3.layers.Conv2D(4, 1, name="other")(inputs)
    shared_plus3 = other + 3.0  # read twice: not fused, stays Rescaling + ReLU + Rescaling
    ops = k3.ops
    outputs = [
        inputs * ops.relu6(inputs + 3.0) / 6.0,              # hard swish as one expression
        ops.multiply(ops.hard_sigmoid(inputs), inputs),      # hard swish from the op
        k3.layers.ReLU(6.0)(other + 3.0) * (1.0 / 6.0),      # hard sigmoid (MobileNetV3's)
        ops.relu6(shared_plus3) / 6.0, shared_plus3,
        ops.hard_silu(other), 2.0 - inputs, -inputs, ops.true_divide(inputs, 4),
        inputs * other, ops.add(inputs, other), inputs - other,
        ops.relu(inputs), ops.sigmoid(inputs), ops.tanh(inputs), ops.silu(inputs),
        k3.activations.relu(inputs, max_value=6.0),
    ]
    original = randomize(k3.Model(inputs, outputs))
    rebuilt = assert_same_on_random_inputs(original, (6, 6, 4))
    counted = {t: types(rebuilt).count(t) for t in set(types(rebuilt))}
    assert counted == {"InputLayer": 1, "Conv2D": 1, "HardSwish": 3, "HardSigmoid": 1,
                       "Rescaling": 5, "ReLU": 3, "Multiply": 1, "Add": 1, "Subtract": 1,
                       "Activation": 3}


def test_keras3_nested_models_are_flattened_and_shared_layers_stay_shared():
    block = k3.Sequential([k3.Input((8,)), k3.layers.Dense(8, name="inner"),
                           k3.layers.Activation("hard_silu", name="inner_act")], name="block")
    inputs = k3.Input((8,))
    shared = k3.layers.Dense(8, name="shared")
    x = block(shared(inputs))
    x = block(shared(x))  # the nested model, and so its layers, used twice
    original = randomize(k3.Model(inputs, k3.layers.Dense(3, name="head")(x)))
    rebuilt = assert_same_on_random_inputs(original, (8,))
    assert sorted(l.name for l in rebuilt.layers[1:]) == ["head", "inner", "inner_act", "shared"]
    assert len(rebuilt.get_layer("shared")._inbound_nodes) == 2
    assert rebuilt.count_params() == original.count_params()


# --- what is refused -----------------------------------------------------------------------------


class Keras3Square(k3.layers.Layer):
    def call(self, x):
        return x * x


class Keras3Conv(k3.layers.Conv2D):
    pass


class Keras3Subclassed(k3.Model):
    def __init__(self):
        super().__init__()
        self.dense = k3.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


@pytest.mark.parametrize("make, named", [
    (lambda: Keras3Square(name="square"), "'square' .*Keras3Square"),
    (lambda: Keras3Conv(2, 1, name="my_conv"), "'my_conv' .*Keras3Conv"),
])
def test_keras3_layer_without_a_tf_keras_twin_is_refused_by_name(make, named):
    inputs = k3.Input((4, 4, 3))
    model = k3.Model(inputs, make()(k3.layers.Conv2D(3, 1)(inputs)))
    with pytest.raises(ValueError, match=named + ".*tf_keras layers or `tfedge.models`"):
        as_tf_keras(model)


@pytest.mark.parametrize("layer, message", [
    (lambda: k3.layers.Activation("celu", name="act"), "'act'.*'celu'.*hard_swish"),
    (lambda: k3.layers.Dense(2, activation="hard_tanh", name="fc"), "'fc'.*'hard_tanh'"),
    (lambda: k3.layers.Dense(2, lora_rank=2, name="lora"), "'lora'.*lora_rank=2"),
    pytest.param(lambda: k3.layers.LayerNormalization(rms_scaling=True, name="rms"),
                 "'rms'.*rms_scaling=True.*set it to False",
                 marks=pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")),
    (lambda: k3.layers.Normalization(name="norm"), "'norm'.*Normalization"),
])
def test_keras3_config_without_a_tf_keras_equivalent_is_refused(layer, message):
    inputs = k3.Input((4,))
    model = k3.Model(inputs, layer()(inputs))
    with pytest.raises(ValueError, match=message):
        as_tf_keras(model)


def test_keras3_op_without_a_layer_is_refused_by_name():
    inputs = k3.Input((4, 3))
    model = k3.Model(inputs, k3.ops.sum(inputs[:, 1:], axis=1))
    with pytest.raises(ValueError, match=r"Keras 3 op 'get_item'.*GetItem"):
        as_tf_keras(model)


def test_keras3_subclassed_model_is_refused():
    model = Keras3Subclassed()
    model(np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match="subclassed Keras 3 model.*Functional API"):
        as_tf_keras(model)


def test_keras3_sequential_without_an_input_shape_is_refused():
    with pytest.raises(ValueError, match="no input shape.*keras.Input"):
        as_tf_keras(k3.Sequential([k3.layers.Dense(2)]))


@pytest.mark.parametrize("thing, received", [
    ("model.keras", "builtins.str"),
    (np.zeros(3), "numpy.ndarray"),
    (layers.Dense(2), "tf_keras.src.layers.core.dense.Dense"),
])
def test_what_is_not_a_model_is_refused_with_what_was_received(thing, received):
    with pytest.raises(TypeError, match=f"Received: {received}"):
        as_tf_keras(thing)


def test_keras3_layer_is_refused_as_not_a_model():
    with pytest.raises(TypeError, match="Keras 3 Dense.*Functional"):
        as_tf_keras(k3.layers.Dense(2))
