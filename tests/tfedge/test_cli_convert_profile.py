"""`tfedge convert` and `tfedge profile` from the command line."""

import json
import os
import subprocess
import sys

import pytest

from tfedge.converters import read_tflite, tflite

pytestmark = pytest.mark.integration


def tfedge(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfedge", *args], capture_output=True,
                          text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def saved(trained_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("convert") / "model.keras"
    trained_model.save(path)
    return path


@pytest.mark.parametrize("mode, args, io", [
    ("int8", [], ("INT8", "INT8")),
    ("int8", ["--input_type=uint8", "--output_type=float32"], ("UINT8", "FLOAT32")),
    ("float16", [], ("FLOAT32", "FLOAT32")),
])
def test_convert_writes_the_asked_mode(saved, tmp_path, mode, args, io):
    out = tmp_path / "model.tflite"
    proc = tfedge("convert", str(saved), f"--mode={mode}", "--calibration_samples=20",
                  f"--output={out}", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = out.read_bytes()
    assert tflite.quantization_mode(data) == mode
    main = read_tflite(data).subgraphs[0]
    assert (main.tensors[main.inputs[0]].type_name, main.tensors[main.outputs[0]].type_name) == io
    assert f"wrote {out}: {len(data):,} bytes" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["/no/model.keras", "--output=x.tflite"], "model '/no/model.keras' does not exist"),
    (["{model}", "--output=x.bin"], "must end in .tflite"),
    (["{model}", "--output=/no/dir/x.tflite"], "folder '/no/dir' does not exist"),
    (["{model}", "--mode=float16", "--input_type=uint8", "--output=x.tflite"],
     "apply to int8 and int16x8 only"),
    (["{model}", "--mode=int8", "--input_type=int16", "--output=x.tflite"],
     "`input_type` must be one of ('int8', 'uint8', 'float32')"),
])
def test_convert_refuses_bad_calls(saved, tmp_path, args, message):
    proc = tfedge("convert", *[a.format(model=saved) for a in args])
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]


def test_profile_of_a_registry_model_and_of_a_file(saved):
    proc = tfedge("profile", "--model=mobilenet_v2", "--width=1.0", "--input_size=224")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3,538,984 parameters" in proc.stdout and "head_conv" in proc.stdout
    proc = tfedge("profile", str(saved), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    profile = json.loads(proc.stdout)
    assert profile["total_params"] == 422730 and profile["layers"]
