"""tfedge.prune and tfedge.quantize_aware on user models (the zoo has its own harness)."""

import numpy as np
import pytest

import tfedge
from tfedge._keras import keras, layers
from tfedge.models import _layers
from tfedge.pruning import is_prunable, pruning_callbacks


def se_model():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = _layers.HardSwish()(x)
    gate = layers.GlobalAveragePooling2D(keepdims=True)(x)
    gate = layers.Conv2D(8, 1)(gate)
    gate = _layers.HardSigmoid()(gate)
    x = layers.Multiply()([x, gate])
    x = _layers.ChannelShuffle(2)(x)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(4, activation="softmax")(x))


def data():
    rng = np.random.default_rng(0)
    return rng.random((16, 8, 8, 3), np.float32), rng.integers(0, 4, 16)


def test_prune_wraps_exactly_the_prunable_layers_and_leaves_the_model_alone():
    model = se_model()
    before = [w.copy() for w in model.get_weights()]
    pruned = tfedge.prune(model, sparsity=0.75)
    wrapped = {l.layer.name for l in pruned.layers if type(l).__name__ == "PruneLowMagnitude"}
    assert wrapped == {l.name for l in model.layers if is_prunable(l)}
    assert {type(model.get_layer(n)).__name__ for n in wrapped} == {"Conv2D", "Dense"}
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(*data(), epochs=1, verbose=0, callbacks=pruning_callbacks())
    kernel = tfedge.strip(pruned).layers[1].kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.75, abs=0.01)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_prune_arguments():
    with pytest.raises(ValueError, match="Received: sparsity=1.0"):
        tfedge.prune(se_model(), sparsity=1.0)
    with pytest.raises(ValueError, match=r"\['nope'\]"):
        tfedge.prune(se_model(), skip=["nope"])


def test_quantize_aware_handles_custom_layers_and_multiply(tmp_path):
    model = se_model()
    before = [w.copy() for w in model.get_weights()]
    qat = tfedge.quantize_aware(model)
    kinds = {type(l.layer).__name__ for l in qat.layers if hasattr(l, "quantize_config")}
    assert {"HardSwish", "HardSigmoid", "Multiply", "ChannelShuffle"} <= kinds
    qat.compile("adam", "sparse_categorical_crossentropy")
    qat.fit(*data(), epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    path = str(tmp_path / "qat.h5")
    qat.save(path)
    with tfedge.quantize_scope():
        loaded = keras.models.load_model(path)
    x = data()[0][:2]
    np.testing.assert_allclose(loaded(x).numpy(), qat(x).numpy(), atol=1e-6)


def test_quantize_aware_refuses_subclassed_and_nested_models():
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="subclassed"):
        tfedge.quantize_aware(Sub())
    inner = se_model()
    inputs = keras.Input((8, 8, 3))
    with pytest.raises(TypeError, match="nested models"):
        tfedge.quantize_aware(keras.Model(inputs, inner(inputs)))
