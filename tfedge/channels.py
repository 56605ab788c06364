"""Structured channel pruning: whole channels leave the model, so its layers really shrink.

    small = tfedge.prune_channels(model, target=0.5, by="macs")   # half the MACs removed
    plan = tfedge.channels.plan(model, target=0.5, by="macs")     # the same, inspected first
    print(plan.table()); small = plan.apply()

tfmot's magnitude pruning only zeroes weights: the model keeps its shape, its MACs and (before
gzip) its size. `prune_channels` returns a new, smaller, dense tf_keras model whose surviving
weights are copied exactly from the original.

How it works: a dependency graph over the Functional model. Every channel of every tensor is an
*atom*; layers that pass channels through (BatchNorm, activations, pooling, depthwise
convolutions, ...) give their outputs their inputs' atoms, and layers that tie channels together
unite atoms (union-find):

| where | what must go together |
| --- | --- |
| Add, Multiply, Subtract, Maximum, ... | channel i of every input and of the output |
| squeeze-excite | the gate's channel i (expand conv) and the scaled tensor's channel i |
| Concatenate | the output's slice of each input; GhostNet's primary maps appear twice |
| DepthwiseConv2D (multiplier m) | input channel c and output channels c*m .. c*m+m-1 |
| grouped Conv2D (g groups) | local channel l of every group, on the input and the output |
| ChannelShuffle(G) | the K = C/G channels of one row of the (G, K) grid (then G shrinks) |
| ChannelSplit | the output pieces are slices of the input |
| Flatten, Reshape to features | channel c and every feature position that holds it |
| Dense / Conv input | nothing: the consumer just loses the rows of removed channels |

A connected set of atoms is a *group*: removing it removes, in every layer it touches, the output
filters that make it and the input rows that read it. Groups touching a model input, a model
output, a protected layer or a layer that mixes channels (LayerNormalization, softmax over
channels, Permute, ...) stay. Groups are ranked by a criterion summed over their members: "l1" or
"l2" norms of every kernel slice removed with the group, or "bn_gamma", |gamma| of its
BatchNorms (network slimming, Liu et al. 2017). Scores are divided by the mean of their
*cluster* (the groups of the same tensors, e.g. one layer's filters) so that layers of different
scales compare, then the lowest go first until the target is met: a fraction of the MACs, of the
parameters, or of the channels ("ratio"), globally or the same fraction in every cluster
(`scope="layer"`). No cluster loses more than `max_ratio` of its groups, nor its last one.
"""

import collections
import dataclasses
import math

import numpy as np

from tfedge._keras import clone_with_weights, keras, layers, require_tf_keras_model
from tfedge.models import _layers as tfedge_layers

BY = ("macs", "params", "ratio")
CRITERIA = ("l1", "l2", "bn_gamma")
SCOPES = ("global", "layer")

# Element-wise or spatial layers: output channel i is a function of input channel i alone.
_PASS_THROUGH = (
    layers.ReLU, layers.LeakyReLU, layers.ELU, layers.ThresholdedReLU, layers.PReLU,
    layers.Dropout, layers.SpatialDropout1D, layers.SpatialDropout2D, layers.SpatialDropout3D,
    layers.GaussianNoise, layers.GaussianDropout, layers.AlphaDropout, layers.ActivityRegularization,
    layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D, layers.AveragePooling1D,
    layers.AveragePooling2D, layers.AveragePooling3D, layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D, layers.GlobalAveragePooling3D, layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D, layers.ZeroPadding1D,
    layers.ZeroPadding2D, layers.ZeroPadding3D, layers.Cropping1D, layers.Cropping2D,
    layers.Cropping3D, layers.UpSampling1D, layers.UpSampling2D, layers.UpSampling3D,
    layers.Identity, tfedge_layers.HardSwish, tfedge_layers.HardSigmoid,
)
_ELEMENTWISE_MERGE = (layers.Add, layers.Subtract, layers.Multiply, layers.Average,
                      layers.Maximum, layers.Minimum)
# Layers whose every output channel depends on every input channel without weights to slice:
# the channels on both sides stay as they are.
_MIXING = (layers.LayerNormalization, layers.UnitNormalization, layers.Permute,
           layers.Normalization, layers.Attention, layers.MultiHeadAttention,
           layers.AdditiveAttention)
_CONV = (layers.Conv1D, layers.Conv2D, layers.Conv3D)


class ChannelPruningError(ValueError):
    """The model, or the request, cannot be channel-pruned as asked; the message says why."""


# ---------------------------------------------------------------------------------------------
# The dependency graph.


@dataclasses.dataclass
class _Tensor:
    key: tuple            # (producing layer name, output index)
    shape: tuple          # without the batch dimension
    atoms: np.ndarray     # atom id of each index along the last axis

    @property
    def channels(self):
        return len(self.atoms)


@dataclasses.dataclass(frozen=True)
class _Slice:
    """Axis `axis` of weight `weight` of layer `layer` is indexed by channels of `tensor`.

    `index` maps each position along that axis to a channel index of the tensor. `side` is
    "out" where the weight makes the channel (filters, biases, BatchNorm) and "in" where it
    reads it (the input rows of a consumer). `role`: kernel, bias, gamma, beta or other.
    """

    layer: str
    weight: int
    axis: int
    tensor: tuple
    index: np.ndarray
    side: str
    role: str


@dataclasses.dataclass(frozen=True)
class _Cost:
    """A term of a layer's MACs or parameters: `base` scaled by kept/original of each tensor."""

    layer: str
    base: int
    tensors: tuple


@dataclasses.dataclass(frozen=True)
class Group:
    """Channels that can only be removed together.

    Attributes:
      id: the group's number in its `ChannelGraph`.
      channels: {tensor name: how many of its channels the group holds}; a tensor is named by
        the layer that makes it (with ":k" for a layer's k-th output, k > 0).
      layers: the layers whose weights lose a slice when the group goes.
      frozen: why the group cannot be removed ("" when it can).
    """

    id: int
    channels: dict
    layers: tuple
    frozen: str = ""


def _tensor_name(key):
    return key[0] if key[1] == 0 else f"{key[0]}:{key[1]}"


def _flat(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


class ChannelGraph:
    """The channel dependency graph of a Functional or Sequential tf_keras model.

    `groups` lists every `Group`; `prunable` those that can go.
    """

    def __init__(self, model, protect=(), criterion="l1"):
        require_tf_keras_model(model)
        if getattr(model, "_is_graph_network", False) and any(
                len(l._inbound_nodes) > 1 for l in model.layers if not isinstance(l, keras.Model)):
            # Layers also called in other models: a copy has one call per layer.
            model = clone_with_weights(model)
        _check_graph_model(model)
        self.model = model
        self.protect = tuple(protect)
        names = {l.name for l in model.layers}
        unknown = sorted(set(self.protect) - names)
        if unknown:
            raise ChannelPruningError(f"`protect` names layers the model does not have: {unknown}")
        self._parent = []
        self._frozen = {}          # atom -> reason
        self.tensors = {}          # key -> _Tensor
        self.layer_io = {}         # layer name -> (input keys, output keys)
        self.slices = []
        self.macs_terms = []
        self.params_terms = []
        self.config_updates = {}   # layer name -> function(kept counts) -> config changes
        if criterion not in CRITERIA:
            raise ValueError(f"`criterion` must be one of {CRITERIA}. Received: "
                             f"criterion={criterion!r}")
        self.criterion = criterion
        self._balanced = []        # (grouped conv name, its output key, groups)
        self._order = _topological_layers(model)
        for layer in self._order:
            self._add_layer(layer)
        for tensor in _flat(model.outputs):
            key = _key(tensor)
            self._freeze(self.tensors[key].atoms, f"it reaches the model output {key[0]!r}")
        self._bundle()
        self._finish()

    # -- union-find
    def _new_atoms(self, count):
        start = len(self._parent)
        self._parent.extend(range(start, start + count))
        return np.arange(start, start + count, dtype=np.int64)

    def _find(self, atom):
        parent = self._parent
        root = atom
        while parent[root] != root:
            root = parent[root]
        while parent[atom] != root:
            parent[atom], atom = root, parent[atom]
        return root

    def _union(self, a, b):
        ra, rb = self._find(int(a)), self._find(int(b))
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)

    def _union_all(self, atoms):
        atoms = list(atoms)
        for other in atoms[1:]:
            self._union(atoms[0], other)

    def _freeze(self, atoms, reason):
        for atom in np.asarray(atoms).ravel():
            self._frozen.setdefault(int(atom), reason)

    # -- layers
    def _output(self, layer, index, shape, atoms):
        key = (layer.name, index)
        self.tensors[key] = _Tensor(key, shape, np.asarray(atoms, dtype=np.int64))
        return self.tensors[key]

    def _slice(self, layer, weight, axis, tensor, index, side, role):
        self.slices.append(_Slice(layer.name, weight, axis, tensor.key,
                                  np.asarray(index, dtype=np.int64), side, role))

    def _params(self, layer, weight_index, *tensors):
        size = int(np.prod(layer.weights[weight_index].shape))
        self.params_terms.append(_Cost(layer.name, size, tuple(t.key for t in tensors)))

    def _add_layer(self, layer):
        from tfedge.profiling import layer_macs

        node = layer._inbound_nodes[0]
        inputs = [] if isinstance(layer, layers.InputLayer) else \
            [self.tensors[_key(t)] for t in _flat(node.input_tensors)]
        outputs = _flat(node.outputs)
        shapes = [tuple(int(d) if d is not None else -1 for d in t.shape[1:]) for t in outputs]
        self.layer_io[layer.name] = ([t.key for t in inputs],
                                     [(layer.name, i) for i in range(len(outputs))])
        kind = _kind(layer, inputs, shapes)
        protected = layer.name in self.protect
        if kind == "unknown" and not protected:
            raise ChannelPruningError(
                f"prune_channels does not know how channels flow through layer {layer.name!r} "
                f"({type(layer).__name__}), so it cannot tell which of its input and output "
                f"channels may go. Pass protect=[{layer.name!r}] to keep all of its input and "
                "output channels as they are, or rebuild it with standard layers.")
        if kind in ("unknown", "mixing"):
            for tensor in inputs:
                self._freeze(tensor.atoms, f"layer {layer.name!r} ({type(layer).__name__}) mixes "
                             "its channels" if kind == "mixing" else
                             f"layer {layer.name!r} is protected")
            for i, shape in enumerate(shapes):
                out = self._output(layer, i, shape, self._new_atoms(_last(shape)))
                self._freeze(out.atoms, f"layer {layer.name!r} ({type(layer).__name__}) "
                             + ("mixes its channels" if kind == "mixing" else "is protected"))
            self._constant_params(layer)
            return
        getattr(self, f"_rule_{kind}")(layer, inputs, shapes, layer_macs(layer))
        if protected:
            for key in self.layer_io[layer.name][1]:
                self._freeze(self.tensors[key].atoms, f"layer {layer.name!r} is protected")

    def _constant_params(self, layer):
        for i in range(len(layer.weights)):
            self._params(layer, i)
        from tfedge.profiling import layer_macs

        if layer_macs(layer):
            self.macs_terms.append(_Cost(layer.name, int(layer_macs(layer)), ()))

    def _rule_input(self, layer, inputs, shapes, macs):
        out = self._output(layer, 0, shapes[0], self._new_atoms(_last(shapes[0])))
        self._freeze(out.atoms, f"it is the model input {layer.name!r}")

    def _rule_pass(self, layer, inputs, shapes, macs):
        (x,) = inputs
        self._output(layer, 0, shapes[0], x.atoms)
        for i, w in enumerate(layer.weights):
            if w.shape.rank and w.shape[-1] == x.channels and x.channels > 1:
                # BatchNormalization's four vectors, PReLU's alpha: one entry per channel.
                role = {"gamma": "gamma", "beta": "beta"}.get(_weight_name(w), "other")
                self._slice(layer, i, len(w.shape) - 1, x, np.arange(x.channels), "out", role)
                self._params(layer, i, x)
            else:
                self._params(layer, i)

    def _rule_merge(self, layer, inputs, shapes, macs):
        width = _last(shapes[0])
        full = [t for t in inputs if t.channels == width]
        for t in inputs:
            if t.channels not in (width, 1):
                raise ChannelPruningError(
                    f"layer {layer.name!r} ({type(layer).__name__}) combines {t.channels} "
                    f"channels of {_tensor_name(t.key)!r} with {width}; only equal counts or "
                    "broadcasting from 1 are supported")
        for i in range(width):
            self._union_all(t.atoms[i] for t in full)
        self._output(layer, 0, shapes[0], full[0].atoms)

    def _rule_concat(self, layer, inputs, shapes, macs):
        self._output(layer, 0, shapes[0], np.concatenate([t.atoms for t in inputs]))

    def _rule_concat_other_axis(self, layer, inputs, shapes, macs):
        self._rule_merge(layer, inputs, shapes, macs)

    def _rule_split(self, layer, inputs, shapes, macs):
        (x,) = inputs
        start = 0
        for i, shape in enumerate(shapes):
            self._output(layer, i, shape, x.atoms[start:start + _last(shape)])
            start += _last(shape)

    def _rule_shuffle(self, layer, inputs, shapes, macs):
        (x,) = inputs
        rows, per_row = layer.groups, x.channels // layer.groups
        grid = x.atoms.reshape(rows, per_row)       # input index b * K + a
        for row in grid:
            self._union_all(row)
        self._output(layer, 0, shapes[0], grid.T.reshape(-1))  # output index a * G + b

    def _rule_flatten(self, layer, inputs, shapes, macs):
        (x,) = inputs
        repeats = _last(shapes[0]) // x.channels
        self._output(layer, 0, shapes[0], np.tile(x.atoms, repeats))

    def _rule_conv(self, layer, inputs, shapes, macs):
        (x,) = inputs
        groups = getattr(layer, "groups", 1) or 1
        out = self._output(layer, 0, shapes[0], self._new_atoms(_last(shapes[0])))
        cin_local = x.channels // groups
        if groups > 1:
            # Input: the same local channel of every group goes together, so that every group
            # keeps reading the same rows of its kernel. Output: every group must lose as many
            # filters as the others (any ones): `_bundle` pairs them up.
            for l in range(cin_local):
                self._union_all(x.atoms[k * cin_local + l] for k in range(groups))
            self._balanced.append((layer.name, out.key, groups))
        rank = len(layer.kernel.shape)
        transpose = isinstance(layer, (layers.Conv2DTranspose, layers.Conv3DTranspose,
                                       layers.Conv1DTranspose))
        in_axis, out_axis = (rank - 1, rank - 2) if transpose else (rank - 2, rank - 1)
        self._slice(layer, 0, out_axis, out, np.arange(out.channels), "out", "kernel")
        self._slice(layer, 0, in_axis, x, np.arange(cin_local), "in", "kernel")
        self._params(layer, 0, x, out)
        if layer.use_bias:
            self._slice(layer, 1, 0, out, np.arange(out.channels), "out", "bias")
            self._params(layer, 1, out)
        self.macs_terms.append(_Cost(layer.name, int(macs), (x.key, out.key)))
        self.config_updates[layer.name] = lambda kept, o=out.key: {"filters": kept[o]}

    def _rule_dense(self, layer, inputs, shapes, macs):
        (x,) = inputs
        out = self._output(layer, 0, shapes[0], self._new_atoms(_last(shapes[0])))
        self._slice(layer, 0, 1, out, np.arange(out.channels), "out", "kernel")
        self._slice(layer, 0, 0, x, np.arange(x.channels), "in", "kernel")
        self._params(layer, 0, x, out)
        if layer.use_bias:
            self._slice(layer, 1, 0, out, np.arange(out.channels), "out", "bias")
            self._params(layer, 1, out)
        self.macs_terms.append(_Cost(layer.name, int(macs), (x.key, out.key)))
        self.config_updates[layer.name] = lambda kept, o=out.key: {"units": kept[o]}

    def _rule_depthwise(self, layer, inputs, shapes, macs):
        (x,) = inputs
        m = layer.depth_multiplier
        out = self._output(layer, 0, shapes[0], np.repeat(x.atoms, m))
        self._slice(layer, 0, 2, x, np.arange(x.channels), "out", "kernel")
        self._params(layer, 0, x)
        if layer.use_bias:
            self._slice(layer, 1, 0, out, np.arange(out.channels), "out", "bias")
            self._params(layer, 1, out)
        self.macs_terms.append(_Cost(layer.name, int(macs), (x.key,)))

    def _rule_separable(self, layer, inputs, shapes, macs):
        (x,) = inputs
        m = layer.depth_multiplier
        out = self._output(layer, 0, shapes[0], self._new_atoms(_last(shapes[0])))
        rank = len(layer.depthwise_kernel.shape)
        self._slice(layer, 0, rank - 2, x, np.arange(x.channels), "in", "kernel")
        self._slice(layer, 1, rank - 2, x, np.arange(x.channels * m) // m, "in", "kernel")
        self._slice(layer, 1, rank - 1, out, np.arange(out.channels), "out", "kernel")
        self._params(layer, 0, x)
        self._params(layer, 1, x, out)
        if layer.use_bias:
            self._slice(layer, 2, 0, out, np.arange(out.channels), "out", "bias")
            self._params(layer, 2, out)
        spatial = int(np.prod(shapes[0][:-1]))
        depthwise = spatial * int(np.prod(layer.kernel_size)) * x.channels * m
        self.macs_terms.append(_Cost(layer.name, depthwise, (x.key,)))
        self.macs_terms.append(_Cost(layer.name, int(macs) - depthwise, (x.key, out.key)))
        self.config_updates[layer.name] = lambda kept, o=out.key: {"filters": kept[o]}

    def _rule_reshape(self, layer, inputs, shapes, macs):
        (x,) = inputs
        width = _last(shapes[0])
        if width == x.channels:
            self._output(layer, 0, shapes[0], x.atoms)
        else:  # (h, w, c) -> (h * w * c,): features, as Flatten makes them
            self._output(layer, 0, shapes[0], np.tile(x.atoms, width // x.channels))
        self.config_updates[layer.name] = lambda kept, o=(layer.name, 0), s=shapes[0]: {
            "target_shape": tuple(s[:-1]) + (kept[o],)}

    # -- groups
    def _all_roots(self):
        return np.fromiter((self._find(i) for i in range(len(self._parent))), np.int64,
                           len(self._parent))

    def _slice_values(self, criterion):
        """Per slice of the criterion's role: the criterion's value of each position."""
        roles = ("gamma",) if criterion == "bn_gamma" else ("kernel",)
        weights = {}
        values = []
        for s in self.slices:
            if s.role not in roles:
                continue
            if s.layer not in weights:
                weights[s.layer] = self.model.get_layer(s.layer).get_weights() \
                    if s.layer in self.layer_io else None
            w = np.moveaxis(weights[s.layer][s.weight], s.axis, 0).reshape(len(s.index), -1)
            values.append((s, np.abs(w).sum(1) if criterion != "l2" else np.square(w).sum(1)))
        return values

    def _bundle(self):
        """Makes the removable channels of each grouped convolution's output even over its groups.

        Channels that lie in one group of the convolution (with what they must go with) are
        paired with as many channels of every other group, the weakest with the weakest; the
        pairs become one group. What cannot be paired stays.
        """
        if not self._balanced:
            return
        values = self._slice_values(self.criterion)
        frozen_atoms = np.fromiter(self._frozen, np.int64, len(self._frozen))
        for _, key, groups in self._balanced:
            roots = self._all_roots()
            score = np.zeros(len(self._parent))
            for s, v in values:
                np.add.at(score, roots[self.tensors[s.tensor].atoms[s.index]], v)
            frozen = set(roots[frozen_atoms].tolist())
            tensor = self.tensors[key]
            blocks = np.arange(tensor.channels) // (tensor.channels // groups)
            unit_roots = roots[tensor.atoms]
            pure = collections.defaultdict(lambda: collections.defaultdict(list))
            for root in np.unique(unit_roots):
                if int(root) in frozen:
                    continue
                counts = np.bincount(blocks[unit_roots == root], minlength=groups)
                nonzero = np.flatnonzero(counts)
                if len(nonzero) == 1:
                    pure[int(counts[nonzero[0]])][int(nonzero[0])].append(int(root))
            for per_block in pure.values():
                if len(per_block) < groups:
                    continue
                ranked = [sorted(per_block[k], key=lambda r: (score[r], r)) for k in range(groups)]
                for members in zip(*ranked):
                    self._union_all(members)

    def _finish(self):
        members = collections.defaultdict(lambda: collections.defaultdict(int))
        self._roots = {}
        for key, tensor in self.tensors.items():
            roots = np.fromiter((self._find(int(a)) for a in tensor.atoms), np.int64,
                                tensor.channels)
            self._roots[key] = roots
            for root in roots:
                members[int(root)][key] += 1
        frozen_roots = {}
        for atom, reason in self._frozen.items():
            frozen_roots.setdefault(self._find(atom), reason)
        for name, key, groups in self._balanced:
            roots = self._roots[key]
            blocks = np.arange(len(roots)) // (len(roots) // groups)
            for root in np.unique(roots):
                counts = np.bincount(blocks[roots == root], minlength=groups)
                if counts.min() != counts.max():
                    frozen_roots.setdefault(
                        int(root), f"its channels are not spread evenly over the {groups} groups "
                        f"of the grouped convolution {name!r}")
        touched = collections.defaultdict(set)
        for s in self.slices:
            for root in set(self._roots[s.tensor][s.index].tolist()):
                touched[root].add(s.layer)
        order = {l.name: i for i, l in enumerate(self._order)}
        self.groups = []
        self._group_of_root = {}
        for root in sorted(members):
            group = Group(id=len(self.groups),
                          channels={_tensor_name(k): n for k, n in members[root].items()},
                          layers=tuple(sorted(touched[root], key=order.get)),
                          frozen=frozen_roots.get(root, ""))
            self._group_of_root[root] = group.id
            self.groups.append(group)
        self._root_of_group = np.array(sorted(members), dtype=np.int64)
        # Each tensor's channels as group ids.
        self._gid = {key: np.searchsorted(self._root_of_group, roots)
                     for key, roots in self._roots.items()}
        self._signature = {self._group_of_root[root]: tuple(sorted(members[root]))
                           for root in members}

    @property
    def prunable(self):
        return [g for g in self.groups if not g.frozen]

    def group_of(self, layer_name, channel, output=0):
        """The group holding channel `channel` of the `output`-th output of `layer_name`."""
        return self.groups[int(self._gid[(layer_name, output)][channel])]

    def clusters(self):
        """Prunable group ids by the tensors they touch: {tensor keys: [group ids]}."""
        out = collections.defaultdict(list)
        for group in self.prunable:
            out[self._signature[group.id]].append(group.id)
        return dict(out)

    def table(self):
        """The groups in plain text: one line per cluster of prunable groups (the layers whose
        filters they are), then why the others must stay."""
        lines = [f"{len(self.groups)} channel groups, {len(self.prunable)} prunable"]
        for signature, ids in sorted(self.clusters().items(), key=lambda kv: min(kv[1])):
            makers = [k[0] for k in signature if k[0] in self.config_updates] or \
                [k[0] for k in signature[:1]]
            width = max(self.groups[ids[0]].channels.values())
            lines.append(f"  {len(ids):>5} groups of {width} channel(s): {', '.join(makers)}")
        reasons = collections.Counter(g.frozen for g in self.groups if g.frozen)
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {count:>5} stay: {reason}")
        return "\n".join(lines)

    # -- measures
    def kept_counts(self, removed):
        """{tensor key: channels left} once the groups `removed` (a boolean mask) are gone."""
        return {key: int(np.count_nonzero(~removed[gid])) for key, gid in self._gid.items()}

    def _total(self, terms, kept):
        total = 0
        for term in terms:
            value = term.base
            for key in term.tensors:
                value *= kept[key]
            for key in term.tensors:
                value //= self.tensors[key].channels
            total += value
        return total

    def macs(self, removed=None):
        return self._total(self.macs_terms, self.kept_counts(self._mask(removed)))

    def params(self, removed=None):
        return self._total(self.params_terms, self.kept_counts(self._mask(removed)))

    def _mask(self, removed):
        mask = np.zeros(len(self.groups), bool)
        if removed is not None:
            mask[np.asarray(list(removed), dtype=np.int64)] = True
        return mask

    def importance(self, criterion=None):
        """Score of every group (NaN for frozen ones): the criterion (default: the graph's)
        summed over the group's members, per channel of its widest tensor."""
        criterion = self.criterion if criterion is None else criterion
        if criterion not in CRITERIA:
            raise ValueError(f"`criterion` must be one of {CRITERIA}. Received: "
                             f"criterion={criterion!r}")
        score = np.zeros(len(self.groups))
        has = np.zeros(len(self.groups), bool)
        for s, values in self._slice_values(criterion):
            gids = self._gid[s.tensor][s.index]
            np.add.at(score, gids, values)
            has[gids] = True
        if criterion == "l2":
            score = np.sqrt(score)
        if criterion == "bn_gamma" and not has[[g.id for g in self.prunable]].all():
            # Groups with no BatchNorm (e.g. a head conv with a bias) fall back to l1.
            score = np.where(has, score, self.importance("l1"))
        width = np.array([max(g.channels.values()) for g in self.groups], float)
        score = score / width
        score[[g.id for g in self.groups if g.frozen]] = np.nan
        return score

    def zero_groups(self, model, group_ids):
        """Sets every weight that makes the given groups' channels to zero, in `model` (a model
        with this graph's layers and shapes, e.g. the one it was built from).

        The channels then carry zeros wherever the activations map 0 to 0 (ReLU, hard-swish,
        BatchNorm with gamma = beta = 0): removing them changes nothing, which is what the
        tests check. It is not a pruning method.
        """
        mask = self._mask(group_ids)
        for s in self.slices:
            if s.side != "out" or s.role not in ("kernel", "bias", "gamma", "beta"):
                continue
            hit = mask[self._gid[s.tensor][s.index]]
            if not hit.any():
                continue
            layer = model.get_layer(s.layer)
            values = layer.get_weights()
            w = np.moveaxis(values[s.weight], s.axis, 0)
            w[hit] = 0
            values[s.weight] = np.moveaxis(w, 0, s.axis)
            layer.set_weights(values)

    # -- surgery
    def apply(self, group_ids):
        """A new model without the channels of the given groups, the other weights copied."""
        mask = self._mask(group_ids)
        frozen = [self.groups[i] for i in np.flatnonzero(mask) if self.groups[i].frozen]
        if frozen:
            g = frozen[0]
            raise ChannelPruningError(f"group {g.id} cannot be removed: {g.frozen}")
        kept = self.kept_counts(mask)
        empty = [k for k, n in kept.items() if n == 0]
        if empty:
            raise ChannelPruningError(f"removing these groups would leave "
                                      f"{_tensor_name(empty[0])!r} with no channels")
        keep_index = {key: np.flatnonzero(~mask[gid]) for key, gid in self._gid.items()}
        new_weights = {}
        for layer in self._order:
            if layer.weights:
                new_weights[layer.name] = layer.get_weights()
        for s in self.slices:
            values = new_weights[s.layer]
            positions = np.flatnonzero(~mask[self._gid[s.tensor][s.index]])
            values[s.weight] = np.take(values[s.weight], positions, axis=s.axis)
        overrides = {}
        for name, update in self.config_updates.items():
            overrides[name] = update(kept)
        for layer in self._order:
            if isinstance(layer, tfedge_layers.ChannelShuffle):
                (x,) = self.layer_io[layer.name][0]
                per_row = self.tensors[x].channels // layer.groups
                overrides[layer.name] = {"groups": kept[x] // per_row}
            elif isinstance(layer, tfedge_layers.ChannelSplit):
                overrides[layer.name] = {"sizes": [kept[k] for k in self.layer_io[layer.name][1]]}

        def rebuild(layer):
            config = layer.get_config()
            config.update(overrides.get(layer.name, {}))
            return layer.__class__.from_config(config)

        new = keras.models.clone_model(self.model, clone_function=rebuild)
        for layer in new.layers:
            if layer.name in new_weights:
                layer.set_weights(new_weights[layer.name])
        # The rebuilt tensors must have exactly the planned channel counts.
        for layer in new.layers:
            for i, tensor in enumerate(_flat(layer.output)):
                key = (layer.name, i)
                if key in kept and _last(tensor.shape[1:]) != kept[key]:
                    raise AssertionError(f"{_tensor_name(key)}: {tensor.shape[-1]} channels, "
                                         f"planned {kept[key]}")
        return new


def _weight_name(variable):
    return variable.name.split("/")[-1].split(":")[0]


def _last(shape):
    return int(shape[-1]) if len(shape) else 1


def _key(tensor):
    history = tensor._keras_history
    return (history.layer.name, history.tensor_index)


def _check_graph_model(model):
    if not getattr(model, "_is_graph_network", False):
        if isinstance(model, keras.Sequential):
            raise ChannelPruningError(f"{model.name} is a Sequential model that was never built; "
                                      "give its first layer an input_shape (or call build())")
        raise ChannelPruningError(f"{model.name} is a subclassed model: its channels cannot be "
                                  "traced. Rebuild it with the Functional API.")
    for tensor in _flat(model.inputs):
        if any(d is None for d in tensor.shape[1:]):
            raise ChannelPruningError(
                f"{model.name} takes inputs shaped {tuple(tensor.shape)}; channel pruning counts "
                "MACs per layer and needs every dimension but the batch fixed. Build the model "
                "with a fixed input_shape.")
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            raise ChannelPruningError(
                f"layer {layer.name!r} is a nested model; channel pruning must see each of its "
                "layers. Build one flat Functional model (call the inner model's layers "
                "directly).")
        wrapped = getattr(layer, "layer", None)
        if isinstance(wrapped, keras.layers.Layer) and type(layer).__name__ in (
                "PruneLowMagnitude", "QuantizeWrapper", "QuantizeWrapperV2"):
            raise ChannelPruningError(
                f"layer {layer.name!r} is wrapped by tfmot ({type(layer).__name__}); prune "
                "channels before magnitude pruning or QAT (or strip the wrappers first: "
                "tfedge.strip)")
        if len(layer._inbound_nodes) > 1:
            raise ChannelPruningError(
                f"layer {layer.name!r} is called {len(layer._inbound_nodes)} times; a shared "
                "layer has one set of channels for several tensors, which channel pruning does "
                "not handle. Give each call its own layer.")


def _topological_layers(model):
    """Every layer the outputs depend on, input layers included, inputs before consumers."""
    order, seen = [], set()
    stack = [(_key(t)[0], t._keras_history.layer, False) for t in _flat(model.outputs)]
    while stack:
        name, layer, expanded = stack.pop()
        if expanded:
            if name not in seen:
                seen.add(name)
                order.append(layer)
            continue
        if name in seen:
            continue
        stack.append((name, layer, True))
        node = layer._inbound_nodes[0]
        if not isinstance(layer, layers.InputLayer):
            for t in reversed(_flat(node.input_tensors)):
                parent = t._keras_history.layer
                if parent.name not in seen:
                    stack.append((parent.name, parent, False))
    return order


def _kind(layer, inputs, shapes):
    """Which rule of ChannelGraph applies to `layer`."""
    if isinstance(layer, layers.InputLayer):
        return "input"
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return "unknown"
    if isinstance(layer, layers.DepthwiseConv2D):
        return "depthwise"
    if isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
        return "separable"
    if isinstance(layer, _CONV):
        return "conv"
    if isinstance(layer, layers.Dense):
        return "dense"
    if isinstance(layer, layers.BatchNormalization):
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        rank = len(shapes[0]) + 1
        return "pass" if [a % rank for a in axis] == [rank - 1] else "mixing"
    if isinstance(layer, layers.Softmax):
        return "mixing" if _last_axis(layer.axis, len(shapes[0]) + 1) else "pass"
    if isinstance(layer, layers.Activation):
        name = getattr(layer.activation, "__name__", "")
        return "mixing" if name in ("softmax", "log_softmax") else "pass"
    if isinstance(layer, layers.Rescaling):
        scalar = np.ndim(layer.scale) == 0 and np.ndim(layer.offset) == 0
        return "pass" if scalar else "mixing"
    if isinstance(layer, _PASS_THROUGH):
        return "pass"
    if isinstance(layer, _ELEMENTWISE_MERGE):
        return "merge"
    if isinstance(layer, layers.Concatenate):
        return "concat" if _last_axis(layer.axis, len(shapes[0]) + 1) else "concat_other_axis"
    if isinstance(layer, tfedge_layers.ChannelSplit):
        return "split"
    if isinstance(layer, tfedge_layers.ChannelShuffle):
        return "shuffle"
    if isinstance(layer, layers.Flatten):
        return "flatten"
    if isinstance(layer, layers.Reshape):
        (x,) = inputs
        width = _last(shapes[0])
        if width == x.channels:
            return "reshape"
        # Flattening to features keeps the channel as the fastest axis.
        if len(shapes[0]) == 1 and width == int(np.prod(x.shape)):
            return "reshape"
        return "mixing"
    if isinstance(layer, _MIXING):
        return "mixing"
    return "unknown"


def _last_axis(axis, rank):
    return axis == -1 or axis == rank - 1


# ---------------------------------------------------------------------------------------------
# Choosing what to remove.


@dataclasses.dataclass
class ChannelPlan:
    """What `plan` decided: the groups to remove and what that saves. `apply()` builds it."""

    graph: ChannelGraph
    removed: tuple
    target: float
    by: str
    criterion: str
    scope: str

    @property
    def macs_before(self):
        return self.graph.macs()

    @property
    def macs_after(self):
        return self.graph.macs(self.removed)

    @property
    def params_before(self):
        return self.graph.params()

    @property
    def params_after(self):
        return self.graph.params(self.removed)

    def layers(self):
        """(layer, output channels before, after) for every layer whose outputs shrink."""
        kept = self.graph.kept_counts(self.graph._mask(self.removed))
        rows = []
        for layer in self.graph._order:
            key = (layer.name, 0)
            if key in self.graph.tensors and layer.name in self.graph.config_updates:
                before = self.graph.tensors[key].channels
                if kept[key] != before:
                    rows.append((layer.name, before, kept[key]))
        return rows

    def summary(self):
        return {
            "channel_target": self.target, "channel_by": self.by,
            "channel_criterion": self.criterion, "channel_scope": self.scope,
            "groups_removed": len(self.removed), "groups_prunable": len(self.graph.prunable),
            "macs_before": self.macs_before, "macs_after": self.macs_after,
            "params_before": self.params_before, "params_after": self.params_after,
            "macs_removed": round(1 - self.macs_after / self.macs_before, 4),
            "params_removed": round(1 - self.params_after / self.params_before, 4),
            "channels_per_layer": [{"layer": n, "before": b, "after": a}
                                   for n, b, a in self.layers()],
        }

    def table(self):
        s = self.summary()
        lines = [f"removed {s['groups_removed']} of {s['groups_prunable']} prunable channel groups",
                 f"MACs   {s['macs_before']:,} -> {s['macs_after']:,} "
                 f"(-{100 * s['macs_removed']:.1f}%)",
                 f"params {s['params_before']:,} -> {s['params_after']:,} "
                 f"(-{100 * s['params_removed']:.1f}%)"]
        rows = self.layers()
        if rows:
            width = max(len(n) for n, _, _ in rows)
            lines += [f"  {n:<{width}}  {b:>5} -> {a:<5}" for n, b, a in rows]
        return "\n".join(lines)

    def apply(self):
        return self.graph.apply(self.removed)


def _check_fraction(name, value, *, upper_inclusive=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value and (
        value <= 1 if upper_inclusive else value < 1)
    if not ok:
        interval = "(0, 1]" if upper_inclusive else "(0, 1)"
        raise ValueError(f"`{name}` must be a number in {interval}. Received: {name}={value!r}")


def plan(model, target=0.5, *, by="macs", criterion="l1", scope="global", protect=(),
         max_ratio=0.9, ratios=None):
    """Chooses the channel groups to remove; see `prune_channels` for the arguments."""
    if by not in BY:
        raise ValueError(f"`by` must be one of {BY}. Received: by={by!r}")
    if criterion not in CRITERIA:
        raise ValueError(f"`criterion` must be one of {CRITERIA}. Received: "
                         f"criterion={criterion!r}")
    if scope not in SCOPES:
        raise ValueError(f"`scope` must be one of {SCOPES}. Received: scope={scope!r}")
    _check_fraction("max_ratio", max_ratio, upper_inclusive=True)
    if isinstance(protect, str):
        protect = (protect,)
    if ratios is None:
        _check_fraction("target", target)
    graph = ChannelGraph(model, protect=protect, criterion=criterion)
    score = graph.importance()
    clusters = graph.clusters()
    if not clusters:
        raise ChannelPruningError(f"{model.name} has no channel that can be removed: every "
                                  "channel reaches a model input or output or a protected layer")
    # Cluster-normalized scores, lowest first, ties by group id.
    ranked = {}
    for signature, ids in clusters.items():
        ids = np.asarray(ids)
        mean = score[ids].mean()
        normal = score[ids] / mean if mean > 0 else np.zeros(len(ids))
        order = np.lexsort((ids, normal))
        ranked[signature] = (ids[order], normal[order])
    caps = {sig: min(len(ids) - 1, int(math.floor(max_ratio * len(ids))))
            for sig, (ids, _) in ranked.items()}

    if ratios is not None:
        removed = _by_layer_ratios(graph, ranked, caps, ratios)
        return ChannelPlan(graph, tuple(sorted(removed)), None, "ratios", criterion, "layer")

    total_groups = sum(len(ids) for ids, _ in ranked.values())

    def cost(removed):
        """What is left: MACs, parameters, or prunable groups."""
        if by == "macs":
            return graph.macs(removed)
        if by == "params":
            return graph.params(removed)
        return total_groups - len(removed)

    budget = (1 - target) * cost(())

    if scope == "global":
        sequence = _global_sequence(ranked, caps)
        prefix = _smallest_prefix(len(sequence), lambda p: cost(sequence[:p]) <= budget)
        if prefix is None:
            _unreachable(model, target, by, cost(sequence), cost(()))
        removed = sequence[:prefix]
    else:
        def uniform(r):
            return [int(i) for sig, (ids, _) in ranked.items()
                    for i in ids[:min(caps[sig], int(math.floor(r * len(ids) + 1e-9)))]]

        ratios_seen = sorted({min(1.0, (k + 1) / len(ids)) for ids, _ in ranked.values()
                              for k in range(len(ids))} | {0.0})
        index = _smallest_prefix(len(ratios_seen) - 1,
                                 lambda p: cost(uniform(ratios_seen[p])) <= budget)
        if index is None:
            _unreachable(model, target, by, cost(uniform(1.0)), cost(()))
        removed = uniform(ratios_seen[index])
    return ChannelPlan(graph, tuple(sorted(removed)), target, by, criterion, scope)


def _global_sequence(ranked, caps):
    """All groups by normalized score, skipping those past their cluster's cap."""
    entries = sorted((float(s), int(i), sig) for sig, (ids, scores) in ranked.items()
                     for i, s in zip(ids, scores))
    taken = collections.Counter()
    sequence = []
    for _, gid, sig in entries:
        if taken[sig] < caps[sig]:
            taken[sig] += 1
            sequence.append(gid)
    return sequence


def _smallest_prefix(n, ok):
    """The smallest p in [0, n] with ok(p), for ok monotone in p; None when ok(n) is False."""
    if not ok(n):
        return None
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _unreachable(model, target, by, best, total):
    reachable = 1 - best / total if total else 0.0
    what = {"macs": "MACs", "params": "parameters", "ratio": "prunable channel groups"}[by]
    raise ChannelPruningError(
        f"cannot remove {target:.0%} of {model.name}'s {what}: at most {reachable:.1%} can go "
        "while every layer keeps some channels (max_ratio) and protected channels stay. Lower "
        "`target`, raise `max_ratio` or protect fewer layers.")


def _by_layer_ratios(graph, ranked, caps, ratios):
    if not isinstance(ratios, dict) or not ratios:
        raise ValueError("`ratios` must be a dict {layer name: fraction of its output channels "
                         f"to remove}}. Received: ratios={ratios!r}")
    removed = set()
    for name, ratio in ratios.items():
        _check_fraction(f"ratios[{name!r}]", ratio)
        if name not in graph.layer_io:
            raise ChannelPruningError(f"`ratios` names a layer the model does not have: {name!r}")
        (key, *_) = graph.layer_io[name][1]
        gids = set(graph._gid[key].tolist())
        candidates = [(sig, ids) for sig, (ids, _) in ranked.items() if gids & set(ids.tolist())]
        if not candidates:
            reason = next((graph.groups[g].frozen for g in gids if graph.groups[g].frozen), "")
            raise ChannelPruningError(f"layer {name!r} has no output channel that can be "
                                      f"removed ({reason or 'none are prunable'})")
        for sig, ids in candidates:
            own = [int(i) for i in ids if int(i) in gids]
            count = min(caps[sig], int(math.floor(ratio * len(own) + 1e-9)))
            removed.update(own[:count])
    return removed


def prune_channels(model, target=0.5, *, by="macs", criterion="l1", scope="global", protect=(),
                   max_ratio=0.9, ratios=None):
    """Returns a smaller, dense copy of `model` with whole channels removed.

    Args:
      model: a Functional or Sequential tf_keras model (a Keras 3 model is rebuilt first, see
        `tfedge.compat.as_tf_keras`). It is left as it was.
      target: the fraction to remove, in (0, 1): of the MACs (`by="macs"`), the parameters
        ("params") or the prunable channel groups ("ratio"). The result removes at least that
        much, by the smallest number of groups that reaches it.
      by: what `target` measures.
      criterion: "l1" or "l2" (norms of every kernel slice a group removes, summed over its
        layers) or "bn_gamma" (|gamma| of its BatchNorms; l1 where a group has none).
      scope: "global" ranks all groups together; "layer" removes the same fraction from every
        layer's groups.
      protect: names of layers whose output channels must all stay (and, for layers the
        pruner does not know, their input channels too).
      max_ratio: the largest fraction of one layer's groups that may go; each keeps one at
        least.
      ratios: instead of `target`, {layer name: fraction of its output channels to remove}.

    Raises:
      ChannelPruningError (a ValueError): a layer it cannot handle (the message names it and
        says why), or a target that cannot be reached.
    """
    from tfedge import compat

    model = compat.as_tf_keras(model)
    return plan(model, target, by=by, criterion=criterion, scope=scope, protect=protect,
                max_ratio=max_ratio, ratios=ratios).apply()


@dataclasses.dataclass(frozen=True)
class Channels:
    """What `tfedge.compress(prune=...)` should do: structured channel pruning, fine-tuned.

    Args:
      target, by, criterion, scope, protect, max_ratio: as in `prune_channels`; `target` is
        what the whole schedule removes from the original model.
      steps: prune-and-fine-tune rounds. Round s prunes the model down to removing
        target * s / steps of the original's MACs (parameters, groups), then fine-tunes it
        for compress's `epochs["prune"]` epochs; several small steps lose less than one big
        one.
      distill: with no `teacher` given to compress, the unpruned model teaches the pruned one
        while it fine-tunes (`tfedge.Distiller`).
    """

    target: float = 0.5
    by: str = "macs"
    criterion: str = "l1"
    scope: str = "global"
    steps: int = 1
    protect: tuple = ()
    max_ratio: float = 0.9
    distill: bool = True

    def __post_init__(self):
        _check_fraction("target", self.target)
        _check_fraction("max_ratio", self.max_ratio, upper_inclusive=True)
        for name, value, allowed in (("by", self.by, BY), ("criterion", self.criterion, CRITERIA),
                                     ("scope", self.scope, SCOPES)):
            if value not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}. Received: {name}={value!r}")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            raise ValueError(f"`steps` must be an integer >= 1. Received: steps={self.steps!r}")
        if not isinstance(self.distill, bool):
            raise ValueError(f"`distill` must be True or False. Received: "
                             f"distill={self.distill!r}")
        protect = (self.protect,) if isinstance(self.protect, str) else tuple(self.protect)
        object.__setattr__(self, "protect", protect)

    def measure(self, model):
        """The quantity `target` is a fraction of, for `model` (None for by="ratio")."""
        from tfedge import profiling

        if self.by == "macs":
            return profiling.profile(model).total_macs
        if self.by == "params":
            return model.count_params()
        return None

    def step(self, model, step, original_measure):
        """Round `step` (1-based): `model` pruned to the schedule's point for that round."""
        if not 1 <= step <= self.steps:
            raise ValueError(f"`step` must be in 1..{self.steps}. Received: step={step!r}")
        goal = 1 - self.target * step / self.steps         # what is left of the original
        if self.by == "ratio":
            before = 1 - self.target * (step - 1) / self.steps
            fraction = 1 - goal / before
        else:
            fraction = 1 - goal * original_measure / self.measure(model)
        if fraction <= 0:  # an earlier round already removed more than this one asks
            return model
        return prune_channels(model, min(fraction, 0.999), by=self.by, criterion=self.criterion,
                              scope=self.scope, protect=self.protect, max_ratio=self.max_ratio)


def channel_changes(original, pruned):
    """[{layer, before, after}] for every layer of `original` whose output channels changed in
    `pruned` (a model with the same layer names, e.g. from `prune_channels`)."""
    rows = []
    names = {l.name for l in pruned.layers}
    for layer in original.layers:
        if layer.name not in names or isinstance(layer, layers.InputLayer):
            continue
        if not isinstance(layer, (layers.Dense, layers.DepthwiseConv2D) + _CONV + (
                layers.SeparableConv1D, layers.SeparableConv2D)):
            continue
        before = int(layer.output_shape[-1])
        after = int(pruned.get_layer(layer.name).output_shape[-1])
        if before != after:
            rows.append({"layer": layer.name, "before": before, "after": after})
    return rows
