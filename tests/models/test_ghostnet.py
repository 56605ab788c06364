import functools
import math

import numpy as np
import pytest

from tfedge._keras import layers
from tfedge.models import _common
from tfedge.models.ghostnet import ghostnet
from tfedge import profile

# Paper (Han et al. 2020), Table 7, at 224x224x3 and 1000 classes: MACs ("FLOPs", multiply-adds)
# and parameters, both as printed (rounded to 1M MACs and 0.1M parameters).
PAPER = {0.5: (42e6, 2.6e6), 1.0: (141e6, 5.2e6), 1.3: (226e6, 7.3e6)}

# The official PyTorch code (huawei-noah/Efficient-AI-Backbones, ghostnet_pytorch/ghostnet.py),
# `cfgs`: kernel, expansion size, output channels, SE ratio, stride; one row per bottleneck.
_OFFICIAL_CFGS = [
    (3, 16, 16, 0, 1), (3, 48, 24, 0, 2), (3, 72, 24, 0, 1), (5, 72, 40, 0.25, 2),
    (5, 120, 40, 0.25, 1), (3, 240, 80, 0, 2), (3, 200, 80, 0, 1), (3, 184, 80, 0, 1),
    (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1), (5, 672, 160, 0.25, 2),
    (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1),
]


def _official_pytorch_counts(width, size=224, in_channels=3, num_classes=1000):
    """Parameters (`model.parameters()`) and conv/linear MACs of the official PyTorch GhostNet,
    counted from its module definitions, independently of the Keras builder."""
    div = lambda v: _common.make_divisible(v, 4)  # noqa: E731  (its _make_divisible(v, 4))
    params = macs = 0

    def conv(cin, cout, k, hw, groups=1, bias=False, bn=True):
        nonlocal params, macs
        params += cout * (cin // groups) * k * k + (cout if bias else 0) + (2 * cout if bn else 0)
        macs += hw * hw * cout * (cin // groups) * k * k

    def ghost_module(cin, cout, hw):
        init = math.ceil(cout / 2)
        conv(cin, init, 1, hw)  # primary_conv
        conv(init, init, 3, hw, groups=init)  # cheap_operation

    hw = (size + 1) // 2
    cin = div(16 * width)
    conv(in_channels, cin, 3, hw)  # conv_stem + bn1
    for k, exp, c, se, s in _OFFICIAL_CFGS:
        mid, out = div(exp * width), div(c * width)
        out_hw = (hw + 1) // 2 if s == 2 else hw
        ghost_module(cin, mid, hw)
        if s > 1:
            conv(mid, mid, k, out_hw, groups=mid)  # conv_dw + bn_dw
        if se:
            red = div(mid * se)
            conv(mid, red, 1, 1, bias=True, bn=False)  # conv_reduce
            conv(red, mid, 1, 1, bias=True, bn=False)  # conv_expand
        ghost_module(mid, out, out_hw)
        if not (cin == out and s == 1):
            conv(cin, cin, k, out_hw, groups=cin)
            conv(cin, out, 1, out_hw)
        cin, hw = out, out_hw
    last = div(exp * width)
    conv(cin, last, 1, hw)  # ConvBnAct
    conv(last, 1280, 1, 1, bias=True, bn=False)  # conv_head
    params += 1280 * num_classes + num_classes  # classifier
    macs += 1280 * num_classes
    return params, macs


def _trainable_params(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@functools.lru_cache(maxsize=None)
def _reference(width):
    """The model at the reference configuration (224x224x3, 1000 classes), built once."""
    return ghostnet(width=width)


@pytest.fixture(scope="module")
def tiny():
    """The tiny configuration: 32x32x1, the smallest width tested, 10 classes."""
    return ghostnet((32, 32, 1), num_classes=10, width=0.5)


@pytest.mark.parametrize("width", sorted(PAPER))
def test_reference_counts_match_the_paper(width):
    model = _reference(width)
    paper_macs, paper_params = PAPER[width]
    p = profile(model)
    assert p.total_macs == pytest.approx(paper_macs, rel=0.01)
    # The paper counts PyTorch parameters; BatchNorm's moving mean and variance are buffers
    # there, so Keras' trainable count is the comparable one.
    assert _trainable_params(model) == pytest.approx(paper_params, rel=0.01)
    # count_params() adds the moving statistics; still close (width 1.3: +1.2% over "7.3M").
    assert p.total_params == pytest.approx(paper_params, rel=0.015)


@pytest.mark.parametrize("width", sorted(PAPER))
def test_reference_counts_match_the_official_code_exactly(width):
    model = _reference(width)
    params, macs = _official_pytorch_counts(width)
    assert _trainable_params(model) == params
    assert profile(model).total_macs == macs


def test_exact_counts_at_width_one():
    model = _reference(1.0)
    assert _trainable_params(model) == 5_182_508
    assert model.count_params() == 5_204_476
    assert profile(model).total_macs == 141_150_512


@pytest.mark.parametrize("width, stem, last", [(0.5, 8, 480), (1.0, 16, 960), (1.3, 20, 1248)])
def test_widths_scale_stem_and_last_conv_but_not_the_head(width, stem, last):
    model = _reference(width)
    assert model.get_layer("stem_conv").filters == stem
    assert model.get_layer("last_conv").filters == last
    assert model.get_layer("head_conv").filters == 1280


def test_structure_follows_the_official_code():
    model = _reference(1.0)
    get = model.get_layer
    # Biases: only the squeeze-excite convs, conv_head and the classifier have one.
    with_bias = {l.name for l in model.layers
                 if isinstance(l, (layers.Conv2D, layers.Dense)) and l.use_bias}
    assert with_bias == {"head_conv", "predictions"} | {
        l.name for l in model.layers if l.name.endswith(("_se_reduce_conv", "_se_expand_conv"))}
    # Ghost module: half the channels from the 1x1 conv, half from the cheap depthwise 3x3.
    assert get("stage6_block3_ghost1_primary_conv").filters == 240
    assert get("stage6_block3_ghost1_cheap_conv").kernel_size == (3, 3)
    assert get("stage6_block3_ghost1_concat").output_shape[-1] == 480
    # The first Ghost module has ReLU, the second is linear.
    names = {l.name for l in model.layers}
    assert {"stage6_block3_ghost1_primary_relu", "stage6_block3_ghost1_cheap_relu"} <= names
    assert not {n for n in names if n.startswith("stage6_block3_ghost2") and "relu" in n}
    # SE reduces to make_divisible(480 / 4, 4) = 120, gates with hard sigmoid.
    assert get("stage6_block3_se_reduce_conv").filters == 120
    assert type(get("stage6_block3_se_gate")).__name__ == "HardSigmoid"
    # Stride-2 blocks: depthwise conv with the block's kernel, and a conv shortcut.
    assert get("stage7_block0_dw_conv").kernel_size == (5, 5)
    assert get("stage7_block0_dw_conv").strides == (2, 2)
    assert get("stage7_block0_shortcut_dw_conv").kernel_size == (5, 5)
    assert "stage8_block0_shortcut_dw_conv" not in names  # identity shortcut
    assert "stage0_block0_shortcut_dw_conv" not in names  # 16 -> 16, stride 1
    assert "stage6_block0_se_pool" not in names  # SE ratio 0
    # conv_head: after global pooling, ReLU, no BatchNorm; dropout 0.2 before the classifier.
    assert get("head_conv").input_shape == (None, 1, 1, 960)
    assert "head_bn" not in names
    assert get("dropout").rate == 0.2
    assert not [l for l in model.layers if type(l).__name__ in ("Lambda", "TFOpLambda")]


def test_tiny_input_builds_and_runs(tiny):
    out = tiny(np.random.default_rng(0).random((2, 32, 32, 1), np.float32), training=False)
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out.numpy().sum(axis=-1), 1.0, rtol=1e-5)


def test_96x96_rgb_logits_without_dropout():
    model = ghostnet((96, 96, 3), num_classes=7, width=0.5, dropout=0.0,
                     classifier_activation=None)
    out = model(np.random.default_rng(0).random((2, 96, 96, 3), np.float32), training=False)
    assert out.shape == (2, 7)
    assert "dropout" not in {l.name for l in model.layers}
    assert model.get_layer("predictions").activation.__name__ == "linear"
    params, macs = _official_pytorch_counts(0.5, size=96, num_classes=7)
    assert (_trainable_params(model), profile(model).total_macs) == (params, macs)


@pytest.mark.parametrize("pooling, shape", [(None, (None, 3, 3, 480)), ("avg", (None, 480)),
                                            ("max", (None, 480))])
def test_feature_extractor(pooling, shape):
    model = ghostnet((96, 96, 1), include_top=False, pooling=pooling, width=0.5)
    assert tuple(model.output_shape) == shape
    assert "head_conv" not in {l.name for l in model.layers}


def test_layer_names_are_unique_and_stable(tiny):
    names = [layer.name for layer in tiny.layers]
    assert len(names) == len(set(names))
    for name in ("stem_conv", "stem_bn", "stem_relu", "stage0_block0_ghost1_primary_conv",
                 "stage0_block0_add", "stage1_block0_shortcut_pw_bn", "stage3_block0_se_scale",
                 "stage6_block4_ghost2_cheap_bn", "stage8_block3_add", "last_conv", "avg_pool",
                 "head_conv", "head_relu", "predictions"):
        assert name in names
    assert tiny.name == "ghostnet_0.5"


def test_batchnorm_momentum_and_epsilon(tiny):
    bns = [l for l in tiny.layers if isinstance(l, layers.BatchNormalization)]
    assert {l.momentum for l in bns} == {0.9}
    assert {l.epsilon for l in bns} == {1e-5}


def test_weights_round_trip(tiny, tmp_path):
    path = str(tmp_path / "w.weights.h5")
    tiny.save_weights(path)
    again = ghostnet((32, 32, 1), num_classes=10, width=0.5, bn_momentum=0.99, weights=path)
    assert {l.momentum for l in again.layers if isinstance(l, layers.BatchNormalization)} \
        == {0.99}
    x = np.random.default_rng(0).random((1, 32, 32, 1), np.float32)
    np.testing.assert_array_equal(tiny(x).numpy(), again(x).numpy())


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=0), r"`width` must be a number > 0.*Received: width=0"),
    (dict(width=-1.0), r"Received: width=-1.0"),
    (dict(input_shape=(32, 32)), r"`input_shape` must be \(height, width, channels\)"),
    (dict(num_classes=0), r"`num_classes` must be a positive integer"),
    (dict(pooling="mean"), r"`pooling` must be one of"),
    (dict(dropout=1.0), r"`dropout` must be a number in \[0, 1\)"),
    (dict(bn_momentum=1.0), r"`bn_momentum`"),
    (dict(weights="imagenet"), r"never downloads weights"),
    (dict(classifier_activation="relu"),
     r"`classifier_activation` must be 'softmax' or None. Received: "
     r"classifier_activation='relu'"),
])
def test_bad_arguments_fail_before_building(kwargs, message):
    args = dict(input_shape=(32, 32, 1), num_classes=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ghostnet(**args)


@pytest.fixture(scope="module")
def tiny_int8(tiny):
    from tfedge.converters import read_tflite, to_int8

    data = np.random.default_rng(0).random((20, 32, 32, 1)).astype("float32")
    return read_tflite(to_int8(tiny, data, num_samples=20))  # raises if a float op is left


def test_converts_to_int8_without_dynamic_shape_ops(tiny_int8):
    ops = set(tiny_int8.op_names())
    assert not ops & {"SHAPE", "STRIDED_SLICE", "SLICE", "GATHER"}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "CONCATENATION", "ADD", "MUL", "MEAN",
            "FULLY_CONNECTED", "SOFTMAX"} <= ops
    graph = tiny_int8.subgraphs[0]
    for op in graph.operators:
        if op.name == "TRANSPOSE":
            assert len(graph.tensors[op.inputs[0]].shape) <= 4
    assert graph.tensors[graph.inputs[0]].type_name == "INT8"
    assert tuple(graph.tensors[graph.outputs[0]].shape) == (1, 10)
