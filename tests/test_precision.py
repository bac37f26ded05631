"""Mixed precision, XLA and steps_per_execution with the Distiller."""

import numpy as np
import pytest
from helpers import make_mlp

from keras_distill import Distiller
from keras_distill._keras import keras


@pytest.fixture
def policy():
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_and_keeps_the_loss_in_float32(teacher, data, policy, name):
    x, y = data
    reference = Distiller(student=make_mlp(8, "student", seed=2), teacher=teacher)
    reference.compile(optimizer="adam", alpha=0.5, temperature=4.0)
    expected = reference.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    policy(name)
    student = make_mlp(8, "student", seed=2)
    assert student.layers[-1].compute_dtype == name.split("_")[1]
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam", alpha=0.5, temperature=4.0, jit_compile=True)
    if name == "mixed_float16":
        assert "LossScaleOptimizer" in type(distiller.optimizer).__name__
    got = distiller.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    tolerance = 2e-2 if name == "mixed_bfloat16" else 5e-3
    for key in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(got[key], expected[key], rtol=tolerance)
    history = distiller.fit(x, y, epochs=3, batch_size=32, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < history["loss"][0]
    assert all(w.dtype == "float32" for w in student.get_weights())


def test_steps_per_execution_gives_the_same_training(trained_teacher, data):
    x, y = data
    weights = []
    for steps in (1, 4):
        teacher = keras.models.clone_model(trained_teacher)
        teacher.set_weights(trained_teacher.get_weights())
        student = make_mlp(8, "student", seed=2)
        distiller = Distiller(student=student, teacher=teacher)
        distiller.compile(
            optimizer=keras.optimizers.SGD(0.1), steps_per_execution=steps, jit_compile=True
        )
        distiller.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
        weights.append(student.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
