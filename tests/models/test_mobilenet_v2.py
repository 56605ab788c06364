import numpy as np
import pytest

from tfedge import models
from tfedge._keras import layers


# Keras Applications' MobileNetV2 at 224x224x3 with 1000 classes, measured with tf_keras 2.21
# (`count_params()`); the paper's Table 4 rounds the width-1.0 figure to 3.4M.
@pytest.mark.parametrize("width, params", [(0.35, 1_691_208), (0.5, 1_987_224),
                                           (0.75, 2_663_064), (1.0, 3_538_984),
                                           (1.3, 5_431_048), (1.4, 6_156_712)])
def test_reference_parameter_counts(width, params):
    model = models.mobilenet_v2((224, 224, 3), num_classes=1000, width=width)
    assert model.count_params() == params


def test_same_layer_shapes_as_keras_applications():
    from tfedge._keras import keras

    ours = models.mobilenet_v2((96, 96, 3), num_classes=7, width=0.75)
    theirs = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.75, classes=7,
                                            weights=None)
    shapes = lambda m: sorted(tuple(w.shape) for w in m.weights)  # noqa: E731
    assert shapes(ours) == shapes(theirs)


def test_small_input_builds_and_runs():
    model = models.build("mobilenet_v2", input_shape=(32, 32, 1), num_classes=10, width=0.35)
    out = model(np.zeros((2, 32, 32, 1), np.float32), training=False).numpy()
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)


def test_layer_names_are_unique_and_stable():
    model = models.mobilenet_v2((32, 32, 3), num_classes=10, width=0.5)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    for name in ("stem_conv", "block0_depthwise_conv", "block1_expand_conv", "block16_project_bn",
                 "block2_add", "head_conv", "predictions"):
        assert name in names
    assert "block0_expand_conv" not in names  # the first block has expansion 1


def test_batchnorm_momentum_defaults_to_small_data_value():
    model = models.mobilenet_v2((32, 32, 1), num_classes=10, width=0.35)
    momenta = {l.momentum for l in model.layers if isinstance(l, layers.BatchNormalization)}
    assert momenta == {0.9}
    model = models.mobilenet_v2((32, 32, 1), num_classes=10, width=0.35, bn_momentum=0.99)
    assert {l.momentum for l in model.layers
            if isinstance(l, layers.BatchNormalization)} == {0.99}


@pytest.mark.parametrize("pooling, shape", [(None, (None, 1, 1, 1280)), ("avg", (None, 1280)),
                                            ("max", (None, 1280))])
def test_feature_extractor(pooling, shape):
    model = models.mobilenet_v2((32, 32, 3), include_top=False, pooling=pooling, width=0.35)
    assert tuple(model.output_shape) == shape


def test_width_above_one_widens_the_head():
    model = models.mobilenet_v2((32, 32, 3), include_top=False, width=1.4)
    assert model.get_layer("head_conv").filters == 1792


def test_weights_round_trip(tmp_path):
    model = models.mobilenet_v2((32, 32, 1), num_classes=10, width=0.35)
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    again = models.mobilenet_v2((32, 32, 1), num_classes=10, width=0.35, weights=path)
    x = np.random.default_rng(0).random((1, 32, 32, 1), np.float32)
    np.testing.assert_array_equal(model(x).numpy(), again(x).numpy())


def test_weights_from_another_architecture_fail_clearly(tmp_path):
    path = str(tmp_path / "w.weights.h5")
    models.mobilenet_v2((32, 32, 1), num_classes=10, width=0.35).save_weights(path)
    with pytest.raises(ValueError, match="same factory"):
        models.mobilenet_v2((32, 32, 1), num_classes=10, width=1.0, weights=path)


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=0), r"`width` must be a number > 0.*Received: width=0"),
    (dict(width="big"), r"Received: width='big'"),
    (dict(input_shape=(32, 32)), r"`input_shape` must be \(height, width, channels\)"),
    (dict(input_shape=(32, 32, 0)), r"Received: input_shape=\(32, 32, 0\)"),
    (dict(num_classes=0), r"`num_classes` must be a positive integer"),
    (dict(pooling="mean"), r"`pooling` must be one of"),
    (dict(dropout=1.0), r"`dropout` must be a number in \[0, 1\)"),
    (dict(bn_momentum=0.0), r"`bn_momentum`"),
    (dict(weights="imagenet"), r"never downloads weights"),
    (dict(weights="/no/such/file.h5"), r"does not exist"),
    (dict(weights=3), r"must be None or the path"),
    (dict(classifier_activation="relu"), r"`classifier_activation`"),
])
def test_bad_arguments_fail_before_building(kwargs, message):
    args = dict(input_shape=(32, 32, 1), num_classes=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        models.mobilenet_v2(**args)


def test_registry():
    assert "mobilenet_v2" in models.names()
    with pytest.raises(ValueError, match="unknown model 'nope'. Registered models: .*mobilenet_v2"):
        models.build("nope")
    with pytest.raises(ValueError, match="already registered"):
        models.register("mobilenet_v2", models.mobilenet_v2)


@pytest.mark.parametrize("value, divisor, expected", [(32 * 0.35, 8, 16), (16 * 0.35, 8, 8),
                                                      (24 * 0.35, 8, 8), (1280 * 1.4, 8, 1792),
                                                      (96 * 0.75, 8, 72), (10, 8, 16)])
def test_make_divisible(value, divisor, expected):
    assert models.make_divisible(value, divisor) == expected
