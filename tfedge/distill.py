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
"""

import numbers

from tfedge._keras import keras, require_tf_keras_model, tf

_EPSILON = 1e-7


def _log_probabilities(outputs, from_logits):
    if from_logits:
        return tf.nn.log_softmax(outputs, axis=-1)
    return tf.math.log(tf.clip_by_value(outputs, _EPSILON, 1.0))


class Distiller(keras.Model):
    """A keras.Model whose `fit` trains `student` against labels and a frozen `teacher`."""

    def __init__(self, student, teacher, temperature=4.0, alpha=0.9, from_logits=False,
                 **kwargs):
        super().__init__(**kwargs)
        require_tf_keras_model(student, "student")
        require_tf_keras_model(teacher, "teacher")
        if not isinstance(temperature, numbers.Real) or not temperature > 0:
            raise ValueError(f"`temperature` must be a number > 0, e.g. 4. Received: "
                             f"temperature={temperature!r}")
        if not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
            raise ValueError(f"`alpha` must be a number in [0, 1] (the weight of the teacher's "
                             f"soft targets). Received: alpha={alpha!r}")
        s_shape, t_shape = tuple(student.output_shape), tuple(teacher.output_shape)
        if s_shape[1:] != t_shape[1:]:
            raise ValueError(f"the student outputs {s_shape[1:]} but the teacher {t_shape[1:]}; "
                             "both must predict the same classes")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.from_logits = from_logits
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self._soft_tracker = keras.metrics.Mean(name="distillation_loss")

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

    def train_step(self, data):
        images, labels = data[0], data[1]
        teacher_out = self.teacher(images, training=False)
        with tf.GradientTape() as tape:
            student_out = self.student(images, training=True)
            total, soft, _ = self.losses_for(labels, student_out, teacher_out)
            total += sum(self.student.losses)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return self._update_metrics(labels, student_out, total, soft)

    def test_step(self, data):
        images, labels = data[0], data[1]
        student_out = self.student(images, training=False)
        total, soft, _ = self.losses_for(labels, student_out,
                                         self.teacher(images, training=False))
        return self._update_metrics(labels, student_out, total, soft)

    def _update_metrics(self, labels, student_out, total, soft):
        self._loss_tracker.update_state(total)
        self._soft_tracker.update_state(soft)
        self.compiled_metrics.update_state(labels, student_out)
        results = {m.name: m.result() for m in self.metrics}
        return results

    @property
    def metrics(self):
        return [self._loss_tracker, self._soft_tracker] + self.compiled_metrics.metrics
