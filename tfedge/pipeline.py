"""`tfedge.compress`: a Keras model in, a smaller, verified microcontroller model out.

    result = tfedge.compress(model, train_data=(x, y), val_data=(x_val, y_val),
                             prune=tfedge.Prune(sparsity=0.75), quantize="qat",
                             teacher=big_model, epochs=3, target="cortex-m4")
    result.metrics["int8_accuracy"], result.metrics["tflite_gzip_bytes"]
    result.save("out/")

The stages run in this order, each on the previous one's model, and each only when asked for:

    prune (tfmot magnitude pruning, fine-tuned)  ->  distill (when no other stage trains)
      ->  QAT (pruning-preserving after pruning)  ->  strip  ->  convert  ->  TFLM check

With a `teacher`, every training stage learns from it (`tfedge.Distiller`). The caller's model is
never changed: every stage works on a copy. Every check of the arguments and the data runs before
the first stage, so a mistake costs seconds, not a training run.
"""

import collections
import dataclasses
import math
import time
import warnings

import numpy as np

from tfedge import _io, report
from tfedge.converters import c_array, tflite, tflite_reader, tflm
from tfedge.converters import interpreter as litert

# quantize= -> (the .tflite's mode as `tflite.quantization_mode` names it, needs data)
QUANTIZE_MODES = {
    "ptq": ("int8", True),
    "qat": ("int8", True),
    "int16x8": ("int16x8", True),
    "dynamic": ("dynamic", False),
    "float16": ("float16", False),
    None: ("float32", False),
}
FULL_INTEGER = ("int8", "int16x8")
ARTIFACTS = ("model.tflite", "model_data.cc", "model_data.h", "op_resolver.h",
             "model_settings.h", "report.json", "report.md", report.CHART)


@dataclasses.dataclass(frozen=True)
class Target:
    """A microcontroller budget: the model's flash and the tensor arena's RAM must fit."""

    name: str
    flash_bytes: int
    ram_bytes: int
    board: str = ""


# Boards commonly used with TFLM; the budget is the whole chip's, firmware included.
TARGETS = {
    "cortex-m4": Target("cortex-m4", 1024 * 1024, 256 * 1024,
                        "Nordic nRF52840 (Arduino Nano 33 BLE Sense)"),
    "cortex-m7": Target("cortex-m7", 1024 * 1024, 320 * 1024, "ST STM32F746 (32F746G-DISCO)"),
}


def _target(value):
    if value is None or isinstance(value, Target):
        return value
    if value in TARGETS:
        return TARGETS[value]
    raise ValueError(f"`target` must be one of {sorted(TARGETS)} or a tfedge.pipeline.Target("
                     f"name, flash_bytes, ram_bytes). Received: target={value!r}")


@dataclasses.dataclass
class CompressResult:
    """What `compress` made: the `.tflite` bytes, the final Keras model and the metrics."""

    tflite: bytes
    metrics: dict
    model: object = dataclasses.field(repr=False, default=None)

    def save(self, directory, *, symbol="g_model"):
        """Writes the artifacts (`ARTIFACTS`) into `directory`, all or none
        (`_io.write_files_atomic`): the model, the firmware files `tfedge export-c` makes (C
        array, op resolver with the int8 kernels, arena size) and the report.

        Returns {file name: path}.
        """
        from tfedge.converters import firmware, op_resolver

        c_array.check_symbol(symbol)
        cc_text, h_text = c_array.to_c_source(self.tflite, symbol=symbol,
                                              header_name="model_data.h")
        # The arena compress measured, with export-c's margin (None: not measured, 0 in the
        # header).
        arena = (tflm.arena_for_budget(self.metrics["arena_bytes"])
                 if self.metrics.get("arena_bytes") else None)
        contents = dict(zip(ARTIFACTS, (
            self.tflite, cc_text, h_text,
            op_resolver.op_resolver_source(self.tflite, int8_kernels=True),
            firmware.settings_source(self.tflite, arena),
            report.to_json(self.metrics), report.markdown(self.metrics),
            report.chart_png(self.metrics))))
        return _io.write_files_atomic(directory, contents)


# ---------------------------------------------------------------------------------------------
# Checks of the arguments and the data, all run before any stage.


def _as_arrays(data, argument, classes):
    """(x, y) numpy arrays from a tf.data.Dataset of (x, y) batches or an (x, y) tuple.

    Labels may be class indices or one-hot rows of `classes` columns.
    """
    if isinstance(data, tuple) and len(data) == 2:
        x, y = (np.asarray(a) for a in data)
    else:
        xs, ys = [], []
        try:
            for element in data:
                if not (isinstance(element, (tuple, list)) and len(element) == 2):
                    raise ValueError
                xs.append(np.asarray(element[0]))
                ys.append(np.asarray(element[1]))
        except (TypeError, ValueError):
            raise ValueError(f"`{argument}` must be a tf.data.Dataset of (images, labels) "
                             f"batches or an (images, labels) tuple of arrays. Received: "
                             f"{type(data).__name__}") from None
        if not xs:
            raise ValueError(f"`{argument}` is empty")
        x, y = np.concatenate(xs), np.concatenate(ys)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        if y.shape[1] != classes:
            raise ValueError(f"`{argument}` labels are one-hot rows of {y.shape[1]} classes but "
                             f"the model has {classes} outputs")
        y = y.argmax(axis=-1)
    y = y.reshape(len(y), -1) if y.ndim > 1 else y
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if len(x) != len(y):
        raise ValueError(f"`{argument}` has {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise ValueError(f"`{argument}` is empty")
    if y.ndim != 1 or (y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"`{argument}` labels must be class indices (or one-hot rows); "
                         f"received labels shaped {y.shape} of {y.dtype}")
    if x.dtype.kind not in "fiub":
        raise ValueError(f"`{argument}` images must be numbers; received {x.dtype}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{argument}` images contain NaN or infinite values")
    return x, y.astype(np.int64)


def _check_data_fits(model, x, y, argument):
    want = tuple(model.inputs[0].shape[1:])
    if tuple(x.shape[1:]) != want:
        raise ValueError(f"`{argument}` images are shaped {tuple(x.shape[1:])} but the model "
                         f"takes {want}; resize the data or build the model for it")
    classes = model.outputs[0].shape[-1]
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"`{argument}` labels range over {y.min()}..{y.max()} but the model "
                         f"has {classes} outputs; labels must be 0..{classes - 1}")


def _check_model(model, argument, *, wraps_layers):
    from tfedge._keras import keras

    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise TypeError(f"`{argument}` ({model.name}) is a subclassed model; tfedge needs the "
                        "Functional or Sequential API to rewrite and convert it. Rebuild it with "
                        "keras.Input(...) and layer calls.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"`{argument}` must be a classifier with one input and one output; "
                         f"{model.name} has {len(model.inputs)} and {len(model.outputs)}")
    if len(model.outputs[0].shape) != 2:
        raise ValueError(f"`{argument}` must output class scores shaped (batch, classes); "
                         f"{model.name} outputs {tuple(model.outputs[0].shape)}")
    if any(d is None for d in model.inputs[0].shape[1:]):
        raise ValueError(f"`{argument}` input shape must be fully defined (batch aside); "
                         f"{model.name} takes {tuple(model.inputs[0].shape)}. Build it with a "
                         "fixed input_shape.")
    nested = [l.name for l in model.layers if isinstance(l, keras.Model)]
    if nested and wraps_layers:
        raise TypeError(f"`{argument}` contains nested models ({', '.join(nested)}); pruning "
                        "and QAT wrap individual layers and cannot reach inside them. Build one "
                        "flat Functional model (call the inner model's layers directly).")


def _outputs_probabilities(model):
    """True when the model ends in a softmax (tfedge's factories do); False for logits."""
    last = model.layers[-1]
    if type(last).__name__ == "Softmax":
        return True
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


STAGES = ("prune", "distill", "qat")


def _stage_epochs(epochs, default=2):
    """`epochs` (a count, or a dict per stage) as {stage: epochs}."""
    if isinstance(epochs, dict):
        unknown = sorted(set(epochs) - set(STAGES))
        if unknown:
            raise ValueError(f"`epochs` names unknown stages {unknown}; the training stages are "
                             f"{list(STAGES)}")
        per_stage = {stage: epochs.get(stage, default) for stage in STAGES}
    else:
        per_stage = dict.fromkeys(STAGES, epochs)
    for stage, value in per_stage.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`epochs` must be an integer >= 1 or a dict of them per stage. "
                             f"Received: epochs={epochs!r}")
    return per_stage


def _check_count(name, value, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")


# ---------------------------------------------------------------------------------------------
# Measurements.


def tflite_accuracy(tflite_bytes, x, y):
    """Top-1 accuracy of a classifier `.tflite` (any mode) on float images `x`, in LiteRT.

    Integer inputs are quantized with the model's input scale and zero point.
    """
    interp = litert.make_interpreter(tflite_bytes)
    detail = interp.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    integer = np.issubdtype(detail["dtype"], np.integer)
    correct = 0
    for image, label in zip(x, y):
        sample = image[None]
        if integer:
            sample = litert.quantize(sample, scale, zero_point, detail["dtype"])
        out = litert.invoke(interp, [sample.astype(detail["dtype"])])[0]
        correct += int(np.argmax(out.reshape(-1)) == label)
    return correct / len(y)


int8_accuracy = tflite_accuracy


def float_accuracy(model, x, y):
    scores = model.predict(x, batch_size=64, verbose=0)
    return float(np.mean(np.argmax(scores, axis=-1) == y))


def _size_row(stage, tflite_bytes, accuracy, **extra):
    row = {"stage": stage, "tflite_bytes": len(tflite_bytes),
           "gzip_bytes": tflite.gzip_size(tflite_bytes), "accuracy": accuracy}
    row.update(extra)
    return row


# ---------------------------------------------------------------------------------------------
# Training stages.


@dataclasses.dataclass
class _Trainer:
    """Fine-tunes a stage's model: plain cross-entropy, or distillation from `teacher`."""

    x: np.ndarray
    y: np.ndarray
    epochs: dict  # stage -> epochs
    batch_size: int
    learning_rate: float
    seed: int
    verbose: int
    from_logits: bool
    teacher: object = None
    distill: dict = None
    run_eagerly: bool = False

    def steps(self, stage):
        return math.ceil(len(self.x) / self.batch_size) * self.epochs[stage]

    def fit(self, model, stage, callbacks=()):
        from tfedge import training
        from tfedge._keras import keras, tf

        teacher_trainable = getattr(self.teacher, "trainable", None)
        training.seed_everything(self.seed)
        schedule = keras.optimizers.schedules.CosineDecay(self.learning_rate, self.steps(stage))
        optimizer = keras.optimizers.Adam(schedule)
        if self.teacher is not None:
            from tfedge.distill import Distiller

            options = dict(self.distill or {})
            options.setdefault("from_logits", self.from_logits)
            net = Distiller(student=model, teacher=self.teacher, **options)
            net.compile(optimizer=optimizer, metrics=["accuracy"], run_eagerly=self.run_eagerly)
        else:
            net = model
            net.compile(optimizer=optimizer,
                        loss=keras.losses.SparseCategoricalCrossentropy(
                            from_logits=self.from_logits),
                        metrics=["accuracy"], run_eagerly=self.run_eagerly)
        data = (tf.data.Dataset.from_tensor_slices((self.x, self.y))
                .shuffle(len(self.x), seed=self.seed, reshuffle_each_iteration=True)
                .batch(self.batch_size))
        try:
            net.fit(data, epochs=self.epochs[stage], verbose=self.verbose,
                    callbacks=list(callbacks))
        finally:
            if self.teacher is not None:  # the Distiller froze it; the caller's stays as it was
                self.teacher.trainable = teacher_trainable
        return model


# ---------------------------------------------------------------------------------------------


def compress(model, train_data=None, val_data=None, *, prune=None, quantize="ptq",
             teacher=None, distill=None, epochs=2, batch_size=32, learning_rate=5e-4,
             target=None, representative_data=None, calibration_samples=None,
             calibration_batches=None, tflm_check=True, tflm_inputs=20, seed=0, verbose=0,
             run_eagerly=False):
    """Prunes, distills, quantizes and converts a trained classifier, and measures each step.

    Args:
      model: a trained tf_keras classifier (Functional or Sequential), e.g. from
        `tfedge.models`. A Keras 3 model is rebuilt as a tf_keras one (`tfedge.compat`).
      train_data: (images, labels) arrays or a tf.data.Dataset of (images, labels) batches; the
        fine-tuning data of the training stages and, unless `representative_data` is given, the
        calibration images. Loaded into memory once.
      val_data: held-out data in the same forms; every accuracy is measured on it.
      prune: None, a sparsity such as 0.75, or `tfedge.Prune(...)`: magnitude pruning with
        `epochs` of fine-tuning, then stripped; or `tfedge.Channels(...)`: structured channel
        pruning, which makes the model itself smaller (`Channels.steps` rounds of pruning, each
        fine-tuned `epochs["prune"]` epochs, distilled from the unpruned model by default).
      quantize: "ptq" (full int8, calibrated after training), "qat" (full int8 after
        quantization-aware fine-tuning; pruning-preserving when pruned), "int16x8" (int16
        activations, int8 weights, for models that lose too much at int8), "dynamic" (int8
        weights, float activations), "float16", or None (float32).
        Full-integer modes need data; with none at all, "ptq" falls back to "dynamic" and warns.
      teacher: a trained (larger) model; every training stage then distills from it. When no
        stage trains (no pruning, no QAT), a distillation stage of `epochs` epochs runs.
      distill: keyword arguments for `tfedge.Distiller` (temperature, alpha, features, beta).
      epochs: fine-tuning epochs of each training stage, or a dict per stage such as
        {"prune": 8, "qat": 2} (stages: "prune", "distill", "qat"; missing ones get 2).
      batch_size, learning_rate: fine-tuning of each training stage (Adam, cosine decay).
      target: "cortex-m4", "cortex-m7" or a `Target`: the report says whether the model and its
        arena fit the chip, and the target demands a full-integer model.
      representative_data: calibration images (dataset, array or generator).
      calibration_samples, calibration_batches: how much of the calibration data to use
        (images, or leading batches of a batched dataset); 200 images by default.
      tflm_check: for full-integer models, find the smallest TFLM arena and check TFLM's outputs
        against LiteRT's reference kernels on `tflm_inputs` random inputs.
      seed: seeds fine-tuning (shuffling, dropout) for repeatable runs.
      verbose: Keras `fit` verbosity of the training stages.
      run_eagerly: train without tracing a graph (Keras' `compile(run_eagerly=...)`): faster
        for a handful of steps, slower for real runs.

    Returns:
      A `CompressResult`; `metrics` holds every measurement, `metrics["stages"]` one row per
      stage (accuracy, `.tflite` bytes raw and gzipped).
    """
    from tfedge import channels, compat, pruning, quantization
    from tfedge._keras import clone_with_weights

    # -- Arguments and data, all checked before any work.
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"`quantize` must be one of {list(QUANTIZE_MODES)}. Received: "
                         f"quantize={quantize!r}")
    prune = pruning.as_prune_spec(prune)
    target = _target(target)
    epochs = _stage_epochs(epochs)
    for name, value, minimum in (("batch_size", batch_size, 1), ("tflm_inputs", tflm_inputs, 1)):
        _check_count(name, value, minimum)
    if not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be a number > 0. Received: "
                         f"learning_rate={learning_rate!r}")
    if distill is not None and teacher is None:
        raise ValueError("`distill` options were given without a `teacher` to distill from")
    model = compat.as_tf_keras(model)
    trains = prune is not None or quantize == "qat" or teacher is not None
    _check_model(model, "model", wraps_layers=prune is not None or quantize == "qat")
    by_channels = isinstance(prune, channels.Channels)
    if by_channels:
        # Builds the dependency graph now: a layer it cannot handle fails before any training.
        channels.ChannelGraph(model, protect=prune.protect, criterion=prune.criterion)
    if teacher is not None:
        teacher = compat.as_tf_keras(teacher)
        _check_model(teacher, "teacher", wraps_layers=False)
        if tuple(teacher.inputs[0].shape[1:]) != tuple(model.inputs[0].shape[1:]):
            raise ValueError(f"the teacher takes {tuple(teacher.inputs[0].shape[1:])} images but "
                             f"the model {tuple(model.inputs[0].shape[1:])}; both must read the "
                             "same data")
        if teacher.outputs[0].shape[-1] != model.outputs[0].shape[-1]:
            raise ValueError(f"the teacher has {teacher.outputs[0].shape[-1]} outputs but the "
                             f"model {model.outputs[0].shape[-1]}; both must predict the same "
                             "classes")
    has_data = train_data is not None or representative_data is not None
    mode, needs_data = QUANTIZE_MODES[quantize]
    if trains and train_data is None:
        stages = [s for s, on in (("pruning", prune is not None), ("QAT", quantize == "qat"),
                                  ("distillation", teacher is not None)) if on]
        raise ValueError(f"{' and '.join(stages)} fine-tune the model: pass `train_data`")
    if needs_data and not has_data:
        if quantize != "ptq":
            raise ValueError(f"quantize={quantize!r} needs calibration images: pass "
                             "`train_data` or `representative_data`")
        warnings.warn("compress() got no data, so it made a dynamic-range model (int8 weights, "
                      "float activations), which microcontroller runtimes cannot run. Full int8 "
                      "needs representative data: pass `train_data` or `representative_data`.",
                      UserWarning, stacklevel=2)
        quantize, (mode, needs_data) = "dynamic", QUANTIZE_MODES["dynamic"]
    if target is not None and mode not in FULL_INTEGER:
        raise ValueError(f"target {target.name!r} runs full-integer models only; use "
                         f"quantize='ptq', 'qat' or 'int16x8' (got quantize={quantize!r})")
    if calibration_samples is not None:
        _check_count("calibration_samples", calibration_samples)
    if calibration_batches is not None:
        _check_count("calibration_batches", calibration_batches)
    train = val = None
    classes = model.outputs[0].shape[-1]
    if train_data is not None:
        train = _as_arrays(train_data, "train_data", classes)
        _check_data_fits(model, *train, "train_data")
    if val_data is not None:
        val = _as_arrays(val_data, "val_data", classes)
        _check_data_fits(model, *val, "val_data")
    if representative_data is None and train is not None:
        representative_data = train[0]
    calibration_images = None
    if needs_data:
        # Drawn once, here: the data may be a one-shot iterator, and its shape is checked now.
        calibration_images = np.concatenate([sample[0] for sample in tflite.representative_samples(
            representative_data, tuple(model.inputs[0].shape[1:]), calibration_samples,
            num_batches=calibration_batches)])

    # -- The original model.
    from tfedge import profiling

    started = time.perf_counter()
    seconds = {}
    metrics = {"model": model.name, "quantize": quantize, "mode": mode}
    shape = profiling.profile(model)
    metrics.update(params=int(shape.total_params), macs=int(shape.total_macs))
    if val is not None:
        metrics["val_samples"] = int(len(val[1]))
        metrics["float_accuracy"] = float_accuracy(model, *val)
    original = tflite.to_float32(model)
    stages = [_size_row("original (float32)", original, metrics.get("float_accuracy"))]
    metrics.update(original_tflite_bytes=len(original),
                   original_gzip_bytes=stages[0]["gzip_bytes"])
    seconds["original"] = time.perf_counter() - started

    trainer = None
    if trains:
        trainer = _Trainer(*train, epochs=epochs, batch_size=batch_size,
                           learning_rate=float(learning_rate), seed=seed, verbose=verbose,
                           from_logits=not _outputs_probabilities(model), teacher=teacher,
                           distill=distill, run_eagerly=run_eagerly)
        metrics.update(epochs=dict(epochs), train_samples=int(len(train[1])))
        if teacher is not None:
            metrics["teacher"] = teacher.name
            metrics["teacher_params"] = int(teacher.count_params())
            if val is not None:
                metrics["teacher_accuracy"] = float_accuracy(teacher, *val)
    current = model
    pruned_names = None

    # -- Prune channels: the model shrinks, round after round, each fine-tuned.
    if by_channels:
        t = time.perf_counter()
        fine_tune = trainer
        if teacher is None and prune.distill:
            fine_tune = dataclasses.replace(trainer, teacher=model)
            metrics["channel_teacher"] = "the unpruned model"
        original_measure = prune.measure(model)
        for step in range(1, prune.steps + 1):
            current = prune.step(current, step, original_measure)  # a new, smaller model
            fine_tune.fit(current, "prune")
        pruned_profile = profiling.profile(current)
        metrics.update(channel_target=prune.target, channel_by=prune.by,
                       channel_criterion=prune.criterion, channel_scope=prune.scope,
                       channel_steps=prune.steps, pruned_params=int(pruned_profile.total_params),
                       pruned_macs=int(pruned_profile.total_macs))
        metrics["macs_removed"] = round(1 - metrics["pruned_macs"] / metrics["macs"], 4)
        metrics["params_removed"] = round(1 - metrics["pruned_params"] / metrics["params"], 4)
        metrics["channels_per_layer"] = channels.channel_changes(model, current)
        accuracy = float_accuracy(current, *val) if val is not None else None
        metrics["pruned_accuracy"] = accuracy
        stages.append(_size_row("channel-pruned (float32)", tflite.to_float32(current), accuracy))
        seconds["prune"] = time.perf_counter() - t

    # -- Prune.
    if prune is not None and not by_channels:
        t = time.perf_counter()
        wrapped = prune.wrap(model, trainer.steps("prune"))
        pruned_names = pruning.pruned_layer_names(wrapped)
        trainer.fit(wrapped, "prune", callbacks=pruning.pruning_callbacks())
        current = pruning.strip(wrapped)
        metrics.update(prune_target=prune.sparsity, prune_schedule=prune.schedule,
                       sparsity=pruning.overall_sparsity(current, pruned_names),
                       pruned_layers=len(pruned_names))
        if prune.m_by_n:
            metrics["m_by_n"] = list(prune.m_by_n)
        metrics["sparsity_per_layer"] = [
            {"layer": n, "weights": w, "zeros": z, "sparsity": round(s, 4)}
            for n, w, z, s in pruning.sparsity_report(current, pruned_names)]
        accuracy = float_accuracy(current, *val) if val is not None else None
        metrics["pruned_accuracy"] = accuracy
        stages.append(_size_row("pruned (float32)", tflite.to_float32(current), accuracy,
                                sparsity=metrics["sparsity"]))
        seconds["prune"] = time.perf_counter() - t

    # -- Distill, when no other stage trains.
    if teacher is not None and prune is None and quantize != "qat":
        t = time.perf_counter()
        current = trainer.fit(clone_with_weights(model), "distill")
        accuracy = float_accuracy(current, *val) if val is not None else None
        metrics["distilled_accuracy"] = accuracy
        stages.append(_size_row("distilled (float32)", tflite.to_float32(current), accuracy))
        seconds["distill"] = time.perf_counter() - t

    # -- Quantization-aware training.
    if quantize == "qat":
        t = time.perf_counter()
        current = quantization.quantize_aware(current, preserve_sparsity=pruned_names is not None)
        trainer.fit(current, "qat", callbacks=[pruning.KeepZeros(current, pruned_names)]
                    if pruned_names else ())
        if val is not None:
            metrics["qat_accuracy"] = float_accuracy(current, *val)
        if pruned_names:
            metrics["sparsity_after_qat"] = pruning.overall_sparsity(current, pruned_names)
        seconds["qat"] = time.perf_counter() - t

    # -- Convert.
    t = time.perf_counter()
    calibration = dict(num_samples=None if calibration_images is None
                       else len(calibration_images))
    if mode == "int8":
        tflite_bytes = tflite.to_int8(current, calibration_images, **calibration)
    elif mode == "int16x8":
        tflite_bytes = tflite.to_int16x8(current, calibration_images, **calibration)
    elif mode == "dynamic":
        tflite_bytes = tflite.to_dynamic_range(current)
    elif mode == "float16":
        tflite_bytes = tflite.to_float16(current)
    else:
        tflite_bytes = tflite.to_float32(current)
    seconds["convert"] = time.perf_counter() - t
    if needs_data:
        metrics["calibration_samples"] = len(calibration_images)
    metrics.update(tflite_bytes=len(tflite_bytes), tflite_gzip_bytes=tflite.gzip_size(tflite_bytes),
                   ops=dict(collections.Counter(tflite_reader.read_tflite(tflite_bytes)
                                                .op_names())))
    metrics["size_reduction"] = round(metrics["original_tflite_bytes"] / len(tflite_bytes), 2)
    metrics["gzip_size_reduction"] = round(
        metrics["original_gzip_bytes"] / metrics["tflite_gzip_bytes"], 2)
    if val is not None:
        accuracy = tflite_accuracy(tflite_bytes, *val)
        metrics[f"{mode}_accuracy"] = accuracy
        metrics["accuracy_drop_points"] = round(100 * (metrics["float_accuracy"] - accuracy), 2)
    else:
        accuracy = None
    stages.append(_size_row(f"final ({mode})", tflite_bytes, accuracy))
    metrics["stages"] = stages

    # -- TFLM.
    if tflm_check and mode in FULL_INTEGER:
        t = time.perf_counter()
        try:
            metrics["arena_bytes"] = tflm.find_arena_size(tflite_bytes)
            agreement = tflm.compare_with_reference(tflite_bytes, num_inputs=tflm_inputs,
                                                    arena_size=metrics["arena_bytes"])
        except tflm.TFLMError as exc:
            if mode == "int8":
                raise
            # TFLM's int16 kernels cover fewer ops; the .tflite is still valid for LiteRT.
            metrics["tflm_error"] = str(exc)
            warnings.warn(f"TFLM cannot run the int16x8 model: {exc}", UserWarning, stacklevel=2)
        else:
            metrics["tflm_exact"] = agreement.exact
            metrics["tflm_inputs_compared"] = agreement.num_inputs
            metrics["tflm_max_abs_diff"] = agreement.max_abs_diff
            if mode == "int16x8" and not agreement.exact:
                # Measured: TFLM's int16 FULLY_CONNECTED keeps a 16-bit multiplier and its MUL
                # rounds the rescale in double, LiteRT's in float: off by one step at times.
                warnings.warn(f"TFLM's int16x8 outputs differ from LiteRT's reference kernels "
                              f"by up to {agreement.max_abs_diff} (TFLM's int16 kernels round "
                              "differently); int8 models are bit-exact", UserWarning,
                              stacklevel=2)
        seconds["tflm"] = time.perf_counter() - t
    if target is not None:
        metrics.update(target=target.name, target_board=target.board,
                       target_flash_bytes=target.flash_bytes, target_ram_bytes=target.ram_bytes)
        fits = len(tflite_bytes) <= target.flash_bytes
        if "arena_bytes" in metrics:
            fits = fits and metrics["arena_bytes"] <= target.ram_bytes
        metrics["fits_target"] = fits
        if not fits:
            warnings.warn(f"the model ({len(tflite_bytes):,} B) or its arena "
                          f"({metrics.get('arena_bytes', 0):,} B) does not fit {target.name} "
                          f"({target.flash_bytes:,} B flash, {target.ram_bytes:,} B RAM)",
                          UserWarning, stacklevel=2)
    metrics["stage_seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    metrics["total_seconds"] = round(time.perf_counter() - started, 2)
    return CompressResult(tflite=tflite_bytes, metrics=metrics, model=current)
