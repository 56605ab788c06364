"""`import tfedge` must give tfmot a Keras 2 world, whichever of TF and tfedge came first."""

import os
import subprocess
import sys
import textwrap

import pytest


def run_python(code):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()


def test_import_is_light_and_sets_legacy_keras():
    out = run_python("""
        import os, sys
        import tfedge
        print(os.environ["TF_USE_LEGACY_KERAS"], "tensorflow" in sys.modules)
    """)
    assert out == ["1", "False"]


PRUNE_AND_QUANTIZE = """
    from tfedge import models
    from tfedge._keras import keras, tfmot
    m = models.mobilenet_v2((32, 32, 1), num_classes=10, width=0.35)
    pruned = tfmot().sparsity.keras.prune_low_magnitude(m)
    qat = tfmot().quantization.keras.quantize_model(m)
    print(isinstance(m, keras.Model), keras.__version__.split(".")[0],
          len(pruned.layers) == len(m.layers), qat.count_params() > m.count_params())
"""


@pytest.mark.parametrize("first", ["import tfedge", "import tensorflow as tf; tf.keras.layers"])
def test_tfmot_wraps_factory_models_whatever_was_imported_first(first):
    out = run_python(first + "\n" + textwrap.dedent(PRUNE_AND_QUANTIZE))
    assert out == ["True", "2", "True", "True"]
