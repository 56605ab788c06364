import json
import os

import numpy as np
import pytest

import tfedge
from tfedge import pipeline, profiling, report
from tfedge._keras import keras
from tfedge.converters import c_array, tflite, tflite_reader

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


def test_save_writes_the_artifacts_and_they_agree(result, tmp_path):
    out = tmp_path / "nested" / "out"
    paths = result.save(out, symbol="g_digits")
    assert sorted(os.listdir(out)) == sorted(pipeline.ARTIFACTS)
    tflite_bytes = (out / "model.tflite").read_bytes()
    assert tflite_bytes == result.tflite
    cc = (out / "model_data.cc").read_text()
    assert c_array.parse_c_source(cc, symbol="g_digits") == tflite_bytes
    assert "extern const unsigned char g_digits[];" in (out / "model_data.h").read_text()
    from tfedge.converters import tflm

    settings = (out / "model_settings.h").read_text()
    recommended = tflm.recommended_arena_size(result.metrics["arena_bytes"])
    assert f"constexpr int kTensorArenaSize = {recommended};" in settings
    assert f"constexpr int kTensorArenaMinimum = {result.metrics['arena_bytes']};" in settings
    resolver = (out / "op_resolver.h").read_text()
    assert "tflite::MicroMutableOpResolver<6>" in resolver
    assert "resolver.AddConv2D(tflite::Register_CONV_2D_INT8())" in resolver
    assert json.loads((out / "report.json").read_text()) == result.metrics
    md = (out / "report.md").read_text()
    assert "| TFLM arena bytes |" in md and f"{result.metrics['arena_bytes']:,}" in md
    assert f"![accuracy against size]({report.CHART})" in md
    png = (out / report.CHART).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert png == report.chart_png(result.metrics)  # deterministic bytes
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
    with pytest.raises(TypeError, match="needs a Keras model"):
        tfedge.compress(object(), train_data=digits.train())


def test_saved_files_get_ordinary_permissions(result, tmp_path):
    old = os.umask(0o022)
    try:
        result.save(tmp_path)
    finally:
        os.umask(old)
    assert {oct(os.stat(tmp_path / n).st_mode & 0o777) for n in pipeline.ARTIFACTS} == {"0o644"}


# -- The chained stages.

def small(digits, n=256):
    return (digits.x_train[:n], digits.y_train[:n]), (digits.x_val[:120], digits.y_val[:120])


@pytest.fixture(scope="module")
def chained(trained_model, digits):
    """prune 50% -> QAT (pruning-preserving), distilled from a teacher, one epoch each."""
    teacher = tfedge.models.mobilenet_v2((32, 32, 1), num_classes=10, width=0.5, name="teacher")
    before = [w.copy() for w in trained_model.get_weights()]
    train, val = small(digits)
    result = tfedge.compress(trained_model, train_data=train, val_data=val,
                             prune=tfedge.Prune(0.5), quantize="qat", teacher=teacher,
                             epochs=1, batch_size=32, tflm_inputs=5)
    return result, before, teacher, val


def test_chain_runs_every_stage_and_measures_it(chained, trained_model):
    result, before, teacher, val = chained
    m = result.metrics
    for key in ("float_accuracy", "pruned_accuracy", "qat_accuracy", "int8_accuracy",
                "teacher_accuracy", "sparsity", "sparsity_after_qat", "params", "macs",
                "tflite_bytes", "tflite_gzip_bytes", "original_tflite_bytes", "arena_bytes"):
        assert m[key] is not None, key
    assert m["quantize"] == "qat" and m["mode"] == "int8" and m["teacher"] == "teacher"
    assert [s["stage"] for s in m["stages"]] == ["original (float32)", "pruned (float32)",
                                               "final (int8)"]
    assert m["sparsity"] == pytest.approx(0.5, abs=0.01)
    # Pruning-preserving QAT: not one zero of the pruned layers came back.
    assert m["sparsity_after_qat"] == m["sparsity"]
    assert m["params"] == trained_model.count_params()
    assert m["macs"] == tfedge.profile(trained_model).total_macs
    assert m["tflm_exact"] is True
    tflite.check_full_int8(result.tflite)
    assert m["int8_accuracy"] == pipeline.tflite_accuracy(result.tflite, *val)
    # int8 and half the weights zero: both the raw and the gzipped file shrink.
    assert m["tflite_bytes"] < m["original_tflite_bytes"] / 2
    assert m["tflite_gzip_bytes"] < m["original_gzip_bytes"] / 4
    # The caller's models are as they were.
    for a, b in zip(before, trained_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert teacher.trainable


def test_chain_result_model_is_the_qat_model_and_reloads(chained, tmp_path):
    result = chained[0]
    assert any(type(l).__name__.startswith("QuantizeWrapper") for l in result.model.layers)
    x = chained[3][0][:4]
    for path in (str(tmp_path / "qat.h5"), str(tmp_path / "saved_model")):
        result.model.save(path)
        loaded = tfedge.load_model(path)
        np.testing.assert_allclose(loaded(x).numpy(), result.model(x).numpy(), atol=1e-6)


def test_chain_report_has_stages_sparsity_and_chart(chained, tmp_path):
    result = chained[0]
    result.save(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "## Stages" in md and "| pruned (float32) |" in md
    assert "## Sparsity per pruned layer" in md
    assert md.count("| 50.") >= len(result.metrics["sparsity_per_layer"]) - 2
    assert (tmp_path / report.CHART).read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def channel_pruned(trained_model, digits):
    """Channels removed in two rounds down to half the MACs, each round distilled from the
    unpruned model, then QAT on the smaller model."""
    before = [w.copy() for w in trained_model.get_weights()]
    train, val = small(digits)
    result = tfedge.compress(trained_model, train_data=train, val_data=val,
                             prune=tfedge.Channels(0.5, steps=2), quantize="qat", epochs=1,
                             tflm_inputs=3, calibration_samples=50, run_eagerly=True)
    return result, before


def test_channel_pruning_makes_the_model_smaller(channel_pruned, trained_model):
    result, before = channel_pruned
    m = result.metrics
    assert m["pruned_macs"] <= 0.5 * m["macs"] and m["macs_removed"] >= 0.5
    assert m["pruned_params"] < m["params"]
    assert m["channel_teacher"] == "the unpruned model" and m["channel_steps"] == 2
    assert [s["stage"] for s in m["stages"]] == ["original (float32)",
                                               "channel-pruned (float32)", "final (int8)"]
    dense = tflite.to_int8(trained_model, digits_images(), num_samples=50)
    assert m["tflite_bytes"] < 0.8 * len(dense)
    assert "sparsity" not in m and "sparsity_after_qat" not in m
    assert any(type(l).__name__.startswith("QuantizeWrapper") for l in result.model.layers)
    tflite.check_full_int8(result.tflite)
    assert m["tflm_exact"] is True
    layers_changed = {r["layer"]: (r["before"], r["after"]) for r in m["channels_per_layer"]}
    assert len(layers_changed) > 10
    for name, (was, now) in layers_changed.items():
        assert trained_model.get_layer(name).output_shape[-1] == was
        assert result.model.get_layer(f"quant_{name}").output_shape[-1] == now < was
    for a, b in zip(before, trained_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def digits_images():
    from tfedge import data

    return data.digits((32, 32, 1)).x_train[:50]


def test_channel_pruning_report(channel_pruned, tmp_path):
    result = channel_pruned[0]
    result.save(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| MACs removed |" in md and "## Channels per pruned layer" in md
    first = result.metrics["channels_per_layer"][0]
    assert f"| {first['layer']} | {first['before']} | {first['after']} |" in md


def test_distillation_alone_is_a_stage(trained_model, digits):
    train, val = small(digits, 128)
    result = tfedge.compress(trained_model, train_data=train, val_data=val,
                             teacher=trained_model, epochs=1, tflm_check=False,
                             calibration_samples=20, run_eagerly=True)
    m = result.metrics
    assert [s["stage"] for s in m["stages"]] == ["original (float32)", "distilled (float32)",
                                               "final (int8)"]
    assert 0 <= m["distilled_accuracy"] <= 1 and m["calibration_samples"] == 20
    assert not result.model.get_layer(index=1) is trained_model.get_layer(index=1)


def test_no_data_gives_dynamic_range_and_a_warning(trained_model):
    with pytest.warns(UserWarning, match="Full int8 needs representative data"):
        result = tfedge.compress(trained_model)
    assert result.metrics["mode"] == "dynamic"
    assert tflite.quantization_mode(result.tflite) == "dynamic"
    assert "arena_bytes" not in result.metrics and "int8_accuracy" not in result.metrics
    assert result.metrics["tflite_bytes"] < result.metrics["original_tflite_bytes"] / 2.5


def test_int16x8_mode(trained_model, digits):
    import warnings

    train, val = small(digits)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = tfedge.compress(trained_model, train_data=train, val_data=val,
                                 quantize="int16x8", calibration_samples=50, tflm_inputs=3)
    m = result.metrics
    assert tflite.quantization_mode(result.tflite) == "int16x8"
    assert abs(m["float_accuracy"] - m["int16x8_accuracy"]) <= 0.02
    # TFLM's int16 FULLY_CONNECTED rounds with a 16-bit multiplier (see to_int16x8): whether an
    # output lands on a rounding boundary depends on the trained weights. Off by a step at most,
    # and then the user is told.
    assert m["tflm_max_abs_diff"] <= 2
    if not m["tflm_exact"]:
        assert any("round differently" in str(w.message) for w in caught)


def test_target_budget(trained_model, digits):
    train, val = small(digits, 64)
    tiny = pipeline.Target("tiny", flash_bytes=100_000, ram_bytes=10_000)
    with pytest.warns(UserWarning, match="does not fit tiny"):
        result = tfedge.compress(trained_model, train_data=train, target=tiny,
                                 calibration_samples=20, tflm_inputs=2)
    assert result.metrics["fits_target"] is False
    assert result.metrics["target_ram_bytes"] == 10_000
    with pytest.raises(ValueError, match="runs full-integer models only"):
        tfedge.compress(trained_model, quantize="float16", target="cortex-m4")
    with pytest.raises(ValueError, match="`target` must be one of"):
        tfedge.compress(trained_model, train_data=train, target="z80")


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(10, activation="softmax")

    def call(self, x):
        return self.dense(keras.layers.Flatten()(x))


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if compress gets as far as measuring the model."""
    def fail(*args, **kwargs):
        raise AssertionError("compress started working before refusing its input")

    monkeypatch.setattr(profiling, "profile", fail)


def nested_model():
    inner = keras.Sequential([keras.layers.Conv2D(4, 3, input_shape=(32, 32, 1)),
                              keras.layers.GlobalAveragePooling2D()], name="backbone")
    return keras.Sequential([inner, keras.layers.Dense(10, activation="softmax")])


@pytest.mark.parametrize("call, error, message", [
    (lambda m, d: tfedge.compress(Subclassed(), train_data=d), TypeError,
     "subclassed tf_keras model. Rebuild it with the Functional API"),
    (lambda m, d: tfedge.compress(nested_model(), train_data=d, prune=0.5), TypeError,
     "nested models \\(backbone\\)"),
    (lambda m, d: tfedge.compress(m, train_data=(d[0][:, :16], d[1]), prune=0.5), ValueError,
     r"`train_data` images are shaped \(16, 32, 1\)"),
    (lambda m, d: tfedge.compress(m, train_data=(d[0], d[1] + 5), quantize="qat"), ValueError,
     "`train_data` labels range over 5..14 but the model has 10 outputs"),
    (lambda m, d: tfedge.compress(m, train_data=(d[0], np.eye(12)[d[1]])), ValueError,
     "labels are one-hot rows of 12 classes but the model has 10 outputs"),
    (lambda m, d: tfedge.compress(m, train_data=(d[0], d[1] + 0.5)), ValueError,
     "labels must be class indices"),
    (lambda m, d: tfedge.compress(m, representative_data=d[0], prune=0.5), ValueError,
     "pruning fine-tune the model: pass `train_data`"),
    (lambda m, d: tfedge.compress(m, quantize="qat"), ValueError, "QAT fine-tune the model"),
    (lambda m, d: tfedge.compress(m, quantize="int16x8"), ValueError,
     "needs calibration images"),
    (lambda m, d: tfedge.compress(m, train_data=d, prune=1.5), ValueError,
     "`sparsity` must be a number in \\(0, 1\\)"),
    (lambda m, d: tfedge.compress(m, train_data=d, prune="half"), TypeError,
     "`prune` must be a tfedge.Prune"),
    (lambda m, d: tfedge.compress(m, train_data=d, prune=0.5, epochs=0), ValueError,
     "`epochs` must be an integer >= 1"),
    (lambda m, d: tfedge.compress(m, train_data=d, prune=0.5, epochs={"pruning": 3}), ValueError,
     r"`epochs` names unknown stages \['pruning'\]"),
    (lambda m, d: tfedge.compress(m, train_data=d, distill={"alpha": 0.5}), ValueError,
     "without a `teacher`"),
    (lambda m, d: tfedge.compress(
        m, train_data=d, teacher=keras.Sequential([keras.layers.Flatten(input_shape=(32, 32, 1)),
                                                   keras.layers.Dense(3)])),
     ValueError, "the teacher has 3 outputs but the model 10"),
    (lambda m, d: tfedge.compress(m, train_data=d, calibration_batches=0), ValueError,
     "`calibration_batches` must be an integer >= 1"),
    (lambda m, d: tfedge.compress(m, train_data=d, prune=tfedge.Channels(protect=["nope"])),
     ValueError, "`protect` names layers the model does not have"),
    (lambda m, d: tfedge.compress(m, prune=tfedge.Channels()), ValueError,
     "pruning fine-tune the model: pass `train_data`"),
])
def test_bad_input_is_refused_before_any_work(trained_model, digits, no_work, call, error,
                                              message):
    with pytest.raises(error, match=message):
        call(trained_model, (digits.x_train[:64], digits.y_train[:64]))


def keras3_mobilenet_v3():
    import keras as keras3

    keras3.utils.set_random_seed(0)
    return keras3.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3),
                                                classes=10, minimalistic=False)


def tf_keras_mobilenet_v3():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), classes=10)


@pytest.mark.parametrize("build", [keras3_mobilenet_v3, tf_keras_mobilenet_v3])
def test_keras_applications_mobilenet_v3_goes_through_qat(build):
    # Keras 3's model is rebuilt as tf_keras; tf_keras' own is built from TF ops (x + 3, ...)
    # that tfmot refuses, and is rebuilt with tfedge's HardSwish/HardSigmoid.
    from tfedge import data

    rgb = data.digits((32, 32, 3))
    model = build()
    result = tfedge.compress(model, train_data=(rgb.x_train[:128], rgb.y_train[:128]),
                             val_data=(rgb.x_val[:64], rgb.y_val[:64]), quantize="qat",
                             epochs=1, tflm_inputs=2, run_eagerly=True)
    tflite.check_full_int8(result.tflite)
    assert result.metrics["ops"]["HARD_SWISH"] > 0
    assert result.metrics["tflm_exact"] is True
    assert any(type(l).__name__.startswith("QuantizeWrapper") for l in result.model.layers)
