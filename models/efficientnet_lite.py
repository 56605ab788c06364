"""EfficientNet-Lite0 to Lite4: EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling
for Convolutional Neural Networks", ICML 2019) made integer-friendly by its authors in the official
repository tensorflow/tpu, `models/official/efficientnet/lite/`.

What makes a Lite model (tensorflow/tpu `models/official/efficientnet/lite/README.md` and
`lite/efficientnet_lite_builder.py`, `efficientnet_lite(...)`):
- no squeeze-and-excite (`use_se=False`; the block table still says se0.25, but it is ignored);
- ReLU6 instead of swish everywhere (`relu_fn=tf.nn.relu6`);
- the stem (32 filters) and the head (1280 filters) are not scaled with the width coefficient,
  and the first and last stages keep their single block whatever the depth coefficient
  (`fix_head_stem=True`, read by `efficientnet_model.Model._build`);
- everything else is EfficientNet-B0's table (`_DEFAULT_BLOCKS_ARGS`), widened with
  `round_filters` (multiply, round to a multiple of 8, never below 90%) and deepened with
  `round_repeats` (ceil(depth_coefficient * repeats)), both in `efficientnet_model.py`.

Variants (`efficientnet_lite_params` in `lite/efficientnet_lite_builder.py`): (width coefficient,
depth coefficient, resolution, dropout) = lite0 (1.0, 1.0, 224, 0.2), lite1 (1.0, 1.1, 240, 0.2),
lite2 (1.1, 1.2, 260, 0.3), lite3 (1.2, 1.4, 280, 0.3), lite4 (1.4, 1.8, 300, 0.3).

Reference figures (1000 classes, each variant at its own default resolution).

Parameters. The official `lite/README.md` table ("params", rounded to 0.1M) counts trainable
parameters, as do the PyTorch re-implementation d-li14/efficientnet-lite.pytorch (`README.md`, to
1k) and timm (huggingface/pytorch-image-models, `results/benchmark-infer-amp-nchw-pt240-cu124-
rtx4090.csv`, `param_count`: 4.65, 5.42, 6.09, 8.2, 13.01M); these factories' trainable
parameters agree with all three. Keras' `count_params()` (and `tfedge.profile`) also counts the
BatchNorm moving mean and variance, which are not trainable:

| model | resolution | README | d-li14 | trainable here | count_params() here |
| --- | --- | --- | --- | --- | --- |
| efficientnet_lite0 | 224 | 4.7M | 4.652M | 4,652,008 | 4,694,024 |
| efficientnet_lite1 | 240 | 5.4M | 5.417M | 5,416,680 | 5,470,344 |
| efficientnet_lite2 | 260 | 6.1M | 6.092M | 6,092,072 | 6,150,168 |
| efficientnet_lite3 | 280 | 8.2M | 8.197M | 8,197,096 | 8,273,768 |
| efficientnet_lite4 | 300 | 13.0M | 13.007M | 13,006,568 | 13,118,936 |

MACs. The official README's "MAdds" are 3.4-5.7% above the convolution-and-dense multiply-adds
that `tfedge.profile` counts. That count is the EfficientNet paper's (Table 2: B0 0.39B FLOPs;
`tfedge.profile` gives Keras' EfficientNetB0 385.8M); the README does not say what else it
counted (roughly three operations per BatchNorm output element would close the gap). The 1%
reference is therefore d-li14/efficientnet-lite.pytorch's README ("GFLOPs", which are
multiply-adds of the same architecture):

| model | resolution | README MAdds | d-li14 | MACs here |
| --- | --- | --- | --- | --- |
| efficientnet_lite0 | 224 | 407M | 0.385G | 385,187,552 |
| efficientnet_lite1 | 240 | 631M | 0.600G | 600,185,232 |
| efficientnet_lite2 | 260 | 899M | 0.860G | 859,736,272 |
| efficientnet_lite3 | 280 | 1.44B | 1.383G | 1,383,321,872 |
| efficientnet_lite4 | 300 | 2.64B | 2.553G | 2,553,034,336 |

Differences from the official code, on purpose:
- the classifier pools with GlobalAveragePooling2D (TFLite MEAN) where the official code uses an
  avg_pool whose window is the whole feature map (`local_pooling=True`, a TFLite workaround of
  2020); the result is the same;
- drop-connect (stochastic depth, survival probability 0.8 decaying linearly over the blocks) is
  omitted: it has no parameters and no effect at inference;
- kernels start from the official initializers (normal, stddev sqrt(2 / fan_out) for
  convolutions; uniform +-1/sqrt(outputs) for the classifier). With Keras' default Glorot
  initialization an untrained Lite0 at 32x32 gives logits that differ by about 1e-12 between
  inputs, which int8 calibration cannot represent;
- BatchNorm momentum defaults to 0.9 (official: 0.99; see DESIGN.md on small data); epsilon is
  1e-3 as in the official code;
- no Rescaling/Normalization layers: the official lite models expect (x - 127) / 128 inputs
  (`MEAN_RGB`/`STDDEV_RGB` in the lite builder), which is left to the input pipeline;
- `width` is an extra channel multiplier on top of the variant's width coefficient (1.0 gives the
  official model); like the official width coefficient it never changes the stem or the head.
"""

import collections
import math

from tfedge._keras import keras, layers
from tfedge.models import _common

# One MBConv stage of EfficientNet-B0: kernel, repeats, input and output filters, expansion
# ratio, first stride. tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py
# (`_DEFAULT_BLOCKS_ARGS`, with SE dropped as `use_se=False` does); Tan & Le 2019, Table 1.
# `filters_in` documents the official table; the builder takes each block's input channels from
# the tensor. (The official code rounds stage 1's input_filters to 40/48 for lite3/lite4, but
# that block has expansion 1, so the number is never used: its input is the fixed 32-channel stem.)
Stage = collections.namedtuple(
    "Stage", ["kernel", "repeats", "filters_in", "filters_out", "expansion", "stride"])

STAGES = (
    Stage(3, 1, 32, 16, 1, 1),
    Stage(3, 2, 16, 24, 6, 2),
    Stage(5, 2, 24, 40, 6, 2),
    Stage(3, 3, 40, 80, 6, 2),
    Stage(5, 3, 80, 112, 6, 1),
    Stage(5, 4, 112, 192, 6, 2),
    Stage(3, 1, 192, 320, 6, 1),
)
# Fixed in every Lite variant (`fix_head_stem=True`).
STEM_FILTERS = 32
HEAD_FILTERS = 1280

# (width coefficient, depth coefficient, resolution, dropout), `efficientnet_lite_params`.
Variant = collections.namedtuple("Variant", ["width", "depth", "resolution", "dropout"])

VARIANTS = {
    "efficientnet_lite0": Variant(1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": Variant(1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": Variant(1.1, 1.2, 260, 0.3),
    "efficientnet_lite3": Variant(1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": Variant(1.4, 1.8, 300, 0.3),
}

_BN_EPSILON = 1e-3


def _conv_init():
    # The official `conv_kernel_initializer` (efficientnet_model.py): normal with stddev
    # sqrt(2 / fan_out), for convolutions and depthwise convolutions alike.
    return keras.initializers.VarianceScaling(2.0, mode="fan_out",
                                              distribution="untruncated_normal")


def _dense_init():
    # The official `dense_kernel_initializer`: uniform in +-1 / sqrt(outputs).
    return keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_out", distribution="uniform")


def _round_repeats(repeats, depth_coefficient):
    """ceil(depth_coefficient * repeats), the official `round_repeats`."""
    return int(math.ceil(depth_coefficient * repeats))


def _conv_bn(x, filters, kernel, stride, prefix, momentum, relu=True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      kernel_initializer=_conv_init(), name=f"{prefix}_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, epsilon=_BN_EPSILON, name=f"{prefix}_bn")(x)
    if relu:
        x = layers.ReLU(6.0, name=f"{prefix}_activation")(x)
    return x


def _mbconv(x, kernel, expansion, filters, stride, prefix, momentum):
    """Mobile inverted bottleneck without squeeze-excite (official `MBConvBlock`, use_se=False)."""
    in_channels = x.shape[-1]
    shortcut = x
    if expansion != 1:
        x = _conv_bn(x, in_channels * expansion, 1, 1, f"{prefix}_expand", momentum)
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                               depthwise_initializer=_conv_init(), name=f"{prefix}_dwconv")(x)
    x = layers.BatchNormalization(momentum=momentum, epsilon=_BN_EPSILON, name=f"{prefix}_bn")(x)
    x = layers.ReLU(6.0, name=f"{prefix}_activation")(x)
    # Linear projection: no activation (and no clipping: `clip_projection_output=False`).
    x = _conv_bn(x, filters, 1, 1, f"{prefix}_project", momentum, relu=False)
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=f"{prefix}_add")([x, shortcut])
    return x


def _efficientnet_lite(variant, *, input_shape, num_classes, width, include_top, pooling, dropout,
                       weights, name, bn_momentum, classifier_activation):
    _common.check_args(input_shape=input_shape, num_classes=num_classes, width=width,
                       include_top=include_top, pooling=pooling, dropout=dropout,
                       weights=weights, bn_momentum=bn_momentum,
                       classifier_activation=classifier_activation)
    spec = VARIANTS[variant]
    width_coefficient = spec.width * width

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv_bn(inputs, STEM_FILTERS, 3, 2, "stem", bn_momentum)
    for i, stage in enumerate(STAGES):
        filters = _common.make_divisible(stage.filters_out * width_coefficient)
        # The first and the last stage keep their repeats (`fix_head_stem=True`).
        repeats = (stage.repeats if i in (0, len(STAGES) - 1)
                   else _round_repeats(stage.repeats, spec.depth))
        for j in range(repeats):
            x = _mbconv(x, stage.kernel, stage.expansion, filters,
                        stage.stride if j == 0 else 1, f"block{i + 1}{chr(ord('a') + j)}",
                        bn_momentum)
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "top", bn_momentum)

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(num_classes, activation=classifier_activation,
                         kernel_initializer=_dense_init(), name="predictions")(x)
    else:
        x = _common.pool(x, pooling)

    suffix = "" if width == 1.0 else f"_{width:g}"
    model = keras.Model(inputs, x, name=name or f"{variant}{suffix}")
    return _common.load_weights(model, weights)


_DOC = """Builds EfficientNet-{n} with tf_keras (width coefficient {w}, depth coefficient {d}).

    Args:
      input_shape: (height, width, channels) of one image; the batch size is left free. The
        default is the variant's own resolution, {r}x{r}x3.
      num_classes: classifier outputs (with `include_top`).
      width: extra channel multiplier applied on top of the variant's width coefficient
        (1.0 = the official model). The stem (32) and head (1280) never change.
      include_top: end with global average pooling, dropout and a Dense classifier.
      pooling: without `include_top`: None (4-D feature map), "avg" or "max".
      dropout: dropout rate before the classifier ({p} as in the official code; 0 disables it).
      weights: None (random initialization) or the path of a local weights file saved from
        a model built with the same arguments. Nothing is downloaded.
      name: model name; default "efficientnet_lite{i}" (plus "_<width>" when width != 1).
      bn_momentum: BatchNormalization momentum.
      classifier_activation: "softmax" or None (logits).

    Layer names follow Keras Applications' EfficientNet: `stem_conv`, `block{{stage}}{{letter}}_`
    + `expand_conv`, `dwconv`, `project_conv` (with `_bn`/`_activation` siblings, and `_add` on
    residual blocks), `top_conv`, `avg_pool`, `top_dropout`, `predictions`. Stages are numbered
    1 to 7, blocks within a stage a, b, c, ...
    """


def efficientnet_lite0(input_shape=(224, 224, 3), num_classes=1000, width=1.0, include_top=True,
                       pooling=None, dropout=0.2, weights=None, name=None, bn_momentum=0.9,
                       classifier_activation="softmax"):
    return _efficientnet_lite(
        "efficientnet_lite0", input_shape=input_shape, num_classes=num_classes, width=width,
        include_top=include_top, pooling=pooling, dropout=dropout, weights=weights, name=name,
        bn_momentum=bn_momentum, classifier_activation=classifier_activation)


def efficientnet_lite1(input_shape=(240, 240, 3), num_classes=1000, width=1.0, include_top=True,
                       pooling=None, dropout=0.2, weights=None, name=None, bn_momentum=0.9,
                       classifier_activation="softmax"):
    return _efficientnet_lite(
        "efficientnet_lite1", input_shape=input_shape, num_classes=num_classes, width=width,
        include_top=include_top, pooling=pooling, dropout=dropout, weights=weights, name=name,
        bn_momentum=bn_momentum, classifier_activation=classifier_activation)


def efficientnet_lite2(input_shape=(260, 260, 3), num_classes=1000, width=1.0, include_top=True,
                       pooling=None, dropout=0.3, weights=None, name=None, bn_momentum=0.9,
                       classifier_activation="softmax"):
    return _efficientnet_lite(
        "efficientnet_lite2", input_shape=input_shape, num_classes=num_classes, width=width,
        include_top=include_top, pooling=pooling, dropout=dropout, weights=weights, name=name,
        bn_momentum=bn_momentum, classifier_activation=classifier_activation)


def efficientnet_lite3(input_shape=(280, 280, 3), num_classes=1000, width=1.0, include_top=True,
                       pooling=None, dropout=0.3, weights=None, name=None, bn_momentum=0.9,
                       classifier_activation="softmax"):
    return _efficientnet_lite(
        "efficientnet_lite3", input_shape=input_shape, num_classes=num_classes, width=width,
        include_top=include_top, pooling=pooling, dropout=dropout, weights=weights, name=name,
        bn_momentum=bn_momentum, classifier_activation=classifier_activation)


def efficientnet_lite4(input_shape=(300, 300, 3), num_classes=1000, width=1.0, include_top=True,
                       pooling=None, dropout=0.3, weights=None, name=None, bn_momentum=0.9,
                       classifier_activation="softmax"):
    return _efficientnet_lite(
        "efficientnet_lite4", input_shape=input_shape, num_classes=num_classes, width=width,
        include_top=include_top, pooling=pooling, dropout=dropout, weights=weights, name=name,
        bn_momentum=bn_momentum, classifier_activation=classifier_activation)


for _i, _factory in enumerate((efficientnet_lite0, efficientnet_lite1, efficientnet_lite2,
                               efficientnet_lite3, efficientnet_lite4)):
    _v = VARIANTS[_factory.__name__]
    _factory.__doc__ = _DOC.format(n=f"Lite{_i}", i=_i, w=_v.width, d=_v.depth, r=_v.resolution,
                                   p=_v.dropout)
del _i, _factory, _v
