"""Train a model from the registry, checkpointing every epoch, then compress it to int8.

Example:

    tfedge train --model=mobilenet_v2 --width=0.35 --dataset=digits --input_size=32 \\
        --epochs=30 --augment=crop --prune=0.5 --quantize=qat --output_dir=runs/a
    tfedge train --flagfile=runs/a.flags              # the same flags from a file
    tfedge train --flagfile=runs/a.flags --resume     # after a crash: carries on

trains --epochs epochs (a checkpoint after each one in OUTPUT_DIR/checkpoints, TensorBoard logs
in OUTPUT_DIR/logs, history.json), then prunes, distills (--teacher), trains
quantization-aware and converts as `tfedge compress` does, and writes the same artifacts into
OUTPUT_DIR (model.tflite, model_data.cc/.h, op_resolver.h, model_settings.h, report.md,
report.json, the chart). A run killed at any point resumes with --resume from its last
checkpoint and ends with the same weights as a run that never stopped. --strategy=mirrored
uses every local device, --strategy=multi_worker the cluster in TF_CONFIG (one process per
worker), --strategy=tpu a TPU. Every flag is checked before any work.

Resuming: `tfedge train --output_dir=runs/a --resume` alone carries on the run in runs/a with
the settings in runs/a/config.json: every flag not given on the command line (or in a
flagfile) takes the run's saved value. A flag that is given must equal the saved value, or
the resume is refused with one line listing each such flag (given value and the run's), and
config.json is never rewritten. Only flags that change neither the weights nor the artifacts
may differ: --strategy (as long as the number of replicas, and so the global batch, stays the
same), --tensorboard and --resume itself. A damaged newest checkpoint is skipped for the newest
intact one, and an unusable latest.json for a scan of the checkpoint folders (one line
`tfedge train: warning: ...` each); a damaged or missing config.json, no intact checkpoint, a
checkpoint of another model, a full disk and every other failure of the run end in one line
`tfedge train: error: ...` on stderr, naming the file or the flags and the fix.

Exit status: 0 done; 2 bad flags, or a run that cannot start or go on (runs.RunError); 1 a
conversion or TFLM failure after training, or an output folder that cannot be made.
"""

import re
import sys

from absl import flags

from tfedge import data, models, runs

_F = flags
_MODEL = _F.DEFINE_enum("model", "mobilenet_v2", models.names(), "Model factory to build.")
_WIDTH = _F.DEFINE_float("width", 0.35, "Width (channel) multiplier of the model.")
_INPUT_SIZE = _F.DEFINE_integer("input_size", 32, "Input height and width in pixels.")
_CHANNELS = _F.DEFINE_enum("channels", "1", ["1", "3"], "Input channels.")
_DATASET = _F.DEFINE_enum("dataset", "digits", list(data.DATASETS),
                          "digits (embedded), mnist (IDX files), cifar10 (cifar-10-batches-bin), "
                          "image_folder (one folder per class), tfds (prepared TFDS data).")
_DATA_DIR = _F.DEFINE_string("data_dir", None, "Folder of the dataset's files.")
_TFDS_NAME = _F.DEFINE_string("tfds_name", None, "TFDS dataset name, with --dataset=tfds.")
_VAL_FRACTION = _F.DEFINE_float("val_fraction", 0.2, "Share of the data held out for "
                                "validation where the dataset has no split of its own.")
_EPOCHS = _F.DEFINE_integer("epochs", 30, "Training epochs.")
_BATCH_SIZE = _F.DEFINE_integer("batch_size", 32, "Batch size per replica.")
_OPTIMIZER = _F.DEFINE_enum("optimizer", "adam", list(runs.OPTIMIZERS), "Optimizer.")
_LEARNING_RATE = _F.DEFINE_float("learning_rate", 2e-3, "Peak learning rate.")
_MOMENTUM = _F.DEFINE_float("momentum", 0.9, "Momentum of sgd (Nesterov) and rmsprop.")
_WEIGHT_DECAY = _F.DEFINE_float("weight_decay", 0.0, "Weight decay of adamw.")
_LR_SCHEDULE = _F.DEFINE_enum("lr_schedule", "cosine", list(runs.SCHEDULES),
                              "cosine: to 0; step: x0.1 at 50% and 75%; exponential: x0.1 over "
                              "the run; constant.")
_WARMUP = _F.DEFINE_integer("warmup_epochs", 0, "Linear warm-up epochs before the schedule.")
_SMOOTHING = _F.DEFINE_float("label_smoothing", 0.0, "Label smoothing of the loss.")
_AUGMENT = _F.DEFINE_string("augment", "", "Comma-separated augmentations, e.g. flip,crop "
                            "(see tfedge.augment); empty for none.")
_DROPOUT = _F.DEFINE_float("dropout", None, "Dropout before the classifier (the factory's "
                           "default if unset).")
_SEED = _F.DEFINE_integer("seed", 0, "Seed of initialization, shuffling and augmentation.")
_RESUME = _F.DEFINE_boolean("resume", False, "Carry on from the last checkpoint in "
                            "--output_dir.")
_STRATEGY = _F.DEFINE_enum("strategy", "default", list(runs.STRATEGIES),
                           "tf.distribute strategy; multi_worker reads TF_CONFIG.")
_TENSORBOARD = _F.DEFINE_boolean("tensorboard", True, "Write TensorBoard logs.")
_COMPRESS = _F.DEFINE_boolean("compress", True, "After training, compress and write the "
                              "artifacts; --nocompress only trains.")
_PRUNE = _F.DEFINE_float("prune", 0.0, "Sparsity of magnitude pruning after training; 0: none.")
_PRUNE_CHANNELS = _F.DEFINE_float("prune_channels", 0.0, "Fraction of the MACs to remove by "
                                  "channel pruning after training; 0: none.")
_PRUNE_CHANNELS_STEPS = _F.DEFINE_integer("prune_channels_steps", 1, "Rounds of channel "
                                          "pruning, each fine-tuned --finetune_epochs.")
_QUANTIZE = _F.DEFINE_enum("quantize", "ptq", list(runs.QUANTIZE),
                           "ptq/qat: full int8; int16x8; dynamic/float16/none: not for MCUs.")
_FINETUNE_EPOCHS = _F.DEFINE_integer("finetune_epochs", 2, "Epochs of each compression stage "
                                     "that trains.")
_FINETUNE_LR = _F.DEFINE_float("finetune_learning_rate", 5e-4, "Learning rate of those stages.")
_TEACHER = _F.DEFINE_string("teacher", None, "A saved Keras model (.keras or .h5) to distill "
                            "from while the compression stages fine-tune.")
_TEMPERATURE = _F.DEFINE_float("distill_temperature", 4.0, "Distillation temperature.")
_ALPHA = _F.DEFINE_float("distill_alpha", 0.9, "Weight of the soft (teacher) loss.")
_CALIBRATION = _F.DEFINE_integer("calibration_samples", 200, "Images that calibrate int8.")
_TFLM_INPUTS = _F.DEFINE_integer("tflm_inputs", 20, "Random inputs TFLM must match exactly.")
_TARGET = _F.DEFINE_enum("target", None, ["cortex-m4", "cortex-m7"], "Chip budget to check.")
_SYMBOL = _F.DEFINE_string("symbol", "g_model", "C symbol of the model array.")
_OUTPUT_DIR = _F.DEFINE_string("output_dir", None, "The run's folder: checkpoints, logs, "
                               "artifacts.", required=True)

_FIELDS = {flag.name: flag for flag in (
    _MODEL, _WIDTH, _INPUT_SIZE, _DATASET, _DATA_DIR, _TFDS_NAME, _VAL_FRACTION, _EPOCHS,
    _BATCH_SIZE, _OPTIMIZER, _LEARNING_RATE, _MOMENTUM, _WEIGHT_DECAY, _LR_SCHEDULE, _WARMUP,
    _SMOOTHING, _AUGMENT, _DROPOUT, _SEED, _RESUME, _STRATEGY, _TENSORBOARD, _COMPRESS, _PRUNE,
    _PRUNE_CHANNELS, _PRUNE_CHANNELS_STEPS, _QUANTIZE, _FINETUNE_EPOCHS, _FINETUNE_LR, _TEACHER,
    _TEMPERATURE, _ALPHA, _CALIBRATION, _TFLM_INPUTS, _TARGET, _SYMBOL, _OUTPUT_DIR)}



def _cli(text):
    """A message of tfedge.runs on the command line: its fields `like_this` are --like_this."""
    return re.sub(r"`(\w+)`", r"--\1", str(text))


def config_from_flags():
    """The RunConfig the flags describe; ValueError (naming the flag) when they do not fit.

    With --resume, a flag not given explicitly takes its value from the run's config.json
    (runs.RunError when that cannot be read); `runs.train` then refuses given flags that
    differ from the run's settings.
    """
    values = {name: holder.value for name, holder in _FIELDS.items()}
    values["channels"] = int(_CHANNELS.value)
    if _RESUME.value:
        saved = runs.read_config(_OUTPUT_DIR.value) or {}
        for name in list(values):
            if name not in ("output_dir", "resume") and name in saved \
                    and not flags.FLAGS[name].present:
                values[name] = saved[name]
    try:
        return runs.RunConfig(**values)
    except ValueError as exc:
        # The config names its fields `like_this`; on the command line they are --like_this.
        raise ValueError(_cli(exc)) from None


def main(argv):
    if len(argv) > 1:
        print(f"tfedge train: error: unexpected argument(s): {' '.join(argv[1:])}",
              file=sys.stderr)
        sys.exit(2)
    import logging as pylogging

    from absl import logging

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    # What a run skips or ignores (a damaged checkpoint, a bad latest.json) is one line each.
    handler = pylogging.StreamHandler(sys.stderr)
    handler.setFormatter(pylogging.Formatter("tfedge train: warning: %(message)s"))
    runs_log = pylogging.getLogger(runs.__name__)
    runs_log.addHandler(handler)
    runs_log.propagate = False
    try:
        config = config_from_flags()
    except (ValueError, runs.RunError) as exc:
        print(f"tfedge train: error: {_cli(exc)}", file=sys.stderr)
        sys.exit(2)
    from tfedge import report
    from tfedge.converters import tflite, tflm

    try:
        result = runs.train(config)
    except (ValueError, OSError, runs.RunError, tflite.ConversionError, tflm.TFLMError) as exc:
        print(f"tfedge train: error: {_cli(exc) if isinstance(exc, runs.RunError) else exc}",
              file=sys.stderr)
        sys.exit(2 if isinstance(exc, (ValueError, runs.RunError)) else 1)
    if result.resumed_from:
        print(f"\nresumed after epoch {result.resumed_from}")
    if result.compress is not None:
        print()
        print(report.text_table(result.compress.metrics))
        print(f"\nwrote the artifacts into {config.output_dir}")
