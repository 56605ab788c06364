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

    # CIFAR-10, binary version (never the pickled python version):
    splits = tfedge.data.cifar10("/data/cifar-10-batches-bin", input_shape=(32, 32, 3))
    # One folder per class, optionally under train/ and val/:
    splits = tfedge.data.image_folder("/data/flowers", input_shape=(96, 96, 3))
    splits.class_names                    # ('daisy', 'roses', ...)

Datasets (`DATASETS`, dispatched by `load`):

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images),
  resized bilinearly; stratified split seeded by `seed`.
* ``mnist``: the IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each raw or ``.gz``)
  read in place from `data_dir`; see `mnist` for how the split is made.
* ``cifar10``: the binary CIFAR-10 batches (``cifar-10-batches-bin``) read with
  numpy; train = the ``data_batch_*.bin`` files, val = ``test_batch.bin``; see `cifar10`.
* ``image_folder``: one sub-folder of PNG/JPEG/BMP/GIF/WebP images per class, with
  ``train/`` and ``val/`` (or ``validation/``) used as the split when present, else
  a stratified split seeded by `seed`; see `image_folder`.
* ``tfds``: a TensorFlow Datasets dataset that is already prepared on disk, when
  ``tensorflow_datasets`` is installed (never downloaded); see `tfds`.

Colour is converted to what `input_shape` asks for: a gray source is repeated to
3 channels, an RGB source becomes gray with the ITU-R BT.601 luma weights
(0.299 R + 0.587 G + 0.114 B), alpha is dropped.

`read_idx` reads one IDX file without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import re
import zlib
from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DataFormatError",
    "IDXFormatError",
    "IMAGE_EXTENSIONS",
    "Splits",
    "cifar10",
    "digits",
    "image_folder",
    "load",
    "mnist",
    "read_idx",
    "tfds",
]

DATASETS = ("digits", "mnist", "cifar10", "image_folder", "tfds")

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


class DataFormatError(ValueError):
    """A data file that cannot be read: the message names the file and what is wrong."""


class IDXFormatError(DataFormatError):
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
            "`input_shape` channels must be 1 (grayscale) or 3 (RGB; a gray source is "
            f"repeated). Received: input_shape={input_shape!r}"
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
    (N,) in [0, num_classes). `class_names`, when known, is a tuple of
    `num_classes` strings: ``class_names[label]`` names a label (None when the
    source does not name its classes).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.class_names is not None:
            names = tuple(str(n) for n in self.class_names)
            if len(names) != self.num_classes:
                raise ValueError(
                    f"Splits({self.name!r}): `class_names` must hold "
                    f"num_classes={self.num_classes} names. Received: {len(names)} names {names!r}"
                )
            object.__setattr__(self, "class_names", names)
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


# ITU-R BT.601 luma weights (what PIL and OpenCV use); they sum to exactly 1.
_LUMA = (np.float32(0.299), np.float32(0.587), np.float32(0.114))
# Images converted per chunk, so that a big uint8 array never exists as one float copy.
_CHUNK = 1024


def _to_float(images: np.ndarray, scale: float, channels: int) -> np.ndarray:
    """(n, h, w[, c]) numbers, c in 1..4 -> float32 (n, h, w, 1 or 3) / scale.

    Alpha (the 2nd channel of 2, the 4th of 4) is dropped; RGB becomes gray with
    the BT.601 weights when `channels` is 1. A gray result stays 1 channel here.
    """
    x = images.astype(np.float32) / np.float32(scale)
    if x.ndim == 3:
        return x[..., None]
    if x.shape[-1] in (2, 4):  # gray + alpha, RGB + alpha
        x = x[..., :-1]
    if x.shape[-1] == 3 and channels == 1:
        r, g, b = _LUMA
        x = np.clip(x[..., 0:1] * r + x[..., 1:2] * g + x[..., 2:3] * b, 0.0, 1.0)
    return x


def _prepare_images(images: np.ndarray, scale: float, input_shape, out=None) -> np.ndarray:
    """(N, h, w) or (N, h, w, c) numbers -> float32 (N, H, W, C) in [0, 1].

    Scaled by 1/`scale`, converted to C channels (see the module docstring) and
    resized bilinearly (antialiased) when (h, w) is not (H, W). Works through
    `_CHUNK` images at a time; writes into `out` (N, H, W, C) float32 when given.
    """
    height, width, channels = input_shape
    n = len(images)
    if out is None:
        out = np.empty((n, height, width, channels), np.float32)
    for start in range(0, n, _CHUNK):
        x = _to_float(images[start : start + _CHUNK], scale, channels)
        if x.shape[1:3] != (height, width):
            from tfedge._keras import tf

            # antialias only changes the result when shrinking; upsampling stays plain bilinear.
            x = tf.image.resize(x, (height, width), method="bilinear", antialias=True).numpy()
            x = np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)
        out[start : start + len(x)] = x  # broadcasts one gray channel to 3
    return out


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
        class_names=tuple(str(d) for d in range(num_classes)),
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
        class_names=tuple(str(d) for d in range(10)),
    )


# ---------------------------------------------------------------------------
# Shared folder checks
# ---------------------------------------------------------------------------


def _check_dir(data_dir, what: str) -> str:
    """`data_dir` as a str path of an existing directory, else an error naming `what`."""
    if not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(
            f"`data_dir` must be the path of a directory holding {what}. "
            f"Received: data_dir={data_dir!r}"
        )
    data_dir = os.fspath(data_dir)
    if not os.path.exists(data_dir):
        raise FileNotFoundError(f"data directory for {what} not found: {data_dir!r}")
    if not os.path.isdir(data_dir):
        raise NotADirectoryError(f"`data_dir` for {what} is not a directory: {data_dir!r}")
    return data_dir


def _listing(folder: str, limit: int = 20) -> str:
    entries = sorted(os.listdir(folder))
    shown = ", ".join(entries[:limit])
    if len(entries) > limit:
        shown += f", ... ({len(entries)} entries)"
    return shown or "nothing"


def _check_split_sizes(n_train: int, n_val: int, total: int, where: str, val_fraction) -> None:
    if n_train < 1 or n_val < 1:
        raise ValueError(
            f"`val_fraction` must leave at least one image in each split of the {total} images "
            f"in {where}. Received: val_fraction={val_fraction!r}"
        )


# ---------------------------------------------------------------------------
# cifar10 (binary version)
# ---------------------------------------------------------------------------

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
CIFAR10_META_FILE = "batches.meta.txt"
_CIFAR_RECORD = 1 + 32 * 32 * 3  # label byte, then 1024 R, 1024 G, 1024 B bytes (row-major)
_CIFAR_FULL = 10_000 * _CIFAR_RECORD
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
_CIFAR_PICKLES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                  "data_batch_5", "test_batch", "batches.meta")


def _refuse_cifar_pickles(folder: str):
    raise DataFormatError(
        f"{folder} is the python (pickle) version of CIFAR-10 (cifar-10-batches-py); tfedge "
        "never unpickles data, because loading a pickle can run arbitrary code. Use the binary "
        f"version instead: 'CIFAR-10 binary version (suitable for C programs)' from {_CIFAR_URL} "
        "(cifar-10-binary.tar.gz), extracted to a folder cifar-10-batches-bin holding "
        f"{', '.join(CIFAR10_TRAIN_FILES)} and {CIFAR10_TEST_FILE}"
    )


def _cifar_folder(data_dir) -> str:
    """The cifar-10-batches-bin folder: `data_dir` itself or its child of that name."""
    data_dir = _check_dir(data_dir, "the CIFAR-10 binary batches (cifar-10-batches-bin)")
    wanted = (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)

    def has_batches(folder):
        return any(os.path.isfile(os.path.join(folder, f)) for f in wanted)

    def has_pickles(folder):
        return any(os.path.isfile(os.path.join(folder, f)) for f in _CIFAR_PICKLES)

    if has_batches(data_dir):
        return data_dir
    if os.path.basename(os.path.normpath(data_dir)) == "cifar-10-batches-py" or has_pickles(
        data_dir
    ):
        _refuse_cifar_pickles(data_dir)
    child = os.path.join(data_dir, "cifar-10-batches-bin")
    if os.path.isdir(child):
        if has_batches(child):
            return child
        raise FileNotFoundError(
            f"CIFAR-10 folder {child!r} holds none of {', '.join(wanted)}. Found: {_listing(child)}"
        )
    if os.path.isdir(os.path.join(data_dir, "cifar-10-batches-py")):
        _refuse_cifar_pickles(os.path.join(data_dir, "cifar-10-batches-py"))
    if os.path.isfile(os.path.join(data_dir, "cifar-10-binary.tar.gz")):
        raise FileNotFoundError(
            f"{data_dir!r} holds cifar-10-binary.tar.gz but not its contents: extract it "
            f"(tar xzf cifar-10-binary.tar.gz -C {data_dir}) and pass the same data_dir"
        )
    raise FileNotFoundError(
        f"CIFAR-10 data directory {data_dir!r} holds no CIFAR-10 binary batches. Looked for "
        f"{', '.join(wanted)} in it or in its sub-folder cifar-10-batches-bin (the binary "
        f"version from {_CIFAR_URL}). Found: {_listing(data_dir)}"
    )


def _cifar_records(path: str) -> int:
    """Number of records in one batch file, checked from its size before reading it."""
    size = os.path.getsize(path)
    if size == 0 or size % _CIFAR_RECORD:
        whole, extra = divmod(size, _CIFAR_RECORD)
        raise DataFormatError(
            f"{path}: truncated or not a CIFAR-10 binary batch: {size} bytes is not a whole "
            f"number of {_CIFAR_RECORD}-byte records (1 label byte + 3072 pixel bytes); "
            f"expected {_CIFAR_FULL} bytes for the 10,000 records of a full batch "
            f"(found {whole} records and {extra} bytes). Extract the file again"
        )
    return size // _CIFAR_RECORD


def _read_cifar(path: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels int32 (n,), images uint8 (n, 32, 32, 3) RGB) of one batch file."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size != count * _CIFAR_RECORD:  # the file changed since its size was checked
        raise DataFormatError(
            f"{path}: expected {count * _CIFAR_RECORD} bytes, read {raw.size}"
        )
    records = raw.reshape(count, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int32)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataFormatError(
            f"{path}: CIFAR-10 labels must be 0..9; record {int(bad[0])} has label "
            f"{int(labels[bad[0]])} ({bad.size} bad records). Is this CIFAR-100 "
            "(2 label bytes per record)? Only CIFAR-10 is supported"
        )
    images = records[:, 1:].reshape(count, 3, 32, 32).transpose(0, 2, 3, 1)
    return labels, images


def _cifar_class_names(folder: str) -> tuple[str, ...]:
    path = os.path.join(folder, CIFAR10_META_FILE)
    if not os.path.isfile(path):
        return CIFAR10_CLASSES
    with open(path, encoding="utf-8", errors="replace") as f:
        names = tuple(line.strip() for line in f if line.strip())
    if len(names) != 10:
        raise DataFormatError(
            f"{path}: expected the 10 CIFAR-10 class names, one per line; found {len(names)}: "
            f"{', '.join(names[:12])}. Restore the file or delete it (the standard names are "
            "used when it is absent)"
        )
    return names


def cifar10(data_dir, input_shape=(32, 32, 3), val_fraction: float = 0.2, seed: int = 0) -> Splits:
    """CIFAR-10 from its binary version, read in place with numpy (nothing is unpickled).

    `data_dir` is the ``cifar-10-batches-bin`` folder or its parent. It holds
    ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``: records of 1
    label byte and 3,072 pixel bytes (the 32x32 red plane, then green, then blue,
    each row-major), 10,000 records per file in the original (files with fewer whole
    records are read too). Class names come from ``batches.meta.txt``, or are the
    standard ones when it is absent. The python version (``cifar-10-batches-py``,
    pickles) is refused.

    The split, like `mnist`'s, is the one the files define, never shuffled:

    * Some ``data_batch_*.bin`` and ``test_batch.bin`` present: train = the data
      batches present, in batch order (all five: 50,000 images), val = the test batch
      (10,000); `val_fraction` is not used.
    * Only data batches, or only the test batch: those records in file order, the
      first ``round((1 - val_fraction) * N)`` for training and the rest for validation.

    `seed` does not change anything (the split is in file order); it is accepted so
    that every loader takes it. Pixels are scaled by 1/255, converted to gray when
    `input_shape` has 1 channel and resized bilinearly when (height, width) is not
    32x32. The full dataset is 60,000 x 3,072 bytes as uint8 and is converted one
    batch file at a time, straight into the float32 arrays (737 MB at 32x32x3).

    Raises:
        FileNotFoundError: no batch files in `data_dir` or its cifar-10-batches-bin.
        DataFormatError: the pickled python version; a file that is not a whole number
            of records (truncated: the message gives the expected size); a label
            outside 0..9; a batches.meta.txt without 10 names.
    """
    input_shape = _check_input_shape(input_shape)
    val_fraction = _check_val_fraction(val_fraction)
    _check_int("seed", seed, 0)
    folder = _cifar_folder(data_dir)
    class_names = _cifar_class_names(folder)
    train = [os.path.join(folder, f) for f in CIFAR10_TRAIN_FILES
             if os.path.isfile(os.path.join(folder, f))]
    test = os.path.join(folder, CIFAR10_TEST_FILE)
    test = [test] if os.path.isfile(test) else []
    counts = {path: _cifar_records(path) for path in train + test}  # all checked before reading

    # (file, split, first record, end record): which records of which file go where.
    if train and test:
        sources = [(path, "train", 0, counts[path]) for path in train]
        sources += [(test[0], "val", 0, counts[test[0]])]
    else:
        files = train or test
        total = sum(counts[p] for p in files)
        n_train = int(round((1.0 - val_fraction) * total))
        names = ", ".join(os.path.basename(p) for p in files)
        _check_split_sizes(n_train, total - n_train, total, f"{folder} ({names})", val_fraction)
        sources, start = [], 0
        for path in files:
            end = start + counts[path]
            if start < n_train:
                sources.append((path, "train", 0, min(end, n_train) - start))
            if end > n_train:
                sources.append((path, "val", max(n_train - start, 0), counts[path]))
            start = end

    sizes = {"train": 0, "val": 0}
    for _, split, lo, hi in sources:
        sizes[split] += hi - lo
    x = {k: np.empty((n, *input_shape), np.float32) for k, n in sizes.items()}
    y = {k: np.empty((n,), np.int32) for k, n in sizes.items()}
    filled = {"train": 0, "val": 0}
    cache = {}
    for path, split, lo, hi in sources:
        if path not in cache:
            cache.clear()  # one file's bytes at a time
            cache[path] = _read_cifar(path, counts[path])
        labels, images = cache[path]
        at = filled[split]
        _prepare_images(images[lo:hi], 255.0, input_shape, out=x[split][at : at + hi - lo])
        y[split][at : at + hi - lo] = labels[lo:hi]
        filled[split] += hi - lo
    return Splits(
        name="cifar10",
        x_train=x["train"],
        y_train=y["train"],
        x_val=x["val"],
        y_val=y["val"],
        num_classes=10,
        class_names=class_names,
    )


# ---------------------------------------------------------------------------
# image_folder
# ---------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")
_TRAIN_DIR = "train"
_VAL_DIRS = ("val", "validation")


def _visible(name: str) -> bool:
    return not name.startswith(".") and name != "__pycache__"


def _class_dirs(root: str) -> list[str]:
    return sorted(
        e for e in os.listdir(root) if _visible(e) and os.path.isdir(os.path.join(root, e))
    )


def _class_files(folder: str) -> list[str]:
    """Image files under `folder` (recursively), sorted by relative path."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if _visible(d))
        for f in files:
            if _visible(f) and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                found.append(os.path.join(parent, f))
    return sorted(found, key=lambda p: os.path.relpath(p, folder).split(os.sep))


def _scan_classes(root: str, class_names=None) -> list[list[str]]:
    """Per class (sorted folder names, or the given names), the sorted image paths."""
    names = _class_dirs(root) if class_names is None else class_names
    per_class = []
    for name in names:
        folder = os.path.join(root, name)
        files = _class_files(folder) if os.path.isdir(folder) else []
        if not files and class_names is None:
            raise FileNotFoundError(
                f"class folder {folder!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}). "
                f"Found: {_listing(folder)}. Add images or remove the folder"
            )
        per_class.append(files)
    return per_class


def _decode_image(path: str, input_shape) -> np.ndarray:
    """One image file -> float32 (H, W, C) in [0, 1]."""
    from tfedge._keras import tf

    with open(path, "rb") as f:
        contents = f.read()
    try:
        image = tf.io.decode_image(contents, channels=0, dtype=tf.uint8,
                                   expand_animations=False).numpy()
    except (tf.errors.OpError, ValueError) as e:
        reason = getattr(e, "message", None) or str(e)
        reason = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", reason).strip()  # TF's op context
        raise DataFormatError(
            f"{path}: cannot decode the image ({reason}); supported formats are PNG, JPEG, "
            "BMP, GIF (first frame) and WebP. Fix or remove the file"
        ) from None
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4) or 0 in image.shape:
        raise DataFormatError(
            f"{path}: decoded to shape {image.shape}, expected (height, width, 1..4 channels)"
        )
    return _prepare_images(image[None], 255.0, input_shape)[0]


def _stack(paths: list[str], input_shape) -> np.ndarray:
    x = np.empty((len(paths), *input_shape), np.float32)
    for i, path in enumerate(paths):
        x[i] = _decode_image(path, input_shape)
    return x


def image_folder(data_dir, input_shape, val_fraction: float = 0.2, seed: int = 0) -> Splits:
    """Images in one sub-folder per class, decoded with `tf.io.decode_image`.

    Layouts (class indices are the sorted class folder names, also `class_names`)::

        data_dir/cat/001.png           data_dir/train/cat/001.png
        data_dir/dog/a.jpg             data_dir/train/dog/a.jpg
                                       data_dir/val/cat/007.png   (or validation/)

    * With a ``train/`` sub-folder: classes are the folders in ``train/``; val is
      ``val/`` or ``validation/`` (not both), whose class folders must be a subset of
      train's (a class may have no val images). Without a val folder, ``train/`` is
      split as below. Anything else beside ``train/`` (e.g. ``test/``) is not read.
    * Otherwise every folder in `data_dir` is a class, split stratified: each class's
      images (sorted by path) are permuted by ``numpy.random.default_rng(seed)`` and
      its first ``floor(val_fraction * n + 0.5)`` go to validation, at most ``n - 1``
      (so every class is in training); the split is the same for the same files and
      `seed`.

    In both cases the training images are put in an order shuffled by `seed`, so that
    the first ones (what `Splits.representative` takes) cover the classes; validation
    keeps class, then path order. Files are found recursively; names starting with
    "." and files without a ``.png .jpg .jpeg .bmp .gif .webp`` extension (any case) are
    skipped. Every image is scaled by 1/255, its alpha dropped, converted to
    `input_shape`'s channels (gray <-> RGB, so folders may mix them) and resized
    bilinearly to (height, width) without keeping the aspect ratio.

    Raises:
        FileNotFoundError: no class folders, or a class folder without images.
        ValueError: fewer than two classes; a val class that train lacks; a
            `val_fraction` that leaves a split empty.
        DataFormatError: an image that cannot be decoded (the message names it).
    """
    input_shape = _check_input_shape(input_shape)
    val_fraction = _check_val_fraction(val_fraction)
    seed = _check_int("seed", seed, 0)
    data_dir = _check_dir(data_dir, "one sub-folder of images per class")
    rng = np.random.default_rng(seed)

    train_root = os.path.join(data_dir, _TRAIN_DIR)
    split_layout = os.path.isdir(train_root)
    root = train_root if split_layout else data_dir
    class_names = _class_dirs(root)
    if not class_names:
        raise FileNotFoundError(
            f"image folder {root!r} holds no class folders: expected one sub-folder of images "
            f"({', '.join(IMAGE_EXTENSIONS)}) per class, e.g. {os.path.join(root, 'cat')}. "
            f"Found: {_listing(root)}"
        )
    if len(class_names) < 2:
        raise ValueError(
            f"image folder {root!r} holds one class folder ({class_names[0]!r}); a classifier "
            "needs at least two. Put each class's images in its own sub-folder"
        )
    train_files = _scan_classes(root)

    val_roots = [os.path.join(data_dir, d) for d in _VAL_DIRS
                 if split_layout and os.path.isdir(os.path.join(data_dir, d))]
    if len(val_roots) > 1:
        raise ValueError(
            f"image folder {data_dir!r} has both val/ and validation/; keep one of them"
        )
    if val_roots:
        val_root = val_roots[0]
        unknown = sorted(set(_class_dirs(val_root)) - set(class_names))
        if unknown:
            raise ValueError(
                f"{val_root!r} has class folders that {train_root!r} lacks: "
                f"{', '.join(unknown)}. Classes come from train/: {', '.join(class_names)}"
            )
        val_files = _scan_classes(val_root, class_names)
        if not any(val_files):
            raise FileNotFoundError(f"validation folder {val_root!r} holds no images")
    else:
        val_files = []
        for c, files in enumerate(train_files):
            order = rng.permutation(len(files))
            n_val = min(math.floor(val_fraction * len(files) + 0.5), len(files) - 1)
            val_files.append(sorted(files[i] for i in order[:n_val]))
            train_files[c] = sorted(files[i] for i in order[n_val:])
        n_val = sum(map(len, val_files))
        n_train = sum(map(len, train_files))
        _check_split_sizes(n_train, n_val, n_train + n_val, root, val_fraction)

    train = [(path, c) for c, files in enumerate(train_files) for path in files]
    train = [train[i] for i in rng.permutation(len(train))]
    val = [(path, c) for c, files in enumerate(val_files) for path in files]
    return Splits(
        name="image_folder",
        x_train=_stack([p for p, _ in train], input_shape),
        y_train=np.array([c for _, c in train], np.int32),
        x_val=_stack([p for p, _ in val], input_shape),
        y_val=np.array([c for _, c in val], np.int32),
        num_classes=len(class_names),
        class_names=tuple(class_names),
    )


# ---------------------------------------------------------------------------
# tfds (TensorFlow Datasets, prepared data only)
# ---------------------------------------------------------------------------


def _import_tfds():
    try:
        import tensorflow_datasets
    except ImportError as e:
        raise ModuleNotFoundError(
            "the 'tfds' dataset needs the `tensorflow_datasets` package, which is not installed "
            f"({e}). Install it (pip install tensorflow-datasets), prepare the dataset on a "
            "machine with network access (`tfds build NAME --data_dir=DIR`) and pass "
            "data_dir=DIR; tfedge never downloads. Or use another loader: "
            "image_folder, cifar10, mnist"
        ) from None
    return tensorflow_datasets


def _split_base(split: str) -> list[str]:
    """'train[:80%]+test' -> ['train', 'test']: the split names a split expression uses."""
    return [part.split("[", 1)[0].strip() for part in split.split("+")]


def tfds(
    name,
    data_dir=None,
    input_shape=None,
    *,
    train_split: str = "train",
    val_split: str | None = None,
    val_fraction: float = 0.2,
    image_key: str = "image",
    label_key: str = "label",
) -> Splits:
    """A TensorFlow Datasets dataset whose prepared data is already on disk (never downloaded).

    Needs `tensorflow_datasets` installed and `name` (e.g. ``"mnist"``,
    ``"cifar10:3.0.2"``) prepared under `data_dir` (TFDS's default, usually
    ``~/tensorflow_datasets``, when None), e.g. by ``tfds build NAME --data_dir=DIR`` on
    a machine with network access. Examples are dicts; `image_key` and `label_key` name
    the image and the ClassLabel features.

    Train is `train_split`; val is `val_split` when given, else the dataset's
    "validation" split, else its "test" split, else the last `val_fraction` of
    `train_split` in its stored order (``train[:80%]`` / ``train[80%:]``). Split
    expressions such as ``"train[:10%]+test"`` are passed to TFDS unchanged. Files are
    read in their stored order (``shuffle_files=False``). `input_shape` defaults to the
    image feature's shape when that is fixed with 1 or 3 channels; images are scaled by
    1/255, converted and resized as in `image_folder`. `class_names` are the
    ClassLabel's names.

    Raises:
        ModuleNotFoundError: `tensorflow_datasets` is not installed.
        FileNotFoundError: the dataset is not prepared under `data_dir`.
        ValueError: unknown dataset, split or feature key; images of unknown shape
            without `input_shape`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"`name` must be a TFDS dataset name such as 'mnist'. Received: name={name!r}"
        )
    if input_shape is not None:
        input_shape = _check_input_shape(input_shape)
    val_fraction = _check_val_fraction(val_fraction)
    if data_dir is not None:
        data_dir = _check_dir(data_dir, f"the prepared TFDS dataset {name!r}")
    tfds_lib = _import_tfds()

    try:
        builder = tfds_lib.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends: report them with the name
        raise ValueError(f"TFDS cannot open dataset {name!r}: {e}") from None
    if not builder.is_prepared():
        where = data_dir if data_dir is not None else "TFDS's default data_dir"
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared in {where} (looked in "
            f"{getattr(builder, 'data_dir', where)}); tfedge never downloads (download=False). "
            f"Prepare it on a machine with network access (`tfds build {name} --data_dir=DIR`), "
            "copy DIR here and pass data_dir=DIR"
        )
    info = builder.info
    available = sorted(info.splits.keys())
    for argument, split in (("train_split", train_split), ("val_split", val_split)):
        if split is None:
            continue
        unknown = [s for s in _split_base(split) if s not in available] if isinstance(
            split, str) else [split]
        if unknown:
            raise ValueError(
                f"`{argument}` must name splits of TFDS dataset {name!r}: "
                f"{', '.join(available)}. Received: {argument}={split!r}"
            )
    features = info.features
    for argument, key in (("image_key", image_key), ("label_key", label_key)):
        if key not in features.keys():
            raise ValueError(
                f"`{argument}` must be a feature of TFDS dataset {name!r}: "
                f"{', '.join(sorted(features.keys()))}. Received: {argument}={key!r}"
            )
    label = features[label_key]
    num_classes = getattr(label, "num_classes", None)
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(
            f"`label_key` must name a ClassLabel feature of TFDS dataset {name!r} with at "
            f"least 2 classes. Received: label_key={label_key!r} ({type(label).__name__})"
        )
    if input_shape is None:
        shape = tuple(getattr(features[image_key], "shape", ()) or ())
        if len(shape) != 3 or not all(_is_int(d) for d in shape) or shape[2] not in (1, 3):
            raise ValueError(
                f"`input_shape` is required for TFDS dataset {name!r}: its images have shape "
                f"{shape} (not a fixed height, width and 1 or 3 channels). "
                "Received: input_shape=None"
            )
        input_shape = _check_input_shape(shape)

    if val_split is None:
        for candidate in ("validation", "test"):
            if candidate in available and candidate not in _split_base(train_split):
                val_split = candidate
                break
        else:
            if "[" in train_split or "+" in train_split:
                raise ValueError(
                    f"`val_split` is required: TFDS dataset {name!r} has no validation or "
                    f"test split and train_split={train_split!r} is already an expression"
                )
            percent = int(round((1.0 - val_fraction) * 100))
            if not 0 < percent < 100:
                raise ValueError(
                    "`val_fraction` must leave at least 1% of the training split in each "
                    f"split. Received: val_fraction={val_fraction!r}"
                )
            train_split, val_split = f"{train_split}[:{percent}%]", f"{train_split}[{percent}%:]"

    def read(split):
        ds = builder.as_dataset(split=split, shuffle_files=False)
        images, labels = [], []
        for example in ds.as_numpy_iterator():
            image = np.asarray(example[image_key])
            if image.ndim == 2:
                image = image[..., None]
            scale = 255.0 if image.dtype == np.uint8 else 1.0
            images.append(_prepare_images(image[None], scale, input_shape)[0])
            labels.append(int(example[label_key]))
        if not images:
            raise ValueError(f"TFDS dataset {name!r}: split {split!r} holds no examples")
        return np.stack(images), np.array(labels, np.int32)

    x_train, y_train = read(train_split)
    x_val, y_val = read(val_split)
    names = getattr(label, "names", None)
    return Splits(
        name=f"tfds:{name}",
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        num_classes=int(num_classes),
        class_names=tuple(names) if names and len(names) == num_classes else None,
    )


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

_NEEDS_DIR = {
    "mnist": "a directory holding the IDX files "
    + ", ".join(f"{b}[.gz]" for b in MNIST_FILES.values())
    + " (the two t10k files alone are enough)",
    "cifar10": "the cifar-10-batches-bin folder (or its parent) holding data_batch_1.bin .. "
    "data_batch_5.bin and test_batch.bin",
    "image_folder": "a directory with one sub-folder of images per class "
    "(optionally under train/ and val/)",
}


def load(
    name,
    *,
    input_shape,
    data_dir=None,
    val_fraction: float = 0.2,
    seed: int = 0,
    tfds_name: str | None = None,
) -> Splits:
    """Loads the registered dataset `name` (one of `DATASETS`).

    ``digits`` is embedded in scikit-learn and takes no `data_dir`; its split
    depends on `seed`. ``mnist`` and ``cifar10`` need `data_dir` and split in file
    order, so `seed` does not affect them (see `mnist`, `cifar10`).
    ``image_folder`` needs `data_dir`; its split and training order depend on `seed`.
    ``tfds`` needs `tfds_name` (e.g. ``"mnist"``) and reads a prepared TFDS dataset
    from `data_dir` (TFDS's default when None) with `tfds`'s default splits.
    """
    if name not in DATASETS:
        raise ValueError(
            f"`name` must be one of the registered datasets {', '.join(DATASETS)}. "
            f"Received: name={name!r}"
        )
    if tfds_name is not None and name != "tfds":
        raise ValueError(
            f"`tfds_name` is only for name='tfds'. Received: name={name!r}, "
            f"tfds_name={tfds_name!r}"
        )
    if name == "digits":
        if data_dir is not None:
            raise ValueError(
                "`data_dir` must be None for 'digits': the data is embedded in scikit-learn. "
                f"Received: data_dir={data_dir!r}"
            )
        return digits(input_shape=input_shape, val_fraction=val_fraction, seed=seed)
    if name == "tfds":
        if tfds_name is None:
            raise ValueError(
                "`tfds_name` is required for 'tfds': the TFDS dataset name, e.g. 'mnist' or "
                "'cifar10:3.0.2', prepared on disk. Received: tfds_name=None"
            )
        return tfds(tfds_name, data_dir=data_dir, input_shape=input_shape,
                    val_fraction=val_fraction)
    if data_dir is None:
        raise ValueError(
            f"`data_dir` is required for {name!r}: {_NEEDS_DIR[name]}. Received: data_dir=None"
        )
    if name == "mnist":
        return mnist(data_dir, input_shape=input_shape, val_fraction=val_fraction)
    if name == "cifar10":
        return cifar10(data_dir, input_shape=input_shape, val_fraction=val_fraction, seed=seed)
    return image_folder(data_dir, input_shape=input_shape, val_fraction=val_fraction, seed=seed)
