"""ShuffleNet V1 and V2, following the official code (megvii-model/ShuffleNet-Series).

- V1: Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural Network
  for Mobile Devices", CVPR 2018 (arXiv:1707.01083). Official code:
  megvii-model/ShuffleNet-Series `ShuffleNetV1/network.py` + `ShuffleNetV1/blocks.py`.
- V2: Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
  Design", ECCV 2018 (arXiv:1807.11164). Official code: megvii-model/ShuffleNet-Series
  `ShuffleNetV2/network.py` + `ShuffleNetV2/blocks.py`.

Reference figures at 224x224x3 with 1000 classes. "FLOPs" in both papers and in the official
READMEs are multiply-adds, which `tfedge.profile` counts as MACs (convolutions and the
classifier). "Params" there are PyTorch's `parameters()`: BatchNorm gamma and beta but not its
moving statistics, i.e. the Keras model's trainable weights; `count_params()` (Keras total)
adds the 2 moving statistics per BatchNorm channel. Published params are printed to 0.1M and
MACs to 1M, so a figure is matched when within 1% or within its printing's rounding
(half a unit). tests/models/test_shufflenet.py measures every row below and also checks each
model against a count transcribed from the official PyTorch modules (exactly equal).

ShuffleNet V1. Published: official README = megvii-model/ShuffleNet-Series
`ShuffleNetV1/README.md` (classifier included); paper Table 1 = "Complexity" of 1x per group
count, which leaves the 1000-way classifier out (our convolution-only MACs, in brackets, round
to all five figures; with the classifier they would read 143/141/137/134/138).

| width | g | published MACs / params (source) | MACs | trainable | count_params |
| --- | --- | --- | --- | --- | --- |
| 0.5 | 3 | 38M / 0.7M (README) | 37,589,856 | 717,324 | 729,564 |
| 1.0 | 3 | 138M / 1.9M (README); 137M (Table 1) | 137,460,672 [136.5M] | 1,864,728 | 1,889,208 |
| 1.5 | 3 | 292M / 3.4M (README) | 292,443,552 | 3,441,168 | 3,477,888 |
| 2.0 | 3 | 524M / 5.4M (README) | 524,045,184 | 5,449,776 | 5,498,736 |
| 0.5 | 8 | 40M / 1.0M (README) | 40,469,760 | 1,010,448 | 1,030,032 |
| 1.0 | 8 | 138M / 2.4M (README); 137M (Table 1) | 138,365,952 [136.8M] | 2,433,768 | 2,472,936 |
| 1.5 | 8 | 290M / 4.3M (README) | 290,188,800 | 4,268,952 | 4,327,704 |
| 2.0 | 8 | 522M / 6.5M (README) | 521,942,016 | 6,521,232 | 6,599,568 |
| 1.0 | 1 | 143M (Table 1) | 143,078,976 [142.5M] | 1,530,936 | 1,545,624 |
| 1.0 | 2 | 140M (Table 1) | 140,836,512 [140.0M] | 1,732,848 | 1,753,248 |
| 1.0 | 4 | 133M (Table 1) | 134,339,776 [133.3M] | 1,967,344 | 1,995,088 |

The other V1 tables are not in the official code and have no published figure of their own;
paper Table 2 only gives the budget of each row, shared by all group counts: 38 MFLOPs at 0.5x
(the official g=8 0.5x model is 40.5M) and 13 MFLOPs at 0.25x. Their MACs (measured here;
the tests check them through the official-code transcription, which equals the built model
wherever the tests compare the two): 0.5x g=1/2/4:
38.5M/40.9M/40.7M; 0.25x g=1/2/3/4/8: 13.2M/12.6M/13.3M/12.3M/12.4M; 1.5x g=1/2/4:
308.1M/309.0M/295.1M; 2.0x g=1/2/4: 550.3M/539.1M/510.3M.

ShuffleNet V2. Published: paper Table 5, the same in the official README
(`ShuffleNetV2/README.md`). The trainable counts also equal torchvision's documented
`num_params` (1,366,792 / 2,278,604 / 3,503,624 / 7,393,996, a measured count of its own
version) once its two changes are undone: a classifier bias, and stage 2's first unit built
with two out/2 branches.

| width | published MACs / params | MACs | trainable | count_params |
| --- | --- | --- | --- | --- |
| 0.5 | 41M / 1.4M | 40,476,448 | 1,365,792 | 1,373,744 |
| 1.0 | 146M / 2.3M | 145,814,296 | 2,278,760 | 2,294,940 |
| 1.5 | 299M / 3.5M | 298,970,656 | 3,506,720 | 3,530,160 |
| 2.0 | 591M / 7.4M | 590,783,000 | 7,402,600 | 7,436,316 |

V2 0.5x is the one published figure not matched: 40.48M is 1.3% under the printed 41M, and
it is exactly what the official code computes (conv + linear multiply-adds, the rule of the
repository's own `ShuffleNetV2.Large/flops_counter.py`). The printed figures of all four
widths would follow if the stem's 3x3 max pool (0.68M comparisons) were counted and the
result truncated; we do not count pooling.

Choices, and where the official code differs from the papers (this module follows the code):
- V1 channel tables are the official ones for groups 3 and 8 (`ShuffleNetV1/network.py`:
  e.g. 0.5x stem 12 with g=3 but 16 with g=8; 1.5x keeps the 24-channel stem of 1x; 2.0x has
  48). The official code has no tables for groups 1, 2, 4 or for width 0.25: these use the
  paper's Table 1 (1x: 144/200/272 stage-2 channels for g=1/2/4), scaled by the width and
  rounded to the nearest multiple of 4*g (ties up), because the bottleneck (a quarter of the
  output) must split into g groups; the stem follows the official width rule (12 at 0.5x,
  24 at 1x and 1.5x, 48 at 2x); at 0.25x it is 12 (8 with g=8), which puts every 0.25x
  model within 6% of the paper's 13 MFLOPs budget (Table 2). The paper confirms one of these
  tables: its 0.5x g=4 model has 576 stage-4 channels (section 4.2). Only width 1.0 of them
  has a published figure (paper Table 1); the others are this module's construction, listed
  in `V1_TABLES`.
- V1 unit (official `ShuffleV1Block`): 1x1 group conv (NOT grouped in the first unit of
  stage 2, paper section 3.3) + BN + ReLU, 3x3 depthwise (stride 1 or 2) + BN without ReLU,
  channel shuffle, 1x1 group conv + BN without ReLU. Stride 1: ReLU(x + branch). Stride 2:
  concat(3x3 average pool stride 2 of x, ReLU(branch)), so the branch outputs
  out - in channels. The paper (Fig. 2) shuffles between the first 1x1 conv and the depthwise
  conv; the code shuffles after the depthwise conv. A depthwise conv is per channel, so both
  orders are the same function up to a permutation of its weights. The paper applies ReLU
  after the concat; the code only to the conv branch, which is equivalent (the pooled input
  is already non-negative).
- V1 channel shuffle: the official `channel_shuffle` reshapes the C channels to
  (C/g, g) and transposes, the inverse of the paper's permutation (reshape to (g, C/g) and
  transpose). Both send C/g^2 channels (rounded up or down where g^2 does not divide C) of
  every input group to every output group (same connectivity, params and MACs). This
  module reproduces the official permutation exactly, as `ChannelShuffle(C // g)` (the layer
  reshapes to (groups, C/groups) and transposes). No shuffle for g=1.
- V2 unit (official `ShuffleV2Block`). Stride 1: the official code shuffles and splits in
  one step at the START of the unit (even channels pass through, odd channels go through
  1x1 conv + BN + ReLU, 3x3 depthwise + BN, 1x1 conv + BN + ReLU), then concatenates
  (pass-through first). The paper (Fig. 3c) splits at the start and shuffles after the
  concat. Here: `ChannelShuffle(C // 2)` (brings the even channels first, the odd ones
  second: exactly the official permutation), then `ChannelSplit`, then `Concatenate`. As in
  the code, no shuffle follows the last unit of a stage (the next layer, a stride-2 unit or
  the final 1x1 conv, reads every channel, so a permutation there changes nothing).
  Stride 2: two branches on the full input; left: 3x3 depthwise stride 2 + BN, 1x1 conv +
  BN + ReLU (in -> in channels); right: 1x1 conv + BN + ReLU (in -> out/2), 3x3 depthwise
  stride 2 + BN, 1x1 conv + BN + ReLU (-> out - in). In stage 2 the left branch keeps the
  stem's 24 channels and the right gives out - 24 (the paper draws equal halves;
  torchvision's version gives both halves out/2, and a bias on the classifier).
- V2 channel tables (paper Table 5 = official code): stages 48/96/192 (0.5x), 116/232/464,
  176/352/704, 244/488/976 (2x); final 1x1 conv 1024 channels, 2048 at 2x.
- Both: stem 3x3 conv stride 2 + BN + ReLU, 3x3 max pool stride 2; stages of 4, 8, 4 units;
  global average pooling; the classifier has NO bias (official `nn.Linear(..., bias=False)`).
  The official V2 2.0x applies dropout 0.2 before the classifier, the other V2 widths and V1
  none: `dropout=None` picks that default.
- BatchNorm epsilon is 1e-5 (PyTorch's default, used by the official code); momentum 0.9.
- Padding is "same": same output sizes as the official code (which pads 1 on each side);
  TensorFlow pads stride-2 layers only at the bottom/right, and its average pool leaves the
  padding out of the mean (PyTorch counts it). Params and MACs are unchanged.
"""

import collections
import numbers

from tfedge._keras import keras, layers
from tfedge.models import _common
from tfedge.models._layers import ChannelShuffle, ChannelSplit

# Units per stage (stages 2, 3, 4) in both papers (V1 Table 1, V2 Table 5); the first unit of
# each stage has stride 2.
STAGE_REPEATS = (4, 8, 4)

# One unit of the network: layer-name prefix, output channels, stride, first unit of stage 2.
Unit = collections.namedtuple("Unit", ["prefix", "filters", "stride", "first"])

# V1: stem channels and output channels of stages 2-4, by (groups, width).
V1Table = collections.namedtuple("V1Table", ["stem", "stages"])

V1_TABLES = {
    # Official ShuffleNetV1/network.py (group == 3 and group == 8).
    (3, 0.5): V1Table(12, (120, 240, 480)),
    (3, 1.0): V1Table(24, (240, 480, 960)),
    (3, 1.5): V1Table(24, (360, 720, 1440)),
    (3, 2.0): V1Table(48, (480, 960, 1920)),
    (8, 0.5): V1Table(16, (192, 384, 768)),
    (8, 1.0): V1Table(24, (384, 768, 1536)),
    (8, 1.5): V1Table(24, (576, 1152, 2304)),
    (8, 2.0): V1Table(48, (768, 1536, 3072)),
    # Paper Table 1 (1x) for groups 1, 2, 4.
    (1, 1.0): V1Table(24, (144, 288, 576)),
    (2, 1.0): V1Table(24, (200, 400, 800)),
    (4, 1.0): V1Table(24, (272, 544, 1088)),
    # Not in the paper or the code: Table 1 scaled, rounded to a multiple of 4 * groups.
    (1, 0.5): V1Table(12, (72, 144, 288)),
    (1, 1.5): V1Table(24, (216, 432, 864)),
    (1, 2.0): V1Table(48, (288, 576, 1152)),
    (2, 0.5): V1Table(12, (104, 208, 416)),
    (2, 1.5): V1Table(24, (304, 608, 1216)),
    (2, 2.0): V1Table(48, (400, 800, 1600)),
    (4, 0.5): V1Table(12, (144, 288, 576)),
    (4, 1.5): V1Table(24, (416, 832, 1664)),
    (4, 2.0): V1Table(48, (544, 1088, 2176)),
    (1, 0.25): V1Table(12, (36, 72, 144)),
    (2, 0.25): V1Table(12, (48, 96, 192)),
    (3, 0.25): V1Table(12, (60, 120, 240)),
    (4, 0.25): V1Table(12, (64, 128, 256)),
    (8, 0.25): V1Table(8, (96, 192, 384)),
}
V1_WIDTHS = (0.25, 0.5, 1.0, 1.5, 2.0)
V1_GROUPS = (1, 2, 3, 4, 8)

# V2: stem, output channels of stages 2-4, final 1x1 conv, classifier dropout, by width.
V2Table = collections.namedtuple("V2Table", ["stem", "stages", "head", "dropout"])

V2_TABLES = {  # Official ShuffleNetV2/network.py; paper Table 5.
    0.5: V2Table(24, (48, 96, 192), 1024, 0.0),
    1.0: V2Table(24, (116, 232, 464), 1024, 0.0),
    1.5: V2Table(24, (176, 352, 704), 1024, 0.0),
    2.0: V2Table(24, (244, 488, 976), 2048, 0.2),
}
V2_WIDTHS = tuple(V2_TABLES)

_BN_EPSILON = 1e-5


def _check_choice(argument, value, allowed, why):
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and any(value == a for a in allowed))
    if not ok:
        raise ValueError(f"`{argument}` must be one of {allowed} ({why}). "
                         f"Received: {argument}={value!r}")
    return next(a for a in allowed if value == a)


def _bn(x, prefix, momentum):
    return layers.BatchNormalization(momentum=momentum, epsilon=_BN_EPSILON,
                                     name=f"{prefix}_bn")(x)


def _conv_bn(x, filters, prefix, momentum, *, kernel=1, stride=1, groups=1, relu=True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", groups=groups,
                      use_bias=False, name=f"{prefix}_conv")(x)
    x = _bn(x, prefix, momentum)
    if relu:
        x = layers.ReLU(name=f"{prefix}_relu")(x)
    return x


def _depthwise_bn(x, stride, prefix, momentum):
    """3x3 depthwise conv + BN, no activation (both papers)."""
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                               name=f"{prefix}_conv")(x)
    return _bn(x, prefix, momentum)


def _stem(inputs, filters, momentum):
    x = _conv_bn(inputs, filters, "stem", momentum, kernel=3, stride=2)
    return layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)


def _units(stage_filters):
    """The units of stages 2-4, in order, given the stages' output channels."""
    return tuple(Unit(f"stage{stage}_block{block}", filters, 2 if block == 1 else 1,
                      stage == 2 and block == 1)
                 for stage, (filters, repeats) in enumerate(zip(stage_filters, STAGE_REPEATS),
                                                            start=2)
                 for block in range(1, repeats + 1))


def _v1_unit(x, unit, groups, momentum):
    prefix, filters, stride = unit.prefix, unit.filters, unit.stride
    in_channels = x.shape[-1]
    mid = filters // 4
    branch_filters = filters - in_channels if stride == 2 else filters
    y = _conv_bn(x, mid, f"{prefix}_pw1", momentum, groups=1 if unit.first else groups)
    y = _depthwise_bn(y, stride, f"{prefix}_dw", momentum)
    if groups > 1:
        # The official permutation: channel a*g + b goes to b*(C/g) + a.
        y = ChannelShuffle(mid // groups, name=f"{prefix}_shuffle")(y)
    y = _conv_bn(y, branch_filters, f"{prefix}_pw2", momentum, groups=groups, relu=False)
    if stride == 1:
        y = layers.Add(name=f"{prefix}_add")([x, y])
        return layers.ReLU(name=f"{prefix}_relu")(y)
    shortcut = layers.AveragePooling2D(3, strides=2, padding="same",
                                       name=f"{prefix}_shortcut_pool")(x)
    y = layers.ReLU(name=f"{prefix}_relu")(y)
    return layers.Concatenate(name=f"{prefix}_concat")([shortcut, y])


def _v2_unit(x, unit, momentum):
    prefix, filters, stride = unit.prefix, unit.filters, unit.stride
    in_channels = x.shape[-1]
    mid = filters // 2
    if stride == 1:
        half = in_channels // 2
        # Even channels first, odd second (official ShuffleV2Block.channel_shuffle).
        x = ChannelShuffle(half, name=f"{prefix}_shuffle")(x)
        shortcut, y = ChannelSplit((half, half), name=f"{prefix}_split")(x)
        branch_filters = filters - half
    else:
        shortcut = _depthwise_bn(x, 2, f"{prefix}_proj_dw", momentum)
        shortcut = _conv_bn(shortcut, in_channels, f"{prefix}_proj_pw", momentum)
        y = x
        branch_filters = filters - in_channels
    y = _conv_bn(y, mid, f"{prefix}_pw1", momentum)
    y = _depthwise_bn(y, stride, f"{prefix}_dw", momentum)
    y = _conv_bn(y, branch_filters, f"{prefix}_pw2", momentum)
    return layers.Concatenate(name=f"{prefix}_concat")([shortcut, y])


def _top(x, include_top, pooling, dropout, num_classes, classifier_activation):
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name="dropout")(x)
        # Official code: nn.Linear(..., bias=False).
        x = layers.Dense(num_classes, use_bias=False, activation=classifier_activation,
                         name="predictions")(x)
    else:
        x = _common.pool(x, pooling)
    return x


def shufflenet_v1(input_shape=(224, 224, 3), num_classes=1000, width=1.0, include_top=True,
                  pooling=None, dropout=0.0, weights=None, name=None, bn_momentum=0.9,
                  classifier_activation="softmax", groups=3):
    """Builds ShuffleNet V1 (Zhang et al. 2018) with tf_keras, as the official code does.

    Args:
      input_shape: (height, width, channels) of one image; the batch size is left free.
      num_classes: classifier outputs (with `include_top`).
      width: the paper's scale factor s, one of 0.25, 0.5, 1.0, 1.5, 2.0. Each (width,
        groups) has a fixed channel table (`V1_TABLES`), not a multiplier.
      include_top: end with global average pooling and a bias-free Dense classifier.
      pooling: without `include_top`: None (4-D feature map), "avg" or "max".
      dropout: dropout rate before the classifier (the paper and the code use none).
      weights: None (random initialization) or the path of a local weights file saved from
        a model built with the same arguments. Nothing is downloaded.
      name: model name; default "shufflenet_v1_<width>_g<groups>".
      bn_momentum: BatchNormalization momentum.
      classifier_activation: "softmax" or None (logits).
      groups: groups g of the 1x1 convolutions, one of 1, 2, 3, 4, 8 (official default 3).

    Layer names: `stem_conv`, `stem_pool`, `stage{2..4}_block{i}_pw1_conv`, `..._dw_conv`,
    `..._shuffle`, `..._pw2_conv` (with `_bn`/`_relu` siblings), `..._add` (stride 1) or
    `..._shortcut_pool` + `..._concat` (stride 2), `predictions`.
    """
    _common.check_args(input_shape=input_shape, num_classes=num_classes, width=width,
                       include_top=include_top, pooling=pooling, dropout=dropout,
                       weights=weights, bn_momentum=bn_momentum,
                       classifier_activation=classifier_activation)
    width = _check_choice("width", width, V1_WIDTHS,
                          "ShuffleNet V1 has a fixed channel table per scale factor")
    groups = _check_choice("groups", groups, V1_GROUPS,
                           "the group counts of the ShuffleNet V1 paper, Table 1")
    table = V1_TABLES[(groups, width)]

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _stem(inputs, table.stem, bn_momentum)
    for unit in _units(table.stages):
        x = _v1_unit(x, unit, groups, bn_momentum)
    x = _top(x, include_top, pooling, dropout, num_classes, classifier_activation)
    model = keras.Model(inputs, x, name=name or f"shufflenet_v1_{width:g}_g{groups}")
    return _common.load_weights(model, weights)


def shufflenet_v2(input_shape=(224, 224, 3), num_classes=1000, width=1.0, include_top=True,
                  pooling=None, dropout=None, weights=None, name=None, bn_momentum=0.9,
                  classifier_activation="softmax"):
    """Builds ShuffleNet V2 (Ma et al. 2018) with tf_keras, as the official code does.

    Args:
      input_shape: (height, width, channels) of one image; the batch size is left free.
      num_classes: classifier outputs (with `include_top`).
      width: one of 0.5, 1.0, 1.5, 2.0; each has a fixed channel table (`V2_TABLES`).
      include_top: end with global average pooling and a bias-free Dense classifier.
      pooling: without `include_top`: None (4-D feature map), "avg" or "max".
      dropout: dropout rate before the classifier; None is the official default: 0.2 at
        width 2.0, none otherwise.
      weights: None (random initialization) or the path of a local weights file saved from
        a model built with the same arguments. Nothing is downloaded.
      name: model name; default "shufflenet_v2_<width>".
      bn_momentum: BatchNormalization momentum.
      classifier_activation: "softmax" or None (logits).

    Layer names: `stem_conv`, `stem_pool`, `stage{2..4}_block{i}_...`: stride 2 has
    `_proj_dw_conv`, `_proj_pw_conv`, stride 1 has `_shuffle`, `_split`; both have
    `_pw1_conv`, `_dw_conv`, `_pw2_conv` (with `_bn`/`_relu` siblings) and `_concat`;
    then `head_conv`, `predictions`.
    """
    width_ok = (isinstance(width, numbers.Real) and not isinstance(width, bool)
                and width in V2_WIDTHS)
    resolved_dropout = (V2_TABLES[width].dropout if width_ok else 0.0) if dropout is None \
        else dropout
    _common.check_args(input_shape=input_shape, num_classes=num_classes, width=width,
                       include_top=include_top, pooling=pooling, dropout=resolved_dropout,
                       weights=weights, bn_momentum=bn_momentum,
                       classifier_activation=classifier_activation)
    width = _check_choice("width", width, V2_WIDTHS,
                          "ShuffleNet V2 has a fixed channel table per width")
    table = V2_TABLES[width]

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _stem(inputs, table.stem, bn_momentum)
    for unit in _units(table.stages):
        x = _v2_unit(x, unit, bn_momentum)
    x = _conv_bn(x, table.head, "head", bn_momentum)
    x = _top(x, include_top, pooling, resolved_dropout, num_classes, classifier_activation)
    model = keras.Model(inputs, x, name=name or f"shufflenet_v2_{width:g}")
    return _common.load_weights(model, weights)
