"""Magnitude pruning through tfmot, with no user code for any tfedge model.

    pruned = tfedge.prune(model, sparsity=0.5)   # a new model; `model` is left as it was
    pruned.fit(..., callbacks=tfedge.pruning.pruning_callbacks())
    tfedge.pruning.sparsity_report(tfedge.strip(pruned))

Every layer tfmot can prune (weights in its registry: Conv2D, Dense, ...) is wrapped, except the
stem convolution and the classifier unless asked; the others (depthwise convolutions,
BatchNorm, tfedge's custom layers, ...) are left as they are. Keras 3 models, and tf_keras models
with TF-op layers, are first rebuilt by `tfedge.compat.as_tf_keras`, as `tfedge.compress` does.
"""

import dataclasses

from tfedge._keras import clone_with_weights, is_tf_keras_model, keras, tf, tfmot

_S = tfmot().sparsity.keras


def is_prunable(layer):
    """True when tfmot would prune some weight of `layer`."""
    if hasattr(layer, "get_prunable_weights"):
        return bool(layer.get_prunable_weights())
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    # tfmot has no public "which weights would you prune" query; its registry table answers it.
    registry = prune_registry.PruneRegistry
    if not registry.supports(layer):
        return False
    # Recurrent layers are supported through their cells, whose kernels are always pruned.
    return registry._is_rnn_layer(layer) or bool(registry._weight_names(layer))


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
      model: a Functional or Sequential model: tf_keras, or Keras 3 (rebuilt first, see
        `tfedge.compat.as_tf_keras`, as are tf_keras models with TF-op layers). It is left as it
        was.
      sparsity: the fraction of weights to zero (constant from the first step), or a schedule
        such as `polynomial(0.0, 0.75, begin_step=0, end_step=1000)`.
      m_by_n: e.g. (2, 4): at most 2 non-zero weights in every 4 consecutive input channels
        (structured sparsity that sparse tensor hardware accelerates); the schedule says when.
      skip: names of layers to leave dense. Default: `default_skip(model)`, the stem
        convolution and the classifier. Pass () to prune every prunable layer.

    Raises:
      TypeError: not a Keras model, a subclassed model, or one whose nested models hold
        prunable layers.
      ValueError: a bad argument, or a Keras 3 layer or op with no tf_keras equivalent.
    """
    from tfedge import compat

    schedule = _schedule(sparsity)
    if m_by_n is not None:
        if (not isinstance(m_by_n, (tuple, list)) or len(m_by_n) != 2
                or not all(isinstance(v, int) and v > 0 for v in m_by_n)
                or m_by_n[0] >= m_by_n[1]):
            raise ValueError("`m_by_n` must be two integers m < n, e.g. (2, 4). Received: "
                             f"m_by_n={m_by_n!r}")
        m_by_n = tuple(m_by_n)
    original = model
    try:
        model = compat.as_tf_keras(model)
    except ValueError as exc:
        if not is_tf_keras_model(model):
            raise ValueError(f"prune rebuilds Keras 3 models as tf_keras ones first "
                             f"(tfedge.compat.as_tf_keras), which failed: {exc}") from exc
        # An op as_tf_keras cannot map stays a TF-op layer: it holds no weights and tfmot never
        # wraps it, so the model prunes as it is (QAT and channel pruning refuse it).
    skip = default_skip(model) if skip is None else tuple(skip)
    names = {l.name for l in model.layers}
    unknown = sorted(set(skip) - names)
    if unknown:
        raise ValueError(f"`skip` names layers the model does not have: {unknown}")
    nested = [l for l in model.layers if isinstance(l, keras.Model) and l.name not in skip
              and any(is_prunable(inner) for inner in _flat_layers(l))]
    if nested:
        named = ", ".join(f"{l.name!r} ({type(l).__name__})" for l in nested)
        raise TypeError(f"prune cannot reach inside nested models, and {named} of "
                        f"{model.name!r} hold prunable layers that would stay dense. Flatten "
                        "them into one Functional model (call the inner model's layers on your "
                        "tensors directly), or name them in `skip` to leave them dense.")
    # A rebuilt model is a private copy already; the caller's own model is copied first.
    source = model if model is not original else clone_with_weights(model)

    def wrap(layer):
        if layer.name in skip or not is_prunable(layer):
            return layer
        if m_by_n is not None and type(layer) not in (keras.layers.Conv2D, keras.layers.Dense):
            return layer  # tfmot's m-by-n masks exist for Conv2D and Dense only
        return _S.prune_low_magnitude(layer, pruning_schedule=schedule, sparsity_m_by_n=m_by_n)

    return keras.models.clone_model(source, clone_function=wrap)


def _flat_layers(model):
    """Every layer of `model`, those of its nested models included."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def _kernel_variables(layer):
    """The prunable weight variables of a plain, pruning-wrapped or QAT-wrapped layer."""
    inner = getattr(layer, "layer", layer)
    if inner is layer:
        if hasattr(layer, "get_prunable_weights"):
            return list(layer.get_prunable_weights())
        return _registry_weights(layer)
    # In a wrapper the inner layer's attributes may hold derived tensors (QAT's fake-quantized
    # kernel); the variables themselves are the wrapper's weights of the same name.
    wanted = ("depthwise_kernel", "kernel") if not hasattr(inner, "get_prunable_weights") else \
        tuple(w.name.split("/")[-1].split(":")[0] for w in inner.get_prunable_weights())
    return [w for w in layer.weights if w.name.split("/")[-1].split(":")[0] in wanted]


def _registry_weights(layer):
    """The weights tfmot's registry prunes in a plain layer (not all are called `kernel`:
    Embedding's `embeddings`, SeparableConv2D's `pointwise_kernel`, an LSTM's cell kernels)."""
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    registry = prune_registry.PruneRegistry
    if registry._is_rnn_layer(layer):
        return [getattr(cell, name) for cell in registry._get_rnn_cells(layer)
                for name in registry._RNN_CELLS_WEIGHTS_MAP.get(type(cell), ())]
    weights = []
    for name in registry._weight_names(layer):  # MultiHeadAttention's: "_query_dense.kernel"
        owner = layer
        for part in name.split("."):
            owner = getattr(owner, part)
        weights.append(owner)
    return weights


def _kernel_arrays(layer):
    return [v.numpy() for v in _kernel_variables(layer)]


class KeepZeros(keras.callbacks.Callback):
    """Keeps every zero weight of the named layers at zero while a model trains.

    After each training step the weights that were zero when training began are set back to
    zero (a projection onto the pruned model's sparsity pattern). tfmot's pruning-preserving QAT
    does this inside its weight quantizers, but only for layers whose QuantizeConfig it knows;
    tfedge adds this callback for the rest (e.g. squeeze-excite convolutions, which tfmot's
    transforms give a no-op config).
    """

    def __init__(self, model, layer_names):
        super().__init__()
        names = set(layer_names)
        self._variables = [v for l in model.layers if getattr(l, "layer", l).name in names
                           for v in _kernel_variables(l)]
        self._masks = None

    def on_train_begin(self, logs=None):
        self._masks = [tf.cast(tf.not_equal(v, 0), v.dtype) for v in self._variables]

    def on_train_batch_end(self, batch, logs=None):
        for variable, mask in zip(self._variables, self._masks):
            variable.assign(variable * mask)


def sparsity_report(model, layer_names=None):
    """Per prunable layer: (name, weights, zeros, sparsity).

    Works on plain, pruning-wrapped and QAT-wrapped models alike; `layer_names` limits the
    report to those layers (by their original names).
    """
    rows = []
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if not is_prunable(inner) or (layer_names is not None and inner.name not in layer_names):
            continue
        kernels = _kernel_arrays(layer)
        total = sum(k.size for k in kernels)
        zeros = sum(int((k == 0).sum()) for k in kernels)
        rows.append((inner.name, total, zeros, zeros / total if total else 0.0))
    return rows


def pruned_layer_names(model):
    """Original names of the layers a `prune`d model wraps."""
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    return tuple(l.layer.name for l in model.layers
                 if isinstance(l, pruning_wrapper.PruneLowMagnitude))


def overall_sparsity(model, layer_names=None):
    """Zeros / weights over the prunable layers (or those named in `layer_names`)."""
    rows = sparsity_report(model, layer_names)
    total = sum(r[1] for r in rows)
    return sum(r[2] for r in rows) / total if total else 0.0


def pruning_callbacks():
    """The callbacks a pruned model needs in `fit` (tfmot's step counter)."""
    return [_S.UpdatePruningStep()]


def strip(model):
    """Removes the pruning wrappers, leaving the (sparse) weights in plain layers."""
    return _S.strip_pruning(model)


SCHEDULES = ("polynomial", "constant")


@dataclasses.dataclass(frozen=True)
class Prune:
    """What `tfedge.compress(prune=...)` should do: magnitude pruning through tfmot.

    Args:
      sparsity: the final fraction of zero weights in the pruned layers, in (0, 1).
      schedule: "polynomial" ramps sparsity from 0 over the first 70% of the fine-tuning steps
        (tfmot's recommended gradual pruning, Zhu & Gupta 2017), "constant" prunes to `sparsity`
        from the first step.
      m_by_n: e.g. (2, 4) for 2:4 structured sparsity (see `prune`).
      skip: layer names to leave dense; None means `default_skip` (stem and classifier).
    """

    sparsity: float = 0.5
    schedule: str = "polynomial"
    m_by_n: tuple = None
    skip: tuple = None

    def __post_init__(self):
        if not isinstance(self.sparsity, (int, float)) or isinstance(self.sparsity, bool) or \
                not 0 < self.sparsity < 1:
            raise ValueError(f"`sparsity` must be a number in (0, 1), e.g. 0.75. Received: "
                             f"sparsity={self.sparsity!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"`schedule` must be one of {SCHEDULES}. Received: "
                             f"schedule={self.schedule!r}")

    def wrap(self, model, total_steps):
        """A pruning copy of `model` whose schedule reaches `sparsity` within `total_steps`."""
        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"pruning needs at least one training step. Received: "
                             f"total_steps={total_steps!r}")
        if self.schedule == "constant":
            schedule = self.sparsity
        else:
            # tfmot prunes only at steps where (step - begin) % frequency == 0, so end_step is
            # a multiple of the frequency: otherwise the final sparsity is never applied.
            ramp = max(1, int(0.7 * total_steps))
            frequency = max(1, ramp // 10)
            schedule = polynomial(0.0, self.sparsity, begin_step=0,
                                  end_step=frequency * max(1, ramp // frequency),
                                  frequency=frequency)
        return prune(model, schedule, m_by_n=self.m_by_n, skip=self.skip)


def as_prune_spec(value):
    """`compress(prune=...)` accepts a Prune, a Channels, a sparsity number or None."""
    from tfedge.channels import Channels

    if value is None or isinstance(value, (Prune, Channels)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Prune(sparsity=value)
    raise TypeError(f"`prune` must be a tfedge.Prune(...) (magnitude pruning), a "
                    f"tfedge.Channels(...) (channel pruning), a sparsity in (0, 1) or None. "
                    f"Received: {type(value).__name__}")

