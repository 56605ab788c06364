import json
import os

import numpy as np
import pytest

import tfedge
from tfedge import pipeline
from tfedge.converters import c_array, tflite_reader

pytestmark = pytest.mark.integration


def quantized_content(tflite_bytes):
    """Weights, ops and quantization parameters; tensor names may differ between conversions."""
    model = tflite_reader.read_tflite(tflite_bytes)
    main = model.subgraphs[0]
    return ([model.buffer_bytes(i) for i in range(len(model.buffers))],
            [(op.name, op.inputs, op.outputs) for op in main.operators],
            [(t.type_name, t.shape, t.quantization) for t in main.tensors])


@pytest.fixture(scope="module")
def result(trained_model, digits):
    return tfedge.compress(trained_model, train_data=(digits.x_train, digits.y_train),
                           val_data=(digits.x_val, digits.y_val), calibration_samples=50)


def test_metrics(result, trained_model, digits):
    m = result.metrics
    assert m["params"] == trained_model.count_params()
    assert m["tflite_bytes"] == len(result.tflite)
    assert m["val_samples"] == len(digits.y_val) == 360
    assert 0.0 <= m["int8_accuracy"] <= 1.0 and 0.0 <= m["float_accuracy"] <= 1.0
    # Float accuracy is the Keras model's own on the same data.
    predicted = trained_model.predict(digits.x_val, verbose=0).argmax(-1)
    assert m["float_accuracy"] == pytest.approx(np.mean(predicted == digits.y_val))
    assert m["accuracy_drop_points"] == pytest.approx(
        100 * (m["float_accuracy"] - m["int8_accuracy"]), abs=0.01)
    assert m["arena_bytes"] > 0 and m["arena_bytes"] % 16 == 0
    assert m["tflm_exact"] is True and m["tflm_inputs_compared"] == 20
    assert m["ops"]["CONV_2D"] == 35 and m["ops"]["DEPTHWISE_CONV_2D"] == 17


def test_int8_accuracy_tracks_float(result):
    # PTQ of a MobileNetV2 costs little; a large gap means broken input quantization.
    assert abs(result.metrics["accuracy_drop_points"]) <= 5.0


def test_val_data_as_dataset_gives_the_same_accuracy(result, trained_model, digits):
    again = pipeline.compress(trained_model, representative_data=digits.representative(50),
                              val_data=digits.val(batch_size=64), calibration_samples=50,
                              tflm_check=False)
    # The same 50 calibration images (the first of the training split), so the same model.
    assert quantized_content(again.tflite) == quantized_content(result.tflite)
    assert again.metrics["int8_accuracy"] == result.metrics["int8_accuracy"]
    assert "arena_bytes" not in again.metrics


def test_save_writes_five_artifacts_that_agree(result, tmp_path):
    out = tmp_path / "nested" / "out"
    paths = result.save(out, symbol="g_digits")
    assert sorted(os.listdir(out)) == sorted(pipeline.ARTIFACTS)
    tflite_bytes = (out / "model.tflite").read_bytes()
    assert tflite_bytes == result.tflite
    cc = (out / "model_data.cc").read_text()
    assert c_array.parse_c_source(cc, symbol="g_digits") == tflite_bytes
    assert "extern const unsigned char g_digits[];" in (out / "model_data.h").read_text()
    assert json.loads((out / "report.json").read_text()) == result.metrics
    md = (out / "report.md").read_text()
    assert "| TFLM arena bytes |" in md and f"{result.metrics['arena_bytes']:,}" in md
    assert set(paths) == set(pipeline.ARTIFACTS)


def test_save_replaces_files_and_leaves_no_temporaries(result, tmp_path):
    (tmp_path / "model.tflite").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("user file")
    result.save(tmp_path)
    assert (tmp_path / "model.tflite").read_bytes() == result.tflite
    assert (tmp_path / "keep.txt").read_text() == "user file"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_save_refuses_a_file_as_directory_and_a_bad_symbol(result, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        result.save(target)
    with pytest.raises(ValueError, match="`symbol` must be a C identifier"):
        result.save(tmp_path / "d", symbol="9lives")
    assert not (tmp_path / "d").exists()


def test_bad_input_is_refused_before_converting(trained_model, digits):
    with pytest.raises(ValueError, match="needs calibration images"):
        tfedge.compress(trained_model)
    with pytest.raises(ValueError, match=r"shaped \(8, 8, 1\) but the model takes \(32, 32, 1\)"):
        tfedge.compress(trained_model, train_data=digits.train(),
                        val_data=(np.zeros((4, 8, 8, 1)), np.zeros(4)))
    with pytest.raises(ValueError, match="labels range over 0..12 but the model has 10 outputs"):
        tfedge.compress(trained_model, train_data=digits.train(),
                        val_data=(digits.x_val[:3], np.array([0, 5, 12])))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        tfedge.compress(trained_model, train_data=digits.train(),
                        val_data=(digits.x_val[:3], np.array([0, 5])))
    with pytest.raises(ValueError, match="`quantize` must be one of"):
        tfedge.compress(trained_model, train_data=digits.train(), quantize="qat8")
    with pytest.raises(TypeError, match="tf_keras Model"):
        tfedge.compress(object(), train_data=digits.train())


def test_saved_files_get_ordinary_permissions(result, tmp_path):
    old = os.umask(0o022)
    try:
        result.save(tmp_path)
    finally:
        os.umask(old)
    assert {oct(os.stat(tmp_path / n).st_mode & 0o777) for n in pipeline.ARTIFACTS} == {"0o644"}
