import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from helpers import make_data  # noqa: E402
from helpers import make_mlp  # noqa: E402

from keras_distill._keras import IS_LEGACY  # noqa: E402
from keras_distill._keras import keras  # noqa: E402


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
    for layer in clone.layers:  # A Distiller froze the original; Keras 3 clones keep that.
        layer.trainable = True
    return clone


@pytest.fixture
def student():
    return make_mlp(8, "student", seed=2)


@pytest.fixture(scope="session")
def hub():
    """keras_hub, for tests of its causal LMs and encoders; skipped under tf_keras."""
    if IS_LEGACY:
        pytest.skip("keras_hub is built on Keras 3; tf_keras has no keras_hub")
    return pytest.importorskip(
        "keras_hub", reason="the zoo extra: pip install 'keras-distill[zoo]'"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """After each test, collects its garbage, then freezes what survives.

    `tf.data` iterators left in reference cycles by a test are otherwise freed by a
    later test's full collection, and their destruction there waits for the
    iterator's threads: single tests stalled 40-120 s in whole runs. Collecting right
    after the test frees them at once; freezing keeps every later collection to the
    objects of one test (about 10 ms each) instead of the whole suite's heap.
    """
    yield
    gc.collect()
    gc.freeze()
