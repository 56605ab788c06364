"""Knowledge distillation: a small student learns from a larger, frozen teacher.

    distiller = tfedge.Distiller(student=small, teacher=big, temperature=4.0, alpha=0.9)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    distiller.fit(train, epochs=10)          # trains `student` in place; `teacher` never changes

Loss (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"):

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels, student)

The T^2 factor keeps the soft term's gradients on the same scale as the hard term's when T
changes. tfedge's factories end in a softmax, so by default outputs are read as probabilities
and their logarithms serve as logits (softmax is unchanged by the constant that log drops); set
`from_logits=True` for models that output logits. The student may be a pruned
(`tfedge.prune`) or quantization-aware (`tfedge.quantize_aware`) model.

Feature distillation (FitNets, Romero et al. 2015, "FitNets: Hints for Thin Deep Nets") also
pulls inner feature maps of the student towards the teacher's:

    distiller = tfedge.Distiller(small, big, features={"block5_add": "block5_add"}, beta=1.0)

For each (student layer, teacher layer) pair a trainable 1x1 convolution, the adapter (owned by
the Distiller, never added to the student), maps the student's channels to the teacher's, and
the loss gains

    beta * mean over pairs of mean((adapter(student feature) - teacher feature)^2)

Both maps must have the same height and width, or the teacher's an integer multiple of the
student's: it is then average-pooled down. Vectors (batch, features), e.g. Dense outputs, pair
with vectors through a Dense adapter (a 1x1 convolution on a 1x1 map); other ranks are refused.
Layer names are the original ones, also in students wrapped by `tfedge.prune`
(`prune_low_magnitude_<name>`) and `tfedge.quantize_aware` (`quant_<name>`).
"""

import collections
import collections.abc
import math
import numbers

from tfedge._keras import keras, require_tf_keras_model, tf

_EPSILON = 1e-7
_SHOWN_NAMES = 8


def _log_probabilities(outputs, from_logits):
    if from_logits:
        return tf.nn.log_softmax(outputs, axis=-1)
    return tf.math.log(tf.clip_by_value(outputs, _EPSILON, 1.0))


# One feature pair: the names the user gave, and the teacher's pooling window (None: none).
_Pair = collections.namedtuple("_Pair", ["student", "teacher", "pool"])


class _FeaturePlan:
    """The feature pairs and the multi-output views of both models, hidden from Keras' tracking.

    The views share the models' layers; were Keras to track them as sub-models of the
    Distiller, tfmot's pruning callback would find every pruned layer twice.
    """

    def __init__(self, pairs, student_view, teacher_view):
        self.pairs = pairs
        self.student_view = student_view
        self.teacher_view = teacher_view


def _feature_pairs(features):
    """`features` as a tuple of (student name, teacher name); () for None or empty."""
    if features is None:
        return ()
    if isinstance(features, collections.abc.Mapping):
        pairs = list(features.items())
    elif isinstance(features, (list, tuple)):
        pairs = [tuple(p) if isinstance(p, (list, tuple)) else p for p in features]
    else:
        pairs = [None]
    if not all(isinstance(p, tuple) and len(p) == 2 and all(isinstance(n, str) for n in p)
               for p in pairs):
        raise ValueError("`features` must map student layer names to teacher layer names, as a "
                         "dict or a list of (student, teacher) pairs, e.g. {'block5_add': "
                         f"'block5_add'}}. Received: features={features!r}")
    return tuple(pairs)


def _wrapped(layer):
    """`layer` and the layers wrapped inside it (tfmot's prune_low_magnitude_*, quant_*)."""
    while isinstance(layer, keras.layers.Layer):
        yield layer
        layer = getattr(layer, "layer", None)


def _find_layer(model, name, argument):
    """The top-level layer of `model` called `name` or wrapping a layer called `name`."""
    for layer in model.layers:
        if layer.name == name:
            return layer
    for layer in model.layers:
        if any(inner.name == name for inner in _wrapped(layer)):
            return layer
    known = [list(_wrapped(layer))[-1].name for layer in model.layers]
    shown = ", ".join(repr(n) for n in known[:_SHOWN_NAMES])
    more = f" and {len(known) - _SHOWN_NAMES} more" if len(known) > _SHOWN_NAMES else ""
    raise ValueError(f"`features` names a {argument} layer {name!r} that {model.name} does not "
                     f"have; its layers are {shown}{more}")


def _feature_tensor(model, name, argument):
    """The output of layer `name` in the graph of `model`.

    Not `layer.output`: that is the layer's first call, which may belong to another model, as
    the layers `tfedge.prune` leaves unwrapped are shared with the copy it started from. The
    model's own calls are the nodes tf_keras keeps in `_nodes_by_depth` (as its `summary` and
    `clone_model` read them).
    """
    layer = _find_layer(model, name, argument)
    outputs = [tf.nest.flatten(node.outputs) for nodes in model._nodes_by_depth.values()
               for node in nodes if node.layer is layer]
    if len(outputs) != 1:
        raise ValueError(f"{argument} layer {name!r} is called {len(outputs)} times in "
                         f"{model.name}, so its feature map is ambiguous; pick a layer called "
                         "once")
    if len(outputs[0]) != 1:
        raise ValueError(f"{argument} layer {name!r} has {len(outputs[0])} outputs; pick a "
                         "layer with one")
    return outputs[0][0]


def _require_graph_model(model, argument):
    if not getattr(model, "_is_graph_network", False) or not model.inputs:
        raise TypeError(f"feature distillation reads inner layers' outputs, so `{argument}` "
                        f"must be a Functional model or a Sequential model built with an input "
                        f"shape; {model.name} is neither. Rebuild it with the Functional API.")
    if len(model.outputs) != 1:
        raise ValueError(f"`{argument}` must have one output; {model.name} has "
                         f"{len(model.outputs)}")


def _pooling(student_name, student_shape, teacher_name, teacher_shape):
    """The teacher map's average-pooling window, None when none is needed; raises on mismatch."""
    s_shape, t_shape = tuple(student_shape)[1:], tuple(teacher_shape)[1:]
    where = (f"student layer {student_name!r} outputs {s_shape} and teacher layer "
             f"{teacher_name!r} outputs {t_shape}")
    if len(s_shape) != len(t_shape) or len(s_shape) not in (1, 3):
        raise ValueError(f"{where}: a feature pair must be two maps (batch, height, width, "
                         "channels) or two vectors (batch, features); pick layers of one kind")
    if None in s_shape or None in t_shape:
        raise ValueError(f"{where}: feature shapes must be fully known; build both models with "
                         "a fixed input size")
    if len(s_shape) == 1 or s_shape[:2] == t_shape[:2]:
        return None
    (s_h, s_w), (t_h, t_w) = s_shape[:2], t_shape[:2]
    if t_h < s_h or t_w < s_w or t_h % s_h or t_w % s_w:
        raise ValueError(f"{where}: the teacher's map must have the student's height and width "
                         "or an integer multiple of them (it is then average-pooled down); "
                         "pair layers at matching resolutions")
    return (t_h // s_h, t_w // s_w)


def _plan_features(student, teacher, pairs):
    """(a _FeaturePlan, one adapter per pair) for (student name, teacher name) pairs."""
    student_maps = [_feature_tensor(student, s, "student") for s, _ in pairs]
    teacher_maps = [_feature_tensor(teacher, t, "teacher") for _, t in pairs]
    planned, adapters = [], []
    for i, ((s_name, t_name), s_map, t_map) in enumerate(zip(pairs, student_maps, teacher_maps)):
        planned.append(_Pair(s_name, t_name, _pooling(s_name, s_map.shape, t_name, t_map.shape)))
        channels, name = int(t_map.shape[-1]), f"adapter_{i}_{s_name}"
        adapter = (keras.layers.Conv2D(channels, 1, name=name) if s_map.shape.rank == 4
                   else keras.layers.Dense(channels, name=name))
        adapter.build(s_map.shape)
        adapters.append(adapter)
    student_view = keras.Model(student.inputs, [student.outputs[0], *student_maps],
                               name=f"{student.name}_features")
    teacher_view = keras.Model(teacher.inputs, [teacher.outputs[0], *teacher_maps],
                               name=f"{teacher.name}_features")
    return _FeaturePlan(tuple(planned), student_view, teacher_view), adapters


class Distiller(keras.Model):
    """A keras.Model whose `fit` trains `student` against labels and a frozen `teacher`.

    Args:
      student: the tf_keras model to train (in place); it may be wrapped by `tfedge.prune` or
        `tfedge.quantize_aware`.
      teacher: a tf_keras model predicting the same classes; frozen (`trainable=False`) and
        always called with `training=False`.
      temperature: T > 0, the softmax temperature of the soft targets.
      alpha: in [0, 1], the weight of the soft (teacher) term; 1 - alpha weighs the labels.
      from_logits: True when both models output logits rather than probabilities.
      features: None, or (student layer name, teacher layer name) pairs as a dict or a list of
        2-tuples: FitNets feature distillation through trainable 1x1 adapters (see the module
        docstring). Names are the layers' original names, also in pruned and QAT students.
        Both models must then be Functional (or Sequential with an input shape).
      beta: >= 0, the weight of the feature loss. Default 1.0: the term is added unscaled.
        Being an MSE, it grows with the square of the teacher's activations: if `feature_loss`
        dwarfs `distillation_loss` in the first epochs, lower beta. Unused without `features`.

    Total loss: alpha * T^2 * KL + (1 - alpha) * CE + beta * feature_loss. `fit` reports `loss`,
    `distillation_loss` (the KL term) and, with `features`, `feature_loss` (unweighted).
    """

    def __init__(self, student, teacher, temperature=4.0, alpha=0.9, from_logits=False,
                 features=None, beta=1.0, **kwargs):
        super().__init__(**kwargs)
        require_tf_keras_model(student, "student")
        require_tf_keras_model(teacher, "teacher")
        if not isinstance(temperature, numbers.Real) or not temperature > 0:
            raise ValueError(f"`temperature` must be a number > 0, e.g. 4. Received: "
                             f"temperature={temperature!r}")
        if not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
            raise ValueError(f"`alpha` must be a number in [0, 1] (the weight of the teacher's "
                             f"soft targets). Received: alpha={alpha!r}")
        if (not isinstance(beta, numbers.Real) or isinstance(beta, bool)
                or not math.isfinite(beta) or beta < 0):
            raise ValueError(f"`beta` must be a finite number >= 0 (the weight of the feature "
                             f"loss), e.g. 1. Received: beta={beta!r}")
        pairs = _feature_pairs(features)
        s_shape, t_shape = tuple(student.output_shape), tuple(teacher.output_shape)
        if s_shape[1:] != t_shape[1:]:
            raise ValueError(f"the student outputs {s_shape[1:]} but the teacher {t_shape[1:]}; "
                             "both must predict the same classes")
        self._plan, self._adapters = None, []
        if pairs:
            _require_graph_model(student, "student")
            _require_graph_model(teacher, "teacher")
            self._plan, self._adapters = _plan_features(student, teacher, pairs)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.from_logits = from_logits
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self._soft_tracker = keras.metrics.Mean(name="distillation_loss")
        self._feature_tracker = keras.metrics.Mean(name="feature_loss")

    @property
    def features(self):
        """The (student layer, teacher layer) pairs, in adapter order; () without features."""
        return tuple((p.student, p.teacher) for p in self._pairs)

    @property
    def adapters(self):
        """The trainable adapters (1x1 Conv2D, or Dense for vectors), one per feature pair."""
        return tuple(self._adapters)

    @property
    def _pairs(self):
        return self._plan.pairs if self._plan is not None else ()

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def losses_for(self, labels, student_out, teacher_out):
        """(total, soft, hard) losses of one batch."""
        t = self.temperature
        teacher_soft = tf.nn.softmax(_log_probabilities(teacher_out, self.from_logits) / t)
        student_log_soft = tf.nn.log_softmax(
            _log_probabilities(student_out, self.from_logits) / t)
        soft = tf.reduce_mean(tf.reduce_sum(
            teacher_soft * (tf.math.log(tf.clip_by_value(teacher_soft, _EPSILON, 1.0))
                            - student_log_soft), axis=-1))
        hard = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, student_out, from_logits=self.from_logits))
        total = self.alpha * t * t * soft + (1.0 - self.alpha) * hard
        return total, soft, hard

    def feature_loss_for(self, student_features, teacher_features):
        """The unweighted feature loss of one batch: the mean over pairs of the MSE between
        adapter(student map) and the (pooled) teacher map. Maps come in `features` order."""
        if self._plan is None:
            raise ValueError("this Distiller has no feature pairs; pass `features` to use "
                             "feature distillation")
        if not len(student_features) == len(teacher_features) == len(self._pairs):
            raise ValueError(f"expected {len(self._pairs)} student and teacher feature maps "
                             f"(one per pair in `features`). Received: "
                             f"{len(student_features)} and {len(teacher_features)}")
        terms = []
        for pair, adapter, s_map, t_map in zip(self._pairs, self._adapters, student_features,
                                               teacher_features):
            t_map = tf.cast(t_map, tf.float32)
            if pair.pool is not None:
                t_map = tf.nn.avg_pool2d(t_map, pair.pool, pair.pool, "VALID")
            s_map = adapter(tf.cast(s_map, tf.float32))
            terms.append(tf.reduce_mean(tf.math.squared_difference(s_map, t_map)))
        return tf.add_n(terms) / float(len(terms))

    def _student_forward(self, images, training):
        """(outputs, feature maps); no maps without features."""
        if self._plan is None:
            return self.student(images, training=training), []
        outputs, *maps = self._plan.student_view(images, training=training)
        return outputs, maps

    def _teacher_forward(self, images):
        if self._plan is None:
            return self.teacher(images, training=False), []
        outputs, *maps = self._plan.teacher_view(images, training=False)
        return outputs, maps

    def _total(self, labels, student_out, student_maps, teacher_out, teacher_maps):
        total, soft, _ = self.losses_for(labels, student_out, teacher_out)
        feature = None
        if self._plan is not None:
            feature = self.feature_loss_for(student_maps, teacher_maps)
            total += self.beta * feature
        return total, soft, feature

    def train_step(self, data):
        images, labels = data[0], data[1]
        teacher_out, teacher_maps = self._teacher_forward(images)
        with tf.GradientTape() as tape:
            student_out, student_maps = self._student_forward(images, training=True)
            total, soft, feature = self._total(labels, student_out, student_maps, teacher_out,
                                               teacher_maps)
            total += sum(self.student.losses)
        variables = self.student.trainable_variables + [
            v for adapter in self._adapters for v in adapter.trainable_variables]
        self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return self._update_metrics(labels, student_out, total, soft, feature)

    def test_step(self, data):
        images, labels = data[0], data[1]
        student_out, student_maps = self._student_forward(images, training=False)
        teacher_out, teacher_maps = self._teacher_forward(images)
        total, soft, feature = self._total(labels, student_out, student_maps, teacher_out,
                                           teacher_maps)
        return self._update_metrics(labels, student_out, total, soft, feature)

    def _update_metrics(self, labels, student_out, total, soft, feature):
        self._loss_tracker.update_state(total)
        self._soft_tracker.update_state(soft)
        if feature is not None:
            self._feature_tracker.update_state(feature)
        self.compiled_metrics.update_state(labels, student_out)
        results = {m.name: m.result() for m in self.metrics}
        return results

    @property
    def metrics(self):
        trackers = [self._loss_tracker, self._soft_tracker]
        if self._plan is not None:
            trackers.append(self._feature_tracker)
        return trackers + self.compiled_metrics.metrics
