import pytest

import tfedge
from tfedge import models
from tfedge._keras import keras, layers


def test_macs_by_hand():
    inputs = keras.Input((8, 8, 4))
    x = layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False)(inputs)  # 4x4x6
    x = layers.DepthwiseConv2D(3, padding="same")(x)                              # 4x4x6
    x = layers.Conv2D(8, 1, groups=2)(x)                                          # 4x4x8
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(5)(x)
    p = tfedge.profile(keras.Model(inputs, x))
    conv = 4 * 4 * 6 * 3 * 3 * 4
    depthwise = 4 * 4 * 6 * 3 * 3
    grouped = 4 * 4 * 8 * 1 * 1 * (6 // 2)
    dense = 8 * 5
    assert [l.macs for l in p.layers if l.macs] == [conv, depthwise, grouped, dense]
    assert p.total_macs == conv + depthwise + grouped + dense
    assert p.total_params == 6 * 36 + (6 * 9 + 6) + (8 * 3 + 8) + (8 * 5 + 5)
    assert "total" in p.table() and p.as_dict()["total_macs"] == p.total_macs


def test_mobilenet_v2_reference_macs():
    # Sandler et al. 2018, Table 4: about 300M multiply-adds at 224x224, width 1.0.
    p = tfedge.profile(models.mobilenet_v2())
    assert p.total_macs == pytest.approx(300e6, rel=0.01)


def test_peak_activation_bytes_by_hand():
    inputs = keras.Input((8, 8, 4))                                   # 256 bytes
    a = layers.Conv2D(6, 3, strides=2, padding="same")(inputs)       # 96, while the input lives
    a = layers.BatchNormalization()(a)                                # in place
    a = layers.ReLU()(a)                                              # in place
    b = layers.Conv2D(6, 1)(a)                                        # 96
    c = layers.Add()([a, b])                                          # 96: a, b, c alive = 288
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(c))   # 6
    assert tfedge.profile(model).peak_activation_bytes == 256 + 96


def test_peak_activation_bytes_counts_a_long_skip():
    inputs = keras.Input((4, 4, 16))                                  # 256, read again at the end
    x = layers.Conv2D(64, 1)(inputs)                                  # 1024
    x = layers.Conv2D(16, 1)(x)                                       # 256
    model = keras.Model(inputs, layers.Add()([inputs, x]))            # 256
    assert tfedge.profile(model).peak_activation_bytes == 256 + 1024 + 256


def test_macs_of_separable_transposed_and_1d_convolutions_by_hand():
    inputs = keras.Input((8, 8, 4))
    x = layers.SeparableConv2D(6, 3, depth_multiplier=2, padding="same")(inputs)  # 8x8x6
    x = layers.Conv2DTranspose(3, 2, strides=2)(x)                                # 16x16x3
    x = layers.Reshape((256, 3))(x)
    x = layers.Conv1D(5, 4, strides=4)(x)                                         # 64x5
    p = tfedge.profile(keras.Model(inputs, x))
    separable = 8 * 8 * (4 * 2) * 3 * 3 + 8 * 8 * (4 * 2) * 6   # depthwise, then pointwise
    transposed = 8 * 8 * 6 * 2 * 2 * 3                          # each input scatters a kernel
    conv1d = 64 * 5 * 4 * 3
    assert [l.macs for l in p.layers if l.macs] == [separable, transposed, conv1d]
