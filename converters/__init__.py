"""Keras model -> `.tflite` -> firmware files, and the checks in between.

- `tflite`: conversion in five modes (`to_int8`, `to_int16x8`, `to_dynamic_range`, `to_float16`,
  `to_float32`), the full-integer checks (`check_full_int8`, `check_full_integer`), which mode a
  file is in (`quantization_mode`) and its compressed size (`gzip_size`).
- `tflite_reader`: a pure-Python `.tflite` parser (`read_tflite`) that never crashes on bad bytes.
- `c_array`: `model_data.cc` / `model_data.h` (`to_c_source`) and the parse back.
- `op_resolver`: `op_resolver.h`, a TFLM resolver for exactly the model's ops
  (`op_resolver_source`).
- `firmware`: every file a TFLM build needs in one call (`export`), what `tfedge export-c` runs.
- `lint`: which ops TFLM with CMSIS-NN runs optimized, on reference kernels, or not at all
  (`lint.lint`), what `tfedge lint` runs.
- `tflm`: the TFLM host interpreter in a subprocess: `find_arena_size`, `arena_report`
  (minimum and recommended arena, checked against a RAM budget), `compare_with_reference`.
- `interpreter`: LiteRT on the host, with TFLite's reference kernels for bit-exact checks.

Nothing here imports TensorFlow until a conversion runs.
"""

from tfedge.converters.c_array import parse_c_source, to_c_source
from tfedge.converters.firmware import Firmware, export
from tfedge.converters.lint import LintReport
from tfedge.converters.op_resolver import UnsupportedOpError, op_resolver_source
from tfedge.converters.tflite import (MODES, ConversionError, check_full_int8,
                                      check_full_integer, float_ops, gzip_size,
                                      quantization_mode, representative_samples,
                                      to_dynamic_range, to_float16, to_float32, to_int8,
                                      to_int16x8)
from tfedge.converters.tflite_reader import TFLiteFormatError, read_tflite
from tfedge.converters.tflm import (ArenaBudgetError, ArenaReport, TFLMError, arena_report,
                                    compare_with_reference, find_arena_size,
                                    recommended_arena_size)

__all__ = [
    "MODES", "ArenaBudgetError", "ArenaReport", "ConversionError", "Firmware", "LintReport",
    "TFLMError", "TFLiteFormatError", "UnsupportedOpError", "arena_report", "check_full_int8",
    "check_full_integer", "compare_with_reference", "export", "find_arena_size", "float_ops",
    "gzip_size", "op_resolver_source", "parse_c_source", "quantization_mode",
    "read_tflite", "recommended_arena_size", "representative_samples", "to_c_source",
    "to_dynamic_range", "to_float16", "to_float32", "to_int16x8", "to_int8",
]
