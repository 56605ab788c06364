"""Layers the model families share that Keras lacks, written for tfmot and TFLite.

Each layer is serializable (registered under the "tfedge" package, so `keras.models.load_model`
finds it without `custom_objects`), declares no prunable weights (tfmot's pruning wrapper leaves
it as it is), and has a QuantizeConfig in `tfedge.quantization` (QAT needs no user code). They
are written so that the TFLite converter emits microcontroller-friendly ops:

| layer | TFLite ops (int8) |
| --- | --- |
| HardSwish | HARD_SWISH |
| HardSigmoid | MUL (the +3 and the ReLU6 fold into the preceding conv) |
| ChannelShuffle | RESHAPE, TRANSPOSE (4-D), RESHAPE |
| ChannelSplit | SPLIT or SPLIT_V |
"""

from tfedge._keras import keras, layers, tf

_serializable = keras.utils.register_keras_serializable(package="tfedge")


class _NoPrunableWeights:
    def get_prunable_weights(self):
        """tfmot's pruning hook: nothing in this layer is pruned."""
        return []


@_serializable
class HardSwish(_NoPrunableWeights, layers.Layer):
    """x * ReLU6(x + 3) / 6 (Howard et al. 2019, "Searching for MobileNetV3", eq. 2)."""

    def call(self, inputs):
        return inputs * (tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0))


@_serializable
class HardSigmoid(_NoPrunableWeights, layers.Layer):
    """ReLU6(x + 3) / 6, the piecewise-linear sigmoid of MobileNetV3 and GhostNet."""

    def call(self, inputs):
        return tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0)


@_serializable
class ChannelShuffle(_NoPrunableWeights, layers.Layer):
    """ShuffleNet's channel shuffle (Zhang et al. 2018, section 3.1) on NHWC tensors.

    Implemented as reshape (N, H*W, groups, C/groups) -> 4-D transpose -> reshape, so that no
    TRANSPOSE of more than 4 dimensions reaches the model (CMSIS-NN refuses those).
    """

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(groups, int) or groups < 1:
            raise ValueError(f"`groups` must be a positive integer. Received: groups={groups!r}")
        self.groups = groups

    def build(self, input_shape):
        if len(input_shape) != 4 or None in tuple(input_shape[1:]):
            raise ValueError(f"{self.name} needs a 4-D input with static height, width and "
                             f"channels. Received: {tuple(input_shape)}")
        if input_shape[-1] % self.groups:
            raise ValueError(f"{self.name}: {input_shape[-1]} channels cannot be split into "
                             f"{self.groups} groups")
        super().build(input_shape)

    def call(self, inputs):
        _, height, width, channels = inputs.shape
        x = tf.reshape(inputs, [-1, height * width, self.groups, channels // self.groups])
        x = tf.transpose(x, [0, 1, 3, 2])
        return tf.reshape(x, [-1, height, width, channels])

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


@_serializable
class ChannelSplit(_NoPrunableWeights, layers.Layer):
    """Splits the channels into pieces of the given sizes (ShuffleNet V2's channel split)."""

    def __init__(self, sizes, **kwargs):
        super().__init__(**kwargs)
        sizes = tuple(sizes)
        if len(sizes) < 2 or not all(isinstance(s, int) and s > 0 for s in sizes):
            raise ValueError(f"`sizes` must be two or more positive integers. Received: "
                             f"sizes={sizes!r}")
        self.sizes = sizes

    def build(self, input_shape):
        if input_shape[-1] != sum(self.sizes):
            raise ValueError(f"{self.name}: sizes {self.sizes} add up to {sum(self.sizes)}, but "
                             f"the input has {input_shape[-1]} channels")
        super().build(input_shape)

    def call(self, inputs):
        return tf.split(inputs, list(self.sizes), axis=-1)

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape[:-1]) + (s,) for s in self.sizes]

    def get_config(self):
        return {**super().get_config(), "sizes": list(self.sizes)}


CUSTOM_OBJECTS = {cls.__name__: cls for cls in
                  (HardSwish, HardSigmoid, ChannelShuffle, ChannelSplit)}
