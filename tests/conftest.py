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


@pytest.fixture
def fake_arena(monkeypatch):
    """tflm.arena_report replaced by a fixed 4 KiB measurement (no TFLM subprocess); the list
    of the `ram_budget` of every call, to check when and whether the arena was measured."""
    from tfedge.converters import tflm

    calls = []

    def arena_report(tflite_bytes, *, ram_budget=None, timeout=120):
        calls.append(ram_budget)
        return tflm.arena_for_budget(4096, ram_budget)

    monkeypatch.setattr(tflm, "arena_report", arena_report)
    return calls
