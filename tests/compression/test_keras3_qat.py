"""Keras 3 quantization-aware training without tfmot: fake quant against NumPy, BN folding,
sparsity kept, a true int8 file without representative data."""

import numpy as np
import pytest
from helpers import assert_message
from helpers import make_data
from helpers import make_half_sparse_mlp
from helpers import make_mlp

from keras_distill._keras import GENERATION
from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras
from keras_distill.compression.export import export_tflite
from keras_distill.compression.quantization import quantization_aware_training

pytestmark = pytest.mark.skipif(IS_LEGACY, reason="the Keras 3 implementation")

if not IS_LEGACY:
    from keras_distill.compression.keras3.fake_quant import FakeQuant
    from keras_distill.compression.keras3.fake_quant import quantize_weights
    from keras_distill.compression.keras3.qat import fold_batch_norm
    from keras_distill.compression.keras3.qat import quantize_model


def np_fake_quant(x, low, high, narrow_range=False, num_bits=8):
    """Quantize-dequantize with TensorFlow's nudged range (zero exactly representable)."""
    x, low, high = (np.asarray(v, np.float64) for v in (x, low, high))
    quant_min, quant_max = (1 if narrow_range else 0), 2**num_bits - 1
    scale = (high - low) / (quant_max - quant_min)
    zero_point = np.clip(np.round(quant_min - low / scale), quant_min, quant_max)
    nudged_min, nudged_max = (quant_min - zero_point) * scale, (quant_max - zero_point) * scale
    clipped = np.clip(x, nudged_min, nudged_max)
    return np.floor((clipped - nudged_min) / scale + 0.5) * scale + nudged_min


def _tflite_ops(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    return interpreter, ops


def test_weight_fake_quant_matches_numpy():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype("float32")
    kernel[..., 2] *= 10.0
    kernel[0, 0, 0, :] = 0.0
    bound = np.abs(kernel).max(axis=(0, 1, 2))
    expected = np_fake_quant(kernel, -bound, bound, narrow_range=True)
    actual = np.asarray(quantize_weights(kernel))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * bound.max())
    assert np.all(actual[0, 0, 0, :] == 0.0)  # zeros stay exactly zero
    assert len(np.unique(actual[..., 0])) <= 255
    whole = np.abs(kernel).max()
    expected = np_fake_quant(kernel, -whole, whole, narrow_range=True)
    np.testing.assert_allclose(
        np.asarray(quantize_weights(kernel, per_channel=False)),
        expected,
        rtol=1e-5,
        atol=1e-6 * whole,
    )


def test_activation_fake_quant_learns_a_range_and_matches_numpy():
    rng = np.random.default_rng(1)
    layer = FakeQuant(ema_decay=0.9)
    first = rng.normal(size=(16, 6)).astype("float32") + 1.0
    second = 3.0 * rng.normal(size=(16, 6)).astype("float32")
    layer(first, training=True)
    low, high = min(first.min(), 0.0), max(first.max(), 0.0)
    assert float(layer.range_min) == pytest.approx(low)  # the first batch sets the range
    assert float(layer.range_max) == pytest.approx(high)
    layer(second, training=True)
    low = 0.9 * low + 0.1 * min(second.min(), 0.0)
    high = 0.9 * high + 0.1 * max(second.max(), 0.0)
    assert float(layer.range_min) == pytest.approx(low, rel=1e-5)
    assert float(layer.range_max) == pytest.approx(high, rel=1e-5)
    x = 4.0 * rng.normal(size=(32, 6)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(layer(x, training=False)), np_fake_quant(x, low, high), rtol=1e-5, atol=1e-5
    )


def test_quantized_dense_forward_matches_numpy():
    model = make_mlp(16, "student", seed=2)
    qat = quantize_model(model)
    x, _ = make_data(32, seed=3)
    qat(x, training=True)  # sets the activation ranges
    quantizers = [layer for layer in qat.layers if isinstance(layer, FakeQuant)]
    assert len(quantizers) == 3  # the input, the hidden and the output activations
    (low_in, high_in), (low_h, high_h), (low_out, high_out) = [
        (float(q.range_min), float(q.range_max)) for q in quantizers
    ]
    w1, b1, w2, b2 = model.get_weights()
    q1 = np_fake_quant(w1, -np.abs(w1).max(), np.abs(w1).max(), narrow_range=True)
    q2 = np_fake_quant(w2, -np.abs(w2).max(), np.abs(w2).max(), narrow_range=True)
    hidden = np.maximum(np_fake_quant(x, low_in, high_in) @ q1 + b1, 0.0)
    expected = np_fake_quant(np_fake_quant(hidden, low_h, high_h) @ q2 + b2, low_out, high_out)
    actual = np.asarray(qat(x, training=False))
    step = (high_out - low_out) / 255
    assert np.mean(np.abs(actual - expected) <= 1e-4) >= 0.97  # rounding ties may differ
    assert np.abs(actual - expected).max() <= step * 1.001


def _conv_bn_model():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((12, 12, 3))
    hidden = keras.layers.Conv2D(6, 3, use_bias=False, name="conv")(inputs)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = keras.layers.ReLU(6.0, name="relu")(hidden)
    hidden = keras.layers.DepthwiseConv2D(3, name="depthwise")(hidden)
    hidden = keras.layers.BatchNormalization(name="bn2")(hidden)
    hidden = keras.layers.Activation("relu", name="act")(hidden)
    hidden = keras.layers.GlobalAveragePooling2D(name="pool")(hidden)
    outputs = keras.layers.Dense(3, name="logits")(hidden)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(4)
    for name in ("bn", "bn2"):  # statistics far from the identity
        layer = model.get_layer(name)
        size = layer.gamma.shape[0]
        layer.set_weights(
            [
                rng.uniform(0.5, 2, size),
                rng.normal(size=size),
                rng.normal(size=size),
                rng.uniform(0.5, 3, size),
            ]
        )
    return model


def test_batch_norm_folds_into_the_convolution_before_it():
    model = _conv_bn_model()
    x = np.random.default_rng(5).normal(size=(8, 12, 12, 3)).astype("float32")
    conv, bn = model.get_layer("conv"), model.get_layer("bn")
    kernel, bias = fold_batch_norm(conv, bn)
    float_conv = keras.layers.Conv2D(6, 3)
    float_conv.build((None, 12, 12, 3))
    float_conv.set_weights([kernel, bias])
    reference = np.asarray(bn(conv(x), training=False))
    np.testing.assert_allclose(np.asarray(float_conv(x)), reference, rtol=1e-4, atol=1e-4)
    depthwise, bn2 = model.get_layer("depthwise"), model.get_layer("bn2")
    features = np.maximum(reference, 0)
    kernel, bias = fold_batch_norm(depthwise, bn2)
    float_depthwise = keras.layers.DepthwiseConv2D(3)
    float_depthwise.build((None, 10, 10, 6))
    float_depthwise.set_weights([kernel, bias])
    np.testing.assert_allclose(
        np.asarray(float_depthwise(features)),
        np.asarray(bn2(depthwise(features), training=False)),
        rtol=1e-4,
        atol=1e-4,
    )
    qat = quantize_model(model)
    classes = {layer.name: type(layer).__name__ for layer in qat.layers}
    assert classes["bn"] == classes["bn2"] == "Identity"
    assert classes["conv"] == "QuantizedConv2D" and classes["depthwise"] == (
        "QuantizedDepthwiseConv2D"
    )
    assert qat.get_layer("conv").use_bias
    assert len([c for c in classes.values() if c == "FakeQuant"]) == 5  # in, relu, act, pool, out


def test_qat_with_teacher_keeps_zeros_and_exports_true_int8(tmp_path, teacher):
    x, y = make_data(256, seed=7)
    student = make_half_sparse_mlp()
    weights = student.get_weights()
    seen = []
    logger = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.extend(logs))
    qat = quantization_aware_training(
        student,
        x,
        y,
        teacher=teacher,
        epochs=5,
        optimizer=keras.optimizers.Adam(0.02),
        callbacks=[logger],
    )
    assert "distillation_loss" in seen
    kernel = np.asarray(qat.get_layer("student_hidden").kernel)
    np.testing.assert_array_equal(kernel == 0, weights[0] == 0)  # the zeros, and only them
    assert qat.get_layer("student_hidden").kernel.constraint is None
    report = export_tflite(qat, tmp_path / "qat.tflite", quantization="int8", sample_inputs=x)
    interpreter, ops = _tflite_ops(tmp_path / "qat.tflite")
    assert ops == ["QUANTIZE", "FULLY_CONNECTED", "FULLY_CONNECTED", "DEQUANTIZE"]
    int8_shapes = [
        tuple(t["shape"]) for t in interpreter.get_tensor_details() if t["dtype"] == np.int8
    ]
    assert (16, 8) in int8_shapes and (3, 16) in int8_shapes
    output_quant = qat.layers[-1]
    step = (float(output_quant.range_max) - float(output_quant.range_min)) / 255
    difference = np.abs(report.keras_outputs - report.tflite_outputs)
    assert np.mean(difference <= step * 1.001) >= 0.95  # one quantization step, most outputs
    agreement = np.mean(report.keras_outputs.argmax(1) == report.tflite_outputs.argmax(1))
    assert report.top1_agreement == pytest.approx(agreement) and agreement >= 0.99
    assert np.mean(report.tflite_outputs.argmax(1) == y) > 0.6  # chance is about 0.4


def test_conv_model_with_batch_norm_becomes_int8(tmp_path):
    model = _conv_bn_model()
    rng = np.random.default_rng(6)
    x = rng.normal(size=(96, 12, 12, 3)).astype("float32")
    y = rng.integers(0, 3, size=96)
    qat = quantization_aware_training(model, x, y, epochs=1, batch_size=16, preserve_sparsity=False)
    report = export_tflite(
        qat, tmp_path / "conv.tflite", quantization="int8", sample_inputs=x, int8_io=True
    )
    interpreter, ops = _tflite_ops(tmp_path / "conv.tflite")
    assert ops == ["CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED"]
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert report.top1_agreement >= 0.99
    assert np.std(report.tflite_outputs) > 0


def test_qat_argument_errors(data):
    x, y = data
    with pytest.raises(ValueError) as info:
        quantization_aware_training(None, x, y)
    assert_message(
        info,
        "`student`",
        f"a keras.Model of the active Keras ({GENERATION})",
        "Received: student=builtins.NoneType",
    )
    with pytest.raises(ValueError) as info:
        quantization_aware_training(make_mlp(4, "m"), x, y, preserve_sparsity="yes")
    assert_message(
        info, "`preserve_sparsity`", "True or False", "Received: preserve_sparsity='yes'"
    )
    with pytest.raises(ValueError) as info:
        quantization_aware_training(make_mlp(4, "m"), x, y, keep_float=1)
    assert_message(info, "`keep_float`", "True or False", "Received: keep_float=1")


@pytest.mark.slow
def test_mobilenetv2_prune_qat_int8_on_keras3(tmp_path):
    from keras_distill.compression.pruning import prune

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4, classifier_activation=None
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(96, 32, 32, 3)).astype("float32")
    y = (x[:, :16, :, 0].mean(axis=(1, 2)) > 0).astype("int32") + 2 * (
        x[:, :, :16, 1].mean(axis=(1, 2)) > 0
    ).astype("int32")
    sparse = prune(model, x, y, target_sparsity=0.5, epochs=2, batch_size=32, frequency=1)
    pruned = {
        w.path: np.asarray(w)
        for w in sparse.weights
        if w.path.endswith("kernel") and "depthwise" not in w.path
    }
    assert len(pruned) == 36  # 35 convolutions and the classifier
    for path, kernel in pruned.items():
        kept = int(np.round(np.float32(kernel.size) * np.float32(0.5)))
        assert int(np.sum(kernel == 0)) == kernel.size - kept, path
    qat = quantization_aware_training(sparse, x, y, epochs=1, batch_size=32)
    classes = [type(layer).__name__ for layer in qat.layers]
    assert "BatchNormalization" not in classes and classes.count("Identity") == 52
    for layer in qat.layers:  # folding scales columns: the zeros stay where they were
        if type(layer).__name__ == "QuantizedConv2D":
            original = np.asarray(sparse.get_layer(layer.name).kernel)
            np.testing.assert_array_equal(np.asarray(layer.kernel) == 0, original == 0)
    report = export_tflite(qat, tmp_path / "mobilenet.tflite", quantization="int8", sample_inputs=x)
    _, ops = _tflite_ops(tmp_path / "mobilenet.tflite")
    assert set(ops) == {
        "QUANTIZE",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "ADD",
        "MEAN",
        "FULLY_CONNECTED",
        "DEQUANTIZE",
    }
    assert ops.count("QUANTIZE") == ops.count("DEQUANTIZE") == 1  # int8 from edge to edge
    assert np.std(report.keras_outputs, axis=0).max() > 0  # outputs depend on the input
    assert report.top1_agreement >= 0.99


def test_nested_sequential_models_are_quantized_inside(tmp_path):
    keras.utils.set_random_seed(2)
    block = keras.Sequential(
        [
            keras.Input((10, 10, 2)),
            keras.layers.SeparableConv2D(4, 3, name="separable"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.ReLU(name="relu"),
        ],
        name="block",
    )
    model = keras.Sequential(
        [
            keras.Input((10, 10, 2)),
            block,
            keras.layers.Flatten(),
            keras.layers.Dense(3, name="logits"),
        ],
        name="outer",
    )
    qat = quantize_model(model)
    inner = qat.get_layer("block")
    assert [type(layer).__name__ for layer in inner.layers] == [
        "InputLayer",
        "QuantizedSeparableConv2D",
        "Identity",
        "ReLU",
        "FakeQuant",
    ]
    assert [type(layer).__name__ for layer in qat.layers] == [
        "InputLayer",
        "FakeQuant",
        "Functional",
        "Flatten",
        "QuantizedDense",
        "FakeQuant",
    ]
    x = np.random.default_rng(3).normal(size=(64, 10, 10, 2)).astype("float32")
    qat(x, training=True)
    report = export_tflite(qat, tmp_path / "nested.tflite", quantization="int8", sample_inputs=x)
    _, ops = _tflite_ops(tmp_path / "nested.tflite")
    assert ops.count("QUANTIZE") == ops.count("DEQUANTIZE") == 1
    assert "DEPTHWISE_CONV_2D" in ops and "CONV_2D" in ops
    assert report.top1_agreement >= 0.99


def test_quantization_aware_model_saves_and_loads(tmp_path):
    model = _conv_bn_model()
    x = np.random.default_rng(7).normal(size=(16, 12, 12, 3)).astype("float32")
    qat = quantize_model(model)
    qat(x, training=True)
    qat.save(tmp_path / "qat.keras")
    loaded = keras.models.load_model(tmp_path / "qat.keras")
    assert [type(layer).__name__ for layer in loaded.layers] == [
        type(layer).__name__ for layer in qat.layers
    ]
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(qat(x)), rtol=1e-6, atol=1e-6)


def test_prune_and_qat_under_mixed_precision():
    from keras_distill.compression.pruning import prune

    x, y = make_data(256, seed=5)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        student = make_mlp(16, "student", seed=2)
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01))
        sparse = prune(student, x, y, target_sparsity=0.5, epochs=3, optimizer=optimizer)
        qat = quantization_aware_training(sparse, x, y, epochs=1)
        outputs = np.asarray(qat(x[:8]))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    kernel = np.asarray(sparse.get_layer("student_hidden").kernel)
    assert int(np.sum(kernel == 0)) == 64
    np.testing.assert_array_equal(
        np.asarray(qat.get_layer("student_hidden").kernel) == 0, kernel == 0
    )
    assert outputs.dtype == np.float32 and np.all(np.isfinite(outputs))
