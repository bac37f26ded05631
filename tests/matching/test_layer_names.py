"""Layers are found by their own name first, then by an `"outer/inner"` path."""

import numpy as np
import pytest

from keras_distill import Distiller
from keras_distill import FeatureMatch
from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras
from keras_distill.matching.capture import find_layer


def model_with_a_slash_in_a_layer_name(prefix, filters):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{prefix}_conv")(inputs)
    x = keras.layers.Add(name=f"{prefix}_block/Add")([x, x])  # as tf_keras's MobileNetV3
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x), name=prefix)


@pytest.mark.skipif(not IS_LEGACY, reason="Keras 3 forbids '/' in layer names")
def test_a_layer_named_with_a_slash_is_found_and_matched():
    student = model_with_a_slash_in_a_layer_name("s", 4)
    teacher = model_with_a_slash_in_a_layer_name("t", 6)
    assert find_layer(student, "s_block/Add", "student") is student.get_layer("s_block/Add")
    distiller = Distiller(
        student=student,
        teacher=teacher,
        feature_matches=[FeatureMatch("s_block/Add", "t_block/Add")],
    )
    distiller.compile(optimizer="adam")
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype("float32")
    history = distiller.fit(x, np.zeros(16, "int32"), epochs=1, verbose=0).history
    assert np.isfinite(history["mse_s_block_Add"][0])
