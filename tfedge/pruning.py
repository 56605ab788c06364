"""Magnitude pruning through tfmot, with no user code for any tfedge model.

    pruned = tfedge.prune(model, sparsity=0.5)   # a new model; `model` is left as it was
    pruned.fit(..., callbacks=tfedge.pruning.pruning_callbacks())
    tfedge.pruning.sparsity_report(tfedge.strip(pruned))

Every layer tfmot can prune (weights in its registry: Conv2D, Dense, ...) is wrapped, except the
stem convolution and the classifier unless asked; the others (depthwise convolutions,
BatchNorm, tfedge's custom layers, ...) are left as they are.
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


def polynomial(initial_sparsity, final_sparsity, begin_step, end_step, *, frequency=100):
    """A schedule that ramps sparsity from `initial_sparsity` to `final_sparsity` (cubic)."""
    for argument, value in (("initial_sparsity", initial_sparsity),
                            ("final_sparsity", final_sparsity)):
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"`{argument}` must be a number in [0, 1). Received: "
                             f"{argument}={value!r}")
    if not 0 <= begin_step < end_step:
        raise ValueError(f"`begin_step` must be >= 0 and below `end_step`. Received: "
                         f"begin_step={begin_step!r}, end_step={end_step!r}")
    return _S.PolynomialDecay(initial_sparsity=float(initial_sparsity),
                              final_sparsity=float(final_sparsity), begin_step=begin_step,
                              end_step=end_step, frequency=frequency)


def default_skip(model):
    """The first and the last prunable layers: the stem convolution and the classifier.

    Both are small and hurt accuracy most when pruned, which is why they are left dense unless
    `skip` says otherwise.
    """
    prunable = [l.name for l in model.layers if is_prunable(l)]
    return tuple(dict.fromkeys(prunable[:1] + prunable[-1:]))


def _schedule(sparsity):
    if isinstance(sparsity, _S.PruningSchedule):
        return sparsity
    if not isinstance(sparsity, (int, float)) or isinstance(sparsity, bool) or \
            not 0 <= sparsity < 1:
        raise ValueError("`sparsity` must be a number in [0, 1) or a pruning schedule (e.g. "
                         f"tfedge.pruning.polynomial(...)). Received: sparsity={sparsity!r}")
    return _S.ConstantSparsity(float(sparsity), begin_step=0, frequency=1)


def prune(model, sparsity=0.5, *, m_by_n=None, skip=None):
    """Wraps the prunable layers of a copy of `model` for magnitude pruning.

    Args:
      model: a Functional or Sequential tf_keras model.
      sparsity: the fraction of weights to zero (constant from the first step), or a schedule
        such as `polynomial(0.0, 0.75, begin_step=0, end_step=1000)`.
      m_by_n: e.g. (2, 4): at most 2 non-zero weights in every 4 consecutive input channels
        (structured sparsity that sparse tensor hardware accelerates); the schedule says when.
      skip: names of layers to leave dense. Default: `default_skip(model)`, the stem
        convolution and the classifier. Pass () to prune every prunable layer.
    """
    require_tf_keras_model(model)
    schedule = _schedule(sparsity)
    if m_by_n is not None:
        if (not isinstance(m_by_n, (tuple, list)) or len(m_by_n) != 2
                or not all(isinstance(v, int) and v > 0 for v in m_by_n)
                or m_by_n[0] >= m_by_n[1]):
            raise ValueError("`m_by_n` must be two integers m < n, e.g. (2, 4). Received: "
                             f"m_by_n={m_by_n!r}")
        m_by_n = tuple(m_by_n)
    skip = default_skip(model) if skip is None else tuple(skip)
    names = {l.name for l in model.layers}
    unknown = sorted(set(skip) - names)
    if unknown:
        raise ValueError(f"`skip` names layers the model does not have: {unknown}")
    source = clone_with_weights(model)

    def wrap(layer):
        if layer.name in skip or not is_prunable(layer):
            return layer
        if m_by_n is not None and type(layer) not in (keras.layers.Conv2D, keras.layers.Dense):
            return layer  # tfmot's m-by-n masks exist for Conv2D and Dense only
        return _S.prune_low_magnitude(layer, pruning_schedule=schedule, sparsity_m_by_n=m_by_n)

    return keras.models.clone_model(source, clone_function=wrap)


def sparsity_report(model):
    """Per prunable layer: (name, weights, zeros, sparsity), wrapped or stripped models alike."""
    rows = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if not is_prunable(inner):
            continue
        kernels = [w.numpy() for w in inner.get_prunable_weights()] \
            if hasattr(inner, "get_prunable_weights") else [inner.kernel.numpy()]
        total = sum(k.size for k in kernels)
        zeros = sum(int((k == 0).sum()) for k in kernels)
        rows.append((inner.name, total, zeros, zeros / total if total else 0.0))
    return rows


def pruning_callbacks():
    """The callbacks a pruned model needs in `fit` (tfmot's step counter)."""
    return [_S.UpdatePruningStep()]


def strip(model):
    """Removes the pruning wrappers, leaving the (sparse) weights in plain layers."""
    return _S.strip_pruning(model)
