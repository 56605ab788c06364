"""Model factories built with tf_keras, and a registry of them by name.

    from tfedge import models
    model = models.build("mobilenet_v2", input_shape=(32, 32, 1), num_classes=10, width=0.35)

Every family is imported explicitly below (no package scanning, which breaks under editable
installs with the package_dir mapping).
"""

from tfedge.models._common import make_divisible
from tfedge.models.mobilenet_v2 import mobilenet_v2

_REGISTRY = {}


def register(name, factory):
    """Adds `factory` under `name`; a name can be registered once."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name]!r})")
    _REGISTRY[name] = factory
    return factory


def names():
    """Registered model names, sorted."""
    return tuple(sorted(_REGISTRY))


def get(name):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}. Registered models: {', '.join(names())}") from None


def build(name, **kwargs):
    """Builds the registered model `name` with the factory's keyword arguments."""
    return get(name)(**kwargs)


register("mobilenet_v2", mobilenet_v2)

__all__ = ["build", "get", "make_divisible", "mobilenet_v2", "names", "register"]
