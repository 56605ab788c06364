"""Keras model -> `.tflite` -> firmware files, and the checks in between.

- `tflite`: full-int8 conversion (`to_int8`) and the no-float-op check (`check_full_int8`).
- `tflite_reader`: a pure-Python `.tflite` parser (`read_tflite`) that never crashes on bad bytes.
- `c_array`: `model_data.cc` / `model_data.h` (`to_c_source`) and the parse back.
- `tflm`: the TFLM host interpreter in a subprocess: `find_arena_size`, `compare_with_reference`.
- `interpreter`: LiteRT on the host, with TFLite's reference kernels for bit-exact checks.

Nothing here imports TensorFlow until a conversion runs.
"""

from tfedge.converters.c_array import parse_c_source, to_c_source
from tfedge.converters.tflite import ConversionError, check_full_int8, float_ops, to_int8
from tfedge.converters.tflite_reader import TFLiteFormatError, read_tflite
from tfedge.converters.tflm import TFLMError, compare_with_reference, find_arena_size

__all__ = [
    "ConversionError", "TFLMError", "TFLiteFormatError", "check_full_int8",
    "compare_with_reference", "find_arena_size", "float_ops", "parse_c_source", "read_tflite",
    "to_c_source", "to_int8",
]
