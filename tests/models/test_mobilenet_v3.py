import functools

import numpy as np
import pytest

from tfedge import profile
from tfedge._keras import keras, layers
from tfedge.models._layers import HardSigmoid, HardSwish
from tfedge.models.mobilenet_v3 import mobilenet_v3_large, mobilenet_v3_small

FACTORIES = {"small": mobilenet_v3_small, "large": mobilenet_v3_large}
KERAS_APPS = {"small": "MobileNetV3Small", "large": "MobileNetV3Large"}

# tf_keras 2.21's own applications at 224x224x3, 1000 classes, include_preprocessing=False,
# measured with count_params() and tfedge.profile: (variant, minimalistic, width) ->
# (params, MACs). The test below also rebuilds them live as the oracle.
KERAS_COUNTS = {
    ("small", False, 0.75): (2_051_552, 43_399_344),
    ("small", False, 1.0): (2_554_968, 56_510_400),
    ("small", True, 0.75): (1_742_192, 40_072_880),
    ("small", True, 1.0): (2_056_848, 52_288_448),
    ("large", False, 0.75): (4_012_616, 154_560_624),
    ("large", False, 1.0): (5_507_432, 216_589_760),
    ("large", True, 0.75): (3_069_400, 148_802_544),
    ("large", True, 1.0): (3_948_688, 209_136_704),
}

# Published (params in M, MACs in M), as printed: params to 0.1M, MACs to 1M.
# "paper": Howard et al. 2019, Table 3. "slim": tensorflow/models
# research/slim/nets/mobilenet/README.md, "Mobilenet V3 Imagenet Checkpoints" and "Minimalistic
# checkpoints". The slim README's Small rows (66M MACs / 2.9M params at 1.0, 2.4M params at 0.75,
# 65M MACs for Small minimalistic) are left out: slim's own conv defs and Keras Applications
# (which loads those checkpoints) give 56.5M / 2.53M, 2.03M and 52.3M, as the paper does.
PUBLISHED = [
    ("paper", "large", False, 1.0, 5.4, 219),
    ("paper", "large", False, 0.75, 4.0, 155),
    ("paper", "small", False, 1.0, 2.5, 56),
    ("paper", "small", False, 0.75, 2.0, 44),
    ("slim", "large", False, 1.0, 5.4, 217),
    ("slim", "large", False, 0.75, 4.0, 155),
    ("slim", "large", True, 1.0, 3.9, 209),
    ("slim", "small", True, 1.0, 2.0, None),
]


@functools.lru_cache(maxsize=None)
def _reference(variant, minimalistic, width):
    """Our model at the reference configuration (224x224x3, 1000 classes, logits), built once."""
    return FACTORIES[variant](width=width, minimalistic=minimalistic, classifier_activation=None)


def _conv_params(model):
    """Parameters without BatchNorm: TF-slim's convention (its README's MobileNetV2 figures,
    e.g. 3.47M at width 1.0, are this count)."""
    return model.count_params() - sum(l.count_params() for l in model.layers
                                      if isinstance(l, layers.BatchNormalization))


@pytest.mark.parametrize("source, variant, minimalistic, width, params_m, macs_m", PUBLISHED)
def test_reference_counts_match_published_figures(source, variant, minimalistic, width, params_m,
                                                  macs_m):
    model = _reference(variant, minimalistic, width)
    # 1% of the figure plus half a unit of its last printed digit (the figures are rounded).
    assert abs(_conv_params(model) / 1e6 - params_m) <= 0.01 * params_m + 0.05
    if macs_m is not None:
        assert abs(profile(model).total_macs / 1e6 - macs_m) <= 0.01 * macs_m + 0.5


@pytest.mark.parametrize("variant, minimalistic, width", sorted(KERAS_COUNTS))
def test_exactly_keras_applications(variant, minimalistic, width):
    ours = _reference(variant, minimalistic, width)
    theirs = getattr(keras.applications, KERAS_APPS[variant])(
        input_shape=(224, 224, 3), alpha=width, minimalistic=minimalistic, weights=None,
        include_preprocessing=False, classifier_activation=None)
    params, macs = KERAS_COUNTS[variant, minimalistic, width]
    assert ours.count_params() == theirs.count_params() == params
    assert profile(ours).total_macs == profile(theirs).total_macs == macs
    shapes = lambda m: sorted(tuple(w.shape) for w in m.weights)  # noqa: E731
    assert shapes(ours) == shapes(theirs)
    # Same layers in the same order: the Keras weights load as they are and give the same logits
    # ("same" padding pads stride-2 depthwise convs exactly as Keras' ZeroPadding2D does).
    ours.set_weights(theirs.get_weights())
    x = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    expected = theirs(x, training=False).numpy()
    assert expected.std() > 0
    np.testing.assert_allclose(ours(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant, last, top", [("small", 576, 1024), ("large", 960, 1280)])
def test_channel_counts_at_width_one(variant, last, top):
    model = _reference(variant, False, 1.0)
    assert model.get_layer("stem_conv").filters == 16
    assert model.get_layer("head_conv").filters == last
    assert model.get_layer("top_conv").filters == top
    assert model.get_layer("block3_se_reduce").filters == 24  # make_divisible(96 / 4) or (72 / 4 -> 24)
    assert model.get_layer("block3_depthwise_conv").kernel_size == (5, 5)


@pytest.mark.parametrize("width, last, top", [(0.75, 432, 1024), (1.25, 720, 1280)])
def test_width_scales_blocks_but_widens_the_top_only_above_one(width, last, top):
    model = (_reference("small", False, width) if width == 0.75
             else mobilenet_v3_small((32, 32, 3), num_classes=10, width=width))
    assert model.get_layer("stem_conv").filters == 16
    assert model.get_layer("head_conv").filters == last  # 6 x make_divisible(96 * width)
    assert model.get_layer("top_conv").filters == top


@pytest.mark.parametrize("variant", sorted(FACTORIES))
def test_minimalistic_drops_se_hardswish_and_5x5(variant):
    full = {type(l) for l in _reference(variant, False, 1.0).layers}
    assert {HardSwish, HardSigmoid, layers.Multiply} <= full
    model = _reference(variant, True, 1.0)
    kinds = {type(l) for l in model.layers}
    assert not {HardSwish, HardSigmoid, layers.Multiply} & kinds
    assert {l.kernel_size for l in model.layers
            if isinstance(l, layers.DepthwiseConv2D)} == {(3, 3)}
    assert model.name == f"mobilenet_v3_{variant}_minimalistic_1"


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def tiny(request):
    """The tiny configuration: 32x32x1, width 0.35, 10 classes."""
    return FACTORIES[request.param]((32, 32, 1), num_classes=10, width=0.35)


def test_tiny_input_builds_and_runs(tiny):
    assert tiny.get_layer("head_conv").filters == (192 if "small" in tiny.name else 336)
    assert tiny.get_layer("top_conv").filters == (1024 if "small" in tiny.name else 1280)
    out = tiny(np.random.default_rng(0).random((2, 32, 32, 1), np.float32), training=False)
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out.numpy().sum(axis=-1), 1.0, rtol=1e-5)
    assert tiny.get_layer("dropout").rate == 0.2


@pytest.mark.parametrize("variant", sorted(FACTORIES))
def test_96x96_rgb_minimalistic_logits(variant):
    model = FACTORIES[variant]((96, 96, 3), num_classes=7, width=0.5, minimalistic=True,
                               dropout=0.0, classifier_activation=None)
    out = model(np.ones((1, 96, 96, 3), np.float32), training=False).numpy()
    assert out.shape == (1, 7)
    assert not any(isinstance(l, layers.Dropout) for l in model.layers)


@pytest.mark.parametrize("pooling, shape", [(None, (None, 1, 1, 576)), ("avg", (None, 576)),
                                            ("max", (None, 576))])
def test_feature_extractor(pooling, shape):
    model = mobilenet_v3_small((32, 32, 3), include_top=False, pooling=pooling, width=1.0)
    assert tuple(model.output_shape) == shape


def test_layer_names_are_unique_and_stable(tiny):
    names = [layer.name for layer in tiny.layers]
    assert len(names) == len(set(names))
    for name in ("stem_conv", "stem_hardswish", "block0_depthwise_conv", "block1_expand_conv",
                 "block2_add", "block4_se_reduce", "block4_se_gate", "block4_se_scale",
                 "block5_project_bn", "head_conv", "top_conv", "top_hardswish", "logits",
                 "predictions"):
        assert name in names
    assert "block0_expand_conv" not in names  # the first block has expansion 1


def test_batchnorm_follows_conv_with_momentum_and_epsilon(tiny):
    bns = [l for l in tiny.layers if isinstance(l, layers.BatchNormalization)]
    assert {(l.momentum, l.epsilon) for l in bns} == {(0.9, 1e-3)}
    for bn in bns:
        producer = bn.inbound_nodes[0].inbound_layers
        assert isinstance(producer, (layers.Conv2D, layers.DepthwiseConv2D))
        assert not producer.use_bias


@pytest.mark.parametrize("kwargs, message", [
    (dict(minimalistic=1), r"`minimalistic` must be True or False.*Received: minimalistic=1"),
    (dict(minimalistic="yes"), r"Received: minimalistic='yes'"),
    (dict(width=0), r"`width` must be a number > 0.*Received: width=0"),
    (dict(input_shape=(32, 32)), r"`input_shape` must be \(height, width, channels\)"),
    (dict(pooling="mean"), r"`pooling` must be one of"),
    (dict(dropout=1.0), r"`dropout` must be a number in \[0, 1\)"),
    (dict(weights="imagenet"), r"never downloads weights"),
    (dict(classifier_activation="relu"), r"`classifier_activation`"),
])
@pytest.mark.parametrize("variant", sorted(FACTORIES))
def test_bad_arguments_fail_before_building(variant, kwargs, message):
    args = dict(input_shape=(32, 32, 1), num_classes=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        FACTORIES[variant](**args)


@pytest.mark.integration
@pytest.mark.parametrize("minimalistic", [False, True])
def test_converts_to_int8_with_microcontroller_ops(minimalistic):
    from tfedge.converters import read_tflite, to_int8

    model = mobilenet_v3_small((32, 32, 1), num_classes=10, width=0.35, minimalistic=minimalistic)
    data = np.random.default_rng(0).random((20, 32, 32, 1)).astype("float32")
    tflite = read_tflite(to_int8(model, data, num_samples=20))  # raises if a float op is left
    main = tflite.subgraphs[0]
    ops = tflite.op_names()
    assert not {"SHAPE", "STRIDED_SLICE", "PAD", "QUANTIZE", "DEQUANTIZE"} & set(ops), ops
    for op in main.operators:
        if op.name == "TRANSPOSE":
            assert len(main.tensors[op.inputs[0]].shape) <= 4
    assert ("HARD_SWISH" in ops) is not minimalistic, ops
    assert ops.count("DEPTHWISE_CONV_2D") == 11
    assert main.tensors[main.outputs[0]].shape == (1, 10)
