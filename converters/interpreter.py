"""The host TFLite interpreter (LiteRT), and quantize/dequantize helpers (int8 and int16).

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


def make_interpreter(tflite_bytes, *, reference=False, num_threads=None,
                     preserve_all_tensors=False):
    """Returns an allocated interpreter for `tflite_bytes`.

    `preserve_all_tensors` keeps every intermediate tensor readable after `invoke` (the
    interpreter then reuses no memory), for op-by-op comparisons.
    """
    module = _interpreter_module()
    kwargs = {"model_content": bytes(tflite_bytes)}
    if reference:
        kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_REF
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
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
    """Float -> integer (int8, int16, ...) exactly as TFLite's reference QUANTIZE kernel does it.

    The input is taken as float32 and divided by the float32 scale in float32; the quotient is
    rounded half away from zero (`std::round`), offset by `zero_point` and clamped to `dtype`.
    (LiteRT's optimized kernel multiplies by the reciprocal and rounds half to even instead, so
    it may differ by 1 where the quotient lies on a half.)
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"`dtype` must be an integer type such as np.int8 or np.int16. "
                         f"Received: dtype={dtype.name}")
    info = np.iinfo(dtype)
    v = (np.asarray(x, dtype=np.float32) / np.float32(scale)).astype(np.float64)
    # In float64 the + 0.5 is exact for every float32, so ...49999997 does not round up.
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point):
    """Integer -> float32: (q - zero_point) * scale, as TFLite's DEQUANTIZE computes it (the
    product of a float32 scale and an int16-or-narrower integer is exact before the final
    rounding to float32, so the result is bit-identical)."""
    return (np.asarray(q, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)


def random_inputs(interpreter, count, seed=0):
    """`count` lists of random inputs matching the model's input tensors.

    Integer tensors (int8, int16, ...) get uniformly random values over their whole range;
    float tensors get uniform values in [0, 1), the range of tfedge's images.
    """
    rng = np.random.default_rng(seed)
    details = interpreter.get_input_details()
    for d in details:
        dtype = np.dtype(d["dtype"])
        if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise ValueError(f"input {d['name']!r} is {dtype.name}; random inputs can be made "
                             "for integer and float tensors only")
    batches = []
    for _ in range(count):
        batch = []
        for d in details:
            dtype = np.dtype(d["dtype"])
            if np.issubdtype(dtype, np.integer):
                info = np.iinfo(dtype)
                value = rng.integers(info.min, info.max, size=d["shape"], endpoint=True,
                                     dtype=dtype)
            else:
                value = rng.random(d["shape"]).astype(dtype)
            batch.append(value)
        batches.append(batch)
    return batches
