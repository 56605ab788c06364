"""A converter that crashes or hangs must end in a ConversionError, never in a dead process.

TensorFlow 2.21's calibrator segfaults on LSTM and GRU layers that are not unrolled; tfedge runs
it in a worker process (`tfedge.converters._calibration_worker`) and reports the crash.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tfedge.converters import tflite

pytestmark = pytest.mark.integration

SHAPE = (8, 8, 1)  # digits images, read by the recurrent layer as 8 steps of 8 values


def recurrent_model(kind, units=4):
    """Image in, an LSTM or GRU over its rows ("lstm", "gru"; "gru+lstm": both, stacked), ten
    classes out."""
    from tfedge._keras import keras

    layers = keras.layers
    stack = {"lstm": [layers.LSTM(units, name="my_lstm")],
             "gru": [layers.GRU(units, name="my_gru")],
             "gru+lstm": [layers.GRU(units, return_sequences=True, name="my_gru"),
                          layers.LSTM(units, name="my_lstm")]}[kind]
    return keras.Sequential([layers.Input(SHAPE), layers.Reshape((8, 8)), *stack,
                             layers.Dense(10, activation="softmax")],
                            name=f"{kind.replace('+', '_')}_model")


def dense_model():
    from tfedge._keras import keras

    return keras.Sequential([keras.layers.Input(SHAPE), keras.layers.Flatten(),
                             keras.layers.Dense(10)], name="dense_model")


IMAGES = np.random.default_rng(0).random((10,) + SHAPE, np.float32)


def assert_clear_crash_message(message, kind, mode="int8"):
    listed = {"lstm": "layer 'my_lstm' (LSTM): without unroll=True it converts",
              "gru": "layer 'my_gru' (GRU): without unroll=True it converts",
              "gru+lstm": "layers 'my_gru' (GRU), 'my_lstm' (LSTM): without unroll=True they "
                          "convert"}[kind]
    model = f"{kind.replace('+', '_')}_model"
    assert message.startswith(f"{mode} calibration of {model} crashed: TensorFlow's "
                              "calibrator died with SIGSEGV. The likely cause is its recurrent "
                              f"{listed} to a WHILE loop"), message
    advice = message[message.index("The likely cause"):]
    layer = "GRU" if kind.startswith("gru") else "LSTM"
    assert f"keras.layers.{layer}(..., unroll=True, implementation=1)" in advice
    assert "to_int8" in advice and "to_dynamic_range" in advice and "--mode=dynamic" in advice
    assert "int16" not in advice  # int16x8 crashes on these layers the same way
    assert "\n" not in message


@pytest.mark.parametrize("kind, convert, mode", [
    ("lstm", tflite.to_int8, "int8"),
    ("gru", tflite.to_int16x8, "int16x8"),
])
def test_a_calibrator_crash_is_a_clear_error_and_leaves_no_folder(kind, convert, mode):
    worker = tflite._start_calibration_worker()
    with pytest.raises(tflite.ConversionError) as info:
        convert(recurrent_model(kind), IMAGES)
    assert_clear_crash_message(str(info.value), kind, mode)
    assert worker.proc.returncode == -signal.SIGSEGV
    assert not os.path.exists(worker.folder)  # the worker's private folder went with it
    assert tflite._worker is None


def test_the_unrolled_layer_and_dynamic_range_that_the_message_suggests_convert():
    from tfedge._keras import keras

    layers = keras.layers
    for layer in (layers.LSTM, layers.GRU):
        unrolled = keras.Sequential([layers.Input(SHAPE), layers.Reshape((8, 8)),
                                     layer(4, unroll=True, implementation=1), layers.Dense(10)])
        assert tflite.quantization_mode(tflite.to_int8(unrolled, IMAGES)) == "int8"
    # 32 units: weights of 1024 elements and more are the ones the converter quantizes.
    dynamic = tflite.to_dynamic_range(recurrent_model("lstm", units=32))
    assert tflite.quantization_mode(dynamic) == "dynamic"


def tfedge_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfedge", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_tfedge_convert_prints_one_error_line_without_a_traceback(tmp_path):
    # One model with a GRU and an LSTM layer: one subprocess (about 10 s) covers both.
    kind = "gru+lstm"
    saved = tmp_path / "recurrent.keras"
    recurrent_model(kind).save(saved)
    out = tmp_path / "model.tflite"
    proc = tfedge_cli("convert", str(saved), "--mode=int8", "--dataset=digits",
                      "--calibration_samples=10", f"--output={out}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    prefix = "tfedge convert: error: "
    assert lines[-1].startswith(prefix), proc.stderr[-3000:]
    assert sum(line.startswith("tfedge convert:") for line in lines) == 1
    assert_clear_crash_message(lines[-1][len(prefix):], kind)
    assert "Traceback" not in proc.stderr and "Fatal Python error" not in proc.stderr
    assert not out.exists()


def test_a_worker_that_cannot_import_tensorflow_is_reported_with_its_reason(
        tmp_path, monkeypatch):
    broken = tmp_path / "tensorflow"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('a TensorFlow broken on purpose')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the worker's, not this process's
    tflite._stop_calibration_worker()
    with pytest.raises(tflite.ConversionError) as info:
        tflite.to_int8(dense_model(), IMAGES)
    assert str(info.value) == (
        "int8 calibration of dense_model failed: tfedge's calibration worker (a child process "
        f"running {sys.executable!r}) ended with exit status 1 before it had imported "
        "TensorFlow; its last log line says: ImportError: a TensorFlow broken on purpose")
    assert tflite._worker is None


def test_a_killed_worker_is_replaced_by_the_next_conversion():
    worker = tflite._start_calibration_worker()
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(timeout=30)
    assert tflite.quantization_mode(tflite.to_int8(dense_model(), IMAGES)) == "int8"
    assert tflite._worker is not worker and tflite._worker.alive()
    assert not os.path.exists(worker.folder)


def test_a_hung_worker_is_stopped_after_the_timeout(monkeypatch):
    model = dense_model()
    worker = tflite._start_calibration_worker()
    os.kill(worker.proc.pid, signal.SIGSTOP)  # it neither reads the request nor replies
    monkeypatch.setattr(tflite, "CALIBRATION_TIMEOUT_BASE", 0.5)
    monkeypatch.setattr(tflite, "CALIBRATION_TIMEOUT_PER_SAMPLE", 0.05)
    started = time.monotonic()
    with pytest.raises(tflite.ConversionError,
                       match=r"^int8 calibration of dense_model did not finish within 1 s "
                             r"\(the limit for 10 calibration samples, see "
                             r"tflite.calibration_timeout\) and was stopped"):
        tflite.to_int8(model, IMAGES)
    assert time.monotonic() - started < 60
    assert worker.proc.returncode == -signal.SIGKILL and not os.path.exists(worker.folder)
    assert tflite._worker is None  # the next conversion starts a new one


def test_the_worker_exits_and_removes_its_folder_when_its_parent_is_killed(tmp_path):
    script = ("import sys, time\n"
              "from tfedge.converters import tflite\n"
              "worker = tflite._start_calibration_worker()\n"
              "print(worker.proc.pid, worker.folder, flush=True)\n"
              "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid, folder = parent.stdout.readline().split()
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (os.path.exists(folder) or _running(int(pid))):
        time.sleep(0.2)
    assert not _running(int(pid)) and not os.path.exists(folder)


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except FileNotFoundError:
        return False
