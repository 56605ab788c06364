"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018).

Reference configuration (224x224x3, 1000 classes, width 1.0): 3,538,984 parameters, as in the
paper's Table 4 (3.4M) and Keras Applications' `MobileNetV2` (3,538,984, which this factory
matches exactly); about 300M multiply-accumulates (paper, Table 4).

Differences from Keras Applications, on purpose:
- stride-2 convolutions use "same" padding instead of an explicit ZeroPadding2D, which removes
  PAD ops from the microcontroller graph (parameters and MACs are unchanged);
- BatchNorm momentum defaults to 0.9 (Keras: 0.999). With 0.999 a model trained from scratch on
  small data (the 1,437 digits images) stays at chance accuracy on validation.
"""

import collections

from tfedge._keras import keras, layers
from tfedge.models import _common

# One inverted-residual stage: expansion factor t, output channels c, repeats n, first stride s.
# Sandler et al. 2018, Table 2.
Stage = collections.namedtuple("Stage", ["expansion", "filters", "repeats", "stride"])

STAGES = (
    Stage(1, 16, 1, 1),
    Stage(6, 24, 2, 2),
    Stage(6, 32, 3, 2),
    Stage(6, 64, 4, 2),
    Stage(6, 96, 3, 1),
    Stage(6, 160, 3, 2),
    Stage(6, 320, 1, 1),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280


def _conv_bn(x, filters, kernel, stride, prefix, momentum, relu=True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      name=f"{prefix}_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, epsilon=1e-3, name=f"{prefix}_bn")(x)
    if relu:
        x = layers.ReLU(6.0, name=f"{prefix}_relu")(x)
    return x


def _inverted_residual(x, expansion, filters, stride, prefix, momentum):
    in_channels = x.shape[-1]
    shortcut = x
    if expansion != 1:
        x = _conv_bn(x, in_channels * expansion, 1, 1, f"{prefix}_expand", momentum)
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                               name=f"{prefix}_depthwise_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, epsilon=1e-3, name=f"{prefix}_depthwise_bn")(x)
    x = layers.ReLU(6.0, name=f"{prefix}_depthwise_relu")(x)
    # Linear bottleneck: no activation after the projection.
    x = _conv_bn(x, filters, 1, 1, f"{prefix}_project", momentum, relu=False)
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=f"{prefix}_add")([shortcut, x])
    return x


def mobilenet_v2(input_shape=(224, 224, 3), num_classes=1000, width=1.0, include_top=True,
                 pooling=None, dropout=0.0, weights=None, name=None, bn_momentum=0.9,
                 classifier_activation="softmax"):
    """Builds MobileNetV2 with tf_keras.

    Args:
      input_shape: (height, width, channels) of one image; the batch size is left free.
      num_classes: classifier outputs (with `include_top`).
      width: channel multiplier ("alpha" in the paper), e.g. 0.35, 0.5, 0.75, 1.0, 1.4.
      include_top: end with global average pooling and a Dense classifier.
      pooling: without `include_top`: None (4-D feature map), "avg" or "max".
      dropout: dropout rate before the classifier (0 disables it).
      weights: None (random initialization) or the path of a local weights file saved from
        a model built with the same arguments. Nothing is downloaded.
      name: model name; default "mobilenet_v2_<width>".
      bn_momentum: BatchNormalization momentum.
      classifier_activation: "softmax" or None (logits).

    Layer names are stable: `stem_conv`, `block{i}_expand_conv`, `block{i}_depthwise_conv`,
    `block{i}_project_conv` (with `_bn`/`_relu` siblings), `head_conv`, `predictions`.
    """
    _common.check_args(input_shape=input_shape, num_classes=num_classes, width=width,
                       include_top=include_top, pooling=pooling, dropout=dropout,
                       weights=weights, bn_momentum=bn_momentum,
                       classifier_activation=classifier_activation)

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv_bn(inputs, _common.make_divisible(STEM_FILTERS * width), 3, 2, "stem", bn_momentum)
    block = 0
    for stage in STAGES:
        filters = _common.make_divisible(stage.filters * width)
        for repeat in range(stage.repeats):
            stride = stage.stride if repeat == 0 else 1
            x = _inverted_residual(x, stage.expansion, filters, stride, f"block{block}",
                                   bn_momentum)
            block += 1
    # The head is only widened, never narrowed (paper, section 5.1).
    head = _common.make_divisible(HEAD_FILTERS * width) if width > 1.0 else HEAD_FILTERS
    x = _conv_bn(x, head, 1, 1, "head", bn_momentum)

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = _common.pool(x, pooling)

    model = keras.Model(inputs, x, name=name or f"mobilenet_v2_{width:g}")
    return _common.load_weights(model, weights)
