"""Training runs that survive a crash and scale out: what `tfedge train` runs.

    config = runs.RunConfig(model="mobilenet_v2", width=0.35, dataset="digits", epochs=30,
                            output_dir="runs/a", prune=0.5, quantize="qat")
    result = runs.train(config)          # trains, then compresses; artifacts in runs/a/
    runs.train(dataclasses.replace(config, resume=True))   # after a crash: carries on

Determinism is what makes resuming exact. Every epoch starts from a state that is a function of
(seed, epoch) alone: Python's, NumPy's and TensorFlow's seeds are set to it, the training step
is traced afresh (so its random ops start from the same state), the data is shuffled with a
seed of its own and augmented with stateless random ops seeded by (seed, epoch, batch), and
TensorFlow's ops run deterministically (`enable_op_determinism`). A checkpoint after every
epoch holds the weights, the optimizer (its step drives the learning-rate schedule) and the
epoch; it is written into a fresh folder and renamed into place, and `latest.json` is replaced
atomically after it, so a crash at any moment leaves the previous checkpoint whole. Resuming
after a `kill -9` in the middle of epoch k restarts epoch k from the checkpoint of epoch k-1 and
ends with the same weights, bit for bit, as a run that never stopped.

A resume trusts nothing it reads back. config.json must be the run's settings (every field,
each of its type, accepted by RunConfig); the settings of the resumed run must equal them,
except RESUME_MAY_DIFFER (output_dir, resume, strategy, tensorboard, verbose), and
config.json is never rewritten. latest.json must name a checkpoint folder inside the
checkpoints folder; when it cannot be used, the folders are scanned instead. Every candidate
checkpoint is read back whole (state.json, every tensor, their checksums) before it is used,
newest first: a damaged one is skipped with a warning, and the restore must fit the model
exactly. A checkpoint records the global batch it was trained with, so that a change of
strategy that changes the number of replicas is refused. Each of these ends in a RunError
whose one line names the file or the settings and the fix.

Scale-out goes through `tf.distribute` only: "default" (one device), "mirrored" (the local
devices), "multi_worker" (`MultiWorkerMirroredStrategy`, the cluster from TF_CONFIG; the chief,
worker 0, writes the checkpoints and artifacts, the others write theirs to a temporary folder as
TensorFlow requires) and "tpu" (`TPUStrategy`).
"""

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import stat
import tempfile
import time

import numpy as np

from tfedge import _io

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("cosine", "constant", "step", "exponential")
QUANTIZE = ("ptq", "qat", "int16x8", "dynamic", "float16", "none")
CHECKPOINTS = "checkpoints"
LATEST = "latest.json"
KEEP_CHECKPOINTS = 2

_log = logging.getLogger(__name__)


class RunError(RuntimeError):
    """A run cannot start or go on; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run does; `tfedge train` flags map one to one onto these fields."""

    output_dir: str
    model: str = "mobilenet_v2"
    width: float = 0.35
    input_size: int = 32
    channels: int = 1
    dataset: str = "digits"
    data_dir: str = None
    tfds_name: str = None
    val_fraction: float = 0.2
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    augment: str = ""
    dropout: float = None
    seed: int = 0
    resume: bool = False
    strategy: str = "default"
    tensorboard: bool = True
    compress: bool = True
    verbose: int = 1
    # After training: the compression stages of `tfedge.compress`.
    prune: float = 0.0
    prune_channels: float = 0.0
    prune_channels_steps: int = 1
    quantize: str = "ptq"
    finetune_epochs: int = 2
    finetune_learning_rate: float = 5e-4
    teacher: str = None
    distill_temperature: float = 4.0
    distill_alpha: float = 0.9
    calibration_samples: int = 200
    tflm_inputs: int = 20
    target: str = None
    symbol: str = "g_model"

    def __post_init__(self):
        _validate(self)


# The smallest input height and width (`tfedge train` and `tfedge compress`). Every zoo factory
# builds down to 1x1 inputs (padding "same" everywhere), so the limit is the data's, not the
# models': the embedded digits are 8x8, and smaller inputs train to chance.
MIN_INPUT_SIZE = 8


def _fail(field, value, expectation):
    raise ValueError(f"`{field}` {expectation}. Received: {field}={value!r}")


def _validate(c):
    from tfedge import data, models

    if not c.output_dir or not isinstance(c.output_dir, str):
        _fail("output_dir", c.output_dir, "must name the run's folder")
    if c.model not in models.names():
        _fail("model", c.model, f"must be one of {models.names()}")
    if c.dataset not in data.DATASETS:
        _fail("dataset", c.dataset, f"must be one of {list(data.DATASETS)}")
    for field, allowed in (("optimizer", OPTIMIZERS), ("lr_schedule", SCHEDULES),
                           ("strategy", STRATEGIES), ("quantize", QUANTIZE)):
        if getattr(c, field) not in allowed:
            _fail(field, getattr(c, field), f"must be one of {list(allowed)}")
    for field, minimum in (("epochs", 1), ("batch_size", 1), ("input_size", MIN_INPUT_SIZE),
                           ("finetune_epochs", 1), ("prune_channels_steps", 1),
                           ("calibration_samples", 1), ("tflm_inputs", 1),
                           ("warmup_epochs", 0)):
        value = getattr(c, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            _fail(field, value, f"must be an integer >= {minimum}")
    if c.channels not in (1, 3):
        _fail("channels", c.channels, "must be 1 or 3")
    if c.warmup_epochs >= c.epochs:
        _fail("warmup_epochs", c.warmup_epochs, f"must be below epochs ({c.epochs})")
    for field in ("learning_rate", "finetune_learning_rate", "width", "distill_temperature"):
        if not getattr(c, field) > 0:
            _fail(field, getattr(c, field), "must be > 0")
    for field in ("momentum", "label_smoothing", "distill_alpha", "weight_decay"):
        if not 0 <= getattr(c, field) <= 1:
            _fail(field, getattr(c, field), "must be in [0, 1]")
    if not 0 <= c.prune < 1 or not 0 <= c.prune_channels < 1:
        _fail("prune" if not 0 <= c.prune < 1 else "prune_channels",
              c.prune if not 0 <= c.prune < 1 else c.prune_channels, "must be in [0, 1)")
    if c.prune and c.prune_channels:
        raise ValueError("`prune` (magnitude pruning) and `prune_channels` (channel pruning) "
                         "are alternatives: set one of them")
    if c.dataset in ("mnist", "cifar10", "image_folder") and not c.data_dir:
        _fail("data_dir", c.data_dir, f"must name the folder of the {c.dataset} files "
              f"(nothing is downloaded)")
    if c.dataset == "tfds" and not c.tfds_name:
        _fail("tfds_name", c.tfds_name, "must name the TFDS dataset for dataset='tfds'")
    if c.teacher is not None and not os.path.isfile(c.teacher):
        _fail("teacher", c.teacher, "must be a saved Keras model file (.keras or .h5) that "
              "exists")
    if c.dropout is not None and not 0 <= c.dropout < 1:
        _fail("dropout", c.dropout, "must be in [0, 1)")
    from tfedge.augment import Augment
    from tfedge.converters import c_array

    Augment.from_flag(c.augment, (c.input_size, c.input_size, c.channels))
    c_array.check_symbol(c.symbol)  # before training, not at the final save


# ---------------------------------------------------------------------------------------------
# Pieces.


def make_strategy(name):
    """The `tf.distribute` strategy for `name` (see STRATEGIES)."""
    from tfedge._keras import tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        config = os.environ.get("TF_CONFIG")
        if not config:
            raise RunError("strategy 'multi_worker' reads the cluster from the TF_CONFIG "
                           "environment variable, which is not set; e.g. TF_CONFIG='{\"cluster\": "
                           "{\"worker\": [\"host1:12345\", \"host2:12345\"]}, \"task\": "
                           "{\"type\": \"worker\", \"index\": 0}}'")
        try:
            spec = json.loads(config)
            spec["cluster"]["worker"], spec["task"]["index"]
        except (ValueError, KeyError, TypeError) as exc:
            raise RunError(f"TF_CONFIG is not a cluster spec with cluster.worker and "
                           f"task.index: {exc}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        raise RunError(f"strategy 'tpu' found no TPU to connect to ({exc}); run on a TPU VM "
                       "or choose --strategy=default") from None
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """True for the process that writes checkpoints and artifacts (worker 0 or alone)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0)


def epoch_seed(seed, epoch):
    """The seed everything random in epoch `epoch` derives from."""
    return (int(seed) * 1_000_003 + int(epoch)) % (2 ** 31 - 1)


def _schedule(config, steps_per_epoch):
    from tfedge._keras import keras, tf

    total = steps_per_epoch * config.epochs
    warmup = steps_per_epoch * config.warmup_epochs
    lr = config.learning_rate
    if config.lr_schedule == "constant":
        base = lambda step: tf.constant(lr, tf.float32)  # noqa: E731
    elif config.lr_schedule == "cosine":
        decay = keras.optimizers.schedules.CosineDecay(lr, max(1, total - warmup))
        base = lambda step: decay(step - warmup)  # noqa: E731
    elif config.lr_schedule == "step":  # x0.1 at 50% and 75% of the steps
        boundaries = [int(0.5 * total), int(0.75 * total)]
        decay = keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, [lr, lr * 0.1, lr * 0.01])
        base = decay
    else:  # exponential: x0.1 over the run
        decay = keras.optimizers.schedules.ExponentialDecay(lr, max(1, total), 0.1)
        base = decay

    class Schedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            value = tf.cast(base(step), tf.float32)
            if warmup:
                value = tf.where(step < warmup, lr * (step + 1) / warmup, value)
            return value

        def get_config(self):
            return {}

    return Schedule()


def make_optimizer(config, steps_per_epoch):
    from tfedge._keras import keras

    schedule = _schedule(config, steps_per_epoch)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(schedule)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True)
    return keras.optimizers.RMSprop(schedule, momentum=config.momentum)


def epoch_dataset(splits, config, epoch, global_batch):
    """The training data of one epoch: shuffled and augmented as a function of (seed, epoch)."""
    from tfedge._keras import tf
    from tfedge.augment import Augment

    augment = Augment.from_flag(config.augment, splits.input_shape)
    seed = epoch_seed(config.seed, epoch)
    ds = tf.data.Dataset.from_tensor_slices((splits.x_train, splits.y_train.astype(np.int32)))
    ds = ds.shuffle(len(splits.y_train), seed=seed, reshuffle_each_iteration=False)
    ds = ds.batch(global_batch)
    if augment:
        ds = ds.enumerate().map(
            lambda i, xy: (augment(xy[0], tf.stack([tf.constant(seed, tf.int64), i])), xy[1]),
            deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = \
        tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(2)


# ---------------------------------------------------------------------------------------------
# The run's files. Every byte of them is untrusted when a run resumes: each is read through
# `_read_json` (a regular file, at most `limit` bytes, JSON without NaN) and checked.

CONFIG = "config.json"
HISTORY = "history.json"
STATE = "state.json"
# Settings that may differ when a run resumes: where and how it runs and what it prints, never
# what it computes or writes. `strategy` may change as long as the global batch (batch_size x
# replicas in sync, recorded in every checkpoint) stays the same.
RESUME_MAY_DIFFER = ("output_dir", "resume", "strategy", "tensorboard", "verbose")
_FOLDER = re.compile(r"epoch-(\d{4,9})")
_JSON_LIMIT = 1 << 20
_STATE_LIMIT = 64 << 20  # a state.json holds the run's history: ~200 bytes an epoch


class _Bad(Exception):
    """Why a file of the run cannot be used: `file` (its path) and `reason`."""

    def __init__(self, file, reason):
        super().__init__(f"{file}: {reason}")
        self.file, self.reason = file, reason


def _first_line(exc, limit=300):
    text = str(getattr(exc, "message", None) or exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _reject_constant(name):
    raise ValueError(f"{name} is not a number JSON allows")


def _read_json(path, limit=_JSON_LIMIT):
    """The JSON value in `path`; _Bad when it is not a readable regular file of at most `limit`
    bytes holding strict JSON (a FIFO or a device would hang or never end: refused)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise _Bad(path, "it is not a regular file")
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise _Bad(path, f"it cannot be read ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise _Bad(path, f"it holds more than {limit} bytes, more than tfedge writes there")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _Bad(path, f"it is not JSON ({_first_line(exc)})") from None


def _folder_name(epoch):
    return f"epoch-{epoch:04d}"


def _folder_epoch(name):
    """The epoch of a checkpoint folder's name (exactly as `_folder_name` writes it), or None."""
    match = _FOLDER.fullmatch(name) if isinstance(name, str) else None
    if match is None or int(match.group(1)) < 1 or _folder_name(int(match.group(1))) != name:
        return None
    return int(match.group(1))


def _is_int(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_field(field, value):
    """None when `value` has the type of the RunConfig field `field`, else what is wrong."""
    if value is None and field.default is None:
        return None
    kind = field.type
    ok = (isinstance(value, bool) if kind is bool else
          _is_int(value, -2 ** 63) if kind is int else
          isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
          isinstance(value, str))
    return None if ok else f"`{field.name}` is {value!r}, not {kind.__name__}" + (
        " or null" if field.default is None else "")


def read_config(output_dir):
    """The settings in OUTPUT_DIR/config.json, a dict of every RunConfig field, or None when
    the file does not exist. RunError naming the file when it cannot be read, is not a JSON
    object of exactly the RunConfig fields with their types, or holds settings RunConfig
    refuses."""
    path = os.path.join(output_dir, CONFIG)
    if not os.path.lexists(path):
        return None
    fix = ("it holds the run's settings: restore it from a copy, or start a new run in another "
           "--output_dir")
    try:
        saved = _read_json(path)
    except _Bad as bad:
        raise RunError(f"{path} cannot be used: {bad.reason}; {fix}") from None
    if not isinstance(saved, dict):
        raise RunError(f"{path} cannot be used: it holds a JSON {type(saved).__name__}, not "
                       f"the object of a run's settings; {fix}")
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(saved) - set(fields))
    missing = [name for name in fields if name not in saved]
    problems = ([f"`{name}` is not a setting of tfedge train" for name in unknown[:5]]
                + ([f"it lacks {', '.join(f'`{n}`' for n in missing)}"] if missing else [])
                + [p for p in (_check_field(fields[n], saved[n]) for n in fields if n in saved)
                   if p])
    if problems:
        raise RunError(f"{path} cannot be used: {'; '.join(problems[:5])}; {fix}")
    try:
        RunConfig(**dict(saved, output_dir=output_dir, resume=True))
    except (ValueError, TypeError) as exc:
        raise RunError(f"{path} cannot be used: {_first_line(exc)}; {fix}") from None
    return saved


def config_differences(saved, config):
    """[(field, saved value, value of `config`)] for every setting outside RESUME_MAY_DIFFER
    where `config` differs from the `saved` settings (a `read_config` dict)."""
    return [(f.name, saved[f.name], getattr(config, f.name))
            for f in dataclasses.fields(RunConfig)
            if f.name not in RESUME_MAY_DIFFER and saved[f.name] != getattr(config, f.name)]


def _check_history(history, epochs):
    """`history` when it is the list tfedge writes for `epochs` epochs (one object an epoch,
    numbered 1..epochs, numbers or null only), else None."""
    if not isinstance(history, list) or len(history) != epochs:
        return None
    for number, entry in enumerate(history, 1):
        if not isinstance(entry, dict) or entry.get("epoch") != number or not all(
                v is None or isinstance(v, (int, float)) and not isinstance(v, bool)
                for v in entry.values()):
            return None
    return history


# ---------------------------------------------------------------------------------------------
# Checkpoints: a folder per epoch, renamed into place, then latest.json replaced.


def checkpoint_dir(output_dir):
    return os.path.join(output_dir, CHECKPOINTS)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """An intact checkpoint: its epoch, folder, TensorFlow prefix and state.json."""

    epoch: int
    folder: str
    prefix: str
    state: dict


def _checkpoint_folders(root):
    """[(epoch, folder name)] of the checkpoint folders in `root`, newest first."""
    try:
        names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise RunError(f"{root} cannot be read ({exc.strerror or exc}); make it readable, then "
                       "run again with --resume") from None
    found = ((_folder_epoch(name), name) for name in names)
    return sorted(((epoch, name) for epoch, name in found if epoch), reverse=True)


def _read_pointer(root):
    """(epoch, folder name) that latest.json names, or None when there is none; _Bad when it
    is not the pointer tfedge writes (a JSON object naming a checkpoint folder of `root`)."""
    path = os.path.join(root, LATEST)
    if not os.path.lexists(path):
        return None
    info = _read_json(path, limit=4096)
    if not isinstance(info, dict):
        raise _Bad(path, f"it holds a JSON {type(info).__name__}, not an object with the "
                         "folder and epoch of the newest checkpoint")
    folder, epoch = info.get("folder"), info.get("epoch")
    if "folder" not in info:
        raise _Bad(path, "it has no \"folder\"")
    if _folder_epoch(folder) is None:
        raise _Bad(path, f"its folder {folder!r} is not the name of a checkpoint folder "
                         f"(epoch-NNNN) inside {root}")
    if epoch != _folder_epoch(folder) or not _is_int(epoch, 1):
        raise _Bad(path, f"its epoch {epoch!r} is not the epoch of {folder}")
    return epoch, folder


def _verify(root, epoch, name):
    """The Checkpoint in folder `name` of `root` after reading every byte of it; _Bad naming
    the damaged file otherwise."""
    from tfedge._keras import tf

    folder = os.path.join(root, name)
    if os.path.islink(folder) or not os.path.isdir(folder):
        raise _Bad(folder, "it is not a folder")
    state = _read_json(os.path.join(folder, STATE), limit=_STATE_LIMIT)
    if not isinstance(state, dict) or state.get("epoch") != epoch:
        raise _Bad(os.path.join(folder, STATE), f"it does not say epoch {epoch}")
    if "history" in state and _check_history(state["history"], epoch) is None:
        raise _Bad(os.path.join(folder, STATE), f"its history is not that of epochs 1-{epoch}")
    if "global_batch" in state and not _is_int(state["global_batch"], 1):
        raise _Bad(os.path.join(folder, STATE), f"its global_batch {state['global_batch']!r} "
                                                 "is not a positive integer")
    index = os.path.join(folder, "ckpt.index")
    try:
        data = sorted(f for f in os.listdir(folder) if f.startswith("ckpt.data-"))
        for file in ["ckpt.index"] + data:
            path = os.path.join(folder, file)
            if not os.path.lexists(path):
                raise _Bad(path, "it is missing")
            if not stat.S_ISREG(os.lstat(path).st_mode):  # a FIFO would hang the reader
                raise _Bad(path, "it is not a regular file")
    except OSError as exc:
        raise _Bad(folder, f"it cannot be read ({exc.strerror or exc})") from None
    shards = os.path.join(folder, data[0] if len(data) == 1 else "ckpt.data-*")
    prefix = os.path.join(folder, "ckpt")

    def damaged(exc, default):
        # TensorFlow's message often starts with the file it could not read: name that one.
        reason = _first_line(exc)
        named = re.match(re.escape(folder) + r"/(ckpt\.[\w.-]+)(?:; |: )(.*)", reason)
        if named:
            return _Bad(os.path.join(folder, named.group(1)), named.group(2))
        return _Bad(default, reason)

    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as exc:  # noqa: BLE001 (the reader raises many kinds; all mean damage)
        raise damaged(exc, shards if ".data-" in str(exc) else index) from None
    try:
        for key in sorted(reader.get_variable_to_dtype_map()):
            reader.get_tensor(key)
    except Exception as exc:  # noqa: BLE001 (IndexError for a short file, OpError, ...)
        raise damaged(exc, shards) from None
    return Checkpoint(epoch, folder, prefix, state)


def find_checkpoint(output_dir):
    """The newest intact Checkpoint of the run in `output_dir`, or None when it has none.

    latest.json names the newest checkpoint; every folder up to it is a candidate, newest
    first, and the first one whose every file reads back whole is taken, with one warning
    line for each damaged one skipped. A latest.json that cannot be used (not JSON, not the
    pointer tfedge writes, naming a folder outside the checkpoints folder or one that is gone)
    is ignored with a warning, and the folders are scanned instead: that is sound because a
    folder only ever gets its name once it is whole, and each is read back before it is used.
    RunError naming the file when checkpoints exist but none is intact.
    """
    root = checkpoint_dir(output_dir)
    folders = _checkpoint_folders(root)
    pointer_path = os.path.join(root, LATEST)
    try:
        pointer = _read_pointer(root)
    except _Bad as bad:
        if not folders:
            raise RunError(f"{pointer_path} cannot be used: {bad.reason}, and {root} holds no "
                           f"checkpoint folder to resume from; restore the checkpoints, or "
                           f"remove {pointer_path} and run again with --resume to train from "
                           "epoch 1") from None
        _log.warning("%s is ignored: %s; resuming from the newest intact checkpoint folder "
                     "instead", pointer_path, bad.reason)
        pointer = None
    else:
        if pointer is not None:
            epoch, name = pointer
            if (epoch, name) not in folders:
                older = [f for f in folders if f[0] < epoch]
                if not older:
                    raise RunError(f"{pointer_path} points at {name}, which is missing, and no "
                                   f"older checkpoint is in {root}; restore {name}, or remove "
                                   f"{root} and run again with --resume to train from epoch 1")
                _log.warning("%s points at %s, which is missing; resuming from an older "
                             "checkpoint", pointer_path, name)
            folders = [f for f in folders if f[0] <= epoch]
    skipped = []
    for epoch, name in folders:
        try:
            found = _verify(root, epoch, name)
        except _Bad as bad:
            skipped.append((name, bad))
            continue
        for folder, bad in skipped:
            _log.warning("skipped the damaged checkpoint %s (%s: %s); resuming from %s",
                         folder, bad.file, bad.reason, name)
        return found
    if skipped:
        name, bad = skipped[0]
        older = ("" if len(skipped) == 1 else ", and so is the one before it"
                 if len(skipped) == 2 else f", and so are the {len(skipped) - 1} before it")
        raise RunError(f"no intact checkpoint in {root} to resume from: {bad.file} is damaged "
                       f"({bad.reason}){older}; restore it, or remove {root} and run again "
                       "with --resume to train from epoch 1")
    return None


def latest_checkpoint(output_dir):
    """(epoch, checkpoint prefix) of the newest intact checkpoint, or None (find_checkpoint)."""
    found = find_checkpoint(output_dir)
    return None if found is None else (found.epoch, found.prefix)


def _disk_error(exc):
    """What an OSError or tf.errors.OpError raised while writing says, in a few words."""
    import errno

    number = getattr(exc, "errno", None)
    kind = type(exc).__name__
    if number in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if kind == "ResourceExhaustedError":
        return f"the disk is full ({kind}: {_first_line(exc, 200)})"
    if number == errno.ENOENT or kind == "NotFoundError":
        return "the folder is gone"
    if isinstance(exc, OSError):
        return exc.strerror or _first_line(exc)
    return f"{kind}: {_first_line(exc, 200)}"


def _remove(path):
    """Removes the folder or file (or link: never what it points at) `path`, if it is there."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def save_checkpoint(checkpoint, output_dir, epoch, extra=None):
    """Writes the checkpoint of a finished `epoch`; returns its folder.

    Written into a temporary folder beside the others, renamed into place, then `latest.json`
    is replaced atomically: earlier checkpoints are never touched before the new one is whole,
    and a full disk (OSError ENOSPC, or TensorFlow's ResourceExhaustedError from SaveV2), any
    other failed write or a vanished folder raises RunError with them intact, latest.json
    still naming the previous one and no part of the new one left behind.
    """
    from tfedge._keras import tf

    root = checkpoint_dir(output_dir)
    name = _folder_name(epoch)
    final = os.path.join(root, name)
    try:
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=root)
        try:
            checkpoint.write(os.path.join(tmp, "ckpt"))
            with open(os.path.join(tmp, STATE), "w") as f:
                json.dump({"epoch": epoch, **(extra or {})}, f)
            _remove(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            _io.write_atomic(os.path.join(root, LATEST),
                             json.dumps({"epoch": epoch, "folder": name}) + "\n")
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)  # latest.json never named it
            raise
    except (OSError, tf.errors.OpError) as exc:
        raise RunError(f"could not write the checkpoint of epoch {epoch} into {root}: "
                       f"{_disk_error(exc)}. The checkpoints written before it are intact; "
                       "free space or restore the folder, then run again with --resume") from exc
    # Keep this one and the KEEP_CHECKPOINTS - 1 before it; drop the rest, and what a killed
    # run left of a temporary folder.
    others = [n for e, n in _checkpoint_folders(root) if e != epoch]
    keep = [n for e, n in _checkpoint_folders(root) if e < epoch][:KEEP_CHECKPOINTS - 1]
    for stale in [n for n in others if n not in keep] + [
            n for n in os.listdir(root) if n.startswith(".epoch-")]:
        path = os.path.join(root, stale)
        if not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------------------------
# The run.


@dataclasses.dataclass
class RunResult:
    """What `train` made: the trained model, its history, and the compress result (chief)."""

    model: object
    history: list
    compress: object = None
    resumed_from: int = 0


def weights_digest(model):
    """A hex digest of every weight of `model`, to compare runs bit for bit."""
    import hashlib

    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def train(config, *, on_batch=None):
    """Trains (or resumes) the run of `config`, then compresses it; see the module docstring.

    `on_batch(epoch, batch)` is called after every training batch (progress hooks, tests).
    Raises ValueError for a bad config and RunError for what stops a run (nothing to resume,
    an unwritable checkpoint, a missing TF_CONFIG, ...), each before or without losing work.
    """
    with contextlib.ExitStack() as cleanup:
        return _train(config, on_batch, cleanup)


def _train(config, on_batch, cleanup):
    from tfedge import data, models, training
    from tfedge._keras import keras, tf

    tf.config.experimental.enable_op_determinism()
    output_dir = config.output_dir
    previous = _resume_point(config) if config.resume else None
    if not config.resume and _has_checkpoints(output_dir):
        raise RunError(f"{output_dir} already holds a run (its {CHECKPOINTS} folder); pass "
                       "--resume to carry on, or choose another --output_dir")
    strategy = make_strategy(config.strategy)
    chief = is_chief(strategy)
    if chief:  # one run per folder (the other workers write into folders of their own)
        try:
            cleanup.enter_context(_io.FolderLock(output_dir))
        except _io.FolderLockedError as exc:
            holder = f"process {exc.pid}" if exc.pid is not None else "another process"
            raise RunError(f"{output_dir} is in use by {holder}, another run writing there (it "
                           f"holds {exc.lock_file}); wait for it to end, or choose another "
                           "--output_dir") from None
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    saved_batch = previous.state.get("global_batch") if previous is not None else None
    if saved_batch not in (None, global_batch):
        raise RunError(f"checkpoint {previous.folder} was trained with a global batch of "
                       f"{saved_batch} (batch_size x replicas); this run has {global_batch} "
                       f"({replicas} replica(s) with strategy '{config.strategy}'). Resume on as "
                       "many devices as the run started with")
    write_dir = output_dir if chief else tempfile.mkdtemp(prefix="tfedge-worker-")
    _io.ensure_dir(write_dir)

    input_shape = (config.input_size, config.input_size, config.channels)
    splits = data.load(config.dataset, input_shape=input_shape, data_dir=config.data_dir,
                       val_fraction=config.val_fraction, seed=config.seed,
                       **({"tfds_name": config.tfds_name} if config.tfds_name else {}))
    steps_per_epoch = math.ceil(len(splits.y_train) / global_batch)

    training.seed_everything(config.seed)
    with strategy.scope():
        kwargs = {} if config.dropout is None else {"dropout": config.dropout}
        model = models.build(config.model, input_shape=input_shape,
                             num_classes=splits.num_classes, width=config.width, **kwargs)
        optimizer = make_optimizer(config, steps_per_epoch)
        model.compile(optimizer=optimizer,
                      loss=keras.losses.SparseCategoricalCrossentropy()
                      if not config.label_smoothing else _smoothed_loss(config.label_smoothing,
                                                                         splits.num_classes),
                      metrics=["accuracy"])
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    start, history = 0, []
    if previous is not None:
        with strategy.scope():
            # The slots exist before the restore, so that every value in the checkpoint has a
            # variable to go to and assert_consumed can say the checkpoint fits exactly.
            optimizer.build(model.trainable_variables)
            try:
                checkpoint.read(previous.prefix).assert_consumed()
            except (AssertionError, ValueError, tf.errors.OpError) as exc:
                raise RunError(
                    f"checkpoint {previous.folder} does not fit the model of this run "
                    f"({_first_line(exc, 200)}): it was written by another model or with other "
                    "settings. Restore the run's own checkpoints, or start a new run in "
                    "another --output_dir") from None
        start = int(epoch_var.numpy())
        if start != previous.epoch:
            raise RunError(f"checkpoint {previous.folder} does not fit its folder: it holds "
                           f"epoch {start}, not {previous.epoch}. Restore the run's own "
                           "checkpoints, or start a new run in another --output_dir")
        history = _history_at(output_dir, previous)
    if chief and not config.resume:
        # Written once the run is about to train. A resumed run keeps the config.json it
        # started with; a start over a run that never finished an epoch replaces it.
        _write_run_file(os.path.join(output_dir, CONFIG),
                        json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True))

    callbacks = []
    if config.tensorboard and chief:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"),
                                                     write_graph=False, profile_batch=0))
    if on_batch is not None:
        callbacks.append(_BatchHook(on_batch))
    val = splits.val(batch_size=global_batch)
    for epoch in range(start, config.epochs):
        training.seed_everything(epoch_seed(config.seed, epoch))
        model.train_function = None  # retraced: its random ops start from the seed above
        started = time.perf_counter()
        if config.verbose:
            print(f"epoch {epoch + 1}/{config.epochs}", flush=True)
        logs = model.fit(epoch_dataset(splits, config, epoch, global_batch),
                         validation_data=val, initial_epoch=epoch, epochs=epoch + 1,
                         verbose=config.verbose, callbacks=callbacks).history
        history.append({"epoch": epoch + 1, "seconds": round(time.perf_counter() - started, 2),
                        **{k: _finite(v[-1]) for k, v in logs.items()}})
        epoch_var.assign(epoch + 1)
        save_checkpoint(checkpoint, write_dir, epoch + 1,
                        extra={"global_batch": global_batch, "history": history})
        if chief:
            _write_run_file(os.path.join(output_dir, HISTORY), json.dumps(history, indent=2))
    # Every worker reads the weights (reading a variable synchronized on read, such as a
    # BatchNorm statistic, is a collective: all must take part), then carries on with a plain
    # copy outside the strategy.
    weights = model.get_weights()
    training.seed_everything(config.seed)
    plain = models.build(config.model, input_shape=input_shape, num_classes=splits.num_classes,
                         width=config.width, **kwargs)
    plain.set_weights(weights)
    if chief:
        _write_run_file(os.path.join(output_dir, "weights.sha256"), weights_digest(plain))
    model = plain
    result = RunResult(model=model, history=history, resumed_from=start)
    if chief and config.compress:
        result.compress = _compress(config, model, splits)
        result.compress.save(output_dir, symbol=config.symbol)
    if not chief:
        shutil.rmtree(write_dir, ignore_errors=True)
    return result


def _smoothed_loss(smoothing, classes):
    from tfedge._keras import keras, tf

    base = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)

    def loss(y_true, y_pred):
        return base(tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), classes), y_pred)

    return loss


def _finite(value):
    """A metric as JSON can hold it: a float, or None for NaN and infinities."""
    value = float(value)
    return value if math.isfinite(value) else None


def _write_run_file(path, text):
    """Writes one of the run's own files whole; RunError (not a traceback) when the disk is full."""
    from tfedge._keras import tf

    try:
        _io.write_atomic(path, text + "\n")
    except (OSError, tf.errors.OpError) as exc:
        raise RunError(f"could not write {path}: {_disk_error(exc)}. The checkpoints are "
                       "intact; free space or fix the folder, then run again with --resume"
                       ) from exc


def _has_checkpoints(output_dir):
    """True when `output_dir` holds a run: a latest.json or a checkpoint folder, whole or not.
    (A config.json alone is a run that never finished an epoch: nothing to lose.)"""
    root = checkpoint_dir(output_dir)
    return os.path.lexists(os.path.join(root, LATEST)) or bool(_checkpoint_folders(root))


def _resume_point(config):
    """The Checkpoint `config` resumes from (None: from epoch 1), after checking that
    config.json exists, can be read and holds the settings of `config` (RESUME_MAY_DIFFER
    aside); RunError naming the file or every differing setting otherwise."""
    output_dir = config.output_dir
    saved = read_config(output_dir)
    if saved is None:
        if not _has_checkpoints(output_dir):
            raise RunError(f"--resume: no checkpoint in {checkpoint_dir(output_dir)} to resume "
                           "from; run without --resume to start")
        raise RunError(f"{os.path.join(output_dir, CONFIG)} is missing, so the settings of the "
                       f"run in {output_dir} are unknown; restore it, or start a new run in "
                       "another --output_dir")
    previous = find_checkpoint(output_dir)
    differences = config_differences(saved, config)
    if differences:
        listed = ", ".join(f"`{name}`={given!r} (the run has {was!r})"
                           for name, was, given in differences)
        raise RunError(f"--resume: settings differ from those of the run in {output_dir} (its "
                       f"{CONFIG}): {listed}; a run resumes with its own settings: leave "
                       "these out or give the run's values, or start a new run in another "
                       "--output_dir")
    if previous is None:
        _log.warning("no checkpoint in %s yet: the run starts from epoch 1 with the settings "
                     "of its %s", checkpoint_dir(output_dir), CONFIG)
    return previous


def _history_at(output_dir, checkpoint):
    """The history of epochs 1..checkpoint.epoch: from the checkpoint's state.json, else (a
    checkpoint of an older tfedge) from history.json when that is sound, else [] (a warning)."""
    if "history" in checkpoint.state:
        return list(checkpoint.state["history"])
    path = os.path.join(output_dir, HISTORY)
    try:
        history = _read_json(path, limit=_STATE_LIMIT)
    except _Bad as bad:
        history, why = None, bad.reason
    else:
        why = f"it is not the history of epochs 1-{checkpoint.epoch}"
        if isinstance(history, list):
            history = history[:checkpoint.epoch]
    history = _check_history(history, checkpoint.epoch)
    if history is None:
        _log.warning("%s is not used (%s); history.json will hold the epochs from %d on",
                     path, why, checkpoint.epoch + 1)
        return []
    return history


def _compress(config, model, splits):
    from tfedge import pipeline, pruning
    from tfedge.channels import Channels

    prune = None
    if config.prune:
        prune = pruning.Prune(config.prune)
    elif config.prune_channels:
        prune = Channels(config.prune_channels, steps=config.prune_channels_steps)
    teacher = None
    distill = None
    if config.teacher:
        from tfedge import saving

        teacher = saving.load_model(config.teacher)
        distill = {"temperature": config.distill_temperature, "alpha": config.distill_alpha}
    quantize = None if config.quantize == "none" else config.quantize
    return pipeline.compress(
        model, train_data=(splits.x_train, splits.y_train), val_data=(splits.x_val, splits.y_val),
        prune=prune, quantize=quantize, teacher=teacher, distill=distill,
        epochs=config.finetune_epochs, batch_size=config.batch_size,
        learning_rate=config.finetune_learning_rate, target=config.target,
        calibration_samples=config.calibration_samples, tflm_inputs=config.tflm_inputs,
        seed=config.seed, verbose=config.verbose if (prune or quantize == "qat") else 0)


class _BatchHook:
    """A Keras callback calling `fn(epoch, batch)` after every training batch."""

    def __new__(cls, fn):
        from tfedge._keras import keras

        class Hook(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                fn(self.epoch, batch)

        return Hook()
