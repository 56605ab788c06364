"""Shared fixtures: one tiny trained MobileNetV2 and its int8 conversion, built once a session.

Conversions and training take seconds each, so every test that needs a real model shares these.
"""

import pytest

import tfedge  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

INPUT_SHAPE = (32, 32, 1)


@pytest.fixture(scope="session")
def digits():
    from tfedge import data

    return data.digits(INPUT_SHAPE)


@pytest.fixture(scope="session")
def trained_model(digits):
    """MobileNetV2 width 0.35 at 32x32, one epoch on the digits training split."""
    from tfedge import models, training

    training.seed_everything(0)
    model = models.mobilenet_v2(INPUT_SHAPE, num_classes=10, width=0.35)
    training.fit(model, digits, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="session")
def int8_tflite(trained_model, digits):
    from tfedge.converters import tflite

    return tflite.to_int8(trained_model, digits.representative(50), num_samples=50)


@pytest.fixture(scope="session")
def float_tflite(trained_model):
    """A plain float32 conversion, for tests that need float ops in a model."""
    from tfedge.converters import tflite

    return tflite.converter_for(trained_model).convert()
