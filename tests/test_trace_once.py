"""A first `fit()` traces its step once when the training state is made before it."""

import numpy as np
import pytest
from helpers import NUM_CLASSES
from helpers import assert_message
from helpers import calls_of
from helpers import make_mlp

from keras_distill import Distiller
from keras_distill import FeatureMatch
from keras_distill import _trace_once
from keras_distill._keras import keras


def compiled(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@pytest.mark.parametrize("prepared, traces", [(False, 2), (True, 1)])
def test_a_prepared_plain_model_traces_its_step_once(data, prepared, traces):
    x, y = data
    model = compiled(make_mlp(8, "student", seed=2))
    calls = calls_of(model, "train_step")
    if prepared:
        _trace_once.prepare_fit(model, x, y)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert len(calls) == traces


def test_the_first_batch_is_not_counted_in_the_first_epoch(data):
    """`fit()` resets the metrics that `prepare_fit` built on the first batch."""
    x, y = data
    model = compiled(make_mlp(8, "student", seed=2))
    model.optimizer.learning_rate = 0.0
    correct = np.argmax(model.predict(x, verbose=0), -1) == y
    assert correct[: _trace_once.FIRST_BATCH_SIZE].mean() != correct.mean()
    _trace_once.prepare_fit(model, x, y)
    history = model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["accuracy"][0], correct.mean(), rtol=1e-6)


class Unbuilt(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(NUM_CLASSES)

    def call(self, x):
        return self.dense(x)


def test_a_model_that_builds_on_its_first_call_is_left_to_fit(data):
    x, y = data
    model = compiled(Unbuilt())
    assert not _trace_once.is_built(model)
    _trace_once.prepare_fit(model, x, y)  # An optimizer built for no variables would fail fit().
    history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def batches(x, y, size=32):
    """A generator of `(x, y)` batches: the Distiller sees no first batch before `fit()`."""
    for start in range(0, len(x), size):
        yield x[start : start + size], y[start : start + size]


class SubclassedStudent(keras.Model):
    """Its layers' output shapes are known only once it runs: adapters wait for a batch."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu", name="hidden")
        self.head = keras.layers.Dense(NUM_CLASSES)

    def call(self, x):
        return self.head(self.hidden(x))


def subclassed_distiller(teacher, x):
    student = SubclassedStudent()
    student(x[:1])
    distiller = Distiller(
        student=student,
        teacher=teacher,
        feature_matches=[FeatureMatch("hidden", "teacher_hidden", loss="mse")],
    )
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    assert not distiller.adapters  # Its layers' shapes are known once it runs.
    return distiller


def test_adapters_a_generator_cannot_give_are_asked_for(teacher, data):
    x, y = data
    distiller = subclassed_distiller(teacher, x)
    with pytest.raises(ValueError) as error:
        distiller.fit(batches(x, y), epochs=1, verbose=0)
    assert_message(error, "adapters take their shapes", "distiller.build_adapters(x_batch)")
    assert_message(error, "Received: x of type generator")
    distiller.build_adapters(x[:32])
    history = distiller.fit(batches(x, y), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    (adapter,) = distiller.adapters.values()
    assert adapter.get_weights()[0].shape == (8, 32)


def test_evaluate_builds_the_adapters_from_arrays(teacher, data):
    x, y = data
    distiller = subclassed_distiller(teacher, x)
    results = distiller.evaluate(x, y, verbose=0, return_dict=True)
    (name,) = [key for key in results if key.startswith("mse")]  # The match's loss.
    assert np.isfinite(results[name])
