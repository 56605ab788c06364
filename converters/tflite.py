"""Keras model -> `.tflite` in one of five modes, and the checks on what came out.

    tflite_bytes = to_int8(model, representative_data=splits.representative(200))
    quantization_mode(tflite_bytes)       # "int8"
    gzip_size(tflite_bytes)               # what sparsity saves shows here

| function | weights | activations, input and output | needs data | runs on TFLM |
| --- | --- | --- | --- | --- |
| `to_int8` | int8 | int8 | yes | yes |
| `to_int16x8` | int8 | int16 | yes | most ops (see `to_int16x8`) |
| `to_dynamic_range` | int8 | float32 | no | no (hybrid ops) |
| `to_float16` | float16 | float32 | no | no (float16 DEQUANTIZE) |
| `to_float32` | float32 | float32 | no | yes |

Every conversion fixes the batch dimension to 1, which keeps SHAPE and STRIDED_SLICE ops of a
dynamic batch out of the microcontroller graph. Weights of the integer modes are quantized per
channel (the converter's default).

The full-integer modes calibrate in a worker process (`_calibration_worker.py`, one per
process, started by the first such conversion and reused): TensorFlow's calibrator can crash
the process it runs in (it segfaults on LSTM and GRU layers that are not unrolled), and there a
crash becomes a ConversionError that names the layers to blame and what to do. The graph
conversion itself stays in this process, and the bytes are those of an in-process conversion.
"""

import atexit
import contextlib
import gzip
import importlib.resources
import inspect
import itertools
import json
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import numpy as np

from tfedge.converters import _calibration_worker as _protocol
from tfedge.converters import tflite_reader

class ConversionError(RuntimeError):
    """The converter failed, or produced a model that is not what was asked for."""


def _single_input_shape(model):
    if len(model.inputs) != 1:
        raise ValueError(f"`model` must have exactly one input for TFLite conversion; "
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


DEFAULT_NUM_SAMPLES = 200


def _check_count(name, value):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, or None. Received: "
                         f"{name}={value!r}")
    return int(value)


def calibration_limits(num_samples=None, num_batches=None):
    """Checks the two calibration limits and returns them as (num_samples, num_batches).

    Neither given means the first 200 samples; `num_batches` alone means every image of the
    first `num_batches` elements of the data; both mean those images, at most `num_samples`.
    """
    num_samples = _check_count("num_samples", num_samples)
    num_batches = _check_count("num_batches", num_batches)
    if num_samples is None and num_batches is None:
        num_samples = DEFAULT_NUM_SAMPLES
    return num_samples, num_batches


def representative_samples(data, input_shape, num_samples=None, *, num_batches=None):
    """Yields calibration samples shaped [(1, *input_shape)], float32, one image at a time.

    `data` may be a tf.data.Dataset of images or (images, labels), batched or not; a numpy
    array of images; or a callable returning an iterable of either (including TFLite's own
    representative_dataset form, lists of one batch).

    `num_batches` takes every image of the first `num_batches` elements of `data` (a batch of a
    batched dataset, one image of an unbatched one; a numpy array is a single batch) and
    `num_samples` caps the number of images; see `calibration_limits` for the default of 200.
    Elements past what is needed are never drawn from `data`. The limits are checked at once;
    the data as it is drawn.
    """
    num_samples, num_batches = calibration_limits(num_samples, num_batches)
    input_shape = tuple(input_shape)
    return _samples(data, input_shape, num_samples, num_batches)


def _samples(data, input_shape, num_samples, num_batches):
    if callable(data):
        data = data()
    if isinstance(data, np.ndarray):
        data = [data]
    count = 0
    for element in itertools.islice(data, num_batches):
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
            yield [image[None]]
            count += 1
            if count == num_samples:
                return
    if count == 0:
        raise ValueError("representative data is empty: full-integer conversion needs samples "
                         "to calibrate activation ranges")


def converter_for(model):
    """A `tf.lite.TFLiteConverter` for a tf_keras model with its batch dimension fixed to 1.

    It takes the frozen-graph path (no trackable object): about 1 s instead of 30 s through a
    SavedModel for MobileNetV2-0.35 at 32x32, with the same ops. Settings are left at the
    converter's defaults (a float32 model, `to_float32`); the other modes set their own.
    """
    from tfedge._keras import require_tf_keras_model, tf

    require_tf_keras_model(model)
    input_shape = _single_input_shape(model)

    @tf.function(input_signature=[tf.TensorSpec((1,) + input_shape, tf.float32)])
    def serve(x):
        return model(x, training=False)

    with _quiet_converter():
        return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])


# activations -> (mode name, ops set, inference I/O type name, tensor type name)
_FULL_INTEGER = {
    "int8": ("int8", "TFLITE_BUILTINS_INT8", "int8", "INT8"),
    "int16": ("int16x8", "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8", "int16",
              "INT16"),
}
_UNSUPPORTED_16X8 = re.compile(r"not yet supported for op: '(\w+)'")


def _convert(converter, model, mode):
    """Runs the converter; a failure becomes a ConversionError that names the mode and says what
    the converter said (each line once: it repeats itself for every op of a kind)."""
    try:
        with _quiet_converter():
            return converter.convert()
    except ConversionError:
        raise  # the calibration worker's own report (a crash, a hang, a TensorFlow mismatch)
    except Exception as exc:
        lines = list(dict.fromkeys(line for line in str(exc).splitlines() if line.strip()))
        message = f"TFLite conversion of {model.name} to {mode} failed: " + "\n".join(lines)
        unsupported = list(dict.fromkeys(_UNSUPPORTED_16X8.findall(str(exc))))
        if unsupported:
            message += (f"\nint16x8 quantization has no kernel for {', '.join(unsupported)}; "
                        "convert with to_int8, or replace the layers that make these ops")
        raise ConversionError(message) from exc


# activations -> the input/output types a full-integer model may have, the default first.
IO_TYPES = {"int8": ("int8", "uint8", "float32"), "int16": ("int16", "float32")}
_TENSOR_TYPE = {"int8": "INT8", "uint8": "UINT8", "int16": "INT16", "float32": "FLOAT32"}


def _check_io_types(activations, input_type, output_type):
    allowed = IO_TYPES[activations]
    for name, value in (("input_type", input_type), ("output_type", output_type)):
        if value not in allowed:
            raise ValueError(f"`{name}` must be one of {allowed} for a full-{activations} model. "
                             f"Received: {name}={value!r}")


def _to_full_integer(model, representative_data, activations, num_samples, num_batches,
                     input_type=None, output_type=None):
    from tfedge._keras import require_tf_keras_model, tf

    num_samples, num_batches = calibration_limits(num_samples, num_batches)
    input_type = input_type or IO_TYPES[activations][0]
    output_type = output_type or IO_TYPES[activations][0]
    _check_io_types(activations, input_type, output_type)
    require_tf_keras_model(model)
    input_shape = _single_input_shape(model)
    mode, ops_set, _, _ = _FULL_INTEGER[activations]
    # Materialize the calibration set once: the converter may iterate it more than once.
    samples = list(representative_samples(representative_data, input_shape, num_samples,
                                          num_batches=num_batches))
    _start_calibration_worker()  # it imports TensorFlow while the graph converts here
    converter = converter_for(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter(samples)
    converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, ops_set)]
    converter.inference_input_type = getattr(tf, input_type)
    converter.inference_output_type = getattr(tf, output_type)
    _calibrate_in_worker(converter, model, mode, samples)
    tflite_bytes = _convert(converter, model, mode)
    check_full_integer(tflite_bytes, activations, input_type=input_type,
                       output_type=output_type)
    return tflite_bytes


# --- TensorFlow's calibrator, isolated in a worker process.
#
# Full-integer conversion is two steps: the MLIR converter turns the graph into a float
# `.tflite` (in this process: it reports errors rather than crashing), then
# `TFLiteConverterBase._quantize` runs the TFLite interpreter over the calibration samples and
# quantizes the model. That second step can kill the process (TF 2.21 segfaults on recurrent
# layers that are not unrolled), so it runs in `_calibration_worker.py`: one child per process,
# started on first use, reused by later conversions, replaced after a crash or a timeout and
# stopped at exit. The child exits on its own when its stdin closes or its parent is gone.

CALIBRATION_TIMEOUT_BASE = 600  # seconds
CALIBRATION_TIMEOUT_PER_SAMPLE = 2  # seconds


def calibration_timeout(num_samples):
    """Seconds that one calibration may take in the worker before it is killed:
    CALIBRATION_TIMEOUT_BASE (600, which also covers the worker's start, importing TensorFlow)
    plus CALIBRATION_TIMEOUT_PER_SAMPLE (2) per calibration sample. A tiny model calibrates in
    milliseconds per sample, MobileNetV2-0.35 at 32x32 in about 10 ms; the limit only ends
    a worker that hangs."""
    return CALIBRATION_TIMEOUT_BASE + CALIBRATION_TIMEOUT_PER_SAMPLE * num_samples


class _WorkerDied(Exception):
    """The worker ended before it replied: `how` ("SIGSEGV", "exit status 1"), and whether it
    had `started` (imported TensorFlow and said so)."""

    def __init__(self, how, started):
        super().__init__(how)
        self.how, self.started = how, started


class _WorkerTimedOut(Exception):
    pass


class _CalibrationWorker:
    """One running `_calibration_worker.py`, its private temporary folder and its log.

    The folder is the worker's TMPDIR and holds its stderr (`worker.log`, emptied after each
    answered request); whichever of the two processes outlives the other removes it. The
    worker's first frame says it has imported TensorFlow (`started`).
    """

    def __init__(self):
        self.started = False
        self.folder = tempfile.mkdtemp(prefix=_protocol.FOLDER_PREFIX)
        self.log_path = os.path.join(self.folder, "worker.log")
        self.owner = os.getpid()
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TMPDIR=self.folder, TMP=self.folder,
                   TEMP=self.folder)
        try:
            with open(self.log_path, "ab") as log, \
                    importlib.resources.as_file(importlib.resources.files(
                        "tfedge.converters").joinpath("_calibration_worker.py")) as script:
                self.proc = subprocess.Popen(
                    [sys.executable, str(script), self.folder], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=log, env=env, bufsize=0)
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise

    def alive(self):
        return self.owner == os.getpid() and self.proc.poll() is None

    def log_tail(self, lines=12):
        """The last lines of the worker's stderr: from a crash, the Python stack that
        faulthandler printed (without its list of extension modules)."""
        try:
            with open(self.log_path, "rb") as f:
                text = f.read()[-65536:].decode("utf-8", "replace")
        except OSError:
            return ""
        kept = text.strip().splitlines()
        if "Fatal Python error" in text:
            start = max(i for i, line in enumerate(kept) if "Fatal Python error" in line)
            kept = [line for line in kept[start:] if line.strip()
                    and not line.startswith("Extension modules")]
            return "\n".join(kept[:lines])
        return "\n".join(kept[-lines:])

    def exchange(self, request, timeout):
        """Sends one request frame and returns the reply (header, payload). Raises _WorkerDied
        when the worker ends first, _WorkerTimedOut when `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        stdin, stdout = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(stdin, False)
        pending = memoryview(request)
        received = bytearray()
        with selectors.DefaultSelector() as selector:
            selector.register(stdin, selectors.EVENT_WRITE)
            selector.register(stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _WorkerTimedOut()
                for key, _ in selector.select(left):
                    if key.fd == stdin:
                        try:
                            pending = pending[os.write(stdin, pending[:1 << 16]):]
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            pending = pending[:0]  # it died; its stdout says so next
                        if not pending:
                            selector.unregister(stdin)
                        continue
                    chunk = os.read(stdout, 1 << 20)
                    if not chunk:
                        raise _WorkerDied(self._exit_reason(), self.started)
                    received += chunk
                    while (frame := _take_frame(received)) is not None:
                        if self.started:
                            with open(self.log_path, "wb"):
                                pass  # empties the log; the worker appends to it
                            return frame
                        self.started = bool(frame[0].get("started"))

    def _exit_reason(self):
        """How the worker ended, once its output has closed."""
        try:
            status = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "its output closed without a reply (it was then killed)"
        if status < 0:
            try:
                return signal.Signals(-status).name
            except ValueError:
                return f"signal {-status}"
        return f"exit status {status}"

    def stop(self, grace=5.0):
        """Ends the worker (closing its stdin asks it to exit; it is killed after `grace`
        seconds) and removes its folder. Only the process that started it stops it."""
        if self.owner != os.getpid():
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _take_frame(buffer):
    """Removes the first whole frame from `buffer` (a bytearray) and returns it as (header,
    payload), or returns None while it is incomplete."""
    if len(buffer) < _protocol.FRAME.size:
        return None
    header_size, payload_size = _protocol.FRAME.unpack_from(buffer)
    start = _protocol.FRAME.size + header_size
    end = start + payload_size
    if len(buffer) < end:
        return None
    header = json.loads(bytes(buffer[_protocol.FRAME.size:start]))
    payload = bytes(buffer[start:end])
    del buffer[:end]
    return header, payload


_worker = None
_worker_lock = threading.RLock()  # guards _worker
_exchange_lock = threading.Lock()  # one request at a time on the worker's pipes


def _start_calibration_worker():
    """The running worker, started (or restarted) if there is none in this process."""
    global _worker
    with _worker_lock:
        if _worker is not None and not _worker.alive():
            if _worker.owner == os.getpid():
                _worker.stop(grace=0)
            _worker = None  # one inherited through fork() belongs to the parent
        if _worker is None:
            try:
                _worker = _CalibrationWorker()
            except OSError as exc:
                raise ConversionError(f"cannot start tfedge's calibration worker, a child "
                                      f"process running {sys.executable!r}: {exc}") from exc
        return _worker


@atexit.register
def _stop_calibration_worker():
    global _worker
    with _worker_lock:
        if _worker is not None:
            _worker.stop()
            _worker = None


# What the worker needs of TensorFlow 2.21's converter (tensorflow/lite/python/lite.py).
def _check_converter(converter):
    from tfedge._keras import tf

    problems = []
    quantize = getattr(converter, "_quantize", None)
    if quantize is None:
        problems.append("the converter has no _quantize method")
    else:
        parameters = tuple(inspect.signature(quantize).parameters)
        if parameters != _protocol.QUANTIZE_ARGUMENTS:
            problems.append(f"its _quantize takes {parameters}, not "
                            f"{_protocol.QUANTIZE_ARGUMENTS}")
    missing = [name for name in _protocol.CONVERTER_ATTRIBUTES
               if not hasattr(converter, name)]
    if missing:
        problems.append(f"the converter lacks {', '.join(missing)}")
    registerers = getattr(converter.target_spec, "_experimental_custom_op_registerers", None)
    if registerers is None:
        problems.append("its target_spec lacks _experimental_custom_op_registerers")
    elif registerers:
        raise ConversionError("custom op registerers cannot reach tfedge's calibration worker "
                              "(a separate process); tfedge sets none. Received: "
                              f"{registerers!r}")
    if problems:
        raise ConversionError(
            "tfedge runs TensorFlow's calibrator in a child process, which it knows how to do "
            f"for TensorFlow 2.21, but TensorFlow {tf.__version__} differs: "
            f"{'; '.join(problems)}. Install the TensorFlow that tfedge pins "
            "(pip install 'tensorflow==2.21.*')")


def _encode_request(converter, samples, args):
    from tfedge._keras import tf

    (result, input_type, output_type, activations_type, bias_type, allow_float,
     enable_variable_quantization, debug_options) = args
    result = bytes(result)
    debug_bytes = b"" if debug_options is None else debug_options.SerializeToString()
    specs, chunks = [], [result, debug_bytes]
    for sample in samples:
        if isinstance(sample, dict):
            raise ConversionError("calibration samples keyed by signature (dicts) are not "
                                  "supported; give lists of arrays")
        spec = []
        for value in sample:
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise ConversionError(f"calibration arrays must be numeric. Received an array "
                                      f"of dtype {array.dtype}")
            spec.append([array.dtype.str, list(array.shape)])
            chunks.append(array.tobytes())  # C order, as the worker reads it back
        specs.append(spec)
    header = {
        "tf_version": tf.__version__,
        "model": len(result),
        "debug_options": len(debug_bytes),
        "debug_options_type": None if debug_options is None else [
            type(debug_options).__module__, type(debug_options).__name__],
        "args": {"input_type": _dtype_name(input_type), "output_type": _dtype_name(output_type),
                 "activations_type": _dtype_name(activations_type),
                 "bias_type": _dtype_name(bias_type), "allow_float": bool(allow_float),
                 "enable_variable_quantization": bool(enable_variable_quantization)},
        "converter": {name: bool(getattr(converter, name))
                      for name in _protocol.CONVERTER_ATTRIBUTES},
        "samples": specs,
    }
    return _protocol.encode_frame(header, b"".join(chunks))


def _dtype_name(dtype):
    return None if dtype is None else dtype.name


def _calibrate_in_worker(converter, model, mode, samples):
    """Makes `converter` run its calibration and quantization step in the worker process.

    Replaces `_quantize` on this converter object only (never TensorFlow's class): the
    replacement sends the float model, the samples and the arguments to the worker, which runs
    TensorFlow's own `TFLiteConverterBase._quantize` on them, and returns its bytes. A worker
    that dies becomes a ConversionError naming the signal and the likely cause; one that takes
    longer than `calibration_timeout(len(samples))` is killed and reported likewise.
    """
    _check_converter(converter)
    stage = f"{mode} calibration of {model.name}"

    def quantize(*args):
        request = _encode_request(converter, samples, args)
        timeout = calibration_timeout(len(samples))
        with _exchange_lock:
            worker = _start_calibration_worker()
            try:
                header, payload = worker.exchange(request, timeout)
            except _WorkerDied as died:
                log = worker.log_tail()
                _discard_worker(worker)
                if died.started:
                    error = ConversionError(_crash_message(model, stage, died.how))
                else:
                    last = log.splitlines()[-1] if log else "nothing"
                    error = ConversionError(
                        f"{stage} failed: tfedge's calibration worker (a child process running "
                        f"{sys.executable!r}) ended with {died.how} before it had imported "
                        f"TensorFlow; its last log line says: {last}")
                if log and hasattr(error, "add_note"):
                    error.add_note(f"The calibration worker's last log lines:\n{log}")
                raise error from None
            except _WorkerTimedOut:
                _discard_worker(worker)
                raise ConversionError(
                    f"{stage} did not finish within {timeout:g} s (the limit for "
                    f"{len(samples)} calibration samples, see tflite.calibration_timeout) and "
                    "was stopped. If the model is that slow to calibrate, calibrate on fewer "
                    "samples (num_samples=) or raise tflite.CALIBRATION_TIMEOUT_PER_SAMPLE; "
                    "or convert with int8 weights and float activations, which needs no "
                    "calibration: tflite.to_dynamic_range(model) or `tfedge convert "
                    "--mode=dynamic`") from None
            except BaseException:
                _discard_worker(worker)  # interrupted mid-request: its state is unknown
                raise
        if header.get("ok"):
            return payload
        if header.get("error") == "incompatible":
            from tfedge._keras import tf

            raise ConversionError(
                f"{stage} cannot run in tfedge's calibration worker, which knows how to call "
                f"TensorFlow 2.21's calibrator (this process has TensorFlow {tf.__version__}): "
                f"{header.get('message')}. Install the TensorFlow that tfedge pins (pip install "
                "'tensorflow==2.21.*')")
        raise _CalibrationFailed(header.get("message") or header.get("type") or "unknown error")

    converter._quantize = quantize


class _CalibrationFailed(RuntimeError):
    """TensorFlow's calibrator raised an exception in the worker (reported as in-process)."""


def _discard_worker(worker):
    global _worker
    with _worker_lock:
        worker.stop(grace=0)
        if _worker is worker:
            _worker = None


# Recurrent layers that convert to a WHILE loop, on which TensorFlow 2.21's calibrator crashes,
# unless unrolled (ConvLSTM layers cannot be).
def _recurrent_layers(model):
    """[(layer name, description, class to unroll or None)] of the recurrent layers of `model`
    (nested models included) that are not unrolled; None where the layer cannot be."""
    from tfedge._keras import keras

    found = []

    def unrolled(layer):
        return bool(getattr(layer, "unroll", False))

    def visit(layer):
        if isinstance(layer, keras.layers.Bidirectional):
            inner = layer.forward_layer
            if not (unrolled(layer.forward_layer) and unrolled(layer.backward_layer)):
                found.append((layer.name, f"Bidirectional {type(inner).__name__}",
                              _can_unroll(inner)))
        elif isinstance(layer, keras.layers.RNN):
            if not unrolled(layer):
                found.append((layer.name, type(layer).__name__, _can_unroll(layer)))
        elif isinstance(layer, keras.layers.Wrapper):
            visit(layer.layer)
        for child in getattr(layer, "layers", ()) if isinstance(layer, keras.Model) else ():
            visit(child)

    for layer in model.layers:
        visit(layer)
    return found


def _can_unroll(layer):
    name = type(layer).__name__
    return None if "ConvLSTM" in name or "ConvRNN" in name else name


def _crash_message(model, stage, how):
    message = f"{stage} crashed: TensorFlow's calibrator died with {how}."
    dynamic = ("convert with int8 weights and float activations, which needs no calibration: "
               "tflite.to_dynamic_range(model) or `tfedge convert --mode=dynamic` (TFLM cannot "
               "run such a model).")
    layers = _recurrent_layers(model)
    if not layers:
        return (f"{message} The model has none of the layers known to crash it (recurrent "
                f"layers without unroll=True). You can still {dynamic}")
    listed = ", ".join(f"{name!r} ({kind})" for name, kind, _ in layers)
    layer_s, they, convert, them = (("layers", "they", "convert", "them") if len(layers) > 1
                                    else ("layer", "it", "converts", "it"))
    message += (f" The likely cause is its recurrent {layer_s} {listed}: without unroll=True "
                f"{they} {convert} to a WHILE loop, on which TensorFlow's calibrator crashes.")
    classes = [layer_class for _, _, layer_class in layers if layer_class]
    if len(classes) < len(layers):
        message += " ConvLSTM layers cannot be unrolled."
    if not classes:
        return f"{message} For {them}, {dynamic}"
    gated = [c for c in classes if c in ("LSTM", "GRU")]
    example = f"keras.layers.{(gated or classes)[0]}(..., unroll=True"
    message += (f" For full int8, rebuild {them} with unroll=True (it needs a fixed number of "
                "timesteps)")
    if gated:
        example += ", implementation=1"
        message += (" and implementation=1 (with the default 2, TensorFlow's quantizer often "
                    "leaves float ops in unrolled LSTM and GRU layers)")
    return (f"{message}, e.g. {example}), and convert with to_int8 (`tfedge convert "
            f"--mode=int8`). Or {dynamic}")


def to_int8(model, representative_data, *, num_samples=None, num_batches=None,
            input_type="int8", output_type="int8"):
    """Converts a tf_keras model to a full-int8 `.tflite` (bytes), int8 input and output by
    default.

    Calibrates on the first `num_samples` images (200 when neither limit is given) or on every
    image of the first `num_batches` elements of `representative_data` (see
    `representative_samples`). `input_type` / `output_type` may also be "uint8" (a QUANTIZE op
    shifts by 128 at the border, for cameras and sensors that produce uint8) or "float32" (a
    QUANTIZE at the input, a DEQUANTIZE at the output: the application passes floats; every
    op inside stays int8). Raises ConversionError if any other float op remains (see
    `check_full_integer`), or if TensorFlow's calibrator crashes or hangs in its worker process
    (the error names the layers to blame; see `calibration_timeout`).
    """
    return _to_full_integer(model, representative_data, "int8", num_samples, num_batches,
                            input_type, output_type)


def to_int16x8(model, representative_data, *, num_samples=None, num_batches=None,
               input_type="int16", output_type="int16"):
    """Converts a tf_keras model to an int16x8 `.tflite`: int16 activations, input and output,
    int8 weights (per channel) and int64 biases; calibrated as `to_int8` is.

    It keeps much more of the activations' resolution than int8 for twice their memory, and is
    TFLite's answer for models that lose too much at int8. The converter has no 16x8 kernel for
    HARD_SWISH (MobileNetV3), PRELU, ELU, LOG_SOFTMAX, DEPTH_TO_SPACE and SPACE_TO_DEPTH, and
    refuses such models (ConversionError naming the op). TFLM runs the rest of tfedge's zoo in
    this mode (conv, depthwise, fully connected, add, mul, mean, pools, concatenation, split,
    reshape, transpose, softmax) but lacks int16 REDUCE_MAX (GlobalMaxPooling2D) and
    RESIZE_BILINEAR. Two of its int16 kernels round differently from LiteRT's reference ones, so
    `tflm.compare_with_reference` is not exact for models that hold them: FULLY_CONNECTED
    rescales with a 16-bit multiplier where LiteRT uses 31 bits (about 1 output in 6 off by 1,
    a SOFTMAX after it by a step or two), and MUL derives its multiplier from the scales in
    double precision where LiteRT uses float32 (about 1 output in 5000, those on a half, off
    by 1).

    `input_type` / `output_type`: "int16" (default) or "float32" (QUANTIZE / DEQUANTIZE at the
    border). Raises ConversionError if any other float op remains or I/O is not of the asked
    types (`check_full_integer`), or if the calibrator crashes or hangs, as `to_int8` does.
    """
    return _to_full_integer(model, representative_data, "int16", num_samples, num_batches,
                            input_type, output_type)


def _to_float_io(model, mode, configure):
    from tfedge._keras import require_tf_keras_model, tf

    require_tf_keras_model(model)
    converter = converter_for(model)
    configure(converter, tf)
    return _convert(converter, model, mode)


def to_dynamic_range(model):
    """Converts a tf_keras model with int8 weights and float32 activations, input and output
    (dynamic-range quantization: no representative data; LiteRT quantizes activations on the
    fly inside each op).

    About 1/4 of the float32 file. Tensors under 1024 elements (biases, small kernels) stay
    float32, as the converter decides; a model made only of those comes back all float32.
    TFLM cannot run these models (it has no hybrid kernels).
    """
    def configure(converter, tf):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

    return _to_float_io(model, "dynamic range", configure)


def to_float16(model):
    """Converts a tf_keras model with float16 weights, dequantized to float32 when the model
    loads; activations, input and output are float32. About 1/2 of the float32 file; TFLM cannot
    run it (its DEQUANTIZE takes integer inputs only)."""
    def configure(converter, tf):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]

    return _to_float_io(model, "float16", configure)


def to_float32(model):
    """Converts a tf_keras model without any optimization: float32 everywhere, batch 1."""
    return _to_float_io(model, "float32", lambda converter, tf: None)


def gzip_size(data):
    """Bytes of `data` (bytes-like) after gzip at level 9 with a zero timestamp.

    The same bytes always give the same size. Zeros that pruning leaves in the weights do not
    shrink a `.tflite` itself but do shrink it compressed, so this is how sparsity is measured.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"`data` must be bytes, bytearray or memoryview (a .tflite's contents). "
                        f"Received: {type(data).__module__}.{type(data).__qualname__}")
    return len(gzip.compress(bytes(data), compresslevel=9, mtime=0))


MODES = ("int8", "int16x8", "dynamic", "float16", "float32")
_ACTIVATION_TYPES = {"INT8": "int8", "INT16": "int16x8", "FLOAT32": "float"}


def quantization_mode(tflite_bytes):
    """Which conversion made a `.tflite`: one of MODES, from its tensors alone (no TensorFlow).

    The activations (tensors without data) decide between the integer modes: mostly INT8 is
    "int8" (float I/O wrappers included), mostly INT16 "int16x8". With float32 activations the
    weights decide: any INT8 constant is "dynamic", else any FLOAT16 constant "float16", else
    "float32". Raises ValueError for anything else (a uint8 model, say).
    """
    model = tflite_reader.read_tflite(tflite_bytes)
    activations = {}
    constants = set()
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            if model.buffers[tensor.buffer].size:
                constants.add(tensor.type_name)
            elif tensor.type_name in ("INT8", "INT16", "FLOAT32", "FLOAT16", "UINT8"):
                activations[tensor.type_name] = activations.get(tensor.type_name, 0) + 1
    if not activations:
        raise ValueError("cannot tell the quantization mode: the model has no activation "
                         "tensors")
    dominant = max(activations, key=activations.get)
    kind = _ACTIVATION_TYPES.get(dominant)
    if kind is None:
        raise ValueError(f"cannot tell the quantization mode: most activations are {dominant} "
                         f"(counts {activations}); tfedge makes int8, int16x8, dynamic, float16 "
                         "and float32 models")
    if kind != "float":
        return kind
    if "INT8" in constants:
        return "dynamic"
    if "FLOAT16" in constants:
        return "float16"
    return "float32"


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


# TFLite's Prepare quantizes a fused activation's bounds (RELU6: 6, RELU_N1_TO_1: -1 and 1) with
# the output scale into int32, and refuses the op when bound / scale does not fit.
_ACTIVATION_BOUNDS = {"RELU6": 6.0, "RELU_N1_TO_1": 1.0}
_INT32_LIMIT = float(2 ** 31)


def degenerate_ops(tflite_bytes):
    """Ops whose calibrated ranges are too narrow for TFLite's kernels to run them: an int8
    SOFTMAX whose input scale is too small (it aborts the interpreter), and an op with a fused
    RELU6 / RELU_N1_TO_1 whose output scale is so small that the bound is beyond int32 steps
    (its Prepare fails: `no_integer_overflow_from_quantization`). Both come from activations
    that are (almost) constant on the calibration data."""
    return _degenerate_ops(tflite_reader.read_tflite(tflite_bytes))


def _degenerate_ops(model):
    found = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if op.name == "SOFTMAX":
                tensor = subgraph.tensors[op.inputs[0]]
                if tensor.type_name != "INT8":
                    continue  # the int16 kernel uses a lookup table and has no such limit
                scale = tensor.quantization.scale if tensor.quantization else ()
                if scale and scale[0] <= _SOFTMAX_MIN_INPUT_SCALE:
                    found.append(
                        f"SOFTMAX #{op.index} input {tensor.name!r} has scale {scale[0]:.3g} "
                        f"(its calibrated range is about {255 * scale[0]:.3g} wide); TFLite's "
                        f"kernel needs a scale above {_SOFTMAX_MIN_INPUT_SCALE:.3g}")
                continue
            activation = (op.options or {}).get("fused_activation_function")
            bound = _ACTIVATION_BOUNDS.get(activation)
            if bound is None or not op.outputs or op.outputs[0] < 0:
                continue
            tensor = subgraph.tensors[op.outputs[0]]
            scale = tensor.quantization.scale if tensor.quantization else ()
            if scale and 0 < scale[0] and bound / scale[0] >= _INT32_LIMIT:
                found.append(
                    f"{op.name} #{op.index} output {tensor.name!r} has scale {scale[0]:.3g}: "
                    f"its {activation} bound {bound:g} is {bound / scale[0]:.3g} steps, beyond "
                    "int32, so TFLite's Prepare refuses the op")
    return found


def check_full_int8(tflite_bytes):
    """Raises ConversionError if a float op is left, I/O is not int8 with batch 1, or a
    calibrated range is too narrow for TFLite's kernels (which would abort the interpreter)."""
    check_full_integer(tflite_bytes, "int8")


def check_full_integer(tflite_bytes, activations="int8", *, input_type=None, output_type=None):
    """Raises ConversionError unless the model is full integer with `activations` ("int8" or
    "int16"), input and output of batch 1 and of the given types (default: the activations'),
    without a float op or a range too narrow for TFLite's kernels (which would abort the
    interpreter). With float32 input or output, the QUANTIZE / DEQUANTIZE ops that read or write
    the model's float tensors are the only float ops allowed."""
    if activations not in _FULL_INTEGER:
        raise ValueError(f"`activations` must be one of {sorted(_FULL_INTEGER)}. Received: "
                         f"activations={activations!r}")
    input_type = input_type or IO_TYPES[activations][0]
    output_type = output_type or IO_TYPES[activations][0]
    _check_io_types(activations, input_type, output_type)
    mode = _FULL_INTEGER[activations][0]
    model = tflite_reader.read_tflite(tflite_bytes)
    main = model.subgraphs[0]
    border = set()
    if input_type == "float32":
        border |= set(main.inputs)
    if output_type == "float32":
        border |= set(main.outputs)
    problems = []
    for subgraph in model.subgraphs:
        tensors = subgraph.tensors
        for op in subgraph.operators:
            floats = [i for i in itertools.chain(op.inputs, op.outputs)
                      if i >= 0 and tensors[i].is_float]
            at_border = (subgraph.index == 0 and op.name in ("QUANTIZE", "DEQUANTIZE")
                         and set(floats) <= border)
            if floats and not at_border:
                described = ", ".join(f"{tensors[i].name!r} {tensors[i].type_name}"
                                      for i in floats)
                problems.append(f"{op.name} #{op.index} in subgraph {subgraph.index} "
                                f"({described})")
    for role, indices, wanted in (("input", main.inputs, input_type),
                                  ("output", main.outputs, output_type)):
        type_name = _TENSOR_TYPE[wanted]
        for i in indices:
            tensor = main.tensors[i]
            if tensor.type_name != type_name:
                problems.append(f"model {role} {tensor.name!r} is {tensor.type_name}, not "
                                f"{type_name}")
            signature = tensor.shape_signature or tensor.shape
            if not signature or signature[0] != 1:
                problems.append(f"model {role} {tensor.name!r} has batch dimension "
                                f"{signature[:1]}, not a fixed 1")
    degenerate = _degenerate_ops(model)
    if degenerate:
        raise ConversionError(
            f"the {mode} model cannot run in TFLite's interpreters (they abort or refuse it):"
            "\n  " +
            "\n  ".join(degenerate) +
            "\nThese activations are (almost) constant on the calibration data. Train the model "
            "before converting it, or calibrate with data that exercises it.")
    if problems:
        raise ConversionError(
            f"the model is not full {mode}:\n  " + "\n  ".join(problems) +
            f"\nEvery layer must have an {mode} TFLite kernel; replace or remove the layers "
            "above (a Lambda or an unsupported op often leaves a float op behind).")
