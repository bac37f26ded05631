import numpy as np
import pytest
from helpers import assert_message

from keras_distill import Distiller
from keras_distill import schedules
from keras_distill._keras import keras


def reference_kd(teacher_logits, student_logits, temperature):
    """Mean over examples of T^2 * KL(softmax(t/T) || softmax(s/T)), in NumPy."""

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    log_p = log_softmax(teacher_logits / temperature)
    log_q = log_softmax(student_logits / temperature)
    return float(np.mean(temperature**2 * np.sum(np.exp(log_p) * (log_p - log_q), axis=1)))


def frozen_distiller(teacher, student):
    """A distiller whose student does not move (learning rate 0): each epoch's loss is exact."""
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), alpha=0.5, temperature=1.0)
    return distiller


def test_presets():
    assert [schedules.linear(8.0, 2.0, epochs=4)(e) for e in range(6)] == [8, 6, 4, 2, 2, 2]
    cos = schedules.cosine(4.0, 1.0, epochs=3)
    assert [cos(0), cos(1), cos(2), cos(7)] == pytest.approx([4.0, 2.5, 1.0, 1.0])
    assert [schedules.piecewise([2, 4], [3.0, 2.0, 1.0])(e) for e in range(6)] == [3, 3, 2, 2, 1, 1]
    assert schedules.constant(0.7)(12) == 0.7
    assert repr(schedules.linear(8.0, 2.0, 4)) == "linear(start=8.0, end=2.0, epochs=4)"


def test_temperature_schedule_reaches_the_train_step(data, teacher, student):
    x, _ = data
    temperatures = [1.0, 2.0, 4.0]
    distiller = frozen_distiller(teacher, student)
    scheduler = schedules.DistillationScheduler(temperature=lambda epoch: temperatures[epoch])
    history = distiller.fit(x, epochs=3, batch_size=128, callbacks=[scheduler], verbose=0)
    t = np.asarray(teacher(x, training=False), np.float64)
    s = np.asarray(student(x, training=False), np.float64)
    expected = [reference_kd(t, s, value) for value in temperatures]
    assert len(set(np.round(expected, 4))) == 3  # Different T give different losses.
    np.testing.assert_allclose(history.history["distillation_loss"], expected, rtol=1e-4)
    assert history.history["temperature"] == temperatures
    assert scheduler.values["temperature"] == temperatures
    assert scheduler.values["alpha"] == [0.5, 0.5, 0.5]
    assert distiller.temperature == 4.0


def test_alpha_schedule_reaches_the_train_step(data, teacher, student):
    x, y = data
    distiller = frozen_distiller(teacher, student)
    scheduler = schedules.DistillationScheduler(
        alpha=schedules.linear(0.0, 1.0, epochs=3), temperature=schedules.constant(2.0)
    )
    history = distiller.fit(x, y, epochs=3, batch_size=128, callbacks=[scheduler], verbose=0)
    values = history.history
    assert values["alpha"] == [0.0, 0.5, 1.0]
    assert values["temperature"] == [2.0, 2.0, 2.0]
    hard, soft = values["student_loss"][0], values["distillation_loss"][0]
    assert abs(hard - soft) > 1e-3
    expected = [(1 - a) * hard + a * soft for a in (0.0, 0.5, 1.0)]
    np.testing.assert_allclose(values["loss"], expected, rtol=1e-5)


def test_scheduler_errors(data, student):
    x, y = data
    with pytest.raises(ValueError, match=r"Received: temperature=None, alpha=None$"):
        schedules.DistillationScheduler()
    with pytest.raises(ValueError, match=r"or None. Received: alpha=0.5$"):
        schedules.DistillationScheduler(alpha=0.5)
    with pytest.raises(ValueError, match=r"Received: epochs=0$") as error:
        schedules.linear(1.0, 2.0, epochs=0)
    assert_message(error, "`epochs`", "an integer >= 1")
    with pytest.raises(ValueError, match=r"Received: boundaries=\[3\], values=\[1.0\]$"):
        schedules.piecewise([3], [1.0])
    student.compile(optimizer="sgd", loss="mse")
    scheduler = schedules.DistillationScheduler(temperature=schedules.constant(2.0))
    with pytest.raises(ValueError, match=r"use it with a Distiller. Received: model=Functional$"):
        student.fit(x, np.zeros((len(x), 3)), epochs=1, callbacks=[scheduler], verbose=0)


def test_scheduled_value_is_validated(data, teacher, student):
    x, _ = data
    distiller = frozen_distiller(teacher, student)
    scheduler = schedules.DistillationScheduler(alpha=schedules.constant(1.5))
    with pytest.raises(ValueError, match=r"Received: alpha=1.5$"):
        distiller.fit(x, epochs=1, batch_size=128, callbacks=[scheduler], verbose=0)
