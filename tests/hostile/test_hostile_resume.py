"""`tfedge train --resume` against broken and hostile run folders (issue 15, item 3).

One tiny run is trained once for the module; every test works on its own copy. Corrupt files
are made at test time: truncated or bit-flipped checkpoint files, bad JSON, FIFOs, pointers
out of the run's folder. Each case must end in a RunError of one line naming the file (or the
flags) and the fix, or in a fall back to the newest intact checkpoint that resumes to the same
weights, and must write nothing outside the run's folder.
"""

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

import tfedge  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfedge import runs

pytestmark = pytest.mark.integration

# The smallest run that still has two checkpoints: a 0.1-wide MobileNetV2 on 8x8 digits, one
# step an epoch (the whole training split is one batch).
SMALL = dict(model="mobilenet_v2", width=0.1, input_size=8, dataset="digits", epochs=2,
             batch_size=2048, augment="", tensorboard=False, compress=False, verbose=0,
             val_fraction=0.8)
DATA = "ckpt.data-00000-of-00001"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch run: (its folder, the digest of its final weights)."""
    from tensorflow.python.framework import config as tf_config

    determinism = tf_config.is_op_determinism_enabled()
    folder = tmp_path_factory.mktemp("resume") / "run"
    result = runs.train(runs.RunConfig(**SMALL, output_dir=str(folder)))
    yield folder, runs.weights_digest(result.model)
    if not determinism:  # runs.train turned it on for the whole process: give it back
        tf_config.disable_op_determinism()


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run in tmp_path/run; tmp_path holds nothing else."""
    shutil.copytree(finished[0], tmp_path / "run")
    return tmp_path / "run"


def config(folder, **changes):
    return runs.RunConfig(**dict(SMALL, output_dir=str(folder), resume=True, **changes))


def snapshot(folder):
    """{relative path: bytes} of every file under `folder` (what a refused resume must keep)."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(folder, **changes):
    """The message of the RunError that resuming `folder` ends in; checks it is one line and
    that the refusal changed nothing in the folder."""
    before = snapshot(folder)
    with pytest.raises(runs.RunError) as info:
        runs.train(config(folder, **changes))
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert snapshot(folder) == before
    return message


def truncate(path, size=None):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2 if size is None else size)


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def warned(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "tfedge.runs" and r.levelname == "WARNING"]


def tfedge_train(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfedge", "train", *args],
                          capture_output=True, text=True, env=env, timeout=600)


# ---------------------------------------------------------------------------------------------
# (a) Damaged checkpoint files.


def test_what_is_damaged_is_skipped_and_the_run_ends_with_the_same_weights(run, finished,
                                                                          caplog):
    """A hostile latest.json ignored and the truncated newest checkpoint skipped (one warning
    line each); epoch 2 trained again from epoch 1, to the same weights as the run that never
    broke; history.json not trusted (the checkpoint holds the history); --tensorboard may
    differ; config.json untouched; nothing written outside the run."""
    truncate(run / "checkpoints" / "epoch-0002" / DATA)
    (run / "checkpoints" / "latest.json").write_text('{"epoch": 2, "folder": "../../etc"}')
    (run / "history.json").write_text('{"epoch": "not a list"}')
    saved_config = (run / "config.json").read_bytes()
    result = runs.train(config(run, tensorboard=True))
    root = run / "checkpoints"
    assert warned(caplog) == [
        f"{root}/latest.json is ignored: its folder '../../etc' is not the name of a checkpoint "
        f"folder (epoch-NNNN) inside {root}; resuming from the newest intact checkpoint folder "
        "instead",
        f"skipped the damaged checkpoint epoch-0002 ({root}/epoch-0002/{DATA}: Read less bytes "
        "than requested); resuming from epoch-0001"]
    assert result.resumed_from == 1
    assert runs.weights_digest(result.model) == finished[1]
    assert (run / "weights.sha256").read_text().strip() == finished[1]
    assert (run / "config.json").read_bytes() == saved_config
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2]
    assert json.loads((root / "latest.json").read_text()) == {"epoch": 2, "folder": "epoch-0002"}
    assert runs.latest_checkpoint(str(run))[0] == 2  # written anew, whole
    assert (run / "logs").is_dir()
    assert sorted(os.listdir(run.parent)) == ["run"]


@pytest.mark.parametrize("damage, file, reason", [
    (lambda d: truncate(d / DATA), DATA, "Read less bytes than requested"),
    (lambda d: truncate(d / DATA, 0), DATA, "Read less bytes than requested"),
    (lambda d: flip_byte(d / DATA, 100), DATA, "Checksum does not match"),
    (lambda d: truncate(d / "ckpt.index"), "ckpt.index", "not an sstable"),
    (lambda d: truncate(d / "ckpt.index", 0), "ckpt.index", "too short to be an sstable"),
    (lambda d: os.remove(d / DATA), DATA, ""),
    (lambda d: (os.remove(d / DATA), os.mkfifo(d / DATA)), DATA, "not a regular file"),
    (lambda d: (d / "state.json").write_text('{"epoch": 2'), "state.json", "not JSON"),
    (lambda d: (d / "state.json").write_text('{"epoch": 7}'), "state.json", "epoch 2"),
], ids=["data-half", "data-empty", "data-bit-flip", "index-half", "index-empty", "data-gone",
        "data-fifo", "state-not-json", "state-wrong-epoch"])
def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(run, caplog, damage, file,
                                                                   reason):
    damage(run / "checkpoints" / "epoch-0002")
    found = runs.find_checkpoint(str(run))
    assert found.epoch == 1 and found.folder == str(run / "checkpoints" / "epoch-0001")
    [line] = warned(caplog)
    assert line.startswith(f"skipped the damaged checkpoint epoch-0002 "
                           f"({run}/checkpoints/epoch-0002/{file}: ")
    assert reason in line and line.endswith("; resuming from epoch-0001")


def test_no_intact_checkpoint_is_one_error_naming_the_newest_damaged_file(run):
    truncate(run / "checkpoints" / "epoch-0002" / DATA)
    truncate(run / "checkpoints" / "epoch-0001" / "ckpt.index")
    message = refused(run)
    assert message == (
        f"no intact checkpoint in {run}/checkpoints to resume from: "
        f"{run}/checkpoints/epoch-0002/{DATA} is damaged (Read less bytes than requested), "
        f"and so is the one before it; restore it, or remove {run}/checkpoints and run again "
        "with --resume to train from epoch 1")


def test_a_checkpoint_of_another_model_is_one_error_naming_its_folder(run):
    """Intact, the right epoch, but the variables of another model: refused, not restored."""
    from tfedge._keras import keras, tf

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    folder = run / "checkpoints" / "epoch-0002"
    for name in (DATA, "ckpt.index"):
        os.remove(folder / name)
    tf.train.Checkpoint(model=other, epoch=tf.Variable(2, dtype=tf.int64)).write(
        str(folder / "ckpt"))
    message = refused(run)
    assert message.startswith(f"checkpoint {folder} does not fit the model of this run (")
    assert message.endswith("): it was written by another model or with other settings. "
                            "Restore the run's own checkpoints, or start a new run in another "
                            "--output_dir")


# ---------------------------------------------------------------------------------------------
# (b) latest.json, history.json: untrusted pointers and records.


@pytest.mark.parametrize("content, reason", [
    ('{"epoch": 2}', 'it has no "folder"'),
    ('{"epoch": 2, "folder": "../../etc"}', "its folder '../../etc' is not the name of a "
                                            "checkpoint folder (epoch-NNNN) inside"),
    ('{"epoch": 2, "folder": "/etc"}', "its folder '/etc' is not the name"),
    ('{"epoch": 2, "folder": "epoch-0002/../../.."}', "is not the name"),
    ('{"epoch": 2, "folder": 2}', "its folder 2 is not the name"),
    ('{"epoch": "2", "folder": "epoch-0002"}', "its epoch '2' is not the epoch of epoch-0002"),
    ('["epoch-0002"]', "it holds a JSON list, not an object"),
    ("", "it is not JSON"),
    ("\xff\xfe{", "it is not JSON"),
    ("[" * 4000, "it is not JSON (maximum recursion depth"),
    (None, "it is not a regular file"),
    ("{" + " " * 5000 + "}", "more than 4096 bytes"),
], ids=["no-folder", "dot-dot", "absolute", "dot-dot-inside", "folder-int", "epoch-str", "list",
        "empty", "not-utf8", "deep", "fifo", "huge"])
def test_a_bad_latest_json_is_ignored_for_the_checkpoint_folders(run, caplog, content, reason):
    latest = run / "checkpoints" / "latest.json"
    latest.unlink()
    if content is None:
        os.mkfifo(latest)  # opening it would wait for a writer forever
    else:
        latest.write_bytes(content.encode("latin-1"))
    found = runs.find_checkpoint(str(run))
    assert found.epoch == 2 and found.folder == str(run / "checkpoints" / "epoch-0002")
    [line] = warned(caplog)
    assert line.startswith(f"{latest} is ignored: ") and reason in line
    assert line.endswith("; resuming from the newest intact checkpoint folder instead")
    assert sorted(os.listdir(run.parent)) == ["run"]


def test_history_json_is_used_only_when_it_is_the_history_of_the_checkpoint(run, caplog):
    """A checkpoint of an older tfedge has no history in its state.json: history.json is read,
    and only when it is the list of epochs 1..N it claims to be."""
    found = runs.find_checkpoint(str(run))
    old = runs.Checkpoint(found.epoch, found.folder, found.prefix, {"epoch": 2})
    history = json.loads((run / "history.json").read_text())
    assert runs._history_at(str(run), old) == history == found.state["history"]
    for content in ('{"epoch": 1}', '[{"epoch": 2}, {"epoch": 1}]', '[{"epoch": 1, "x": "y"}]',
                    "[" * 4000):
        (run / "history.json").write_text(content)
        assert runs._history_at(str(run), old) == []
    assert len(warned(caplog)) == 4
    assert warned(caplog)[0] == (f"{run}/history.json is not used (it is not the history of "
                                 "epochs 1-2); history.json will hold the epochs from 3 on")


def test_a_pointer_to_a_missing_folder_with_nothing_older_is_one_error(run):
    shutil.rmtree(run / "checkpoints" / "epoch-0001")
    shutil.rmtree(run / "checkpoints" / "epoch-0002")
    assert refused(run) == (
        f"{run}/checkpoints/latest.json points at epoch-0002, which is missing, and no older "
        f"checkpoint is in {run}/checkpoints; restore epoch-0002, or remove {run}/checkpoints "
        "and run again with --resume to train from epoch 1")
    (run / "checkpoints" / "latest.json").write_text("{")
    assert refused(run).startswith(
        f"{run}/checkpoints/latest.json cannot be used: it is not JSON (")


def test_a_pointer_to_a_missing_folder_falls_back_to_the_older_one(run, caplog):
    shutil.rmtree(run / "checkpoints" / "epoch-0002")
    assert runs.find_checkpoint(str(run)).epoch == 1
    assert warned(caplog) == [f"{run}/checkpoints/latest.json points at epoch-0002, which is "
                                "missing; resuming from an older checkpoint"]


# ---------------------------------------------------------------------------------------------
# (c) The run's settings: config.json is the record, never rewritten by a resume.


def test_differing_settings_are_refused_each_named_and_config_json_is_kept(run):
    message = refused(run, epochs=3, learning_rate=0.01, augment="flip")
    assert message == (
        f"--resume: settings differ from those of the run in {run} (its config.json): "
        "`epochs`=3 (the run has 2), `learning_rate`=0.01 (the run has 0.002), "
        "`augment`='flip' (the run has ''); a run resumes with its own settings: leave these "
        "out or give the run's values, or start a new run in another --output_dir")


def test_cli_resume_takes_the_runs_settings_and_refuses_given_flags_that_differ(run):
    """`--resume`: flags not given take the run's values (else --input_size, --val_fraction,
    --compress, ... would differ from their defaults and be listed too); given ones that differ
    are listed, each with the run's value; --tensorboard may differ; the warning and the error
    are one line each on stderr; config.json is kept byte for byte."""
    (run / "checkpoints" / "latest.json").write_text("[]")
    saved_config = (run / "config.json").read_bytes()
    proc = tfedge_train(f"--output_dir={run}", "--resume", "--epochs=3", "--batch_size=32",
                        "--width=0.1", "--tensorboard")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    root = run / "checkpoints"
    assert [line for line in proc.stderr.splitlines() if line.startswith("tfedge")] == [
        f"tfedge train: warning: {root}/latest.json is ignored: it holds a JSON list, not an "
        "object with the folder and epoch of the newest checkpoint; resuming from the newest "
        "intact checkpoint folder instead",
        f"tfedge train: error: --resume: settings differ from those of the run in {run} (its "
        "config.json): --epochs=3 (the run has 2), --batch_size=32 (the run has 2048); a run "
        "resumes with its own settings: leave these out or give the run's values, or start a "
        "new run in another --output_dir"]
    assert (run / "config.json").read_bytes() == saved_config


def saved_settings(run):
    return json.loads((run / "config.json").read_text())


@pytest.mark.parametrize("content, reason", [
    ("{", "it is not JSON (Expecting property name enclosed in double quotes"),
    ("[]", "it holds a JSON list, not the object of a run's settings"),
    (lambda s: dict(s, epochs="2"), "`epochs` is '2', not int"),
    (lambda s: dict(s, width=True), "`width` is True, not float"),
    (lambda s: dict(s, data_dir=7), "`data_dir` is 7, not str or null"),
    (lambda s: dict(s, epochs=0), "`epochs` must be an integer >= 1. Received: epochs=0"),
    (lambda s: {k: v for k, v in s.items() if k != "seed"}, "it lacks `seed`"),
    (lambda s: dict(s, shell="rm -rf /"), "`shell` is not a setting of tfedge train"),
    ('{"learning_rate": NaN}', "it is not JSON (NaN is not a number JSON allows)"),
    (None, "it is not a regular file"),
], ids=["truncated", "list", "epochs-str", "width-bool", "data-dir-int", "epochs-0", "missing",
        "extra", "nan", "fifo"])
def test_a_bad_config_json_is_one_error_naming_it(run, content, reason):
    path = run / "config.json"
    if callable(content):
        content = json.dumps(content(saved_settings(run)))
    path.unlink()
    if content is None:
        os.mkfifo(path)
    else:
        path.write_text(content)
    message = refused(run)
    assert message.startswith(f"{path} cannot be used: ") and reason in message
    assert message.endswith("; it holds the run's settings: restore it from a copy, or start a "
                            "new run in another --output_dir")


def test_a_missing_config_json_is_one_error_and_an_empty_folder_has_nothing_to_resume(run):
    (run / "config.json").unlink()
    assert refused(run) == (f"{run}/config.json is missing, so the settings of the run in {run} "
                            "are unknown; restore it, or start a new run in another --output_dir")
    shutil.rmtree(run / "checkpoints")
    assert refused(run) == (f"--resume: no checkpoint in {run}/checkpoints to resume from; run "
                            "without --resume to start")


def test_a_start_without_resume_never_touches_a_run(run):
    before = snapshot(run)
    with pytest.raises(runs.RunError, match="already holds a run .* pass --resume to carry on"):
        runs.train(runs.RunConfig(**dict(SMALL, output_dir=str(run), epochs=5)))
    assert snapshot(run) == before


# ---------------------------------------------------------------------------------------------
# (d) A disk that fills while a checkpoint is written.


def disk_full_in_save_v2(self, prefix, options=None):
    """What SaveV2 does on a full disk: part of a file written, then ResourceExhaustedError."""
    from tfedge._keras import tf

    os.makedirs(prefix + "_temp")
    with open(os.path.join(prefix + "_temp", "part-00000-of-00001.data-00000-of-00001"), "wb") as f:
        f.write(b"\0" * 1000)
    raise tf.errors.ResourceExhaustedError(
        None, None, f"{prefix}_temp/part-00000-of-00001.data-00000-of-00001.tempstate1; No space "
                    "left on device [Op:SaveV2]")


def test_a_full_disk_in_save_v2_is_a_run_error_and_keeps_the_checkpoints(run, monkeypatch):
    from tfedge._keras import tf

    root = run / "checkpoints"
    before = snapshot(root)
    monkeypatch.setattr(tf.train.Checkpoint, "write", disk_full_in_save_v2)
    with pytest.raises(runs.RunError) as info:
        runs.save_checkpoint(tf.train.Checkpoint(v=tf.Variable(1.0)), str(run), 3)
    assert str(info.value).startswith(
        f"could not write the checkpoint of epoch 3 into {root}: the disk is full "
        "(ResourceExhaustedError: ")
    assert str(info.value).endswith(
        "). The checkpoints written before it are intact; free space or restore the folder, "
        "then run again with --resume")
    assert snapshot(root) == before  # no half-written folder, latest.json as it was
    assert sorted(os.listdir(root)) == ["epoch-0001", "epoch-0002", "latest.json"]
    monkeypatch.undo()
    assert runs.latest_checkpoint(str(run))[0] == 2


def test_a_full_disk_at_latest_json_leaves_no_checkpoint_it_does_not_name(run, monkeypatch):
    from tfedge import _io
    from tfedge._keras import tf

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    root = run / "checkpoints"
    before = snapshot(root)
    monkeypatch.setattr(_io, "write_atomic", full)
    with pytest.raises(runs.RunError, match="epoch 3 .*: the disk is full. The checkpoints "
                                            "written before it are intact"):
        runs.save_checkpoint(tf.train.Checkpoint(v=tf.Variable(1.0)), str(run), 3)
    assert snapshot(root) == before


def test_other_checkpoint_write_errors_are_run_errors_too(run, monkeypatch):
    from tfedge._keras import tf

    def denied(self, prefix, options=None):
        raise tf.errors.PermissionDeniedError(None, None, f"{prefix}; Permission denied\nmore")

    monkeypatch.setattr(tf.train.Checkpoint, "write", denied)
    with pytest.raises(runs.RunError) as info:
        runs.save_checkpoint(tf.train.Checkpoint(v=tf.Variable(1.0)), str(run), 3)
    assert "\n" not in str(info.value)
    assert ": PermissionDeniedError: " in str(info.value) and "Permission denied. The " \
        "checkpoints written before it are intact" in str(info.value)
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch-0001", "epoch-0002", "latest.json"]


# ---- one run per folder, a symbol checked before training -----------------------------------


def test_a_folder_in_use_is_refused(run):
    from tfedge import _io

    before = snapshot(run)
    with _io.FolderLock(run):
        with pytest.raises(runs.RunError, match=rf"{run} is in use by process {os.getpid()}, "
                           "another run writing there"):
            runs.train(config(run))
    assert snapshot(run) == before  # the lock file went with the lock


def test_a_reserved_symbol_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="must not be 'kTensorArenaSize'"):
        runs.RunConfig(**SMALL, output_dir=str(tmp_path / "run"), symbol="kTensorArenaSize")
    assert not (tmp_path / "run").exists()
