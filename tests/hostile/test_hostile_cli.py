"""Hostile and broken inputs to the `tfedge` command line: a reader that goes away (SIGPIPE),
flagfiles that are missing, binary, huge or loop, too small an input size, and two runs into
one output folder. Each ends in one line naming the problem and the fix, and no traceback."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tfedge import _io
from tfedge import cli

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def tfedge(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "tfedge", *args], capture_output=True,
                          text=True, cwd=cwd, env=ENV, timeout=timeout)


def adds_model(count, op="ADD"):
    """A `.tflite` of `count` int8 ADDs in a chain (no lint blocker), or of another op."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    model.version = 3
    model.buffers = [schema.BufferT()]
    code = schema.OperatorCodeT()
    from tfedge.converters import tflite_reader

    code.builtinCode = code.deprecatedBuiltinCode = tflite_reader.BUILTIN_OPERATORS.index(op)
    code.version = 1
    model.operatorCodes = [code]
    graph = schema.SubGraphT()
    graph.tensors = []
    for i in range(count + 1):
        tensor = schema.TensorT()
        tensor.name = f"t{i}".encode()
        tensor.type = 9  # INT8
        tensor.shape = [1, 4]
        tensor.buffer = 0
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.scale, tensor.quantization.zeroPoint = [0.5], [0]
        graph.tensors.append(tensor)
    graph.operators = []
    for i in range(count):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [i, i], [i + 1]
        graph.operators.append(op)
    graph.inputs, graph.outputs = [0], [count]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "adds.tflite"
    path.write_bytes(adds_model(3))
    return path


@pytest.fixture(scope="module")
def blocked_file(tmp_path_factory):
    """LSH_PROJECTION: an op TFLM lacks, a lint blocker (exit 1)."""
    path = tmp_path_factory.mktemp("model") / "lsh.tflite"
    path.write_bytes(adds_model(1, op="LSH_PROJECTION"))
    return path


# --- 7a. A reader that goes away ends the command quietly, with 141.


def into_a_closed_pipe(*args):
    """Runs `tfedge *args` with stdout a pipe nobody reads any more: every write fails."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "tfedge", *args], stdout=write,
                              stderr=subprocess.PIPE, text=True, env=ENV, timeout=120)
    finally:
        os.close(write)


@pytest.mark.parametrize("args", [
    ["lint", "{model}"],                      # exit 0 of its own
    ["lint", "{blocked}", "--json"],          # exit 1 of its own: a blocker
    ["export-c", "--help"],                   # help text
    ["--help"],                               # the command list
])
def test_a_closed_pipe_ends_quietly_with_141(model_file, blocked_file, args):
    proc = into_a_closed_pipe(*[a.format(model=model_file, blocked=blocked_file) for a in args])
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert "Exception ignored" not in proc.stderr


def test_the_same_commands_on_a_reader_exit_with_their_own_status(model_file, blocked_file):
    assert tfedge("lint", str(model_file)).returncode == 0
    proc = tfedge("lint", str(blocked_file), "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["ok"] is False


def test_lint_piped_into_head(tmp_path):
    # 400 ops of JSON are far more than a pipe holds, so lint is still writing when head
    # exits: the EPIPE is certain.
    model = tmp_path / "big.tflite"
    model.write_bytes(adds_model(400))
    script = (f"'{sys.executable}' -m tfedge lint '{model}' --json 2>'{tmp_path}/err' | head -1; "
              "echo \"status ${PIPESTATUS[0]}\"")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert proc.stdout.splitlines() == ["{", "status 141"]
    assert (tmp_path / "err").read_text() == ""


# --- 7b. Flagfiles are checked before absl reads them.


def write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def run_inline(args, capsys):
    """`tfedge lint ARGS` in this process (the flagfile check returns before the command's
    module is imported); (exit status, stdout, stderr lines)."""
    status = cli.run(["tfedge", "lint", *args])
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def chain(folder, count):
    """f0.flags names f1.flags, ..., f{count-1}.flags names nothing."""
    for i in range(count):
        line = f"--flagfile={folder / f'f{i + 1}.flags'}\n" if i + 1 < count else "--json\n"
        write(folder / f"f{i}.flags", line)
    return str(folder / "f0.flags")


LIMIT = cli.FLAGFILE_LIMIT
# The flagfiles every case below may name ({d}: their folder).
FLAGFILES = {
    "bin.flags": b"--json\n--target=\xff\xfe",
    "latin1.flags": b"x=caf\xe9",
    "a.flags": b"--json\n--flagfile={d}/latin1.flags\n",
    "nul.flags": b"--json\0--x",
    "self.flags": b"--flagfile={d}/self.flags",
    "b.flags": b"--flagfile={d}/c.flags\n",
    "c.flags": b"--flagfile={d}/./b.flags\n",
    "half.flags": b"#" * (LIMIT // 2 + 1),
    "twice.flags": b"--flagfile={d}/half.flags\n--flagfile={d}/half.flags\n",
}


@pytest.mark.parametrize("args, message", [
    (["--flagfile={d}/missing.flags"],
     "flagfile '{d}/missing.flags' does not exist; check the path (a relative one is taken "
     "from the current folder, "),
    (["--flagfile", "{d}"], "flagfile '{d}' is a directory; pass the flags file itself"),
    (["--flagfile={d}/bin.flags"],
     "flagfile '{d}/bin.flags' is not UTF-8 text: byte 0xff at offset 16 (line 2) cannot be "
     "decoded; save the file as UTF-8"),
    (["--flagfile={d}/a.flags"],
     "flagfile '{d}/latin1.flags' (named in '{d}/a.flags') is not UTF-8 text: byte 0xe9 at "
     "offset 5 (line 1)"),
    (["--flagfile", "{d}/nul.flags"],
     "flagfile '{d}/nul.flags' holds a NUL byte at offset 6; a flagfile is text"),
    (["--flagfile={d}/big.flags"],
     f"flagfile '{{d}}/big.flags' is {LIMIT + 1:,} bytes, more than a flagfile may hold "
     f"({LIMIT:,} bytes)"),
    (["--flagfile={d}/self.flags"],
     "flagfile loop: {d}/self.flags -> {d}/self.flags; remove the --flagfile={d}/self.flags "
     "line from '{d}/self.flags'"),
    (["--flagfile={d}/b.flags"], "flagfile loop: {d}/b.flags -> {d}/c.flags -> {d}/./b.flags"),
    (["--flagfile={d}/f0.flags"], f"is nested {cli.FLAGFILE_DEPTH + 1} deep"),
    (["--flagfile={d}/twice.flags"],
     f"the flagfiles hold more than {LIMIT:,} bytes in all (reached at '{{d}}/half.flags')"),
    ([f"--flagfile={os.devnull}"],
     f"flagfile '{os.devnull}' is not a regular file (a pipe or a device)"),
    (["--flagfile={d}/fifo"], "flagfile '{d}/fifo' is not a regular file"),
    (["--json", "--flagfile"], "--flagfile needs a file name: --flagfile=FILE"),
    (["--flagfile= "], "--flagfile= names no file; write --flagfile=FILE or drop it"),
])
def test_bad_flagfiles_are_one_line_errors(tmp_path, capsys, args, message):
    for name, data in FLAGFILES.items():
        write(tmp_path / name, data.replace(b"{d}", str(tmp_path).encode()))
    chain(tmp_path, cli.FLAGFILE_DEPTH + 1)
    with open(tmp_path / "big.flags", "wb") as f:
        f.truncate(LIMIT + 1)  # sparse: no megabyte written
    os.mkfifo(tmp_path / "fifo")  # opening it would block: it must never be opened
    status, out, err = run_inline([a.format(d=tmp_path) for a in args], capsys)
    assert status == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("tfedge lint: error: "), err
    assert message.format(d=tmp_path) in err[0], err[0]


def test_an_unreadable_flagfile(tmp_path, capsys, monkeypatch):
    # Root reads any file whatever its mode: make open() refuse, as it does for other users.
    path = write(tmp_path / "secret.flags", "--json\n")

    def refuse(name, *args, **kwargs):
        raise PermissionError(13, "Permission denied", name)

    monkeypatch.setattr(cli, "open", refuse, raising=False)
    status, out, err = run_inline([f"--flagfile={path}"], capsys)
    assert status == 2 and err == [
        f"tfedge lint: error: cannot read flagfile {path!r}: Permission denied; make it "
        "readable (chmod u+r) or pass another file"]


def test_expansion_matches_absl(tmp_path, monkeypatch):
    """What absl would have read, for every form it accepts."""
    from absl import flags

    monkeypatch.chdir(tmp_path)
    write(tmp_path / "inner.flags", "# a comment\r\n--target=generic\r\n\n   \n// another\n"
                                    "  --json  \n--flagfile=last.flags")
    write(tmp_path / "last.flags", "--output=x.json")
    write(tmp_path / "outer.flags", "--alpha=1\n--flagfile=inner.flags\n"
                                    "-flagfile=last.flags\n\u00e9t\u00e9=\u2713\n")
    args = ["m.tflite", "--flagfile=outer.flags", "--beta", "-flagfile", "inner.flags",
            "--flagfile", "last.flags", "--", "--flagfile=missing.flags"]
    expanded = cli.expand_flagfiles(args)
    assert expanded == flags.FlagValues().read_flags_from_files(args, force_gnu=False)
    assert expanded[:4] == ["m.tflite", "--alpha=1", "--target=generic", "--json"]
    # absl would hand an indented directive back for a second, unchecked reading: it is
    # expanded here, and nothing absl would read again is left before the "--".
    write(tmp_path / "indented.flags", "  --flagfile=last.flags\n")
    assert cli.expand_flagfiles(["--flagfile=indented.flags", "--", "--flagfile=x"]) == [
        "--output=x.json", "--", "--flagfile=x"]
    write(tmp_path / "bare.flags", "--flagfile\n/etc/passwd\n")
    with pytest.raises(cli.FlagfileError, match="has the line '--flagfile'; inside a flagfile "
                                                "write --flagfile=FILE"):
        cli.expand_flagfiles(["--flagfile=bare.flags"])


def test_a_good_flagfile_reaches_the_command(tmp_path, model_file):
    inner = write(tmp_path / "inner.flags", "--target=generic\n")
    outer = write(tmp_path / "outer.flags", f"--json\n--flagfile={inner}\n")
    proc = tfedge("lint", str(model_file), "--flagfile", outer)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["target"] == "generic"


@pytest.mark.parametrize("command", ["compress", "export-c", "train"])
def test_every_command_checks_its_flagfiles(tmp_path, command):
    bad = write(tmp_path / "run.flags", b"--epochs=1\n\x80\n")
    # A TensorFlow that cannot be imported: the check must come before the command's module.
    fake = tmp_path / "no_tf" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('tensorflow imported')\n")
    env = dict(ENV, PYTHONPATH=str(fake.parent))
    proc = subprocess.run([sys.executable, "-m", "tfedge", command, f"--flagfile={bad}",
                           f"--output_dir={tmp_path / 'out'}"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"tfedge {command}: error: flagfile {bad!r} is not UTF-8 text: byte "
                           "0x80 at offset 11 (line 2) cannot be decoded; save the file as "
                           "UTF-8\n")
    assert sorted(os.listdir(tmp_path)) == ["no_tf", "run.flags"]


# --- 7d. compress refuses inputs too small to learn from, and reserved symbols.


def test_compress_refuses_a_tiny_input_and_a_reserved_symbol(tmp_path):
    out = tmp_path / "out"
    proc = tfedge("compress", "--input_size=3", "--symbol=main", f"--output_dir={out}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert ("flags input_size=3, model=mobilenet_v2: --input_size=3 is below 8, the smallest "
            "input tfedge compress and tfedge train take (for mobilenet_v2 as for every "
            "model): smaller images lose what tells the classes apart, and training ends at "
            "chance. Use --input_size=8 or more (32 is the default)") in proc.stderr
    assert ("flag --symbol=main: `symbol` must not be 'main': main.cc (the template "
            "application) defines it") in proc.stderr
    assert not out.exists()


# --- 7e. One run per output folder.


def test_a_second_lock_fails_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    with _io.FolderLock(out) as first:
        assert (out / ".tfedge.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(_io.FolderLockedError) as info:
            _io.FolderLock(out).acquire()
        assert info.value.pid == os.getpid() and info.value.path == str(out)
        assert str(info.value) == (
            f"output folder {str(out)!r} is in use by process {os.getpid()} (it holds "
            f"{first.lock_file!r}); wait for that run to end, or write to another folder")
    assert not out.exists()  # the lock made the folder, and it stayed empty
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with _io.FolderLock(out):
        pass
    assert os.listdir(out) == ["keep.txt"]  # a folder that was there stays, lock file gone


def test_a_lock_left_by_a_killed_run_blocks_nothing(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tfedge import _io; "
         f"_io.FolderLock({str(out)!r}).acquire(); print('locked', flush=True); "
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(_io.FolderLockedError, match=f"process {holder.pid}"):
            _io.FolderLock(out).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert (out / ".tfedge.lock").read_text() == f"{holder.pid}\n"  # left behind ...
    with _io.FolderLock(out):  # ... and harmless
        assert (out / ".tfedge.lock").read_text() == f"{os.getpid()}\n"


def test_a_second_compress_into_the_same_folder_fails_at_once(tmp_path):
    out = tmp_path / "out"
    with _io.FolderLock(out) as lock:
        proc = tfedge("compress", "--epochs=1", f"--output_dir={out}")
        assert proc.returncode == 1
        assert proc.stderr.splitlines()[-1] == (
            f"tfedge compress: error: --output_dir={out} is in use by process {os.getpid()}, "
            f"another run writing there (it holds {lock.lock_file}); wait for it to end, or "
            "choose another --output_dir")
        assert "Traceback" not in proc.stderr and "Epoch" not in proc.stdout
        assert os.listdir(out) == [".tfedge.lock"]  # untouched: nothing trained or written
        assert (out / ".tfedge.lock").read_text() == f"{os.getpid()}\n"
