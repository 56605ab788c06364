"""Magnitude pruning through tfmot, with no user code for any tfedge model.

    pruned = tfedge.prune(model, sparsity=0.5)   # a new model; `model` is left as it was
    pruned.fit(..., callbacks=[tfedge.pruning_callbacks()])

Every layer tfmot can prune (weights in its registry: Conv2D, Dense, ...) is wrapped; the
others (depthwise convolutions, BatchNorm, tfedge's custom layers, ...) are left as they are.
"""

from tfedge._keras import clone_with_weights, keras, require_tf_keras_model, tfmot

_S = tfmot().sparsity.keras


def is_prunable(layer):
    """True when tfmot would prune some weight of `layer`."""
    if hasattr(layer, "get_prunable_weights"):
        return bool(layer.get_prunable_weights())
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    # tfmot has no public "which weights would you prune" query; its registry table answers it.
    registry = prune_registry.PruneRegistry
    return registry.supports(layer) and bool(registry._weight_names(layer))


def prune(model, sparsity=0.5, *, skip=()):
    """Wraps every prunable layer of a copy of `model` for constant-sparsity pruning."""
    require_tf_keras_model(model)
    if not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"`sparsity` must be a number in [0, 1). Received: sparsity={sparsity!r}")
    names = {l.name for l in model.layers}
    unknown = sorted(set(skip) - names)
    if unknown:
        raise ValueError(f"`skip` names layers the model does not have: {unknown}")
    schedule = _S.ConstantSparsity(float(sparsity), begin_step=0, frequency=1)

    source = clone_with_weights(model)

    def wrap(layer):
        if layer.name in skip or not is_prunable(layer):
            return layer
        return _S.prune_low_magnitude(layer, pruning_schedule=schedule)

    return keras.models.clone_model(source, clone_function=wrap)


def pruning_callbacks():
    """The callbacks a pruned model needs in `fit` (tfmot's step counter)."""
    return [_S.UpdatePruningStep()]


def strip(model):
    """Removes the pruning wrappers, leaving the (sparse) weights in plain layers."""
    return _S.strip_pruning(model)
