"""`channel_matches` and `recover_channels`: distilling a channel-pruned model from its original."""

import numpy as np
import pytest

from keras_distill._keras import keras
from keras_distill.compression import channel_matches
from keras_distill.compression import prune_channels
from keras_distill.compression import recover_channels


def named_residual_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    y = keras.layers.Conv2D(16, 3, padding="same", name="conv1")(x)
    y = keras.layers.BatchNormalization(name="bn1")(y)
    y = keras.layers.ReLU(name="relu1")(y)
    y = keras.layers.Conv2D(16, 3, padding="same", name="conv2")(y)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Conv2D(16, 1, name="head_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))


def test_matches_sit_at_the_ends_of_the_pruned_blocks():
    teacher = named_residual_model()
    student = prune_channels(teacher, fraction=0.5)
    matches = channel_matches(student, teacher)
    # stem -> stem_bn -> stem_relu (two consumers next); conv2 -> bn2 (the Add next);
    # head_conv (pooling next); logits is not pruned.
    assert [m.student_layer for m in matches] == ["stem_relu", "relu1", "bn2", "head_conv"]
    assert all(m.student_layer == m.teacher_layer and m.loss == "mse" for m in matches)
    explicit = channel_matches(student, teacher, layers=["add"], weight=0.5)
    assert [(m.student_layer, m.weight) for m in explicit] == [("add", 0.5)]


def test_matches_refuse_a_layer_missing_from_a_model():
    teacher = named_residual_model()
    student = prune_channels(teacher, fraction=0.5)
    with pytest.raises(ValueError, match=r"the student does not have: 'nope'.*Received: layers="):
        channel_matches(student, teacher, layers=["nope"])
    with pytest.raises(ValueError, match=r"`layers` must be a list of layer names"):
        channel_matches(student, teacher, layers="add")


class Logs(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs))


@pytest.mark.parametrize("feature_weight", [1.0, 0.0])
def test_recovery_trains_the_student_from_the_frozen_teacher(teacher, data, feature_weight):
    x, y = data
    before = [w.copy() for w in teacher.get_weights()]
    student = prune_channels(teacher, fraction=0.25)
    assert student.get_layer("teacher_hidden").units == 8
    pruned = [w.copy() for w in student.get_weights()]
    logs = Logs()
    result = recover_channels(
        student,
        teacher,
        x,
        y,
        epochs=3,
        batch_size=16,
        feature_weight=feature_weight,
        callbacks=[logs],
    )
    assert result is student
    assert teacher.trainable  # frozen while distilling, given back as it came
    for old, new in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert any(not np.array_equal(a, b) for a, b in zip(pruned, student.get_weights()))
    assert ("mse_teacher_hidden" in logs.epochs[-1]) == (feature_weight > 0)
    assert logs.epochs[-1]["loss"] < logs.epochs[0]["loss"]


def test_recovery_refuses_a_negative_feature_weight(teacher, data):
    x, y = data
    student = prune_channels(teacher, fraction=0.5)
    with pytest.raises(ValueError, match=r"`feature_weight` must be a number >= 0.*=-1"):
        recover_channels(student, teacher, x, y, feature_weight=-1)
