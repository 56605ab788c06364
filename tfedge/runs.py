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

Scale-out goes through `tf.distribute` only: "default" (one device), "mirrored" (the local
devices), "multi_worker" (`MultiWorkerMirroredStrategy`, the cluster from TF_CONFIG; the chief,
worker 0, writes the checkpoints and artifacts, the others write theirs to a temporary folder as
TensorFlow requires) and "tpu" (`TPUStrategy`).
"""

import dataclasses
import json
import math
import os
import shutil
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
    for field, minimum in (("epochs", 1), ("batch_size", 1), ("input_size", 8),
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

    Augment.from_flag(c.augment, (c.input_size, c.input_size, c.channels))


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
# Checkpoints: a folder per epoch, renamed into place, then latest.json replaced.


def checkpoint_dir(output_dir):
    return os.path.join(output_dir, CHECKPOINTS)


def latest_checkpoint(output_dir):
    """(epoch, checkpoint prefix) of the newest complete checkpoint, or None."""
    pointer = os.path.join(checkpoint_dir(output_dir), LATEST)
    try:
        with open(pointer) as f:
            info = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunError(f"{pointer} cannot be read ({exc}); remove it to start over, or restore "
                       "it") from None
    prefix = os.path.join(checkpoint_dir(output_dir), info["folder"], "ckpt")
    if not os.path.exists(prefix + ".index"):
        raise RunError(f"{pointer} points at {info['folder']}, which is missing; the checkpoint "
                       "folder was changed by hand")
    return int(info["epoch"]), prefix


def save_checkpoint(checkpoint, output_dir, epoch, extra=None):
    """Writes the checkpoint of a finished `epoch`; returns its folder.

    Written into a temporary folder beside the others, renamed into place, then `latest.json`
    is replaced atomically: earlier checkpoints are never touched before the new one is whole,
    and a full disk or a vanished folder raises RunError with them intact.
    """
    root = checkpoint_dir(output_dir)
    name = f"epoch-{epoch:04d}"
    try:
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=root)
        try:
            checkpoint.write(os.path.join(tmp, "ckpt"))
            with open(os.path.join(tmp, "state.json"), "w") as f:
                json.dump({"epoch": epoch, **(extra or {})}, f)
            final = os.path.join(root, name)
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _io.write_atomic(os.path.join(root, LATEST),
                         json.dumps({"epoch": epoch, "folder": name}) + "\n")
    except OSError as exc:
        import errno

        why = ("the disk is full" if exc.errno == errno.ENOSPC else
               "the folder is gone" if exc.errno == errno.ENOENT else exc.strerror or str(exc))
        raise RunError(f"could not write the checkpoint of epoch {epoch} into {root}: {why}. "
                       "The checkpoints written before it are intact; free space or restore "
                       "the folder, then run again with --resume") from exc
    old = sorted(d for d in os.listdir(root) if d.startswith("epoch-") and d != name)
    for stale in old[:-(KEEP_CHECKPOINTS - 1) or None]:
        shutil.rmtree(os.path.join(root, stale), ignore_errors=True)
    return os.path.join(root, name)


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
    from tfedge import data, models, training
    from tfedge._keras import keras, tf

    tf.config.experimental.enable_op_determinism()
    output_dir = config.output_dir
    previous = latest_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if config.resume and previous is None:
        raise RunError(f"--resume: no checkpoint in {checkpoint_dir(output_dir)} to resume "
                       "from; run without --resume to start")
    if not config.resume and previous is not None:
        raise RunError(f"{output_dir} already holds a run (checkpoint of epoch {previous[0]}); "
                       "pass --resume to carry on, or choose another --output_dir")
    strategy = make_strategy(config.strategy)
    chief = is_chief(strategy)
    write_dir = output_dir if chief else tempfile.mkdtemp(prefix="tfedge-worker-")
    _io.ensure_dir(write_dir)
    if chief:
        _io.write_atomic(os.path.join(output_dir, "config.json"),
                         json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n")

    input_shape = (config.input_size, config.input_size, config.channels)
    splits = data.load(config.dataset, input_shape=input_shape, data_dir=config.data_dir,
                       val_fraction=config.val_fraction, seed=config.seed,
                       **({"tfds_name": config.tfds_name} if config.tfds_name else {}))
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
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
    start = 0
    if previous is not None:
        with strategy.scope():
            checkpoint.read(previous[1]).assert_existing_objects_matched()
        start = int(epoch_var.numpy())
    history = _read_history(output_dir) if previous is not None else []

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
                        **{k: float(v[-1]) for k, v in logs.items()}})
        epoch_var.assign(epoch + 1)
        save_checkpoint(checkpoint, write_dir, epoch + 1)
        if chief:
            _io.write_atomic(os.path.join(output_dir, "history.json"),
                             json.dumps(history, indent=2) + "\n")
    # Every worker reads the weights (reading a variable synchronized on read, such as a
    # BatchNorm statistic, is a collective: all must take part), then carries on with a plain
    # copy outside the strategy.
    weights = model.get_weights()
    training.seed_everything(config.seed)
    plain = models.build(config.model, input_shape=input_shape, num_classes=splits.num_classes,
                         width=config.width, **kwargs)
    plain.set_weights(weights)
    if chief:
        _io.write_atomic(os.path.join(output_dir, "weights.sha256"), weights_digest(plain) + "\n")
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


def _read_history(output_dir):
    try:
        with open(os.path.join(output_dir, "history.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []


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
