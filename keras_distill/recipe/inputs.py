"""Inputs of the recipe: NumPy or `tf.data` in, checked NumPy arrays out.

The recipe runs the teacher once over a fixed transfer set (`TeacherCache`)
and compares students on one fixed validation split, so every input is read
into memory once, here.
"""

import numpy as np
import tensorflow as tf

from keras_distill import _checks
from keras_distill.data import augment
from keras_distill.data import transfer

VIEW_KINDS = ("auto", "munge", "mixup", "signal", "image")
# views_per_example="auto": about this many generated inputs, within the bounds below.
GENERATED_INPUTS = 25_000
VIEWS_PER_EXAMPLE_RANGE = (4, 32)
# views="auto": images with both sides at least this long get image views, smaller ones MUNGE.
IMAGE_VIEWS_MIN_SIDE = 16


_USE_THE_DISTILLER = (
    "`distill()` covers one array input and one row of logits per example. For several named "
    "inputs or outputs with positions (a causal LM, a tagger, segmentation), use the "
    "`Distiller` directly: `Distiller(student, teacher, padding_mask_input=...)`, "
    "`compile(...)`, `fit(x, y, sample_weight=...)` (see docs/sequences.md)."
)


def check_single_array(name, x):
    """Raises for inputs `distill()` does not cover: a dict, list or tuple of inputs."""
    if isinstance(x, dict) or (
        isinstance(x, (list, tuple)) and x and all(np.ndim(leaf) >= 2 for leaf in x)
    ):
        kind = f"a dict of inputs {sorted(x)}" if isinstance(x, dict) else f"{len(x)} inputs"
        raise ValueError(f"{_USE_THE_DISTILLER} Received: {name} with {kind}")


def check_one_row_per_example(role, model):
    """Raises when `model`'s output has positions `(batch, ..., classes)`."""
    shape = tuple(getattr(model, "output_shape", ()) or ())
    if len(shape) > 2 and all(not isinstance(dim, (list, tuple)) for dim in shape):
        raise ValueError(f"{_USE_THE_DISTILLER} Received: {role} output shape={shape}")


def labelled_arrays(name, x, y=None):
    """`(inputs, sparse labels)` from arrays or a finite `tf.data.Dataset` of `(x, y)`.

    Args:
        name: Argument name for error messages.
        x: A NumPy array (or anything `np.asarray` takes), or a finite,
            batched dataset of `(x, y)` (then `y` must be `None`).
        y: Integer labels `(n,)` or one-hot rows `(n, k)`, unless `x` is a
            dataset.

    Returns:
        `(x, y)`: float32 inputs and int64 sparse labels.
    """
    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise ValueError(
                f"`{name}` is a tf.data.Dataset of (x, y) batches, so its labels come from it; "
                f"leave `y` empty. Received: y with shape {np.shape(y)}"
            )
        x, y = _read_dataset(name, x, labelled=True)
    elif y is None:
        raise ValueError(
            f"`{name}` needs labels: pass them as `y`, or pass a tf.data.Dataset of (x, y) "
            f"batches. Received: {name} with shape {np.shape(x)} and y=None"
        )
    check_single_array(name, x)
    x = np.asarray(x, np.float32)
    y = sparse_labels(name, y)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"`{name}` must hold at least one example and one label per example. "
            f"Received: {len(x)} inputs and {len(y)} labels"
        )
    _checks.check_finite(name, x)
    return x, y


def input_array(name, x):
    """Float32 inputs from an array or a finite, batched dataset of `x` (or `(x, ...)`)."""
    if isinstance(x, tf.data.Dataset):
        x = _read_dataset(name, x, labelled=False)
    check_single_array(name, x)
    x = np.asarray(x, np.float32)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(
            f"`{name}` must hold at least one example. Received: {name} of shape {x.shape}"
        )
    _checks.check_finite(name, x)
    return x


def pair(name, data):
    """`(x, y)` arrays from a tuple `(x, y)` or a dataset of `(x, y)` batches."""
    if isinstance(data, tf.data.Dataset):
        return labelled_arrays(name, data)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            f"`{name}` must be a tuple (x, y) or a tf.data.Dataset of (x, y) batches. "
            f"Received: {name}={type(data).__name__}"
        )
    return labelled_arrays(name, *data)


def sparse_labels(name, y):
    """Int64 class indices from integer labels `(n,)`/`(n, 1)` or one-hot rows `(n, k)`."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[-1] > 1:
        y = y.argmax(-1)
    y = y.reshape(-1)
    if y.size and (y.dtype.kind not in "iuf" or np.any(y != np.round(y)) or y.min() < 0):
        raise ValueError(
            f"The labels of `{name}` must be class indices >= 0 or one-hot rows. "
            f"Received: labels from {y.min()!r} to {y.max()!r} ({y.dtype})"
        )
    return y.astype(np.int64)


def split(x, y, fraction, seed):
    """A fixed, seeded random split into `(fitting part, validation part)`."""
    order = np.random.default_rng(seed).permutation(len(y))
    cut = len(y) - max(1, int(round(fraction * len(y))))
    if cut < 1:
        raise ValueError(
            "`validation_split` leaves no examples to train on. "
            f"Received: validation_split={fraction} with {len(y)} examples"
        )
    fit, val = order[:cut], order[cut:]
    return (x[fit], y[fit]), (x[val], y[val])


def view_kind(kind, x, image_shape=None):
    """The kind of generated views for inputs `x`: `"auto"` picks by the input's kind.

    Images of at least 16x16 pixels, `(n, height, width, channels)` inputs
    or flat inputs declared with `image_shape`, get `"image"` views
    (`augment.image_views`: random translations and noise, labelled by the
    teacher, so both models see the same view). Smaller images get
    `"munge"`: on scikit-learn's 8x8 digits MUNGE recovered 72% of the
    teacher's lead and image views 40% (2 seeds), where on flattened
    20x20 digits image views recovered 87% (5 seeds, `docs/quality.md`).
    Rank-3 inputs `(n, length, channels)` get `"signal"` views (shift,
    scale, noise). Every other input (tables, feature vectors) gets
    `"munge"` (`transfer.munge`), which needs no knowledge of the input
    kind.
    """
    if kind != "auto":
        return kind
    if image_shape is not None or x.ndim == 4:
        shape = tuple(image_shape) if image_shape is not None else x.shape[1:]
        return "image" if min(shape[:2]) >= IMAGE_VIEWS_MIN_SIDE else "munge"
    return "signal" if x.ndim == 3 else "munge"


def views_per_example(requested, num_examples):
    """`requested` views per input, or for `"auto"` about 25,000 views in all, 4 to 32 each."""
    if requested != "auto":
        return requested
    low, high = VIEWS_PER_EXAMPLE_RANGE
    return int(min(high, max(low, -(-GENERATED_INPUTS // num_examples))))


def generated_views(x, kind, copies, seed, image_shape=None):
    """`copies` views of every input: MUNGE, mixup, signal or image views (no labels).

    Args:
        x: Labelled inputs.
        kind: `"munge"`, `"mixup"`, `"signal"` or `"image"` (see `view_kind`).
        copies: Views per input.
        seed: Seed of the views (the result is the same for the same seed).
        image_shape: Shape of one image when `x` holds flat images (image
            views only). Defaults to `None`.

    Returns:
        A float32 array of `copies * len(x)` inputs.
    """
    if kind == "munge":
        return transfer.munge(x, copies, seed=seed)
    if kind == "image":
        return augment.image_views(x, copies, image_shape=image_shape, seed=seed)
    tf.random.set_seed(seed)
    repeated = np.concatenate([x] * copies)
    if kind == "mixup":
        views = augment.mixup(repeated)
    else:
        views = augment.signal_augmentation()(repeated)
    return np.asarray(views, np.float32)


def _read_dataset(name, dataset, labelled):
    inputs, labels = [], []
    for count, element in enumerate(dataset.as_numpy_iterator()):
        if count > 1_000_000:
            raise ValueError(
                f"`{name}` must be a finite dataset. Received: a dataset with more "
                "than a million batches"
            )
        parts = element if isinstance(element, tuple) else (element,)
        if labelled and len(parts) < 2:
            raise ValueError(
                f"`{name}` must yield (x, y) batches. Received: batches of {len(parts)} element(s)"
            )
        check_single_array(name, parts[0])
        inputs.append(np.asarray(parts[0]))
        if labelled:
            labels.append(np.asarray(parts[1]))
    if not inputs:
        raise ValueError(f"`{name}` must yield at least one batch. Received: an empty dataset")
    x = np.concatenate(inputs)
    return (x, np.concatenate(labels)) if labelled else x
