"""Deterministic data augmentation for training: the same (images, seed) gives the same batch.

    from tfedge.augment import Augment
    aug = Augment(("flip", "crop"), input_shape=(32, 32, 3))  # or .from_flag("flip,crop", shape)
    seed = Augment.batch_seed(run_seed, epoch, batch_index)  # [run_seed, epoch * 1_000_003 + batch]
    images = aug(images, seed)  # a float32 (N, H, W, C) batch in [0, 1]

    # Every batch of one epoch of a tf.data pipeline of (images, labels) batches:
    ds = aug.map_batches(splits.train(batch_size=64, seed=run_seed), run_seed, epoch)

Only stateless random ops are used, always with the Philox algorithm (never
"auto_select", which picks by device), so the random choices depend on nothing but
`seed`: a run resumed after a crash, in another process or on another machine, sees
the same augmented batches. The arithmetic is elementwise except the per-image mean
of "contrast", a reduction whose last bit may differ between CPU and GPU kernels.

Operations (`OPS`), applied in this fixed order whatever order they are named in, each
with its own per-image random draw from a sub-seed that depends only on the operation
(so adding "contrast" does not change what "flip" does with the same seed):

* ``flip``: mirror left-right, each image with probability 1/2 (suits photos such as
  CIFAR-10; not digits or text).
* ``crop``: pad by 1/8 of the height and width (rounded, at least 1 pixel) and crop
  back at a random place: a random translation by -pad..pad pixels in each direction.
  The uncovered border is zeros (``padding="zero"``, the usual CIFAR recipe) or the
  nearest edge pixel (``padding="edge"``). A zero shift is the identity.
* ``brightness``: add a delta drawn uniformly from [-0.2, 0.2].
* ``contrast``: scale each channel's distance from the image's mean of that channel by
  a factor drawn uniformly from [0.8, 1.2].
* ``cutout``: set a square of 1/4 of the height and width (rounded, at least 1 pixel),
  centred anywhere in the image and clipped at its edges, to 0.

The result is clipped to [0, 1]. Works eagerly, inside `tf.function` and inside
`tf.data.Dataset.map`, on float32 (N, H, W, C) batches with C = 1 or 3.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["Augment", "OPS", "PADDING", "SEED_STRIDE"]

# name -> what it does; the order is the order of application.
OPS = {
    "flip": "mirror left-right with probability 1/2",
    "crop": "random translation by up to 1/8 of the size (pad and random-crop back)",
    "brightness": "add a uniform delta in [-0.2, 0.2]",
    "contrast": "scale the distance from the per-channel mean by a uniform [0.8, 1.2]",
    "cutout": "zero a random square of 1/4 of the size",
}
PADDING = ("zero", "edge")
# seed = [run seed, epoch * SEED_STRIDE + batch index]: a prime above any batch count per epoch.
SEED_STRIDE = 1_000_003

BRIGHTNESS_DELTA = 0.2
CONTRAST_RANGE = (0.8, 1.2)
_ALG = "philox"
_NONE = ("", "none")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fraction(size: int, fraction: float) -> int:
    """`fraction` of `size`, rounded half up, at least 1."""
    return max(1, math.floor(size * fraction + 0.5))


def _known():
    return ", ".join(f"{name!r}" for name in OPS)


@dataclasses.dataclass(frozen=True)
class Augment:
    """A validated list of augmentation operations for (N, H, W, C) float32 batches.

    Args:
      names: operation names from `OPS` (a tuple or list; empty for none). Stored in
        the order of application.
      input_shape: (height, width, channels) of one image, channels 1 or 3.
      padding: how "crop" fills the border it uncovers: "zero" or "edge".

    Call it as ``aug(images, seed)`` with `seed` a shape-[2] integer tensor (see
    `batch_seed`).
    """

    names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    padding: str = "zero"

    def __post_init__(self):
        names = self.names
        if isinstance(names, str) or not isinstance(names, (tuple, list)):
            raise ValueError(
                f"`names` must be a tuple of operation names from {_known()} (use "
                "`Augment.from_flag` for a comma-separated string). "
                f"Received: names={names!r}"
            )
        unknown = [n for n in names if n not in OPS]
        if unknown:
            raise ValueError(
                f"`names` must be augmentation operations from {_known()}. "
                f"Received: unknown {', '.join(repr(n) for n in unknown)} in names={names!r}"
            )
        repeated = sorted({n for n in names if list(names).count(n) > 1})
        if repeated:
            raise ValueError(
                f"`names` must name each operation once. Received: {', '.join(repeated)} "
                f"repeated in names={names!r}"
            )
        shape = self.input_shape
        ok = (
            isinstance(shape, (tuple, list))
            and len(shape) == 3
            and all(_is_int(v) and v > 0 for v in shape)
            and shape[2] in (1, 3)
        )
        if not ok:
            raise ValueError(
                "`input_shape` must be (height, width, channels) with positive integers and "
                f"1 or 3 channels, e.g. (32, 32, 3). Received: input_shape={shape!r}"
            )
        if self.padding not in PADDING:
            raise ValueError(
                f"`padding` must be one of {', '.join(PADDING)}. Received: padding={self.padding!r}"
            )
        object.__setattr__(self, "names", tuple(n for n in OPS if n in names))
        object.__setattr__(self, "input_shape", tuple(int(v) for v in shape))

    # -- construction from a flag ------------------------------------------------

    @classmethod
    def from_flag(cls, value, input_shape, *, padding="zero", flag="augment") -> Augment:
        """Parses a comma-separated flag value: ``"flip,crop"``; ``""`` or ``"none"``: nothing.

        Spaces around names are ignored and names are case-insensitive; errors name
        `flag`.
        """
        if not isinstance(value, str):
            raise ValueError(
                f"`{flag}` must be a comma-separated list of {_known()}, or 'none'. "
                f"Received: {flag}={value!r}"
            )
        if value.strip().lower() in _NONE:
            return cls((), input_shape, padding=padding)
        names = [part.strip().lower() for part in value.split(",")]
        if "" in names or "none" in names:
            raise ValueError(
                f"`{flag}` must be a comma-separated list of {_known()} without empty items, "
                f"or 'none' alone. Received: {flag}={value!r}"
            )
        unknown = [n for n in names if n not in OPS]
        if unknown:
            raise ValueError(
                f"`{flag}` must be a comma-separated list of {_known()}, or 'none'. "
                f"Received: unknown {', '.join(repr(n) for n in unknown)} in {flag}={value!r}"
            )
        return cls(tuple(names), input_shape, padding=padding)

    @property
    def flag(self) -> str:
        """The flag value that `from_flag` turns back into these operations."""
        return ",".join(self.names) or "none"

    def __bool__(self) -> bool:
        return bool(self.names)

    @property
    def pad(self) -> tuple[int, int]:
        """The largest "crop" shift in pixels: (rows, columns)."""
        return _fraction(self.input_shape[0], 1 / 8), _fraction(self.input_shape[1], 1 / 8)

    @property
    def cutout_size(self) -> tuple[int, int]:
        """The "cutout" square's (height, width) in pixels."""
        return _fraction(self.input_shape[0], 1 / 4), _fraction(self.input_shape[1], 1 / 4)

    # -- seeds ----------------------------------------------------------------------

    @staticmethod
    def batch_seed(run_seed, epoch, batch_index):
        """The int64 seed of one batch: ``[run_seed, epoch * SEED_STRIDE + batch_index]``.

        Python integers or integer scalar tensors (e.g. the index from
        `tf.data.Dataset.enumerate`).
        """
        from tfedge._keras import tf

        for name, value in (("run_seed", run_seed), ("epoch", epoch),
                            ("batch_index", batch_index)):
            if isinstance(value, bool) or (not _is_int(value) and not tf.is_tensor(value)):
                raise ValueError(
                    f"`{name}` must be an integer >= 0 or an integer scalar tensor. "
                    f"Received: {name}={value!r}"
                )
            if _is_int(value) and value < 0:
                raise ValueError(f"`{name}` must be an integer >= 0. Received: {name}={value!r}")
        as64 = lambda v: tf.cast(v, tf.int64)  # noqa: E731
        return tf.stack([as64(run_seed), as64(epoch) * SEED_STRIDE + as64(batch_index)])

    def map_batches(self, dataset, run_seed, epoch=0):
        """`dataset` of image batches or (images, labels, ...) batches, augmented.

        Batch i of the dataset gets ``batch_seed(run_seed, epoch, i)``; the order of
        the batches is kept. `epoch` may be a scalar tensor (e.g. inside
        `Dataset.flat_map` over a range of epochs).
        """
        from tfedge._keras import tf

        if not self.names:
            return dataset

        def augment(index, batch):
            seed = self.batch_seed(run_seed, epoch, index)
            if isinstance(batch, tuple):
                return (self(batch[0], seed), *batch[1:])
            return self(batch, seed)

        return dataset.enumerate().map(
            augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    # -- the operations -------------------------------------------------------------

    def __call__(self, images, seed):
        """Augments a float32 (N, H, W, C) batch in [0, 1]; `seed` is a shape-[2] int tensor."""
        from tfedge._keras import tf

        images = tf.convert_to_tensor(images)
        if images.dtype != tf.float32:
            raise ValueError(
                f"`images` must be float32 in [0, 1]. Received: dtype={images.dtype.name}"
            )
        shape = images.shape
        if shape.rank != 4 or any(
            d is not None and d != want for d, want in zip(shape[1:], self.input_shape)
        ):
            raise ValueError(
                f"`images` must be a batch shaped (N, {', '.join(map(str, self.input_shape))}) "
                f"(this Augment's input_shape). Received: shape={shape}"
            )
        seed = tf.convert_to_tensor(seed)
        if not seed.dtype.is_integer or seed.shape.rank != 1 or seed.shape[0] not in (None, 2):
            raise ValueError(
                "`seed` must be a shape-[2] integer tensor, e.g. Augment.batch_seed(run_seed, "
                f"epoch, batch_index). Received: dtype={seed.dtype.name}, shape={seed.shape}"
            )
        if not self.names:
            return images
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), len(OPS),
                                                       alg=_ALG)
        n = tf.shape(images)[0]
        for index, name in enumerate(OPS):
            if name in self.names:
                images = getattr(self, f"_{name}")(images, seeds[index], n)
        return tf.clip_by_value(images, 0.0, 1.0)

    def _flip(self, images, seed, n):
        from tfedge._keras import tf

        mirror = tf.random.stateless_uniform([n], seed, alg=_ALG) < 0.5
        return tf.where(mirror[:, None, None, None], tf.reverse(images, axis=[2]), images)

    def _crop(self, images, seed, n):
        from tfedge._keras import tf

        seed_y, seed_x = tf.unstack(tf.random.experimental.stateless_split(seed, 2, alg=_ALG))
        pad_y, pad_x = self.pad
        dy = tf.random.stateless_uniform([n], seed_y, -pad_y, pad_y + 1, tf.int32, alg=_ALG)
        dx = tf.random.stateless_uniform([n], seed_x, -pad_x, pad_x + 1, tf.int32, alg=_ALG)
        return _translate(images, dy, dx, self.padding)

    def _brightness(self, images, seed, n):
        from tfedge._keras import tf

        delta = tf.random.stateless_uniform(
            [n, 1, 1, 1], seed, -BRIGHTNESS_DELTA, BRIGHTNESS_DELTA, alg=_ALG
        )
        return images + delta

    def _contrast(self, images, seed, n):
        from tfedge._keras import tf

        factor = tf.random.stateless_uniform([n, 1, 1, 1], seed, *CONTRAST_RANGE, alg=_ALG)
        mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
        return (images - mean) * factor + mean

    def _cutout(self, images, seed, n):
        from tfedge._keras import tf

        height, width, _ = self.input_shape
        size_y, size_x = self.cutout_size
        seed_y, seed_x = tf.unstack(tf.random.experimental.stateless_split(seed, 2, alg=_ALG))
        cy = tf.random.stateless_uniform([n, 1], seed_y, 0, height, tf.int32, alg=_ALG)
        cx = tf.random.stateless_uniform([n, 1], seed_x, 0, width, tf.int32, alg=_ALG)
        rows = tf.range(height)[None] - (cy - size_y // 2)  # 0 <= rows < size_y: inside
        cols = tf.range(width)[None] - (cx - size_x // 2)
        inside_y = (rows >= 0) & (rows < size_y)
        inside_x = (cols >= 0) & (cols < size_x)
        hole = inside_y[:, :, None, None] & inside_x[:, None, :, None]
        return tf.where(hole, tf.zeros_like(images), images)


def _translate(images, dy, dx, padding):
    """out[i, y, x] = images[i, y + dy[i], x + dx[i]]; outside the image: 0 or the edge pixel."""
    from tfedge._keras import tf

    height, width = tf.shape(images)[1], tf.shape(images)[2]
    rows = tf.range(height)[None] + dy[:, None]  # (N, H)
    cols = tf.range(width)[None] + dx[:, None]  # (N, W)
    out = tf.gather(images, tf.clip_by_value(rows, 0, height - 1), axis=1, batch_dims=1)
    out = tf.gather(out, tf.clip_by_value(cols, 0, width - 1), axis=2, batch_dims=1)
    if padding == "zero":
        inside = ((rows >= 0) & (rows < height))[:, :, None, None] & (
            (cols >= 0) & (cols < width)
        )[:, None, :, None]
        out = tf.where(inside, out, tf.zeros_like(out))
    return out
