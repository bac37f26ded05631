"""Transfer sets: labelled rows plus teacher-labelled rows (label -1)."""

import numpy as np
import pytest

from keras_distill import Distiller
from keras_distill._keras import keras
from keras_distill.data import transfer


def test_transfer_set_trains_unlabeled_rows_on_distillation(data, teacher, student):
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


def brute_force_neighbours(x):
    flat = x.reshape(len(x), -1).astype(np.float64)
    distances = np.linalg.norm(flat[:, None, :] - flat[None, :, :], axis=-1)
    np.fill_diagonal(distances, np.inf)
    return distances.argmin(axis=1)


def test_nearest_neighbours_match_brute_force():
    x = np.random.default_rng(0).normal(size=(300, 7))
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(transfer.nearest_neighbours(x, rng), brute_force_neighbours(x))
    # A pool smaller than the data: neighbours come from the pool, never the row itself.
    pooled = transfer.nearest_neighbours(x, rng, pool_size=20)
    assert len(set(pooled.tolist())) <= 20 and np.all(pooled != np.arange(len(x)))


def test_munge_draws_each_swapped_feature_around_the_neighbour():
    x = np.random.default_rng(2).normal(size=(40, 3, 2)).astype("float32")
    neighbour = x[brute_force_neighbours(x)].astype(np.float64)
    views = transfer.munge(x, copies=500, swap_probability=0.3, spread=2.0, seed=5)
    assert views.shape == (500 * 40, 3, 2) and views.dtype == np.float32
    np.testing.assert_array_equal(views, transfer.munge(x, 500, 0.3, 2.0, seed=5))
    views = views.reshape(500, 40, 3, 2).astype(np.float64)
    kept = np.isclose(views, x[None], rtol=0, atol=1e-7)
    assert abs(1 - kept.mean() - 0.3) < 0.01  # The share of swapped features.
    # Swapped features: z = (view - e') / (|e - e'| / spread) is standard normal.
    scale = np.abs(x - neighbour) / 2.0
    z = ((views - neighbour[None]) / scale[None])[~kept]
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.02
    np.testing.assert_array_equal(
        transfer.munge(x, 2, swap_probability=0.0), np.concatenate([x, x])
    )


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
        (lambda: transfer.munge(np.ones((1, 3))), "Received: x of shape (1, 3)"),
        (lambda: transfer.munge(np.ones((4, 3)), copies=0), "Received: copies=0"),
        (
            lambda: transfer.munge(np.ones((4, 3)), swap_probability=1.5),
            "`swap_probability` must be a number in [0, 1]. Received: swap_probability=1.5",
        ),
        (
            lambda: transfer.munge(np.ones((4, 3)), spread=0),
            "`spread` must be a finite number > 0. Received: spread=0",
        ),
        (
            lambda: transfer.munge(np.array([[0.0], [np.nan]])),
            "Received: x[1] with [nan]...",
        ),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).endswith(message)
