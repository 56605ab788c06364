"""Pieces every model family shares: argument checks, make_divisible, weights."""

import numbers
import os

_POOLINGS = (None, "avg", "max")


def make_divisible(value, divisor=8, min_value=None):
    """Rounds `value` to the nearest multiple of `divisor`, never dropping below 90% of it.

    The rule of the MobileNet reference code, used by every family here.
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _fail(argument, value, expectation):
    raise ValueError(f"`{argument}` {expectation}. Received: {argument}={value!r}")


def check_args(*, input_shape, num_classes, width, include_top, pooling, dropout, weights,
               bn_momentum, classifier_activation="softmax"):
    """Validates the shared factory signature before any layer is built."""
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
            or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0
                       for d in input_shape)):
        _fail("input_shape", input_shape,
              "must be (height, width, channels) with positive integers, e.g. (96, 96, 3)")
    if not isinstance(width, numbers.Real) or isinstance(width, bool) or not width > 0:
        _fail("width", width, "must be a number > 0 (the channel multiplier, e.g. 0.35 or 1.0)")
    if not isinstance(include_top, bool):
        _fail("include_top", include_top, "must be True or False")
    if include_top and (not isinstance(num_classes, numbers.Integral)
                        or isinstance(num_classes, bool) or num_classes < 1):
        _fail("num_classes", num_classes, "must be a positive integer when include_top=True")
    if pooling not in _POOLINGS:
        _fail("pooling", pooling, f"must be one of {_POOLINGS}")
    if not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        _fail("dropout", dropout, "must be a number in [0, 1)")
    if not isinstance(bn_momentum, numbers.Real) or not 0 < bn_momentum < 1:
        _fail("bn_momentum", bn_momentum, "must be a number in (0, 1), e.g. 0.9")
    if classifier_activation not in ("softmax", None):
        _fail("classifier_activation", classifier_activation, "must be 'softmax' or None")
    check_weights(weights)


def pool(x, pooling):
    """How a feature extractor (`include_top=False`) ends: as it is, or pooled "avg"/"max"."""
    from tfedge._keras import layers

    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def check_weights(weights):
    """`weights` is None or a local file. Nothing is ever downloaded."""
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)):
        _fail("weights", weights, "must be None or the path of a local weights file")
    path = os.fspath(weights)
    if not os.path.exists(path):
        hint = (" tfedge never downloads weights; save them with model.save_weights() and pass "
                "the file" if path in ("imagenet", "noisy-student") else "")
        _fail("weights", weights, f"must be None or an existing local file; {path!r} does not "
              f"exist.{hint}")


def load_weights(model, weights):
    if weights is not None:
        try:
            model.load_weights(os.fspath(weights))
        except Exception as exc:  # Keras raises several types for a mismatched file
            raise ValueError(
                f"could not load `weights`={os.fspath(weights)!r} into {model.name}: {exc}. "
                "The file must come from the same factory called with the same arguments."
            ) from exc
    return model
