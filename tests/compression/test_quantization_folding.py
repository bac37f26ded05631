"""tfmot QAT of Conv + BatchNormalization + ReLU blocks (MobileNet style), tf_keras only."""

import numpy as np
import pytest

from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras
from keras_distill.compression.export import export_tflite
from keras_distill.compression.quantization import quantization_aware_training
from keras_distill.compression.quantization import unquantizable_layers

pytestmark = pytest.mark.skipif(not IS_LEGACY, reason="tfmot QAT needs TF_USE_LEGACY_KERAS=1")


def mobile_block_model(with_conv1d=False):
    """Conv -> BatchNorm -> ReLU6 -> DepthwiseConv -> BatchNorm -> ReLU6, as in MobileNetV2."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.ReLU(6.0, name="conv_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(x)
    x = keras.layers.BatchNormalization(name="depthwise_bn")(x)
    x = keras.layers.ReLU(6.0, name="depthwise_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if with_conv1d:
        x = keras.layers.Reshape((8, 1), name="as_sequence")(x)
        x = keras.layers.Conv1D(2, 3, name="conv1d")(x)
        x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def data(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.integers(0, 3, size=n)


def test_batch_normalization_folded_by_tfmot_is_supported(tmp_path):
    model = mobile_block_model()
    assert unquantizable_layers(model) == []
    x, y = data()
    qat = quantization_aware_training(model, x, y, batch_size=16)
    classes = {layer.name: type(layer).__name__ for layer in qat.layers}
    assert classes["quant_conv"].startswith("QuantizeWrapper")
    report = export_tflite(qat, tmp_path / "qat.tflite", quantization="int8", sample_inputs=x)
    assert report.top1_agreement >= 0.8


def test_only_the_layers_tfmot_rejects_are_listed():
    model = mobile_block_model(with_conv1d=True)
    assert unquantizable_layers(model) == [("conv1d", "Conv1D")]
    x, y = data()
    # The whole message is pinned in test_quantization.py; here: only conv1d is named.
    with pytest.raises(ValueError, match=r"support these layers: 'conv1d' \(Conv1D\)\. Pass"):
        quantization_aware_training(model, x, y)
