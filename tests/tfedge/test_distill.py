import numpy as np
import pytest

import tfedge
from tfedge._keras import keras, layers
from tfedge.pruning import pruning_callbacks


def classifier(width, seed, logits=False):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(4, activation=None if logits else "softmax")(x))


RNG = np.random.default_rng(0)
IMAGES = RNG.random((32, 8, 8, 1), np.float32)
LABELS = RNG.integers(0, 4, 32)


def snapshot(model):
    return [w.copy() for w in model.get_weights()]


def test_one_step_changes_the_student_and_not_the_teacher():
    student, teacher = classifier(4, 1), classifier(16, 2)
    s0, t0 = snapshot(student), snapshot(teacher)
    distiller = tfedge.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    history = distiller.fit(IMAGES, LABELS, batch_size=32, epochs=1, verbose=0)
    assert {"loss", "distillation_loss", "accuracy"} <= set(history.history)
    for before, after in zip(t0, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(b, a) for b, a in zip(s0, student.get_weights()))


@pytest.mark.parametrize("from_logits", [False, True])
def test_loss_is_the_formula(from_logits):
    student, teacher = classifier(4, 1, from_logits), classifier(16, 2, from_logits)
    t_value, alpha = 3.0, 0.7
    distiller = tfedge.Distiller(student=student, teacher=teacher, temperature=t_value,
                                 alpha=alpha, from_logits=from_logits)
    s_out, t_out = student(IMAGES).numpy(), teacher(IMAGES).numpy()
    total, soft, hard = (float(v) for v in distiller.losses_for(LABELS, s_out, t_out))

    def log_p(out):
        z = out.astype(np.float64) if from_logits else np.log(np.clip(out, 1e-7, 1))
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    def soft_p(out):
        z = log_p(out) / t_value
        z = np.exp(z - z.max(-1, keepdims=True))
        return z / z.sum(-1, keepdims=True)

    p_t, p_s = soft_p(t_out), soft_p(s_out)
    expected_soft = np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), -1))
    expected_hard = np.mean(-log_p(s_out)[np.arange(len(LABELS)), LABELS])
    assert soft == pytest.approx(expected_soft, rel=1e-4, abs=1e-6)
    assert hard == pytest.approx(expected_hard, rel=1e-4)
    assert total == pytest.approx(alpha * t_value**2 * expected_soft +
                                  (1 - alpha) * expected_hard, rel=1e-4)


def test_a_student_that_copies_the_teacher_has_no_soft_loss():
    teacher = classifier(4, 1)
    twin = keras.models.clone_model(teacher)
    twin.set_weights(teacher.get_weights())
    out = teacher(IMAGES)
    _, soft, _ = tfedge.Distiller(student=twin, teacher=teacher).losses_for(LABELS, out, out)
    assert float(soft) == pytest.approx(0.0, abs=1e-6)


def test_composes_with_a_pruned_student():
    student = tfedge.prune(classifier(8, 1), sparsity=0.5, skip=())
    distiller = tfedge.Distiller(student=student, teacher=classifier(16, 2))
    distiller.compile(optimizer="adam")
    distiller.fit(IMAGES, LABELS, batch_size=8, epochs=1, verbose=0,
                  callbacks=pruning_callbacks())
    kernel = tfedge.strip(student).layers[1].kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=0), "Received: temperature=0"),
    (dict(alpha=1.5), "Received: alpha=1.5"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfedge.Distiller(student=classifier(4, 1), teacher=classifier(8, 2), **kwargs)


def test_mismatched_classes_are_refused():
    inputs = keras.Input((8, 8, 1))
    other = keras.Model(inputs, layers.Dense(7, activation="softmax")(layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match=r"student outputs \(4,\) but the teacher \(7,\)"):
        tfedge.Distiller(student=classifier(4, 1), teacher=other)
    with pytest.raises(TypeError, match="`teacher` must be a tf_keras Model"):
        tfedge.Distiller(student=classifier(4, 1), teacher="big.h5")


# Feature distillation (FitNets): tiny conv nets on 16x16 inputs with named layers.
MAPS_RNG = np.random.default_rng(1)
IMAGES16 = MAPS_RNG.random((32, 16, 16, 1), np.float32)
LABELS16 = MAPS_RNG.integers(0, 4, 32)


def conv_net(seed, prefix, convs, pool_after, fc):
    """Conv2D layers `{prefix}_conv{i}` (a 2x2 max-pool after the `pool_after`-th), global
    pooling, `{prefix}_fc` (Dense, relu) and a 4-class softmax `{prefix}_head`."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 1), name=f"{prefix}_image")
    x = inputs
    for i, filters in enumerate(convs, 1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                          name=f"{prefix}_conv{i}")(x)
        if i == pool_after:
            x = layers.MaxPooling2D(2, name=f"{prefix}_pool")(x)
    x = layers.GlobalAveragePooling2D(name=f"{prefix}_gap")(x)
    x = layers.Dense(fc, activation="relu", name=f"{prefix}_fc")(x)
    return keras.Model(inputs, layers.Dense(4, activation="softmax", name=f"{prefix}_head")(x))


def small_student(seed=1):
    # s_conv1 (16, 16, 4) -> pool -> s_conv2 (8, 8, 6); s_fc (8,)
    return conv_net(seed, "s", (4, 6), pool_after=1, fc=8)


def big_teacher(seed=2):
    # t_conv1 (16, 16, 8), t_conv2 (16, 16, 12) -> pool -> t_conv3 (8, 8, 16); t_fc (16,)
    return conv_net(seed, "t", (8, 12, 16), pool_after=2, fc=16)


def feature_maps(model, names):
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    return [m.numpy().astype(np.float64) for m in probe(IMAGES16, training=False)]


def test_feature_loss_is_the_formula_with_pooling_and_vectors():
    student, teacher = small_student(), big_teacher()
    pairs = {"s_conv1": "t_conv1",   # same size
             "s_conv2": "t_conv2",   # the teacher's map is 2x larger: average-pooled
             "s_fc": "t_fc"}         # vectors: a Dense adapter
    t_value, alpha, beta = 2.0, 0.6, 0.5
    distiller = tfedge.Distiller(student, teacher, temperature=t_value, alpha=alpha,
                                 features=pairs, beta=beta)
    assert distiller.features == tuple(pairs.items())
    rng = np.random.default_rng(3)
    for adapter in distiller.adapters:
        adapter.set_weights([rng.normal(size=w.shape).astype(np.float32)
                             for w in adapter.get_weights()])
    s_maps, t_maps = feature_maps(student, pairs), feature_maps(teacher, pairs.values())

    def pool2(x):
        n, h, w, c = x.shape
        return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))

    terms = []
    for adapter, s, t, pooled in zip(distiller.adapters, s_maps, t_maps, (False, True, False)):
        kernel, bias = (w.astype(np.float64) for w in adapter.get_weights())
        adapted = s @ kernel.reshape(kernel.shape[-2:]) + bias   # a 1x1 conv is a matmul
        terms.append(np.mean((adapted - (pool2(t) if pooled else t)) ** 2))
    expected = np.mean(terms)
    assert terms[1] > 0 and len(set(terms)) == 3
    assert float(distiller.feature_loss_for(s_maps, t_maps)) == pytest.approx(expected, rel=1e-4)

    # The whole loss, as evaluate() reports it: logit terms + beta * feature term.
    s_out, t_out = student(IMAGES16).numpy(), teacher(IMAGES16).numpy()
    logit_total, _, _ = distiller.losses_for(LABELS16, s_out, t_out)
    distiller.compile(optimizer="sgd")
    result = distiller.evaluate(IMAGES16, LABELS16, batch_size=32, verbose=0, return_dict=True)
    assert result["feature_loss"] == pytest.approx(expected, rel=1e-4)
    assert result["loss"] == pytest.approx(float(logit_total) + beta * expected, rel=1e-4)


def test_feature_step_trains_student_and_adapters_not_teacher():
    student, teacher = small_student(), big_teacher()
    names = [l.name for l in student.layers]
    distiller = tfedge.Distiller(student, teacher,
                                 features={"s_conv2": "t_conv2", "s_fc": "t_fc"})
    s0, t0 = snapshot(student), snapshot(teacher)
    a0 = [snapshot(adapter) for adapter in distiller.adapters]
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    history = distiller.fit(IMAGES16, LABELS16, batch_size=32, epochs=1, verbose=0)
    assert {"loss", "distillation_loss", "feature_loss", "accuracy"} <= set(history.history)
    assert history.history["feature_loss"][0] > 0
    for before, after in zip(t0, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert all(not np.array_equal(b, a) for b, a in zip(s0, student.get_weights()))
    for adapter, before in zip(distiller.adapters, a0):
        assert all(not np.array_equal(b, a) for b, a in zip(before, adapter.get_weights()))
    # The adapters belong to the Distiller; the student is still the user's one-output model.
    assert [l.name for l in student.layers] == names
    probabilities = student.predict(IMAGES16[:5], verbose=0)
    assert isinstance(probabilities, np.ndarray) and probabilities.shape == (5, 4)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)


def test_the_feature_gradient_reaches_the_student():
    # Same start, plain SGD: only the feature term differs, so the student must end elsewhere.
    teacher, kernels = big_teacher(), []
    for beta in (0.0, 1.0):
        student = small_student()
        distiller = tfedge.Distiller(student, teacher, features={"s_conv1": "t_conv1"},
                                     beta=beta)
        distiller.adapters[0].set_weights([np.full((1, 1, 4, 8), 0.5, np.float32),
                                           np.zeros(8, np.float32)])
        distiller.compile(optimizer=keras.optimizers.SGD(0.1))
        distiller.fit(IMAGES16, LABELS16, batch_size=32, epochs=1, verbose=0)
        kernels.append(student.get_layer("s_conv1").kernel.numpy())
    assert np.abs(kernels[0] - kernels[1]).max() > 1e-4


def test_features_resolve_through_prune_wrappers():
    # Default skip: s_conv1 (the stem) stays a plain layer, shared with prune's hidden copy.
    student = tfedge.prune(small_student(), sparsity=0.5)
    names = [l.name for l in student.layers]
    assert "s_conv1" in names and "prune_low_magnitude_s_conv2" in names
    teacher = big_teacher()
    # The wrapped name works too.
    assert tfedge.Distiller(student, teacher, features={"prune_low_magnitude_s_fc": "t_fc"})
    distiller = tfedge.Distiller(student, teacher, features=[
        ("s_conv1", "t_conv1"), ("s_conv2", "t_conv2"), ("s_fc", "t_fc")])
    # tfmot's pruning callback walks `distiller.layers`: the internal multi-output views must not
    # be there, or it would meet every pruned layer twice.
    assert {id(l) for l in distiller.layers} == {id(student), id(teacher),
                                                 *map(id, distiller.adapters)}
    distiller.compile(optimizer="adam")
    history = distiller.fit(IMAGES16, LABELS16, batch_size=8, epochs=1, verbose=0,
                            callbacks=pruning_callbacks())
    assert np.isfinite(history.history["feature_loss"][0])
    kernel = tfedge.strip(student).get_layer("s_conv2").kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.02)
    assert student.predict(IMAGES16[:3], verbose=0).shape == (3, 4)


@pytest.mark.parametrize("features", [None, {"s_conv2": "t_conv2"}])
def test_composes_with_a_qat_student(features):
    student = tfedge.quantize_aware(small_student())
    assert "quant_s_conv2" in [l.name for l in student.layers]
    teacher = big_teacher()
    s0, t0 = snapshot(student), snapshot(teacher)
    distiller = tfedge.Distiller(student, teacher, features=features)
    distiller.compile(optimizer="adam", run_eagerly=True)
    history = distiller.fit(IMAGES16[:16], LABELS16[:16], batch_size=16, epochs=1, verbose=0)
    assert ("feature_loss" in history.history) == (features is not None)
    assert np.isfinite(history.history["loss"][0])
    for before, after in zip(t0, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(b, a) for b, a in zip(s0, student.get_weights()))
    assert student.predict(IMAGES16[:3], verbose=0).shape == (3, 4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(features={"s_conv1": "t_conv3"}),
     r"student layer 's_conv1' outputs \(16, 16, 4\) and teacher layer 't_conv3' outputs "
     r"\(8, 8, 16\): the teacher's map must have the student's height and width or an "
     r"integer multiple"),
    (dict(features={"s_conv2": "t_fc"}),
     r"student layer 's_conv2' outputs \(8, 8, 6\) and teacher layer 't_fc' outputs \(16,\): "
     r"a feature pair must be two maps"),
    (dict(features={"s_conv9": "t_conv1"}),
     r"student layer 's_conv9' that .* does not have; its layers are 's_image', 's_conv1', "
     r"'s_pool', 's_conv2'"),
    (dict(features=[("s_conv1", "t_conv9")]), r"teacher layer 't_conv9' that .* 't_conv3'"),
    (dict(features="s_conv1"), r"dict or a list of \(student, teacher\) pairs.*"
                               r"Received: features='s_conv1'"),
    (dict(features={"s_conv1": "t_conv1"}, beta=-1), r"Received: beta=-1"),
    (dict(features={"s_conv1": "t_conv1"}, beta="1"), r"Received: beta='1'"),
])
def test_bad_features_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfedge.Distiller(small_student(), big_teacher(), **kwargs)


def test_a_layer_called_twice_is_refused():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 1))
    shared = layers.Conv2D(1, 3, padding="same", name="shared")
    x = layers.GlobalAveragePooling2D()(shared(shared(inputs)))
    student = keras.Model(inputs, layers.Dense(4, activation="softmax")(x))
    with pytest.raises(ValueError, match="student layer 'shared' is called 2 times"):
        tfedge.Distiller(student, big_teacher(), features={"shared": "t_conv1"})
