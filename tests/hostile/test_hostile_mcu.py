"""Hostile and broken models on the Cortex-M path: `codegen`, `mcu.run`, `tfedge mcu`, `lint`.

- Names from a model never become code: a tensor name carrying `*/`, a newline and C that
  writes a host file changes only comments of the generated C (the code outside comments is
  identical to that of the same model with plain names), and the firmware built from it runs
  bit-exact while the host file is never written.
- The emulated program cannot touch host files at all: newlib's fopen/remove and raw
  semihosting calls (BKPT 0xAB) fail, a canary file beside the build stays as it was.
- No temporary build folder is left behind, on success or on failure.
- A model too big for the board is refused before anything is compiled, with the numbers; an
  impossible tensor shape is refused by codegen and flagged by lint.

The models are built here, byte by byte, with LiteRT's flatbuffer schema (no TensorFlow).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from tfedge.converters import lint, tflite_reader
from tfedge.microcontroller import codegen, mcu, qemu

pytestmark = pytest.mark.integration

needs_toolchain = pytest.mark.skipif(
    not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="arm-none-eabi-gcc or qemu-system-arm missing: apt-get install gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi qemu-system-arm")


def _payload(path):
    """C that writes `path` on the host if it ever gets compiled, wrapped to close a /* comment
    (and a // one: the newline) and to open a new one after itself."""
    return (f'x */\n#include <stdio.h>\n__attribute__((constructor)) static void pwn(void) '
            f'{{ FILE *f = fopen("{path}", "w"); if (f) {{ fputs("pwned", f); fclose(f); }} }}\n'
            '#define tfedge_fully_connected_s8(...) 0 ??/\n\\\n/* ')


def fully_connected_model(names=("input", "weights", "bias", "output"), in_features=16,
                          out_features=4, *, output_shape=None, seed=0):
    """An int8 FULLY_CONNECTED model: input [1, in] -> output [1, out], named `names`."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    rng = np.random.default_rng(seed)
    weights = rng.integers(-127, 128, (out_features, in_features), dtype=np.int8)
    bias = rng.integers(-2000, 2000, out_features, dtype=np.int32)
    model = schema.ModelT()
    model.version = 3
    model.description = b"hostile test model"
    model.buffers = [schema.BufferT(), schema.BufferT(), schema.BufferT(), schema.BufferT()]
    model.buffers[1].data = np.frombuffer(weights.tobytes(), np.uint8)
    model.buffers[2].data = np.frombuffer(bias.tobytes(), np.uint8)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    model.operatorCodes = [code]
    specs = [(schema.TensorType.INT8, [1, in_features], 0, 0.05, 0),
             (schema.TensorType.INT8, [out_features, in_features], 1, 0.02, 0),
             (schema.TensorType.INT32, [out_features], 2, 0.05 * 0.02, 0),
             (schema.TensorType.INT8, list(output_shape or [1, out_features]), 3, 0.1, -3)]
    subgraph = schema.SubGraphT()
    subgraph.tensors = []
    for name, (kind, shape, buffer, scale, zero_point) in zip(names, specs):
        tensor = schema.TensorT()
        tensor.name = name.encode("utf-8", "surrogatepass") if isinstance(name, str) else name
        tensor.type, tensor.shape, tensor.buffer = kind, shape, buffer
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.scale, tensor.quantization.zeroPoint = [scale], [zero_point]
        subgraph.tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = schema.FullyConnectedOptionsT()
    subgraph.operators = [op]
    subgraph.inputs, subgraph.outputs = [0], [3]
    subgraph.name = names[0].encode() if isinstance(names[0], str) else names[0]
    model.subgraphs = [subgraph]
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def quantize_model(shape):
    """QUANTIZE int8 -> int8 of an activation of `shape`: no weights, an arena of two tensors."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    model.version = 3
    model.buffers = [schema.BufferT()]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
    code.version = 1
    model.operatorCodes = [code]
    subgraph = schema.SubGraphT()
    subgraph.tensors = []
    for i, scale in enumerate((0.05, 0.1)):
        tensor = schema.TensorT()
        tensor.name, tensor.type, tensor.shape, tensor.buffer = f"t{i}".encode(), \
            schema.TensorType.INT8, list(shape), 0
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.scale, tensor.quantization.zeroPoint = [scale], [0]
        subgraph.tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    subgraph.operators = [op]
    subgraph.inputs, subgraph.outputs = [0], [1]
    model.subgraphs = [subgraph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)


def code_outside_comments(text):
    """C text with every comment replaced by one space (the files hold no string literal that
    could contain a comment marker: checked below)."""
    assert '"/*' not in text and '"//' not in text
    return _COMMENT.sub(" ", text)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A fresh system temp folder for the test: whatever tfedge leaves there is visible."""
    folder = tmp_path / "systmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


# ---- names from the model ------------------------------------------------------------------


def test_hostile_names_only_change_comments(tmp_path):
    target = tmp_path / "pwned.txt"
    hostile = fully_connected_model([_payload(target)] * 4)
    plain = fully_connected_model()
    assert tflite_reader.read_tflite(hostile).subgraphs[0].tensors[0].name.startswith("x */")
    bad, good = codegen.generate(hostile), codegen.generate(plain)
    for name in ("model.c", "model.h"):
        assert code_outside_comments(bad.files[name]) == code_outside_comments(good.files[name])
        # inside the comments, none of the payload's own delimiters or line breaks survived
        for comment in _COMMENT.findall(bad.files[name]):
            body = comment[2:-2] if comment.startswith("/*") else comment[2:]
            assert "*/" not in body and "/*" not in body and "??/" not in body
            if comment.startswith("//"):
                assert not comment.endswith("\\")
    assert "fopen" not in code_outside_comments(bad.files["model.c"])
    assert "x \\x2a\\x2f\\x0a#include <stdio.h>" in bad.files["model.c"]  # escaped, readable
    assert bad.input.name == _payload(target)  # the Python side keeps the true name


@needs_toolchain
def test_hostile_names_build_run_bit_exact_and_write_nothing(tmp_path, private_tmp):
    target = tmp_path / "pwned.txt"
    hostile = fully_connected_model([_payload(target)] * 4)
    result = mcu.run(hostile, "mps2-an386", inputs=3, trace=True, timeout_s=60)
    assert result.exact and result.mismatched_bytes == 0 and result.trace_mismatches == ()
    assert not target.exists()
    assert os.listdir(private_tmp) == []  # and the temporary build folder is gone


# ---- confinement: the emulated program and the host's files -------------------------------

_ESCAPE_SOURCE = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

int main(void) {
  FILE *f = fopen(NEW_FILE, "w");
  printf("fopen-write %s\n", f ? "opened" : "refused");
  if (f) { fputs("pwned", f); fclose(f); }
  FILE *g = fopen(CANARY, "r");
  printf("fopen-read %s\n", g ? "opened" : "refused");
  printf("remove %s\n", remove(CANARY) == 0 ? "done" : "refused");
  printf("rename %s\n", rename(CANARY, NEW_FILE) == 0 ? "done" : "refused");
  fflush(stdout);
#ifdef RAW_SEMIHOSTING
  /* SYS_OPEN(NEW_FILE, "w") and SYS_REMOVE(CANARY), straight to the debugger interface */
  static const char path[] = NEW_FILE, canary[] = CANARY;
  uint32_t open_block[3] = {(uint32_t)path, 4, sizeof path - 1};
  uint32_t remove_block[2] = {(uint32_t)canary, sizeof canary - 1};
  printf("raw-open %d\n", semihost(0x01, open_block));
  printf("raw-remove %d\n", semihost(0x0E, remove_block));
#endif
  return 0;
}
"""


@needs_toolchain
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
@pytest.mark.parametrize("raw", [False, True], ids=["newlib", "semihosting"])
def test_emulated_program_cannot_touch_host_files(tmp_path, board, raw):
    canary = tmp_path / "canary.txt"
    canary.write_text("intact")
    new_file = tmp_path / "created.txt"
    source = tmp_path / "escape.c"
    source.write_text(_ESCAPE_SOURCE)
    defines = {"NEW_FILE": f'"{new_file}"', "CANARY": f'"{canary}"'}
    if raw:
        defines["RAW_SEMIHOSTING"] = None
    exe = qemu.build([source], board=board, output_dir=tmp_path / "build", defines=defines)
    result = qemu.run(exe, timeout_s=30, cwd=tmp_path)
    for line in ("fopen-write refused", "fopen-read refused", "remove refused",
                 "rename refused"):
        assert line in result.stdout, result.stdout
    if raw:  # BKPT 0xAB is no semihosting call here: it faults, and the report says what it was
        assert result.exit_code == qemu.FAULT_EXIT_CODE
        assert result.fault is not None and "semihosting call (disabled" in result.fault
        assert "raw-open" not in result.stdout
    else:
        assert result.exit_code == 0
    assert canary.read_text() == "intact"
    assert not new_file.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "canary.txt", "escape.c"]


def test_qemu_runs_without_semihosting(tmp_path):
    elf = tmp_path / "program.elf"
    elf.write_bytes(b"")
    command = qemu.qemu_command(elf, "mps2-an386", toolchain=qemu.Toolchain("gcc", None, "qemu"))
    assert not any("semihosting" in part for part in command)
    assert "-no-reboot" in command and "chardev:console" in command


# ---- temporary folders ---------------------------------------------------------------------


@needs_toolchain
def test_no_build_folder_is_left_behind(private_tmp, monkeypatch):
    model = fully_connected_model()
    # (a successful mcu.run is checked in test_hostile_names_build_run_bit_exact_and_write_nothing)
    monkeypatch.setattr(mcu, "_CALIBRATIONS", {})  # calibration builds in a folder of its own
    assert mcu.calibration("mps2-an386").overhead > 0
    assert os.listdir(private_tmp) == []

    def crash(*args, **kwargs):
        raise qemu.QemuError("emulator crashed (simulated)")

    monkeypatch.setattr(qemu, "run", crash)
    with pytest.raises(qemu.QemuError, match="simulated"):
        mcu.run(model, "mps2-an386", inputs=1)
    assert os.listdir(private_tmp) == []


def test_keep_build_keeps_the_folder(private_tmp, monkeypatch):
    def crash(*args, **kwargs):
        raise qemu.BuildError("compiler failed (simulated)")

    monkeypatch.setattr(qemu, "build", crash)
    with pytest.raises(qemu.BuildError):
        mcu.run(fully_connected_model(), "mps2-an386", inputs=1, keep_build=True)
    kept = os.listdir(private_tmp)
    assert len(kept) == 1 and kept[0].startswith("tfedge-mcu-")
    assert {"model.c", "model.h", "main.c"} <= set(os.listdir(private_tmp / kept[0]))


# ---- too big, impossible shapes ------------------------------------------------------------


def _no_compiler(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the compiler ran for a model that cannot fit")

    monkeypatch.setattr(qemu, "build", refuse)


@pytest.mark.parametrize("board, region", [("mps2-an386", "SSRAM2&3"),
                                           ("mps3-an547", "ISRAM")])
def test_too_big_for_ram_is_refused_before_compiling(board, region, monkeypatch, private_tmp):
    _no_compiler(monkeypatch)
    model = quantize_model((1, 3, 1000, 1000))  # two 3 MB activations: a 6 MB arena
    with pytest.raises(mcu.DoesNotFitError) as error:
        mcu.run(model, board, inputs=1)
    message = str(error.value)
    assert f"does not fit {board}: its {region} (4.0 MiB" in message
    assert "tensor arena 6,000,000" in message and "heap 32,768" in message
    assert os.listdir(private_tmp) == []


def test_too_big_for_flash_is_refused_before_code_generation(monkeypatch):
    _no_compiler(monkeypatch)

    def no_codegen(*args, **kwargs):
        raise AssertionError("code generation ran for weights that cannot fit")

    monkeypatch.setattr(codegen, "generate", no_codegen)
    # 9 MiB of weights: more than the AN547's 8 MiB QSPI flash, less than the AN386's 16 MiB
    model = fully_connected_model(in_features=3 * 1024, out_features=3 * 1024)
    with pytest.raises(mcu.DoesNotFitError, match=r"does not fit mps3-an547: its QSPI \(8\.0 "
                       r"MiB, for rodata, data-image\) would need at least 9,449,\d+ bytes"):
        mcu.run(model, "mps3-an547", inputs=1)


def test_check_fits_counts_weights_tables_and_inputs():
    generated = codegen.generate(fully_connected_model())
    mcu.check_fits(generated, "mps2-an386", 5)  # a tiny model fits
    # weights that leave room in the 16 MiB PSRAM for the tables and exactly 3 inputs
    room = 16 * 2**20 - generated.tables_bytes - 3 * generated.input.bytes
    big = generated.__class__(**{**generated.__dict__, "weights_bytes": room})
    mcu.check_fits(big, "mps2-an386", 3)
    with pytest.raises(mcu.DoesNotFitError, match=r"its PSRAM \(16\.0 MiB, for rodata\) would "
                       r"need at least 16,777,232 bytes"):
        mcu.check_fits(big, "mps2-an386", 4)


IMPOSSIBLE = (1275068417, 10)


def test_codegen_refuses_impossible_shapes():
    model = fully_connected_model(output_shape=IMPOSSIBLE)
    with pytest.raises(codegen.CodegenError, match=r"'output' has shape \[1275068417, 10\]: "
                       r"more than 2,147,483,647 elements"):
        codegen.generate(model)
    with pytest.raises(codegen.CodegenError, match="dynamic dimension"):
        codegen.generate(fully_connected_model(output_shape=(-1, 4)))


def test_lint_flags_impossible_shapes():
    report = lint.lint(fully_connected_model(output_shape=IMPOSSIBLE))
    assert not report.ok
    (finding,) = report.blockers
    assert "'output' has shape [1275068417, 10]" in finding.reason and finding.fix


def _tfedge(*args, cwd=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfedge", *args], capture_output=True,
                          text=True, env=env, timeout=120, cwd=cwd)


@pytest.mark.parametrize("command", ["codegen", "run"])
def test_cli_refuses_impossible_and_oversized_models_in_one_line(tmp_path, command):
    impossible = tmp_path / "impossible.tflite"
    impossible.write_bytes(fully_connected_model(output_shape=IMPOSSIBLE))
    big = tmp_path / "big.tflite"
    big.write_bytes(quantize_model((1, 3, 1000, 1000)))
    for path, expected in ((impossible, "more than 2,147,483,647 elements"),
                           (big, "does not fit mps2-an386")):
        if command == "codegen" and path == big:
            continue  # codegen writes C for any board: nothing to fit
        proc = _tfedge("mcu", command, str(path), f"--output_dir={tmp_path / 'out'}",
                       cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tfedge mcu: error: "), proc.stderr
        assert expected in lines[0] and "Traceback" not in proc.stderr
        assert not (tmp_path / "out" / "model.elf").exists()
