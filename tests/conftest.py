import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_distill.backend import keras  # noqa: E402

NUM_FEATURES = 8
NUM_CLASSES = 3


def make_data(num_examples=128, seed=0):
    """Separable 3-class data: the class is decided by the signs of two features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, NUM_FEATURES)).astype("float32")
    y = ((x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")).astype("int32")
    return x, y


def make_mlp(units, name, num_classes=NUM_CLASSES, seed=0, final_activation=None):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((NUM_FEATURES,), name=f"{name}_input")
    hidden = keras.layers.Dense(units, activation="relu", name=f"{name}_hidden")(inputs)
    outputs = keras.layers.Dense(num_classes, activation=final_activation, name=f"{name}_logits")(
        hidden
    )
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="session")
def data():
    return make_data()


@pytest.fixture(scope="session")
def trained_teacher(data):
    x, y = data
    teacher = make_mlp(32, "teacher", seed=1)
    teacher.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    teacher.fit(x, y, epochs=20, batch_size=32, verbose=0)
    return teacher


@pytest.fixture
def teacher(trained_teacher):
    """A fresh copy of the trained teacher, so tests cannot affect each other."""
    clone = keras.models.clone_model(trained_teacher)
    clone.set_weights(trained_teacher.get_weights())
    return clone


@pytest.fixture
def student():
    return make_mlp(8, "student", seed=2)
