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
