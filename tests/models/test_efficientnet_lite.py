import functools
import math

import numpy as np
import pytest

import tfedge
from tfedge._keras import layers
from tfedge.models import efficientnet_lite

VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
            "efficientnet_lite3", "efficientnet_lite4")

# Published figures, 1000 classes, each variant at its own resolution.
# tensorflow/tpu models/official/efficientnet/lite/README.md: params rounded to 0.1M.
README_PARAMS_M = dict(zip(VARIANTS, (4.7, 5.4, 6.1, 8.2, 13.0)))
# d-li14/efficientnet-lite.pytorch README.md: "# Parameters" (M) and "GFLOPs" (multiply-adds, G).
DLI14_PARAMS_M = dict(zip(VARIANTS, (4.652, 5.417, 6.092, 8.197, 13.007)))
DLI14_GMACS = dict(zip(VARIANTS, (0.385, 0.600, 0.860, 1.383, 2.553)))
# tensorflow/tpu lite/efficientnet_lite_builder.py, `efficientnet_lite_params`.
OFFICIAL = {"efficientnet_lite0": (1.0, 1.0, 224, 0.2), "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
            "efficientnet_lite2": (1.1, 1.2, 260, 0.3), "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
            "efficientnet_lite4": (1.4, 1.8, 300, 0.3)}

# Measured here (tf_keras, `tfedge.profile`) and equal to `_official_counts` below.
EXACT = {  # (trainable params, count_params(), MACs at the variant's resolution)
    "efficientnet_lite0": (4_652_008, 4_694_024, 385_187_552),
    "efficientnet_lite1": (5_416_680, 5_470_344, 600_185_232),
    "efficientnet_lite2": (6_092_072, 6_150_168, 859_736_272),
    "efficientnet_lite3": (8_197_096, 8_273_768, 1_383_321_872),
    "efficientnet_lite4": (13_006_568, 13_118_936, 2_553_034_336),
}


def _official_counts(width_coefficient, depth_coefficient, resolution, num_classes=1000):
    """(trainable params, all params, MACs) by the rules of tensorflow/tpu efficientnet_model.py.

    Written from the official `round_filters`/`round_repeats`/`fix_head_stem` rules and the
    EfficientNet-B0 block table, without Keras, as an independent count.
    """
    def round_filters(f):
        f *= width_coefficient
        new = max(8, int(f + 4) // 8 * 8)
        return int(new + 8 if new < 0.9 * f else new)

    table = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
             (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]  # r, k, s, e, out
    weights = macs = bn_channels = 0
    size = math.ceil(resolution / 2)
    weights += 3 * 3 * 3 * 32
    macs += size * size * 3 * 3 * 3 * 32
    bn_channels += 32
    cin = 32
    for i, (r, k, s, e, out) in enumerate(table):
        repeats = r if i in (0, len(table) - 1) else int(math.ceil(depth_coefficient * r))
        cout = round_filters(out)
        for j in range(repeats):
            mid = cin * e
            if e != 1:
                weights += cin * mid
                macs += size * size * cin * mid
                bn_channels += mid
            size = math.ceil(size / (s if j == 0 else 1))
            weights += k * k * mid
            macs += size * size * k * k * mid
            weights += mid * cout
            macs += size * size * mid * cout
            bn_channels += mid + cout
            cin = cout
    weights += cin * 1280
    macs += size * size * cin * 1280
    bn_channels += 1280
    weights += 1280 * num_classes + num_classes
    macs += 1280 * num_classes
    return weights + 2 * bn_channels, weights + 4 * bn_channels, macs


def _tiny(name, shape=(32, 32, 1)):
    """A width-0.25, 10-class model, built once per session (tests only read it)."""
    return _build_tiny(name, tuple(shape))


@functools.lru_cache(maxsize=None)
def _build_tiny(name, shape):
    tfedge.training.seed_everything(0)
    return getattr(efficientnet_lite, name)(shape, num_classes=10, width=0.25)


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.fixture(scope="module", params=VARIANTS)
def reference_model(request):
    """Each variant with its defaults: its own resolution, 1000 classes."""
    return request.param, getattr(efficientnet_lite, request.param)()


def test_reference_parameters_match_published_figures(reference_model):
    name, model = reference_model
    trainable = _trainable(model)
    assert trainable == pytest.approx(DLI14_PARAMS_M[name] * 1e6, rel=0.01)
    assert abs(trainable / 1e6 - DLI14_PARAMS_M[name]) < 0.0005  # equal to its 3 decimals
    assert round(trainable / 1e5) / 10 == README_PARAMS_M[name]  # the official 0.1M rounding
    assert (trainable, model.count_params()) == EXACT[name][:2]


def test_reference_macs_match_published_figures(reference_model):
    name, model = reference_model
    macs = tfedge.profile(model).total_macs
    assert macs == pytest.approx(DLI14_GMACS[name] * 1e9, rel=0.01)
    assert macs == EXACT[name][2]


def test_counts_equal_an_independent_count_of_the_official_rules(reference_model):
    name, model = reference_model
    wc, dc, res, _ = OFFICIAL[name]
    trainable, total, macs = _official_counts(wc, dc, res)
    assert (_trainable(model), model.count_params(), tfedge.profile(model).total_macs) == \
        (trainable, total, macs)


def test_variant_table_and_defaults_follow_the_official_builder(reference_model):
    name, model = reference_model
    wc, dc, res, dropout = OFFICIAL[name]
    assert tuple(efficientnet_lite.VARIANTS[name]) == (wc, dc, res, dropout)
    assert tuple(model.input_shape) == (None, res, res, 3)
    assert model.get_layer("top_dropout").rate == dropout
    assert model.output_shape == (None, 1000)
    assert model.name == name


def test_lite_structure(reference_model):
    name, model = reference_model
    _, dc, _, _ = OFFICIAL[name]
    names = [l.name for l in model.layers]
    # Stem and head are fixed; first and last stages keep one block; others ceil(dc * repeats).
    assert model.get_layer("stem_conv").filters == 32
    assert model.get_layer("top_conv").filters == 1280
    blocks = {}
    for n in names:
        if n.startswith("block") and n.endswith("_dwconv"):
            stage = int(n[5])
            blocks[stage] = blocks.get(stage, 0) + 1
    expected = [1] + [math.ceil(dc * r) for r in (2, 2, 3, 3, 4)] + [1]
    assert [blocks[s] for s in range(1, 8)] == expected
    # No squeeze-excite, ReLU6 everywhere, no preprocessing layers.
    kinds = {type(l).__name__ for l in model.layers}
    assert not {"Multiply", "Rescaling", "Normalization", "ZeroPadding2D", "Lambda"} & kinds
    assert sum(isinstance(l, layers.GlobalAveragePooling2D) for l in model.layers) == 1
    relus = [l for l in model.layers if isinstance(l, layers.ReLU)]
    assert relus and all(float(l.max_value) == 6.0 for l in relus)
    assert all(l.padding == "same" for l in model.layers if isinstance(l, layers.Conv2D))
    assert all(not l.use_bias for l in model.layers
               if isinstance(l, layers.Conv2D))  # every conv is followed by BatchNorm
    # The official initializers: normal(0, sqrt(2 / fan_out)); dense uniform +-1/sqrt(outputs).
    top = model.get_layer("top_conv").kernel.numpy()
    assert top.std() == pytest.approx(math.sqrt(2 / 1280), rel=0.05)
    dense = model.get_layer("predictions").kernel.numpy()
    assert np.abs(dense).max() <= 1 / math.sqrt(1000)


def test_width_scales_blocks_but_never_stem_or_head():
    model = efficientnet_lite.efficientnet_lite2((32, 32, 3), num_classes=10, width=0.5)
    assert model.get_layer("stem_conv").filters == 32
    assert model.get_layer("top_conv").filters == 1280
    # lite2: 1.1 * 0.5 = 0.55; 320 * 0.55 = 176, 16 * 0.55 = 8.8 -> 8.
    assert model.get_layer("block7a_project_conv").filters == 176
    assert model.get_layer("block1a_project_conv").filters == 8
    assert model.name == "efficientnet_lite2_0.5"


@pytest.mark.parametrize("name, shape", [
    ("efficientnet_lite0", (32, 32, 1)), ("efficientnet_lite0", (96, 96, 3)),
    ("efficientnet_lite2", (96, 96, 3)), ("efficientnet_lite4", (32, 32, 1)),
])
def test_small_inputs_build_and_run(name, shape):
    model = _tiny(name, shape)
    out = model(np.random.default_rng(0).random((2,) + shape, np.float32), training=False)
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out.numpy().sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("pooling, shape", [(None, (None, 3, 3, 1280)), ("avg", (None, 1280)),
                                            ("max", (None, 1280))])
def test_feature_extractor(pooling, shape):
    model = efficientnet_lite.efficientnet_lite0((96, 96, 3), include_top=False, pooling=pooling,
                                                 width=0.25)
    assert tuple(model.output_shape) == shape
    assert "predictions" not in [l.name for l in model.layers]


def test_logits_without_softmax():
    model = efficientnet_lite.efficientnet_lite0((32, 32, 1), num_classes=10, width=0.25,
                                                 dropout=0.0, classifier_activation=None)
    assert "top_dropout" not in [l.name for l in model.layers]
    out = model(np.ones((1, 32, 32, 1), np.float32), training=False).numpy()
    assert not np.isclose(out.sum(), 1.0)


def test_layer_names_are_unique_and_stable():
    model = _tiny("efficientnet_lite4")
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    for name in ("stem_conv", "stem_bn", "stem_activation", "block1a_dwconv", "block1a_bn",
                 "block1a_activation", "block1a_project_conv", "block1a_project_bn",
                 "block2a_expand_conv", "block2a_expand_bn", "block2a_expand_activation",
                 "block2b_add", "block6h_add", "block7a_project_conv", "top_conv", "top_bn",
                 "top_activation", "avg_pool", "top_dropout", "predictions"):
        assert name in names
    assert "block1a_expand_conv" not in names  # expansion 1
    assert "block2a_add" not in names  # stride 2
    assert "block6i_dwconv" not in names  # lite4 stage 6: ceil(1.8 * 4) = 8 blocks
    assert "block7b_dwconv" not in names  # last stage keeps 1 block


def test_batchnorm_momentum_and_epsilon():
    model = efficientnet_lite.efficientnet_lite0((32, 32, 1), num_classes=10, width=0.25,
                                                 bn_momentum=0.99)
    bns = [l for l in model.layers if isinstance(l, layers.BatchNormalization)]
    assert {l.momentum for l in bns} == {0.99} and {l.epsilon for l in bns} == {1e-3}
    model = _tiny("efficientnet_lite0")
    assert {l.momentum for l in model.layers
            if isinstance(l, layers.BatchNormalization)} == {0.9}


def test_weights_round_trip(tmp_path):
    model = _tiny("efficientnet_lite0")
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    again = efficientnet_lite.efficientnet_lite0((32, 32, 1), num_classes=10, width=0.25,
                                                 weights=path)
    x = np.random.default_rng(0).random((1, 32, 32, 1), np.float32)
    np.testing.assert_array_equal(model(x).numpy(), again(x).numpy())
    with pytest.raises(ValueError, match="same factory"):
        efficientnet_lite.efficientnet_lite1((32, 32, 1), num_classes=10, width=0.25,
                                             weights=path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=0), r"`width` must be a number > 0.*Received: width=0"),
    (dict(width=-1.0), r"Received: width=-1.0"),
    (dict(input_shape=(32, 32)), r"`input_shape` must be \(height, width, channels\)"),
    (dict(num_classes=0), r"`num_classes` must be a positive integer.*Received: num_classes=0"),
    (dict(pooling="mean"), r"`pooling` must be one of.*Received: pooling='mean'"),
    (dict(dropout=1.0), r"`dropout` must be a number in \[0, 1\)"),
    (dict(bn_momentum=1.0), r"`bn_momentum`.*Received: bn_momentum=1.0"),
    (dict(weights="imagenet"), r"never downloads weights"),
    (dict(classifier_activation="relu"),
     r"`classifier_activation` must be 'softmax' or None. Received: classifier_activation='relu'"),
])
@pytest.mark.parametrize("name", ("efficientnet_lite0", "efficientnet_lite4"))
def test_bad_arguments_fail_before_building(name, kwargs, message):
    args = dict(input_shape=(32, 32, 1), num_classes=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        getattr(efficientnet_lite, name)(**args)


@pytest.fixture(scope="module")
def tiny_int8():
    from tfedge.converters import to_int8

    model = _tiny("efficientnet_lite0")
    data = np.random.default_rng(0).random((20, 32, 32, 1)).astype("float32")
    return to_int8(model, data, num_samples=20)  # raises if any float op remains


def test_tiny_model_converts_to_microcontroller_friendly_int8(tiny_int8):
    from tfedge.converters import read_tflite

    model = read_tflite(tiny_int8)
    main = model.subgraphs[0]
    ops = model.op_names()
    assert not {"SHAPE", "STRIDED_SLICE", "PAD", "DEQUANTIZE"} & set(ops), ops
    assert set(ops) <= {"QUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN",
                        "FULLY_CONNECTED", "SOFTMAX"}, ops
    for op in main.operators:
        if op.name == "TRANSPOSE":
            assert len(main.tensors[op.inputs[0]].shape) <= 4
    input_type = main.tensors[main.inputs[0]].type_name
    assert input_type == "INT8"
