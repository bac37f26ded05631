"""A TensorFlow SavedModel teacher and a subclassed student."""

import numpy as np
import pytest
import zoo_checks

from keras_distill._keras import IS_LEGACY
from keras_distill._keras import keras

CLASSES = 4
SHAPE = (32, 32, 3)


@keras.saving.register_keras_serializable(package="zoo")
class SmallCnn(keras.Model):
    """A subclassed student: two convolutions and a linear head."""

    def __init__(self, filters=8, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.first = keras.layers.Conv2D(filters, 3, strides=2, activation="relu")
        self.second = keras.layers.Conv2D(2 * filters, 3, strides=2, activation="relu")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(CLASSES)

    def call(self, images):
        return self.head(self.pool(self.second(self.first(images))))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def savedmodel_teacher(folder):
    """MobileNetV3Small written as a SavedModel and read back as a Keras teacher."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(
        input_shape=SHAPE,
        weights=None,
        classes=CLASSES,
        classifier_activation=None,
        minimalistic=True,
    )
    if IS_LEGACY:
        model.save(folder, save_format="tf")
        return keras.models.load_model(folder)
    model.export(folder, verbose=False)
    inputs = keras.Input(SHAPE)
    outputs = keras.layers.TFSMLayer(folder, call_endpoint="serve")(inputs)
    return keras.Model(inputs, outputs, name="savedmodel_teacher")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return savedmodel_teacher(str(tmp_path_factory.mktemp("teacher") / "saved_model"))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, size=(16, *SHAPE)).astype("float32"), rng.integers(0, CLASSES, 16)


def student(x):
    keras.utils.set_random_seed(1)
    model = SmallCnn(name="small_cnn")
    model(x[:1])
    return model


TEACHER = "SavedModel (TFSMLayer)" if not IS_LEGACY else "SavedModel (load_model)"


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_savedmodel_teacher_trains_a_subclassed_student(teacher, images, jit_compile, record):
    x, y = images
    before = np.asarray(teacher(x))
    model = student(x)
    zoo_checks.fit(model, teacher, x, y, jit_compile=jit_compile)
    np.testing.assert_allclose(np.asarray(teacher(x)), before, atol=1e-6)  # frozen
    record(TEACHER, "teacher")
    record("subclassed student", "XLA" if jit_compile else "KD")


def test_subclassed_student_reloads_and_exports(teacher, images, tmp_path, record):
    x, y = images
    model = student(x)
    zoo_checks.fit(model, teacher, x, y, jit_compile=False)
    zoo_checks.reloads(model, x, tmp_path)
    record("subclassed student", "reload")
    reports = zoo_checks.exports(model, x, tmp_path)
    assert reports["float32"].keras_outputs.shape == (16, CLASSES)
    record("subclassed student", "float32 .tflite")
    record("subclassed student", "int8 .tflite")
