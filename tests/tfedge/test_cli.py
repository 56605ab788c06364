import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def tfedge_cli(*args, cwd=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfedge", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


def test_compress_from_a_flagfile(tmp_path):
    flagfile = tmp_path / "run.flags"
    out = tmp_path / "out"
    flagfile.write_text(f"--model=mobilenet_v2\n--width=0.35\n--dataset=digits\n"
                        f"--input_size=32\n--epochs=1\n--calibration_samples=20\n"
                        f"--tflm_inputs=5\n--symbol=g_digits\n--output_dir={out}\n")
    proc = tfedge_cli("compress", f"--flagfile={flagfile}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out)) == sorted(
        ["accuracy_vs_size.png", "model.tflite", "model_data.cc", "model_data.h",
         "model_settings.h", "op_resolver.h", "report.json", "report.md"])
    assert "int8 accuracy" in proc.stdout
    assert re.search(r"^TFLM == LiteRT reference +True$", proc.stdout, re.M), proc.stdout[-2000:]
    assert "g_digits" in (out / "model_data.h").read_text()


def test_compress_prunes_channels(tmp_path):
    out = tmp_path / "out"
    proc = tfedge_cli("compress", "--model=mobilenet_v2", "--width=0.35", "--epochs=1",
                      "--prune_channels=0.4", "--finetune_epochs=1", "--calibration_samples=20",
                      "--tflm_inputs=2", f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    removed = re.search(r"^MACs removed +([\d.]+)%$", proc.stdout, re.M)
    assert removed and float(removed.group(1)) >= 40.0, proc.stdout[-2000:]
    assert "## Channels per pruned layer" in (out / "report.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--dataset=mnist"], "--dataset=mnist needs --data_dir"),
    (["--epochs=0"], "--epochs=0 needs --weights"),
    (["--symbol=9lives"], "`symbol` must be a C identifier"),
    (["--model=resnet"], "value should be one of"),
    (["--width=0"], "--width"),
    (["--dataset=mnist", "--data_dir=/no/such/dir"], "/no/such/dir"),
    (["--prune=0.5", "--prune_channels=0.5"], "are alternatives: set one of them"),
    (["--prune_channels=0.99"], "--prune_channels"),
])
def test_bad_flags_are_named(tmp_path, args, message):
    proc = tfedge_cli("compress", f"--output_dir={tmp_path / 'out'}", *args)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "out").exists()


def test_output_dir_is_required():
    proc = tfedge_cli("compress")
    assert proc.returncode != 0 and "output_dir" in proc.stderr


def test_usage_lists_commands():
    proc = tfedge_cli("--help")
    assert proc.returncode == 0 and "compress" in proc.stdout
    proc = tfedge_cli("nope")
    assert proc.returncode == 2 and "unknown command 'nope'" in proc.stderr
    proc = tfedge_cli()
    assert proc.returncode == 2 and "usage: tfedge <command>" in proc.stdout


def test_command_help_shows_its_flags():
    proc = tfedge_cli("compress", "--help")
    assert proc.returncode == 0
    assert "--output_dir" in proc.stdout and "--calibration_samples" in proc.stdout
    assert "--flagfile" in proc.stdout  # the docstring's example
    assert "--helpxml" not in proc.stdout  # absl's own flags only with --helpfull
