"""The one place tfedge imports Keras and tensorflow-model-optimization.

tfedge builds every model with the Keras 2 API from the `tf_keras` package,
because tfmot supports nothing else. `import tfedge` has already set
TF_USE_LEGACY_KERAS=1; importing `tf_keras` by name also works when the user
imported TensorFlow (and so Keras 3 as `tf.keras`) before tfedge.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

layers = keras.layers

_tfmot = None


def tfmot():
    """Returns the `tensorflow_model_optimization` module, imported on first use."""
    global _tfmot
    if _tfmot is None:
        import tensorflow_model_optimization

        _tfmot = tensorflow_model_optimization
    return _tfmot


def is_tf_keras_model(obj) -> bool:
    return isinstance(obj, keras.Model)


def require_tf_keras_model(model, argument="model"):
    """Raises a TypeError that says what was received and how to fix it."""
    if is_tf_keras_model(model):
        return model
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    if kind.startswith("keras."):
        raise TypeError(
            f"`{argument}` is a Keras 3 model ({kind}); tfedge works on tf_keras (Keras 2) "
            "models because tensorflow-model-optimization supports nothing else. Build it with "
            "`tfedge.models` or `import tf_keras as keras`."
        )
    raise TypeError(f"`{argument}` must be a tf_keras Model. Received: {kind}")


def clone_with_weights(model):
    """A copy with its own layers and the same weights: what is done to it never reaches `model`.

    Compression stages work on such a copy, so that they return a new model and leave the
    caller's as it was.
    """
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


__all__ = ["tf", "keras", "layers", "tfmot", "clone_with_weights", "is_tf_keras_model",
           "require_tf_keras_model"]
