"""The wheel and the editable install both provide every tfedge module."""

import ast
import os
import pathlib
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = {"tfedge": "tfedge", "models": "tfedge/models", "converters": "tfedge/converters",
           "microcontroller": "tfedge/microcontroller"}


def source_modules():
    """Dotted names of every module in the four package folders of the source tree."""
    names = []
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = package.split("/") + list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts[-1] in ("__main__", "_tflm_worker"):  # scripts, not importable modules
                continue
            names.append(".".join(parts))
    return sorted(set(names))


IMPORT_ALL = """
import importlib, json, sys
names = json.loads(sys.argv[1])
files = {n: importlib.import_module(n).__file__ for n in names}
print(json.dumps(files))
"""


def import_all(python, cwd):
    """{module: file} for every source module, imported by `python` in `cwd`.

    Each command module of tfedge.cli defines its absl flags when imported (the `tfedge`
    script imports only the chosen one), and two of them may define a flag of the same name,
    so each is imported in a process of its own.
    """
    import json

    names = source_modules()
    commands = [n for n in names if n.startswith("tfedge.cli.")]
    files = {}
    for batch in [[n for n in names if n not in commands]] + [[c] for c in commands]:
        proc = subprocess.run([python, "-c", IMPORT_ALL, json.dumps(batch)],
                              capture_output=True, text=True, cwd=cwd, timeout=600,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        files.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert sorted(files) == names
    return files


def test_source_tree_has_the_expected_modules():
    names = source_modules()
    for name in ("tfedge", "tfedge.data", "tfedge.pipeline", "tfedge.cli", "tfedge.models",
                 "tfedge.models.mobilenet_v2", "tfedge.converters.tflite",
                 "tfedge.converters.tflm", "tfedge.microcontroller"):
        assert name in names


def test_editable_install_imports_every_module(tmp_path):
    files = import_all(sys.executable, tmp_path)
    assert pathlib.Path(files["tfedge.models"]).parent == ROOT / "models"
    assert pathlib.Path(files["tfedge.converters.tflm"]).parent == ROOT / "converters"


@pytest.mark.packaging
def test_wheel_installs_into_a_fresh_venv_and_imports_every_module(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist),
                    str(ROOT)], check=True, timeout=600)
    (wheel,) = dist.glob("tfedge-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        contents = set(zf.namelist())
        metadata = next(zf.read(n).decode() for n in contents if n.endswith("/METADATA"))
    for required in ("tfedge/models/mobilenet_v2.py", "tfedge/converters/_tflm_worker.py",
                     "tfedge/microcontroller/__init__.py", "tfedge/cli/compress.py"):
        assert required in contents
    assert not [n for n in contents if n.startswith(("models/", "converters/", "tests/"))]
    for dependency in ("tensorflow", "tf-keras", "tensorflow-model-optimization==0.8.1",
                       "ai-edge-litert", "tflite-micro", "absl-py", "numpy", "scikit-learn"):
        assert f"Requires-Dist: {dependency}" in metadata

    # A fresh environment with the wheel alone; the heavy dependencies (2 GB) come from this
    # test's environment through a .pth file instead of a second download.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
                   check=True, timeout=600)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    (pathlib.Path(site) / "zz_shared_dependencies.pth").write_text(ours + "\n")
    files = import_all(python, tmp_path)
    for name, path in files.items():
        assert path.startswith(site), (name, path)
    console = env_dir / "bin" / "tfedge"
    proc = subprocess.run([str(console), "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "compress" in proc.stdout


BARE = {"models", "converters", "microcontroller"}


def test_nothing_imports_the_top_level_folders_bare():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts or "build" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in BARE]
    assert not offenders, "import these as tfedge.<folder>: " + ", ".join(offenders)
