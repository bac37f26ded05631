"""Transfer sets: labelled rows plus teacher-labelled rows (label -1)."""

import numpy as np
import pytest

from keras_distill import Distiller
from keras_distill._keras import keras
from keras_distill.data import transfer


def test_transfer_set_trains_unlabelled_rows_on_distillation(data, teacher, student):
    x, y = data
    x_all, y_all = transfer.transfer_set(x[:64], y[:64], x[64:])
    assert x_all.shape == x.shape and list(y_all[64:]) == [-1] * 64
    np.testing.assert_array_equal(y_all[:64], y[:64])
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), alpha=0.5, temperature=2.0)
    full = distiller.fit(x, y, epochs=1, batch_size=128, verbose=0).history
    mixed = distiller.fit(x_all, y_all, epochs=1, batch_size=128, verbose=0).history
    # Same inputs and teacher: D is unchanged; H is the mean over the 64 labelled rows only.
    np.testing.assert_allclose(mixed["distillation_loss"], full["distillation_loss"], rtol=1e-5)
    logits = np.asarray(student(x[:64]), np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    hard = -np.mean(log_probs[np.arange(64), y[:64]])
    np.testing.assert_allclose(mixed["student_loss"][0], hard, rtol=1e-4)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: transfer.transfer_set(np.ones((2, 3)), [0, 1], np.ones((2, 4))),
            "Received: x_unlabeled.shape=(2, 4)",
        ),
        (
            lambda: transfer.transfer_set(np.ones((2, 3)), [0, -1], np.ones((2, 3))),
            "Received: y with 1 such labels",
        ),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).endswith(message)
