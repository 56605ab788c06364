"""Brings Keras 3 models, and tf_keras models built from TF ops, into the form tfedge's stages take.

    import keras                                   # Keras 3
    import tfedge
    from tfedge.compat import as_tf_keras

    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), classes=10)
    rebuilt = as_tf_keras(model)                   # tf_keras, same topology, same weights
    qat = tfedge.quantize_aware(rebuilt)

tfedge's stages (`tfedge.prune`, `tfedge.quantize_aware`) run on tfmot, which knows tf_keras
(Keras 2) layers only. `as_tf_keras` rebuilds what they cannot take:

- a Keras 3 Functional or Sequential model: every layer becomes its tf_keras twin (the config
  translated, the weights copied), wired in the same graph. Nested models are flattened, shared
  layers stay shared.
- a tf_keras model with TFOpLambda layers (what `x + 3.0`, `x * y` or `tf.nn.relu6(x)` on
  KerasTensors make; tf_keras' own MobileNetV3 is built so): each op becomes a proper layer.

Keras 3 operations written on tensors (`x + 3.0`, `keras.ops.relu6(x)`) are mapped like the
TFOpLambda layers. Both kinds of op map as follows:

| op | becomes |
| --- | --- |
| tensor + - * / scalar, -tensor | Rescaling(scale, offset) |
| tensor + - * tensor | Add / Subtract / Multiply |
| relu, relu6 | ReLU(), ReLU(6.0) |
| sigmoid, tanh, silu | Activation("sigmoid" / "tanh" / "swish") |
| relu6(x + 3) * (1/6) (also / 6) | tfedge's HardSigmoid |
| x * hard_sigmoid(x), x * relu6(x + 3) / 6 | tfedge's HardSwish |
| Keras 3 hard_sigmoid, hard_silu ops | HardSigmoid, HardSwish |

Activations are mapped by their math, not by their name: Keras 3's "hard_sigmoid" is
relu6(x + 3) / 6 but tf_keras' is clip(0.2 x + 0.5), so it becomes tfedge's `HardSigmoid`;
"hard_silu" / "hard_swish" (which tf_keras lacks) become `HardSwish`, and "relu6" and
"leaky_relu" become ReLU / LeakyReLU layers. In a layer's `activation=` argument such an
activation is split off into a layer of its own, named "<layer>_<activation>". The names
in `ACTIVATIONS` are the ones whose definitions were checked equal; any other is refused.

What is refused, with an error that names the layer: Keras 3 layers with no tf_keras twin (custom
layers, subclasses of built-in layers, preprocessing and attention layers, ...: `KERAS3_LAYERS`
lists the supported ones), config values tf_keras cannot express (LoRA, quantized dtype
policies, rms_scaling, ...), ops other than the ones above (slicing, reductions, constants that
are not scalars, ...), and subclassed models (TypeError: use the Functional API).
"""

import dataclasses
import inspect
import sys
from typing import Any, Callable, Optional

import numpy as np

from tfedge._keras import keras, layers, tf
from tfedge.models import _layers

# Keras 3 activation name -> its tf_keras equivalent: a tf_keras activation name (for
# `Activation` and `activation=`) or a layer kind from _ACTIVATION_LAYERS. Each one was checked:
# same definition, same defaults (gelu: approximate=False in both; elu: alpha=1.0 in both;
# leaky_relu: negative_slope 0.2 in Keras 3 = LeakyReLU(alpha=0.2)).
ACTIVATIONS = {
    "linear": "linear",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "softplus": "softplus",
    "softsign": "softsign",
    "elu": "elu",
    "selu": "selu",
    "exponential": "exponential",
    "gelu": "gelu",
    "mish": "mish",
    "silu": "swish",
    "swish": "swish",
    "relu6": "relu6_layer",
    "leaky_relu": "leaky_relu_layer",
    "hard_sigmoid": "hard_sigmoid_layer",
    "hard_silu": "hard_swish_layer",
    "hard_swish": "hard_swish_layer",
}

# Layer kinds for the activations tf_keras has no (equal) name for: (pattern kind, factory).
_ACTIVATION_LAYERS = {
    "relu6_layer": ("relu6", lambda name: layers.ReLU(6.0, name=name)),
    "leaky_relu_layer": ("layer", lambda name: layers.LeakyReLU(alpha=0.2, name=name)),
    "hard_sigmoid_layer": ("hard_sigmoid", lambda name: _layers.HardSigmoid(name=name)),
    "hard_swish_layer": ("hard_swish", lambda name: _layers.HardSwish(name=name)),
}

# Keras 3 layer classes with a tf_keras twin of the same name -> config keys the twin lacks,
# with the value that means "off" (such a key is dropped; any other value is refused).
KERAS3_LAYERS = {
    **{name: {} for name in (
        "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
        "SeparableConv2D", "Conv1DTranspose", "Conv2DTranspose", "BatchNormalization",
        "Activation", "ReLU", "PReLU", "ELU", "Softmax", "Add", "Subtract", "Multiply",
        "Average", "Maximum", "Minimum", "Concatenate", "ZeroPadding2D", "Cropping1D",
        "Cropping2D", "UpSampling1D", "UpSampling2D", "MaxPooling1D", "MaxPooling2D",
        "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D",
        "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten",
        "Reshape", "Permute", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
        "GaussianNoise", "GaussianDropout", "Rescaling", "Identity")},
    "Dense": {"quantization_config": None, "lora_rank": None, "lora_alpha": None},
    "LayerNormalization": {"rms_scaling": False},
    "LeakyReLU": {},  # negative_slope is tf_keras' alpha, see _RENAMED
    "ZeroPadding1D": {"data_format": "channels_last"},
}
# Config keys both have under different names: Keras 3 class -> {Keras 3 key: tf_keras key}.
_RENAMED = {"LeakyReLU": {"negative_slope": "alpha"}}
# Every Keras 3 layer's config may say these; they mean nothing to the rebuilt layer.
_ANY_LAYER_NEUTRAL = {"quantization_config": None, "lora_rank": None, "lora_alpha": None}

_POLICIES = ("float32", "float16", "bfloat16", "float64", "mixed_float16", "mixed_bfloat16")
_BASE_LAYER_KWARGS = {"input_dim", "input_shape", "batch_input_shape", "batch_size", "weights",
                      "activity_regularizer", "autocast"}
_HARD_SIGMOID_SCALE = 1.0 / 6.0

_FIX = "rebuild it with tf_keras layers or `tfedge.models`"


def as_tf_keras(model):
    """Returns a tf_keras Functional model that tfedge's stages can take, with `model`'s outputs.

    Args:
      model: a Keras 3 Functional or Sequential model (rebuilt as tf_keras layer by layer,
        weights copied), or a tf_keras model (rebuilt only if it has TFOpLambda /
        SlicingOpLambda layers; else returned as it is, the same object).

    The rebuilt model gives the same outputs as `model` up to float rounding (scalar divisions
    become multiplications by the reciprocal); `model` is left as it was. Layer names are kept;
    layers made from ops get the op's name, fused patterns fresh ones ("hard_swish_2").

    Raises:
      TypeError: `model` is not a Keras model, or is a subclassed one.
      ValueError: a layer, op or config value has no tf_keras equivalent (the message names it).
    """
    keras3 = _keras3_module(model)
    if keras3 is not None:
        graph = _Graph(source="Keras 3")
        _read_keras3_model(model, keras3, graph)
        return _build(_fuse(graph), model.name)
    if not isinstance(model, keras.Model):
        kind = f"{type(model).__module__}.{type(model).__qualname__}"
        raise TypeError(f"as_tf_keras needs a Keras model (tf_keras or Keras 3, Functional or "
                        f"Sequential). Received: {kind}")
    if not getattr(model, "_is_graph_network", False):
        if isinstance(model, keras.Sequential):
            return model  # not built yet: nothing to rewrite (the stages say what they need)
        raise TypeError(f"as_tf_keras cannot read the graph of {model.name}, a subclassed tf_keras "
                        "model. Rebuild it with the Functional API.")
    if not _has_op_layers(model):
        return model
    graph = _Graph(source="tf_keras")
    _read_tf_keras_model(model, graph)
    return _build(_fuse(graph), model.name)


# --- the graph both readers produce --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Ref:
    """Stands for a tensor (by key) inside a step's call arguments."""
    key: tuple


@dataclasses.dataclass
class _Step:
    """One tf_keras layer call of the rebuilt model."""
    name: Optional[str]          # None: pick a fresh one from `base_name`
    kind: str                    # pattern kind: layer, affine, relu6, multiply, hard_sigmoid, ...
    inputs: tuple                # tensor keys the call reads
    outputs: tuple               # tensor keys it writes (flattened outputs)
    make: Callable[[str], Any]   # name -> a new tf_keras layer
    args: tuple = ()             # call arguments, _Ref for tensors
    kwargs: dict = dataclasses.field(default_factory=dict)
    share: Any = None            # hashable; steps with the same `share` call the same layer
    copy_weights: Optional[Callable] = None  # new layer -> None
    params: tuple = ()           # affine: (scale, offset)
    soft_name: bool = False      # a made-up name: may be changed to stay unique
    base_name: str = ""


class _Graph:
    def __init__(self, source):
        self.source = source
        self.steps = []
        self.inputs = []         # (key, keras.Input kwargs)
        self.input_struct = None
        self.output_struct = None
        self.alias = {}
        self.uses = {}           # step.share -> number of steps using it

    def resolve(self, key):
        while key in self.alias:
            key = self.alias[key]
        return key

    def add(self, step):
        step.inputs = tuple(self.resolve(k) for k in step.inputs)
        step.args, step.kwargs = tf.nest.map_structure(
            lambda v: _Ref(self.resolve(v.key)) if isinstance(v, _Ref) else v,
            (step.args, step.kwargs))
        if step.share is None:
            step.share = ("step", len(self.steps))
        self.uses[step.share] = self.uses.get(step.share, 0) + 1
        self.steps.append(step)


def _is_symbolic(value):
    return hasattr(value, "_keras_history")


def _refs(structure, scope):
    """(structure with tensors replaced by _Ref, the keys in order)."""
    keys = []

    def swap(value):
        if _is_symbolic(value):
            keys.append((scope, id(value)))
            return _Ref(keys[-1])
        return value

    return tf.nest.map_structure(swap, structure), tuple(keys)


def _scalar(value):
    """`value` as a float if it is a number (Python, NumPy or a 0-d tensor), else None."""
    if isinstance(value, bool) or _is_symbolic(value):
        return None
    if isinstance(value, (int, float, np.number)):
        return float(value)
    if isinstance(value, (np.ndarray, tf.Tensor)) and tuple(value.shape) == () and \
            np.issubdtype(np.asarray(value).dtype, np.number):
        return float(np.asarray(value))
    return None


# --- Keras 3 -------------------------------------------------------------------------------------


def _keras3_module(model):
    """The Keras 3 package if `model` is a Keras 3 object, else None (Keras 3 is not imported)."""
    module = sys.modules.get("keras")
    version = getattr(module, "__version__", "0")
    if module is None or int(version.split(".")[0]) < 3:
        return None
    if isinstance(model, module.Model):
        return module
    if isinstance(model, (module.layers.Layer, module.KerasTensor)):
        raise TypeError(f"as_tf_keras needs a Keras model. Received: a Keras 3 "
                        f"{type(model).__name__} ({getattr(model, 'name', '')!r}); wrap it in a "
                        "Functional model first")
    return None


def _keras3_functional(model, keras3):
    if isinstance(model, keras3.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ValueError(f"Keras 3 Sequential model {model.name!r} has no input shape yet, so "
                             "it has no graph to rebuild. Start it with `keras.Input(shape)` or "
                             "call `model.build((None, ...))` first.")
        return functional
    if isinstance(model, keras3.src.models.Functional):
        return model
    raise TypeError(f"as_tf_keras cannot read {model.name!r}, a subclassed Keras 3 model "
                    f"({type(model).__qualname__}): its graph is Python code. Rebuild it with the "
                    "Functional API (keras.Input ... keras.Model(inputs, outputs)).")


def _read_keras3_model(model, keras3, graph):
    functional = _keras3_functional(model, keras3)
    scope = ()
    for tensor in functional.inputs:
        input_layer = tensor._keras_history[0]
        _add_input(graph, (scope, id(tensor)), input_layer, "batch_shape")
    graph.input_struct = _refs(functional._inputs_struct, scope)[0]
    _walk_keras3(functional, keras3, graph, scope)
    graph.output_struct = _refs(functional._outputs_struct, scope)[0]


def _add_input(graph, key, input_layer, shape_key):
    """Records a model input as the keras.Input arguments that recreate it."""
    config = input_layer.get_config()
    if config.get("optional"):
        raise ValueError(f"input {input_layer.name!r} is optional; as_tf_keras rebuilds required "
                         "inputs only")
    batch_shape = tuple(config[shape_key])
    graph.inputs.append((key, dict(shape=batch_shape[1:], batch_size=batch_shape[0],
                                   name=input_layer.name, dtype=config.get("dtype"),
                                   sparse=config.get("sparse"), ragged=config.get("ragged"))))


def _walk_keras3(functional, keras3, graph, scope):
    for depth in sorted(functional._nodes_by_depth, reverse=True):
        for node in functional._nodes_by_depth[depth]:
            if node.is_input:
                continue
            operation = node.operation
            if isinstance(operation, keras3.Model):
                _inline(node, _keras3_functional(operation, keras3), node.arguments.args,
                        node.outputs, graph, scope,
                        lambda inner, inner_scope: _walk_keras3(inner, keras3, graph, inner_scope))
            elif isinstance(operation, keras3.layers.Layer):
                for step in _keras3_layer_steps(operation, node, keras3, scope):
                    graph.add(step)
            else:
                graph.add(_op_step(operation, _keras3_op_name(operation), node.arguments.args,
                                   node.arguments.kwargs, node.outputs, scope, graph.source))


def _inline(node, inner, call_args, call_outputs, graph, scope, walk):
    """Flattens a nested model: its layers join the outer graph, its tensors get their own scope."""
    inner_scope = scope + (id(node),)
    _, outer_inputs = _refs(call_args, scope)
    inner_inputs = tf.nest.flatten(inner.inputs)
    if len(outer_inputs) != len(inner_inputs):
        raise ValueError(f"nested model {inner.name!r} is called with {len(outer_inputs)} tensors "
                         f"but has {len(inner_inputs)} inputs; call it with one tensor per input")
    for tensor, outer in zip(inner_inputs, outer_inputs):
        graph.alias[(inner_scope, id(tensor))] = graph.resolve(outer)
    walk(inner, inner_scope)
    for outer, tensor in zip(tf.nest.flatten(call_outputs), tf.nest.flatten(inner.outputs)):
        graph.alias[(scope, id(outer))] = graph.resolve((inner_scope, id(tensor)))


def _keras3_layer_steps(layer, node, keras3, scope):
    """The step(s) for one call of a Keras 3 layer: the twin, plus a split-off activation."""
    class_name = type(layer).__name__
    if class_name not in KERAS3_LAYERS or type(layer) is not getattr(keras3.layers, class_name,
                                                                     None):
        supported = "" if class_name in KERAS3_LAYERS else " (a class with no tf_keras twin)"
        raise ValueError(
            f"Keras 3 layer {layer.name!r} ({type(layer).__module__}.{type(layer).__qualname__})"
            f"{supported} cannot be rebuilt as tf_keras; {_FIX}. Supported Keras 3 layers: "
            f"{', '.join(sorted(KERAS3_LAYERS))}.")
    kwargs = {k: v for k, v in node.arguments.kwargs.items() if k != "training" and v is not None}
    if kwargs:
        raise ValueError(f"Keras 3 layer {layer.name!r} is called with {sorted(kwargs)}, which "
                         f"as_tf_keras does not carry over; {_FIX}")
    args, keys = _refs(node.arguments.args, scope)
    outputs = tuple((scope, id(t)) for t in node.outputs)
    config = _keras3_config(layer, class_name)
    post = None
    if class_name == "Activation":
        target = _activation(config["activation"], layer)
        if target in _ACTIVATION_LAYERS:
            kind, make = _ACTIVATION_LAYERS[target]
            return [_Step(layer.name, kind, keys, outputs, make, args,
                          share=("layer", id(layer)))]
        config["activation"] = target
    elif "activation" in config:
        activation = config["activation"]
        target = _activation(activation, layer)
        if target in _ACTIVATION_LAYERS:
            post, target = target, "linear"
        config["activation"] = target
    twin = getattr(keras.layers, class_name)
    _check_accepted(twin, config, layer)

    def make(name, twin=twin, config=config):
        try:
            return twin.from_config({**config, "name": name})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"tf_keras {class_name} refuses the config of Keras 3 layer "
                             f"{layer.name!r}: {exc}; {_FIX}") from exc

    copy = (lambda new: _copy_keras3_weights(layer, new)) if layer.weights else None
    step = _Step(layer.name, _keras3_kind(class_name, config, keys), keys, outputs, make, args,
                 share=("layer", id(layer)), copy_weights=copy)
    if post is None:
        return [step]
    kind, make_post = _ACTIVATION_LAYERS[post]
    inner = tuple((scope, id(t), "pre_activation") for t in node.outputs)
    step.outputs = inner
    return [step, _Step(None, kind, inner, outputs, make_post, (_Ref(inner[0]),),
                        share=("activation", id(layer)), soft_name=True,
                        base_name=f"{layer.name}_{activation}")]


def _keras3_kind(class_name, config, keys):
    if class_name == "ReLU" and _is_relu6(config):
        return "relu6"
    if class_name == "Multiply" and len(keys) == 2:
        return "multiply"
    return "layer"


def _is_relu6(config):
    return config.get("max_value") is not None and float(config["max_value"]) == 6.0 and \
        float(config.get("negative_slope") or 0.0) == 0.0 and \
        float(config.get("threshold") or 0.0) == 0.0


def _keras3_config(layer, class_name):
    """The Keras 3 config in tf_keras' terms (serialized objects translated, keys renamed)."""
    config = {}
    for key, value in layer.get_config().items():
        key = _RENAMED.get(class_name, {}).get(key, key)
        if key == "dtype":
            value = _policy_name(value, layer)
        elif key.endswith("_initializer"):
            value = _translate_object(value, keras.initializers, "initializer", layer, key)
        elif key.endswith("_regularizer"):
            value = _translate_object(value, keras.regularizers, "regularizer", layer, key)
        elif key.endswith("_constraint"):
            value = _translate_object(value, keras.constraints, "constraint", layer, key)
        config[key] = value
    return config


def _check_accepted(twin, config, layer):
    """Drops the Keras-3-only keys that are "off"; refuses those that are not."""
    accepted = set(_BASE_LAYER_KWARGS)
    for cls in twin.__mro__:
        if "__init__" in vars(cls):
            accepted.update(inspect.signature(cls.__init__).parameters)
    neutral = {**_ANY_LAYER_NEUTRAL, **KERAS3_LAYERS[type(layer).__name__]}
    for key in [k for k in config if k not in accepted]:
        if key in neutral and config[key] == neutral[key]:
            del config[key]
            continue
        raise ValueError(f"Keras 3 layer {layer.name!r} ({type(layer).__name__}) sets "
                         f"{key}={config[key]!r}, which tf_keras' {twin.__name__} cannot express; "
                         + (f"set it to {neutral[key]!r} or " if key in neutral else "")
                         + _FIX)


def _policy_name(value, layer):
    name = value
    if isinstance(value, dict):
        name = value.get("config", {}).get("name") if value.get("class_name") in (
            "DTypePolicy", "FloatDTypePolicy") else None
    if name is None:
        return None
    if name not in _POLICIES:
        raise ValueError(f"{layer.name!r} has dtype policy {value!r}; tf_keras knows "
                         f"{', '.join(_POLICIES)}. Use a float policy and let tfedge quantize.")
    return name


def _translate_object(value, module, what, layer, key):
    """A Keras 3 serialized initializer/regularizer/constraint as the tf_keras object."""
    if value is None or isinstance(value, str):
        return value
    class_name = value.get("class_name") if isinstance(value, dict) else None
    cls = getattr(module, class_name, None) if class_name and not value.get(
        "registered_name") else None
    if cls is not None:
        params = inspect.signature(cls.__init__).parameters
        config = {k: v for k, v in value.get("config", {}).items()
                  if k in params or v is not None}
        if set(config) <= set(params):
            return cls(**config)
    raise ValueError(f"Keras 3 layer {layer.name!r} has {key}={value!r}, a {what} tf_keras does "
                     f"not have; use a built-in one or {_FIX}")


def _activation(value, layer):
    """The tf_keras name (or _ACTIVATION_LAYERS kind) for a Keras 3 activation config value."""
    target = ACTIVATIONS.get(value if isinstance(value, str) else "") if value is not None \
        else "linear"
    if target is None:
        raise ValueError(f"Keras 3 layer {layer.name!r} ({type(layer).__name__}) uses activation "
                         f"{value!r}, which has no equal tf_keras definition; as_tf_keras maps "
                         f"{', '.join(sorted(ACTIVATIONS))}. Use one of those or {_FIX}.")
    return target


def _copy_keras3_weights(source, layer):
    """Copies the weights by name (kernel, gamma, ...), or in order where names repeat."""
    values = [(v.name.split("/")[-1], np.asarray(v.numpy())) for v in source.weights]
    targets = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
    names = [name for name, _ in values]
    if len(values) != len(targets):
        raise ValueError(f"Keras 3 layer {source.name!r} has {len(values)} weights ({names}) but "
                         f"its tf_keras twin has {len(targets)} ({targets}); {_FIX}")
    if sorted(names) == sorted(targets) and len(set(names)) == len(names):
        by_name = dict(values)
        ordered = [by_name[name] for name in targets]
    else:
        ordered = [value for _, value in values]
    for weight, value in zip(layer.weights, ordered):
        if tuple(weight.shape) != value.shape:
            raise ValueError(f"weight {weight.name} of {source.name!r}: tf_keras shape "
                             f"{tuple(weight.shape)}, Keras 3 shape {value.shape}; {_FIX}")
    layer.set_weights(ordered)


# Keras 3 op classes (keras.src.ops / keras.src.activations) -> the op names _op_step knows.
_KERAS3_OPS = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply",
               "TrueDivide": "divide", "Divide": "divide", "Negative": "negative", "Relu": "relu",
               "Relu6": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh", "Silu": "silu",
               "HardSigmoid": "hard_sigmoid", "HardSilu": "hard_silu"}


def _keras3_op_name(operation):
    name = _KERAS3_OPS.get(type(operation).__name__)
    if type(operation).__name__ == "ReLU" and hasattr(operation, "max_value"):
        config = {"max_value": operation.max_value, "negative_slope": operation.negative_slope,
                  "threshold": operation.threshold}
        if config["max_value"] is None and not config["negative_slope"] and \
                not config["threshold"]:
            return "relu"
        return "relu6" if _is_relu6(config) else None
    return name


# --- ops (TFOpLambda layers and Keras 3 operations) ----------------------------------------------

# TFOpLambda function names -> the op names _op_step knows.
_TF_OPS = {"__operators__.add": "add", "math.add": "add", "math.subtract": "subtract",
           "math.multiply": "multiply", "math.truediv": "divide", "math.divide": "divide",
           "math.negative": "negative", "nn.relu": "relu", "nn.relu6": "relu6",
           "math.sigmoid": "sigmoid", "nn.sigmoid": "sigmoid", "math.tanh": "tanh",
           "nn.tanh": "tanh", "nn.silu": "silu", "nn.swish": "silu"}

_UNARY = {
    "relu": ("layer", lambda name: layers.ReLU(name=name)),
    "relu6": ("relu6", lambda name: layers.ReLU(6.0, name=name)),
    "sigmoid": ("layer", lambda name: layers.Activation("sigmoid", name=name)),
    "tanh": ("layer", lambda name: layers.Activation("tanh", name=name)),
    "silu": ("layer", lambda name: layers.Activation("swish", name=name)),
    "hard_sigmoid": ("hard_sigmoid", lambda name: _layers.HardSigmoid(name=name)),
    "hard_silu": ("hard_swish", lambda name: _layers.HardSwish(name=name)),
}
_MERGE = {"add": layers.Add, "subtract": layers.Subtract, "multiply": layers.Multiply}


def _op_step(op, op_name, args, kwargs, outputs, scope, source):
    """The step for one op: a tensor-and-scalar op, a two-tensor op or a unary op."""
    name = getattr(op, "name", str(op))
    described = f"{source} op {name!r} ({_describe_op(op)})"
    extra = sorted(k for k, v in kwargs.items() if k not in ("x", "y", "features", "name"))
    operands = list(args) + [kwargs[k] for k in ("x", "features", "y") if k in kwargs]
    tensors = [v for v in operands if _is_symbolic(v)]
    outputs = tuple((scope, id(t)) for t in tf.nest.flatten(outputs))
    if op_name is None or extra or not tensors or len(outputs) != 1:
        raise ValueError(f"{described} has no tf_keras layer as_tf_keras can map it to (it maps "
                         "+ - * / with a scalar or a second tensor, relu, relu6, sigmoid, tanh, "
                         f"silu, hard sigmoid and hard swish); {_FIX}")
    keys = tuple((scope, id(t)) for t in tensors)
    common = dict(outputs=outputs, share=("op", id(op)), soft_name=True, base_name=name)
    if op_name in _UNARY or op_name == "negative":
        if len(operands) != 1:
            raise ValueError(f"{described} takes {len(operands)} arguments; expected one tensor")
        if op_name == "negative":
            return _affine_step(-1.0, 0.0, keys, **common)
        kind, make = _UNARY[op_name]
        return _Step(name, kind, keys, make=make, args=(_Ref(keys[0]),), **common)
    if len(operands) != 2:
        raise ValueError(f"{described} takes {len(operands)} arguments; expected two")
    if len(tensors) == 2:
        if op_name not in _MERGE:
            raise ValueError(f"{described} divides two tensors, which no tf_keras layer does; "
                             f"{_FIX}")
        merge = _MERGE[op_name]
        return _Step(name, op_name if op_name == "multiply" else "layer", keys,
                     make=lambda new_name, merge=merge: merge(name=new_name),
                     args=([_Ref(k) for k in keys],), **common)
    tensor_first = _is_symbolic(operands[0])
    constant = _scalar(operands[1] if tensor_first else operands[0])
    if constant is None:
        raise ValueError(f"{described} combines a tensor with a constant that is not a scalar "
                         f"({operands[1] if tensor_first else operands[0]!r}); only scalars are "
                         f"mapped (to a Rescaling layer); {_FIX}")
    if op_name == "add":
        scale, offset = 1.0, constant
    elif op_name == "multiply":
        scale, offset = constant, 0.0
    elif op_name == "subtract":
        scale, offset = (1.0, -constant) if tensor_first else (-1.0, constant)
    elif tensor_first and constant != 0.0:  # divide
        scale, offset = 1.0 / constant, 0.0
    else:
        raise ValueError(f"{described} divides {'by zero' if tensor_first else 'by a tensor'}, "
                         f"which no tf_keras layer does; {_FIX}")
    return _affine_step(scale, offset, keys, **common)


def _affine_step(scale, offset, keys, **common):
    return _Step(common["base_name"], "affine", keys,
                 make=lambda name: layers.Rescaling(scale, offset, name=name),
                 args=(_Ref(keys[0]),), params=(scale, offset), **common)


def _describe_op(op):
    if isinstance(op, keras.layers.Layer):
        return f"{type(op).__name__} of {op.get_config().get('function')}"
    return f"{type(op).__module__}.{type(op).__qualname__}"


# --- tf_keras ------------------------------------------------------------------------------------


def _is_op_layer(layer):
    return type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda") and \
        type(layer).__module__.startswith("tf_keras.")


def _has_op_layers(model):
    return any(_has_op_layers(layer) if isinstance(layer, keras.Model) else _is_op_layer(layer)
               for layer in model.layers)


def _read_tf_keras_model(model, graph):
    scope = ()
    for tensor in model.inputs:
        _add_input(graph, (scope, id(tensor)), tensor._keras_history.layer, "batch_input_shape")
    graph.input_struct = _refs(model._nested_inputs, scope)[0]
    _walk_tf_keras(model, graph, scope)
    graph.output_struct = _refs(model._nested_outputs, scope)[0]


def _walk_tf_keras(model, graph, scope):
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            layer = node.layer
            if isinstance(layer, keras.Model):
                if not getattr(layer, "_is_graph_network", False):
                    raise TypeError(f"{model.name} contains {layer.name!r}, a subclassed model "
                                    "whose graph cannot be read; rebuild it with the Functional "
                                    "API")
                _inline(node, layer, node.call_args, node.outputs, graph, scope,
                        lambda inner, inner_scope: _walk_tf_keras(inner, graph, inner_scope))
            elif _is_op_layer(layer):
                symbol = layer.get_config().get("function")
                op_name = _TF_OPS.get(symbol) if type(layer).__name__ == "TFOpLambda" else None
                graph.add(_op_step(layer, op_name, node.call_args, node.call_kwargs,
                                   node.outputs, scope, graph.source))
            else:
                graph.add(_tf_keras_step(layer, node, scope))


def _tf_keras_step(layer, node, scope):
    """A copy of a tf_keras layer (same config and weights), called like the original."""
    (args, kwargs), keys = _refs((node.call_args, node.call_kwargs), scope)
    config = layer.get_config()
    kind = "layer"
    if type(layer) is layers.ReLU and _is_relu6(config):
        kind = "relu6"
    elif type(layer) is layers.Multiply and len(keys) == 2:
        kind = "multiply"
    elif type(layer) is _layers.HardSigmoid:
        kind = "hard_sigmoid"

    def make(name):
        return type(layer).from_config({**config, "name": name})

    copy = (lambda new: new.set_weights(layer.get_weights())) if layer.weights else None
    return _Step(layer.name, kind, keys, tuple((scope, id(t)) for t in tf.nest.flatten(
        node.outputs)), make, args, kwargs, share=("layer", id(layer)), copy_weights=copy)


# --- pattern fusion and building -----------------------------------------------------------------


def _fuse(graph):
    """Replaces the hard-sigmoid and hard-swish patterns by tfedge's layers."""
    output_keys = {graph.resolve(r.key) for r in tf.nest.flatten(graph.output_struct)}
    steps = graph.steps

    def single_use(step):
        return graph.uses[step.share] == 1

    for _ in range(2):  # the hard-swish patterns need the hard sigmoids fused first
        producer = {k: s for s in steps for k in s.outputs}
        readers = {}
        for step in steps:
            for key in step.inputs:
                readers[key] = readers.get(key, 0) + 1

        def private(step):
            """`step` is used once and its output only feeds the next step of the pattern."""
            return step is not None and single_use(step) and len(step.outputs) == 1 and \
                readers.get(step.outputs[0]) == 1 and step.outputs[0] not in output_keys

        def source(step, index=0):
            return producer.get(step.inputs[index]) if len(step.inputs) > index else None

        removed, replaced = set(), {}
        for step in steps:
            if id(step) in removed or not single_use(step):
                continue
            fused = _match_hard_sigmoid(step, source, private) or \
                _match_hard_swish(step, source, private)
            if fused and not any(id(s) in removed or id(s) in replaced for s in fused[1]):
                new, consumed = fused
                removed.update(id(s) for s in consumed)
                replaced[id(step)] = new
        steps = [replaced.get(id(s), s) for s in steps if id(s) not in removed]
        for step in replaced.values():
            graph.uses[step.share] = 1
    graph.steps = steps
    return graph


def _is_affine(step, scale, offset):
    return step is not None and step.kind == "affine" and \
        np.isclose(step.params[0], scale, rtol=1e-6, atol=0) and \
        np.isclose(step.params[1], offset, rtol=0, atol=1e-7)


def _match_hard_sigmoid(last, source, private):
    """relu6(x + 3) * (1/6) -> HardSigmoid(x)."""
    if not _is_affine(last, _HARD_SIGMOID_SCALE, 0.0):
        return None
    relu6 = source(last)
    if not (private(relu6) and relu6.kind == "relu6"):
        return None
    plus3 = source(relu6)
    if not (private(plus3) and _is_affine(plus3, 1.0, 3.0)):
        return None
    new = _fused(last, "hard_sigmoid", plus3.inputs, lambda name: _layers.HardSigmoid(name=name))
    return new, (relu6, plus3)


def _match_hard_swish(last, source, private):
    """x * hard_sigmoid(x), or (x * relu6(x + 3)) * (1/6) -> HardSwish(x)."""
    if last.kind == "multiply" and len(last.inputs) == 2:
        for gate_index in (0, 1):
            gate = source(last, gate_index)
            x = last.inputs[1 - gate_index]
            if private(gate) and gate.kind == "hard_sigmoid" and gate.inputs == (x,):
                return _fused(last, "hard_swish", (x,),
                              lambda name: _layers.HardSwish(name=name)), (gate,)
    if _is_affine(last, _HARD_SIGMOID_SCALE, 0.0):
        product = source(last)
        if not (private(product) and product.kind == "multiply" and len(product.inputs) == 2):
            return None
        for gate_index in (0, 1):
            relu6 = source(product, gate_index)
            x = product.inputs[1 - gate_index]
            if private(relu6) and relu6.kind == "relu6":
                plus3 = source(relu6)
                if private(plus3) and _is_affine(plus3, 1.0, 3.0) and plus3.inputs == (x,):
                    return _fused(last, "hard_swish", (x,),
                                  lambda name: _layers.HardSwish(name=name)), \
                        (product, relu6, plus3)
    return None


def _fused(last, kind, inputs, make):
    """The step replacing a pattern ending in `last`, named after the pattern ("hard_swish_3")."""
    return _Step(None, kind, tuple(inputs), last.outputs, make, (_Ref(inputs[0]),),
                 share=("fused", last.share), soft_name=True, base_name=kind)


def _assign_names(graph):
    """Keeps every layer's own name; picks unique ones for the layers made from ops."""
    owners = {}
    for step in graph.steps:
        if not step.soft_name:
            owner = owners.setdefault(step.name, step.share)
            if owner != step.share:
                raise ValueError(f"two different layers are named {step.name!r} (nested models "
                                 "whose layer names collide?); rename one of them")
    taken = set(owners) | {spec["name"] for _, spec in graph.inputs}
    names = {}
    for step in graph.steps:
        if step.soft_name:
            if step.share not in names:
                base = (step.name or step.base_name).replace("/", "_")
                name, index = base, 0
                while name in taken:
                    index += 1
                    name = f"{base}_{index}"
                taken.add(name)
                names[step.share] = name
            step.name = names[step.share]


def _build(graph, name):
    _assign_names(graph)
    tensors = {}
    for key, spec in graph.inputs:
        tensors[key] = keras.Input(**spec)
    built = {}

    def lookup(value):
        return tensors[graph.resolve(value.key)] if isinstance(value, _Ref) else value

    for step in graph.steps:
        layer = built.get(step.share)
        first = layer is None
        if first:
            layer = built[step.share] = step.make(step.name)
        args, kwargs = tf.nest.map_structure(lookup, (step.args, step.kwargs))
        outputs = tf.nest.flatten(layer(*args, **kwargs))
        if len(outputs) != len(step.outputs):
            raise ValueError(f"{step.name!r} gives {len(outputs)} outputs in tf_keras and "
                             f"{len(step.outputs)} in the original; {_FIX}")
        tensors.update(zip(step.outputs, outputs))
        if first and step.copy_weights is not None:
            step.copy_weights(layer)
    inputs = tf.nest.map_structure(lookup, graph.input_struct)
    outputs = tf.nest.map_structure(lookup, graph.output_struct)
    return keras.Model(inputs, outputs, name=name)


__all__ = ["ACTIVATIONS", "KERAS3_LAYERS", "as_tf_keras"]
