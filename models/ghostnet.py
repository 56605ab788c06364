"""GhostNet (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020).

A Ghost module makes half of its output channels with a 1x1 convolution (the "intrinsic" maps)
and the other half from those with a cheap 3x3 depthwise convolution, then concatenates the two.
A Ghost bottleneck is Ghost module (ReLU) -> [depthwise stride-2 conv + BN] -> [squeeze-excite]
-> Ghost module (linear), plus a shortcut (identity, or depthwise conv + BN + 1x1 conv + BN).

Reference figures at 224x224x3 and 1000 classes (paper, Table 7; FLOPs there are
multiply-adds, as the repository's readme says: "141M Flops (or say MAdds)"):

| width | paper MACs | paper params | MACs here | params, trainable | params, all |
| --- | --- | --- | --- | --- | --- |
| 0.5 | 42M | 2.6M | 42,328,152 (+0.8%) | 2,587,292 (-0.5%) | 2,598,276 (-0.1%) |
| 1.0 | 141M | 5.2M | 141,150,512 (+0.1%) | 5,182,508 (-0.3%) | 5,204,476 (+0.1%) |
| 1.3 | 226M | 7.3M | 227,003,256 (+0.4%) | 7,358,820 (+0.8%) | 7,387,356 (+1.2%) |

"params, trainable" is what PyTorch counts (BatchNorm running statistics are buffers there) and
is the figure comparable with the paper's; "params, all" is `model.count_params()`, which adds
Keras' BatchNorm moving means and variances. The MACs and trainable parameters are also exactly
those of the official PyTorch model, counted from its module definitions (tested). The official
repository's readmes give 141M (`readme.md`, TensorFlow) and 142M (`ghostnet_pytorch/readme.md`)
MAdds for width 1.0.

The architecture follows the official PyTorch code, huawei-noah/Efficient-AI-Backbones,
`ghostnet_pytorch/ghostnet.py` (the `cfgs` table, `_make_divisible(c * width, 4)`,
`GhostModule`, `GhostBottleneck`, `SqueezeExcite`, `GhostNet`), which its readme says reaches
73.98% top-1 with 142M MAdds. Details taken from that code:
- the stem conv, the Ghost modules, the depthwise convs and the shortcut convs have no bias
  (each is followed by BatchNorm); the squeeze-excite convs and the 1280-channel `conv_head`
  have a bias; `conv_head` comes *after* global pooling and has ReLU but no BatchNorm;
- the squeeze-excite block reduces to `_make_divisible(channels * 0.25, 4)` channels, with ReLU,
  and gates with `hard_sigmoid` = ReLU6(x + 3) / 6;
- the last convolution before pooling has `_make_divisible(960 * width, 4)` channels (it scales
  with width), `conv_head` always has 1280;
- dropout (default 0.2) comes after `conv_head`, before the classifier.

Where the official TensorFlow code (same repository, `tensorflow/ghostnet.py` and `myconv2d.py`)
differs, this factory follows the PyTorch code: there the 1280-channel conv has BatchNorm and no
bias, the squeeze-excite gate is clip(x, 0, 1) and reduces to int(channels / 4) channels.

Differences from the official PyTorch code, on purpose:
- The Ghost module there slices its concatenation to `oup` channels. Every channel count here is
  a multiple of 4, so the concatenation already has exactly `oup` channels and no slice op is
  emitted (the builder checks this).
- BatchNorm momentum defaults to 0.9 (Keras convention; PyTorch's 0.1 is the same thing), with
  PyTorch's epsilon 1e-5 so that ported weights behave the same.
- With `include_top=False` the model ends at the 960 * width feature map (PyTorch: the output
  of `blocks`), before the pooling and `conv_head`.
"""

import collections
import math

from tfedge._keras import keras, layers
from tfedge.models import _common
from tfedge.models._layers import HardSigmoid

# One Ghost bottleneck: depthwise kernel, hidden ("expansion size") channels, output channels,
# squeeze-excite ratio (0: none), stride. The `cfgs` table of the official PyTorch code (and the
# paper's Table 1), grouped into the same stages, so that `stage{s}_block{b}` here is
# `blocks.{s}.{b}` there.
Block = collections.namedtuple("Block", ["kernel", "hidden", "filters", "se_ratio", "stride"])

STAGES = (
    (Block(3, 16, 16, 0.0, 1),),
    (Block(3, 48, 24, 0.0, 2),),
    (Block(3, 72, 24, 0.0, 1),),
    (Block(5, 72, 40, 0.25, 2),),
    (Block(5, 120, 40, 0.25, 1),),
    (Block(3, 240, 80, 0.0, 2),),
    (Block(3, 200, 80, 0.0, 1),
     Block(3, 184, 80, 0.0, 1),
     Block(3, 184, 80, 0.0, 1),
     Block(3, 480, 112, 0.25, 1),
     Block(3, 672, 112, 0.25, 1)),
    (Block(5, 672, 160, 0.25, 2),),
    (Block(5, 960, 160, 0.0, 1),
     Block(5, 960, 160, 0.25, 1),
     Block(5, 960, 160, 0.0, 1),
     Block(5, 960, 160, 0.25, 1)),
)
STEM_FILTERS = 16
LAST_FILTERS = 960  # scaled with width, as the hidden size of the last block is
HEAD_FILTERS = 1280  # never scaled
DIVISOR = 4
GHOST_RATIO = 2
BN_EPSILON = 1e-5


def _channels(value, width):
    return _common.make_divisible(value * width, DIVISOR)


def _bn(x, name, momentum):
    return layers.BatchNormalization(momentum=momentum, epsilon=BN_EPSILON, name=name)(x)


def _conv_bn(x, filters, kernel, stride, prefix, momentum, relu=True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      name=f"{prefix}_conv")(x)
    x = _bn(x, f"{prefix}_bn", momentum)
    if relu:
        x = layers.ReLU(name=f"{prefix}_relu")(x)
    return x


def _depthwise_bn(x, kernel, stride, prefix, momentum, relu=False):
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                               name=f"{prefix}_conv")(x)
    x = _bn(x, f"{prefix}_bn", momentum)
    if relu:
        x = layers.ReLU(name=f"{prefix}_relu")(x)
    return x


def _ghost_module(x, filters, relu, prefix, momentum):
    """1x1 conv to half the channels, a cheap 3x3 depthwise conv of those, concatenated."""
    intrinsic = math.ceil(filters / GHOST_RATIO)
    if intrinsic * GHOST_RATIO != filters:
        # The official code would slice the concatenation; every count here is a multiple of
        # DIVISOR, so this cannot happen unless the table or DIVISOR is changed.
        raise ValueError(f"{prefix}: a Ghost module needs an output channel count divisible "
                         f"by {GHOST_RATIO}, got {filters}")
    primary = _conv_bn(x, intrinsic, 1, 1, f"{prefix}_primary", momentum, relu=relu)
    cheap = _depthwise_bn(primary, 3, 1, f"{prefix}_cheap", momentum, relu=relu)
    return layers.Concatenate(name=f"{prefix}_concat")([primary, cheap])


def _squeeze_excite(x, se_ratio, prefix):
    channels = x.shape[-1]
    reduced = _common.make_divisible(channels * se_ratio, DIVISOR)
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}_pool")(x)
    s = layers.Conv2D(reduced, 1, padding="same", name=f"{prefix}_reduce_conv")(s)
    s = layers.ReLU(name=f"{prefix}_reduce_relu")(s)
    s = layers.Conv2D(channels, 1, padding="same", name=f"{prefix}_expand_conv")(s)
    s = HardSigmoid(name=f"{prefix}_gate")(s)
    return layers.Multiply(name=f"{prefix}_scale")([x, s])


def _ghost_bottleneck(x, block, hidden, filters, prefix, momentum):
    in_channels = x.shape[-1]
    shortcut = x
    x = _ghost_module(x, hidden, True, f"{prefix}_ghost1", momentum)
    if block.stride > 1:
        x = _depthwise_bn(x, block.kernel, block.stride, f"{prefix}_dw", momentum)
    if block.se_ratio > 0:
        x = _squeeze_excite(x, block.se_ratio, f"{prefix}_se")
    x = _ghost_module(x, filters, False, f"{prefix}_ghost2", momentum)
    if block.stride != 1 or in_channels != filters:
        shortcut = _depthwise_bn(shortcut, block.kernel, block.stride, f"{prefix}_shortcut_dw",
                                 momentum)
        shortcut = _conv_bn(shortcut, filters, 1, 1, f"{prefix}_shortcut_pw", momentum,
                            relu=False)
    return layers.Add(name=f"{prefix}_add")([x, shortcut])


def ghostnet(input_shape=(224, 224, 3), num_classes=1000, width=1.0, include_top=True,
             pooling=None, dropout=0.2, weights=None, name=None, bn_momentum=0.9,
             classifier_activation="softmax"):
    """Builds GhostNet with tf_keras.

    Args:
      input_shape: (height, width, channels) of one image; the batch size is left free.
      num_classes: classifier outputs (with `include_top`).
      width: channel multiplier, e.g. 0.5, 1.0 or 1.3 (the paper's variants); any number > 0.
        Channels are rounded with `make_divisible(c * width, 4)`; the 1280-channel head conv is
        never scaled.
      include_top: end with global average pooling, the 1280-channel 1x1 head conv (with bias
        and ReLU), dropout and a Dense classifier.
      pooling: without `include_top`: None (4-D feature map of 960 * width channels), "avg" or
        "max".
      dropout: dropout rate before the classifier (0 disables it); the official default 0.2.
      weights: None (random initialization) or the path of a local weights file saved from
        a model built with the same arguments. Nothing is downloaded.
      name: model name; default "ghostnet_<width>".
      bn_momentum: BatchNormalization momentum.
      classifier_activation: "softmax" or None (logits).

    Layer names are stable: `stem_conv`; for block b of stage s (`blocks.{s}.{b}` in the
    official code) `stage{s}_block{b}_ghost1_primary_conv`, `..._ghost1_cheap_conv`,
    `..._ghost1_concat`, `..._dw_conv`, `..._se_reduce_conv`, `..._se_expand_conv`,
    `..._ghost2_primary_conv`, `..._shortcut_dw_conv`, `..._shortcut_pw_conv`, `..._add`
    (with `_bn`/`_relu` siblings); `last_conv` (960 * width channels); `head_conv` (1280),
    `predictions`.
    """
    _common.check_args(input_shape=input_shape, num_classes=num_classes, width=width,
                       include_top=include_top, pooling=pooling, dropout=dropout,
                       weights=weights, bn_momentum=bn_momentum,
                       classifier_activation=classifier_activation)

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv_bn(inputs, _channels(STEM_FILTERS, width), 3, 2, "stem", bn_momentum)
    for s, stage in enumerate(STAGES):
        for b, block in enumerate(stage):
            x = _ghost_bottleneck(x, block, _channels(block.hidden, width),
                                  _channels(block.filters, width), f"stage{s}_block{b}",
                                  bn_momentum)
    x = _conv_bn(x, _channels(LAST_FILTERS, width), 1, 1, "last", bn_momentum)

    if include_top:
        x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
        x = layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=True, name="head_conv")(x)
        x = layers.ReLU(name="head_relu")(x)
        x = layers.Reshape((HEAD_FILTERS,), name="head_flatten")(x)
        if dropout:
            x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = _common.pool(x, pooling)

    model = keras.Model(inputs, x, name=name or f"ghostnet_{width:g}")
    return _common.load_weights(model, weights)
