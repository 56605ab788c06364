"""One harness for every registered model: tiny configurations through every stage.

A new family only adds its tiny configuration to TINY; the harness then checks that tfmot can
prune it, that `tfedge.compress` takes it through pruning, distillation and pruning-preserving
QAT to full int8 with no user code, that channel pruning halves its MACs and the smaller model
still converts and runs on TFLM, that the int8 graph has microcontroller-friendly ops, and
that TFLM runs it with LiteRT's reference outputs.
"""

import numpy as np
import pytest

import tfedge
from tfedge import models
from tfedge._keras import keras
from tfedge.converters import check_full_int8, read_tflite, tflm, to_int8
from tfedge.pruning import is_prunable, pruning_callbacks

pytestmark = pytest.mark.integration

# The smallest configuration of each registered model (besides a 32x32x1 input, 10 classes).
TINY = {
    "mobilenet_v2": dict(width=0.35),
    "mobilenet_v3_small": dict(width=0.35),
    "mobilenet_v3_large": dict(width=0.35),
    "shufflenet_v1": dict(width=0.5, groups=3),
    "shufflenet_v2": dict(width=0.5),
    "ghostnet": dict(width=0.5),
    "efficientnet_lite0": dict(width=0.25),
    "efficientnet_lite1": dict(width=0.25),
    "efficientnet_lite2": dict(width=0.25),
    "efficientnet_lite3": dict(width=0.25),
    "efficientnet_lite4": dict(width=0.25),
}
SHAPE = (32, 32, 1)
RNG = np.random.default_rng(0)
IMAGES = RNG.random((16,) + SHAPE, np.float32)
LABELS = RNG.integers(0, 10, 16)


def build(name, input_shape=SHAPE):
    tfedge.training.seed_everything(0)
    model = models.build(name, input_shape=input_shape, num_classes=10, **TINY[name])
    if input_shape == SHAPE:
        # Move the BatchNorm statistics towards the data, as training would: with the initial
        # ones some untrained models give a near-constant output, whose int8 softmax TFLite
        # refuses (see tfedge.converters.tflite.check_full_int8).
        for _ in range(20):
            model(IMAGES, training=True)
    return model


def test_every_registered_model_has_a_tiny_configuration():
    assert sorted(models.names()) == sorted(TINY)


@pytest.fixture(scope="module", params=models.names())
def zoo(request):
    """(name, model, its int8 .tflite) for each registered model."""
    model = build(request.param)
    return request.param, model, to_int8(model, IMAGES, num_samples=16)


def test_builds_at_96x96_rgb(zoo):
    name = zoo[0]
    model = build(name, input_shape=(96, 96, 3))
    out = model(np.zeros((1, 96, 96, 3), np.float32), training=False).numpy()
    assert out.shape == (1, 10)
    np.testing.assert_allclose(out.sum(), 1.0, rtol=1e-5)


def test_prune_wraps_every_prunable_layer_and_nothing_else(zoo):
    _, model, _ = zoo
    pruned = tfedge.prune(model, sparsity=0.5, skip=())
    wrapped = {l.layer.name for l in pruned.layers if type(l).__name__ == "PruneLowMagnitude"}
    assert wrapped and wrapped == {l.name for l in model.layers if is_prunable(l)}
    first, *_, classifier = [l.name for l in model.layers if is_prunable(l)]
    assert tfedge.pruning.default_skip(model) == (first, classifier)
    # Eager: tracing the graph for one or two steps costs more than running them.
    pruned.compile("adam", "sparse_categorical_crossentropy", run_eagerly=True)
    pruned.fit(IMAGES, LABELS, batch_size=8, epochs=1, verbose=0, callbacks=pruning_callbacks())
    stripped = tfedge.strip(pruned)
    kernels = [l.kernel.numpy() for l in stripped.layers if l.name in wrapped]
    assert np.mean(np.concatenate([k.ravel() for k in kernels]) == 0) == pytest.approx(0.5, abs=0.02)


# EfficientNet-Lite1-4 are Lite0's layers at other depths and widths: the chain of every stage
# runs once per family, the cheaper checks on every registered model.
FAMILY_SAMPLES = sorted(set(TINY) - {f"efficientnet_lite{i}" for i in range(1, 5)})


@pytest.mark.parametrize("name", FAMILY_SAMPLES)
def test_compress_prunes_distills_and_trains_quantization_aware(name):
    """Every stage on every family: prune 50% -> distill (the model as its own teacher) ->
    pruning-preserving QAT -> strip -> full int8, two steps each."""
    model = build(name)
    before = [w.copy() for w in model.get_weights()]
    result = tfedge.compress(model, train_data=(IMAGES, LABELS), val_data=(IMAGES, LABELS),
                             prune=tfedge.Prune(0.5, schedule="constant"), quantize="qat",
                             teacher=model, epochs=1, batch_size=8, tflm_check=False,
                             run_eagerly=True)
    m = result.metrics
    assert m["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert m["sparsity_after_qat"] == m["sparsity"]
    assert np.isfinite(m["qat_accuracy"]) and 0 <= m["int8_accuracy"] <= 1
    check_full_int8(result.tflite)
    # int8 (about 1/4) with half the weights of most layers zero: well under a third gzipped.
    assert m["tflite_gzip_bytes"] < m["original_gzip_bytes"] / 3
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_channel_pruning_halves_the_macs_and_still_runs_on_tflm(zoo):
    """Structured pruning to 50% of the MACs: a smaller model that converts to full int8 and
    runs on TFLM with LiteRT's reference outputs."""
    _, model, dense_tflite = zoo
    plan = tfedge.channels.plan(model, 0.5, by="macs")
    small = plan.apply()
    macs = tfedge.profile(small).total_macs
    assert macs == plan.macs_after and 0.45 * plan.macs_before <= macs <= 0.5 * plan.macs_before
    small(IMAGES, training=True)  # BatchNorm statistics for the new channel counts
    tflite_bytes = to_int8(small, IMAGES, num_samples=16)
    check_full_int8(tflite_bytes)
    assert len(tflite_bytes) < len(dense_tflite)
    agreement = tflm.compare_with_reference(tflite_bytes, num_inputs=3)
    assert agreement.exact, agreement


def test_int8_graph_is_microcontroller_friendly(zoo):
    _, _, tflite_bytes = zoo
    model = read_tflite(tflite_bytes)
    main = model.subgraphs[0]
    ops = model.op_names()
    assert not {"SHAPE", "STRIDED_SLICE", "DEQUANTIZE", "QUANTIZE"} & set(ops), ops
    for op in main.operators:
        if op.name == "TRANSPOSE":
            assert len(main.tensors[op.inputs[0]].shape) <= 4


def test_tflm_matches_litert_reference(zoo):
    _, _, tflite_bytes = zoo
    agreement = tflm.compare_with_reference(tflite_bytes, num_inputs=5)
    assert agreement.exact, agreement


def test_save_and_load_round_trip(zoo, tmp_path):
    _, model, _ = zoo
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(IMAGES[:2]).numpy(), model(IMAGES[:2]).numpy())
