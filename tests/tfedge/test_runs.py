"""Training runs: flags checked first, a checkpoint per epoch, exact resume after kill -9,
and two workers on loopback that end with the same weights."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from tfedge import runs

pytestmark = pytest.mark.integration

# A run small enough for the tests: 10x10 digits, a thin MobileNetV2, a few hundred images.
TINY = dict(model="mobilenet_v2", width=0.35, input_size=16, dataset="digits", epochs=2,
            batch_size=64, augment="flip,crop", tensorboard=False, compress=False, verbose=0,
            val_fraction=0.5)

SCRIPT = textwrap.dedent("""
    import json, sys
    import tfedge
    from tfedge import runs
    config = runs.RunConfig(**json.loads(sys.argv[1]))
    def marker(epoch, batch):
        print(f"batch {epoch} {batch}", flush=True)
    result = runs.train(config, on_batch=marker)
    print("weights", runs.weights_digest(result.model), flush=True)
    print("resumed", result.resumed_from, flush=True)
""")


def run_script(config, env=None, kill_at=None, timeout=600):
    """Runs `runs.train(config)` in a fresh process; returns its stdout lines.

    kill_at=(epoch, batch): SIGKILL the process as soon as it reports that batch done.
    """
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if kill_at and line.strip() == f"batch {kill_at[0]} {kill_at[1]}":
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    if kill_at:
        assert proc.returncode == -signal.SIGKILL, stderr[-3000:]
    else:
        assert proc.returncode == 0, stderr[-3000:]
    return lines


def value(lines, key):
    return next(line.split()[1] for line in lines if line.startswith(key + " "))


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    straight = dict(TINY, output_dir=str(tmp_path / "straight"))
    expected = value(run_script(straight), "weights")

    crashed = dict(TINY, output_dir=str(tmp_path / "crashed"))
    run_script(crashed, kill_at=(1, 3))  # in the middle of the second epoch
    state = runs.latest_checkpoint(crashed["output_dir"])
    assert state is not None and state[0] == 1  # only epoch 1 finished
    lines = run_script(dict(crashed, resume=True))
    assert value(lines, "resumed") == "1"
    assert not any(line.startswith("batch 0 ") for line in lines)  # epoch 1 was not redone
    assert value(lines, "weights") == expected
    history = json.loads((tmp_path / "crashed" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert (tmp_path / "crashed" / "weights.sha256").read_text().strip() == expected


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_on_loopback_finish_with_identical_weights(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    config = dict(TINY, epochs=1, augment="", strategy="multi_worker")
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", SCRIPT,
             json.dumps(dict(config, output_dir=str(tmp_path / f"worker{index}")))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(out.splitlines())
    digests = [value(lines, "weights") for lines in outputs]
    assert digests[0] == digests[1]
    # Worker 0 is the chief: it alone keeps checkpoints in its output folder.
    assert runs.latest_checkpoint(str(tmp_path / "worker0"))[0] == 1
    assert not (tmp_path / "worker1" / "checkpoints").exists()


def test_checkpoints_are_replaced_whole_and_a_full_disk_loses_nothing(tmp_path, monkeypatch):
    from tfedge._keras import tf

    variable = tf.Variable([1.0, 2.0])
    checkpoint = tf.train.Checkpoint(v=variable)
    for epoch in (1, 2, 3):
        variable.assign([epoch, epoch])
        runs.save_checkpoint(checkpoint, str(tmp_path), epoch)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["epoch-0002", "epoch-0003", "latest.json"]
    assert runs.latest_checkpoint(str(tmp_path))[0] == 3

    import errno

    def full_disk(self, prefix, options=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tf.train.Checkpoint, "write", full_disk)
    with pytest.raises(runs.RunError, match="epoch 4 .*the disk is full. The checkpoints "
                                            "written before it are intact"):
        runs.save_checkpoint(checkpoint, str(tmp_path), 4)
    monkeypatch.undo()
    assert sorted(p.name for p in root.iterdir()) == ["epoch-0002", "epoch-0003", "latest.json"]
    epoch, prefix = runs.latest_checkpoint(str(tmp_path))
    variable.assign([0.0, 0.0])
    tf.train.Checkpoint(v=variable).read(prefix).assert_consumed()
    assert epoch == 3 and variable.numpy().tolist() == [3.0, 3.0]
    # What a killed run left of a temporary folder goes with the next save; a folder that is
    # not a checkpoint's (by its exact name) is never touched, nor what a link points at.
    (root / ".epoch-0004.x1y2").mkdir()
    (root / "epoch-9x").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "epoch-0001").symlink_to(tmp_path / "elsewhere")
    variable.assign([4.0, 4.0])
    runs.save_checkpoint(checkpoint, str(tmp_path), 4)
    variable.assign([3.0, 3.0])
    runs.save_checkpoint(checkpoint, str(tmp_path), 3)  # epoch 3 again: 4 is dropped
    assert sorted(p.name for p in root.iterdir()) == ["epoch-0001", "epoch-0003", "epoch-9x",
                                                      "latest.json"]
    assert (tmp_path / "elsewhere").is_dir()


def test_resume_without_a_checkpoint_and_a_second_start_are_refused(tmp_path):
    with pytest.raises(runs.RunError, match="--resume: no checkpoint in .* to resume from"):
        runs.train(runs.RunConfig(**dict(TINY, output_dir=str(tmp_path), resume=True)))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest.json").write_text('{"epoch": 1, "folder": "epoch-0001"}')
    with pytest.raises(runs.RunError, match="already holds a run .*pass --resume to carry on"):
        runs.train(runs.RunConfig(**dict(TINY, output_dir=str(tmp_path))))
    with pytest.raises(runs.RunError, match="config.json is missing, so the settings of the run"):
        runs.train(runs.RunConfig(**dict(TINY, output_dir=str(tmp_path), resume=True)))
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(
        runs.RunConfig(**dict(TINY, output_dir=str(tmp_path))))))
    with pytest.raises(runs.RunError, match="points at epoch-0001, which is missing"):
        runs.train(runs.RunConfig(**dict(TINY, output_dir=str(tmp_path), resume=True)))


@pytest.mark.parametrize("field, bad, message", [
    ("model", "resnet", "`model` must be one of"),
    ("dataset", "imagenet", "`dataset` must be one of"),
    ("optimizer", "lamb", "`optimizer` must be one of"),
    ("epochs", 0, "`epochs` must be an integer >= 1"),
    ("strategy", "horovod", "`strategy` must be one of"),
    ("warmup_epochs", 3, "`warmup_epochs` must be below epochs"),
    ("label_smoothing", 1.5, "`label_smoothing` must be in"),
    ("augment", "flip,rotate90", "rotate90"),
    ("teacher", "/no/such/model.keras", "`teacher` must be a saved Keras model file"),
])
def test_bad_settings_are_refused_before_any_work(field, bad, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        runs.RunConfig(**dict(TINY, output_dir=str(tmp_path), **{field: bad}))
    assert not any(tmp_path.iterdir())


def test_mnist_needs_its_folder_and_prune_kinds_are_exclusive(tmp_path):
    with pytest.raises(ValueError, match="`data_dir` must name the folder of the mnist files"):
        runs.RunConfig(**dict(TINY, output_dir=str(tmp_path), dataset="mnist"))
    with pytest.raises(ValueError, match="are alternatives"):
        runs.RunConfig(**dict(TINY, output_dir=str(tmp_path), prune=0.5, prune_channels=0.5))


def test_multi_worker_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(runs.RunError, match="TF_CONFIG environment variable, which is not set"):
        runs.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(runs.RunError, match="TF_CONFIG is not a cluster spec"):
        runs.make_strategy("multi_worker")


def test_tpu_strategy_without_a_tpu_says_so(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(runs.RunError, match="strategy 'tpu' found no TPU to connect to"):
        runs.make_strategy("tpu")
