"""MobileNetV3 (Howard et al., "Searching for MobileNetV3", ICCV 2019), Small and Large.

The block tables follow the paper's Tables 1 and 2 as written in the official code: TF-slim's
`tensorflow/models:research/slim/nets/mobilenet/mobilenet_v3.py` (V3_LARGE, V3_SMALL and the
*_MINIMALISTIC conv defs) and Keras Applications' `mobilenet_v3.py` (tf_keras
`src/applications/mobilenet_v3.py`), which loads the slim checkpoints. Which channel counts the
width multiplier scales also follows Keras Applications: the stem keeps 16 channels; block outputs
are `make_divisible(c * width)`; expansions are `make_divisible(input_channels * ratio)`; SE
reduces to `make_divisible(expanded * 0.25)`; the last 1x1 conv has `make_divisible(6 *
last_block_channels)` (576 / 960 at width 1.0); the pooled 1x1 conv keeps 1024 / 1280 unless
width > 1.0. "Minimalistic" variants (slim/Keras) drop squeeze-excite, hard-swish (ReLU instead)
and 5x5 kernels (3x3 instead), and keep every channel count.

Reference configuration (224x224x3, 1000 classes). "params" is `count_params()` and equals
Keras Applications' `MobileNetV3Small/Large(alpha=width, minimalistic=...,
include_preprocessing=False)` exactly; "conv params" leaves out BatchNorm, the convention of the
TF-slim README (it reproduces that README's MobileNetV2 figures, e.g. 3.47M at width 1.0). MACs
are `tfedge.profile` totals and equal the Keras application's.

| variant | params | conv params | MACs | published (params / MACs) |
| --- | --- | --- | --- | --- |
| large 1.0 | 5,507,432 | 5,458,632 | 216,589,760 | 5.4M / 217M (slim README); paper 219M |
| large 0.75 | 4,012,616 | 3,974,440 | 154,560,624 | 4.0M / 155M (paper Table 3, README) |
| large 1.0 minimalistic | 3,948,688 | 3,899,888 | 209,136,704 | 3.9M / 209M (slim README) |
| large 0.75 minimalistic | 3,069,400 | 3,031,224 | 148,802,544 | none published |
| small 1.0 | 2,554,968 | 2,530,744 | 56,510,400 | 2.5M / 56M (paper Table 3) |
| small 0.75 | 2,051,552 | 2,032,192 | 43,399,344 | 2.0M / 44M (paper Table 3) |
| small 1.0 minimalistic | 2,056,848 | 2,032,624 | 52,288,448 | 2.0M (slim README); see below |
| small 0.75 minimalistic | 1,742,192 | 1,722,832 | 40,072,880 | none published |

Where the sources disagree:
- The slim README (and the table copied into Keras Applications' docstring) gives Small 1.0 as
  66M MACs / 2.9M params, Small 0.75 as 2.4M params and Small minimalistic as 65M MACs. The slim
  conv defs themselves, and Keras Applications, which loads those very checkpoints, give 56.5M /
  2.53M, 2.03M and 52.3M; the paper's Table 3 (56M / 2.5M, 2.0M) agrees with the code. This
  module follows the code.
- Paper Table 3 gives Large 1.0 as 219M MACs, the slim README 217M; the code gives 216.6M.
- The paper's Table 1/2 list absolute expansion sizes; the code expresses them as ratios of the
  input channels (e.g. 72/16, 88/24, 2.5, 184/80), which is what makes width < 1 round the way
  the released 0.75 checkpoints do. The ratios are used here.

Differences from Keras Applications, on purpose (parameters and MACs unchanged):
- stride-2 depthwise convs use "same" padding instead of ZeroPadding2D + "valid" (the same
  padding amounts, so the same outputs: no PAD op reaches the microcontroller graph);
- hard-swish and the hard-sigmoid gate are the `HardSwish` / `HardSigmoid` layers (no TFOpLambda
  layers, which tfmot cannot wrap; the converter emits HARD_SWISH);
- no Rescaling / `include_preprocessing`: inputs are expected already scaled;
- the classifier is the same 1x1 conv ("logits", with the softmax) followed by a Reshape instead
  of Flatten + Activation;
- BatchNorm momentum defaults to 0.9 (Keras: 0.999; see `mobilenet_v2`).
"""

import collections

from tfedge._keras import keras, layers
from tfedge.models import _common
from tfedge.models._layers import HardSigmoid, HardSwish

# One bottleneck block: depthwise kernel, expansion ratio (of the block's input channels), output
# channels, squeeze-excite, nonlinearity ("RE" ReLU, "HS" hard-swish), depthwise stride.
# Howard et al. 2019, Tables 1 and 2, with the ratios of slim's conv defs.
Block = collections.namedtuple("Block", ["kernel", "expansion", "filters", "se", "activation",
                                         "stride"])

LARGE_BLOCKS = (
    Block(3, 1, 16, False, "RE", 1),
    Block(3, 4, 24, False, "RE", 2),
    Block(3, 3, 24, False, "RE", 1),
    Block(5, 3, 40, True, "RE", 2),
    Block(5, 3, 40, True, "RE", 1),
    Block(5, 3, 40, True, "RE", 1),
    Block(3, 6, 80, False, "HS", 2),
    Block(3, 2.5, 80, False, "HS", 1),
    Block(3, 184 / 80, 80, False, "HS", 1),
    Block(3, 184 / 80, 80, False, "HS", 1),
    Block(3, 6, 112, True, "HS", 1),
    Block(3, 6, 112, True, "HS", 1),
    Block(5, 6, 160, True, "HS", 2),
    Block(5, 6, 160, True, "HS", 1),
    Block(5, 6, 160, True, "HS", 1),
)

SMALL_BLOCKS = (
    Block(3, 1, 16, True, "RE", 2),
    Block(3, 72 / 16, 24, False, "RE", 2),
    Block(3, 88 / 24, 24, False, "RE", 1),
    Block(5, 4, 40, True, "HS", 2),
    Block(5, 6, 40, True, "HS", 1),
    Block(5, 6, 40, True, "HS", 1),
    Block(5, 3, 48, True, "HS", 1),
    Block(5, 3, 48, True, "HS", 1),
    Block(5, 6, 96, True, "HS", 2),
    Block(5, 6, 96, True, "HS", 1),
    Block(5, 6, 96, True, "HS", 1),
)

STEM_FILTERS = 16  # not scaled by the width (Keras Applications)
LAST_CONV_EXPANSION = 6  # 96 -> 576 (Small), 160 -> 960 (Large)
SE_RATIO = 0.25
LARGE_HEAD_FILTERS = 1280
SMALL_HEAD_FILTERS = 1024


def _activation(x, kind, prefix):
    if kind == "HS":
        return HardSwish(name=f"{prefix}_hardswish")(x)
    return layers.ReLU(name=f"{prefix}_relu")(x)


def _conv_bn(x, filters, kernel, stride, prefix, momentum, activation):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      name=f"{prefix}_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, epsilon=1e-3, name=f"{prefix}_bn")(x)
    if activation is not None:
        x = _activation(x, activation, prefix)
    return x


def _squeeze_excite(x, prefix):
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}_se_pool")(x)
    s = layers.Conv2D(_common.make_divisible(channels * SE_RATIO), 1, padding="same",
                      name=f"{prefix}_se_reduce")(s)
    s = layers.ReLU(name=f"{prefix}_se_relu")(s)
    s = layers.Conv2D(channels, 1, padding="same", name=f"{prefix}_se_expand")(s)
    s = HardSigmoid(name=f"{prefix}_se_gate")(s)
    return layers.Multiply(name=f"{prefix}_se_scale")([x, s])


def _bottleneck(x, block, filters, prefix, momentum):
    in_channels = x.shape[-1]
    shortcut = x
    if block.expansion != 1:
        x = _conv_bn(x, _common.make_divisible(in_channels * block.expansion), 1, 1,
                     f"{prefix}_expand", momentum, block.activation)
    x = layers.DepthwiseConv2D(block.kernel, strides=block.stride, padding="same",
                               use_bias=False, name=f"{prefix}_depthwise_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, epsilon=1e-3,
                                  name=f"{prefix}_depthwise_bn")(x)
    x = _activation(x, block.activation, f"{prefix}_depthwise")
    if block.se:
        x = _squeeze_excite(x, prefix)
    x = _conv_bn(x, filters, 1, 1, f"{prefix}_project", momentum, None)  # linear bottleneck
    if block.stride == 1 and in_channels == filters:
        x = layers.Add(name=f"{prefix}_add")([shortcut, x])
    return x


def _build(blocks, head_filters, variant, *, input_shape, num_classes, width, include_top,
           pooling, dropout, weights, name, bn_momentum, classifier_activation, minimalistic):
    _common.check_args(input_shape=input_shape, num_classes=num_classes, width=width,
                       include_top=include_top, pooling=pooling, dropout=dropout,
                       weights=weights, bn_momentum=bn_momentum,
                       classifier_activation=classifier_activation)
    if not isinstance(minimalistic, bool):
        raise ValueError("`minimalistic` must be True or False (True drops squeeze-excite, "
                         f"hard-swish and 5x5 kernels). Received: minimalistic={minimalistic!r}")
    if minimalistic:
        blocks = tuple(b._replace(kernel=3, se=False, activation="RE") for b in blocks)
    activation = "RE" if minimalistic else "HS"

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = _conv_bn(inputs, STEM_FILTERS, 3, 2, "stem", bn_momentum, activation)
    for i, block in enumerate(blocks):
        x = _bottleneck(x, block, _common.make_divisible(block.filters * width), f"block{i}",
                        bn_momentum)
    x = _conv_bn(x, _common.make_divisible(x.shape[-1] * LAST_CONV_EXPANSION), 1, 1, "head",
                 bn_momentum, activation)

    if include_top:
        # The pooled 1x1 conv is only widened, never narrowed (Keras Applications, slim's
        # finegrain_classification_mode).
        if width > 1.0:
            head_filters = _common.make_divisible(head_filters * width)
        x = layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
        x = layers.Conv2D(head_filters, 1, padding="same", name="top_conv")(x)  # bias, no BN
        x = _activation(x, activation, "top")
        if dropout:
            x = layers.Dropout(dropout, name="dropout")(x)
        x = layers.Conv2D(num_classes, 1, padding="same", activation=classifier_activation,
                          name="logits")(x)
        x = layers.Reshape((num_classes,), name="predictions")(x)
    else:
        x = _common.pool(x, pooling)

    default_name = f"mobilenet_v3_{variant}{'_minimalistic' if minimalistic else ''}_{width:g}"
    model = keras.Model(inputs, x, name=name or default_name)
    return _common.load_weights(model, weights)


_DOC = """Builds MobileNetV3-{variant} with tf_keras.

    Args:
      input_shape: (height, width, channels) of one image; the batch size is left free.
      num_classes: classifier outputs (with `include_top`).
      width: channel multiplier ("alpha" in Keras, "depth multiplier" in slim), e.g. 0.75, 1.0.
      include_top: end with global average pooling, the {head}-channel 1x1 conv, dropout and
        the 1x1-conv classifier.
      pooling: without `include_top`: None (4-D feature map), "avg" or "max".
      dropout: dropout rate before the classifier (0 disables it); 0.2 as Keras Applications.
      weights: None (random initialization) or the path of a local weights file saved from
        a model built with the same arguments. Nothing is downloaded.
      name: model name; default "mobilenet_v3_{variant_lower}[_minimalistic]_<width>".
      bn_momentum: BatchNormalization momentum.
      classifier_activation: "softmax" or None (logits).
      minimalistic: True for the "minimalistic" variant: no squeeze-excite, ReLU instead of
        hard-swish, 3x3 depthwise kernels only (same channel counts).

    Layer names are stable: `stem_conv`, `block{{i}}_expand_conv`, `block{{i}}_depthwise_conv`,
    `block{{i}}_se_reduce`, `block{{i}}_se_expand`, `block{{i}}_project_conv` (with `_bn` and
    `_relu`/`_hardswish` siblings), `block{{i}}_add`, `head_conv`, `top_conv`, `logits`,
    `predictions`.
    """


def mobilenet_v3_small(input_shape=(224, 224, 3), num_classes=1000, width=1.0, include_top=True,
                       pooling=None, dropout=0.2, weights=None, name=None, bn_momentum=0.9,
                       classifier_activation="softmax", minimalistic=False):
    return _build(SMALL_BLOCKS, SMALL_HEAD_FILTERS, "small", input_shape=input_shape,
                  num_classes=num_classes, width=width, include_top=include_top,
                  pooling=pooling, dropout=dropout, weights=weights, name=name,
                  bn_momentum=bn_momentum, classifier_activation=classifier_activation,
                  minimalistic=minimalistic)


def mobilenet_v3_large(input_shape=(224, 224, 3), num_classes=1000, width=1.0, include_top=True,
                       pooling=None, dropout=0.2, weights=None, name=None, bn_momentum=0.9,
                       classifier_activation="softmax", minimalistic=False):
    return _build(LARGE_BLOCKS, LARGE_HEAD_FILTERS, "large", input_shape=input_shape,
                  num_classes=num_classes, width=width, include_top=include_top,
                  pooling=pooling, dropout=dropout, weights=weights, name=name,
                  bn_momentum=bn_momentum, classifier_activation=classifier_activation,
                  minimalistic=minimalistic)


mobilenet_v3_small.__doc__ = _DOC.format(variant="Small", variant_lower="small",
                                         head=SMALL_HEAD_FILTERS)
mobilenet_v3_large.__doc__ = _DOC.format(variant="Large", variant_lower="large",
                                         head=LARGE_HEAD_FILTERS)
