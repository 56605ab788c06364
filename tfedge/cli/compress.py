"""Train (or load) a model, compress it, check it on TFLM, write the artifacts.

Example:

    tfedge compress --model=mobilenet_v2 --width=0.35 --dataset=digits --input_size=32 \\
        --epochs=30 --prune=0.75 --quantize=qat --output_dir=out

trains 30 epochs, prunes to 75% sparsity and trains quantization-aware (--finetune_epochs each),
then writes out/model.tflite, out/model_data.cc, out/model_data.h, out/report.json,
out/report.md and out/accuracy_vs_size.png and prints a summary. Without --prune and with the
default --quantize=ptq it only converts to full int8. --prune_channels=0.5 instead removes
whole channels until half the MACs are gone (a smaller model, not a sparse one). Flags can
also come from a file: --flagfile=run.flags.

One run at a time per --output_dir: a run holds a lock on the folder (an flock on
<output_dir>/.tfedge.lock) until it ends, and a second run into the same folder stops at once,
naming the process that holds it.
"""

import sys

from absl import app, flags

from tfedge import _io, data, models
from tfedge.converters import c_array
from tfedge.runs import MIN_INPUT_SIZE  # the smallest --input_size, the same as tfedge train's

_MODEL = flags.DEFINE_enum("model", "mobilenet_v2", models.names(), "Model factory to build.")
_WIDTH = flags.DEFINE_float("width", 0.35, "Channel multiplier of the model.", lower_bound=0.01)
_INPUT_SIZE = flags.DEFINE_integer("input_size", 32, "Input height and width in pixels, at "
                                   f"least {MIN_INPUT_SIZE}.")
_CHANNELS = flags.DEFINE_enum("channels", "1", ["1", "3"], "Input channels.")
_DATASET = flags.DEFINE_enum("dataset", "digits", data.DATASETS,
                             "digits: scikit-learn's 8x8 digits, embedded. mnist: IDX files, "
                             "cifar10: cifar-10-batches-bin, image_folder: one folder per "
                             "class, all in --data_dir; tfds: prepared TFDS data (--tfds_name).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder of the dataset's files.")
_TFDS_NAME = flags.DEFINE_string("tfds_name", None, "TFDS dataset name, with --dataset=tfds.")
_WEIGHTS = flags.DEFINE_string("weights", None,
                               "Local weights file to start from (from model.save_weights).")
_EPOCHS = flags.DEFINE_integer("epochs", 30, "Training epochs before compressing; 0 skips "
                               "training (needs --weights).", lower_bound=0)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Training batch size.", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 2e-3, "Initial Adam learning rate "
                                    "(cosine decay to 0).", lower_bound=1e-9)
_SEED = flags.DEFINE_integer("seed", 0, "Random seed for initialization and shuffling.")
_PRUNE = flags.DEFINE_float("prune", 0.0, "Target sparsity of magnitude pruning (tfmot), e.g. "
                            "0.75; 0 prunes nothing.", lower_bound=0.0, upper_bound=0.99)
_PRUNE_SCHEDULE = flags.DEFINE_enum("prune_schedule", "polynomial", ["polynomial", "constant"],
                                    "How sparsity grows during pruning's fine-tuning.")
_CHANNELS_TARGET = flags.DEFINE_float(
    "prune_channels", 0.0, "Fraction to remove by structured channel pruning (the model itself "
    "shrinks), e.g. 0.5; 0 prunes no channels. Cannot be combined with --prune.",
    lower_bound=0.0, upper_bound=0.95)
_CHANNELS_BY = flags.DEFINE_enum("prune_channels_by", "macs", ["macs", "params", "ratio"],
                                 "What --prune_channels is a fraction of.")
_CHANNELS_CRITERION = flags.DEFINE_enum("prune_channels_criterion", "l1",
                                        ["l1", "l2", "bn_gamma"],
                                        "How channel groups are ranked.")
_CHANNELS_STEPS = flags.DEFINE_integer("prune_channels_steps", 1, "Prune-and-fine-tune rounds "
                                       "of channel pruning (--finetune_epochs each).",
                                       lower_bound=1)
_QUANTIZE = flags.DEFINE_enum("quantize", "ptq", ["ptq", "qat", "int16x8", "dynamic", "float16",
                                                  "none"],
                              "ptq/qat: full int8 after or during training; int16x8: int16 "
                              "activations; dynamic/float16/none: not for microcontrollers.")
_FINETUNE_EPOCHS = flags.DEFINE_integer("finetune_epochs", 2, "Fine-tuning epochs of each "
                                        "compression stage that trains (pruning, QAT).",
                                        lower_bound=1)
_FINETUNE_LEARNING_RATE = flags.DEFINE_float("finetune_learning_rate", 5e-4, "Initial Adam "
                                             "learning rate of the fine-tuning stages.",
                                             lower_bound=1e-9)
_TARGET = flags.DEFINE_enum("target", None, ["cortex-m4", "cortex-m7"], "Check that the model "
                            "and its arena fit this chip's flash and RAM.")
_CALIBRATION = flags.DEFINE_integer("calibration_samples", 200,
                                    "Training images used to calibrate int8 ranges.",
                                    lower_bound=1)
_TFLM_INPUTS = flags.DEFINE_integer("tflm_inputs", 20, "Random inputs on which TFLM must match "
                                    "LiteRT's reference kernels exactly.", lower_bound=1)
_SYMBOL = flags.DEFINE_string("symbol", "g_model", "C symbol of the model array; not a name "
                              "the generated files use (main, kTensorArenaSize, OpResolver, "
                              "tflite, ...: c_array.RESERVED_NAMES).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for the artifacts.", required=True)


def _valid_symbol(value):
    try:
        c_array.check_symbol(value)
    except ValueError as exc:
        raise flags.ValidationError(str(exc))
    return True


def _valid_input_size(values):
    size = values["input_size"]
    if size is None or size < MIN_INPUT_SIZE:
        raise flags.ValidationError(
            f"--input_size={size} is below {MIN_INPUT_SIZE}, the smallest input tfedge compress "
            f"and tfedge train take (for {values['model']} as for every model): smaller images "
            "lose what tells the classes apart, and training ends at chance. Use "
            f"--input_size={MIN_INPUT_SIZE} or more (32 is the default)")
    return True


flags.register_validator("symbol", _valid_symbol)
flags.register_multi_flags_validator(["input_size", "model"], _valid_input_size)
flags.register_multi_flags_validator(
    ["epochs", "weights"], lambda f: f["epochs"] > 0 or f["weights"] is not None,
    message="--epochs=0 needs --weights=FILE: there would be no trained model to compress")
flags.register_multi_flags_validator(
    ["prune", "prune_channels"], lambda f: not (f["prune"] and f["prune_channels"]),
    message="--prune (magnitude pruning) and --prune_channels (channel pruning) are "
            "alternatives: set one of them")
_FILES = {"mnist": "the MNIST IDX files (t10k-images-idx3-ubyte[.gz], "
                   "t10k-labels-idx1-ubyte[.gz], optionally train-*)",
          "cifar10": "cifar-10-batches-bin (data_batch_*.bin, test_batch.bin)",
          "image_folder": "one sub-folder of images per class"}


def _data_dir_given(values):
    if values["dataset"] in _FILES and values["data_dir"] is None:
        raise flags.ValidationError(f"--dataset={values['dataset']} needs --data_dir=DIR "
                                    f"holding {_FILES[values['dataset']]}")
    if values["dataset"] == "tfds" and not values["tfds_name"]:
        raise flags.ValidationError("--dataset=tfds needs --tfds_name=NAME of a dataset "
                                    "prepared on disk (nothing is downloaded)")
    return True


flags.register_multi_flags_validator(["dataset", "data_dir", "tfds_name"], _data_dir_given)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected argument(s): {' '.join(argv[1:])}")
    lock = _io.FolderLock(_OUTPUT_DIR.value)
    try:
        lock.acquire()
    except _io.FolderLockedError as exc:
        holder = f"process {exc.pid}" if exc.pid is not None else "another process"
        sys.exit(f"tfedge compress: error: --output_dir={exc.path} is in use by {holder}, "
                 f"another run writing there (it holds {exc.lock_file}); wait for it to end, "
                 "or choose another --output_dir")
    except (ValueError, OSError) as exc:
        sys.exit(f"tfedge compress: error: cannot use --output_dir={_OUTPUT_DIR.value}: {exc}")
    try:
        _compress()
    finally:
        lock.release()


def _compress():
    from absl import logging

    from tfedge import pipeline, pruning, training
    from tfedge.converters import tflite, tflm

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines drown the summary
    try:
        input_shape = (_INPUT_SIZE.value, _INPUT_SIZE.value, int(_CHANNELS.value))
        splits = data.load(_DATASET.value, input_shape=input_shape, data_dir=_DATA_DIR.value,
                           seed=_SEED.value, tfds_name=_TFDS_NAME.value)
        training.seed_everything(_SEED.value)
        model = models.build(_MODEL.value, input_shape=input_shape,
                             num_classes=splits.num_classes, width=_WIDTH.value,
                             weights=_WEIGHTS.value)
        if _EPOCHS.value:
            training.fit(model, splits, epochs=_EPOCHS.value, batch_size=_BATCH_SIZE.value,
                         learning_rate=_LEARNING_RATE.value, seed=_SEED.value)
        quantize = None if _QUANTIZE.value == "none" else _QUANTIZE.value
        prune = (pruning.Prune(_PRUNE.value, schedule=_PRUNE_SCHEDULE.value)
                 if _PRUNE.value else None)
        if _CHANNELS_TARGET.value:
            from tfedge.channels import Channels

            prune = Channels(_CHANNELS_TARGET.value, by=_CHANNELS_BY.value,
                             criterion=_CHANNELS_CRITERION.value, steps=_CHANNELS_STEPS.value)
        result = pipeline.compress(
            model, train_data=(splits.x_train, splits.y_train),
            val_data=(splits.x_val, splits.y_val), prune=prune, quantize=quantize,
            epochs=_FINETUNE_EPOCHS.value, batch_size=_BATCH_SIZE.value,
            learning_rate=_FINETUNE_LEARNING_RATE.value, target=_TARGET.value,
            calibration_samples=_CALIBRATION.value, tflm_inputs=_TFLM_INPUTS.value,
            seed=_SEED.value, verbose=1 if prune or quantize == "qat" else 0)
        paths = result.save(_OUTPUT_DIR.value, symbol=_SYMBOL.value)
    except BrokenPipeError:
        raise  # the reader of the output went away: `tfedge` ends quietly (exit 141)
    except (ValueError, OSError, tflite.ConversionError, tflm.TFLMError) as exc:
        sys.exit(f"tfedge compress: error: {exc}")
    from tfedge import report

    print()
    print(report.text_table(result.metrics))
    print()
    for name, path in paths.items():
        print(f"wrote {path}")
    if result.metrics["mode"] == "int8" and not result.metrics.get("tflm_exact", True):
        sys.exit("tfedge compress: error: TFLM outputs differ from LiteRT's reference kernels "
                 f"(max abs difference {result.metrics['tflm_max_abs_diff']})")
