"""Quantization-aware training (QAT) through tfmot, for any tfedge model and user models.

    qat_model = tfedge.quantize_aware(model)   # a new model; `model` is left as it was
    qat_model.compile(...); qat_model.fit(...)

tfmot's own `quantize_model` refuses layers its registry does not know: every custom layer and
Keras' `Multiply` (the squeeze-excite scale). tfedge annotates those with the QuantizeConfigs
below, so no user code is needed, and saves/loads QAT models inside `quantize_scope()`.
"""

from tfedge._keras import clone_with_weights, keras, require_tf_keras_model, tfmot
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
    """Returns a QAT copy of a Functional or Sequential tf_keras model (fake-quant inserted).

    With `preserve_sparsity=True` (for a pruned and stripped model, see `tfedge.strip`), tfmot's
    pruning-preserving scheme (PQAT) keeps every zero weight at zero during QAT.
    """
    require_tf_keras_model(model)
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise TypeError(f"quantize_aware needs a Functional or Sequential model; {model.name} is a "
                        "subclassed model. Rebuild it with the Functional API.")
    nested = [l.name for l in model.layers if isinstance(l, keras.Model)]
    if nested:
        raise TypeError(f"quantize_aware cannot handle nested models ({', '.join(nested)}); "
                        "flatten them into one Functional model")
    source = clone_with_weights(model)

    def annotate(layer):
        config = QUANTIZE_CONFIGS.get(type(layer))
        return _Q.quantize_annotate_layer(layer, config() if config else None)

    with quantize_scope():
        annotated = keras.models.clone_model(source, clone_function=annotate)
        try:
            return _Q.quantize_apply(annotated, scheme=_scheme(preserve_sparsity))
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"tfmot cannot quantize {model.name}: {exc}. Layers without a "
                             "QuantizeConfig in tfmot's registry or tfedge.quantize."
                             "QUANTIZE_CONFIGS need one.") from exc
