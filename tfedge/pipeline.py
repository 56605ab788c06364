"""`tfedge.compress`: a Keras model in, a verified int8 deployment out.

    result = tfedge.compress(model, train_data=splits.train(), val_data=splits.val())
    result.metrics["int8_accuracy"], result.metrics["arena_bytes"]
    result.save("out/")

This version quantizes after training (post-training quantization, PTQ), checks the result on
the TFLM interpreter and measures what it cost in accuracy.
"""

import collections
import dataclasses
import os
import time

import numpy as np

from tfedge import _io, report
from tfedge.converters import c_array, tflite, tflite_reader, tflm
from tfedge.converters import interpreter as litert

QUANTIZE_MODES = ("ptq",)
ARTIFACTS = ("model.tflite", "model_data.cc", "model_data.h", "report.json", "report.md")


@dataclasses.dataclass
class CompressResult:
    """What `compress` made: the int8 `.tflite` bytes, the float model and the metrics."""

    tflite: bytes
    metrics: dict
    model: object = dataclasses.field(repr=False, default=None)

    def save(self, directory, *, symbol="g_model"):
        """Writes the five artifacts into `directory`, each atomically. Returns their paths."""
        c_array.check_identifier(symbol)
        _io.ensure_dir(directory)
        cc_text, h_text = c_array.to_c_source(self.tflite, symbol=symbol,
                                              header_name="model_data.h")
        contents = dict(zip(ARTIFACTS, (self.tflite, cc_text, h_text,
                                        report.to_json(self.metrics),
                                        report.markdown(self.metrics))))
        paths = {}
        for name, data in contents.items():
            paths[name] = os.path.join(os.fspath(directory), name)
            _io.write_atomic(paths[name], data)
        return paths


def _as_arrays(data, argument):
    """(x, y) numpy arrays from a tf.data.Dataset of (x, y) batches or an (x, y) tuple."""
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
    if y.ndim == 2:  # one-hot
        y = y.argmax(axis=-1)
    if len(x) != len(y):
        raise ValueError(f"`{argument}` has {len(x)} images but {len(y)} labels")
    return x.astype(np.float32), y.astype(np.int64)


def _check_data_fits(model, x, y, argument):
    want = tuple(model.inputs[0].shape[1:])
    if tuple(x.shape[1:]) != want:
        raise ValueError(f"`{argument}` images are shaped {tuple(x.shape[1:])} but the model "
                         f"takes {want}; resize the data or build the model for it")
    classes = model.outputs[0].shape[-1]
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"`{argument}` labels range over {y.min()}..{y.max()} but the model "
                         f"has {classes} outputs; labels must be 0..{classes - 1}")


def int8_accuracy(tflite_bytes, x, y):
    """Top-1 accuracy of an int8 classifier `.tflite` on float images `x`."""
    interp = litert.make_interpreter(tflite_bytes)
    detail = interp.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    correct = 0
    for image, label in zip(x, y):
        q = litert.quantize(image[None], scale, zero_point, detail["dtype"])
        out = litert.invoke(interp, [q])[0]
        correct += int(np.argmax(out.reshape(-1)) == label)
    return correct / len(y)


def float_accuracy(model, x, y):
    probabilities = model.predict(x, batch_size=64, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == y))


def compress(model, train_data=None, val_data=None, *, representative_data=None,
             quantize="ptq", calibration_samples=200, tflm_check=True, tflm_inputs=20):
    """Quantizes `model` to full int8, checks it on TFLM and measures it.

    Args:
      model: a tf_keras classifier (e.g. from `tfedge.models`), already trained.
      train_data: training data, a tf.data.Dataset of (images, labels) batches or an
        (images, labels) tuple; calibration samples come from it unless `representative_data`
        is given.
      val_data: validation data in the same forms; float and int8 accuracy are measured on it.
      representative_data: calibration images (dataset, array or generator).
      quantize: "ptq" (post-training quantization).
      calibration_samples: how many images calibrate the activation ranges.
      tflm_check: run the model in the TFLM host interpreter: smallest arena, and exact
        agreement with LiteRT's reference kernels on `tflm_inputs` random int8 inputs.

    Returns:
      A `CompressResult`.
    """
    from tfedge._keras import require_tf_keras_model

    require_tf_keras_model(model)
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"`quantize` must be one of {QUANTIZE_MODES}. Received: "
                         f"quantize={quantize!r}")
    if representative_data is None and train_data is None:
        raise ValueError("full int8 conversion needs calibration images: pass `train_data` or "
                         "`representative_data`")
    val = None
    if val_data is not None:
        val = _as_arrays(val_data, "val_data")
        _check_data_fits(model, *val, "val_data")
    if representative_data is None:
        representative_data = train_data[0] if isinstance(train_data, tuple) else train_data

    started = time.perf_counter()
    tflite_bytes = tflite.to_int8(model, representative_data, num_samples=calibration_samples)
    metrics = {
        "model": model.name,
        "params": int(model.count_params()),
        "quantize": quantize,
        "calibration_samples": calibration_samples,
        "tflite_bytes": len(tflite_bytes),
        "conversion_seconds": round(time.perf_counter() - started, 2),
        "ops": dict(collections.Counter(tflite_reader.read_tflite(tflite_bytes).op_names())),
    }
    if val is not None:
        metrics["val_samples"] = int(len(val[1]))
        metrics["float_accuracy"] = float_accuracy(model, *val)
        metrics["int8_accuracy"] = int8_accuracy(tflite_bytes, *val)
        metrics["accuracy_drop_points"] = round(
            100 * (metrics["float_accuracy"] - metrics["int8_accuracy"]), 2)
    if tflm_check:
        metrics["arena_bytes"] = tflm.find_arena_size(tflite_bytes)
        agreement = tflm.compare_with_reference(tflite_bytes, num_inputs=tflm_inputs,
                                                arena_size=metrics["arena_bytes"])
        metrics["tflm_exact"] = agreement.exact
        metrics["tflm_inputs_compared"] = agreement.num_inputs
        metrics["tflm_max_abs_diff"] = agreement.max_abs_diff
    return CompressResult(tflite=tflite_bytes, metrics=metrics, model=model)
