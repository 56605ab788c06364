"""`tfedge mcu run`, `codegen` and `profile` from the command line."""

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

needs_toolchain = pytest.mark.skipif(
    not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="arm-none-eabi-gcc or qemu-system-arm missing: apt-get install gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi qemu-system-arm")


def tfedge_mcu(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfedge", "mcu", *args], capture_output=True,
                          text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def model_path(int8_tflite, tmp_path_factory):
    path = tmp_path_factory.mktemp("mcu") / "model.tflite"
    path.write_bytes(int8_tflite)
    return str(path)


@needs_toolchain
def test_run_is_bit_exact_and_reports_the_figures(model_path):
    proc = tfedge_mcu("run", model_path, "--board=mps2-an500", "--inputs=3", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["exact"] is True and result["board"] == "mps2-an500"
    assert len(result["outputs"]) == 3 and result["outputs"] == result["reference"]
    assert result["flash"] == result["code_bytes"] + result["weights_bytes"] + result["data_bytes"]
    assert result["macs_per_instruction"] > 0
    text = tfedge_mcu("run", model_path, "--inputs=1", "--trace")
    assert text.returncode == 0, text.stderr[-3000:]
    assert "every op's output compared" in text.stdout and "bit-exact        True" in text.stdout


def test_codegen_writes_the_c_files(model_path, tmp_path):
    proc = tfedge_mcu("codegen", model_path, f"--output_dir={tmp_path}", "--prefix=kws",
                      "--runtime")
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = set(os.listdir(tmp_path))
    assert {"model.c", "model.h", "tfedge_kernels.h", "tfedge_conv.c"} <= names
    assert "int kws_invoke(const int8_t *in, int8_t *out);" in (tmp_path / "model.h").read_text()
    assert "_tables[" in (tmp_path / "model.c").read_text()
    small = tmp_path / "small"
    proc = tfedge_mcu("codegen", model_path, f"--output_dir={small}", "--noprecompute")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "_tables[" not in (small / "model.c").read_text()


@needs_toolchain
def test_profile_prints_every_op_and_the_total(model_path):
    proc = tfedge_mcu("profile", model_path, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["instructions"] == sum(op["instructions"] for op in result["ops"]) > 0
    assert result["macs"] == sum(op["macs"] for op in result["ops"]) > 0
    assert [op["index"] for op in result["ops"]] == list(range(len(result["ops"])))
    text = tfedge_mcu("profile", model_path, "--nodsp")
    assert text.returncode == 0, text.stderr[-3000:]
    lines = text.stdout.splitlines()
    assert lines[0] == "mps2-an386, portable kernels, one inference"
    assert lines[1].split() == ["#", "op", "MACs", "instructions", "MACs/instr", "share"]
    assert len(lines) == 2 + len(result["ops"]) + 1 and lines[-1].split()[0] == "total"
    assert any(line.split()[1] == "CONV_2D" for line in lines[2:-1])


@pytest.mark.parametrize("args, message", [
    ([], "say what to do: tfedge mcu run|codegen|profile"),
    (["run"], "tfedge mcu run takes one model file; received 0"),
    (["run", "/no/such.tflite"], "model file '/no/such.tflite' does not exist"),
    (["codegen", "{model}"], "tfedge mcu codegen needs --output_dir=DIR"),
])
def test_bad_calls_exit_2_with_the_reason(model_path, args, message):
    proc = tfedge_mcu(*[a.format(model=model_path) for a in args])
    assert proc.returncode == 2 and f"tfedge mcu: error: {message}" in proc.stderr


def test_a_float_model_is_refused_by_op_and_tensor(float_tflite, tmp_path):
    path = tmp_path / "float.tflite"
    path.write_bytes(float_tflite)
    proc = tfedge_mcu("codegen", str(path), f"--output_dir={tmp_path / 'out'}")
    assert proc.returncode == 2 and "is FLOAT32; the runtime computes int8" in proc.stderr
    assert not (tmp_path / "out").exists()
