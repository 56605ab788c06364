"""Structured channel pruning: the dependency graph, the surgery, the targets, the errors.

The central check: zero the channels of some groups in a model (every weight that makes them),
prune those groups, and the two models must compute the same function. If the surgery dropped,
kept or misaligned a single row of a single kernel, the outputs would differ.
"""

import numpy as np
import pytest

import tfedge
from tfedge import channels, models, profiling
from tfedge._keras import keras, layers
from tfedge.channels import ChannelGraph, ChannelPruningError
from tfedge.models import _layers

RNG = np.random.default_rng(0)
TOLERANCE = 1e-5


def images(shape, n=4, seed=0):
    return np.random.default_rng(seed).random((n,) + tuple(shape), np.float32)


def randomize_batchnorm(model, seed=0):
    """Non-trivial BatchNorm statistics, as a trained model has."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if i in (0, 3)
                               else rng.normal(0, 0.2, w.shape).astype(np.float32)
                               for i, w in enumerate(layer.get_weights())])
    return model


def copy(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def check_zeroed_groups_prune_to_the_same_function(model, group_ids, x):
    """Zero the groups in a copy, prune them: outputs equal; zeroing alone changed them."""
    original = model(x, training=False).numpy()
    zeroed = copy(model)
    graph = ChannelGraph(zeroed)
    graph.zero_groups(zeroed, group_ids)
    reference = zeroed(x, training=False).numpy()
    assert np.abs(reference - original).max() > 1e-3, "zeroing changed nothing: a vacuous test"
    pruned = graph.apply(group_ids)
    assert pruned.count_params() < model.count_params()
    np.testing.assert_allclose(pruned(x, training=False).numpy(), reference, atol=TOLERANCE,
                               rtol=0)
    return pruned


def some_groups(graph, fraction=0.3, seed=0):
    """A random selection of prunable groups that leaves every tensor some channels."""
    rng = np.random.default_rng(seed)
    chosen = []
    for ids in graph.clusters().values():
        count = min(len(ids) - 1, int(round(fraction * len(ids))))
        chosen += rng.choice(ids, count, replace=False).tolist()
    return sorted(chosen)


# -- Hand-made models: one dependency kind each.


def test_sequential_cnn_with_flatten():
    model = keras.Sequential([
        layers.Conv2D(8, 3, input_shape=(6, 6, 2), name="c1"), layers.BatchNormalization(),
        layers.ReLU(), layers.Conv2D(6, 3, name="c2"), layers.ReLU(), layers.Flatten(name="flat"),
        layers.Dense(5, name="fc1"), layers.ReLU(), layers.Dense(3, name="out")])
    randomize_batchnorm(model)
    graph = ChannelGraph(model)
    # c2's channel 4 is feature 4, 10, 16 and 22 of the 2x2x6 Flatten output.
    group = graph.group_of("c2", 4)
    assert group.channels["flat"] == 4 and group.channels["c2"] == 1
    assert set(group.layers) == {"c2", "fc1"}
    assert graph.group_of("out", 0).frozen.startswith("it reaches the model output")
    pruned = check_zeroed_groups_prune_to_the_same_function(
        model, [graph.group_of("c1", 1).id, group.id, graph.group_of("fc1", 2).id],
        images((6, 6, 2)))
    assert isinstance(pruned, keras.Sequential)
    assert [pruned.get_layer(n).output_shape[-1] for n in ("c1", "c2", "fc1", "out")] == \
        [7, 5, 4, 3]
    assert pruned.get_layer("fc1").kernel.shape == (20, 4)


def residual_model():
    inputs = keras.Input((8, 8, 3))
    a = layers.Conv2D(6, 3, padding="same", name="a")(inputs)
    b = layers.Conv2D(6, 1, name="b")(layers.ReLU()(a))
    x = layers.Add(name="add")([a, b])
    c = layers.Conv2D(4, 3, padding="same", name="c")(x)
    x = layers.Concatenate(name="cat")([x, c])
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, name="out")(x))


def test_residual_add_and_concatenate():
    model = residual_model()
    graph = ChannelGraph(model)
    assert graph.group_of("a", 2) is graph.group_of("b", 2) is graph.group_of("add", 2)
    assert graph.group_of("cat", 2) is graph.group_of("a", 2)
    assert graph.group_of("cat", 6 + 1) is graph.group_of("c", 1)
    assert set(graph.group_of("a", 2).layers) == {"a", "b", "c", "out"}
    text = graph.table()
    assert text.splitlines()[0] == f"{len(graph.groups)} channel groups, 10 prunable"
    assert "6 groups of 1 channel(s): a, b" in text and "4 groups of 1 channel(s): c" in text
    assert "3 stay: it reaches the model output 'out'" in text
    pruned = check_zeroed_groups_prune_to_the_same_function(
        model, [graph.group_of("a", 0).id, graph.group_of("a", 5).id,
                graph.group_of("c", 3).id], images((8, 8, 3)))
    assert pruned.get_layer("cat").output_shape[-1] == 4 + 3
    assert pruned.get_layer("out").kernel.shape == (7, 3)


def test_depthwise_with_multiplier_and_separable_and_transpose_convolutions():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 1, name="pw")(inputs)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = layers.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", name="sep")(x)
    x = layers.Conv2DTranspose(4, 3, strides=2, name="up")(x)
    x = layers.Conv1D(3, 2, name="c1d")(layers.Reshape((-1, 4))(x))
    model = keras.Model(inputs, layers.Dense(2, name="out")(layers.Flatten()(x)))
    graph = ChannelGraph(model)
    dw = graph.group_of("pw", 1)
    assert dw is graph.group_of("dw", 2) is graph.group_of("dw", 3)  # input 1 -> outputs 2, 3
    assert graph.macs() == profiling.profile(model).total_macs
    assert graph.params() == model.count_params()
    removed = [dw.id, graph.group_of("sep", 4).id, graph.group_of("up", 0).id,
               graph.group_of("c1d", 1).id]
    pruned = check_zeroed_groups_prune_to_the_same_function(model, removed, images((8, 8, 3)))
    assert [pruned.get_layer(n).output_shape[-1] for n in ("pw", "dw", "sep", "up", "c1d")] == \
        [3, 6, 4, 3, 2]
    assert profiling.profile(pruned).total_macs == graph.macs(removed)
    assert pruned.count_params() == graph.params(removed)


def se_model():
    """Squeeze-excite as MobileNetV3 has it, hard-swish and a hard-sigmoid gate."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = _layers.HardSwish(name="hs")(x)
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(4, 1, name="se_reduce")(s)
    s = layers.ReLU()(s)
    s = layers.Conv2D(8, 1, name="se_expand")(s)
    s = _layers.HardSigmoid(name="gate")(s)
    x = layers.Multiply(name="scale")([x, s])
    x = layers.Conv2D(6, 1, name="project")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return randomize_batchnorm(keras.Model(inputs, layers.Dense(3, name="out")(x)))


def test_squeeze_excite_gate_goes_with_the_channel_it_scales():
    model = se_model()
    graph = ChannelGraph(model)
    group = graph.group_of("conv", 5)
    assert group is graph.group_of("se_expand", 5) is graph.group_of("scale", 5)
    assert set(group.layers) == {"conv", "bn", "se_reduce", "se_expand", "project"}
    assert graph.group_of("se_reduce", 0) is not group
    check_zeroed_groups_prune_to_the_same_function(
        model, [group.id, graph.group_of("conv", 2).id, graph.group_of("se_reduce", 1).id,
                graph.group_of("project", 0).id], images((8, 8, 3)))


def test_grouped_convolution_loses_as_many_filters_in_every_group():
    inputs = keras.Input((6, 6, 4))
    x = layers.Conv2D(12, 1, name="dense_in")(inputs)
    x = layers.ReLU()(x)
    x = layers.Conv2D(12, 1, groups=3, name="grouped")(x)   # 4 in, 4 out per group
    x = layers.ReLU()(x)
    x = layers.Conv2D(6, 1, groups=3, name="grouped2")(x)
    model = keras.Model(inputs, layers.Dense(2, name="out")(layers.GlobalAveragePooling2D()(x)))
    graph = ChannelGraph(model)
    # Input side: the same local channel of the 3 groups goes together.
    assert graph.group_of("dense_in", 1) is graph.group_of("dense_in", 5) is \
        graph.group_of("dense_in", 9)
    # Output side: one filter of each group, paired by weakness.
    for group in graph.prunable:
        if "grouped" in group.channels and "dense_in" not in group.channels:
            indices = [i for i in range(12) if graph.group_of("grouped", i) is group]
            assert sorted(i // 4 for i in indices) == [0, 1, 2]
    removed = [graph.group_of("dense_in", 2).id, graph.group_of("grouped", 0).id]
    pruned = check_zeroed_groups_prune_to_the_same_function(model, removed, images((6, 6, 4)))
    assert pruned.get_layer("grouped").kernel.shape == (1, 1, 3, 9)
    assert pruned.get_layer("grouped").groups == 3


def test_channel_shuffle_and_split_lose_whole_rows():
    inputs = keras.Input((4, 4, 2))
    x = layers.Conv2D(8, 1, name="conv")(inputs)
    x = _layers.ChannelShuffle(4, name="shuffle")(x)     # a (4 rows, 2 columns) grid
    a, b = _layers.ChannelSplit((4, 4), name="split")(x)
    x = layers.Concatenate(name="cat")([layers.Conv2D(3, 1, name="left")(a),
                                        layers.Conv2D(3, 1, name="right")(b)])
    model = keras.Model(inputs, layers.Dense(2, name="out")(layers.GlobalAveragePooling2D()(x)))
    graph = ChannelGraph(model)
    row = graph.group_of("conv", 2)                       # row 1: channels 2 and 3
    assert row is graph.group_of("conv", 3) and row.channels["conv"] == 2
    pruned = check_zeroed_groups_prune_to_the_same_function(model, [row.id], images((4, 4, 2)))
    assert pruned.get_layer("shuffle").groups == 3
    assert pruned.get_layer("split").sizes == (3, 3)


def test_ghost_module_primary_channel_goes_with_its_cheap_copy():
    inputs = keras.Input((6, 6, 3))
    primary = layers.Conv2D(4, 1, name="primary")(inputs)
    cheap = layers.DepthwiseConv2D(3, padding="same", name="cheap")(primary)
    x = layers.Concatenate(name="ghost")([primary, cheap])
    model = keras.Model(inputs, layers.Dense(2, name="out")(layers.GlobalAveragePooling2D()(x)))
    graph = ChannelGraph(model)
    group = graph.group_of("primary", 1)
    assert group.channels["ghost"] == 2                   # ghost channels 1 and 5
    pruned = check_zeroed_groups_prune_to_the_same_function(model, [group.id], images((6, 6, 3)))
    assert pruned.get_layer("ghost").output_shape[-1] == 6


def test_layers_that_mix_channels_freeze_them():
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(4, 1, name="a")(inputs)
    x = layers.LayerNormalization(name="ln")(x)
    x = layers.Conv2D(5, 1, name="b")(x)
    model = keras.Model(inputs, layers.Dense(2)(layers.GlobalAveragePooling2D()(x)))
    graph = ChannelGraph(model)
    assert "'ln' (LayerNormalization) mixes its channels" in graph.group_of("a", 0).frozen
    assert not graph.group_of("b", 0).frozen


class Opaque(layers.Layer):
    def call(self, x):
        return x[..., ::-1]


def opaque_model():
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(4, 1, name="a")(inputs)
    x = Opaque(name="mystery")(x)
    x = layers.Conv2D(5, 1, name="b")(x)
    return keras.Model(inputs, layers.Dense(2)(layers.GlobalAveragePooling2D()(x)))


def test_unknown_layer_is_refused_by_name_and_can_be_protected():
    model = opaque_model()
    with pytest.raises(ChannelPruningError, match=r"layer 'mystery' \(Opaque\).*"
                                                  r"protect=\['mystery'\]"):
        ChannelGraph(model)
    graph = ChannelGraph(model, protect=["mystery"])
    assert graph.group_of("a", 0).frozen == "layer 'mystery' is protected"
    pruned = tfedge.prune_channels(model, 0.2, by="ratio", protect=["mystery"])
    assert pruned.get_layer("a").output_shape[-1] == 4
    assert pruned.get_layer("b").output_shape[-1] < 5


def test_unbuilt_and_nested_models_are_refused():
    with pytest.raises(ChannelPruningError, match="never built"):
        tfedge.prune_channels(keras.Sequential([layers.Dense(3)]))
    inner = keras.Sequential([layers.Conv2D(2, 1, input_shape=(4, 4, 1))], name="inner")
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(inner(inputs))))
    with pytest.raises(ChannelPruningError, match="layer 'inner' is a nested model"):
        tfedge.prune_channels(model)


def test_a_model_without_a_fixed_input_shape_is_refused():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3)(inputs)))
    with pytest.raises(ChannelPruningError, match=r"takes inputs shaped \(None, None, None, 3\)"):
        tfedge.prune_channels(model)


def test_subclassed_shared_and_tfmot_wrapped_models_are_refused():
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="subclassed"):
        tfedge.prune_channels(Sub())
    with pytest.raises(ChannelPruningError, match="subclassed"):
        ChannelGraph(Sub())
    inputs = keras.Input((4, 4, 2))
    shared = layers.Conv2D(2, 1, name="shared")
    model = keras.Model(inputs, layers.Add()([shared(inputs), shared(inputs)]))
    with pytest.raises(ChannelPruningError, match="layer 'shared' is called 2 times"):
        tfedge.prune_channels(model)
    with pytest.raises(ChannelPruningError, match="wrapped by tfmot"):
        tfedge.prune_channels(tfedge.prune(se_model(), 0.5))
    with pytest.raises(TypeError, match="needs a Keras model"):
        tfedge.prune_channels("model.h5")


def test_a_layer_reused_by_another_model_is_not_a_shared_layer():
    model = residual_model()
    keras.Model(model.inputs, model.get_layer("add").output)  # a second model over its layers
    pruned = tfedge.prune_channels(model, 0.3, by="ratio")
    assert pruned.get_layer("a").output_shape[-1] < 6


# -- Targets, criteria, scopes.


def conv_stack():
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for i, filters in enumerate((16, 32, 32)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"c{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return randomize_batchnorm(keras.Model(inputs, layers.Dense(4, name="out")(x)))


@pytest.mark.parametrize("by", ["macs", "params"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_macs_and_parameter_targets_are_met_exactly_counted(by, scope):
    model = conv_stack()
    plan = channels.plan(model, 0.4, by=by, scope=scope)
    before, after = ((plan.macs_before, plan.macs_after) if by == "macs" else
                     (plan.params_before, plan.params_after))
    assert after <= 0.6 * before
    assert after >= 0.5 * before                       # the smallest step that reaches it
    pruned = plan.apply()
    assert profiling.profile(pruned).total_macs == plan.macs_after
    assert pruned.count_params() == plan.params_after
    assert model.count_params() == plan.params_before  # the original is untouched
    if scope == "layer":  # the same fraction of every layer
        kept = [pruned.get_layer(f"c{i}").output_shape[-1] / f
                for i, f in enumerate((16, 32, 32))]
        assert max(kept) - min(kept) <= 1 / 16 + 1e-9


def test_ratio_target_and_per_layer_ratios():
    model = conv_stack()
    pruned = tfedge.prune_channels(model, 0.5, by="ratio", scope="layer")
    assert [pruned.get_layer(f"c{i}").output_shape[-1] for i in range(3)] == [8, 16, 16]
    pruned = tfedge.prune_channels(model, ratios={"c1": 0.25, "c2": 0.5})
    assert [pruned.get_layer(f"c{i}").output_shape[-1] for i in range(3)] == [16, 24, 16]
    with pytest.raises(ChannelPruningError, match="'out' has no output channel that can be "
                                                  "removed .it reaches the model output"):
        tfedge.prune_channels(model, ratios={"out": 0.5})


def test_l1_removes_the_weakest_filters_and_bn_gamma_the_smallest_gammas():
    model = conv_stack()
    kernel = model.get_layer("c1").kernel
    weak = [3, 17, 30]
    values = kernel.numpy()
    values[..., weak] *= 1e-3
    kernel.assign(values)
    plan = channels.plan(model, ratios={"c1": 3 / 32}, criterion="l1")
    graph = plan.graph
    assert sorted(graph.group_of("c1", i).id for i in weak) == sorted(plan.removed)
    bn = model.get_layer("bn2")
    gamma, *rest = bn.get_weights()
    gamma[[0, 1]] = 1e-4
    bn.set_weights([gamma, *rest])
    plan = channels.plan(model, ratios={"c2": 2 / 32}, criterion="bn_gamma")
    assert sorted(plan.removed) == sorted(plan.graph.group_of("c2", i).id for i in (0, 1))


def test_max_ratio_keeps_every_layer_alive_and_unreachable_targets_say_so():
    model = conv_stack()
    pruned = tfedge.prune_channels(model, 0.6, by="macs", max_ratio=0.5)
    assert all(pruned.get_layer(f"c{i}").output_shape[-1] >= f // 2
               for i, f in enumerate((16, 32, 32)))
    with pytest.raises(ChannelPruningError, match="cannot remove 95% of .*MACs: at most"):
        tfedge.prune_channels(model, 0.95, max_ratio=0.5)


def test_inputs_outputs_and_protected_layers_keep_their_channels():
    model = conv_stack()
    pruned = tfedge.prune_channels(model, 0.5, protect=["c1"])
    assert pruned.input_shape == model.input_shape and pruned.output_shape == model.output_shape
    assert pruned.get_layer("c1").output_shape[-1] == 32
    assert pruned.get_layer("c0").output_shape[-1] < 16


@pytest.mark.parametrize("kwargs, message", [
    (dict(target=1.0), "`target` must be a number in \\(0, 1\\)"),
    (dict(target=0), "`target` must be a number in \\(0, 1\\)"),
    (dict(by="flops"), "`by` must be one of"),
    (dict(criterion="random"), "`criterion` must be one of"),
    (dict(scope="block"), "`scope` must be one of"),
    (dict(max_ratio=1.5), "`max_ratio` must be a number in \\(0, 1\\]"),
    (dict(protect=["nope"]), "`protect` names layers the model does not have: \\['nope'\\]"),
    (dict(ratios={"c0": 1.0}), "ratios\\['c0'\\]"),
    (dict(ratios={"zz": 0.5}), "names a layer the model does not have: 'zz'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfedge.prune_channels(conv_stack(), **kwargs)


def test_keras3_models_are_rebuilt_then_pruned():
    import keras as keras3

    model = keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Conv2D(8, 3),
                               keras3.layers.ReLU(), keras3.layers.GlobalAveragePooling2D(),
                               keras3.layers.Dense(3)])
    pruned = tfedge.prune_channels(model, 0.5, by="ratio")
    assert isinstance(pruned, keras.Model)
    assert pruned.layers[1].output_shape[-1] == 4


def test_channels_spec():
    spec = tfedge.Channels(0.5, steps=2, protect="c1")
    assert spec.protect == ("c1",)
    model = conv_stack()
    measure = spec.measure(model)
    half_way = spec.step(model, 1, measure)
    assert 0.70 <= profiling.profile(half_way).total_macs / measure <= 0.75
    done = spec.step(half_way, 2, measure)
    assert 0.45 <= profiling.profile(done).total_macs / measure <= 0.50
    assert done.get_layer("c1").output_shape[-1] == 32
    for kwargs, message in ((dict(steps=0), "`steps`"), (dict(target=2), "`target`"),
                            (dict(by="flops"), "`by`"), (dict(distill="yes"), "`distill`")):
        with pytest.raises(ValueError, match=message):
            tfedge.Channels(**kwargs)


def test_a_pruned_student_learns_from_its_unpruned_self():
    """prune_channels composes with the Distiller, feature maps included: the 1x1 adapter maps
    the pruned layer's fewer channels to the teacher's."""
    teacher = conv_stack()
    student = tfedge.prune_channels(teacher, 0.5)
    assert student.get_layer("c1").output_shape[-1] < 32
    distiller = tfedge.Distiller(student=student, teacher=teacher, features={"c1": "c1"})
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    student_weights = [w.copy() for w in student.get_weights()]
    x, y = images((8, 8, 3), n=8), np.arange(8) % 4
    distiller.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(student_weights, student.get_weights()))


# -- Every zoo family.

ZOO = {
    "mobilenet_v2": dict(width=0.35),
    "mobilenet_v3_small": dict(width=0.35),
    "mobilenet_v3_large": dict(width=0.35, minimalistic=True),
    "shufflenet_v1": dict(width=0.5, groups=3),
    "shufflenet_v2": dict(width=0.5),
    "ghostnet": dict(width=0.5),
    "efficientnet_lite0": dict(width=0.25),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_family_groups_prune_to_the_same_function(name):
    tfedge.training.seed_everything(0)
    model = models.build(name, input_shape=(32, 32, 1), num_classes=10,
                         classifier_activation=None, **ZOO[name])
    randomize_batchnorm(model)
    graph = ChannelGraph(model)
    assert graph.macs() == profiling.profile(model).total_macs
    assert graph.params() == model.count_params()
    chosen = some_groups(graph)
    assert len(chosen) > 10
    pruned = check_zeroed_groups_prune_to_the_same_function(model, chosen, images((32, 32, 1)))
    assert profiling.profile(pruned).total_macs == graph.macs(chosen)
    assert pruned.count_params() == graph.params(chosen)
