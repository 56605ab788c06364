"""tfedge.quantize_aware and tfedge.prune on models tfmot cannot wrap as they are.

tf_keras' MobileNetV3 builds its hard-swish from TF ops (TFOpLambda layers), which tfmot's QAT
wrapper crashed on ("'list' object has no attribute 'dtype'"); Keras 3 models were refused. Both
stages now rebuild such models with `tfedge.compat.as_tf_keras` first, as `tfedge.compress` does.
Each test checks that the model the stage wraps (caught on its way out of as_tf_keras) gives the
original's outputs within ATOL = 1e-5 on random inputs, and that the result really holds
tfmot's wrappers. What still cannot be wrapped raises an error naming the layer and its class.
The real tf_keras and Keras 3 MobileNetV3Small go through quantize_aware as they are in
tests/tfedge/test_compat.py (tfmot takes ~15 s to wrap one, too slow to repeat here).
"""

import numpy as np
import pytest

import tfedge  # before TensorFlow: sets TF_USE_LEGACY_KERAS
from tfedge import compat
from tfedge._keras import keras, layers, tf
from tfedge.models import _layers

k3 = pytest.importorskip("keras")  # Keras 3: `import keras` is never tf_keras

ATOL = 1e-5
SHAPE = (32, 32, 3)
IMAGES = np.random.default_rng(0).random((4,) + SHAPE, np.float32) * 255.0


def randomize(model, seed=0):
    """BatchNorm statistics and biases away from their initial values (near-constant outputs
    of an untrained model would hide a wrong rebuild)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        name = variable.name.split("/")[-1].split(":")[0]
        shape = tuple(variable.shape)
        if name in ("gamma", "moving_variance"):
            variable.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        elif name in ("beta", "moving_mean", "bias"):
            variable.assign(rng.normal(0.0, 0.5, shape).astype(np.float32))
    return model


def assert_same_outputs(original, rebuilt, inputs):
    expected = np.asarray(original(inputs, training=False))
    actual = np.asarray(rebuilt(inputs, training=False))
    assert expected.std() > 1e-3, "near-constant outputs would hide a wrong rebuild"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


@pytest.fixture
def rebuilt(monkeypatch):
    """Records what compat.as_tf_keras returns to the stages: the model they wrap."""
    seen = []
    real = compat.as_tf_keras

    def spy(model):
        seen.append(real(model))
        return seen[-1]

    monkeypatch.setattr(compat, "as_tf_keras", spy)
    return seen


def types(model):
    return {type(l).__name__ for l in model.layers}


def qat_inner(qat):
    """{original layer name: its QuantizeWrapperV2} of a QAT model."""
    return {l.layer.name: l for l in qat.layers if type(l).__name__ == "QuantizeWrapperV2"}


def pruned_inner(pruned):
    return {l.layer.name for l in pruned.layers if type(l).__name__ == "PruneLowMagnitude"}


def tfop_block_model():
    """A MobileNetV3 block written as tf_keras' MobileNetV3 writes it, with TF ops on tensors:
    hard_sigmoid(x) = ReLU(6)(x + 3) * (1/6), hard_swish(x) = Multiply([x, hard_sigmoid(x)])."""

    def hard_sigmoid(x):
        return layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)

    inputs = keras.Input(SHAPE)
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Multiply()([x, hard_sigmoid(x)])
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    gate = layers.GlobalAveragePooling2D(keepdims=True)(x)
    gate = layers.ReLU()(layers.Conv2D(4, 1, name="se_reduce")(gate))
    gate = hard_sigmoid(layers.Conv2D(8, 1, name="se_expand")(gate))
    x = layers.Multiply(name="se_scale")([x, gate])
    x = layers.Conv2D(16, 1, name="project")(x)
    x = tf.nn.relu6(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, activation="softmax", name="classifier")(x)
    model = keras.Model(inputs, outputs, name="tfop_block")
    assert "TFOpLambda" in types(model)
    return randomize(model)


@pytest.mark.parametrize("stage", ["quantize_aware", "prune"])
def test_tf_keras_model_with_op_layers_is_rebuilt_and_wrapped(stage, rebuilt):
    original = tfop_block_model()
    if stage == "quantize_aware":
        result = tfedge.quantize_aware(original)
        (model,) = rebuilt
        wrapped = qat_inner(result)
        assert {type(w.layer).__name__ for w in wrapped.values()} >= {
            "HardSwish", "HardSigmoid", "Conv2D", "DepthwiseConv2D", "Dense", "Multiply"}
        for name in ("stem", "dw", "se_expand", "project", "classifier"):
            # The wrapper tracks the rebuilt layer's variables (its .kernel is fake-quantized).
            kernel = next(w for w in wrapped[name].weights if "kernel" in w.name.split("/")[-1])
            np.testing.assert_array_equal(kernel.numpy(), model.get_layer(name).weights[0].numpy(),
                                          err_msg=name)
    else:
        result = tfedge.prune(original, sparsity=0.5, skip=())
        (model,) = rebuilt
        assert pruned_inner(result) == {"stem", "se_reduce", "se_expand", "project",
                                        "classifier"}
        # Every mask is all ones before the first training step: the same outputs.
        assert_same_outputs(original, result, IMAGES)
    assert "TFOpLambda" not in types(model) | types(result)
    assert_same_outputs(original, model, IMAGES)


def keras3_model():
    """A Keras 3 CNN with a hard-swish written in ops and an activation tf_keras lacks."""
    inputs = k3.Input(SHAPE)
    x = k3.layers.Rescaling(1 / 255.0)(inputs)
    x = k3.layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(x)
    x = k3.layers.BatchNormalization(name="stem_bn")(x)
    x = x * k3.ops.relu6(x + 3.0) / 6.0
    x = k3.layers.Conv2D(16, 1, activation="hard_silu", name="expand")(x)
    x = k3.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = k3.layers.GlobalAveragePooling2D()(x)
    outputs = k3.layers.Dense(10, activation="softmax", name="classifier")(x)
    return randomize(k3.Model(inputs, outputs, name="keras3_cnn"))


@pytest.mark.parametrize("stage", ["quantize_aware", "prune"])
def test_keras3_model_is_rebuilt_and_wrapped(stage, rebuilt):
    original = keras3_model()
    if stage == "quantize_aware":
        result = tfedge.quantize_aware(original)
        (model,) = rebuilt
        wrapped = set(qat_inner(result))
        assert {"stem", "expand", "dw", "classifier", "expand_hard_silu"} <= wrapped
        assert isinstance(model.get_layer("expand_hard_silu"), _layers.HardSwish)
    else:
        result = tfedge.prune(original, sparsity=0.5, skip=())
        (model,) = rebuilt
        assert pruned_inner(result) == {"stem", "expand", "classifier"}
        assert_same_outputs(original, result, IMAGES)
    assert isinstance(result, keras.Model) and isinstance(model, keras.Model)
    assert_same_outputs(original, model, IMAGES)
    assert types(model) >= {"HardSwish"}


# --- what still cannot be wrapped ----------------------------------------------------------------


class Doubler(keras.layers.Layer):
    """A custom layer tfmot's QAT registry does not know."""

    def call(self, inputs):
        return inputs * 2.0


def small_model(middle):
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 1, name="conv")(inputs)
    x = middle(x)
    x = layers.GlobalAveragePooling2D()(x) if len(x.shape) == 4 else x
    return keras.Model(inputs, layers.Dense(2, name="fc")(x), name="small")


@pytest.mark.parametrize("make, named", [
    (lambda x: layers.LayerNormalization(name="norm")(x), r"1 layer\(s\) of 'small' for QAT: "
     r"'norm' \(LayerNormalization\)"),
    # tfmot stops at the first; every layer of that class is named.
    (lambda x: layers.LayerNormalization(name="norm2")(layers.LayerNormalization(name="norm")(x)),
     r"2 layer\(s\) of 'small' for QAT: 'norm' \(LayerNormalization\), 'norm2' "
     r"\(LayerNormalization\)"),
    (lambda x: Doubler(name="twice")(x), r"1 layer\(s\) of 'small' for QAT: 'twice' \(Doubler\)"),
    (lambda x: layers.Lambda(lambda v: v * 2.0, name="double")(x),
     r"1 layer\(s\) of 'small' for QAT: 'double' \(Lambda\)"),
], ids=["layer_norm", "two_layer_norms", "custom_layer", "lambda"])
def test_quantize_aware_names_the_layer_it_cannot_wrap_and_the_fix(make, named):
    with pytest.raises(ValueError, match=rf"quantize_aware cannot wrap {named}\. tfmot says: "
                       r"[^\n]*[^.]\. Replace each .*tfedge\.quantization\.QUANTIZE_CONFIGS"
                       ) as caught:
        tfedge.quantize_aware(small_model(make))
    assert "tfedge.quantize." not in str(caught.value)


def reduce_mean_model():
    """A TF op as_tf_keras has no layer for (a reduction): it stays a TFOpLambda layer."""
    return small_model(lambda x: tf.reduce_mean(x, axis=[1, 2]))


def test_quantize_aware_names_an_op_it_cannot_rebuild():
    with pytest.raises(ValueError, match=r"quantize_aware rebuilds .*as_tf_keras.*failed: .*"
                       r"'tf\.math\.reduce_mean' \(TFOpLambda of math\.reduce_mean\).*"
                       r"tfedge\.models"):
        tfedge.quantize_aware(reduce_mean_model())


def test_prune_keeps_an_op_it_cannot_rebuild_as_it_is():
    # An op layer holds no weights and tfmot never wraps it: the model prunes as it is.
    original = randomize(reduce_mean_model())
    pruned = tfedge.prune(original, sparsity=0.5, skip=())
    assert pruned_inner(pruned) == {"conv", "fc"}
    assert "TFOpLambda" in types(pruned)
    x = IMAGES[:, :8, :8] / 255.0
    np.testing.assert_allclose(pruned(x).numpy(), original(x).numpy(), rtol=0, atol=ATOL)


def test_prune_refuses_a_nested_model_with_prunable_layers_unless_skipped():
    inner_inputs = keras.Input((8, 8, 3))
    backbone = keras.Model(inner_inputs, layers.Conv2D(4, 3, name="inner_conv")(inner_inputs),
                           name="backbone")
    inputs = keras.Input((8, 8, 3))
    x = layers.GlobalAveragePooling2D()(backbone(inputs))
    model = keras.Model(inputs, layers.Dense(2, name="fc")(x), name="outer")
    with pytest.raises(TypeError, match=r"'backbone' \(Functional\) of 'outer' hold prunable "
                       r"layers.*Flatten.*`skip`"):
        tfedge.prune(model, skip=())
    assert pruned_inner(tfedge.prune(model, skip=["backbone"])) == {"fc"}
