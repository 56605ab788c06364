"""Image classification datasets for tfedge, as numpy arrays and tf.data pipelines.

Every loader returns a `Splits`: float32 images in [0, 1] shaped
(N, height, width, channels), int32 labels, and a train/validation split that is
the same on every call. Nothing is ever downloaded.

    import tfedge
    splits = tfedge.data.load("digits", input_shape=(32, 32, 1))
    splits.x_train.shape                  # (1437, 32, 32, 1)
    model.fit(splits.train(batch_size=64), validation_data=splits.val(), epochs=30)
    converter.representative_dataset = lambda: splits.representative(200)

    # The MNIST IDX files from a local directory (raw or .gz):
    splits = tfedge.data.mnist("/data/mnist", input_shape=(32, 32, 1))

Datasets:

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images),
  resized bilinearly; stratified split seeded by `seed`.
* ``mnist``: the IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each raw or ``.gz``)
  read in place from `data_dir`; see `mnist` for how the split is made.

`read_idx` reads one IDX file without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import zlib
from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = [
    "DATASETS",
    "IDXFormatError",
    "Splits",
    "digits",
    "load",
    "mnist",
    "read_idx",
]

DATASETS = ("digits", "mnist")

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# ---------------------------------------------------------------------------
# IDX reader
# ---------------------------------------------------------------------------

# type code -> (big-endian numpy dtype, name)
_IDX_DTYPES = {
    0x08: (np.dtype("u1"), "uint8"),
    0x09: (np.dtype("i1"), "int8"),
    0x0B: (np.dtype(">i2"), "int16"),
    0x0C: (np.dtype(">i4"), "int32"),
    0x0D: (np.dtype(">f4"), "float32"),
    0x0E: (np.dtype(">f8"), "float64"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXFormatError(ValueError):
    """An IDX file that cannot be read: the message names the file and what is wrong."""


def read_idx(path) -> np.ndarray:
    """Reads one IDX file (the MNIST format), raw or gzip-compressed.

    The file is treated as gzip when its name ends in ``.gz`` or it starts with
    the gzip magic bytes 1f 8b. Returns an array in native byte order with the
    shape the header declares (the data is copied out of the file buffer, so the
    array is writable).

    Raises:
        FileNotFoundError: `path` does not exist.
        IDXFormatError: a corrupt gzip stream, bad magic bytes, an unknown type
            code, zero dimensions, a header or data shorter than declared, or
            bytes after the declared data.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        if os.path.exists(path):
            raise IsADirectoryError(f"IDX file {path!r} is not a regular file")
        raise FileNotFoundError(f"IDX file not found: {path!r}")
    with open(path, "rb") as f:
        raw = f.read()

    compressed = path.endswith(".gz") or raw[:2] == _GZIP_MAGIC
    if compressed:
        if raw[:2] != _GZIP_MAGIC:
            raise IDXFormatError(
                f"{path}: corrupt gzip stream: the name ends in .gz but the file starts with "
                f"{'0x' + raw[:2].hex() if raw else 'nothing (it is empty)'} "
                "(expected the gzip magic 0x1f8b); "
                "decompress it or remove the .gz suffix if it is a raw IDX file"
            )
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise IDXFormatError(f"{path}: corrupt gzip stream: {e}") from None
        where = " (after gzip decompression)"
    else:
        data = raw
        where = ""

    if len(data) < 4:
        raise IDXFormatError(
            f"{path}: file shorter than its IDX header{where}: found {len(data)} bytes, "
            "expected at least 4 (2 zero bytes, type code, number of dimensions)"
        )
    if data[0:2] != b"\x00\x00":
        raise IDXFormatError(
            f"{path}: not an IDX file: magic bytes are 0x{data[0:2].hex()} (expected 0x0000)"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} {name}" for c, (_, name) in _IDX_DTYPES.items())
        raise IDXFormatError(
            f"{path}: unknown IDX data type code 0x{code:02X} (expected one of {known})"
        )
    if ndim == 0:
        raise IDXFormatError(
            f"{path}: IDX header declares 0 dimensions (expected at least 1)"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IDXFormatError(
            f"{path}: file shorter than its IDX header{where}: the header declares {ndim} "
            f"dimensions, needing {header_size} header bytes, found {len(data)}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype, name = _IDX_DTYPES[code]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    found = len(data) - header_size
    declared = "x".join(str(d) for d in dims)
    if dtype.itemsize > 1:
        declared += f" {name} values of {dtype.itemsize} bytes"
    if found < expected:
        raise IDXFormatError(
            f"{path}: truncated{where}: header declares {declared} = {expected} bytes of data, "
            f"found {found}"
        )
    if found > expected:
        raise IDXFormatError(
            f"{path}: trailing bytes{where}: header declares {declared} = {expected} bytes of "
            f"data, found {found} ({found - expected} extra)"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header_size)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


# ---------------------------------------------------------------------------
# Argument checks: "`arg` must be ... Received: arg=value"
# ---------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_input_shape(input_shape) -> tuple[int, int, int]:
    ok = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and all(_is_int(v) and v > 0 for v in input_shape)
    )
    if not ok:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive integers, "
            f"e.g. (32, 32, 1). Received: input_shape={input_shape!r}"
        )
    shape = tuple(int(v) for v in input_shape)
    if shape[2] not in (1, 3):
        raise ValueError(
            "`input_shape` channels must be 1 (grayscale) or 3 (the gray channel repeated "
            f"for RGB models). Received: input_shape={input_shape!r}"
        )
    return shape


def _check_val_fraction(val_fraction) -> float:
    ok = isinstance(val_fraction, (int, float, np.floating)) and not isinstance(
        val_fraction, (bool, np.bool_)
    )
    if not ok or not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(
            "`val_fraction` must be a number strictly between 0 and 1, e.g. 0.2. "
            f"Received: val_fraction={val_fraction!r}"
        )
    return float(val_fraction)


def _check_int(name, value, minimum) -> int:
    if not _is_int(value) or value < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
        )
    return int(value)


# ---------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
    """A dataset split into training and validation sets.

    Images are float32 (N, height, width, channels) in [0, 1]; labels are int32
    (N,) in [0, num_classes).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int

    def __post_init__(self):
        for x, y, split in ((self.x_train, self.y_train, "train"), (self.x_val, self.y_val, "val")):
            if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
                raise ValueError(
                    f"Splits({self.name!r}): x_{split} must be (N, H, W, C) and y_{split} (N,). "
                    f"Received: x_{split}.shape={x.shape}, y_{split}.shape={y.shape}"
                )
        if self.x_train.shape[1:] != self.x_val.shape[1:]:
            raise ValueError(
                f"Splits({self.name!r}): train and val images differ in shape. Received: "
                f"{self.x_train.shape[1:]} and {self.x_val.shape[1:]}"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one image."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Splits(name={self.name!r}, train={len(self.x_train)}, val={len(self.x_val)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )

    def train(self, batch_size: int = 32, shuffle: bool = True, seed: int = 0) -> tf.data.Dataset:
        """(images, labels) batches of the training split, prefetched.

        With `shuffle`, the order changes every epoch (every new iterator), and the
        sequence of orders is the same for the same `seed`. The last batch may be
        smaller than `batch_size`.
        """
        from tfedge._keras import tf

        batch_size = _check_int("batch_size", batch_size, 1)
        seed = _check_int("seed", seed, 0)
        ds = tf.data.Dataset.from_tensor_slices((self.x_train, self.y_train))
        if shuffle:
            ds = ds.shuffle(len(self.x_train), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def val(self, batch_size: int = 32) -> tf.data.Dataset:
        """(images, labels) batches of the validation split in a fixed order, prefetched."""
        from tfedge._keras import tf

        batch_size = _check_int("batch_size", batch_size, 1)
        ds = tf.data.Dataset.from_tensor_slices((self.x_val, self.y_val))
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def representative(self, num_samples: int = 200) -> Iterator[list[np.ndarray]]:
        """Yields ``[image[None]]``: the first `num_samples` training images, one at a time.

        Each item is a list holding one float32 (1, H, W, C) array, which is what
        `TFLiteConverter.representative_dataset` expects. Fewer items come back when
        the training split is smaller than `num_samples`.
        """
        num_samples = _check_int("num_samples", num_samples, 1)
        for image in self.x_train[:num_samples]:
            yield [np.asarray(image[None], dtype=np.float32)]


# ---------------------------------------------------------------------------
# Image preparation
# ---------------------------------------------------------------------------


def _prepare_images(images: np.ndarray, scale: float, input_shape) -> np.ndarray:
    """(N, h, w) numbers -> float32 (N, H, W, C) in [0, 1], resized bilinearly if needed."""
    height, width, channels = input_shape
    x = images.astype(np.float32) / np.float32(scale)
    x = x[..., None]
    if x.shape[1:3] != (height, width):
        from tfedge._keras import tf

        # antialias only changes the result when shrinking; upsampling stays plain bilinear.
        x = tf.image.resize(x, (height, width), method="bilinear", antialias=True).numpy()
        x = np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)
    if channels != 1:
        x = np.repeat(x, channels, axis=-1)
    return np.ascontiguousarray(x)


# ---------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------


def digits(input_shape=(32, 32, 1), val_fraction: float = 0.2, seed: int = 0) -> Splits:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).

    Pixel values 0..16 are scaled to [0, 1], resized bilinearly to
    (height, width) and the gray channel is repeated to `channels` (1 or 3). The
    split is stratified and deterministic for a given `seed`
    (`train_test_split(stratify=labels, test_size=val_fraction, random_state=seed)`);
    with the defaults it is 1,437 training and 360 validation images.
    """
    input_shape = _check_input_shape(input_shape)
    val_fraction = _check_val_fraction(val_fraction)
    seed = _check_int("seed", seed, 0)

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images, labels = bunch.images, bunch.target.astype(np.int32)
    num_classes = 10
    n_val = math.ceil(val_fraction * len(labels))  # as train_test_split counts it
    if n_val < num_classes or len(labels) - n_val < num_classes:
        raise ValueError(
            f"`val_fraction` must leave at least {num_classes} images (one per class) in each "
            f"split of the {len(labels)} digits images for a stratified split. "
            f"Received: val_fraction={val_fraction!r}"
        )
    x = _prepare_images(images, 16.0, input_shape)
    x_train, x_val, y_train, y_val = train_test_split(
        x, labels, test_size=val_fraction, random_state=seed, stratify=labels
    )
    return Splits(
        name="digits",
        x_train=np.ascontiguousarray(x_train),
        y_train=np.ascontiguousarray(y_train, dtype=np.int32),
        x_val=np.ascontiguousarray(x_val),
        y_val=np.ascontiguousarray(y_val, dtype=np.int32),
        num_classes=num_classes,
    )


# ---------------------------------------------------------------------------
# mnist
# ---------------------------------------------------------------------------


def _find_idx(data_dir: str, base: str) -> str | None:
    """`base`.gz if it exists, else `base`, else None (the .gz is preferred when both exist)."""
    for candidate in (base + ".gz", base):
        path = os.path.join(data_dir, candidate)
        if os.path.isfile(path):
            return path
    return None


def _mnist_pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IDXFormatError(
            f"{images_path}: MNIST images must be a 3-D uint8 array (count, height, width). "
            f"Found: {images.ndim}-D {images.dtype} with shape {images.shape}"
        )
    if labels.ndim != 1:
        raise IDXFormatError(
            f"{labels_path}: MNIST labels must be a 1-D array (count,). "
            f"Found: {labels.ndim}-D {labels.dtype} with shape {labels.shape}"
        )
    if len(images) != len(labels):
        raise IDXFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels; the counts must match"
        )
    if not np.issubdtype(labels.dtype, np.integer) or (
        len(labels) and (labels.min() < 0 or labels.max() > 9)
    ):
        found = (
            f"{labels.dtype} values" if not np.issubdtype(labels.dtype, np.integer)
            else f"values in {int(labels.min())}..{int(labels.max())}"
        )
        raise IDXFormatError(
            f"{labels_path}: MNIST labels must be integers in 0..9. Found: {found}"
        )
    return images, labels.astype(np.int32)


def mnist(data_dir, input_shape=(28, 28, 1), val_fraction: float = 0.2) -> Splits:
    """MNIST from the IDX files in `data_dir`, read in place (nothing is copied or downloaded).

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or with
    ``.gz``; when both forms of a file exist the ``.gz`` one is read.

    * Both pairs present: train = the train files, val = the t10k files
      (`val_fraction` is not used).
    * Only one pair present (e.g. just the 10,000 t10k images): it is split in file
      order, the first ``round((1 - val_fraction) * N)`` images for training and the
      rest for validation (0.2 of 10,000: first 8,000 train, last 2,000 val).

    Pixels are scaled by 1/255 and resized bilinearly when (height, width) is not
    the files' 28x28; the gray channel is repeated to `channels` (1 or 3).

    Raises:
        FileNotFoundError: `data_dir` does not exist, or holds no complete pair of
            image and label files (the message lists what was looked for and found).
        IDXFormatError: unreadable files, image/label count mismatch, images that
            are not 3-D uint8, labels outside 0..9.
    """
    input_shape = _check_input_shape(input_shape)
    val_fraction = _check_val_fraction(val_fraction)
    if not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(
            "`data_dir` must be the path of a directory holding the MNIST IDX files. "
            f"Received: data_dir={data_dir!r}"
        )
    data_dir = os.fspath(data_dir)
    if not os.path.exists(data_dir):
        raise FileNotFoundError(f"MNIST data directory not found: {data_dir!r}")
    if not os.path.isdir(data_dir):
        raise NotADirectoryError(f"MNIST `data_dir` is not a directory: {data_dir!r}")

    found = {key: _find_idx(data_dir, base) for key, base in MNIST_FILES.items()}
    pairs = {}
    for prefix in ("train", "test"):
        images, labels = found[f"{prefix}_images"], found[f"{prefix}_labels"]
        if (images is None) != (labels is None):
            missing = MNIST_FILES[f"{prefix}_labels" if labels is None else f"{prefix}_images"]
            present = images or labels
            raise FileNotFoundError(
                f"MNIST data directory {data_dir!r} has {os.path.basename(present)} but not "
                f"{missing} (or {missing}.gz); add the missing file or remove the other one"
            )
        if images is not None:
            pairs[prefix] = (images, labels)

    if not pairs:
        entries = sorted(os.listdir(data_dir))
        shown = ", ".join(entries[:20])
        if len(entries) > 20:
            shown += f", ... ({len(entries)} entries)"
        wanted = ", ".join(f"{b}[.gz]" for b in MNIST_FILES.values())
        raise FileNotFoundError(
            f"MNIST data directory {data_dir!r} holds no MNIST IDX files. Looked for: {wanted} "
            f"(at least the two t10k or the two train files). Found: {shown or 'nothing'}"
        )

    if len(pairs) == 2:
        x_train, y_train = _mnist_pair(*pairs["train"])
        x_val, y_val = _mnist_pair(*pairs["test"])
    else:
        (images_path, labels_path), = pairs.values()
        images, labels = _mnist_pair(images_path, labels_path)
        n_train = int(round((1.0 - val_fraction) * len(labels)))
        if n_train < 1 or n_train >= len(labels):
            raise ValueError(
                f"`val_fraction` must leave at least one image in each split of the "
                f"{len(labels)} images in {images_path}. Received: val_fraction={val_fraction!r}"
            )
        x_train, y_train = images[:n_train], labels[:n_train]
        x_val, y_val = images[n_train:], labels[n_train:]

    return Splits(
        name="mnist",
        x_train=_prepare_images(x_train, 255.0, input_shape),
        y_train=np.ascontiguousarray(y_train),
        x_val=_prepare_images(x_val, 255.0, input_shape),
        y_val=np.ascontiguousarray(y_val),
        num_classes=10,
    )


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


def load(name, *, input_shape, data_dir=None, val_fraction: float = 0.2, seed: int = 0) -> Splits:
    """Loads the registered dataset `name` (one of `DATASETS`).

    ``digits`` is embedded in scikit-learn and takes no `data_dir`; its split
    depends on `seed`. ``mnist`` needs `data_dir` (see `mnist`); its split is in
    file order, so `seed` does not affect it.
    """
    if name not in DATASETS:
        raise ValueError(
            f"`name` must be one of the registered datasets {', '.join(DATASETS)}. "
            f"Received: name={name!r}"
        )
    if name == "digits":
        if data_dir is not None:
            raise ValueError(
                "`data_dir` must be None for 'digits': the data is embedded in scikit-learn. "
                f"Received: data_dir={data_dir!r}"
            )
        return digits(input_shape=input_shape, val_fraction=val_fraction, seed=seed)
    if data_dir is None:
        raise ValueError(
            "`data_dir` is required for 'mnist': a directory holding the IDX files "
            + ", ".join(f"{b}[.gz]" for b in MNIST_FILES.values())
            + " (the two t10k files alone are enough). Received: data_dir=None"
        )
    return mnist(data_dir, input_shape=input_shape, val_fraction=val_fraction)
