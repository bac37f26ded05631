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


def shifted_by_loops(image, dy, dx):
    """`image` moved down by `dy` and right by `dx`, zeros elsewhere, one pixel at a time."""
    out = np.zeros_like(image)
    height, width = image.shape[:2]
    for r in range(height):
        for c in range(width):
            if 0 <= r - dy < height and 0 <= c - dx < width:
                out[r, c] = image[r - dy, c - dx]
    return out


def test_translate_matches_pixel_loops():
    images = np.random.default_rng(0).random((5, 4, 6, 2)).astype("float32")
    shifts = np.array([[0, 0], [1, -2], [-3, 2], [4, 0], [-1, 6]])
    out = augment.translate(images, shifts)
    assert out.shape == images.shape and out.dtype == np.float32
    for image, (dy, dx), result in zip(images, shifts, out):
        np.testing.assert_array_equal(result, shifted_by_loops(image, dy, dx))


def test_image_views_of_flat_images_are_shifted_copies_plus_noise():
    x = np.random.default_rng(1).random((3, 7 * 5)).astype("float32")
    views = augment.image_views(x, copies=4, image_shape=(7, 5), max_translation=2, noise_std=0.0)
    assert views.shape == (12, 35) and views.dtype == np.float32
    images = x.reshape(3, 7, 5)
    shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    found = set()
    for index, view in enumerate(views.reshape(12, 7, 5)):
        source = images[index % 3]  # Views of input i sit at rows i, i + n, i + 2n, ...
        matches = [s for s in shifts if np.array_equal(view, shifted_by_loops(source, *s))]
        assert matches, f"view {index} is no shift of its input by at most 2 pixels"
        found.add(matches[0])
    assert len(found) > 1  # The shifts vary.
    np.testing.assert_array_equal(views, augment.image_views(x, 4, (7, 5), 2, 0.0))
    noisy = augment.image_views(x, 4, (7, 5), 2, noise_std=0.1, seed=0)
    residual = noisy - views  # The same seed draws the same shifts first.
    assert abs(residual.std() - 0.1 * x.std()) < 0.02 * x.std()
    assert abs(residual.mean()) < 0.02 * x.std()


def test_image_views_keep_the_shape_of_images_and_default_to_an_eighth():
    images = np.ones((2, 16, 24, 3), "float32")
    views = augment.image_views(images, copies=3, noise_std=0.0, seed=2)
    assert views.shape == (6, 16, 24, 3)
    assert augment.default_max_translation((16, 24, 3)) == 2
    assert (
        augment.default_max_translation((8, 8, 1)) == augment.default_max_translation((5, 5)) == 1
    )
    # Shifts of at most 2 pixels leave the centre of an all-ones image whole, zero only edges.
    assert np.all(views[:, 2:-2, 2:-2] == 1.0)
    assert np.all(np.isin(views, (0.0, 1.0)))


def test_views_are_what_the_teacher_labels_and_the_student_sees():
    from keras_distill._keras import keras
    from keras_distill.recipe import inputs
    from keras_distill.teachers.cache import TeacherCache

    x = np.random.default_rng(3).random((6, 16)).astype("float32")
    views = inputs.generated_views(x, "image", copies=2, seed=0, image_shape=(4, 4, 1))
    keras.utils.set_random_seed(0)
    flat = keras.Input((16,))
    teacher = keras.Model(flat, keras.layers.Dense(3)(flat))
    cache = TeacherCache.build(teacher, views)
    for features in cache.dataset(views, batch_size=4, seed=0):
        features = features[0] if isinstance(features, tuple) else features
        seen = np.asarray(features["inputs"])
        np.testing.assert_allclose(
            np.asarray(features["teacher_logits"]), np.asarray(teacher(seen)), atol=1e-5
        )
        # Each batch input is one of the generated views (the student trains on these).
        assert all(np.any(np.all(views == row, axis=1)) for row in seen)


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
            lambda: augment.image_views(np.ones((2, 784)), 2, image_shape=(28, 27, 1)),
            "Received: image_shape=(28, 27, 1)",
        ),
        (
            lambda: augment.image_views(np.ones((2, 784)), 2),
            "Received: image_shape=None for examples of shape (784,)",
        ),
        (
            lambda: augment.image_views(np.ones((2, 4, 4, 1)), 2, max_translation=-1),
            "Received: max_translation=-1",
        ),
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
