"""Quantization-aware training (QAT) through tfmot, for any tfedge model and user models.

    qat_model = tfedge.quantize_aware(model)   # a new model; `model` is left as it was
    qat_model.compile(...); qat_model.fit(...)

tfmot's own `quantize_model` refuses layers its registry does not know: every custom layer and
Keras' `Multiply` (the squeeze-excite scale). tfedge annotates those with the QuantizeConfigs
below, so no user code is needed, and saves/loads QAT models inside `quantize_scope()`.

Keras 3 models, and tf_keras models with TF-op layers (tf_keras' own MobileNetV3 builds its
hard-swish from `x + 3.0`, `tf.nn.relu6`, ...), are first rebuilt by `tfedge.compat.as_tf_keras`,
as `tfedge.compress` does.
"""

from tfedge._keras import clone_with_weights, keras, tfmot
from tfedge.models import _layers

_Q = tfmot().quantization.keras


def _output_quantizer():
    return _Q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                narrow_range=False)


@keras.utils.register_keras_serializable(package="tfedge")
class OutputQuantizeConfig(_Q.QuantizeConfig):
    """No weights to quantize; the output gets its own int8 range (a new TFLite tensor)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_output_quantizer()]

    def get_config(self):
        return {}


@keras.utils.register_keras_serializable(package="tfedge")
class PassThroughQuantizeConfig(OutputQuantizeConfig):
    """Data movement (reshape, transpose, split): the output keeps the input's range."""

    def get_output_quantizers(self, layer):
        return []


# Layers tfmot's default registry does not cover -> their QuantizeConfig.
QUANTIZE_CONFIGS = {
    _layers.HardSwish: OutputQuantizeConfig,
    _layers.HardSigmoid: OutputQuantizeConfig,
    keras.layers.Multiply: OutputQuantizeConfig,
    # What tfedge.compat.as_tf_keras makes of `x * scale + offset` ops and Keras 3 Rescaling, and
    # of `x - y` on two tensors.
    keras.layers.Rescaling: OutputQuantizeConfig,
    keras.layers.Subtract: OutputQuantizeConfig,
    _layers.ChannelShuffle: PassThroughQuantizeConfig,
    _layers.ChannelSplit: PassThroughQuantizeConfig,
}


def quantize_scope():
    """A context in which QAT models save and load (custom layers and configs known)."""
    objects = dict(_layers.CUSTOM_OBJECTS)
    objects.update(OutputQuantizeConfig=OutputQuantizeConfig,
                   PassThroughQuantizeConfig=PassThroughQuantizeConfig)
    return _Q.quantize_scope(objects)


def _scheme(preserve_sparsity):
    if not preserve_sparsity:
        return tfmot().quantization.keras.default_8bit.Default8BitQuantizeScheme()
    # Public in tfmot's docs as `tfmot.experimental.combine`, which 0.8.1 no longer exports.
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve \
        import default_8bit_prune_preserve_quantize_scheme as prune_preserve

    return prune_preserve.Default8BitPrunePreserveQuantizeScheme()


def quantize_aware(model, *, preserve_sparsity=False):
    """Returns a QAT copy of a Functional or Sequential model (fake-quant inserted).

    Args:
      model: a tf_keras model, or a Keras 3 one; a Keras 3 model, or a tf_keras model with TF-op
        layers, is rebuilt first with `tfedge.compat.as_tf_keras` (same outputs, same weights).
        It is left as it was.
      preserve_sparsity: for a pruned and stripped model (see `tfedge.strip`): tfmot's
        pruning-preserving scheme (PQAT) keeps every zero weight at zero during QAT.

    Raises:
      TypeError: not a Keras model, a subclassed model, or one with nested models.
      ValueError: a layer or op QAT cannot wrap (the message names it and says what to do).
    """
    from tfedge import compat

    try:
        rebuilt = compat.as_tf_keras(model)
    except ValueError as exc:
        raise ValueError(f"quantize_aware rebuilds Keras 3 models and TF-op layers as tf_keras "
                         f"layers first (tfedge.compat.as_tf_keras), which failed: {exc}") from exc
    nested = [l.name for l in rebuilt.layers if isinstance(l, keras.Model)]
    if nested:
        raise TypeError(f"quantize_aware cannot handle nested models ({', '.join(nested)}); "
                        "flatten them into one Functional model")
    # A rebuilt model is a private copy already; the caller's own model is copied first.
    source = rebuilt if rebuilt is not model else clone_with_weights(model)
    model = rebuilt
    scheme = _scheme(preserve_sparsity)

    def annotate(layer):
        config = QUANTIZE_CONFIGS.get(type(layer))
        return _Q.quantize_annotate_layer(layer, config() if config else None)

    with quantize_scope():
        try:
            annotated = keras.models.clone_model(source, clone_function=annotate)
            return _Q.quantize_apply(annotated, scheme=scheme)
        except (ValueError, RuntimeError, TypeError, AttributeError) as exc:
            raise _wrap_error(model, exc) from exc


def _wrap_error(model, exc):
    """tfmot's error as a ValueError that names the layers it cannot wrap and the fix.

    tfmot and Keras name the layer that failed ('Layer norm:<class ...> is not supported',
    'calling layer "tf.math.add" (type TFOpLambda)') or its class ('object of type `Doubler`',
    'Layer Doubler supplied to wrapper', 'a Lambda layer'); every layer of that class fails
    alike, so all of them are named.
    """
    text = str(exc).strip()
    reason = text.rstrip(".")
    candidates = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    failed = [l for l in candidates if any(quoted in text for quoted in (
        f'"{l.name}"', f"'{l.name}'", f"`{l.name}`", f"Layer {l.name}:"))]
    if not failed:
        failed = [l for l in candidates if any(quoted in text for quoted in (
            f"`{type(l).__name__}`", f"{type(l).__name__} layer", f"type {type(l).__name__}",
            f"Layer {type(l).__name__} "))]
    classes = {type(l) for l in failed}
    refused = [l for l in candidates if type(l) in classes]
    if not refused:
        return ValueError(f"tfmot cannot quantize {model.name!r}: {reason}. Layers without a "
                          "QuantizeConfig in tfmot's registry or "
                          "tfedge.quantization.QUANTIZE_CONFIGS need one.")
    named = ", ".join(f"{l.name!r} ({type(l).__name__})" for l in refused)
    return ValueError(
        f"quantize_aware cannot wrap {len(refused)} layer(s) of {model.name!r} for QAT: {named}. "
        f"tfmot says: {reason}. Replace each with a layer tfmot quantizes (tf_keras Conv2D, "
        "DepthwiseConv2D, Dense, ReLU, Add, ... or the layers of tfedge.models), or, for a layer "
        "class of your own, register it (tf_keras.utils.register_keras_serializable) and map it "
        "to a QuantizeConfig in tfedge.quantization.QUANTIZE_CONFIGS (OutputQuantizeConfig "
        "suits a layer without weights).")
