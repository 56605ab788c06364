"""`tfedge export-c MODEL.tflite`: the files it writes, what it prints, and what it refuses."""

import os
import re
import subprocess
import sys

import pytest

from tfedge.converters import c_array, firmware, op_resolver, tflite_reader, tflm

pytestmark = pytest.mark.integration

FULL_FLAGS = ["--symbol=g_digits", "--namespace=app::ml", "--section=.rodata.model",
              "--int8_kernels", "--template"]


def tfedge_cli(*args, cwd=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfedge", "export-c", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def model_path(int8_tflite, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "digits.tflite"
    path.write_bytes(int8_tflite)
    return path


@pytest.fixture(scope="module")
def library_export(int8_tflite):
    """What the Python API makes with FULL_FLAGS' options (arena measured)."""
    return firmware.export(int8_tflite, symbol="g_digits", namespace="app::ml",
                           section=".rodata.model", int8_kernels=True, template=True)


def test_writes_every_file_the_library_makes_and_prints_the_arena(tmp_path, model_path,
                                                                  int8_tflite, library_export):
    out = tmp_path / "firmware"
    proc = tfedge_cli(str(model_path), f"--output_dir={out}", *FULL_FLAGS,
                      "--ram_budget=1000000")
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = ["model_data.cc", "model_data.h", "op_resolver.h", "model_settings.h", "main.cc"]
    assert sorted(os.listdir(out)) == sorted(names)
    for name in names:
        assert f"wrote {out / name}\n" in proc.stdout
    # The CLI and the library share one function: the same text, in another process.
    for name, text in library_export.files.items():
        if name != "model_settings.h":  # its budget line differs, checked below
            assert (out / name).read_text() == text, name
    assert c_array.parse_c_source((out / "model_data.cc").read_text()) == int8_tflite
    assert (out / "op_resolver.h").read_text() == op_resolver.op_resolver_source(
        int8_tflite, int8_kernels=True, namespace="app::ml")
    arena = library_export.arena
    line = re.search(r"^tensor arena: minimum ([\d,]+) bytes \(TFLM host interpreter\), "
                     r"recommended ([\d,]+) bytes \(kTensorArenaSize\)$", proc.stdout, re.M)
    assert line, proc.stdout
    minimum, recommended = (int(g.replace(",", "")) for g in line.groups())
    assert (minimum, recommended) == (arena.minimum, arena.recommended)
    assert recommended == tflm.recommended_arena_size(minimum)
    settings = (out / "model_settings.h").read_text()
    assert f"constexpr int kTensorArenaSize = {recommended};\n" in settings
    assert f"constexpr int kTensorArenaMinimum = {minimum};\n" in settings
    assert "constexpr int kTensorArenaBudget = 1000000;\n" in settings
    assert f"RAM budget: 1,000,000 bytes, {1_000_000 - recommended:,} left" in proc.stdout
    assert re.search(r"^int8 kernels \(CMSIS-NN with OPTIMIZED_KERNEL_DIR=cmsis_nn\): "
                     r".*CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED", proc.stdout, re.M)
    assert "constexpr int kInput0Dims[] = {1, 32, 32, 1};" in settings
    assert "tflite::GetModel(app::ml::g_digits)" in (out / "main.cc").read_text()


def test_over_the_ram_budget_fails_and_writes_nothing(tmp_path, model_path):
    out = tmp_path / "firmware"
    proc = tfedge_cli(str(model_path), f"--output_dir={out}", "--ram_budget=4096")
    assert proc.returncode != 0
    assert "tfedge export-c: error: the tensor arena needs at least" in proc.stderr
    assert "than the RAM budget of 4,096 bytes" in proc.stderr
    assert "prune_channels" in proc.stderr
    assert not out.exists()


def test_noarena_writes_a_zero_arena_quickly(tmp_path, model_path, int8_tflite):
    out = tmp_path / "firmware"
    proc = tfedge_cli(str(model_path), f"--output_dir={out}", "--noarena",
                      "--header_name=digits_model.h")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["digits_model.cc", "digits_model.h", "model_settings.h",
                                       "op_resolver.h"]
    assert "constexpr int kTensorArenaSize = 0;" in (out / "model_settings.h").read_text()
    assert '#include "digits_model.h"' in (out / "digits_model.cc").read_text()
    assert "tensor arena: not measured (--noarena)" in proc.stdout
    assert "int8 kernels" not in proc.stdout  # not asked for
    assert "Register_" not in (out / "op_resolver.h").read_text()
    names = tflite_reader.read_tflite(int8_tflite).op_names()
    assert f"op resolver: {len(set(names))} ops: {', '.join(sorted(set(names)))}" in proc.stdout


def with_lsh_projection(tflite_bytes):
    """The same model with its SOFTMAX turned into LSH_PROJECTION (no TFLM resolver method)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    lsh = tflite_reader.BUILTIN_OPERATORS.index("LSH_PROJECTION")
    softmax = tflite_reader.BUILTIN_OPERATORS.index("SOFTMAX")
    for code in model.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == softmax:
            code.builtinCode = code.deprecatedBuiltinCode = lsh
    builder = flatbuffers.Builder(len(tflite_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture
def bad_files(tmp_path, int8_tflite):
    (tmp_path / "random.tflite").write_bytes(os.urandom(256))
    (tmp_path / "lsh.tflite").write_bytes(with_lsh_projection(int8_tflite))
    (tmp_path / "folder.tflite").mkdir()
    return tmp_path


@pytest.mark.parametrize("args, message", [
    ([], "no model given: tfedge export-c MODEL.tflite --output_dir=DIR"),
    (["{dir}/a.tflite", "{dir}/b.tflite"], "one model at a time; received 2"),
    (["{dir}/missing.tflite"], "cannot read the model '{dir}/missing.tflite': No such file"),
    (["{dir}/folder.tflite"], "cannot read the model '{dir}/folder.tflite': Is a directory"),
    (["{dir}/random.tflite"], "'{dir}/random.tflite' is not a .tflite model"),
    (["{dir}/lsh.tflite"], "no Add method for op 'LSH_PROJECTION' (used 1 time(s), first as op"),
    (["{dir}/lsh.tflite", "--symbol=9lives"], "`symbol` must be a C identifier"),
    (["{dir}/lsh.tflite", "--namespace=app::"], "`namespace` must be C identifiers joined by"),
    (["{dir}/lsh.tflite", "--section=has space"], "`section` must be a linker section name"),
    (["{dir}/lsh.tflite", "--alignment=12"], "--alignment must be a power of two"),
    (["{dir}/lsh.tflite", "--header_name=../x.h"], "`header_name` must be a plain file name"),
    (["{dir}/lsh.tflite", "--header_name=op_resolver.h"], "`header_name` must not be"),
    (["{dir}/lsh.tflite", "--noarena", "--ram_budget=1000"], "--ram_budget needs the arena"),
    (["{dir}/lsh.tflite", "--ram_budget=0"], "--ram_budget"),
])
def test_bad_input_is_named_and_nothing_is_written(bad_files, args, message):
    out = bad_files / "out"
    args = [a.format(dir=bad_files) for a in args]
    proc = tfedge_cli(*args, f"--output_dir={out}")
    assert proc.returncode != 0
    assert message.format(dir=bad_files) in proc.stderr, proc.stderr[-2000:]
    assert not out.exists()


def test_output_dir_is_required(model_path):
    proc = tfedge_cli(str(model_path))
    assert proc.returncode != 0 and "output_dir" in proc.stderr


def test_a_file_in_the_way_of_the_output_dir_is_named(tmp_path, model_path):
    (tmp_path / "taken").write_text("")
    proc = tfedge_cli(str(model_path), f"--output_dir={tmp_path / 'taken'}", "--noarena")
    assert proc.returncode != 0
    assert "exists and is not a directory" in proc.stderr


def test_help_shows_the_example_and_the_flags():
    proc = tfedge_cli("--help")
    assert proc.returncode == 0
    assert "tfedge export-c model.tflite --output_dir=firmware" in proc.stdout
    for flag in ("--output_dir", "--namespace", "--section", "--alignment", "--int8_kernels",
                 "--[no]arena", "--ram_budget", "--[no]template", "--header_name"):
        assert flag in proc.stdout, flag
