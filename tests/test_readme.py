"""The README's Python example runs as written (with one epoch instead of thirty)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def test_readme_shows_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text


def test_python_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    (example,) = re.findall(r"## From Python\n\n```python\n(.*?)```", text, re.S)
    assert len(example.strip().splitlines()) == 5
    code = example.replace("epochs=30", "epochs=1")
    code += ("\nimport json, os; assert sorted(os.listdir('out')) == ['accuracy_vs_size.png', "
             "'model.tflite', 'model_data.cc', 'model_data.h', 'model_settings.h', "
             "'op_resolver.h', 'report.json', 'report.md']"
             "\nm = json.load(open('out/report.json'))"
             "\nassert m['tflm_exact'] and m['arena_bytes'] > 0 and m['int8_accuracy'] > 0\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
