import numpy as np
import pytest

from tfedge.converters import tflite, tflite_reader

pytestmark = pytest.mark.integration


def test_int8_model_has_int8_io_with_batch_one(int8_tflite):
    model = tflite_reader.read_tflite(int8_tflite)
    main = model.subgraphs[0]
    (inp,), (out,) = main.inputs, main.outputs
    assert main.tensors[inp].type_name == "INT8"
    assert main.tensors[inp].shape == (1, 32, 32, 1)
    assert main.tensors[out].type_name == "INT8"
    assert main.tensors[out].shape == (1, 10)
    # A fixed batch keeps the ops of a dynamic batch out of the graph.
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(model.op_names())


def test_no_float_tensor_anywhere(int8_tflite):
    model = tflite_reader.read_tflite(int8_tflite)
    assert tflite.float_ops(int8_tflite) == []
    assert not [t.name for t in model.subgraphs[0].tensors if t.is_float]


def test_weights_are_quantized_per_channel(int8_tflite):
    model = tflite_reader.read_tflite(int8_tflite)
    main = model.subgraphs[0]
    conv = next(op for op in main.operators if op.name == "CONV_2D")
    weights = main.tensors[conv.inputs[1]]
    assert weights.type_name == "INT8"
    assert len(weights.quantization.scale) == weights.shape[0] > 1


def test_float_model_is_refused_with_every_float_op_listed(float_tflite):
    found = tflite.float_ops(float_tflite)
    ops = tflite_reader.read_tflite(float_tflite).subgraphs[0].operators
    assert len(found) == len(ops)
    with pytest.raises(tflite.ConversionError) as info:
        tflite.check_full_int8(float_tflite)
    message = str(info.value)
    assert "CONV_2D #0" in message and "FLOAT32" in message
    assert "model input" in message and "not INT8" in message


def test_representative_data_forms(digits):
    shape = digits.input_shape
    from_array = list(tflite.representative_samples(digits.x_train[:7], shape, 5))
    from_pairs = list(tflite.representative_samples(digits.train(batch_size=4), shape, 5))
    from_callable = list(tflite.representative_samples(lambda: digits.representative(5), shape, 9))
    for samples in (from_array, from_callable):
        assert len(samples) == 5
        np.testing.assert_array_equal(samples[3][0], digits.x_train[3:4])
    assert len(from_pairs) == 5 and from_pairs[0][0].shape == (1,) + shape


def test_representative_data_of_the_wrong_shape_is_refused(digits):
    with pytest.raises(ValueError, match=r"shaped \(32, 32, 1\).*\(4, 28, 28, 1\)"):
        list(tflite.representative_samples(np.zeros((4, 28, 28, 1)), (32, 32, 1), 10))
    with pytest.raises(ValueError, match="empty"):
        list(tflite.representative_samples([], (32, 32, 1), 10))


def test_keras3_and_non_models_are_refused(digits):
    with pytest.raises(TypeError, match="must be a tf_keras Model. Received: builtins.str"):
        tflite.to_int8("model.h5", digits.x_train)


def test_input_quantization_comes_from_calibration(int8_tflite):
    # Images in [0, 1] calibrate the input to scale 1/255 and zero point -128.
    main = tflite_reader.read_tflite(int8_tflite).subgraphs[0]
    q = main.tensors[main.inputs[0]].quantization
    assert q.zero_point == (-128,)
    assert q.scale[0] == pytest.approx(1 / 255, rel=1e-3)


def test_a_collapsed_softmax_range_is_refused_before_any_interpreter_aborts():
    # Untrained MobileNetV2 with its initial BatchNorm statistics: the logits are nearly
    # constant on these images, so the softmax input scale comes out near 8e-9, which makes
    # TFLite's softmax kernels abort the process.
    from tfedge import models, training

    training.seed_everything(0)
    model = models.mobilenet_v2((32, 32, 1), num_classes=10, width=0.35)
    images = np.random.default_rng(0).random((16, 32, 32, 1), np.float32)
    with pytest.raises(tflite.ConversionError, match=r"SOFTMAX #\d+ input .* has scale"):
        tflite.to_int8(model, images, num_samples=16)


def test_converter_for_fixes_the_batch_and_keeps_float(float_tflite, trained_model, digits):
    main = tflite_reader.read_tflite(float_tflite).subgraphs[0]
    inp = main.tensors[main.inputs[0]]
    assert inp.shape == (1, 32, 32, 1) and inp.shape_signature in (None, (1, 32, 32, 1))
    assert inp.type_name == "FLOAT32"
    from tfedge.converters import interpreter as litert

    out = litert.invoke(litert.make_interpreter(float_tflite), [digits.x_val[:1]])[0]
    np.testing.assert_allclose(out, trained_model(digits.x_val[:1]).numpy(), atol=1e-5)


# --- TensorFlow's calibrator runs in a worker process (see tflite._calibrate_in_worker).

def test_the_calibration_worker_gives_the_bytes_of_an_in_process_conversion(
        trained_model, digits, int8_tflite, monkeypatch):
    exchanges = []
    exchange = tflite._CalibrationWorker.exchange
    monkeypatch.setattr(tflite._CalibrationWorker, "exchange",
                        lambda self, *args: exchanges.append(1) or exchange(self, *args))
    in_worker_16x8 = tflite.to_int16x8(trained_model, digits.representative(20), num_samples=20)
    assert len(exchanges) == 1  # int8_tflite, a session fixture, went through the worker too
    # Without the worker, TensorFlow's own _quantize runs in this process.
    monkeypatch.setattr(tflite, "_calibrate_in_worker", lambda *args: None)
    assert tflite.to_int8(trained_model, digits.representative(50), num_samples=50) == \
        int8_tflite
    assert tflite.to_int16x8(trained_model, digits.representative(20), num_samples=20) == \
        in_worker_16x8
    assert len(exchanges) == 1


def test_an_exception_in_the_worker_is_reported_as_in_process_and_keeps_the_worker():
    from tfedge._keras import keras, tf

    model = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(2)], name="tiny")
    wrong = [[np.zeros((1, 4), np.int32)]]  # the model takes float32

    def failure(in_worker):
        converter = tflite.converter_for(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: iter(wrong)
        if in_worker:
            tflite._calibrate_in_worker(converter, model, "int8", wrong)
        with pytest.raises(tflite.ConversionError) as info:
            tflite._convert(converter, model, "int8")
        return str(info.value)

    worker = tflite._start_calibration_worker()
    message = failure(in_worker=True)
    assert message.startswith("TFLite conversion of tiny to int8 failed: ")
    assert "INT32 but expected type FLOAT32" in message
    assert message == failure(in_worker=False)
    assert tflite._worker is worker and worker.alive()


def test_a_tensorflow_whose_converter_differs_from_2_21_is_refused_by_name():
    from types import SimpleNamespace

    from tfedge._keras import tf

    stale = SimpleNamespace(_quantize=lambda result, input_type: None,
                            target_spec=SimpleNamespace())
    with pytest.raises(tflite.ConversionError, match=(
            f"for TensorFlow 2.21, but TensorFlow {tf.__version__} differs: its _quantize takes "
            r"\('result', 'input_type'\).*lacks _experimental_calibrate_only.*target_spec lacks "
            r"_experimental_custom_op_registerers. Install .*tensorflow==2.21")):
        tflite._check_converter(stale)
