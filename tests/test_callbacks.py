import numpy as np
import pytest
from helpers import assert_message
from helpers import broken_teacher
from helpers import make_data
from helpers import make_mlp

from keras_distill import Distiller
from keras_distill import StopOnNonFinite
from keras_distill._keras import keras

BATCH = 16
NAN_ROW = 100  # In batch 6 of each epoch; the Distiller's first-batch check sees rows 0-63 only.


def nan_teacher():
    return broken_teacher(np.nan, name="nan_teacher")


def distiller_on(student):
    distiller = Distiller(student=student, teacher=nan_teacher())
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), alpha=0.5, temperature=2.0)
    return distiller


def poisoned_data():
    x, y = make_data(128, seed=4)
    x[NAN_ROW, 0] = 100.0
    return x, y


def test_stops_at_first_non_finite_batch_and_restores_last_good_weights():
    x, y = poisoned_data()
    student = make_mlp(8, "student", seed=2)
    initial = student.get_weights()
    guard = StopOnNonFinite(verbose=False)
    history = distiller_on(student).fit(
        x, y, epochs=3, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[guard]
    )
    assert_message(
        guard.message,
        "Non-finite loss at epoch 0, batch 6",
        "distillation_loss=nan, loss=nan",
        "weights restored to the end of epoch 0, batch 5",
    )
    assert (guard.stopped_epoch, guard.stopped_batch) == (0, 6)
    assert sorted(guard.non_finite) == ["distillation_loss", "loss"]
    assert len(history.history["loss"]) == 1

    # Independent reference: the same student trained on the six good batches only.
    reference = make_mlp(8, "reference", seed=2)
    reference.set_weights(initial)
    distiller_on(reference).fit(
        x[: 6 * BATCH], y[: 6 * BATCH], epochs=1, batch_size=BATCH, shuffle=False, verbose=0
    )
    for expected, actual in zip(reference.get_weights(), student.get_weights()):
        assert np.all(np.isfinite(actual))
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_epoch_copies_restore_the_end_of_the_last_good_epoch():
    x, y = poisoned_data()
    clean_x, clean_y = x[:96], y[:96]
    train_x = np.concatenate([clean_x, x[NAN_ROW : NAN_ROW + 1]])
    train_y = np.concatenate([clean_y, y[NAN_ROW : NAN_ROW + 1]])
    student = make_mlp(8, "student", seed=2)
    initial = student.get_weights()
    guard = StopOnNonFinite(restore="epoch", verbose=False)
    # The poisoned row is the last (short) batch: each epoch fails there, so epoch 0 does.
    distiller_on(student).fit(
        train_x, train_y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[guard]
    )
    assert_message(
        guard.message,
        "Non-finite loss at epoch 0, batch 6",
        "distillation_loss=nan, loss=nan",
        "weights restored to the weights before training",
    )
    for expected, actual in zip(initial, student.get_weights()):
        np.testing.assert_array_equal(actual, expected)


def test_finite_training_is_untouched(data):
    x, y = data
    student = make_mlp(8, "student", seed=2)
    guard = StopOnNonFinite(verbose=False)
    distiller = Distiller(student=student, teacher=make_mlp(16, "teacher", seed=1))
    distiller.compile(optimizer="sgd", alpha=0.5, temperature=2.0)
    history = distiller.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[guard])
    assert guard.message is None and guard.stopped_epoch is None
    assert len(history.history["loss"]) == 2


def test_argument_errors():
    with pytest.raises(ValueError) as info:
        StopOnNonFinite(restore="step")
    assert_message(info, "`restore`", "['batch', 'epoch', None]", "Received: restore='step'")
    with pytest.raises(ValueError) as info:
        StopOnNonFinite(monitor="loss")
    assert_message(info, "`monitor`", "a list of log names or None", "Received: monitor='loss'")


def test_public_names():
    import keras_distill

    assert {"StopOnNonFinite", "callbacks", "saving"} <= set(keras_distill.__all__)
    assert keras_distill.StopOnNonFinite is keras_distill.callbacks.StopOnNonFinite
    for name in ("load_model", "save_model", "load_arrays", "load_config"):
        assert callable(getattr(keras_distill.io, name)), name
