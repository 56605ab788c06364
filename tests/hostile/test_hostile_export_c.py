"""Hostile and broken inputs to `tfedge export-c` and the C generators behind it: lint's
blockers, reserved symbol names, model strings that try to break out of a C comment, and a disk
that fills up in the middle of a save. Every model here is built at test time, in memory."""

import errno
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from tfedge import _io
from tfedge.converters import c_array, c_text, firmware, lint

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs a host C++ compiler")


def build_model(ops, tensors, inputs=(0,), outputs=None):
    """A `.tflite` of one subgraph. `ops`: (builtin name, inputs, outputs); `tensors`: (name,
    type name, shape, constant data as bytes or None, (scale, zero point) or None)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from tfedge.converters import tflite_reader

    model = schema.ModelT()
    model.version = 3
    model.buffers = [schema.BufferT()]
    subgraph = schema.SubGraphT()
    subgraph.tensors = []
    for name, type_name, shape, data, quantization in tensors:
        tensor = schema.TensorT()
        tensor.name = name.encode("utf-8") if isinstance(name, str) else name
        tensor.type = tflite_reader.TENSOR_TYPES.index(type_name)
        tensor.shape = list(shape)
        tensor.buffer = 0
        if data is not None:
            buffer = schema.BufferT()
            buffer.data = list(data)
            tensor.buffer = len(model.buffers)
            model.buffers.append(buffer)
        if quantization is not None:
            tensor.quantization = schema.QuantizationParametersT()
            tensor.quantization.scale = [quantization[0]]
            tensor.quantization.zeroPoint = [quantization[1]]
        subgraph.tensors.append(tensor)
    codes, index = [], {}
    subgraph.operators = []
    for name, op_inputs, op_outputs in ops:
        if name not in index:
            code = schema.OperatorCodeT()
            code.builtinCode = tflite_reader.BUILTIN_OPERATORS.index(name)
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)
            code.version = 1
            index[name] = len(codes)
            codes.append(code)
        op = schema.OperatorT()
        op.opcodeIndex = index[name]
        op.inputs, op.outputs = list(op_inputs), list(op_outputs)
        subgraph.operators.append(op)
    subgraph.inputs = list(inputs)
    subgraph.outputs = list(outputs if outputs is not None else [len(tensors) - 1])
    model.subgraphs = [subgraph]
    model.operatorCodes = codes
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


Q = (0.5, 0)
SHAPE_5D = (1, 2, 2, 2, 2)


def transpose_5d_model():
    """int8 ADD (CMSIS-NN runs it) then a 5-D TRANSPOSE (CMSIS-NN's int8 kernel refuses it)."""
    perm = b"".join(p.to_bytes(4, "little") for p in (0, 1, 2, 4, 3))
    return build_model(
        [("ADD", [0, 0], [1]), ("TRANSPOSE", [1, 2], [3])],
        [("in", "INT8", SHAPE_5D, None, Q), ("sum", "INT8", SHAPE_5D, None, Q),
         ("perm", "INT32", (5,), perm, None), ("out", "INT8", SHAPE_5D, None, Q)])


@pytest.fixture(scope="module")
def transpose_5d():
    return transpose_5d_model()


def tfedge(*args, cwd=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfedge", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


# --- 6. export-c runs lint's checks first and refuses its blockers.


def test_export_refuses_lint_blockers_before_measuring_the_arena(transpose_5d, fake_arena):
    (blocker,) = lint.lint(transpose_5d, target="cortex-m4").blockers
    with pytest.raises(firmware.BlockerError) as info:
        firmware.export(transpose_5d, int8_kernels=True, ram_budget=1 << 20)
    assert fake_arena == []  # refused before the slow part
    assert info.value.findings == (blocker,) and info.value.target == "cortex-m4"
    message = str(info.value)
    assert message.splitlines()[0] == (
        "tfedge lint finds 1 blocker for cortex-m4 (TFLM would not run this op as exported): "
        "fix the model, or pass allow_blockers=True to export anyway:")
    # lint's own words: the op, where it is, why and the fix.
    assert message.splitlines()[1] == (
        f"  op #1 TRANSPOSE (subgraph 0): {blocker.reason}; fix: {blocker.fix}")
    assert "5-D TRANSPOSE" in blocker.reason and "reshape to at most 4 dims" in blocker.fix


def test_allow_blockers_warns_and_never_registers_the_int8_kernel_lint_refuses(transpose_5d,
                                                                              fake_arena):
    with pytest.warns(firmware.BlockerWarning, match=r"op #1 TRANSPOSE \(subgraph 0\): 5-D"):
        fw = firmware.export(transpose_5d, int8_kernels=True, allow_blockers=True)
    assert fake_arena == [None]
    assert [f.op for f in fw.blockers] == ["TRANSPOSE"]
    resolver = fw.files["op_resolver.h"]
    assert "resolver.AddTranspose()," in resolver and "TRANSPOSE_INT8" not in resolver
    assert "resolver.AddAdd(tflite::Register_ADD_INT8())," in resolver  # the others keep theirs
    assert fw.int8_kernel_ops == ["ADD"]
    # For a TFLM build without CMSIS-NN the same model has no blocker and keeps the kernel.
    generic = firmware.export(transpose_5d, int8_kernels=True, arena=False, target="generic")
    assert generic.blockers == () and generic.int8_kernel_ops == ["ADD", "TRANSPOSE"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(target="m4"), "`target` must be one of 'cortex-m4', 'cortex-m7', 'cortex-m55', "
                        "'generic'"),
    (dict(allow_blockers="yes"), "`allow_blockers` must be True"),
])
def test_bad_lint_options_are_named(transpose_5d, fake_arena, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        firmware.export(transpose_5d, **kwargs)
    assert fake_arena == []


def test_cli_refuses_blockers_and_allow_blockers_exports_with_a_warning(tmp_path, transpose_5d):
    model = tmp_path / "shuffle.tflite"
    model.write_bytes(transpose_5d)
    (blocker,) = lint.lint(transpose_5d).blockers
    out = tmp_path / "firmware"
    proc = tfedge("export-c", str(model), f"--output_dir={out}", "--int8_kernels", "--noarena")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "tfedge export-c: error: tfedge lint finds 1 blocker for cortex-m4 (TFLM would not run "
        "this op as exported): fix the model (each fix below), pass the --target you build for, "
        "or --allow_blockers to export anyway; nothing written",
        f"  op #1 TRANSPOSE (subgraph 0): {blocker.reason}; fix: {blocker.fix}"]
    assert not out.exists()

    proc = tfedge("export-c", str(model), f"--output_dir={out}", "--int8_kernels", "--noarena",
                  "--allow_blockers")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0] == (
        "tfedge export-c: warning: tfedge lint finds 1 blocker for cortex-m4 (TFLM would not "
        "run this op as exported); exported anyway (--allow_blockers), with TFLM's default "
        "kernel for this op:")
    assert "Traceback" not in proc.stderr and "BlockerWarning" not in proc.stderr
    assert "int8 kernels (CMSIS-NN with OPTIMIZED_KERNEL_DIR=cmsis_nn): ADD\n" in proc.stdout
    assert "TRANSPOSE_INT8" not in (out / "op_resolver.h").read_text()

    proc = tfedge("export-c", str(model), f"--output_dir={tmp_path / 'generic'}",
                  "--int8_kernels", "--noarena", "--target=generic")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "Register_TRANSPOSE_INT8()" in (tmp_path / "generic" / "op_resolver.h").read_text()


# --- 7c. Symbols the generated files or main.cc already use are refused.

REFUSED = {
    "main": "main.cc (the template application) defines it",
    "kTensorArenaSize": "model_settings.h declares it",
    "kTensorArenaMinimum": "model_settings.h declares it",
    "kTensorArenaBudget": "model_settings.h declares it",
    "kInputCount": "model_settings.h declares it",
    "kOutput3ZeroPoint": "model_settings.h declares names of this form",
    "kInput0Dims": "model_settings.h declares names of this form",
    "OpResolver": "op_resolver.h declares it",
    "RegisterOps": "op_resolver.h declares it",
    "tensor_arena": "main.cc (the template application) defines it",
    "model": "main.cc or op_resolver.h has a local variable or parameter of that name",
    "tflite": "it is TFLM's namespace",
    "std": "the C++ standard library's namespace",
    "TfLiteTensor": "TFLM's C API declares names starting with TfLite",
    "kTfLiteOk": "TFLM's C API declares names starting with TfLite",
    "MicroPrintf": "TFLM declares it",
    "CMSIS_NN": "TFLM's Makefile defines it as a macro",
    "uint8_t": "<cstdint>, which the generated files include, declares it",
    "size_t": "<cstddef>",
    "TFLITE": "its length constant would be 'TFLITE_len'",
}


@pytest.mark.parametrize("symbol", sorted(REFUSED))
def test_reserved_symbols_are_refused_by_the_api(symbol):
    with pytest.raises(ValueError) as info:
        c_array.to_c_source(b"\x01", symbol=symbol)
    message = str(info.value)
    assert message.startswith(f"`symbol` must not be {symbol!r}")
    assert REFUSED[symbol] in message
    assert message.endswith(f"Choose another name, e.g. 'g_model'. Received: symbol={symbol!r}")


@pytest.mark.parametrize("namespace, part", [("tflite", "tflite"), ("app::std", "std"),
                                             ("kTensorArenaSize", "kTensorArenaSize")])
def test_reserved_names_are_refused_as_namespaces(namespace, part):
    with pytest.raises(ValueError, match=re.escape(f"must not use the name {part!r}")):
        c_array.namespace_parts(namespace)


def test_cli_refuses_a_reserved_symbol(tmp_path, transpose_5d):
    model = tmp_path / "m.tflite"
    model.write_bytes(transpose_5d)
    proc = tfedge("export-c", str(model), f"--output_dir={tmp_path / 'out'}", "--noarena",
                  "--symbol=kTensorArenaSize")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert ("`symbol` must not be 'kTensorArenaSize': model_settings.h declares it"
            in proc.stderr), proc.stderr
    assert not (tmp_path / "out").exists()


def _stubs():
    """tests/converters/test_op_resolver.py's stub TFLM tree (headers + interpreter)."""
    path = pathlib.Path(__file__).parents[1] / "converters" / "test_op_resolver.py"
    spec = importlib.util.spec_from_file_location("_tfedge_op_resolver_stubs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stub_tflm(tmp_path_factory):
    stubs = _stubs()
    root = tmp_path_factory.mktemp("stub") / "tflm"
    stubs.write_stub_tflm(root)
    return root, stubs.TFLM_FLAGS


def compile_export(folder, stub_tflm, fw):
    """Writes `fw`'s files into `folder` and runs g++ -fsyntax-only (TFLM's warning flags,
    -Werror, strict C++11 so trigraphs count) on model_data.cc and main.cc."""
    root, tflm_flags = stub_tflm
    folder.mkdir()
    for name, text in fw.files.items():
        (folder / name).write_text(text)
    return subprocess.run(["g++", *tflm_flags, "-fsyntax-only", "-I", str(root),
                           "model_data.cc", "main.cc"], cwd=folder, capture_output=True,
                          text=True, timeout=120)


def small_model(input_name="in", output_name="out"):
    """One int8 ADD (no lint blocker), with the given tensor names."""
    return build_model([("ADD", [0, 0], [1])],
                       [(input_name, "INT8", (1, 4), None, (0.25, 3)),
                        (output_name, "INT8", (1, 4), None, (0.5, -1))])


@needs_gxx
@pytest.mark.parametrize("symbol, namespace", [("g_model", None), ("kModel", None),
                                               ("g_kws_model", "app::ml"), ("Model", None)])
def test_accepted_symbols_compile(tmp_path, stub_tflm, fake_arena, symbol, namespace):
    fw = firmware.export(small_model(), symbol=symbol, namespace=namespace, template=True,
                         int8_kernels=True)
    proc = compile_export(tmp_path / "app", stub_tflm, fw)
    assert proc.returncode == 0, proc.stderr


@needs_gxx
@pytest.mark.parametrize("symbol, error", [
    ("main", "main"), ("kTensorArenaSize", "kTensorArenaSize"), ("OpResolver", "OpResolver"),
    ("tensor_arena", "tensor_arena"), ("model", "model")])
def test_refused_symbols_would_not_compile(tmp_path, stub_tflm, fake_arena, monkeypatch, symbol,
                                           error):
    """What the check prevents: the same export with the check switched off breaks the build."""
    monkeypatch.setattr(c_array, "check_symbol", c_array.check_identifier)
    fw = firmware.export(small_model(), symbol=symbol, template=True)
    proc = compile_export(tmp_path / "app", stub_tflm, fw)
    assert proc.returncode != 0
    assert re.search(rf"\b{error}\b", proc.stderr), proc.stderr


def global_names(cpp):
    """The identifiers C++ text declares or uses unqualified: comments, string literals and
    `${...}` placeholders removed, members (after `.` or `->`) and qualified names (after `::`)
    left out."""
    cpp = re.sub(r"//[^\n]*|\$\{\w+\}", " ", cpp)
    cpp = re.sub(r'"(\\.|[^"\\])*"', " ", cpp)
    cpp = re.sub(r"^\s*#\s*(include|ifndef|define|endif)\b[^\n]*", " ", cpp, flags=re.M)
    return {m.group(2) for m in re.finditer(r"(\.|->|::)?\s*\b([A-Za-z_]\w*)", cpp)
            if not m.group(1)}


def test_every_name_the_generated_files_and_main_cc_use_is_reserved(fake_arena):
    """RESERVED_NAMES is a table kept by hand: this fails when main.cc or a generator starts
    using a name the table lacks."""
    fw = firmware.export(build_model(
        [("ADD", [0, 0], [1]), ("ADD", [1, 1], [2])],
        [("a", "INT8", (1, 4), None, Q), ("b", "INT8", (1, 4), None, Q),
         ("c", "INT8", (1, 4), None, Q)], outputs=[1, 2]),
        template=True, int8_kernels=True, ram_budget=1 << 20, namespace="app::ml")
    used = set()
    for name in ("main.cc", "op_resolver.h", "model_settings.h", "model_data.h"):
        used |= global_names(fw.files[name])
    ours = ("g_model", "g_model_len", "app", "ml")
    missing = sorted(n for n in used if c_array.reserved_by(n) is None
                     and n not in c_array._RESERVED and n not in ours)
    assert missing == []
    assert {"main", "kInput0Dims", "kOutput1Scale", "kTensorArenaBudget", "OpResolver",
            "tensor_arena", "MicroPrintf", "tflite", "uint8_t"} <= used  # the scan sees them


# --- 7g. Model strings reach C only through c_text.comment.

EVIL = 'x */ #include "evil.h" /*\n#define main evil ??/'


@needs_gxx
def test_hostile_tensor_names_stay_inside_their_comments(tmp_path, stub_tflm, fake_arena):
    model = small_model(input_name=EVIL, output_name=EVIL + "\r\n// \\")
    fw = firmware.export(model, template=True, int8_kernels=True)
    settings = fw.files["model_settings.h"]
    # Golden: the name escaped byte for byte, on the comment's one line.
    assert ('// Input 0 "x \\x2a\\x2f #include \\x22evil.h\\x22 \\x2f\\x2a\\x0a#define main '
            'evil \\x3f\\x3f\\x2f": int8 [1, 4]; real value = scale * (q - zero_point).\n'
            in settings)
    assert f'// Output 0 "{c_text.comment(EVIL + chr(13) + chr(10) + "// " + chr(92))}": ' \
           in settings
    for name in ("model_settings.h", "op_resolver.h"):
        text = fw.files[name]
        assert "/*" not in text and "*/" not in text and "??" not in text, name
        assert "evil.h\"" not in text and "\\\n" not in text and "\r" not in text, name
        for line in text.splitlines():
            # Outside comments, only the generated preprocessor lines start with '#'.
            if line.startswith("#"):
                assert re.fullmatch(r'#(ifndef|define|endif|include) [\w."/ ]+', line), line
            # Every comment is a // comment of printable ASCII on its own line.
            assert re.fullmatch(r"[ -~]*", line), line
    # The compiler agrees: main is still main, no evil.h is included, the trigraph ??/ (a
    # backslash under strict C++11) continues no comment.
    proc = compile_export(tmp_path / "app", stub_tflm, fw)
    assert proc.returncode == 0, proc.stderr


# --- 7f. A multi-file save is all or nothing.


def snapshot(folder):
    """{name: (bytes, mode)} of everything in `folder`, hidden files included (a folder's
    bytes: the names in it)."""
    return {p.name: (sorted(os.listdir(p)) if p.is_dir() else p.read_bytes(), p.stat().st_mode)
            for p in pathlib.Path(folder).iterdir()}


@pytest.fixture
def old_folder(tmp_path):
    folder = tmp_path / "firmware"
    folder.mkdir()
    (folder / "model_data.cc").write_bytes(b"old cc")
    (folder / "op_resolver.h").write_bytes(b"old resolver")
    (folder / "notes.txt").write_bytes(b"the user's own file")
    return folder


def disk_full_after(monkeypatch, count):
    """_io's file writes fail with ENOSPC after `count` files, as on a full disk."""
    real = _io._write_file
    written = []

    def write(path, payload, mode):
        if len(written) >= count:
            with open(path, "wb") as f:  # a partial file, as a full disk leaves one
                f.write(payload[:3])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        written.append(path)
        real(path, payload, mode)

    monkeypatch.setattr(_io, "_write_file", write)
    return written


def test_a_full_disk_leaves_the_folder_as_it_was(old_folder, monkeypatch, transpose_5d):
    before = snapshot(old_folder)
    fw = firmware.export(small_model(), arena=False, template=True)
    written = disk_full_after(monkeypatch, 1)
    with pytest.raises(OSError) as info:
        fw.save(old_folder)
    assert info.value.errno == errno.ENOSPC and len(written) == 1
    assert snapshot(old_folder) == before  # old bytes intact, no temporary file left


def test_a_failing_rename_puts_the_old_files_back(old_folder, monkeypatch):
    before = snapshot(old_folder)
    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.EIO, "I/O error", dst)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="I/O error"):
        _io.write_files_atomic(old_folder, {"model_data.cc": "new", "model_data.h": b"new",
                                            "op_resolver.h": "new", "main.cc": "new"})
    monkeypatch.setattr(os, "replace", real)
    assert snapshot(old_folder) == before


def test_a_failed_save_into_a_new_folder_leaves_no_folder(tmp_path, monkeypatch):
    disk_full_after(monkeypatch, 0)
    with pytest.raises(OSError):
        _io.write_files_atomic(tmp_path / "new", {"a.h": "x"})
    assert os.listdir(tmp_path) == []


def test_a_folder_in_the_way_is_named_before_anything_is_written(old_folder):
    (old_folder / "model_data.h").mkdir()
    before = snapshot(old_folder)
    with pytest.raises(IsADirectoryError, match="a folder of that name is in the way"):
        _io.write_files_atomic(old_folder, {"model_data.cc": "new", "model_data.h": "new"})
    assert snapshot(old_folder) == before


def test_a_successful_save_replaces_every_file_and_keeps_the_others(old_folder):
    paths = _io.write_files_atomic(old_folder, {"model_data.cc": "new cc",
                                                "model_data.h": b"\x00new h"})
    assert paths == {"model_data.cc": str(old_folder / "model_data.cc"),
                     "model_data.h": str(old_folder / "model_data.h")}
    assert {n: d for n, (d, _) in snapshot(old_folder).items()} == {
        "model_data.cc": b"new cc", "model_data.h": b"\x00new h",
        "op_resolver.h": b"old resolver", "notes.txt": b"the user's own file"}
    with pytest.raises(ValueError, match="plain names without folders"):
        _io.write_files_atomic(old_folder, {"../escape.h": "x"})
    assert not (old_folder.parent / "escape.h").exists()
