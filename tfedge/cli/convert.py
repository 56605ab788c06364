"""Convert a saved Keras model to a .tflite: full int8, int16x8, dynamic-range, float16, float32.

Example:

    tfedge convert model.keras --mode=int8 --dataset=digits --input_size=32 \\
        --output=model.tflite
    tfedge convert model.h5 --mode=int8 --input_type=float32 --output_type=float32 \\
        --dataset=mnist --data_dir=/data/mnist --calibration_samples=500 --output=model.tflite
    tfedge convert saved_model_dir --mode=float16 --output=model_fp16.tflite

The model may be a .keras or .h5 file or a SavedModel folder made by tf_keras or tfedge
(QAT and pruned models included; Keras 3 files are rebuilt as tf_keras). Full-integer modes
(int8, int16x8) calibrate on the training images of --dataset (the images are resized to the
model's input, which fixes the batch to 1 like every tfedge conversion) and refuse a model that
keeps a float op; --input_type/--output_type choose the I/O types (int8: int8, uint8 or
float32; int16x8: int16 or float32). The .tflite is written atomically and a summary printed.
"""

import os
import sys

from absl import flags

from tfedge import data

_MODE = flags.DEFINE_enum("mode", "int8", ["int8", "int16x8", "dynamic", "float16", "float32"],
                          "int8/int16x8: full integer (needs --dataset images to calibrate); "
                          "dynamic: int8 weights, float activations; float16; float32.")
_OUTPUT = flags.DEFINE_string("output", None, "The .tflite file to write.", required=True)
_DATASET = flags.DEFINE_enum("dataset", "digits", list(data.DATASETS),
                             "Calibration images for full-integer modes.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder of the dataset's files.")
_TFDS_NAME = flags.DEFINE_string("tfds_name", None, "TFDS dataset name, with --dataset=tfds.")
_CALIBRATION = flags.DEFINE_integer("calibration_samples", 200, "Images that calibrate the "
                                    "integer ranges.", lower_bound=1)
_INPUT_TYPE = flags.DEFINE_enum("input_type", None, ["int8", "uint8", "int16", "float32"],
                                "Input type of a full-integer model (default: its activations').")
_OUTPUT_TYPE = flags.DEFINE_enum("output_type", None, ["int8", "uint8", "int16", "float32"],
                                 "Output type of a full-integer model.")


def _fail(message):
    print(f"tfedge convert: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) != 2:
        _fail("give one model: tfedge convert MODEL(.keras|.h5|SavedModel folder) "
              "--output=FILE.tflite")
    path = argv[1]
    if not os.path.exists(path):
        _fail(f"model {path!r} does not exist")
    if not _OUTPUT.value.endswith(".tflite"):
        _fail(f"--output={_OUTPUT.value} must end in .tflite")
    folder = os.path.dirname(os.path.abspath(_OUTPUT.value))
    if not os.path.isdir(folder):
        _fail(f"--output={_OUTPUT.value}: folder {folder!r} does not exist")
    integer = _MODE.value in ("int8", "int16x8")
    if not integer and (_INPUT_TYPE.value or _OUTPUT_TYPE.value):
        _fail(f"--input_type/--output_type apply to int8 and int16x8 only (--mode="
              f"{_MODE.value} keeps float input and output)")
    from absl import logging

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    from tfedge import _io, compat, saving
    from tfedge.converters import read_tflite, tflite

    try:
        model = compat.as_tf_keras(saving.load_model(path, compile=False))
    except (OSError, ValueError, TypeError) as exc:
        _fail(f"cannot load {path!r} as a Keras model: {exc}")
    try:
        if integer:
            shape = tuple(int(d) for d in model.inputs[0].shape[1:])
            if len(shape) != 3:
                _fail(f"the model takes inputs shaped {shape}; calibration from --dataset needs "
                      "(height, width, channels) images")
            splits = data.load(_DATASET.value, input_shape=shape, data_dir=_DATA_DIR.value,
                               tfds_name=_TFDS_NAME.value)
            convert = tflite.to_int8 if _MODE.value == "int8" else tflite.to_int16x8
            result = convert(model, splits.x_train, num_samples=_CALIBRATION.value,
                             input_type=_INPUT_TYPE.value, output_type=_OUTPUT_TYPE.value)
        else:
            convert = {"dynamic": tflite.to_dynamic_range, "float16": tflite.to_float16,
                       "float32": tflite.to_float32}[_MODE.value]
            result = convert(model)
    except (ValueError, OSError, tflite.ConversionError) as exc:
        _fail(str(exc))
    _io.write_atomic(_OUTPUT.value, result)
    ops = read_tflite(result).op_names()
    print(f"wrote {_OUTPUT.value}: {len(result):,} bytes ({tflite.gzip_size(result):,} "
          f"gzipped), mode {tflite.quantization_mode(result)}, {len(ops)} ops "
          f"({', '.join(sorted(set(ops)))})")
