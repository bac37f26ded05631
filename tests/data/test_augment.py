import numpy as np
import pytest
import tensorflow as tf

from keras_distill.data import augment


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
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).endswith(message)
