"""tfedge: take a Keras model to a verified microcontroller deployment.

    import tfedge
    splits = tfedge.data.load("digits", input_shape=(32, 32, 1))
    model = tfedge.models.mobilenet_v2((32, 32, 1), num_classes=10, width=0.35)
    tfedge.training.fit(model, splits, epochs=30)
    result = tfedge.compress(model, train_data=splits.train(), val_data=splits.val())
    result.save("out/")  # model.tflite, model_data.cc/.h, report.json, report.md

Importing tfedge is cheap: TensorFlow loads on first use of a stage that needs it.
"""

import os as _os

# tensorflow-model-optimization only supports the Keras 2 API (tf_keras). The
# variable must be set before TensorFlow is imported; tfedge itself always
# builds models with tf_keras explicitly (see tfedge/_keras.py), so it also
# works when the user imported TensorFlow first.
_os.environ["TF_USE_LEGACY_KERAS"] = "1"
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import importlib as _importlib
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("tfedge")
except _metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

# name -> (module, attribute or None for the module itself)
_LAZY = {
    "data": ("tfedge.data", None),
    "models": ("tfedge.models", None),
    "converters": ("tfedge.converters", None),
    "microcontroller": ("tfedge.microcontroller", None),
    "training": ("tfedge.training", None),
    "pruning": ("tfedge.pruning", None),
    "quantization": ("tfedge.quantization", None),
    "compress": ("tfedge.pipeline", "compress"),
    "CompressResult": ("tfedge.pipeline", "CompressResult"),
    "Distiller": ("tfedge.distill", "Distiller"),
    "profile": ("tfedge.profiling", "profile"),
    "prune": ("tfedge.pruning", "prune"),
    "Prune": ("tfedge.pruning", "Prune"),
    "strip": ("tfedge.pruning", "strip"),
    "channels": ("tfedge.channels", None),
    "prune_channels": ("tfedge.channels", "prune_channels"),
    "Channels": ("tfedge.channels", "Channels"),
    "quantize_aware": ("tfedge.quantization", "quantize_aware"),
    "quantize_scope": ("tfedge.quantization", "quantize_scope"),
    "load_model": ("tfedge.saving", "load_model"),
    "compat": ("tfedge.compat", None),
    "as_tf_keras": ("tfedge.compat", "as_tf_keras"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'tfedge' has no attribute {name!r}") from None
    module = _importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return __all__
