import numpy as np
import pytest
import tensorflow as tf

from keras_distill import Distiller
from keras_distill._keras import keras
from keras_distill.data import augment
from keras_distill.data import transfer


def test_signal_shift_is_a_circular_roll():
    tf.random.set_seed(0)
    x = np.arange(2 * 10, dtype="float32").reshape(2, 10)
    out = augment.signal_augmentation(max_shift=3, scale_range=(1.0, 1.0), noise_std=0.0)(x).numpy()
    rolls = [[np.roll(row, k) for k in range(-3, 4)] for row in x]
    for row, candidates in zip(out, rolls):
        assert any(np.array_equal(row, c) for c in candidates)
    x3 = x[..., None]
    assert augment.signal_augmentation()(x3).shape == (2, 10, 1)


def test_image_translation_matches_numpy():
    tf.random.set_seed(1)
    images = np.random.default_rng(0).random((4, 5, 5, 1)).astype("float32")
    out = augment.image_augmentation(max_translation=1)(images).numpy()
    padded = np.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)])
    for image, result in zip(padded, out):
        shifts = [image[r : r + 5, c : c + 5] for r in range(3) for c in range(3)]
        assert any(np.array_equal(result, s) for s in shifts)


def test_mixup_is_a_convex_combination_of_two_examples():
    tf.random.set_seed(2)
    x = np.eye(6, dtype="float32") * 3.0
    out = augment.mixup(x, alpha=1.0).numpy()
    np.testing.assert_allclose(out.sum(axis=1), 3.0, rtol=1e-5)
    assert np.all(out >= 0) and np.all((out > 0).sum(axis=1) <= 2)
    assert np.all(out[np.arange(6), np.arange(6)] > 0)


def test_function_matching_dataset_structure():
    x = np.random.default_rng(0).normal(size=(10, 8)).astype("float32")
    y = np.arange(10) % 3
    with_labels = augment.function_matching_dataset(
        x, y, augment.signal_augmentation(), batch_size=4
    )
    batch_x, batch_y = next(iter(with_labels))
    assert batch_x.shape == (4, 8) and batch_y.shape == (4,)
    mixed = augment.function_matching_dataset(x, y, mixup_alpha=0.5, batch_size=4, shuffle=False)
    assert next(iter(mixed)).shape == (4, 8)  # x-only: labels dropped under mixup


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
        (lambda: augment.signal_augmentation(max_shift=-1), "Received: max_shift=-1"),
        (lambda: augment.signal_augmentation(scale_range=(2, 1)), "Received: scale_range=(2, 1)"),
        (lambda: augment.image_augmentation(noise_std=-0.1), "Received: noise_std=-0.1"),
        (
            lambda: augment.function_matching_dataset(np.ones((2, 3)), mixup_alpha=0),
            "Received: mixup_alpha=0",
        ),
        (
            lambda: augment.function_matching_dataset(np.ones((2, 3)), augmentation="flip"),
            "Received: augmentation='flip'",
        ),
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
