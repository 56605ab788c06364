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
    assert data.DATASETS == ("digits", "mnist", "cifar10", "image_folder", "tfds")
    assert s.class_names == tuple("0123456789")


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
        data.load("cifar100", input_shape=(32, 32, 3))
    assert "digits, mnist, cifar10, image_folder, tfds" in str(info.value)
    assert "name='cifar100'" in str(info.value)
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


# ---------------------------------------------------------------------------
# Splits.class_names
# ---------------------------------------------------------------------------


def test_splits_class_names_default_and_check():
    x, y = np.zeros((2, 4, 4, 1), np.float32), np.zeros(2, np.int32)
    s = data.Splits("t", x, y, x, y, 2)  # positional construction still works
    assert s.class_names is None
    s = data.Splits("t", x, y, x, y, 2, class_names=["a", "b"])
    assert s.class_names == ("a", "b")
    with pytest.raises(ValueError) as info:
        data.Splits("t", x, y, x, y, 3, class_names=("a", "b"))
    assert "num_classes=3" in str(info.value) and "2 names" in str(info.value)


# ---------------------------------------------------------------------------
# cifar10 from synthetic binary batches
# ---------------------------------------------------------------------------

CIFAR_META = "".join(f"class{i}\n" for i in range(10)) + "\n\n"  # the real file ends in blanks


def cifar_arrays(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    return images, labels


def cifar_bytes(images, labels) -> bytes:
    """CIFAR-10 binary records: label byte, then the R, G and B planes, each row-major."""
    planes = np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), 3072)
    return np.concatenate([np.asarray(labels, np.uint8)[:, None], planes], axis=1).tobytes()


def write_cifar(folder, name, images, labels) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(cifar_bytes(images, labels))
    return path


def _scaled(images):
    return images.astype(np.float32) / np.float32(255)


@pytest.fixture
def cifar_dir(tmp_path):
    """cifar-10-batches-bin with 3 + 4 training records, 5 test records and the meta file."""
    folder = tmp_path / "cifar-10-batches-bin"
    b1, b2, test = cifar_arrays(3, seed=1), cifar_arrays(4, seed=2), cifar_arrays(5, seed=3)
    b1[0][0] = (10, 20, 30)  # one image of known, different R, G and B
    write_cifar(folder, "data_batch_1.bin", *b1)
    write_cifar(folder, "data_batch_2.bin", *b2)
    write_cifar(folder, "test_batch.bin", *test)
    (folder / "batches.meta.txt").write_text(CIFAR_META)
    return folder, b1, b2, test


def test_cifar10_train_batches_and_test_batch_exact_values(cifar_dir):
    folder, b1, b2, test = cifar_dir
    for where in (folder, folder.parent, str(folder)):  # the folder itself or its parent
        s = data.cifar10(where)
        assert s.name == "cifar10" and s.num_classes == 10 and s.input_shape == (32, 32, 3)
        assert s.class_names == tuple(f"class{i}" for i in range(10))
        assert s.x_train.shape == (7, 32, 32, 3) and s.x_val.shape == (5, 32, 32, 3)
        assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int32
        np.testing.assert_array_equal(s.x_train, _scaled(np.concatenate([b1[0], b2[0]])))
        np.testing.assert_array_equal(s.y_train, np.concatenate([b1[1], b2[1]]))
        np.testing.assert_array_equal(s.x_val, _scaled(test[0]))
        np.testing.assert_array_equal(s.y_val, test[1])
    # channel order: the first record's planes are R=10, G=20, B=30 everywhere
    np.testing.assert_array_equal(s.x_train[0, 5, 7], np.float32([10, 20, 30]) / np.float32(255))
    assert data.cifar10(folder, seed=5, val_fraction=0.5).y_val.tolist() == test[1].tolist()


def test_cifar10_plane_layout_by_hand(tmp_path):
    """Without the helper: byte 1 + k is R at (k // 32, k % 32), 1025 + k is G, 2049 + k is B."""
    record = bytearray(3073)
    record[0] = 7
    record[1 + 3 * 32 + 4] = 255  # R at row 3, col 4
    record[1025 + 31] = 128  # G at row 0, col 31
    record[2049 + 31 * 32] = 64  # B at row 31, col 0
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(bytes(record) * 2)
    s = data.cifar10(folder, val_fraction=0.5)
    x = s.x_train[0]
    assert s.y_train.tolist() == [7] and s.y_val.tolist() == [7]
    assert x[3, 4].tolist() == [1.0, 0.0, 0.0]
    assert x[0, 31].tolist() == [0.0, np.float32(128) / np.float32(255), 0.0]
    assert x[31, 0].tolist() == [0.0, 0.0, np.float32(64) / np.float32(255)]
    assert np.count_nonzero(x) == 3
    assert s.class_names == data.CIFAR10_CLASSES  # no batches.meta.txt: the standard names


def test_cifar10_only_data_batches_split_in_file_order_across_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    b1, b3 = cifar_arrays(5, seed=4), cifar_arrays(5, seed=5)
    write_cifar(folder, "data_batch_1.bin", *b1)
    write_cifar(folder, "data_batch_3.bin", *b3)  # batches may be missing
    s = data.cifar10(tmp_path, val_fraction=0.3)
    images, labels = np.concatenate([b1[0], b3[0]]), np.concatenate([b1[1], b3[1]])
    np.testing.assert_array_equal(s.x_train, _scaled(images[:7]))
    np.testing.assert_array_equal(s.x_val, _scaled(images[7:]))
    np.testing.assert_array_equal(s.y_train, labels[:7])
    np.testing.assert_array_equal(s.y_val, labels[7:])
    s = data.cifar10(tmp_path, val_fraction=0.6)  # the boundary inside the first file
    np.testing.assert_array_equal(s.y_train, labels[:4])
    np.testing.assert_array_equal(s.x_val, _scaled(images[4:]))


def test_cifar10_chunked_conversion_matches(cifar_dir, monkeypatch):
    folder = cifar_dir[0]
    whole = data.cifar10(folder, input_shape=(16, 16, 1))
    monkeypatch.setattr(data, "_CHUNK", 2)
    chunked = data.cifar10(folder, input_shape=(16, 16, 1))
    np.testing.assert_array_equal(chunked.x_train, whole.x_train)
    np.testing.assert_array_equal(chunked.x_val, whole.x_val)


def test_cifar10_gray_and_resize(tmp_path):
    images = np.zeros((4, 32, 32, 3), np.uint8)
    images[0] = 255
    images[1] = (255, 0, 0)
    images[2] = (0, 0, 255)
    images[3] = np.random.default_rng(6).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    write_cifar(tmp_path, "test_batch.bin", images, [0, 1, 2, 3])
    s = data.cifar10(tmp_path, input_shape=(32, 32, 1), val_fraction=0.25)
    assert s.x_train.shape == (3, 32, 32, 1) and s.x_val.shape == (1, 32, 32, 1)
    np.testing.assert_allclose(s.x_train[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(s.x_train[1], 0.299, atol=1e-6)
    np.testing.assert_allclose(s.x_train[2], 0.114, atol=1e-6)
    luma = _scaled(images[3]) @ np.float32([0.299, 0.587, 0.114])
    np.testing.assert_allclose(s.x_val[0, ..., 0], luma, atol=1e-6)
    small = data.cifar10(tmp_path, input_shape=(8, 12, 3), val_fraction=0.25)
    assert small.x_train.shape == (3, 8, 12, 3) and small.x_train.dtype == np.float32
    red = np.broadcast_to(np.float32([1, 0, 0]), (8, 12, 3))
    np.testing.assert_allclose(small.x_train[1], red, atol=1e-6)
    assert 0.0 <= small.x_val.min() and small.x_val.max() <= 1.0


@pytest.mark.parametrize(
    "size, words",
    [
        (3073 * 2 - 1, ["6145 bytes", "1 records and 3072 bytes"]),
        (100, ["100 bytes", "0 records and 100 bytes"]),
        (0, ["0 bytes"]),
    ],
)
def test_cifar10_truncated_file(tmp_path, size, words):
    write_cifar(tmp_path, "data_batch_1.bin", *cifar_arrays(2, seed=7))
    path = tmp_path / "data_batch_2.bin"
    path.write_bytes(cifar_bytes(*cifar_arrays(2, seed=8))[:size])
    with pytest.raises(data.DataFormatError) as info:
        data.cifar10(tmp_path)
    message = str(info.value)
    for word in [str(path), "truncated", "3073-byte records", "30730000 bytes", *words]:
        assert word in message


def test_cifar10_bad_label_and_bad_meta(tmp_path):
    images, labels = cifar_arrays(3, seed=9)
    labels[1] = 42
    path = write_cifar(tmp_path, "test_batch.bin", images, labels)
    with pytest.raises(data.DataFormatError) as info:
        data.cifar10(tmp_path)
    assert str(path) in str(info.value) and "record 1 has label 42" in str(info.value)
    write_cifar(tmp_path, "test_batch.bin", images, labels % 10)
    (tmp_path / "batches.meta.txt").write_text("a\nb\nc\n")
    with pytest.raises(data.DataFormatError) as info:
        data.cifar10(tmp_path)
    assert "batches.meta.txt" in str(info.value) and "found 3" in str(info.value)


class _Bomb:
    """Unpickling this creates a folder: proof that the loader unpickled something."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def test_cifar10_refuses_the_pickled_python_version(tmp_path):
    import pickle

    marker = tmp_path / "UNPICKLED"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (folder / name).write_bytes(pickle.dumps(_Bomb(str(marker))))
    for where in (folder, tmp_path):
        with pytest.raises(data.DataFormatError) as info:
            data.cifar10(where)
        message = str(info.value)
        for word in ("never unpickles", "cifar-10-batches-bin", "cifar-10-binary.tar.gz",
                     "binary version", str(folder)):
            assert word in message
    renamed = tmp_path / "mycifar"
    folder.rename(renamed)  # recognised by its file names too
    with pytest.raises(data.DataFormatError, match="never unpickles"):
        data.cifar10(renamed)
    assert not marker.exists()


def test_cifar10_missing_data(tmp_path):
    (tmp_path / "README").write_text("x")
    with pytest.raises(FileNotFoundError) as info:
        data.cifar10(tmp_path)
    for word in ("data_batch_1.bin", "test_batch.bin", "cifar-10-batches-bin", "README"):
        assert word in str(info.value)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(FileNotFoundError, match="extract it"):
        data.cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-bin").mkdir()
    with pytest.raises(FileNotFoundError, match="holds none of"):
        data.cifar10(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        data.cifar10(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)
    with pytest.raises(ValueError, match="Received: data_dir=None"):
        data.cifar10(None)


def test_cifar10_one_batch_too_small_to_split(tmp_path):
    write_cifar(tmp_path, "test_batch.bin", *cifar_arrays(2, seed=10))
    with pytest.raises(ValueError) as info:
        data.cifar10(tmp_path, val_fraction=0.1)
    assert "at least one image in each split of the 2 images" in str(info.value)
    assert "test_batch.bin" in str(info.value)


def test_load_dispatches_to_cifar10(cifar_dir):
    folder = cifar_dir[0]
    s = data.load("cifar10", input_shape=(32, 32, 3), data_dir=folder, seed=3)
    np.testing.assert_array_equal(s.x_val, data.cifar10(folder).x_val)
    with pytest.raises(ValueError) as info:
        data.load("cifar10", input_shape=(32, 32, 3))
    assert "`data_dir` is required for 'cifar10'" in str(info.value)
    assert "cifar-10-batches-bin" in str(info.value)


# ---------------------------------------------------------------------------
# image_folder from synthetic PNG files
# ---------------------------------------------------------------------------


def write_png(path, image) -> Path:
    from tfedge._keras import tf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.asarray(image, np.uint8)
    path.write_bytes(tf.io.encode_png(image if image.ndim == 3 else image[..., None]).numpy())
    return path


def bmp_bytes(image) -> bytes:
    """A 24-bit uncompressed BMP, written by hand (bottom-up rows of B, G, R, padded to 4)."""
    image = np.asarray(image, np.uint8)
    h, w, _ = image.shape
    row = w * 3 + (-w * 3) % 4
    pixels = b"".join(
        image[y, :, ::-1].tobytes() + b"\0" * (row - w * 3) for y in range(h - 1, -1, -1)
    )
    header = b"BM" + (54 + len(pixels)).to_bytes(4, "little") + b"\0" * 4
    header += (54).to_bytes(4, "little")
    info = (40).to_bytes(4, "little") + w.to_bytes(4, "little") + h.to_bytes(4, "little")
    info += (1).to_bytes(2, "little") + (24).to_bytes(2, "little") + b"\0" * 24
    return header + info + pixels


COUNTS = {"cat": 10, "dog": 5, "zebra": 3}


def make_folder(root, counts=COUNTS, size=(4, 4)):
    """Class c's image i is constant with value 50 * c + i, so pixels name the file."""
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            write_png(root / name / f"{i:03d}.png", np.full(size, 50 * c + i))
    return root


def _ids(x):
    """The 50 * class + index value of each constant gray image."""
    values = np.rint(x[..., 0] * 255).astype(int)
    assert (values == values[:, :1, :1]).all()
    return values[:, 0, 0]


def test_image_folder_labels_class_names_and_stratified_split(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "README.txt").write_text("top-level files are not classes")
    (tmp_path / "cat" / "notes.txt").write_text("skipped: not an image")
    (tmp_path / ".cache").mkdir()  # hidden: not a class
    s = data.image_folder(tmp_path, input_shape=(4, 4, 1))
    assert s.name == "image_folder" and s.num_classes == 3
    assert s.class_names == ("cat", "dog", "zebra")
    assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int32
    train, val = _ids(s.x_train), _ids(s.x_val)
    np.testing.assert_array_equal(train // 50, s.y_train)  # each label is its folder's index
    np.testing.assert_array_equal(val // 50, s.y_val)
    # floor(0.2 * n + 0.5) per class: 10 -> 2, 5 -> 1, 3 -> 1
    assert np.bincount(s.y_val, minlength=3).tolist() == [2, 1, 1]
    assert np.bincount(s.y_train, minlength=3).tolist() == [8, 4, 2]
    everything = sorted(50 * c + i for c, n in enumerate(COUNTS.values()) for i in range(n))
    assert sorted(train.tolist() + val.tolist()) == everything  # disjoint and complete
    assert val.tolist() == sorted(val.tolist())  # val in class, path order
    assert train.tolist() != sorted(train.tolist())  # train shuffled...
    assert set(s.y_train[:3].tolist()) != {0}  # ...so the first images are not all one class


def test_image_folder_is_deterministic_and_seed_changes_split(tmp_path):
    make_folder(tmp_path)
    a = data.image_folder(tmp_path, input_shape=(4, 4, 1), seed=0)
    b = data.load("image_folder", input_shape=(4, 4, 1), data_dir=tmp_path, seed=0)
    for field in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    vals = {tuple(_ids(data.image_folder(tmp_path, (4, 4, 1), seed=k).x_val)) for k in range(4)}
    assert len(vals) > 1
    half = data.image_folder(tmp_path, (4, 4, 1), val_fraction=0.5)
    assert np.bincount(half.y_val).tolist() == [5, 3, 2]  # 2.5 -> 3, 1.5 -> 2: half rounds up


def test_image_folder_train_and_val_subfolders(tmp_path):
    make_folder(tmp_path / "train")
    write_png(tmp_path / "val" / "dog" / "v1.png", np.full((4, 4), 201))
    write_png(tmp_path / "val" / "cat" / "v2.png", np.full((4, 4), 200))
    write_png(tmp_path / "test" / "cat" / "t.png", np.full((4, 4), 255))  # never read
    s = data.image_folder(tmp_path, (4, 4, 1))
    assert s.class_names == ("cat", "dog", "zebra")
    assert len(s.y_train) == 18 and sorted(s.y_train.tolist()) == [0] * 10 + [1] * 5 + [2] * 3
    assert _ids(s.x_val).tolist() == [200, 201] and s.y_val.tolist() == [0, 1]
    (tmp_path / "val").rename(tmp_path / "validation")
    again = data.image_folder(tmp_path, (4, 4, 1))
    np.testing.assert_array_equal(again.y_val, s.y_val)
    np.testing.assert_array_equal(again.x_train, s.x_train)
    (tmp_path / "val").mkdir()
    with pytest.raises(ValueError, match="both val/ and validation/"):
        data.image_folder(tmp_path, (4, 4, 1))


def test_image_folder_train_only_is_split(tmp_path):
    make_folder(tmp_path / "train")
    s = data.image_folder(tmp_path, (4, 4, 1))
    t = data.image_folder(tmp_path / "train", (4, 4, 1))
    np.testing.assert_array_equal(s.x_val, t.x_val)
    np.testing.assert_array_equal(s.y_train, t.y_train)


def test_image_folder_val_class_unknown_to_train(tmp_path):
    make_folder(tmp_path / "train")
    write_png(tmp_path / "val" / "horse" / "a.png", np.zeros((4, 4)))
    with pytest.raises(ValueError) as info:
        data.image_folder(tmp_path, (4, 4, 1))
    assert "horse" in str(info.value) and "cat, dog, zebra" in str(info.value)


def test_image_folder_mixed_channels_formats_sizes_and_nesting(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    write_png(tmp_path / "a" / "gray.png", np.full((4, 4), 100))
    write_png(tmp_path / "a" / "rgba.png", np.dstack([rgb[:4, :4], np.full((4, 4), 7)]))
    write_png(tmp_path / "a" / "deep" / "red_big.png", rgb)  # other size, in a sub-folder
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "blue.BMP").write_bytes(bmp_bytes(np.broadcast_to([0, 0, 255], (4, 4, 3))))
    from tfedge._keras import tf

    (tmp_path / "b" / "photo.jpg").write_bytes(
        tf.io.encode_jpeg(np.full((4, 4, 3), 128, np.uint8), quality=100).numpy()
    )
    s3 = data.image_folder(tmp_path, (4, 4, 3), val_fraction=0.5)
    s1 = data.image_folder(tmp_path, (4, 4, 1), val_fraction=0.5)
    x3 = np.concatenate([s3.x_train, s3.x_val])
    x1 = np.concatenate([s1.x_train, s1.x_val])
    assert x3.shape == (5, 4, 4, 3) and x1.shape == (5, 4, 4, 1)
    means3 = sorted(tuple(np.round(img.mean(axis=(0, 1)) * 255).astype(int)) for img in x3)
    assert means3 == sorted(
        [(100, 100, 100), (255, 0, 0), (255, 0, 0), (0, 0, 255), (128, 128, 128)]
    )
    means1 = sorted(float(img.mean()) for img in x1)
    expected = sorted([100 / 255, 0.299, 0.299, 0.114, 128 / 255])
    np.testing.assert_allclose(means1, expected, atol=2e-3)  # the JPEG may be off by one


def test_image_folder_gif(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="Pillow writes the GIF fixture")
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[:, :2] = (255, 255, 255)
    (tmp_path / "a").mkdir()
    Image.fromarray(frame).save(tmp_path / "a" / "x.gif")
    write_png(tmp_path / "b" / "y.png", np.zeros((4, 4)))
    write_png(tmp_path / "b" / "z.png", np.zeros((4, 4)))
    s = data.image_folder(tmp_path, (4, 4, 1), val_fraction=0.5)
    gif = s.x_train[s.y_train == 0][0]
    np.testing.assert_allclose(gif[:, :2], 1.0, atol=1e-6)
    np.testing.assert_array_equal(gif[:, 2:], 0.0)


def test_image_folder_unreadable_image_names_the_file(tmp_path):
    make_folder(tmp_path)
    bad = tmp_path / "dog" / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(data.DataFormatError) as info:
        data.image_folder(tmp_path, (4, 4, 1))
    message = str(info.value)
    assert str(bad) in message and "cannot decode" in message
    assert "Unknown image file format" in message
    assert "{{" not in message and "[Op:" not in message
    truncated = write_png(tmp_path / "dog" / "broken.png", np.zeros((4, 4)))
    truncated.write_bytes(truncated.read_bytes()[:30])
    with pytest.raises(data.DataFormatError, match="broken.png"):
        data.image_folder(tmp_path, (4, 4, 1))


def test_image_folder_structure_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        data.image_folder(tmp_path, (4, 4, 1))
    assert "no class folders" in str(info.value) and str(tmp_path) in str(info.value)
    make_folder(tmp_path, {"only": 3})
    with pytest.raises(ValueError) as info:
        data.image_folder(tmp_path, (4, 4, 1))
    assert "one class folder ('only')" in str(info.value) and "at least two" in str(info.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(FileNotFoundError) as info:
        data.image_folder(tmp_path, (4, 4, 1))
    assert str(tmp_path / "empty") in str(info.value) and "holds no images" in str(info.value)
    assert "a.txt" in str(info.value)
    with pytest.raises(FileNotFoundError, match="nope"):
        data.image_folder(tmp_path / "nope", (4, 4, 1))


def test_image_folder_too_few_images_for_a_split(tmp_path):
    make_folder(tmp_path, {"a": 1, "b": 1})  # every class keeps its one image for training
    with pytest.raises(ValueError) as info:
        data.image_folder(tmp_path, (4, 4, 1))
    assert "at least one image in each split of the 2 images" in str(info.value)


def test_image_folder_resizes(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2}, size=(6, 10))
    s = data.image_folder(tmp_path, (3, 5, 3), val_fraction=0.5)
    assert s.x_train.shape == (2, 3, 5, 3) and s.input_shape == (3, 5, 3)
    for x in (s.x_train, s.x_val):  # constant images stay constant and keep their value
        np.testing.assert_allclose(x, x[:, :1, :1, :1] * np.ones_like(x), atol=1e-6)


def test_load_image_folder_needs_data_dir():
    with pytest.raises(ValueError) as info:
        data.load("image_folder", input_shape=(4, 4, 1))
    assert "`data_dir` is required for 'image_folder'" in str(info.value)


# ---------------------------------------------------------------------------
# tfds: the real "not installed" error; the rest through a stub module
# ---------------------------------------------------------------------------


def test_tfds_not_installed_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails, installed or not
    for call in (
        lambda: data.tfds("mnist", input_shape=(28, 28, 1)),
        lambda: data.load("tfds", input_shape=(28, 28, 1), tfds_name="mnist"),
    ):
        with pytest.raises(ModuleNotFoundError) as info:
            call()
        message = str(info.value)
        for word in ("tensorflow_datasets", "pip install tensorflow-datasets", "tfds build",
                     "never downloads", "image_folder"):
            assert word in message


def test_load_tfds_argument_errors():
    with pytest.raises(ValueError, match="`tfds_name` is required for 'tfds'"):
        data.load("tfds", input_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="`tfds_name` is only for name='tfds'"):
        data.load("digits", input_shape=(28, 28, 1), tfds_name="mnist")
    with pytest.raises(ValueError, match="Received: name=''"):
        data.tfds("")


class _StubFeature:
    def __init__(self, shape=None, num_classes=None, names=None):
        self.shape, self.num_classes, self.names = shape, num_classes, names


class _StubBuilder:
    """Just what tfedge.data.tfds uses of a tfds DatasetBuilder; records the splits it reads."""

    def __init__(self, splits, prepared=True, image_shape=(4, 4, 1)):
        self.data_dir = "/stub/tensorflow_datasets/stub/1.0.0"
        self._splits, self._prepared, self.read = splits, prepared, []
        self.info = type("Info", (), {})()
        self.info.splits = {k: None for k in splits}
        self.info.features = {
            "image": _StubFeature(shape=image_shape),
            "label": _StubFeature(num_classes=3, names=["x", "y", "z"]),
        }

    def is_prepared(self):
        return self._prepared

    def as_dataset(self, split, shuffle_files):
        from tfedge._keras import tf

        assert shuffle_files is False
        self.read.append(split)
        base = split.split("[")[0]
        images, labels = self._splits[base]
        if "[" in split:  # "train[:80%]" / "train[80%:]" on 10 examples
            cut = int(split.split("[")[1].strip(":%]")) * len(labels) // 100
            sl = slice(None, cut) if "[:" in split else slice(cut, None)
            images, labels = images[sl], labels[sl]
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})


def _stub_tfds(monkeypatch, builder):
    module = type(sys)("tensorflow_datasets")
    calls = []

    def make_builder(name, data_dir=None):
        calls.append((name, data_dir))
        if name == "unknown":
            raise RuntimeError("Dataset unknown not found.")
        return builder

    module.builder = make_builder
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    return calls


def _stub_split(n, seed):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, 4, 4, 1), dtype=np.uint8),
            rng.integers(0, 3, size=n).astype(np.int64))


def test_tfds_through_a_stub_module_reads_train_and_test(monkeypatch, tmp_path):
    train, test = _stub_split(10, 0), _stub_split(4, 1)
    builder = _StubBuilder({"train": train, "test": test})
    calls = _stub_tfds(monkeypatch, builder)
    s = data.tfds("stub", data_dir=tmp_path)  # input_shape from the image feature
    assert calls == [("stub", str(tmp_path))] and builder.read == ["train", "test"]
    assert s.name == "tfds:stub" and s.num_classes == 3 and s.class_names == ("x", "y", "z")
    assert s.input_shape == (4, 4, 1) and s.x_train.dtype == np.float32
    np.testing.assert_array_equal(s.x_train, _scaled(train[0]))
    np.testing.assert_array_equal(s.y_val, test[1])
    assert s.y_train.dtype == np.int32
    rgb = data.load("tfds", input_shape=(8, 8, 3), tfds_name="stub", data_dir=tmp_path)
    assert rgb.x_val.shape == (4, 8, 8, 3)


def test_tfds_through_a_stub_module_splits_train_without_val(monkeypatch):
    train = _stub_split(10, 2)
    builder = _StubBuilder({"train": train})
    _stub_tfds(monkeypatch, builder)
    s = data.tfds("stub", input_shape=(4, 4, 1), val_fraction=0.3)
    assert builder.read == ["train[:70%]", "train[70%:]"]
    np.testing.assert_array_equal(s.y_train, train[1][:7])
    np.testing.assert_array_equal(s.y_val, train[1][7:])


def test_tfds_through_a_stub_module_errors(monkeypatch, tmp_path):
    builder = _StubBuilder({"train": _stub_split(4, 3)}, prepared=False)
    _stub_tfds(monkeypatch, builder)
    with pytest.raises(FileNotFoundError) as info:
        data.tfds("stub", data_dir=tmp_path)
    for word in ("not prepared", str(tmp_path), "never downloads", "tfds build stub"):
        assert word in str(info.value)
    builder._prepared = True
    with pytest.raises(ValueError, match="TFDS cannot open dataset 'unknown'"):
        data.tfds("unknown")
    with pytest.raises(ValueError) as info:
        data.tfds("stub", val_split="validation")
    assert "`val_split` must name splits" in str(info.value) and "train" in str(info.value)
    with pytest.raises(ValueError, match="Received: label_key='target'"):
        data.tfds("stub", label_key="target")
    builder.info.features["image"].shape = (None, None, 3)
    with pytest.raises(ValueError, match="`input_shape` is required"):
        data.tfds("stub")
