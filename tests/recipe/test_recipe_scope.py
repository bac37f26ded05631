"""`distill()` covers one array input and one row of logits per example, and says what to use
for anything else."""

import numpy as np
import pytest

import keras_distill
from keras_distill._keras import keras


def tagger(name, length=6, classes=4):
    tokens = keras.Input((length,), dtype="int32")
    hidden = keras.layers.Embedding(10, 4)(tokens)
    return keras.Model(tokens, keras.layers.Dense(classes)(hidden), name=name)


def test_outputs_with_positions_point_to_the_distiller():
    tokens = np.zeros((8, 6), "int32")
    with pytest.raises(ValueError, match=r"use the `Distiller` directly.*teacher output shape"):
        keras_distill.distill(tagger("teacher"), tagger("student"), tokens, tokens % 4)


def test_dict_inputs_point_to_the_distiller(teacher, student, data):
    x, y = data
    with pytest.raises(ValueError, match=r"several named inputs.*Received: x with a dict"):
        keras_distill.distill(teacher, student, {"features": x}, y)
