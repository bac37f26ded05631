"""Consistent augmentation ("function matching") for distillation input pipelines.

The `Distiller` feeds the same batch `x` to the teacher and to the student in
each step. So any augmentation applied to `x` in the input pipeline is
*consistent*: both models see the same augmented (or mixed-up) view, and the
student learns to match the teacher's function on those views rather than on
the fixed training points. Beyer et al. (2022) call this function matching
and found it the key ingredient of good distillation, together with long
schedules and aggressive mixing. (Augmenting inside the student only, e.g.
with augmentation layers in the student, would give the two models different
views: the inconsistent setting the paper warns against.)

This module offers batch augmentations for 1-D signals and for images,
mixup, and `function_matching_dataset`, which builds the `tf.data` pipeline.

References:
    Beyer, Zhai, Royer, Markeeva, Anil & Kolesnikov, "Knowledge distillation:
    A good teacher is patient and consistent", CVPR 2022.
    https://arxiv.org/abs/2106.05237
"""

import numbers

import numpy as np
import tensorflow as tf

from keras_distill._checks import check_image_shape
from keras_distill._checks import check_number


def signal_augmentation(max_shift=3, scale_range=(0.9, 1.1), noise_std=0.05):
    """Random circular shift, amplitude scale and Gaussian noise for 1-D signals.

    Each example of a `(batch, length)` or `(batch, length, channels)` batch
    is rolled by a uniform integer shift in `[-max_shift, max_shift]`,
    multiplied by a uniform factor in `scale_range`, and gets noise of
    standard deviation `noise_std`.

    Args:
        max_shift: Largest shift in samples. Defaults to `3`.
        scale_range: `(low, high)` amplitude factors. Defaults to `(0.9, 1.1)`.
        noise_std: Standard deviation of the added noise. Defaults to `0.05`.

    Returns:
        A function `batch -> augmented batch` (TensorFlow ops, usable in
        `tf.data.Dataset.map`).

    Example:
        ```python
        ds = function_matching_dataset(x, y, augmentation=signal_augmentation())
        ```
    """
    max_shift = check_number("max_shift", max_shift, minimum=0, integer=True)
    noise_std = check_number("noise_std", noise_std, minimum=0)
    low, high = _check_range(scale_range)

    def augment(batch):
        batch = tf.convert_to_tensor(batch, tf.float32)
        size, length = tf.shape(batch)[0], tf.shape(batch)[1]
        shift = tf.random.uniform([size], -max_shift, max_shift + 1, dtype=tf.int32)
        index = tf.math.floormod(tf.range(length)[None, :] - shift[:, None], length)
        batch = tf.gather(batch, index, axis=1, batch_dims=1)
        scale_shape = tf.concat([[size], tf.ones([tf.rank(batch) - 1], tf.int32)], axis=0)
        batch = batch * tf.random.uniform(scale_shape, low, high)
        if noise_std:
            batch = batch + tf.random.normal(tf.shape(batch), stddev=noise_std)
        return batch

    return augment


def image_augmentation(max_translation=1, noise_std=0.0):
    """Random translation (zero padding) and Gaussian noise for `(batch, h, w, c)` images.

    Args:
        max_translation: Largest shift in pixels along each axis.
            Defaults to `1`.
        noise_std: Standard deviation of the added noise. Defaults to `0.0`.

    Returns:
        A function `batch -> augmented batch`.
    """
    max_translation = check_number("max_translation", max_translation, minimum=0, integer=True)
    noise_std = check_number("noise_std", noise_std, minimum=0)

    def augment(batch):
        batch = tf.convert_to_tensor(batch, tf.float32)
        size, height, width = tf.shape(batch)[0], tf.shape(batch)[1], tf.shape(batch)[2]
        m = max_translation
        padded = tf.pad(batch, [[0, 0], [m, m], [m, m], [0, 0]])
        rows = tf.random.uniform([size, 1], 0, 2 * m + 1, dtype=tf.int32) + tf.range(height)[None]
        cols = tf.random.uniform([size, 1], 0, 2 * m + 1, dtype=tf.int32) + tf.range(width)[None]
        batch = tf.gather(padded, rows, axis=1, batch_dims=1)
        batch = tf.gather(batch, cols, axis=2, batch_dims=1)
        if noise_std:
            batch = batch + tf.random.normal(tf.shape(batch), stddev=noise_std)
        return batch

    return augment


def translate(images, shifts):
    """Each image moved by its own whole-pixel shift, with zeros where nothing moves in.

    `out[i, r, c] = images[i, r - dy_i, c - dx_i]` where that pixel exists,
    `0` otherwise (a crop of the zero-padded image).

    Args:
        images: `(n, height, width, channels)` array.
        shifts: `(n, 2)` integer `(dy, dx)` per image; positive moves down
            and right.

    Returns:
        A float32 array shaped like `images`.
    """
    images = np.asarray(images, np.float32)
    shifts = np.asarray(shifts, np.int64).reshape(len(images), 2)
    _, height, width, _ = images.shape
    limit = int(np.abs(shifts).max(initial=0))
    padded = np.pad(images, [(0, 0), (limit, limit), (limit, limit), (0, 0)])
    rows = limit - shifts[:, 0, None] + np.arange(height)[None]
    cols = limit - shifts[:, 1, None] + np.arange(width)[None]
    picked = np.take_along_axis(padded, rows[:, :, None, None], axis=1)
    return np.take_along_axis(picked, cols[:, None, :, None], axis=2)


def default_max_translation(image_shape):
    """Largest shift of `image_views` by default: an eighth of the shorter side, at least 1."""
    return max(1, min(image_shape[0], image_shape[1]) // 8)


def image_views(x, copies, image_shape=None, max_translation=None, noise_std=0.05, seed=0):
    """Fixed random views of images for a teacher to label: translations and noise.

    Each of the `copies` views of an image is the image translated by a
    uniform whole-pixel shift `(dy, dx)` in `[-m, m]^2` (zero fill, as a
    random crop of the zero-padded image; `translate`) plus Gaussian noise
    of standard deviation `noise_std * std(x)`. Built once in NumPy, the
    views are what both the teacher (which labels them, e.g. in a
    `TeacherCache`) and the student see: the consistent "function matching"
    setting of Beyer et al. (2022), with a fixed set of views.

    Args:
        x: Images `(n, height, width, channels)`, or any `(n, ...)` array
            whose examples hold `prod(image_shape)` values.
        copies: Views per image, an integer >= 1.
        image_shape: `(height, width)` or `(height, width, channels)` of
            one example when `x` is not already `(n, h, w, c)` (e.g.
            flattened images). Defaults to `None`.
        max_translation: `m`, the largest shift in pixels. Defaults to
            `None` (`default_max_translation`: an eighth of the shorter
            side, at least 1).
        noise_std: Noise scale relative to the standard deviation of `x`.
            Defaults to `0.05`.
        seed: Seed of the shifts and the noise. Defaults to `0`.

    Returns:
        A float32 array of `copies * n` views shaped like `x` (views of
        input `i` at rows `i, i + n, i + 2n, ...`).

    Example:
        ```python
        views = image_views(x_flat, copies=16, image_shape=(28, 28, 1))
        ```

    References:
        Beyer, Zhai, Royer, Markeeva, Anil & Kolesnikov, "Knowledge
        distillation: A good teacher is patient and consistent", CVPR 2022.
        https://arxiv.org/abs/2106.05237
    """
    x = np.asarray(x, np.float32)
    copies = check_number("copies", copies, minimum=1, integer=True)
    noise_std = check_number("noise_std", noise_std, minimum=0)
    shape = check_image_shape(image_shape, x.shape[1:])
    if max_translation is None:
        max_translation = default_max_translation(shape)
    m = check_number("max_translation", max_translation, minimum=0, integer=True)
    rng = np.random.default_rng(seed)
    images = np.concatenate([x] * copies).reshape((-1,) + shape)
    views = translate(images, rng.integers(-m, m + 1, size=(len(images), 2)))
    if noise_std:
        scale = noise_std * float(x.std())
        views = views + rng.normal(0.0, scale, views.shape).astype(np.float32)
    return views.reshape((-1,) + x.shape[1:])


def mixup(batch, alpha=1.0):
    """Mixes every example with another of the same batch: `lam * x + (1 - lam) * x[perm]`.

    `lam ~ Beta(alpha, alpha)` per example. Labels are not mixed: use mixup
    for x-only (pure distillation) batches, where the teacher labels the
    mixed view.

    Args:
        batch: `(batch, ...)` inputs.
        alpha: Beta distribution parameter, `> 0`. Defaults to `1.0`
            (uniform `lam`).

    Returns:
        The mixed batch.

    References:
        Zhang, Cisse, Dauphin & Lopez-Paz, "mixup: Beyond Empirical Risk
        Minimization", ICLR 2018. https://arxiv.org/abs/1710.09412
    """
    batch = tf.convert_to_tensor(batch, tf.float32)
    size = tf.shape(batch)[0]
    shape = tf.concat([[size], tf.ones([tf.rank(batch) - 1], tf.int32)], axis=0)
    first = tf.random.gamma(shape, alpha)
    second = tf.random.gamma(shape, alpha)
    lam = first / (first + second)
    partner = tf.gather(batch, tf.random.shuffle(tf.range(size)))
    return lam * batch + (1.0 - lam) * partner


def function_matching_dataset(
    x, y=None, augmentation=None, mixup_alpha=None, batch_size=32, shuffle=True, seed=None
):
    """A `tf.data` pipeline whose batches both teacher and student see identically.

    Batches are shuffled, augmented with `augmentation`, then (optionally)
    mixed up. With `y` and without mixup the batches are `(x_view, y)`:
    label-preserving augmentations keep labels valid (labels equal to `-1`,
    e.g. from `transfer.transfer_set`, stay "missing"). With mixup the labels
    no longer describe the mixed inputs, so the batches are x-only and the
    Distiller trains on the distillation term alone (Beyer et al.'s setting).

    Args:
        x: Inputs (NumPy array).
        y: Optional integer labels. Defaults to `None`.
        augmentation: A batch function such as `signal_augmentation()` or
            `image_augmentation()`. Defaults to `None`.
        mixup_alpha: Mixup's Beta parameter, or `None` for no mixup.
            Defaults to `None`.
        batch_size: Batch size. Defaults to `32`.
        shuffle: Reshuffle every epoch. Defaults to `True`.
        seed: Shuffle seed. Defaults to `None`.

    Returns:
        A `tf.data.Dataset`, to pass to `distiller.fit`.

    Example:
        ```python
        ds = function_matching_dataset(x_train, augmentation=signal_augmentation(),
                                       mixup_alpha=1.0, batch_size=64)
        distiller.fit(ds, epochs=60)
        ```
    """
    if augmentation is not None and not callable(augmentation):
        raise ValueError(
            "`augmentation` must be a function batch -> batch (e.g. `signal_augmentation()`) "
            f"or None. Received: augmentation={augmentation!r}"
        )
    if mixup_alpha is not None and (
        isinstance(mixup_alpha, bool)
        or not isinstance(mixup_alpha, numbers.Real)
        or mixup_alpha <= 0
    ):
        raise ValueError(
            f"`mixup_alpha` must be a number > 0 or None. Received: mixup_alpha={mixup_alpha!r}"
        )
    x = np.asarray(x, np.float32)
    keep_labels = y is not None and mixup_alpha is None
    if y is not None and len(np.asarray(y)) != len(x):
        raise ValueError(
            f"`y` must hold one label per example of `x` ({len(x)}). Received: "
            f"y.shape={np.shape(y)}"
        )
    dataset = tf.data.Dataset.from_tensor_slices((x, np.asarray(y)) if keep_labels else x)
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    def view(inputs):
        if augmentation is not None:
            inputs = augmentation(inputs)
        if mixup_alpha is not None:
            inputs = mixup(inputs, mixup_alpha)
        return inputs

    if keep_labels:
        dataset = dataset.map(lambda inputs, labels: (view(inputs), labels))
    else:
        dataset = dataset.map(view)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _check_range(scale_range):
    try:
        low, high = (float(v) for v in scale_range)
    except (TypeError, ValueError):
        low, high = 1.0, 0.0
    if not 0 < low <= high:
        raise ValueError(
            "`scale_range` must be (low, high) with 0 < low <= high. Received: "
            f"scale_range={scale_range!r}"
        )
    return low, high
