"""`weight_sparsity` says which kernels `prune` leaves dense (tfmot: depthwise), and why."""

import numpy as np
import pytest

from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras
from keras_distill.compression.pruning import LEFT_DENSE
from keras_distill.compression.pruning import expected_sparsity
from keras_distill.compression.pruning import prune
from keras_distill.compression.pruning import weight_sparsity


def depthwise_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def _only(weights, fragment):
    (name,) = [name for name in weights if fragment in name]
    return name


def test_depthwise_kernels_are_reported_as_left_dense():
    model = depthwise_model()
    weights = model.get_weights()  # conv kernel, bias, depthwise kernel, bias, dense kernel, bias
    weights[0][..., :4] = 0.0  # 108 of 216 conv weights
    model.set_weights(weights)
    result = weight_sparsity(model)
    depthwise = _only(result["weights"], "depthwise/")
    assert result["total"] == pytest.approx(108 / (216 + 72 + 24))
    if IS_LEGACY:  # tfmot leaves depthwise kernels dense
        assert result["left_dense"] == {depthwise: LEFT_DENSE["DepthwiseConv2D"]}
        assert result["pruned_total"] == pytest.approx(108 / (216 + 24))
    else:  # the Keras 3 implementation prunes them too
        assert result["left_dense"] == {}
        assert result["pruned_total"] == pytest.approx(108 / (216 + 72 + 24))


@pytest.mark.skipif(not IS_LEGACY, reason="tfmot pruning needs TF_USE_LEGACY_KERAS=1")
def test_prune_reaches_the_target_on_every_kernel_it_prunes():
    model = depthwise_model()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8, 8, 3)).astype("float32"), rng.integers(0, 3, size=64)
    sparse = prune(model, x, y, target_sparsity=0.5, epochs=2, batch_size=8)
    result = weight_sparsity(sparse)
    depthwise = _only(result["weights"], "depthwise/")
    assert list(result["left_dense"]) == [depthwise]
    assert result["weights"][depthwise] == 0.0
    for name, fraction in result["weights"].items():
        if name != depthwise:
            size = np.prod(
                [w for w in sparse.weights if (getattr(w, "path", None) or w.name) == name][0].shape
            )
            assert fraction == pytest.approx(expected_sparsity(size, 0.5))
