import numpy as np
import pytest

from tfedge._keras import keras, layers
from tfedge.models import _layers


def numpy_shuffle(x, groups):
    n, h, w, c = x.shape
    return x.reshape(n, h, w, groups, c // groups).transpose(0, 1, 2, 4, 3).reshape(n, h, w, c)


@pytest.mark.parametrize("groups, channels", [(1, 4), (2, 8), (3, 12), (4, 8), (8, 16)])
def test_channel_shuffle_matches_the_paper_definition(groups, channels):
    x = np.random.default_rng(0).random((2, 3, 5, channels), np.float32)
    out = _layers.ChannelShuffle(groups)(x).numpy()
    np.testing.assert_array_equal(out, numpy_shuffle(x, groups))


def test_channel_shuffle_interleaves_groups():
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 1, 6)
    assert _layers.ChannelShuffle(2)(x).numpy().ravel().tolist() == [0, 3, 1, 4, 2, 5]


def test_channel_shuffle_refuses_bad_groups():
    with pytest.raises(ValueError, match="Received: groups=0"):
        _layers.ChannelShuffle(0)
    with pytest.raises(ValueError, match="6 channels cannot be split into 4 groups"):
        _layers.ChannelShuffle(4)(np.zeros((1, 2, 2, 6), np.float32))


def test_channel_split():
    x = np.arange(10, dtype=np.float32).reshape(1, 1, 1, 10)
    a, b = _layers.ChannelSplit([4, 6])(x)
    assert a.numpy().ravel().tolist() == [0, 1, 2, 3] and b.shape[-1] == 6
    with pytest.raises(ValueError, match="add up to 9"):
        _layers.ChannelSplit([4, 5])(x)
    with pytest.raises(ValueError, match="`sizes` must be"):
        _layers.ChannelSplit([10])


def test_hard_activations():
    x = np.array([-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0], np.float32)
    relu6 = np.clip(x + 3, 0, 6)
    np.testing.assert_allclose(_layers.HardSigmoid()(x).numpy(), relu6 / 6, rtol=1e-6)
    np.testing.assert_allclose(_layers.HardSwish()(x).numpy(), x * relu6 / 6, rtol=1e-6)


def test_layers_have_no_prunable_weights():
    for cls in _layers.CUSTOM_OBJECTS.values():
        assert cls.get_prunable_weights(None) == []


def test_models_with_custom_layers_save_and_load_without_custom_objects(tmp_path):
    inputs = keras.Input((4, 4, 8))
    x = _layers.HardSwish(name="hs")(inputs)
    x = _layers.ChannelShuffle(2, name="shuffle")(x)
    a, b = _layers.ChannelSplit([3, 5], name="split")(x)
    x = layers.Concatenate()([b, _layers.HardSigmoid(name="hsig")(a)])
    model = keras.Model(inputs, x)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("shuffle").groups == 2
    assert loaded.get_layer("split").sizes == (3, 5)
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
