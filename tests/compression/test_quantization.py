import numpy as np
import pytest
from helpers import assert_message
from helpers import make_data
from helpers import make_half_sparse_mlp
from helpers import make_mlp

from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras
from keras_distill.compression.export import export_tflite
from keras_distill.compression.quantization import keras_quantize
from keras_distill.compression.quantization import quantization_aware_training
from keras_distill.compression.quantization import unquantizable_layers

legacy_only = pytest.mark.skipif(not IS_LEGACY, reason="tfmot QAT needs TF_USE_LEGACY_KERAS=1")
keras3_only = pytest.mark.skipif(IS_LEGACY, reason="Keras 3 behaviour")


def _conv_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 1))
    hidden = keras.layers.Conv1D(4, 3, activation="relu", name="conv")(inputs)
    hidden = keras.layers.GlobalAveragePooling1D(name="pool")(hidden)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden))


@legacy_only
def test_qat_with_teacher_converts_to_int8_and_runs(tmp_path, teacher):
    x, y = make_data(192, seed=7)
    student = make_half_sparse_mlp()
    seen = []
    logger = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.extend(logs))
    qat = quantization_aware_training(student, x, y, teacher=teacher, epochs=2, callbacks=[logger])
    assert "distillation_loss" in seen
    assert any(type(layer).__name__.startswith("Quantize") for layer in qat.layers)
    kernel = [
        w.numpy()
        for w in qat.get_layer("quant_student_hidden").weights
        if w.name.endswith("/kernel:0")
    ][0]
    assert int(np.sum(kernel == 0)) == 8 * 8  # sparsity preserved through QAT
    report = export_tflite(
        qat, tmp_path / "qat.tflite", quantization="int8", sample_inputs=x, int8_io=True
    )
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tmp_path / "qat.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    int8_sizes = [
        int(np.prod(t["shape"])) for t in interpreter.get_tensor_details() if t["dtype"] == np.int8
    ]
    assert 8 * 16 in int8_sizes and 16 * 3 in int8_sizes
    agreement = np.mean(report.keras_outputs.argmax(1) == report.tflite_outputs.argmax(1))
    assert report.top1_agreement == pytest.approx(agreement)
    assert agreement >= 0.9


def _norm_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 1))
    hidden = keras.layers.Conv1D(4, 3, activation="relu", name="conv")(inputs)
    hidden = keras.layers.LayerNormalization(name="norm")(hidden)
    hidden = keras.layers.GlobalAveragePooling1D(name="pool")(hidden)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden))


def test_unquantizable_layers_are_listed():
    # tfmot rejects Conv1D; keras_distill's Keras 3 scheme quantizes it, not LayerNormalization.
    model = _conv_model() if IS_LEGACY else _norm_model()
    name, cls = ("conv", "Conv1D") if IS_LEGACY else ("norm", "LayerNormalization")
    assert unquantizable_layers(model) == [(name, cls)]
    x = np.random.default_rng(0).normal(size=(32, 16, 1)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=32)
    with pytest.raises(ValueError) as info:
        quantization_aware_training(model, x, y)
    scheme = "tfmot's" if IS_LEGACY else "keras_distill's"
    assert_message(
        info,
        f"{scheme} 8-bit quantization does not support these layers: {name!r} ({cls})",
        "Pass `keep_float=True`",
        "Received: keep_float=False",
    )


def test_keep_float_quantizes_the_rest(tmp_path):
    model = _conv_model() if IS_LEGACY else _norm_model()
    x = np.random.default_rng(0).normal(size=(32, 16, 1)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=32)
    qat = quantization_aware_training(model, x, y, keep_float=True, batch_size=16)
    classes = {layer.name: type(layer).__name__ for layer in qat.layers}
    if IS_LEGACY:
        assert classes["conv"] == "Conv1D"
        assert classes["quant_logits"].startswith("QuantizeWrapper")
    else:
        assert classes["norm"] == "LayerNormalization" and classes["conv"] == "QuantizedConv1D"
    report = export_tflite(qat, tmp_path / "m.tflite", quantization="int8", representative_data=x)
    assert report.top1_agreement >= 0.9


@legacy_only
def test_keras_quantize_on_legacy_explains():
    with pytest.raises(ValueError) as info:
        keras_quantize(make_mlp(4, "m"))
    assert_message(
        info,
        "`keras_quantize`",
        "which tf_keras lacks",
        "Unset TF_USE_LEGACY_KERAS",
        "`quantization_aware_training()`",
        "Received: GENERATION='tf_keras'",
    )


@keras3_only
def test_keras_quantize_returns_an_int8_copy(trained_teacher, data):
    x, _ = data
    quantized = keras_quantize(trained_teacher)
    assert quantized is not trained_teacher
    assert quantized.get_layer("teacher_hidden").quantization_mode == "int8"
    assert getattr(trained_teacher.get_layer("teacher_hidden"), "quantization_mode", None) is None
    assert "int8" in {str(w.dtype) for w in quantized.weights}
    reference = np.asarray(trained_teacher(x))
    outputs = np.asarray(quantized(x))
    assert np.abs(outputs - reference).max() < 0.1 * np.abs(reference).max()
    assert np.mean(outputs.argmax(1) == reference.argmax(1)) >= 0.95
    with pytest.raises(ValueError) as info:
        keras_quantize(trained_teacher, mode="int2")
    assert_message(info, "`mode`", "['int8', 'int4', 'float8']", "Received: mode='int2'")
