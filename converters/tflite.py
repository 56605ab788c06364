"""Keras model -> full-integer `.tflite`, and the check that no float op is left.

    tflite_bytes = to_int8(model, representative_data=splits.representative(200))

The converted model takes int8 input and gives int8 output, quantizes weights per channel
(the converter's default) and has its batch dimension fixed to 1, which keeps SHAPE and
STRIDED_SLICE ops of a dynamic batch out of the microcontroller graph.
"""

import contextlib
import itertools
import logging
import warnings

import numpy as np

from tfedge.converters import tflite_reader

class ConversionError(RuntimeError):
    """The converter failed, or produced a model that is not what was asked for."""


def _single_input_shape(model):
    if len(model.inputs) != 1:
        raise ValueError(f"`model` must have exactly one input for int8 conversion; "
                         f"{model.name} has {len(model.inputs)}")
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"`model` input shape must be fully defined (batch aside). Received: "
                         f"{tuple(model.inputs[0].shape)}; build the model with a fixed "
                         "input_shape")
    return shape


class _DropMessage(logging.Filter):
    def __init__(self, text):
        super().__init__()
        self.text = text

    def filter(self, record):
        return self.text not in record.getMessage()


@contextlib.contextmanager
def _quiet_converter():
    """Hides two converter messages that do not apply to how tfedge calls it.

    The frozen-graph path is chosen on purpose (see `to_int8`), and the warning about missing
    input statistics is spurious: the input scale and zero point come from calibration, as the
    tests check.
    """
    drop = _DropMessage("Please consider providing the trackable_obj argument")
    logger = logging.getLogger("absl")
    logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were "
                                    "expected")
            yield
    finally:
        logger.removeFilter(drop)


def representative_samples(data, input_shape, limit):
    """Yields up to `limit` calibration samples shaped (1, *input_shape), float32.

    `data` may be a tf.data.Dataset of images or (images, labels), batched or not; a numpy
    array of images; or a callable returning an iterable of either (including TFLite's own
    representative_dataset form, lists of one batch).
    """
    if callable(data):
        data = data()
    if isinstance(data, np.ndarray):
        data = [data]
    count = 0
    for element in data:
        if isinstance(element, dict):
            raise ValueError("representative data of dicts is not supported; yield image arrays")
        if isinstance(element, (tuple, list)):
            element = element[0]  # (images, labels) or [images]
        images = np.asarray(element, dtype=np.float32)
        if images.shape == input_shape:
            images = images[None]
        if images.ndim != len(input_shape) + 1 or tuple(images.shape[1:]) != input_shape:
            raise ValueError(
                f"representative data must be images shaped {input_shape} (optionally "
                f"batched); received an element shaped {images.shape}")
        for image in images:
            if count >= limit:
                return
            yield [image[None]]
            count += 1
    if count == 0:
        raise ValueError("representative data is empty: full int8 conversion needs samples "
                         "to calibrate activation ranges")


def converter_for(model):
    """A `tf.lite.TFLiteConverter` for a tf_keras model with its batch dimension fixed to 1.

    It takes the frozen-graph path (no trackable object): about 1 s instead of 30 s through a
    SavedModel for MobileNetV2-0.35 at 32x32, with the same ops. Settings are left at the
    converter's defaults (a float32 model); `to_int8` sets its own.
    """
    from tfedge._keras import require_tf_keras_model, tf

    require_tf_keras_model(model)
    input_shape = _single_input_shape(model)

    @tf.function(input_signature=[tf.TensorSpec((1,) + input_shape, tf.float32)])
    def serve(x):
        return model(x, training=False)

    with _quiet_converter():
        return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])


def to_int8(model, representative_data, *, num_samples=200):
    """Converts a tf_keras model to a full-int8 `.tflite` (bytes) with int8 input and output.

    Raises ConversionError if any float op remains (see `check_full_int8`).
    """
    from tfedge._keras import require_tf_keras_model, tf

    require_tf_keras_model(model)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive integer. Received: "
                         f"num_samples={num_samples!r}")
    input_shape = _single_input_shape(model)
    # Materialize the calibration set once: the converter may iterate it more than once.
    samples = list(representative_samples(representative_data, input_shape, num_samples))
    converter = converter_for(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter(samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    try:
        with _quiet_converter():
            tflite_bytes = converter.convert()
    except Exception as exc:
        raise ConversionError(f"TFLite conversion of {model.name} to int8 failed: {exc}") from exc
    check_full_int8(tflite_bytes)
    return tflite_bytes


def float_ops(tflite_bytes):
    """Operators with a float input or output tensor, as strings like 'DEQUANTIZE #0 (...)'."""
    model = tflite_reader.read_tflite(tflite_bytes)
    found = []
    for subgraph in model.subgraphs:
        tensors = subgraph.tensors
        for op in subgraph.operators:
            floats = [tensors[i] for i in itertools.chain(op.inputs, op.outputs)
                      if i >= 0 and tensors[i].is_float]
            if floats:
                described = ", ".join(f"{t.name!r} {t.type_name}" for t in floats)
                found.append(f"{op.name} #{op.index} in subgraph {subgraph.index} ({described})")
    return found


# TFLite's int8 SOFTMAX (LiteRT and TFLM alike) turns beta * input_scale * 2^26 into a fixed-point
# multiplier that must exceed 1, and aborts the process when it does not.
_SOFTMAX_MIN_INPUT_SCALE = 2.0 ** -26


def degenerate_ops(tflite_bytes):
    """Ops whose calibrated ranges are too narrow for TFLite's int8 kernels to run them."""
    model = tflite_reader.read_tflite(tflite_bytes)
    found = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if op.name != "SOFTMAX":
                continue
            tensor = subgraph.tensors[op.inputs[0]]
            scale = tensor.quantization.scale if tensor.quantization else ()
            if scale and scale[0] <= _SOFTMAX_MIN_INPUT_SCALE:
                found.append(
                    f"SOFTMAX #{op.index} input {tensor.name!r} has scale {scale[0]:.3g} (its "
                    f"calibrated range is about {255 * scale[0]:.3g} wide); TFLite's kernel "
                    f"needs a scale above {_SOFTMAX_MIN_INPUT_SCALE:.3g}")
    return found


def check_full_int8(tflite_bytes):
    """Raises ConversionError if a float op is left, I/O is not int8 with batch 1, or a
    calibrated range is too narrow for TFLite's kernels (which would abort the interpreter)."""
    problems = float_ops(tflite_bytes)
    model = tflite_reader.read_tflite(tflite_bytes)
    main = model.subgraphs[0]
    for role, indices in (("input", main.inputs), ("output", main.outputs)):
        for i in indices:
            tensor = main.tensors[i]
            if tensor.type_name != "INT8":
                problems.append(f"model {role} {tensor.name!r} is {tensor.type_name}, not INT8")
            signature = tensor.shape_signature or tensor.shape
            if not signature or signature[0] != 1:
                problems.append(f"model {role} {tensor.name!r} has batch dimension "
                                f"{signature[:1]}, not a fixed 1")
    degenerate = degenerate_ops(tflite_bytes)
    if degenerate:
        raise ConversionError(
            "the int8 model would abort TFLite's interpreters:\n  " + "\n  ".join(degenerate) +
            "\nThe logits are (almost) constant on the calibration data. Train the model before "
            "converting it, or calibrate with data that exercises it.")
    if problems:
        raise ConversionError(
            "the model is not full int8:\n  " + "\n  ".join(problems) +
            "\nEvery layer must have an int8 TFLite kernel; replace or remove the layers above "
            "(a Lambda or an unsupported op often leaves a float op behind).")
