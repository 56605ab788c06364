"""Parameters and multiply-accumulates (MACs) per layer of a Keras model.

    p = tfedge.profile(model)
    p.total_macs, p.total_params
    print(p.table())

MACs count what the papers count: convolutions (including depthwise and grouped) and
fully-connected layers, one multiply-add per kernel tap per output element. Element-wise ops
(BatchNorm, activations, adds, the squeeze-excite scale) and pooling are not counted.

`peak_activation_bytes` is the largest total of int8 activations (one byte per element, batch 1)
alive at once when the layers run in order: a tensor lives from the layer that makes it to the
last layer that reads it. Layers that TFLite folds into the op before them (BatchNorm, ReLU,
Dropout) share their input's buffer. It is a lower bound for any tensor arena.
"""

import dataclasses
import math

from tfedge._keras import layers


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int


@dataclasses.dataclass(frozen=True)
class Profile:
    layers: tuple
    total_params: int
    total_macs: int
    peak_activation_bytes: int

    def table(self):
        rows = [("layer", "type", "output", "params", "MACs")]
        rows += [(l.name, l.kind, "x".join(str(d) for d in l.output_shape), f"{l.params:,}",
                  f"{l.macs:,}") for l in self.layers if l.params or l.macs]
        rows.append(("total", "", "", f"{self.total_params:,}", f"{self.total_macs:,}"))
        rows.append(("peak int8 activations (bytes)", "", "", "",
                     f"{self.peak_activation_bytes:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        return "\n".join("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths))) for r in rows)

    def as_dict(self):
        return {"total_params": self.total_params, "total_macs": self.total_macs,
                "peak_activation_bytes": self.peak_activation_bytes,
                "layers": [dataclasses.asdict(l) for l in self.layers]}


def _shape(tensor_shape):
    return tuple(int(d) for d in tensor_shape[1:])  # batch dropped


_TRANSPOSED = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)


def layer_macs(layer):
    """MACs of one layer for one image (batch 1)."""
    if isinstance(layer, layers.DepthwiseConv2D):
        out = _shape(layer.output_shape)
        kh, kw = layer.kernel_size
        return math.prod(out) * kh * kw
    if isinstance(layer, _SEPARABLE):  # depthwise, then pointwise
        out = _shape(layer.output_shape)
        in_channels = int(layer.input_shape[-1])
        expanded = in_channels * layer.depth_multiplier
        positions = math.prod(out[:-1])
        return positions * expanded * (math.prod(layer.kernel_size) + out[-1])
    if isinstance(layer, _TRANSPOSED):  # every input element scatters one kernel per filter
        inputs = _shape(layer.input_shape)
        return math.prod(inputs) * math.prod(layer.kernel_size) * layer.filters
    if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D)):  # grouped too
        out = _shape(layer.output_shape)
        in_channels = int(layer.input_shape[-1])
        return math.prod(out) * math.prod(layer.kernel_size) * in_channels // layer.groups
    if isinstance(layer, layers.Dense):
        in_features = int(layer.input_shape[-1])
        positions = math.prod(_shape(layer.output_shape)[:-1]) if len(layer.output_shape) > 2 \
            else 1
        return positions * in_features * layer.units
    return 0


_IN_PLACE = (layers.BatchNormalization, layers.ReLU, layers.Dropout)


def _flat(tensors):
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]


def peak_activation_bytes(model):
    """Largest sum of int8 activation bytes alive at once (see the module docstring)."""
    steps = [l for l in model.layers if not isinstance(l, layers.InputLayer)]
    buffer_of, size, born, last = {}, {}, {}, {}
    for tensor in _flat(model.inputs):
        buffer_of[id(tensor)] = id(tensor)
        size[id(tensor)] = math.prod(_shape(tensor.shape))
        born[id(tensor)] = last[id(tensor)] = -1
    for step, layer in enumerate(steps):
        inputs, outputs = _flat(layer.input), _flat(layer.output)
        for tensor in inputs:
            last[buffer_of[id(tensor)]] = step
        if isinstance(layer, _IN_PLACE) and len(inputs) == len(outputs) == 1:
            buffer_of[id(outputs[0])] = buffer_of[id(inputs[0])]
            continue
        for tensor in outputs:
            buffer_of[id(tensor)] = id(tensor)
            size[id(tensor)] = math.prod(_shape(tensor.shape))
            born[id(tensor)] = last[id(tensor)] = step
    for tensor in _flat(model.outputs):
        last[buffer_of[id(tensor)]] = len(steps)
    return max(sum(size[b] for b in size if born[b] <= step <= last[b])
               for step in range(len(steps)))


def profile(model):
    """Returns a `Profile`: params and MACs per layer and in total, peak int8 activations."""
    rows = []
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        shape = layer.output_shape
        out = _shape(shape[0]) if isinstance(shape, list) else _shape(shape)
        rows.append(LayerProfile(name=layer.name, kind=type(layer).__name__, output_shape=out,
                                 params=int(layer.count_params()), macs=int(layer_macs(layer))))
    return Profile(layers=tuple(rows), total_params=int(model.count_params()),
                   total_macs=sum(r.macs for r in rows),
                   peak_activation_bytes=peak_activation_bytes(model))
