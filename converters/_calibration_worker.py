"""Runs TensorFlow's post-training calibration and quantization; executed as a script in a child.

TensorFlow's calibrator runs the TFLite interpreter over the representative data and can end
the process it runs in (TF 2.21 segfaults on LSTM, GRU, SimpleRNN and ConvLSTM layers that are
not unrolled), so tfedge never runs it in the user's process: `tflite.py` keeps one of these
workers per process, sends it each calibration and turns its death into a `ConversionError`.
Only this step runs here; the MLIR graph conversion stays in the user's process. The worker
imports numpy and TensorFlow, never tfedge.

    python _calibration_worker.py FOLDER

FOLDER is the worker's private temporary folder, made by the parent: its TMPDIR and its stderr
log. The worker removes it when it exits because its parent is gone or done (stdin closed, or
the parent process ended); after a crash the parent reads the log and removes it. Requests
arrive on stdin and replies leave on the original stdout; file descriptor 1 then points at
stderr, so nothing that TensorFlow prints can corrupt a reply.

Every message is one frame, with no pickle anywhere:

    12 bytes   ">IQ": the JSON header's length and the payload's length
    header     UTF-8 JSON object
    payload    raw bytes that the header describes

The worker's first frame, unasked, is {"started": true, "tf_version": ...}: TensorFlow is
imported. A request's header holds "tf_version" (the parent's TensorFlow, which must be this
one), "model" and "debug_options" (byte counts), "debug_options_type" ([module, class] of
TensorFlow's protobuf, or null), "args" (`_quantize`'s other arguments: dtype names and
booleans), "converter" (the converter attributes `_quantize` reads) and "samples" (for each
calibration sample, a [dtype, shape] per array); its payload is the model, the debug options
and every array's C-order bytes, in that order. A reply's header is {"ok": true, "model": byte
count} with the quantized model as payload, or {"ok": false, "error": "incompatible" |
"failed", "type": ..., "message": ...}.
"""

import faulthandler
import inspect
import json
import os
import shutil
import signal
import struct
import sys
import threading
import time

FRAME = struct.Struct(">IQ")
FOLDER_PREFIX = "tfedge-calibration-"
_MAX_HEADER = 64 << 20
# Converter attributes that TensorFlow 2.21's TFLiteConverterBase._quantize reads.
CONVERTER_ATTRIBUTES = ("_experimental_calibrate_only", "experimental_new_quantizer",
                        "_experimental_disable_per_channel",
                        "_experimental_disable_per_channel_quantization_for_dense_layers")
QUANTIZE_ARGUMENTS = ("result", "input_type", "output_type", "activations_type", "bias_type",
                      "allow_float", "enable_variable_quantization", "debug_options")


class Incompatible(Exception):
    """This TensorFlow's `_quantize` is not the one the worker knows how to call."""


def read_exactly(fd, size):
    """`size` bytes from `fd`, or None at end of file before any byte; raises EOFError when the
    stream ends inside them."""
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            if left == size:
                return None
            raise EOFError(f"the stream ended {left} bytes short of a {size}-byte read")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd):
    """(header dict, payload bytes), or None when the stream ends between frames."""
    prefix = read_exactly(fd, FRAME.size)
    if prefix is None:
        return None
    header_size, payload_size = FRAME.unpack(prefix)
    if header_size > _MAX_HEADER:
        raise ValueError(f"a {header_size}-byte frame header is beyond the limit of "
                         f"{_MAX_HEADER} bytes")
    header = json.loads(read_exactly(fd, header_size) or b"")
    payload = read_exactly(fd, payload_size) if payload_size else b""
    if payload is None:
        raise EOFError("the stream ended before the frame's payload")
    return header, payload


def encode_frame(header, payload=b""):
    data = json.dumps(header).encode()
    return FRAME.pack(len(data), len(payload)) + data + bytes(payload)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Reader:
    def __init__(self, payload):
        self.payload = memoryview(payload)
        self.offset = 0

    def take(self, size):
        if self.offset + size > len(self.payload):
            raise ValueError("the request's payload is shorter than its header says")
        chunk = self.payload[self.offset:self.offset + size]
        self.offset += size
        return chunk


class _StandIn:
    """The converter as `_quantize` sees it: only the attributes the request carried.

    Reading any other attribute raises `Incompatible`, naming it, instead of guessing.
    """

    def __init__(self, attributes):
        self.__dict__.update(attributes)

    def __getattr__(self, name):
        raise Incompatible(f"its TFLiteConverterBase._quantize reads the converter attribute "
                           f"{name!r}, which tfedge's calibration worker does not carry")


def quantize(header, payload):
    """Runs TensorFlow's own `TFLiteConverterBase._quantize` on the request; returns bytes."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.lite.python import lite
    from tensorflow.python.framework import dtypes

    if header.get("tf_version") != tf.__version__:
        raise Incompatible(f"the worker imports TensorFlow {tf.__version__} but the parent "
                           f"process uses {header.get('tf_version')}")
    function = getattr(lite.TFLiteConverterBase, "_quantize", None)
    if function is None:
        raise Incompatible("lite.TFLiteConverterBase has no _quantize")
    parameters = tuple(inspect.signature(function).parameters)[1:]
    if parameters != QUANTIZE_ARGUMENTS:
        raise Incompatible(f"TFLiteConverterBase._quantize takes {parameters}, not "
                           f"{QUANTIZE_ARGUMENTS}")
    if not hasattr(lite, "TargetSpec") or not hasattr(lite, "RepresentativeDataset"):
        raise Incompatible("tensorflow.lite.python.lite lacks TargetSpec or "
                           "RepresentativeDataset")

    reader = _Reader(payload)
    model = bytes(reader.take(header["model"]))
    debug_bytes = bytes(reader.take(header["debug_options"]))
    debug_options = None
    if header["debug_options_type"] is not None:
        module, name = header["debug_options_type"]
        if not module.startswith("tensorflow."):
            raise ValueError(f"debug options of type {module}.{name} are not TensorFlow's")
        __import__(module)
        debug_options = getattr(sys.modules[module], name).FromString(debug_bytes)
    samples = []
    for specs in header["samples"]:
        sample = []
        for dtype, shape in specs:
            dtype = np.dtype(dtype)
            if dtype.hasobject:
                raise ValueError(f"calibration arrays of dtype {dtype} cannot be sent")
            count = int(np.prod(shape, dtype=np.int64))
            sample.append(np.frombuffer(reader.take(count * dtype.itemsize), dtype)
                          .reshape(shape).copy())
        samples.append(sample)
    if reader.offset != len(reader.payload):
        raise ValueError("the request's payload is longer than its header says")

    target_spec = lite.TargetSpec()
    target_spec._experimental_custom_op_registerers = []  # noqa: SLF001 - what _quantize reads
    attributes = dict(header["converter"], target_spec=target_spec,
                      representative_dataset=lite.RepresentativeDataset(lambda: iter(samples)))
    args = header["args"]
    types = {key: None if args[key] is None else dtypes.as_dtype(args[key])
             for key in ("input_type", "output_type", "activations_type", "bias_type")}
    result = function(_StandIn(attributes), model, types["input_type"], types["output_type"],
                      types["activations_type"], types["bias_type"], bool(args["allow_float"]),
                      bool(args["enable_variable_quantization"]), debug_options)
    return bytes(result)


def _remove(folder):
    if os.path.basename(os.path.normpath(folder)).startswith(FOLDER_PREFIX):
        shutil.rmtree(folder, ignore_errors=True)


def _watch_parent(parent, folder):
    """Ends the worker when its parent is gone (a hang would otherwise outlive it)."""
    while True:
        time.sleep(2)
        if os.getppid() != parent:
            _remove(folder)
            os._exit(0)


def main(argv):
    folder = argv[1]
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(
            os.path.abspath(__file__)):
        # The script's folder (tfedge/converters) must not shadow modules TensorFlow imports.
        del sys.path[0]
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # as tfedge sets it, before TensorFlow loads
    replies = os.dup(1)
    os.dup2(2, 1)  # print() and C++ stdout now go to stderr, never into a reply
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    faulthandler.enable(all_threads=False)  # the crashing stack goes to the worker's log
    parent = os.getppid()
    threading.Thread(target=_watch_parent, args=(parent, folder), daemon=True).start()
    try:
        import tensorflow as tf  # imported while the parent converts the graph
        from tensorflow.lite.python import lite  # noqa: F401

        write_all(replies, encode_frame({"started": True, "tf_version": tf.__version__}))
        while True:
            frame = read_frame(0)
            if frame is None:
                _remove(folder)  # the parent is gone or done
                return 0
            try:
                result = quantize(*frame)
            except Incompatible as exc:
                reply = {"ok": False, "error": "incompatible", "type": type(exc).__name__,
                         "message": str(exc)}
            except Exception as exc:  # noqa: BLE001 - the parent reports it, as in-process
                reply = {"ok": False, "error": "failed", "type": type(exc).__name__,
                         "message": str(exc)}
            else:
                write_all(replies, encode_frame({"ok": True, "model": len(result)}, result))
                continue
            write_all(replies, encode_frame(reply))
    except BrokenPipeError:
        _remove(folder)  # the parent is gone
        return 0
    finally:
        if os.getppid() != parent:
            _remove(folder)
        # Otherwise the parent reads the log and removes the folder.


if __name__ == "__main__":
    status = main(sys.argv)
    sys.stderr.flush()
    os._exit(status)  # TensorFlow's own teardown takes about a second and has nothing to save
