"""Tests for tfedge.data: the IDX reader, the digits and MNIST loaders, the pipelines."""

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfedge import data

BENCHMARK_MNIST = Path(__file__).resolve().parents[2].parent / "shared/data/mnist-t10k"
MNIST_T10K_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def idx_bytes(array, code=None) -> bytes:
    """The IDX encoding of `array`: header, then big-endian data."""
    array = np.asarray(array)
    code = _CODES[array.dtype.type] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, compress=None) -> Path:
    path = Path(path)
    payload = idx_bytes(array)
    if compress is None:
        compress = path.name.endswith(".gz")
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    return path


def mnist_arrays(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    return images, labels


def write_mnist(folder, prefix, images, labels, gz=True):
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)


# ---------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_splits():
    return data.digits()


def test_digits_shapes_dtypes_and_range(digits_splits):
    s = digits_splits
    assert s.name == "digits" and s.num_classes == 10
    assert s.x_train.shape == (1437, 32, 32, 1) and s.x_val.shape == (360, 32, 32, 1)
    assert s.y_train.shape == (1437,) and s.y_val.shape == (360,)
    assert s.input_shape == (32, 32, 1)
    for x in (s.x_train, s.x_val):
        assert x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert x.max() > 0.9  # scaled to the full range, not left at 0..16/255
    for y in (s.y_train, s.y_val):
        assert y.dtype == np.int32
        assert set(np.unique(y)) == set(range(10))


def test_digits_native_size_is_pixels_over_16():
    from sklearn.datasets import load_digits

    s = data.digits(input_shape=(8, 8, 1))
    expected = np.sort((load_digits().images / 16.0).astype(np.float32).reshape(1797, -1), axis=0)
    got = np.concatenate([s.x_train, s.x_val]).reshape(1797, -1)
    np.testing.assert_array_equal(np.sort(got, axis=0), expected)


def test_digits_is_deterministic_and_seed_changes_split(digits_splits):
    again = data.digits()
    for field in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(getattr(again, field), getattr(digits_splits, field))
    other = data.digits(seed=1)
    assert other.x_val.shape == (360, 32, 32, 1)
    assert not np.array_equal(other.y_val, digits_splits.y_val)
    assert not np.array_equal(other.x_val, digits_splits.x_val)


def test_digits_three_channels_repeat_gray(digits_splits):
    rgb = data.digits(input_shape=(32, 32, 3))
    assert rgb.x_train.shape == (1437, 32, 32, 3) and rgb.input_shape == (32, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb.x_train[..., c], digits_splits.x_train[..., 0])
        np.testing.assert_array_equal(rgb.x_val[..., c], digits_splits.x_val[..., 0])


def test_load_dispatches_to_digits(digits_splits):
    s = data.load("digits", input_shape=(32, 32, 1))
    np.testing.assert_array_equal(s.x_val, digits_splits.x_val)
    assert data.DATASETS == ("digits", "mnist")


# ---------------------------------------------------------------------------
# Splits: tf.data pipelines and the representative dataset
# ---------------------------------------------------------------------------


def _epoch(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys), [len(y) for y in ys]


def test_train_pipeline_batches_and_shuffles_deterministically(digits_splits):
    s = digits_splits
    ds = s.train(batch_size=100, seed=3)
    x1, y1, sizes = _epoch(ds)
    assert sizes == [100] * 14 + [37]
    assert x1.shape == (1437, 32, 32, 1) and x1.dtype == np.float32 and y1.dtype == np.int32
    assert not np.array_equal(y1, s.y_train)  # shuffled
    np.testing.assert_array_equal(np.sort(y1), np.sort(s.y_train))  # ...and complete
    _, y2, _ = _epoch(ds)
    assert not np.array_equal(y1, y2)  # reshuffled each epoch
    _, z1, _ = _epoch(s.train(batch_size=100, seed=3))
    _, z2, _ = _epoch(s.train(batch_size=100, seed=3))
    np.testing.assert_array_equal(z1, y1)  # same seed, same sequence of epochs
    np.testing.assert_array_equal(z2, y1)
    _, w, _ = _epoch(s.train(batch_size=100, seed=4))
    assert not np.array_equal(w, y1)
    x, y, _ = _epoch(s.train(batch_size=500, shuffle=False))
    np.testing.assert_array_equal(x, s.x_train)
    np.testing.assert_array_equal(y, s.y_train)


def test_val_pipeline_is_in_fixed_order(digits_splits):
    s = digits_splits
    x, y, sizes = _epoch(s.val(batch_size=64))
    assert sizes == [64] * 5 + [40]
    np.testing.assert_array_equal(x, s.x_val)
    np.testing.assert_array_equal(y, s.y_val)


def test_representative_yields_single_image_batches(digits_splits):
    items = list(digits_splits.representative(5))
    assert len(items) == 5
    for i, item in enumerate(items):
        assert isinstance(item, list) and len(item) == 1
        assert item[0].shape == (1, 32, 32, 1) and item[0].dtype == np.float32
        np.testing.assert_array_equal(item[0][0], digits_splits.x_train[i])
    assert len(list(digits_splits.representative())) == 200


# ---------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"input_shape": (32, 32)}, "Received: input_shape=(32, 32)"),
        ({"input_shape": (32, 0, 1)}, "Received: input_shape=(32, 0, 1)"),
        ({"input_shape": (32.0, 32, 1)}, "`input_shape` must be (height, width, channels)"),
        ({"input_shape": (32, 32, 2)}, "channels must be 1 (grayscale) or 3"),
        ({"val_fraction": 0.0}, "Received: val_fraction=0.0"),
        ({"val_fraction": 1}, "Received: val_fraction=1"),
        ({"val_fraction": "0.2"}, "`val_fraction` must be a number strictly between 0 and 1"),
        ({"val_fraction": 0.001}, "at least 10 images"),
        ({"seed": -1}, "Received: seed=-1"),
    ],
)
def test_digits_rejects_bad_arguments(kwargs, expected):
    with pytest.raises(ValueError) as info:
        data.digits(**kwargs)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "call, expected",
    [
        (
            lambda s: s.train(batch_size=0),
            "`batch_size` must be an integer >= 1. Received: batch_size=0",
        ),
        (lambda s: s.val(batch_size=2.5), "Received: batch_size=2.5"),
        (lambda s: list(s.representative(0)), "Received: num_samples=0"),
    ],
)
def test_splits_methods_reject_bad_arguments(digits_splits, call, expected):
    with pytest.raises(ValueError) as info:
        call(digits_splits)
    assert expected in str(info.value)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError) as info:
        data.load("cifar10", input_shape=(32, 32, 3))
    assert "digits, mnist" in str(info.value) and "name='cifar10'" in str(info.value)
    with pytest.raises(ValueError) as info:
        data.load("mnist", input_shape=(28, 28, 1))
    message = str(info.value)
    assert "`data_dir` is required" in message and "t10k-images-idx3-ubyte" in message
    with pytest.raises(ValueError) as info:
        data.load("digits", input_shape=(32, 32, 1), data_dir=str(tmp_path))
    assert "embedded" in str(info.value) and str(tmp_path) in str(info.value)


# ---------------------------------------------------------------------------
# read_idx
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
)
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz", "gzip-without-suffix"])
def test_read_idx_round_trip(tmp_path, dtype, name):
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True).astype(dtype)
    else:
        array = rng.normal(size=(3, 4, 5)).astype(dtype)
    path = write_idx(tmp_path / name, array, compress=name != "a.idx")
    got = data.read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    assert got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, array)
    got[0, 0, 0] = 0  # writable, not a view of the file bytes


def test_read_idx_one_dimension_and_str_path(tmp_path):
    labels = np.array([7, 2, 1, 0, 4], dtype=np.uint8)
    path = write_idx(tmp_path / "labels", labels)
    np.testing.assert_array_equal(data.read_idx(str(path)), labels)


def test_read_idx_does_not_import_tensorflow(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.arange(6, dtype=np.int16).reshape(2, 3))
    code = (
        "import sys, tfedge.data as d\n"
        f"a = d.read_idx({str(path)!r})\n"
        "assert a.tolist() == [[0, 1, 2], [3, 4, 5]], a\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


_GOOD = idx_bytes(np.zeros((10, 28, 28), np.uint8))


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("empty.idx", b"", ["shorter than its IDX header", "found 0 bytes", "at least 4"]),
        (
            "short.idx",
            b"\x00\x00\x08\x03\x00\x00",
            ["shorter than its IDX header", "16", "found 6"],
        ),
        (
            "magic.idx",
            b"\x12\x34\x08\x01\x00\x00\x00\x01\x00",
            ["not an IDX file: magic bytes are 0x1234 (expected 0x0000)"],
        ),
        ("dtype.idx", b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", ["unknown", "0x07", "0x08 uint8"]),
        ("ndim.idx", b"\x00\x00\x08\x00", ["0 dimensions", "expected at least 1"]),
        (
            "truncated.idx",
            _GOOD[:16 + 1234],
            ["truncated: header declares 10x28x28 = 7840 bytes of data, found 1234"],
        ),
        (
            "truncated16.idx",
            idx_bytes(np.zeros((2, 3), np.int16))[:-1],
            ["truncated", "2x3 int16", "12 bytes of data, found 11"],
        ),
        (
            "trailing.idx",
            _GOOD + b"\x00\x00\x00",
            ["trailing bytes", "7840 bytes", "found 7843", "3 extra"],
        ),
        ("truncated.gz", gzip.compress(_GOOD, mtime=0)[:40], ["corrupt gzip stream"]),
        ("garbage.gz", b"\x1f\x8b" + b"\xff" * 30, ["corrupt gzip stream"]),
        ("rawnamed.gz", _GOOD, ["corrupt gzip stream", "0x0000", "expected the gzip magic 0x1f8b"]),
        (
            "inner.gz",
            gzip.compress(_GOOD[:100], mtime=0),
            ["truncated (after gzip decompression)", "found 84"],
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",  # the file name; bytes are noise
)
def test_read_idx_errors(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(data.IDXFormatError) as info:
        data.read_idx(path)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_read_idx_missing_file(tmp_path):
    path = tmp_path / "nope-idx3-ubyte"
    with pytest.raises(FileNotFoundError) as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------
# mnist from synthetic IDX files
# ---------------------------------------------------------------------------


def test_mnist_t10k_only_splits_in_file_order(tmp_path):
    images, labels = mnist_arrays(50, seed=0)
    write_mnist(tmp_path, "t10k", images, labels)
    s = data.mnist(tmp_path)
    assert s.name == "mnist" and s.num_classes == 10 and s.input_shape == (28, 28, 1)
    assert s.x_train.shape == (40, 28, 28, 1) and s.x_val.shape == (10, 28, 28, 1)
    assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int32
    expected = images.astype(np.float32)[..., None] / np.float32(255)
    np.testing.assert_array_equal(s.x_train, expected[:40])
    np.testing.assert_array_equal(s.x_val, expected[40:])
    np.testing.assert_array_equal(s.y_train, labels[:40])
    np.testing.assert_array_equal(s.y_val, labels[40:])
    s2 = data.mnist(tmp_path, val_fraction=0.5)
    assert len(s2.x_train) == 25 and len(s2.x_val) == 25


def test_mnist_train_and_t10k_layout_raw_files(tmp_path):
    train_images, train_labels = mnist_arrays(60, seed=1)
    test_images, test_labels = mnist_arrays(20, seed=2)
    write_mnist(tmp_path, "train", train_images, train_labels, gz=False)
    write_mnist(tmp_path, "t10k", test_images, test_labels, gz=False)
    s = data.load("mnist", input_shape=(28, 28, 1), data_dir=tmp_path, val_fraction=0.5)
    assert s.x_train.shape == (60, 28, 28, 1) and s.x_val.shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(s.y_train, train_labels)
    np.testing.assert_array_equal(s.y_val, test_labels)
    np.testing.assert_array_equal(s.x_val[..., 0], test_images / np.float32(255))


def test_mnist_prefers_gz_when_both_forms_exist(tmp_path):
    images, labels = mnist_arrays(20, seed=3)
    write_mnist(tmp_path, "t10k", images, labels, gz=True)
    write_mnist(tmp_path, "t10k", 255 - images, labels, gz=False)
    s = data.mnist(tmp_path)
    np.testing.assert_array_equal(s.x_train[..., 0], images[:16] / np.float32(255))


def test_mnist_resizes_and_repeats_channels(tmp_path):
    images, labels = mnist_arrays(20, seed=4)
    images[0] = 255
    images[1] = 0
    write_mnist(tmp_path, "t10k", images, labels)
    s = data.mnist(tmp_path, input_shape=(32, 32, 1))
    assert s.x_train.shape == (16, 32, 32, 1) and s.x_val.shape == (4, 32, 32, 1)
    assert s.x_train.dtype == np.float32
    assert s.x_train.min() >= 0.0 and s.x_train.max() <= 1.0
    np.testing.assert_allclose(s.x_train[0], 1.0, atol=1e-6)
    np.testing.assert_array_equal(s.x_train[1], 0.0)
    np.testing.assert_allclose(
        s.x_train.mean(axis=(1, 2, 3)), images[:16].mean(axis=(1, 2)) / 255, atol=0.02
    )
    rgb = data.mnist(tmp_path, input_shape=(32, 32, 3))
    assert rgb.input_shape == (32, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb.x_val[..., c], s.x_val[..., 0])


def test_mnist_missing_directory(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(FileNotFoundError) as info:
        data.mnist(missing)
    assert str(missing) in str(info.value)


def test_mnist_directory_without_files_lists_names(tmp_path):
    (tmp_path / "README.txt").write_text("hi")
    with pytest.raises(FileNotFoundError) as info:
        data.mnist(tmp_path)
    message = str(info.value)
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "README.txt", str(tmp_path)):
        assert name in message


def test_mnist_half_a_pair(tmp_path):
    images, _ = mnist_arrays(10, seed=5)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    with pytest.raises(FileNotFoundError) as info:
        data.mnist(tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)
    assert "t10k-labels-idx1-ubyte" in str(info.value)


@pytest.mark.parametrize(
    "images, labels, words",
    [
        (np.zeros((10, 28, 28), np.uint8), np.zeros(9, np.uint8), ["10 images", "9 labels"]),
        (np.zeros((10, 28, 28), np.int16), np.zeros(10, np.uint8), ["3-D uint8", "int16"]),
        (np.zeros((10, 784), np.uint8), np.zeros(10, np.uint8), ["3-D uint8", "2-D"]),
        (np.zeros((10, 28, 28), np.uint8), np.full(10, 10, np.uint8), ["0..9", "10..10"]),
    ],
)
def test_mnist_rejects_inconsistent_files(tmp_path, images, labels, words):
    write_mnist(tmp_path, "t10k", images, labels)
    with pytest.raises(data.IDXFormatError) as info:
        data.mnist(tmp_path)
    message = str(info.value)
    assert "t10k-" in message
    for word in words:
        assert word in message


# ---------------------------------------------------------------------------
# The real benchmark data (outside the repository)
# ---------------------------------------------------------------------------


def test_mnist_benchmark_t10k():
    if not BENCHMARK_MNIST.is_dir():
        pytest.skip(f"benchmark data not present at {BENCHMARK_MNIST}")
    s = data.mnist(BENCHMARK_MNIST)
    assert s.x_train.shape == (8000, 28, 28, 1) and s.x_val.shape == (2000, 28, 28, 1)
    assert s.x_train.dtype == np.float32 and 0.0 <= s.x_train.min() and s.x_train.max() == 1.0
    counts = np.bincount(np.concatenate([s.y_train, s.y_val]), minlength=10)
    assert counts.tolist() == MNIST_T10K_COUNTS
    assert s.y_train[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the file's first labels
