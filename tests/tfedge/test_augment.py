"""Tests for tfedge.augment: validation, determinism, what each operation does, tf.data use."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from tfedge._keras import tf
from tfedge.augment import OPS, SEED_STRIDE, Augment, _translate

ALL = tuple(OPS)


def images(n=16, shape=(8, 8, 1), seed=0, low=0.0, high=1.0):
    rng = np.random.default_rng(seed)
    return (low + (high - low) * rng.random((n, *shape))).astype(np.float32)


def seed(run=0, epoch=0, batch=0):
    return Augment.batch_seed(run, epoch, batch)


def np_translate(x, dy, dx, padding="zero"):
    """The reference: out[y, x] = image[y + dy, x + dx], zero or edge pixel outside."""
    h, w = x.shape[:2]
    ys, xs = np.arange(h) + dy, np.arange(w) + dx
    out = x[np.clip(ys, 0, h - 1)][:, np.clip(xs, 0, w - 1)]
    if padding == "zero":
        inside = ((ys >= 0) & (ys < h))[:, None, None] & ((xs >= 0) & (xs < w))[None, :, None]
        out = out * inside
    return out


def shift_of(out, x, pad, padding="zero"):
    """The (dy, dx) with |dy|, |dx| <= pad that turns `x` into `out`, or None."""
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            if np.array_equal(np_translate(x, dy, dx, padding), out):
                return dy, dx
    return None


# ---------------------------------------------------------------------------
# Validation and flags
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"names": ("flip", "blur")}, ["unknown 'blur'", "'flip', 'crop', 'brightness'"]),
        ({"names": "flip"}, ["tuple of operation names", "from_flag", "names='flip'"]),
        ({"names": ("flip", "flip")}, ["each operation once", "flip repeated"]),
        ({"input_shape": (8, 8)}, ["Received: input_shape=(8, 8)"]),
        ({"input_shape": (8, 8, 2)}, ["1 or 3 channels", "input_shape=(8, 8, 2)"]),
        ({"input_shape": (8, 8.0, 1)}, ["positive integers"]),
        ({"padding": "reflect"}, ["zero, edge", "padding='reflect'"]),
    ],
)
def test_bad_arguments_are_refused(kwargs, words):
    arguments = {"names": ("flip",), "input_shape": (8, 8, 1), **kwargs}
    with pytest.raises(ValueError) as info:
        Augment(**arguments)
    for word in words:
        assert word in str(info.value)


def test_names_are_kept_in_the_order_of_application():
    aug = Augment(["cutout", "flip", "contrast"], (32, 32, 3))
    assert aug.names == ("flip", "contrast", "cutout")
    assert aug.input_shape == (32, 32, 3) and aug.pad == (4, 4) and aug.cutout_size == (8, 8)
    assert Augment((), [28, 20, 1]).pad == (4, 3)  # 3.5 -> 4, 2.5 -> 3
    assert Augment((), (4, 4, 1)).pad == (1, 1)  # at least one pixel
    assert aug == Augment(("contrast", "cutout", "flip"), (32, 32, 3))


@pytest.mark.parametrize(
    "value, names",
    [
        ("", ()),
        ("none", ()),
        (" None ", ()),
        ("flip,crop", ("flip", "crop")),
        (" Crop , FLIP ", ("flip", "crop")),
        ("brightness,contrast,cutout", ("brightness", "contrast", "cutout")),
    ],
)
def test_from_flag(value, names):
    aug = Augment.from_flag(value, (8, 8, 1))
    assert aug.names == names and bool(aug) == bool(names)
    assert Augment.from_flag(aug.flag, (8, 8, 1)) == aug
    assert aug.flag == (",".join(names) or "none")


@pytest.mark.parametrize(
    "value, words",
    [
        ("flip,blur", ["unknown 'blur'", "augment='flip,blur'", "'cutout'", "'none'"]),
        ("flip,,crop", ["without empty items"]),
        ("flip,", ["without empty items"]),
        ("none,flip", ["'none' alone"]),
        ("flip,flip", ["each operation once"]),
        (None, ["augment=None"]),
    ],
)
def test_from_flag_errors(value, words):
    with pytest.raises(ValueError) as info:
        Augment.from_flag(value, (8, 8, 1))
    for word in words:
        assert word in str(info.value)


def test_from_flag_names_the_flag():
    with pytest.raises(ValueError, match="`train_augment` must be"):
        Augment.from_flag("blur", (8, 8, 1), flag="train_augment")


def test_call_errors():
    aug = Augment(("flip",), (8, 8, 1))
    with pytest.raises(ValueError, match="float32 in \\[0, 1\\]. Received: dtype=uint8"):
        aug(np.zeros((2, 8, 8, 1), np.uint8), seed())
    with pytest.raises(ValueError, match="\\(N, 8, 8, 1\\)"):
        aug(images(2, (8, 8, 3)), seed())
    with pytest.raises(ValueError, match="\\(N, 8, 8, 1\\)"):
        aug(images(2)[0], seed())
    with pytest.raises(ValueError, match="shape-\\[2\\] integer tensor"):
        aug(images(2), [1, 2, 3])
    with pytest.raises(ValueError, match="shape-\\[2\\] integer tensor"):
        aug(images(2), [0.5, 1.0])
    with pytest.raises(ValueError, match="Received: epoch=-1"):
        Augment.batch_seed(0, -1, 0)
    with pytest.raises(ValueError, match="Received: run_seed=1.5"):
        Augment.batch_seed(1.5, 0, 0)


# ---------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------


def test_batch_seed_formula():
    s = seed(7, 3, 11)
    assert s.dtype == tf.int64 and s.numpy().tolist() == [7, 3 * SEED_STRIDE + 11]
    big = Augment.batch_seed(1, 5000, tf.constant(9, tf.int64))  # past int32
    assert big.numpy().tolist() == [1, 5000 * 1_000_003 + 9]


@pytest.mark.parametrize("channels", [1, 3])
def test_same_seed_same_result_other_seed_other_result(channels):
    aug = Augment(ALL, (8, 8, channels))
    x = images(16, (8, 8, channels))
    a = aug(x, seed(1, 2, 3)).numpy()
    np.testing.assert_array_equal(aug(x, seed(1, 2, 3)).numpy(), a)
    np.testing.assert_array_equal(aug(x, tf.constant([1, 2 * SEED_STRIDE + 3], tf.int32)), a)
    for other in (seed(2, 2, 3), seed(1, 3, 3), seed(1, 2, 4)):
        b = aug(x, other).numpy()
        assert not np.array_equal(a, b)


def test_same_result_in_another_process():
    code = (
        "import hashlib, numpy as np\n"
        "from tfedge.augment import Augment, OPS\n"
        "x = (np.random.default_rng(0).random((16, 8, 8, 3))).astype(np.float32)\n"
        "y = Augment(tuple(OPS), (8, 8, 3))(x, Augment.batch_seed(7, 3, 11)).numpy()\n"
        "print(hashlib.sha256(y.tobytes()).hexdigest())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                          capture_output=True, text=True)
    x = images(16, (8, 8, 3))
    y = Augment(ALL, (8, 8, 3))(x, seed(7, 3, 11)).numpy()
    assert done.stdout.strip().splitlines()[-1] == hashlib.sha256(y.tobytes()).hexdigest()


def test_random_stream_is_pinned():
    """Golden values: if this fails, this TensorFlow version draws other Philox numbers, and a
    run resumed across the upgrade will not see the same augmented batches as before."""
    x = images(16)
    flipped = Augment(("flip",), (8, 8, 1))(x, seed()).numpy()
    assert [int(np.array_equal(o, i[:, ::-1])) for o, i in zip(flipped, x)] == [
        1, 0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ]
    x16 = x.repeat(2, axis=1).repeat(2, axis=2)
    cropped = Augment(("crop",), (16, 16, 1))(x16, seed()).numpy()
    assert [shift_of(o, i, 2) for o, i in zip(cropped, x16)] == [
        (1, 1), (0, 0), (2, 0), (-1, 2), (-2, 2), (1, 2), (0, -2), (-1, 0),
        (2, 2), (-1, 1), (2, -2), (-1, 0), (-2, 1), (-2, 0), (0, -1), (-1, 1),
    ]


def test_each_operation_has_its_own_sub_seed():
    x = images(16, low=0.3, high=0.7)  # no clipping for brightness deltas within 0.2
    flip = Augment(("flip",), (8, 8, 1))(x, seed(3)).numpy()
    with_others = Augment(("flip", "brightness"), (8, 8, 1))(x, seed(3)).numpy()
    # the same images are mirrored: brightness only added a constant to each
    for f, w in zip(flip, with_others):
        np.testing.assert_allclose(w - f, (w - f).mean(), atol=1e-6)


# ---------------------------------------------------------------------------
# What each operation does
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("names", [(name,) for name in OPS] + [ALL])
@pytest.mark.parametrize("shape", [(8, 8, 1), (6, 10, 3)])
def test_shape_dtype_and_range_are_kept(names, shape):
    aug = Augment(names, shape)
    ones, zeros = np.ones((5, *shape), np.float32), np.zeros((5, *shape), np.float32)
    for x in (images(5, shape), ones, zeros):
        y = aug(x, seed(4)).numpy()
        assert y.shape == x.shape and y.dtype == np.float32
        assert y.min() >= 0.0 and y.max() <= 1.0
    assert not np.array_equal(aug(images(5, shape), seed(4)).numpy(), images(5, shape))


def test_no_operations_is_the_identity():
    x = images(4)
    aug = Augment.from_flag("none", (8, 8, 1))
    np.testing.assert_array_equal(aug(x, seed()).numpy(), x)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(2)
    assert aug.map_batches(ds, 0) is ds


def test_flip_mirrors_some_images_and_leaves_the_others():
    x = images(32)
    y = Augment(("flip",), (8, 8, 1))(x, seed(5)).numpy()
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(y, x)]
    kept = [np.array_equal(o, i) for o, i in zip(y, x)]
    assert all(m != k for m, k in zip(mirrored, kept))  # exactly one of the two, never both
    assert 4 <= sum(mirrored) <= 28


@pytest.mark.parametrize("padding", ["zero", "edge"])
def test_crop_is_a_bounded_translation(padding):
    x = images(32, (16, 16, 3))
    aug = Augment(("crop",), (16, 16, 3), padding=padding)
    y = aug(x, seed(6)).numpy()
    shifts = [shift_of(o, i, 2, padding) for o, i in zip(y, x)]
    assert None not in shifts  # each output is the image moved by at most pad = 2
    assert len(set(shifts)) > 5 and any(s != (0, 0) for s in shifts)


@pytest.mark.parametrize("padding", ["zero", "edge"])
def test_translate_zero_shift_is_the_identity_and_shifts_are_exact(padding):
    x = images(3, (5, 7, 3))
    zero = tf.zeros([3], tf.int32)
    np.testing.assert_array_equal(_translate(tf.constant(x), zero, zero, padding).numpy(), x)
    dy, dx = tf.constant([1, -2, 0]), tf.constant([0, 3, -1])
    got = _translate(tf.constant(x), dy, dx, padding).numpy()
    for i, (a, b) in enumerate(zip([1, -2, 0], [0, 3, -1])):
        np.testing.assert_array_equal(got[i], np_translate(x[i], a, b, padding))
    assert got[0, :4].tolist() == x[0, 1:].tolist()  # moved up one row
    if padding == "zero":
        assert (got[0, 4] == 0).all()
    else:
        np.testing.assert_array_equal(got[0, 4], x[0, 4])


def test_brightness_adds_one_bounded_delta_per_image():
    x = images(32, (8, 8, 3), low=0.3, high=0.7)  # no clipping for deltas within 0.2
    y = Augment(("brightness",), (8, 8, 3))(x, seed(7)).numpy()
    delta = (y - x).reshape(32, -1)
    np.testing.assert_allclose(delta, delta[:, :1] * np.ones_like(delta), atol=1e-6)
    assert np.abs(delta).max() <= 0.2 + 1e-6
    assert len(np.unique(np.round(delta[:, 0], 5))) > 20 and delta.min() < 0 < delta.max()


def test_contrast_scales_around_each_channel_mean():
    x = images(32, (8, 8, 3), low=0.4, high=0.6)  # no clipping for factors within 1.2
    y = Augment(("contrast",), (8, 8, 3))(x, seed(8)).numpy()
    mean = x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y.mean(axis=(1, 2), keepdims=True), mean, atol=1e-5)
    factor = ((y - mean) * (x - mean)).sum(axis=(1, 2, 3)) / ((x - mean) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(y, mean + factor[:, None, None, None] * (x - mean), atol=1e-5)
    assert 0.8 - 1e-5 <= factor.min() and factor.max() <= 1.2 + 1e-5
    assert factor.min() < 0.95 and factor.max() > 1.05


def test_cutout_zeroes_one_clipped_square():
    x = np.ones((64, 8, 8, 1), np.float32)
    y = Augment(("cutout",), (8, 8, 1))(x, seed(9)).numpy()[..., 0]
    sizes = set()
    for image in y:
        rows, cols = np.nonzero(image == 0)
        assert rows.size > 0 and set(np.unique(image)) <= {0.0, 1.0}
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert h <= 2 and w <= 2 and rows.size == h * w  # one rectangle, at most 2x2
        sizes.add((h, w))
    assert (2, 2) in sizes and len(sizes) > 1  # whole squares, and squares cut at the edges


# ---------------------------------------------------------------------------
# Inside tf.function and tf.data
# ---------------------------------------------------------------------------


def test_works_inside_tf_function_with_unknown_batch_size():
    aug = Augment(ALL, (8, 8, 3))
    x = images(6, (8, 8, 3))
    fn = tf.function(
        aug.__call__,
        input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32), tf.TensorSpec([2], tf.int64)],
    )
    np.testing.assert_array_equal(fn(x, seed(1, 1, 1)).numpy(), aug(x, seed(1, 1, 1)).numpy())
    np.testing.assert_array_equal(fn(x[:2], seed(1, 1, 1)).numpy().shape, (2, 8, 8, 3))


def test_works_in_dataset_map_and_map_batches():
    aug = Augment(("flip", "crop", "brightness"), (8, 8, 1))
    x, labels = images(10), np.arange(10, dtype=np.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, labels)).batch(4)
    mapped = ds.enumerate().map(lambda i, b: (aug(b[0], Augment.batch_seed(5, 2, i)), b[1]))
    by_hand = [aug(x[i * 4 : i * 4 + 4], seed(5, 2, i)).numpy() for i in range(3)]
    for (got, y), want, start in zip(mapped, by_hand, (0, 4, 8)):
        np.testing.assert_array_equal(got.numpy(), want)
        np.testing.assert_array_equal(y.numpy(), labels[start : start + 4])
    for _ in range(2):  # the same on every iteration: no hidden state
        got = [(b.numpy(), y.numpy()) for b, y in aug.map_batches(ds, 5, 2)]
        assert len(got) == 3
        for (b, y), want, start in zip(got, by_hand, (0, 4, 8)):
            np.testing.assert_array_equal(b, want)
            np.testing.assert_array_equal(y, labels[start : start + 4])
    only_images = list(aug.map_batches(tf.data.Dataset.from_tensor_slices(x).batch(4), 5, 2))
    np.testing.assert_array_equal(only_images[2].numpy(), by_hand[2])
    epochs = tf.data.Dataset.range(2).flat_map(lambda e: aug.map_batches(ds, 5, e))
    batches = [b.numpy() for b, _ in epochs]
    assert [len(b) for b in batches] == [4, 4, 2] * 2
    np.testing.assert_array_equal(batches[2], aug(x[8:], seed(5, 0, 2)).numpy())  # epoch 0
    np.testing.assert_array_equal(batches[3], aug(x[:4], seed(5, 1, 0)).numpy())  # epoch 1
    assert not np.array_equal(batches[0], batches[3])  # the same images, another epoch
