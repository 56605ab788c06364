"""`tfedge lint` end to end: a subprocess per call, as a user runs it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def tfedge_lint(*args, cwd=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfedge", "lint", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, int8_tflite):
    """An int8 MobileNetV2 with no blocker, and a full-int8 model with a 5-D TRANSPOSE (a
    blocker for CMSIS-NN, a reference op for a TFLM build without it)."""
    from tfedge._keras import keras, layers, tf
    from tfedge.converters import to_int8

    class Shuffle5D(layers.Layer):
        def call(self, x):
            _, h, w, c = x.shape
            y = tf.reshape(x, [-1, h, w, 2, c // 2])
            return tf.reshape(tf.transpose(y, [0, 1, 2, 4, 3]), [-1, h, w, c])

    tf.random.set_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = Shuffle5D()(layers.Conv2D(4, 3, padding="same")(inputs))
    model = keras.Model(inputs, layers.Conv2D(2, 1)(x))
    images = np.random.default_rng(0).random((8, 8, 8, 1), np.float32)
    folder = tmp_path_factory.mktemp("lint")
    ok, blocked = folder / "mobilenet_v2.tflite", folder / "shuffle5d.tflite"
    ok.write_bytes(int8_tflite)
    blocked.write_bytes(to_int8(model, images, num_samples=8))
    return ok, blocked


def test_no_blockers_exits_0_with_a_table(model_files):
    ok, _ = model_files
    proc = tfedge_lint(str(ok), "--target=cortex-m7")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("target cortex-m7: ") and lines[0].endswith(", blocker 0")
    assert lines[1].split()[:3] == ["#", "op", "status"]
    assert lines[2].split()[:3] == ["0", "CONV_2D", "optimized"]
    assert "reference kernels:" in lines and "blockers:" not in lines


def test_json_matches_the_library(model_files):
    from tfedge.converters.lint import lint

    ok, blocked = model_files
    for path, target in ((ok, "cortex-m55"), (blocked, "cortex-m4")):
        proc = tfedge_lint(str(path), f"--target={target}", "--json")
        report = json.loads(proc.stdout)
        assert report == lint(path.read_bytes(), target=target).as_dict()
        assert proc.returncode == (0 if report["ok"] else 1)


def test_blockers_exit_1_and_depend_on_the_target(model_files):
    _, blocked = model_files
    proc = tfedge_lint(str(blocked))  # default target: cortex-m4
    assert proc.returncode == 1
    assert "blockers:" in proc.stdout and "5-D TRANSPOSE" in proc.stdout
    assert "fix: reshape to at most 4 dims before the transpose" in proc.stdout
    assert proc.stderr.strip() == ""
    generic = tfedge_lint(str(blocked), "--target=generic")
    assert generic.returncode == 0, generic.stdout[-2000:]
    assert "blocker 0" in generic.stdout.splitlines()[0]


def test_output_is_written_to_a_file(model_files, tmp_path):
    ok, blocked = model_files
    out = tmp_path / "lint.json"
    proc = tfedge_lint(str(blocked), "--json", f"--output={out}")
    assert proc.returncode == 1
    assert proc.stdout.strip() == (f"wrote {out} (target cortex-m4: optimized 2, reference 2, "
                                   "blocker 1)")
    report = json.loads(out.read_text())
    assert [f["op"] for f in report["findings"] if f["status"] == "blocker"] == ["TRANSPOSE"]
    assert sorted(os.listdir(tmp_path)) == ["lint.json"]  # no temporary file left behind
    table = tmp_path / "lint.txt"
    assert tfedge_lint(str(ok), f"--output={table}").returncode == 0
    assert table.read_text().startswith("target cortex-m4: ")


@pytest.mark.parametrize("make, message", [
    (lambda d: str(d / "missing.tflite"), "does not exist"),
    (lambda d: str(d), "is a directory; pass the .tflite file itself"),
    (lambda d: _write(d / "model.txt", b"TFL3"), "is not a .tflite file"),
    (lambda d: _write(d / "junk.tflite", b"\0" * 64), "is not a valid .tflite model: file "
                                                      "identifier is b'\\x00\\x00\\x00\\x00'"),
    (lambda d: _write(d / "short.tflite", b"TF"), "2 bytes is too short"),
])
def test_bad_model_paths_are_named(tmp_path, make, message):
    path = make(tmp_path)
    proc = tfedge_lint(path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("tfedge lint: error: "), proc.stderr
    assert message in proc.stderr and (path in proc.stderr or repr(path) in proc.stderr)
    assert proc.stdout == ""


def _write(path, data):
    path.write_bytes(data)
    return str(path)


def test_usage_errors(model_files, tmp_path):
    ok, blocked = model_files
    proc = tfedge_lint()
    assert proc.returncode == 2 and "missing the model" in proc.stderr
    proc = tfedge_lint(str(ok), str(blocked))
    assert proc.returncode == 2 and "expects one model file, got 2" in proc.stderr
    proc = tfedge_lint(str(ok), "--target=m4")
    assert proc.returncode != 0
    assert "cortex-m4|cortex-m7|cortex-m55|generic" in proc.stderr
    proc = tfedge_lint(str(ok), f"--output={tmp_path / 'no' / 'such' / 'lint.json'}")
    assert proc.returncode == 2 and "does not exist; create it" in proc.stderr


def test_help_lists_the_flags_and_exit_status():
    proc = tfedge_lint("--help")
    assert proc.returncode == 0
    for text in ("--target", "--json", "--output", "Exit status: 0 when no op is a blocker",
                 "tfedge lint model.tflite --target=cortex-m4"):
        assert text in proc.stdout
