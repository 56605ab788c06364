"""The host TFLite interpreter (LiteRT), and int8 quantize/dequantize helpers.

LiteRT (`ai-edge-litert`) is the maintained successor of `tflite-runtime`; this module falls
back to `tflite_runtime` and then `tf.lite` when it is absent. `reference=True` selects
TFLite's reference kernels (`BUILTIN_REF`), the ground truth for bit-exact comparisons;
the default optimized kernels are faster and may differ from them by rounding.
"""

import numpy as np


def _interpreter_module():
    try:
        from ai_edge_litert import interpreter
        return interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter
        return interpreter
    except ImportError:
        pass
    from tfedge._keras import tf
    return tf.lite


def make_interpreter(tflite_bytes, *, reference=False, num_threads=None):
    """Returns an allocated interpreter for `tflite_bytes`."""
    module = _interpreter_module()
    kwargs = {"model_content": bytes(tflite_bytes)}
    if reference:
        kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_REF
    if num_threads is not None:
        kwargs["num_threads"] = num_threads
    interpreter = module.Interpreter(**kwargs)
    interpreter.allocate_tensors()
    return interpreter


def invoke(interpreter, inputs):
    """Runs one inference; `inputs` is a list of arrays in input order. Returns the outputs."""
    details = interpreter.get_input_details()
    if len(inputs) != len(details):
        raise ValueError(f"the model has {len(details)} inputs; received {len(inputs)} arrays")
    for detail, value in zip(details, inputs):
        value = np.asarray(value)
        if value.dtype != detail["dtype"] or tuple(value.shape) != tuple(detail["shape"]):
            raise ValueError(
                f"input {detail['name']!r} wants {np.dtype(detail['dtype']).name} "
                f"{tuple(detail['shape'])}; received {value.dtype.name} {tuple(value.shape)}")
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def quantize(x, scale, zero_point, dtype=np.int8):
    """Float -> integer with TFLite's rule: round half away from zero, then clamp."""
    info = np.iinfo(dtype)
    v = np.asarray(x, dtype=np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point):
    return (np.asarray(q, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)


def random_inputs(interpreter, count, seed=0):
    """`count` lists of uniformly random integer inputs matching the model's input tensors."""
    rng = np.random.default_rng(seed)
    details = interpreter.get_input_details()
    batches = []
    for _ in range(count):
        batch = []
        for d in details:
            info = np.iinfo(d["dtype"])
            batch.append(rng.integers(info.min, info.max, size=d["shape"], endpoint=True,
                                      dtype=d["dtype"]))
        batches.append(batch)
    return batches
