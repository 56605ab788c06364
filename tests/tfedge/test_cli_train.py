"""`tfedge train` end to end: one flagfile trains, prunes, QATs, converts and exports."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

ARTIFACTS = ["accuracy_vs_size.png", "model.tflite", "model_data.cc", "model_data.h",
             "model_settings.h", "op_resolver.h", "report.json", "report.md"]


def tfedge_train(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfedge", "train", *args],
                          capture_output=True, text=True, env=env, timeout=900)


def test_a_flagfile_trains_prunes_qats_converts_and_exports(tmp_path):
    out = tmp_path / "run"
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("\n".join([
        "--model=mobilenet_v2", "--width=0.35", "--dataset=digits", "--input_size=16",
        "--epochs=2", "--batch_size=64", "--augment=crop", "--optimizer=sgd",
        "--learning_rate=0.05", "--lr_schedule=cosine", "--warmup_epochs=1", "--prune=0.5",
        "--quantize=qat", "--finetune_epochs=1", "--calibration_samples=20",
        "--tflm_inputs=2", f"--output_dir={out}"]) + "\n")
    proc = tfedge_train(f"--flagfile={flagfile}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = set(os.listdir(out))
    assert set(ARTIFACTS) <= names
    assert {"checkpoints", "logs", "history.json", "config.json", "weights.sha256"} <= names
    assert any(f.startswith("events.out.tfevents") for _, _, files in os.walk(out / "logs")
               for f in files)
    report = json.loads((out / "report.json").read_text())
    assert report["quantize"] == "qat" and report["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert report["tflm_exact"] is True
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    config = json.loads((out / "config.json").read_text())
    assert config["optimizer"] == "sgd" and config["augment"] == "crop"
    # The same flags again would overwrite a finished run: refused, with the fix.
    again = tfedge_train(f"--flagfile={flagfile}")
    assert again.returncode == 2 and "pass --resume to carry on" in again.stderr


@pytest.mark.parametrize("args, message", [
    (["--epochs=0"], "--epochs must be an integer >= 1"),
    (["--dataset=mnist"], "--data_dir must name the folder of the mnist files"),
    (["--model=resnet"], "value should be one of"),
    (["--strategy=horovod"], "value should be one of"),
    (["--augment=spin"], "spin"),
    (["--prune=0.5", "--prune_channels=0.5"], "are alternatives"),
    (["--warmup_epochs=40"], "--warmup_epochs must be below epochs"),
])
def test_bad_flags_are_named_before_any_work(tmp_path, args, message):
    proc = tfedge_train(f"--output_dir={tmp_path / 'run'}", *args)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_help_lists_the_flags():
    proc = tfedge_train("--help")
    assert proc.returncode == 0
    for flag in ("--resume", "--strategy", "--augment", "--lr_schedule", "--teacher"):
        assert flag in proc.stdout
