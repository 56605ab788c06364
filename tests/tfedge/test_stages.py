"""tfedge.prune and tfedge.quantize_aware on user models (the zoo has its own harness)."""

import numpy as np
import pytest

import tfedge
from tfedge._keras import keras, layers
from tfedge.models import _layers
from tfedge import pruning
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


def wrapped_names(pruned):
    return {l.layer.name for l in pruned.layers if type(l).__name__ == "PruneLowMagnitude"}


def test_prune_wraps_exactly_the_prunable_layers_and_leaves_the_model_alone():
    model = se_model()
    before = [w.copy() for w in model.get_weights()]
    pruned = tfedge.prune(model, sparsity=0.75, skip=())
    wrapped = wrapped_names(pruned)
    assert wrapped == {l.name for l in model.layers if is_prunable(l)}
    assert {type(model.get_layer(n)).__name__ for n in wrapped} == {"Conv2D", "Dense"}
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(*data(), epochs=1, verbose=0, callbacks=pruning_callbacks())
    kernel = tfedge.strip(pruned).layers[1].kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.75, abs=0.01)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_stem_and_classifier_stay_dense_by_default():
    model = se_model()
    prunable = [l.name for l in model.layers if is_prunable(l)]
    assert pruning.default_skip(model) == (prunable[0], prunable[-1])
    assert wrapped_names(tfedge.prune(model)) == set(prunable[1:-1])
    assert wrapped_names(tfedge.prune(model, skip=[prunable[1]])) == {prunable[0], prunable[-1]}


def test_polynomial_schedule_reaches_its_final_sparsity():
    model = se_model()
    pruned = tfedge.prune(model, pruning.polynomial(0.0, 0.6, begin_step=0, end_step=2,
                                                    frequency=1), skip=())
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(*data(), batch_size=4, epochs=1, verbose=0, callbacks=pruning_callbacks())
    report = {name: sparsity for name, _, _, sparsity in pruning.sparsity_report(pruned)}
    assert set(report) == wrapped_names(pruned)
    for sparsity in report.values():
        assert sparsity == pytest.approx(0.6, abs=0.02)


def test_two_of_four_structured_sparsity():
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

    inputs = keras.Input((8, 8, 8))
    x = layers.Conv2D(16, 3, padding="same", name="c1")(inputs)
    x = layers.Conv2D(16, 1, name="c2")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(4, activation="softmax", name="fc")(x))
    pruned = tfedge.prune(model, 0.5, m_by_n=(2, 4), skip=["fc"])
    pruned.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    pruned.fit(rng.random((8, 8, 8, 8), np.float32), rng.integers(0, 4, 8), epochs=1,
               verbose=0, callbacks=pruning_callbacks())
    stripped = tfedge.strip(pruned)
    for name in ("c1", "c2"):
        kernel = stripped.get_layer(name).kernel
        assert pruning_utils.is_pruned_m_by_n(kernel, (2, 4)), name
        assert np.mean(kernel.numpy() == 0) == pytest.approx(0.5, abs=0.01)
    assert np.mean(stripped.get_layer("fc").kernel.numpy() == 0) == 0


def test_sparsity_report_counts_zeros():
    model = se_model()
    kernel = model.layers[1].kernel
    kernel.assign(np.where(np.arange(kernel.shape.num_elements()).reshape(kernel.shape) % 4 == 0,
                           0.0, 1.0))
    name, total, zeros, sparsity = pruning.sparsity_report(model)[0]
    assert (name, total, zeros, sparsity) == (model.layers[1].name, 216, 54, 0.25)


def test_prune_arguments():
    with pytest.raises(ValueError, match="Received: sparsity=1.0"):
        tfedge.prune(se_model(), sparsity=1.0)
    with pytest.raises(ValueError, match=r"\['nope'\]"):
        tfedge.prune(se_model(), skip=["nope"])
    with pytest.raises(ValueError, match=r"Received: m_by_n=\(4, 2\)"):
        tfedge.prune(se_model(), m_by_n=(4, 2))
    with pytest.raises(ValueError, match="`begin_step`"):
        pruning.polynomial(0.0, 0.5, begin_step=10, end_step=10)
    with pytest.raises(ValueError, match="Received: final_sparsity=1.5"):
        pruning.polynomial(0.0, 1.5, begin_step=0, end_step=10)


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


@pytest.mark.parametrize("preserve, keeps_zeros", [(True, True), (False, False)])
def test_pruning_preserving_qat_keeps_the_zeros(preserve, keeps_zeros):
    model = se_model()
    pruned = tfedge.prune(model, sparsity=0.5, skip=())
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(*data(), epochs=1, verbose=0, callbacks=pruning_callbacks())
    stripped = tfedge.strip(pruned)
    zeros = {l.name: l.kernel.numpy() == 0 for l in stripped.layers if is_prunable(l)}
    qat = tfedge.quantize_aware(stripped, preserve_sparsity=preserve)
    qat.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    qat.fit(*data(), batch_size=4, epochs=3, verbose=0)
    # Inside a QuantizeWrapper `.kernel` is the fake-quantized tensor; the wrapper tracks the
    # variable itself.
    kernels = {l.layer.name: next(w.numpy() for w in l.weights
                                  if w.name.split("/")[-1] == "kernel:0")
               for l in qat.layers if hasattr(l, "layer") and l.layer.name in zeros}
    assert set(kernels) == set(zeros)
    kept = [np.all(kernels[name][mask] == 0) for name, mask in zeros.items()]
    assert all(kept) if keeps_zeros else not all(kept)


def se_relu_model():
    """A squeeze-excite block as MobileNetV3 has it: the reduce convolution ends in a ReLU."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    gate = layers.GlobalAveragePooling2D(keepdims=True)(x)
    gate = layers.Conv2D(8, 1, name="se_reduce")(gate)
    gate = layers.ReLU()(gate)
    gate = layers.Conv2D(16, 1, name="se_expand")(gate)
    gate = _layers.HardSigmoid()(gate)
    x = layers.Multiply()([x, gate])
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(4, activation="softmax")(x))


@pytest.mark.parametrize("keep_zeros", [True, False])
def test_keep_zeros_covers_what_pruning_preserving_qat_misses(keep_zeros):
    # tfmot's transforms give a Conv2D followed by a ReLU a no-op QuantizeConfig, and its PQAT
    # scheme then leaves that layer's zeros free to move; KeepZeros holds them.
    pruned = tfedge.prune(se_relu_model(), sparsity=0.5, skip=())
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(*data(), epochs=1, verbose=0, callbacks=pruning_callbacks())
    stripped = tfedge.strip(pruned)
    names = pruning.pruned_layer_names(pruned)
    assert "se_reduce" in names
    qat = tfedge.quantize_aware(stripped, preserve_sparsity=True)
    qat.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", run_eagerly=True)
    callbacks = [pruning.KeepZeros(qat, names)] if keep_zeros else []
    qat.fit(*data(), batch_size=4, epochs=2, verbose=0, callbacks=callbacks)
    after = {name: sparsity for name, _, _, sparsity in pruning.sparsity_report(qat, names)}
    assert set(after) == set(names)
    if keep_zeros:
        assert all(s == pytest.approx(0.5, abs=0.02) for s in after.values()), after
    else:
        assert after["se_reduce"] < 0.4, after


def test_prune_and_report_layers_whose_weights_are_not_called_kernel():
    # Embedding prunes `embeddings`, SeparableConv1D `pointwise_kernel`, MultiHeadAttention its
    # projections' kernels and LSTM its cell's kernels: is_prunable raised KeyError on the LSTM
    # and sparsity_report AttributeError ("no attribute 'kernel'") on the plain model.
    inputs = keras.Input((6,), dtype="int32")
    x = layers.Embedding(10, 8, name="emb")(inputs)
    x = layers.SeparableConv1D(8, 3, padding="same", name="sep")(x)
    x = layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = layers.LSTM(8, name="lstm")(x)
    model = keras.Model(inputs, layers.Dense(2, name="fc")(x))
    names = ("emb", "sep", "mha", "lstm", "fc")
    assert all(is_prunable(model.get_layer(n)) for n in names)
    rows = pruning.sparsity_report(model)
    assert [(n, zeros) for n, _, zeros, _ in rows] == [(n, 0) for n in names]
    assert rows[0][1] == 80 and rows[3][1] == 4 * 8 * (8 + 8)  # LSTM: kernel + recurrent_kernel
    pruned = tfedge.prune(model, sparsity=0.5, skip=())
    assert set(pruning.pruned_layer_names(pruned)) == set(names)
    pruned.compile("adam", "sparse_categorical_crossentropy", run_eagerly=True)
    tokens = np.random.default_rng(0).integers(0, 10, (8, 6))
    pruned.fit(tokens, np.zeros(8, int), verbose=0, callbacks=pruning_callbacks())
    for name, _, _, sparsity in pruning.sparsity_report(tfedge.strip(pruned)):
        assert sparsity == pytest.approx(0.5, abs=0.02), name
