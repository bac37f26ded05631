"""Checks of every batch inside the compiled step: labels and finiteness past the first batch."""

import os
import types

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_message
from helpers import broken_teacher
from helpers import make_data
from helpers import make_mlp

from keras_distill import Distiller
from keras_distill import StopOnNonFinite
from keras_distill._keras import keras

BATCH = 32
# Graph mode in the default tier, XLA in the slow tier: the default tier keeps XLA for labels (in
# training, validation and evaluate), a NaN in `x`, the loss overflow and teacher probabilities.
XLA_IN_SLOW_TIER = [False, pytest.param(True, marks=pytest.mark.slow)]


def distiller_for(student=None, teacher=None, **compile_args):
    student = student or make_mlp(8, "student", seed=2)
    teacher = teacher or make_mlp(16, "teacher", seed=1)
    distiller = Distiller(student=student, teacher=teacher)
    compile_args.setdefault("optimizer", keras.optimizers.SGD(0.1))
    distiller.compile(**compile_args)
    return distiller


def dataset(x, y=None, sample_weight=None):
    element = (x,) if y is None else (x, y) if sample_weight is None else (x, y, sample_weight)
    return tf.data.Dataset.from_tensor_slices(element).batch(BATCH)


def label_pieces(step, row, value, where=None):
    """What a bad-label message must say: the argument, where, the fix and the value."""
    where = where or f"epoch 0, batch {step} (training step {step})"
    return (
        "`y`",
        "class indices 0, 1, ..., 2",
        f"{where}, row {row} of the batch holds {value}",
        "Fix the labels",
        "one-hot rows of width 3",
        f"Received: y={value}",
    )


def finite_pieces(what, argument, step, row=None):
    """What a non-finite message must say: what, where, the fix and the value."""
    at_row = "" if row is None else f", row {row} of the batch"
    in_row = "" if row is None else f" in row {row}"
    return (
        f"{what} is NaN or Inf",
        f"epoch 0, batch {step} (training step {step}){at_row}",
        "`compile(data_checks=False)`",
        f"Received: {argument} with a non-finite value{in_row}",
    )


@pytest.mark.parametrize(
    "value, shown, jit_compile",
    [
        (1.7, "1.7", False),
        (7.0, "7", False),
        (-2.0, "-2", False),
        (1.7, "1.7", True),
        pytest.param(7.0, "7", True, marks=pytest.mark.slow),
        pytest.param(-2.0, "-2", True, marks=pytest.mark.slow),
    ],
)
def test_bad_label_after_the_first_batch_of_a_dataset(value, shown, jit_compile):
    x, y = make_data(256)
    labels = y.astype("float32")
    labels[3 * BATCH + 5] = value
    with pytest.raises(ValueError) as error:
        distiller_for(jit_compile=jit_compile).fit(dataset(x, labels), verbose=0)
    assert_message(error, *label_pieces(3, 5, shown))


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_bad_integer_label_from_a_generator(run_eagerly):
    x, y = make_data(256)
    y[2 * BATCH + 1] = 5

    def batches():
        for start in range(0, len(x), BATCH):
            yield x[start : start + BATCH], y[start : start + BATCH]

    with pytest.raises(ValueError) as error:
        distiller_for(run_eagerly=run_eagerly).fit(batches(), steps_per_epoch=8, verbose=0)
    assert_message(error, *label_pieces(2, 1, "5"))


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_bad_label_in_validation_data_and_in_evaluate(jit_compile):
    x, y = make_data(256)
    bad = y.copy()
    bad[BATCH + 2] = -2
    distiller = distiller_for(jit_compile=jit_compile)
    with pytest.raises(ValueError) as error:
        distiller.fit(dataset(x, y), validation_data=dataset(x, bad), verbose=0)
    where = "validation batch 1 (`validation_data`, epoch 0)"
    assert_message(error, *label_pieces(None, 2, "-2", where))
    with pytest.raises(ValueError) as error:
        distiller.evaluate(dataset(x, bad), verbose=0)
    assert_message(error, *label_pieces(None, 2, "-2", "an evaluation batch"))


@pytest.mark.parametrize("jit_compile", XLA_IN_SLOW_TIER, ids=["graph", "xla"])
def test_missing_label_value_passes(jit_compile):
    x, y = make_data(256)
    y[200] = -1
    student = make_mlp(8, "student", seed=2)
    history = distiller_for(student=student, jit_compile=jit_compile).fit(dataset(x, y), verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    # The checks let every batch through and change nothing: the same run without them.
    unchecked = make_mlp(8, "student", seed=2)
    distiller_for(student=unchecked, jit_compile=jit_compile, data_checks=False).fit(
        dataset(x, y), verbose=0
    )
    assert_weights_equal(student, unchecked.get_weights())
    assert not np.allclose(student.get_weights()[0], make_mlp(8, "s", seed=2).get_weights()[0])


def good_batches_reference(x, y, num_batches, jit_compile=False):
    """The student trained on the first `num_batches` batches alone."""
    reference = make_mlp(8, "student", seed=2)
    rows = num_batches * BATCH
    distiller = distiller_for(student=reference, jit_compile=jit_compile)
    distiller.fit(dataset(x[:rows], y[:rows]), verbose=0)
    return reference.get_weights()


def assert_weights_equal(student, expected):
    for actual, wanted in zip(student.get_weights(), expected):
        assert np.all(np.isfinite(actual))
        np.testing.assert_allclose(actual, wanted, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_nan_in_x_at_batch_4_stops_and_keeps_the_last_finite_weights(jit_compile):
    x, y = make_data(256)
    x[4 * BATCH + 7, 3] = np.nan
    student = make_mlp(8, "student", seed=2)
    with pytest.raises(ValueError) as error:
        distiller_for(student=student, jit_compile=jit_compile).fit(dataset(x, y), verbose=0)
    assert_message(error, *finite_pieces("`x`", "x", 4, 7))
    assert_weights_equal(student, good_batches_reference(x, y, 4, jit_compile))


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_finite_x_that_overflows_the_loss(jit_compile):
    x, y = make_data(256)
    x[2 * BATCH, :] = 1e30
    student = make_mlp(8, "student", seed=2)
    with pytest.raises(ValueError) as error:
        distiller_for(student=student, jit_compile=jit_compile).fit(dataset(x, y), verbose=0)
    # Batch 2's gradients are finite (if huge); batch 3's loss overflows.
    message = "The loss (its inputs are finite, so it overflowed)"
    assert_message(error, *finite_pieces(message, "loss", 3))
    assert_weights_equal(student, good_batches_reference(x, y, 3, jit_compile))


def fit_with_a_nan_weight(num_examples, row, jit_compile):
    """The error of a fit whose `sample_weight` is NaN at `row` of batch 1."""
    x, y = make_data(num_examples)
    weights = np.ones(num_examples, "float32")
    weights[BATCH + row] = np.nan
    with pytest.raises(ValueError) as error:
        distiller_for(jit_compile=jit_compile).fit(dataset(x, y, weights), verbose=0)
    assert_message(error, *finite_pieces("`sample_weight`", "sample_weight", 1, row))
    return error


@pytest.mark.parametrize("jit_compile", XLA_IN_SLOW_TIER, ids=["graph", "xla"])
def test_nan_sample_weight(jit_compile):
    fit_with_a_nan_weight(256, 3, jit_compile)


def keras_frames(error):
    """Files of the Keras frames `error` keeps alive: through the tracebacks of the error, its
    context and cause, and through any traceback or error held by a local of their frames."""
    pending, seen, files = [error], set(), []
    while pending:
        item = pending.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, BaseException):
            pending += [item.__traceback__, item.__context__, item.__cause__]
            continue
        frame = item.tb_frame
        files.append(frame.f_code.co_filename)
        pending.append(item.tb_next)
        for value in frame.f_locals.values():
            if isinstance(value, (BaseException, types.TracebackType)):
                pending.append(value)
    parts = (f"{os.sep}keras{os.sep}src{os.sep}", f"{os.sep}tf_keras{os.sep}")
    return [name for name in files if any(part in name for part in parts)]


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_the_error_keeps_no_frame_of_the_failed_fit(jit_compile):
    """Otherwise whoever holds the error (a test, a notebook) keeps the failed `fit`'s data
    iterator and its threads alive until a garbage collection, which then waits for them."""
    error = fit_with_a_nan_weight(64, 1, jit_compile)
    assert type(error.value) is ValueError
    assert keras_frames(error.value) == []


@pytest.mark.parametrize("jit_compile", XLA_IN_SLOW_TIER, ids=["graph", "xla"])
def test_inf_teacher_outputs_after_a_few_batches(jit_compile):
    x, y = make_data(256)
    x[5 * BATCH + 9, 0] = 100.0
    distiller = distiller_for(teacher=broken_teacher(np.inf), jit_compile=jit_compile)
    with pytest.raises(ValueError) as error:
        distiller.fit(dataset(x, y), verbose=0)
    assert_message(error, *finite_pieces("The teacher's output", "teacher outputs", 5, 9))


def nan_weight_at_batch_4():
    weights = np.ones(256, "float32")
    weights[4 * BATCH] = np.nan
    return weights


@pytest.mark.parametrize("jit_compile", XLA_IN_SLOW_TIER, ids=["graph", "xla"])
def test_checks_can_be_turned_off(jit_compile):
    x, y = make_data(256)
    data = dataset(x, y, nan_weight_at_batch_4())
    history = distiller_for(data_checks=False, jit_compile=jit_compile).fit(data, verbose=0)
    assert np.isnan(history.history["loss"][-1])


def test_data_checks_must_be_a_bool():
    with pytest.raises(ValueError) as error:
        distiller_for(data_checks="yes")
    assert_message(error, "`data_checks`", "True or False", "Received: data_checks='yes'")


@pytest.mark.parametrize("jit_compile", XLA_IN_SLOW_TIER, ids=["graph", "xla"])
def test_a_stop_on_non_finite_callback_takes_over_the_finiteness_checks(jit_compile):
    x, y = make_data(256)
    data = dataset(x, y, nan_weight_at_batch_4())
    distiller = distiller_for(jit_compile=jit_compile)
    with pytest.raises(ValueError) as error:
        distiller.fit(data, verbose=0)
    assert_message(error, *finite_pieces("`sample_weight`", "sample_weight", 4, 0))
    # With the callback, the step is retraced without the finiteness checks.
    guard = StopOnNonFinite(verbose=False)
    distiller.fit(data, epochs=2, callbacks=[guard], verbose=0)
    assert (guard.stopped_epoch, guard.stopped_batch) == (0, 4)


def test_labels_shaped_n_1_1_give_the_same_accuracy_as_flat_labels():
    x, y = make_data(256)
    results = []
    for labels in (y, y.reshape(-1, 1, 1)):
        distiller = distiller_for(metrics=["accuracy"])
        distiller.fit(x, labels, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
        results.append(distiller.evaluate(x, labels, verbose=0, return_dict=True)["accuracy"])
    student = distiller.student
    expected = np.mean(np.argmax(student.predict(x, verbose=0), -1) == y)
    np.testing.assert_allclose(results, [expected, expected], atol=1e-6)


@pytest.mark.parametrize("mode", ["graph", "eager", "xla"])
def test_a_teacher_declared_probabilities_is_checked_on_every_batch(mode):
    x, y = make_data(256)
    x[3 * BATCH + 2, 0] = 100.0  # The teacher returns logits (all 2.0) for this row only.
    teacher = broken_teacher(2.0, final_activation="softmax")
    distiller = Distiller(
        student=make_mlp(8, "student", seed=2), teacher=teacher, teacher_from_logits=False
    )
    distiller.compile(optimizer="adam", run_eagerly=mode == "eager", jit_compile=mode == "xla")

    def batches():
        for start in range(0, len(x), BATCH):
            yield x[start : start + BATCH], y[start : start + BATCH]

    with pytest.raises(ValueError) as error:
        distiller.fit(batches(), steps_per_epoch=8, verbose=0)
    assert_message(
        error,
        "declared to return probabilities",
        "epoch 0, batch 3 (training step 3), row 2",
        "sums to 6, not 1",
        "Pass `teacher_from_logits=True`",
        "Received: teacher_from_logits=False",
    )
