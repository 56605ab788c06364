"""Model factories built with tf_keras, and a registry of them by name.

    from tfedge import models
    model = models.build("mobilenet_v2", input_shape=(32, 32, 1), num_classes=10, width=0.35)

Every family is imported explicitly below (no package scanning, which breaks under editable
installs with the package_dir mapping).
"""

from tfedge.models._common import make_divisible
from tfedge.models.efficientnet_lite import (efficientnet_lite0, efficientnet_lite1,
                                             efficientnet_lite2, efficientnet_lite3,
                                             efficientnet_lite4)
from tfedge.models.ghostnet import ghostnet
from tfedge.models.mobilenet_v2 import mobilenet_v2
from tfedge.models.mobilenet_v3 import mobilenet_v3_large, mobilenet_v3_small
from tfedge.models.shufflenet import shufflenet_v1, shufflenet_v2

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
register("mobilenet_v3_small", mobilenet_v3_small)
register("mobilenet_v3_large", mobilenet_v3_large)
register("shufflenet_v1", shufflenet_v1)
register("shufflenet_v2", shufflenet_v2)
register("ghostnet", ghostnet)
for _factory in (efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, efficientnet_lite3,
                 efficientnet_lite4):
    register(_factory.__name__, _factory)

__all__ = ["build", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
           "efficientnet_lite3", "efficientnet_lite4", "get", "ghostnet", "make_divisible",
           "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "names", "register", "shufflenet_v1",
           "shufflenet_v2"]
